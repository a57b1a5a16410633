//! Holes in the manager's trust boundary, each driven the way an attacker would: raw frames
//! from an anonymous client (issue "control plane as services", item 5).

mod common;

use bytes::Bytes;
use rhizo_client::{handler, Event};
use rhizo_protocol::message::{encode_frame, Message};
use rhizo_protocol::value::{get_str, map};
use rmpv::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// An anonymous client sends the manager a call whose explicit promise names a protected
/// method of a client in another workspace as its `resolve`/`reject`/`heartbeat`. The
/// manager must not call it (the reference server does), and the attacker learns nothing
/// either: its promise gets no answer.
#[tokio::test]
async fn a_promise_cannot_make_the_manager_call_another_client() {
    let s = common::start().await;
    let victim = common::connect_as(&s.url, "victim").await;
    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    let open = handler(move |_call| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(Value::from("opened"))
        }
    });
    // Protected (the default): only the victim's own workspace may call it.
    victim
        .register_service("vault", Value::Nil, vec![("open", open)])
        .await
        .unwrap();

    let mut attacker = common::connect_as(&s.url, "attacker").await;
    assert_ne!(attacker.workspace(), victim.workspace());
    let victim_addr = format!("{}/victim", victim.workspace());
    let cb = |m: &str| {
        map([
            ("_rtype", "method".into()),
            ("_rtarget", victim_addr.as_str().into()),
            ("_rmethod", m.into()),
            ("_rpromise", "*".into()),
        ])
    };
    for method in ["services.default.echo", "services.default.no_such_method"] {
        let header = map([
            ("type", "method".into()),
            ("to", s.manager.addr().into()),
            ("method", method.into()),
            ("session", "attack".into()),
        ]);
        let extra = map([
            ("args", Value::Array(vec!["x".into()])),
            (
                "promise",
                map([
                    ("resolve", cb("services.vault.open")),
                    ("reject", cb("services.vault.open")),
                    ("heartbeat", cb("services.vault.open")),
                    ("interval", 0.05.into()),
                ]),
            ),
        ]);
        attacker
            .send_frame(Bytes::from(encode_frame(&header, Some(&extra))))
            .unwrap();
    }
    // The same call with the attacker's own session as its promise is answered, so the
    // manager did process the frames above by the time this reply arrives.
    let reply = attacker.manager_call("echo", vec!["ok".into()]).await;
    assert_eq!(reply.unwrap().as_str(), Some("ok"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "the manager called a protected method of another workspace's client"
    );
    // Nothing addressed to the attacker's forged promise came back either.
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(100), attacker.next_event()).await
    {
        if let Event::Frame(Message { merged, .. }) = ev {
            let m = get_str(&merged, "method").unwrap_or_default();
            assert!(!m.contains("vault"), "unexpected frame {m}");
        }
    }
    // The victim's service still works for its own workspace.
    let again = victim
        .call(&victim_addr, "services.vault.open", vec![], T)
        .await;
    assert_eq!(again.unwrap().as_str(), Some("opened"));
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}
