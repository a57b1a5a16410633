//! Bad input loses nothing and gets a clear answer (issue: main job, item 7).

mod common;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizo_client::{Client, ClientError, ConnectOptions, Event};
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::value::{self, get_str, map};
use rhizo_router::{RouterConfig, RouterControl};
use rmpv::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;

const T: Duration = Duration::from_secs(5);

async fn next_text(c: &mut Client) -> serde_json::Value {
    loop {
        match tokio::time::timeout(T, c.next_event())
            .await
            .expect("an event in time")
        {
            Some(Event::Text(v)) => return v,
            Some(_) => continue,
            None => panic!("connection ended"),
        }
    }
}

async fn still_works(c: &Client) {
    let echoed = c
        .manager_call("echo", vec!["still here".into()])
        .await
        .unwrap();
    assert_eq!(echoed.as_str(), Some("still here"));
}

#[tokio::test]
async fn binary_frame_that_is_not_msgpack() {
    let s = common::start().await;
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    c.send_frame(Bytes::from_static(b"\xc1 this is not msgpack"))
        .unwrap();
    let e = next_text(&mut c).await;
    assert_eq!(e["type"], "error");
    assert!(
        e["message"].as_str().unwrap().contains("Malformed frame"),
        "{e}"
    );
    still_works(&c).await;
}

#[tokio::test]
async fn header_that_is_not_a_map() {
    let s = common::start().await;
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    c.send_frame(Bytes::from(value::encode(&Value::Array(vec![1.into()]))))
        .unwrap();
    let e = next_text(&mut c).await;
    assert!(
        e["message"].as_str().unwrap().contains("not a msgpack map"),
        "{e}"
    );
    still_works(&c).await;
}

#[tokio::test]
async fn frame_without_to() {
    let s = common::start().await;
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let f = encode_frame(
        &map([("type", "method".into()), ("method", "x".into())]),
        None,
    );
    c.send_frame(Bytes::from(f)).unwrap();
    let e = next_text(&mut c).await;
    assert!(e["message"].as_str().unwrap().contains("no `to`"), "{e}");
    still_works(&c).await;
}

#[tokio::test]
async fn forged_trusted_fields_are_overwritten() {
    let s = common::start().await;
    let a = common::connect_as(&s.url, "a").await;
    let mut b = common::join(&s.url, &a, "b").await.unwrap();
    let f = encode_frame(
        &map([
            ("type", "custom".into()),
            ("to", "b".into()),
            ("from", "victim/admin".into()),
            ("ws", "victim".into()),
            ("user", map([("id", "root".into())])),
        ]),
        Some(&map([("data", 1.into())])),
    );
    a.send_frame(Bytes::from(f)).unwrap();
    let m = loop {
        match tokio::time::timeout(T, b.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Frame(m) => break m,
            _ => continue,
        }
    };
    assert_eq!(
        get_str(&m.header, "from"),
        Some(format!("{}/a", a.workspace()).as_str())
    );
    assert_eq!(get_str(&m.header, "ws"), Some(a.workspace()));
    let user = value::get(&m.header, "user").unwrap();
    assert_ne!(get_str(user, "id"), Some("root"));
    assert!(get_str(user, "id").unwrap().starts_with("anonymouz-"));
}

#[tokio::test]
async fn oversized_frame_closes_with_a_reason() {
    let s = common::start_with(RouterConfig {
        max_frame_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let big = encode_frame(
        &map([("type", "x".into()), ("to", "*".into())]),
        Some(&map([("d", Value::Binary(vec![0; 100_000]))])),
    );
    c.send_frame(Bytes::from(big)).unwrap();
    let mut saw_error = false;
    loop {
        match tokio::time::timeout(T, c.next_event()).await.unwrap() {
            Some(Event::Text(v)) => {
                saw_error |= v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Frame too large")
            }
            Some(Event::Closed(reason)) => {
                let (code, text) = reason.expect("a close frame");
                assert_eq!(code, 1009);
                assert!(text.contains("Frame too large"), "{text}");
                break;
            }
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    }
    assert!(saw_error, "an error text precedes the close");
}

#[tokio::test]
async fn unknown_service_and_unknown_peer_fail_fast() {
    let s = common::start().await;
    let c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let err = c
        .manager_call("get_service", vec!["no-such-service".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Service not found")),
        "{err}"
    );
    let started = std::time::Instant::now();
    let err = c
        .call(
            "ws-nowhere/ghost",
            "services.x.f",
            vec![],
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Peer ws-nowhere/ghost is not connected")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rejected at once, not by timeout"
    );
    let err = c.manager_call("no_such_method", vec![]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Method not found")),
        "{err}"
    );
}

async fn raw_handshake(url: &str, first: Ws) -> (Option<serde_json::Value>, Option<u16>) {
    let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    ws.send(first).await.unwrap();
    let (mut text, mut code) = (None, None);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, ws.next()).await {
        match m {
            Ws::Text(t) => text = serde_json::from_str(t.as_str()).ok(),
            Ws::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (text, code)
}

#[tokio::test]
async fn malformed_handshake_json() {
    let s = common::start().await;
    let (text, code) = raw_handshake(&s.url, Ws::Text("{not json".into())).await;
    assert_eq!(text.unwrap()["type"], "error");
    assert_eq!(code, Some(1003));
    let (text, code) = raw_handshake(&s.url, Ws::Text(r#"{"workspace": null}"#.into())).await;
    assert!(text.unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("client_id"));
    assert_eq!(code, Some(1008));
    let (text, code) = raw_handshake(&s.url, Ws::Binary(Bytes::from_static(b"\x80"))).await;
    assert!(text.unwrap()["message"].as_str().unwrap().contains("JSON"));
    assert_eq!(code, Some(1003));
}

#[tokio::test]
async fn bad_token_is_refused_with_a_message() {
    let s = common::start().await;
    let err = Client::connect(
        &s.url,
        ConnectOptions {
            token: Some("not-a-jwt".into()),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.starts_with("Authentication error:")),
        "{err}"
    );
    let (text, code) = raw_handshake(
        &s.url,
        Ws::Text(r#"{"client_id":"x","token":"eyJhbGciOiJIUzI1NiJ9.e30.bad"}"#.into()),
    )
    .await;
    assert!(text.unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("Authentication error"));
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn duplicate_live_client_is_refused() {
    let s = common::start().await;
    let a = common::connect_as(&s.url, "dup").await;
    let err = common::join(&s.url, &a, "dup")
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.contains("Client already exists and is active")),
        "{err}"
    );
    still_works(&a).await;
}

#[tokio::test]
async fn slow_consumer_does_not_stall_senders_and_is_closed() {
    let s = common::start_with(RouterConfig {
        egress_limit_bytes: 256 * 1024,
        slow_consumer_grace: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let sender = common::connect_as(&s.url, "fast").await;
    let token = sender
        .manager_call("generate_token", vec![Value::Nil])
        .await
        .unwrap();
    // A raw socket that authenticates and then never reads.
    let ws_url = format!("{}/ws", s.url.replace("http://", "ws://"));
    let (mut stuck, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let auth = serde_json::json!({"client_id": "stuck", "workspace": sender.workspace(), "token": token.as_str()});
    stuck.send(Ws::Text(auth.to_string().into())).await.unwrap();
    assert!(
        common::eventually(T, || s
            .router
            .client(&format!("{}/stuck", sender.workspace()))
            .is_some())
        .await
    );

    let call = |i: usize| {
        let header = map([
            ("type", "method".into()),
            ("to", "stuck".into()),
            ("method", "services.x.f".into()),
            ("session", format!("s{i}").into()),
        ]);
        Bytes::from(encode_frame(
            &header,
            Some(&map([(
                "args",
                Value::Array(vec![Value::Binary(vec![7; 64 * 1024])]),
            )])),
        ))
    };
    // 600 x 64 KiB: more than the socket buffers and the 256 KiB queue can hold.
    for i in 0..600 {
        sender.send_frame(call(i)).unwrap();
    }
    let dropped = || {
        s.router
            .counters()
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        common::eventually(T, || dropped() > 0).await,
        "a full queue refuses frames instead of growing"
    );
    // The sender is not stalled: the manager answers it at once.
    still_works(&sender).await;
    // After the grace period the stuck connection is closed and cleaned up.
    let addr = format!("{}/stuck", sender.workspace());
    let mut i = 1000;
    let closed = common::eventually(Duration::from_secs(10), || {
        i += 1;
        let _ = sender.send_frame(call(i));
        s.router.client(&addr).is_none()
    })
    .await;
    assert!(closed, "slow consumer closed");
    assert!(
        s.router
            .counters()
            .slow_consumer_closes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    still_works(&sender).await;
}

#[tokio::test]
async fn ping_and_refresh_token_control_frames() {
    let s = common::start().await;
    let mut c = common::connect_as(&s.url, "ctl").await;
    c.send_text(r#"{"type":"ping"}"#).unwrap();
    assert_eq!(next_text(&mut c).await["type"], "pong");
    c.send_text(r#"{"type":"refresh_token"}"#).unwrap();
    let t = next_text(&mut c).await;
    assert_eq!(t["type"], "reconnection_token");
    let token = t["reconnection_token"].as_str().unwrap().to_owned();
    let ws = c.workspace().to_owned();
    drop(c);
    let again = Client::connect(
        &s.url,
        ConnectOptions {
            client_id: Some("ctl".into()),
            reconnection_token: Some(token.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.workspace(), ws);
    // The token is bound to its client id.
    let err = Client::connect(
        &s.url,
        ConnectOptions {
            client_id: Some("other".into()),
            reconnection_token: Some(token),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.contains("Client id mismatch")),
        "{err}"
    );
}

#[tokio::test]
async fn silent_handshake_and_idle_connections_are_closed() {
    let s = common::start_with(RouterConfig {
        auth_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    // No auth frame at all.
    let ws_url = format!("{}/ws", s.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let mut got = (None, None);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, ws.next()).await {
        match m {
            Ws::Text(t) => got.0 = Some(t.to_string()),
            Ws::Close(f) => {
                got.1 = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(got.0.unwrap().contains("Authentication payload timeout"));
    assert_eq!(got.1, Some(1008));
    // Authenticated, then silent.
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let mut idle_error = false;
    loop {
        match tokio::time::timeout(T, c.next_event())
            .await
            .expect("closed in time")
        {
            Some(Event::Text(v)) => {
                idle_error |= v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Idle timeout")
            }
            Some(Event::Closed(r)) => {
                assert_eq!(r.map(|(code, _)| code), Some(1001));
                break;
            }
            Some(_) => {}
            None => panic!("no close frame"),
        }
    }
    assert!(idle_error);
    assert!(common::eventually(T, || RouterControl::counters(&s.router).connections == 0).await);
}

#[tokio::test]
async fn a_flooding_client_is_closed_and_a_steady_one_is_not() {
    let s = common::start_with(RouterConfig {
        msg_rate: Some(rhizo_router::rate::MsgRate {
            per_second: 20,
            burst: 40,
        }),
        ..Default::default()
    })
    .await;
    // The handshake's own calls (built-in registration) fit in the burst.
    let steady = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let mut flood = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    for _ in 0..200 {
        if flood.send_text(r#"{"type":"ping"}"#).is_err() {
            break;
        }
    }
    let mut closed = None;
    while let Ok(Some(event)) = tokio::time::timeout(T, flood.next_event()).await {
        if let Event::Closed(reason) = event {
            closed = reason;
            break;
        }
    }
    let (code, text) = closed.expect("a close frame");
    assert_eq!(code, 1008);
    assert_eq!(text, "Rate limit exceeded");
    // 10 calls at 10/s stay under 20/s.
    for _ in 0..10 {
        still_works(&steady).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
