//! A bare WebSocket relay: the ceiling for the echo scenario on a given machine.
//!
//! Connections are paired in arrival (accept) order, 1st↔2nd, 3rd↔4th, …; every message
//! from one side goes to the other untouched. There is no handshake, no routing and no
//! header rewrite. A connection that closes while waiting for its partner gives up its
//! place, so a half-finished run does not shift the pairing of the next one.
//!
//! Each direction of a pair is one task that reads what is available, feeds it to the other
//! side and flushes once, like rhizo's writers.

use futures_util::{FutureExt, SinkExt, StreamExt};
use rhizo_client::raw::ws_config;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Most messages forwarded before a flush.
const BATCH: usize = 256;

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Pairs that started piping.
    pub pairs: AtomicU64,
    /// Messages forwarded (both directions).
    pub messages: AtomicU64,
}

/// The connection waiting for a partner: its accept number and where to send the partner.
type Waiting = Mutex<Option<(u64, oneshot::Sender<Ws>)>>;

/// Serves the relay on `listener` until the task is dropped or aborted.
///
/// Errors: only a failing `accept` that is not per-connection (the listener is broken).
pub async fn serve(listener: TcpListener, stats: Arc<RelayStats>) -> std::io::Result<()> {
    let waiting: Arc<Waiting> = Arc::default();
    let mut n = 0u64;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing_free_log(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        n += 1;
        stats.accepted.fetch_add(1, Relaxed);
        // The role is decided here, in accept order; the WebSocket handshakes may finish
        // in any order.
        let role = {
            let mut w = waiting.lock().expect("relay lock");
            match w.take() {
                Some((_, partner)) => Role::Second(partner),
                None => {
                    let (tx, rx) = oneshot::channel();
                    *w = Some((n, tx));
                    Role::First(rx)
                }
            }
        };
        tokio::spawn(connection(tcp, n, role, waiting.clone(), stats.clone()));
    }
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

fn tracing_free_log(e: &std::io::Error) {
    eprintln!("relay: accept failed: {e}");
}

enum Role {
    /// Waits for the next connection and then pipes.
    First(oneshot::Receiver<Ws>),
    /// Hands itself to the waiting connection.
    Second(oneshot::Sender<Ws>),
}

async fn connection(
    tcp: TcpStream,
    id: u64,
    role: Role,
    waiting: Arc<Waiting>,
    stats: Arc<RelayStats>,
) {
    let ws = match tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config())).await {
        Ok(ws) => ws,
        Err(_) => {
            if let Role::First(_) = role {
                release(&waiting, id);
            }
            // A failed second half leaves its partner waiting; its sender is dropped, so
            // the partner sees the pairing fail and closes.
            return;
        }
    };
    match role {
        Role::Second(tx) => {
            // If the partner is gone, this connection just closes.
            let _ = tx.send(ws);
        }
        Role::First(rx) => {
            let mut ws = ws;
            let mut early = Vec::new();
            let mut rx = rx;
            let partner = loop {
                tokio::select! {
                    p = &mut rx => match p {
                        Ok(p) => break p,
                        Err(_) => {
                            let _ = ws.close(None).await;
                            return;
                        }
                    },
                    m = ws.next() => match m {
                        Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => early.push(m),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            release(&waiting, id);
                            return;
                        }
                        Some(Ok(_)) => {}
                    },
                }
            };
            stats.pairs.fetch_add(1, Relaxed);
            pipe(ws, partner, early, stats).await;
        }
    }
}

/// Frees the waiting place if `id` still holds it.
fn release(waiting: &Waiting, id: u64) {
    let mut w = waiting.lock().expect("relay lock");
    if w.as_ref().is_some_and(|(held, _)| *held == id) {
        *w = None;
    }
}

/// Pipes `a` and `b` until either side closes; `early` are messages `a` sent before `b`
/// arrived.
async fn pipe(a: Ws, b: Ws, early: Vec<Message>, stats: Arc<RelayStats>) {
    let (a_tx, a_rx) = a.split();
    let (mut b_tx, b_rx) = b.split();
    for m in early {
        let _ = b_tx.feed(m).await;
    }
    let _ = b_tx.flush().await;
    let mut ab = tokio::spawn(forward(a_rx, b_tx, stats.clone()));
    let mut ba = tokio::spawn(forward(b_rx, a_tx, stats));
    // When one direction ends, give the other a moment to pass on the close, then stop it.
    tokio::select! {
        _ = &mut ab => {
            if tokio::time::timeout(Duration::from_secs(2), &mut ba).await.is_err() {
                ba.abort();
            }
        }
        _ = &mut ba => {
            if tokio::time::timeout(Duration::from_secs(2), &mut ab).await.is_err() {
                ab.abort();
            }
        }
    }
}

async fn forward(
    mut from: futures_util::stream::SplitStream<Ws>,
    mut to: futures_util::stream::SplitSink<Ws, Message>,
    stats: Arc<RelayStats>,
) {
    loop {
        let mut next = from.next().await;
        let mut n = 0u64;
        loop {
            match next {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    if to.feed(m).await.is_err() {
                        return;
                    }
                    n += 1;
                }
                Some(Ok(Message::Close(f))) => {
                    let _ = to.send(Message::Close(f)).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = to.send(Message::Close(None)).await;
                    return;
                }
            }
            if n as usize >= BATCH {
                break;
            }
            match from.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        stats.messages.fetch_add(n, Relaxed);
        if to.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_client::raw;

    async fn start() -> (
        String,
        Arc<RelayStats>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let stats = Arc::new(RelayStats::default());
        let task = tokio::spawn(serve(listener, stats.clone()));
        (url, stats, task)
    }

    async fn recv(ws: &mut raw::WsStream) -> Message {
        tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error")
    }

    #[tokio::test]
    async fn pairs_in_arrival_order() {
        let (url, stats, task) = start().await;
        let mut c = Vec::new();
        for _ in 0..4 {
            c.push(raw::open(&url).await.unwrap());
        }
        c[0].send(Message::Binary("from 1".into())).await.unwrap();
        c[3].send(Message::Binary("from 4".into())).await.unwrap();
        c[2].send(Message::Text("from 3".into())).await.unwrap();
        assert_eq!(recv(&mut c[1]).await, Message::Binary("from 1".into()));
        assert_eq!(recv(&mut c[2]).await, Message::Binary("from 4".into()));
        assert_eq!(recv(&mut c[3]).await, Message::Text("from 3".into()));
        c[1].send(Message::Binary("back".into())).await.unwrap();
        assert_eq!(recv(&mut c[0]).await, Message::Binary("back".into()));
        assert_eq!(stats.pairs.load(Relaxed), 2);
        // Closing one side closes the other.
        c[0].close(None).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), c[1].next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        task.abort();
    }

    #[tokio::test]
    async fn early_messages_wait_for_the_partner() {
        let (url, _stats, task) = start().await;
        let mut a = raw::open(&url).await.unwrap();
        a.send(Message::Binary("early".into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut b = raw::open(&url).await.unwrap();
        assert_eq!(recv(&mut b).await, Message::Binary("early".into()));
        task.abort();
    }

    #[tokio::test]
    async fn a_lone_connection_that_leaves_frees_its_place() {
        let (url, stats, task) = start().await;
        let mut lone = raw::open(&url).await.unwrap();
        lone.close(None).await.unwrap();
        drop(lone);
        // Wait until the relay noticed, then a fresh pair must pair with each other.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if stats.accepted.load(Relaxed) == 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut a = raw::open(&url).await.unwrap();
        let mut b = raw::open(&url).await.unwrap();
        a.send(Message::Binary("hi".into())).await.unwrap();
        assert_eq!(recv(&mut b).await, Message::Binary("hi".into()));
        task.abort();
    }
}
