//! The driver task against an in-memory socket, with paused time: timeouts, heartbeats in
//! both directions, handlers.

use super::*;
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::value::{self, get_str, map};
use tokio_tungstenite::tungstenite::Error as WsError;

type Incoming = mpsc::UnboundedSender<Result<WsMessage, WsError>>;

/// A client on an in-memory socket: what it sends arrives on the returned receiver, what
/// the test pushes into the sender is what it reads.
fn client() -> (Client, Incoming, mpsc::UnboundedReceiver<WsMessage>) {
    let info = serde_json::json!({
        "workspace": "ws-a", "client_id": "me", "manager_id": "mgr",
        "public_base_url": "http://srv",
    });
    let (out, sent) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let (feed, rx) = mpsc::unbounded_channel();
    let stream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    }));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            peer: client_peer(&info, "t".into()),
            closed: false,
        }),
        wake: Notify::new(),
        out,
        events: ev_tx,
        handlers: Mutex::default(),
        objects: Mutex::default(),
    });
    let reader = tokio::spawn(drive(stream, shared.clone()));
    let c = Client {
        info,
        shared,
        events,
        reader,
    };
    (c, feed, sent)
}

async fn next_sent(sent: &mut mpsc::UnboundedReceiver<WsMessage>) -> Message {
    match sent.recv().await {
        Some(WsMessage::Binary(b)) => Message::decode(&b).unwrap(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

fn frame_from(
    from: &str,
    method: &str,
    session: Option<&str>,
    extra: Option<Value>,
) -> Result<WsMessage, WsError> {
    let mut header = map([
        ("type", "method".into()),
        ("from", from.into()),
        ("to", "ws-a/me".into()),
        ("ws", from.split_once('/').unwrap().0.into()),
        ("method", method.into()),
    ]);
    if let Some(s) = session {
        value::set(&mut header, "session", s.into());
    }
    Ok(WsMessage::Binary(Bytes::from(encode_frame(
        &header,
        extra.as_ref(),
    ))))
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_call_alive_and_silence_times_it_out() {
    let (c, feed, mut sent) = client();
    let call = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let r = c
            .call("ws-b/p", "services.x.slow", vec![], Duration::from_secs(10))
            .await;
        (r, started.elapsed(), c)
    });
    let m = next_sent(&mut sent).await;
    let session = get_str(&m.header, "session").unwrap().to_owned();
    assert_eq!(
        value::get(&m.merged, "t").and_then(Value::as_f64),
        Some(5.0)
    );
    // Heartbeats at 8 s and 16 s: the call outlives its 10 s timeout, then times out 10 s
    // after the last one.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(8)).await;
        feed.send(frame_from(
            "ws-b/p",
            &format!("{session}.heartbeat"),
            None,
            None,
        ))
        .unwrap();
    }
    let (r, elapsed, c) = call.await.unwrap();
    assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
    assert_eq!(elapsed.as_secs(), 26);

    // A resolve completes the next call; the driver is still alive.
    let call = tokio::spawn(async move {
        c.call("ws-b/p", "services.x.f", vec![], Duration::from_secs(10))
            .await
    });
    let m = next_sent(&mut sent).await;
    let session = get_str(&m.header, "session").unwrap().to_owned();
    let args = map([("args", Value::Array(vec![5.into()]))]);
    feed.send(frame_from(
        "ws-b/p",
        &format!("{session}.resolve"),
        None,
        Some(args),
    ))
    .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), Value::from(5));
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_heartbeats_its_caller() {
    let (c, feed, mut sent) = client();
    let slow = handler(|_call| async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(Value::from("done"))
    });
    c.shared
        .handlers
        .lock()
        .unwrap()
        .insert("svc".into(), HashMap::from([("slow".to_owned(), slow)]));
    let record = service_record("ws-a/me", "svc", Value::Nil);
    c.shared
        .lock()
        .peer
        .services_mut()
        .register("svc", record, vec!["slow".into()]);

    let extra = map([
        ("args", Value::Array(vec![])),
        ("promise", "*".into()),
        ("t", 1.into()),
    ]);
    let started = tokio::time::Instant::now();
    feed.send(frame_from(
        "ws-a/caller",
        "services.svc.slow",
        Some("k1"),
        Some(extra),
    ))
    .unwrap();
    let mut seen = Vec::new();
    loop {
        let m = next_sent(&mut sent).await;
        let method = get_str(&m.merged, "method").unwrap().to_owned();
        seen.push((method.clone(), started.elapsed().as_millis()));
        if method == "k1.resolve" {
            let arg = &value::get(&m.merged, "args").unwrap().as_array().unwrap()[0];
            assert_eq!(arg.as_str(), Some("done"));
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("k1.heartbeat".to_owned(), 1000),
            ("k1.heartbeat".to_owned(), 2000),
            ("k1.resolve".to_owned(), 2500),
        ]
    );
    // Nothing more after the reply.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(sent.try_recv().is_err());
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn closing_the_socket_fails_waiting_and_later_calls() {
    let (c, feed, mut sent) = client();
    let c = Arc::new(c);
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move {
            c.call("ws-b/p", "services.x.f", vec![], Duration::from_secs(30))
                .await
        })
    };
    next_sent(&mut sent).await;
    drop(feed);
    assert!(matches!(waiting.await.unwrap(), Err(ClientError::Closed)));
    let later = c
        .call("ws-b/p", "services.x.f", vec![], Duration::from_secs(30))
        .await;
    assert!(matches!(later, Err(ClientError::Closed)));
}
