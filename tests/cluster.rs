//! The cluster bus across in-process nodes sharing the real Redis (issue 10): calls across
//! nodes, a reject for a client that left, reject-back from a stale directory entry, a
//! publish no node took, broadcasts, graceful shutdown, heartbeat expiry, Redis
//! connections killed, Redis unreachable, Redis stopped and restarted, and replies held
//! for a reconnecting client. The control plane across nodes is in `cluster_control.rs`;
//! the set-up is `common/cluster.rs`.

mod common;

use common::cluster::*;
use common::{connect_as, eventually, join};
use rhizo_client::Event;
use rhizo_interface::RouterControl;
use rhizo_protocol::value::{get_str, map};
use rmpv::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_nodes_and_fail_promptly_for_departed_clients() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("calls");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let caller = join(b.url(), &prov, "caller")
        .await
        .expect("token from A works on B");
    assert!(eventually(T, || knows(&b, &ws, "prov")).await);
    assert!(eventually(T, || knows(&a, &ws, "caller")).await);

    let target = format!("{ws}/prov");
    assert_eq!(
        echo(&caller, &target, "hello").await.unwrap(),
        Value::from("hello")
    );
    // And the other way: the provider on A calls the caller's built-in service on B.
    let back = prov
        .call(
            &format!("{ws}/caller"),
            "services.built-in.ping",
            vec!["x".into()],
            T,
        )
        .await;
    assert!(back.is_ok(), "{back:?}");
    let sent = RouterControl::counters(b.router()).bus_sent;
    assert!(sent >= 1, "B sent its call through the bus");

    // A stale directory entry: B believes a ghost is on A; A answers with a reject-back.
    let ghost = format!("{ws}/ghost");
    redis_cli(&[
        "PUBLISH",
        &format!("{p}:control"),
        &format!("join\na\n{ghost}"),
    ])
    .unwrap();
    assert!(eventually(T, || knows(&b, &ws, "ghost")).await);
    let started = std::time::Instant::now();
    let err = echo(&caller, &ghost, "x").await.unwrap_err();
    assert!(err.to_string().contains("is not connected"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reject-back is prompt"
    );

    // The provider leaves: B forgets it and refuses at once.
    drop(prov);
    assert!(eventually(T, || !knows(&b, &ws, "prov")).await);
    let started = std::time::Instant::now();
    let err = echo(&caller, &target, "x").await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("Peer {target} is not connected")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(caller);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_subscribers_on_other_nodes() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("broadcast");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let mut sub = connect_as(a.url(), "sub").await;
    sub.manager_call("subscribe", vec![Value::Array(vec!["note".into()])])
        .await
        .unwrap();
    let sender = join(b.url(), &sub, "sender").await.unwrap();
    let frame = rhizo_protocol::message::encode_frame(
        &map([("type", "note".into()), ("to", "*".into())]),
        Some(&map([("text", "hi".into())])),
    );
    // The nodes subscribe to the workspace channel in the background: retry until then.
    let mut got = None;
    let deadline = tokio::time::Instant::now() + T;
    while got.is_none() && tokio::time::Instant::now() < deadline {
        sender.send_frame(frame.clone().into()).unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                match sub.next_event().await {
                    Some(Event::Frame(m)) => return Some(m),
                    Some(_) => continue,
                    None => return None,
                }
            }
        });
        got = wait.await.ok().flatten();
    }
    let m = got.expect("the broadcast from B reached the subscriber on A");
    let field = |k: &str| {
        m.merged
            .as_map()
            .and_then(|e| e.iter().find(|(key, _)| key.as_str() == Some(k)))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    };
    assert_eq!(field("type").as_deref(), Some("note"));
    assert_eq!(field("text").as_deref(), Some("hi"));
    assert_eq!(
        field("from"),
        Some(format!("{}/sender", sub.workspace())),
        "stamped by B"
    );
    assert!(RouterControl::counters(a.router()).bus_received >= 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_clears_the_directory_at_once() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("shutdown");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let c = connect_as(a.url(), "gone").await;
    let ws = c.workspace().to_owned();
    assert!(eventually(T, || knows(&b, &ws, "gone")).await);
    let stopped = std::time::Instant::now();
    a.shutdown().await;
    // Well below the 6 s heartbeat TTL.
    assert!(
        eventually(Duration::from_millis(1500), || !knows(&b, &ws, "gone")).await,
        "B still routes to A's client {:?} after A's shutdown",
        stopped.elapsed()
    );
    assert_eq!(
        redis_cli(&["EXISTS", &format!("{p}:alive:a")]).as_deref(),
        Some("0")
    );
    drop(c);
    b.shutdown().await;
}

/// A node that vanished without a word (here: one that only ever announced a client and
/// has no `alive` key) is dropped by the periodic heartbeat check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_heartbeat_is_dropped() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("expiry");
    let b = node("b", &p).await;
    redis_cli(&[
        "PUBLISH",
        &format!("{p}:control"),
        "join
zombie
ws-z/c",
    ])
    .unwrap();
    assert!(eventually(T, || knows(&b, "ws-z", "c")).await);
    // Heartbeat 2 s: gone within one or two beats.
    assert!(
        eventually(Duration::from_secs(6), || !knows(&b, "ws-z", "c")).await,
        "the dead node's entries outlived its heartbeat"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_reconnects_after_redis_connections_are_killed() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("kill");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let caller = join(b.url(), &prov, "caller").await.unwrap();
    let target = format!("{ws}/prov");
    assert!(eventually(T, || knows(&b, &ws, "prov")).await);
    assert!(echo(&caller, &target, "before").await.is_ok());

    for kind in ["pubsub", "normal"] {
        redis_cli(&["CLIENT", "KILL", "TYPE", kind]).expect("CLIENT KILL");
        // Calls fail with a clear error or succeed while the bus reconnects; within a
        // few seconds they succeed again.
        let mut ok = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ok && tokio::time::Instant::now() < deadline {
            let r =
                tokio::time::timeout(Duration::from_millis(800), echo(&caller, &target, "after"))
                    .await;
            ok = matches!(r, Ok(Ok(_)));
            if !ok {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(
            ok,
            "cross-node calls work again after CLIENT KILL TYPE {kind}"
        );
        assert!(connected(&a) && connected(&b));
    }
    drop((prov, caller));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_leaves_a_working_single_node() {
    let _serial = SERIAL.lock().await;
    let p = prefix("unreachable");
    let a = node_with("a", &p, "redis://127.0.0.1:1/0").await;
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let caller = join(a.url(), &prov, "caller").await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        echo(&caller, &format!("{ws}/prov"), "local").await.unwrap(),
        Value::from("local")
    );
    let err = echo(&caller, &format!("{ws}/elsewhere"), "x")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cluster bus (Redis) is disconnected"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!connected(&a));
    drop((prov, caller));
    a.shutdown().await;
}

/// A node that holds a client in the directory but no longer listens (it died a moment
/// ago, its heartbeat has not expired yet): Redis reports that nobody took the call, and
/// the caller gets a clear error at once instead of waiting for the heartbeat to expire
/// or for its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_takes_fails_at_once() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("untaken");
    let b = node("b", &p).await;
    let caller = connect_as(b.url(), "caller").await;
    let ws = caller.workspace().to_owned();
    // "zombie" looks alive (its key is fresh) but nothing subscribes to its channel.
    redis_cli(&["SET", &format!("{p}:alive:zombie"), "1", "EX", "60"]).unwrap();
    redis_cli(&["SADD", &format!("{p}:nodes"), "zombie"]).unwrap();
    redis_cli(&[
        "PUBLISH",
        &format!("{p}:control"),
        &format!("join\nzombie\n{ws}/ghost"),
    ])
    .unwrap();
    assert!(eventually(T, || knows(&b, &ws, "ghost")).await);
    let before = RouterControl::counters(b.router()).bus_undelivered;
    let started = std::time::Instant::now();
    let err = echo(&caller, &format!("{ws}/ghost"), "x")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("left the cluster"),
        "the caller is told why: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(RouterControl::counters(b.router()).bus_undelivered > before);
    redis_cli(&["DEL", &format!("{p}:alive:zombie")]).unwrap();
    drop(caller);
    b.shutdown().await;
}

/// Redis stopped and started again (an empty one: no persistence): while it is down each
/// node keeps routing its own clients' calls and answers cross-node calls with a clear
/// error at once; when it is back the nodes reconnect, rewrite their directory entries and
/// cross-node calls work again. Nothing crashes; no call is left unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted() {
    let _serial = SERIAL.lock().await;
    let port = free_port();
    let redis = OwnRedis::start(port);
    let uri = format!("redis://127.0.0.1:{port}/0");
    let p = prefix("restart");
    let (a, b) = (
        node_with("a", &p, &uri).await,
        node_with("b", &p, &uri).await,
    );
    assert!(eventually(T, || connected(&a) && connected(&b)).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let near = join(a.url(), &prov, "near").await.unwrap();
    let far = join(b.url(), &prov, "far").await.unwrap();
    let target = format!("{ws}/prov");
    assert!(eventually(T, || knows(&b, &ws, "prov")).await);
    assert_eq!(
        echo(&far, &target, "before").await.unwrap(),
        Value::from("before")
    );

    redis.stop();
    assert!(eventually(T, || !connected(&a) && !connected(&b)).await);
    assert_eq!(
        echo(&near, &target, "local").await.unwrap(),
        Value::from("local"),
        "a node routes its own clients without Redis"
    );
    let started = std::time::Instant::now();
    let err = echo(&far, &target, "x").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cluster bus (Redis) is disconnected"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let redis = OwnRedis::start(port);
    assert!(
        eventually(Duration::from_secs(10), || connected(&a) && connected(&b)).await,
        "both nodes reconnect to the restarted Redis"
    );
    // The restarted Redis is empty: the nodes wrote their entries again.
    assert!(eventually(T, || knows(&b, &ws, "prov")).await);
    assert!(redis
        .cli(&["hexists", &format!("{p}:clients:a"), &target])
        .is_some_and(|v| v == "1"));
    let mut ok = None;
    for _ in 0..50 {
        match echo(&far, &target, "after").await {
            Ok(v) => {
                ok = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        ok,
        Some(Value::from("after")),
        "cross-node calls work again"
    );
    drop((prov, near, far));
    a.shutdown().await;
    b.shutdown().await;
}

/// A reply for a client that is reconnecting (its connection dropped; it comes back with
/// the same id, here on another node) is held for a few seconds and delivered when it is
/// back, instead of being dropped: hypha-rpc keeps its pending calls across a reconnect,
/// so a dropped reply would leave a call waiting for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_for_a_reconnecting_client_is_held_and_delivered() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("held");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let owner = connect_as(b.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let away = join(a.url(), &owner, "away").await.unwrap();
    assert!(eventually(T, || knows(&b, &ws, "away")).await);
    away.disconnect();
    drop(away);
    assert!(eventually(T, || !knows(&b, &ws, "away")).await);

    // A reply-like frame (no session) from B's client to the departed address.
    let header = map([
        ("type", "method".into()),
        ("to", format!("{ws}/away").into()),
        ("method", "held-note".into()),
    ]);
    let frame = rhizo_protocol::message::encode_frame(&header, None);
    owner.send_frame(frame.into()).unwrap();
    assert!(
        eventually(T, || RouterControl::counters(b.router()).held >= 1).await,
        "B holds the frame for the departed client"
    );

    // The client comes back, on the other node.
    let mut back = join(a.url(), &owner, "away").await.unwrap();
    let got = tokio::time::timeout(T, async {
        while let Some(e) = back.next_event().await {
            if let Event::Frame(m) = e {
                if get_str(&m.header, "method") == Some("held-note") {
                    return Some(m);
                }
            }
        }
        None
    })
    .await
    .expect("the held frame arrives after the reconnect")
    .expect("connection open");
    assert_eq!(
        get_str(&got.header, "from"),
        Some(format!("{ws}/owner").as_str())
    );

    // A frame for an address that was never connected is still refused at once.
    let header = map([
        ("type", "method".into()),
        ("to", format!("{ws}/never-here").into()),
        ("method", "x.resolve".into()),
    ]);
    let held = RouterControl::counters(b.router()).held;
    owner
        .send_frame(rhizo_protocol::message::encode_frame(&header, None).into())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(RouterControl::counters(b.router()).held, held);
    drop((owner, back));
    a.shutdown().await;
    b.shutdown().await;
}
