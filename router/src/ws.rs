//! The WebSocket transport at `/ws` (protocol.md §1, §6.1–6.2).
//!
//! Per connection: the handshake (first text frame within `auth_timeout`, admission by the
//! control plane, `connection_info`), then a reader loop in the connection's task that
//! routes binary frames and answers control texts, and a writer task that drains the
//! egress queue in batches and flushes once per batch.

use crate::close::CloseReason;
use crate::egress::{Egress, Outbound};
use crate::hooks::ConnRef;
use crate::table::Conn;
use crate::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rhizo_protocol::handshake::{self, AuthRequest, Control, HandshakeError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// Query keys that mark a legacy (pre-0.20) client; such upgrades are refused (§1.1).
const LEGACY_KEYS: [&str; 4] = ["client_id", "workspace", "token", "reconnection_token"];

/// Control texts longer than this are ignored (reference behaviour, §2.7).
const MAX_CONTROL_TEXT: usize = 1000;

/// The `/ws` route, to be merged into the HTTP app.
pub fn routes(router: Router) -> axum::Router {
    axum::Router::new()
        .route("/ws", get(upgrade))
        .with_state(router)
}

async fn upgrade(
    State(router): State<Router>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let legacy = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| LEGACY_KEYS.contains(&kv.split('=').next().unwrap_or_default()))
    });
    let max = router.config().max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move { router.serve_socket(socket, legacy).await })
}

async fn refuse(socket: &mut WebSocket, reason: CloseReason) {
    tracing::debug!(reason = reason.label(), message = %reason.message(), "handshake refused");
    let _ = socket
        .send(Message::Text(handshake::error(&reason.message()).into()))
        .await;
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.close_text().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

// === impl Router (WebSocket) ===

impl Router {
    /// Runs one WebSocket connection to completion.
    pub async fn serve_socket(self, mut socket: WebSocket, legacy: bool) {
        if legacy {
            let msg = "Authentication error: query-parameter authentication is not supported; \
                       please upgrade to hypha-rpc 0.20 or later";
            return refuse(&mut socket, CloseReason::Policy(msg.into())).await;
        }
        let first = tokio::time::timeout(self.config().auth_timeout, socket.recv()).await;
        let text = match first {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => {
                let r = CloseReason::BadAuthPayload(
                    "Invalid authentication payload: expected a JSON text frame".into(),
                );
                return refuse(&mut socket, r).await;
            }
            Err(_) => {
                let r = CloseReason::Policy(
                    "Authentication error: Authentication payload timeout".into(),
                );
                return refuse(&mut socket, r).await;
            }
            Ok(_) => return,
        };
        let req = match AuthRequest::parse(text.as_str()) {
            Ok(r) => r,
            Err(e @ HandshakeError::BadJson(_)) => {
                return refuse(&mut socket, CloseReason::BadAuthPayload(e.to_string())).await
            }
            Err(e @ HandshakeError::BadClientId(_)) => {
                return refuse(&mut socket, CloseReason::Policy(e.to_string())).await
            }
        };
        let admission = match self.hooks().admit(req).await {
            Ok(a) => a,
            Err(r) => {
                let reason = if r.code == 1008 {
                    CloseReason::Policy(r.message)
                } else {
                    CloseReason::SetupFailed(r.message)
                };
                return refuse(&mut socket, reason).await;
            }
        };
        let cfg = self.config();
        let (egress, rx) = Egress::new(cfg.egress_limit_bytes, cfg.slow_consumer_grace);
        // connection_info is the first item: the client starts calling the manager at once,
        // and replies routed to it meanwhile queue behind it (§1.6).
        egress.push_control(Outbound::Text(admission.connection_info.to_string()));
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let conn = Arc::new(Conn::new(
            id,
            &admission.workspace,
            &admission.client_id,
            admission.user.clone(),
            admission.can_write,
            egress,
        ));
        if let Some(old) = self.inner.table.insert(conn.clone()) {
            old.egress.close(CloseReason::Superseded);
        }
        self.counters().connections.fetch_add(1, Relaxed);
        tracing::debug!(client = %conn.addr, reconnecting = admission.reconnecting, "connected");

        let (sink, stream) = socket.split();
        let done = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            conn.clone(),
            cfg.write_batch,
            done.clone(),
        ));
        let reason = self.read_loop(stream, &conn, &done).await;
        match reason {
            Some(r) => {
                conn.egress.close(r);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
            }
            None => writer.abort(),
        }
        self.counters().connections.fetch_sub(1, Relaxed);
        if self.inner.table.remove(&conn) {
            self.mark_gone(&conn.addr);
            tracing::debug!(client = %conn.addr, "disconnected");
            let r = ConnRef {
                id: conn.id,
                ws: &conn.ws,
                cid: &conn.cid,
            };
            self.hooks().disconnected(r, conn.foreign_callers());
        }
    }

    /// Reads until the peer goes away (`None`) or the server decides to close (`Some`).
    async fn read_loop(
        &self,
        mut stream: SplitStream<WebSocket>,
        conn: &Arc<Conn>,
        done: &Notify,
    ) -> Option<CloseReason> {
        let idle = self.config().idle_timeout;
        let mut shutdown = self.shutdown_signal();
        if *shutdown.borrow() {
            return Some(CloseReason::Shutdown);
        }
        loop {
            let msg = tokio::select! {
                m = tokio::time::timeout(idle, stream.next()) => m,
                _ = shutdown.changed() => return Some(CloseReason::Shutdown),
                _ = done.notified() => return None,
                _ = conn.egress.close_decided() => return conn.egress.closing(),
            };
            match msg {
                Err(_) => return Some(CloseReason::IdleTimeout(idle.as_secs())),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Err(e))) => {
                    // tungstenite reports an oversized message as a capacity error.
                    let text = e.to_string();
                    if text.contains("Space limit exceeded")
                        || text.contains("too long")
                        || text.contains("too big")
                    {
                        return Some(CloseReason::FrameTooLarge(self.config().max_frame_bytes));
                    }
                    tracing::debug!(client = %conn.addr, error = %text, "read error");
                    return None;
                }
                Ok(Some(Ok(Message::Binary(frame)))) => {
                    let _ = self.route_from(conn, frame);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if text.len() > MAX_CONTROL_TEXT {
                        continue;
                    }
                    match handshake::control(text.as_str()) {
                        Control::Ping => {
                            let _ = self.push(conn, Outbound::Text(handshake::pong()));
                        }
                        Control::RefreshToken => {
                            let r = ConnRef {
                                id: conn.id,
                                ws: &conn.ws,
                                cid: &conn.cid,
                            };
                            if let Some(token) = self.hooks().refresh_token(r) {
                                let text = handshake::reconnection_token(&token);
                                let _ = self.push(conn, Outbound::Text(text));
                            }
                        }
                        Control::Other(_) | Control::Invalid => {}
                    }
                }
                Ok(Some(Ok(_))) => {} // protocol pings are answered by the WebSocket layer
            }
        }
    }
}

/// Drains the egress queue: up to `batch` items, fed without flushing, then one flush.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    conn: Arc<Conn>,
    batch: usize,
    done: Arc<Notify>,
) {
    let mut buf = Vec::with_capacity(batch);
    'outer: loop {
        if rx.recv_many(&mut buf, batch).await == 0 {
            break;
        }
        // A decided close skips whatever is still queued (do not flush to a slow consumer).
        if let Some(reason) = conn.egress.closing() {
            close(&mut sink, &reason).await;
            break;
        }
        let mut bytes = 0;
        for item in buf.drain(..) {
            bytes += item.len();
            let msg = match item {
                Outbound::Binary(b) => Message::Binary(b),
                Outbound::Text(t) => Message::Text(t.into()),
                Outbound::Close(reason) => {
                    close(&mut sink, &reason).await;
                    break 'outer;
                }
            };
            if sink.feed(msg).await.is_err() {
                break 'outer;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
        conn.egress.sent(bytes);
    }
    done.notify_one();
}

async fn close(sink: &mut SplitSink<WebSocket, Message>, reason: &CloseReason) {
    tracing::debug!(reason = reason.label(), "closing connection");
    if reason.sends_error() {
        let _ = sink
            .feed(Message::Text(handshake::error(&reason.message()).into()))
            .await;
    }
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.close_text().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
