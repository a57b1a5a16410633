//! Smoke test: the scenarios against an in-process rhizo server on 127.0.0.1:0, echo and
//! fan-out across two in-process nodes sharing the Redis on 127.0.0.1:6379, and echo over
//! the bare relay, each run short and checked for zero errors and exact counts.

use rhizo_loadtest::connect::ConnectConfig;
use rhizo_loadtest::echo::EchoConfig;
use rhizo_loadtest::fanout::FanoutConfig;
use rhizo_loadtest::mixed::MixedConfig;
use rhizo_loadtest::{relay, RunContext, Scenario, Target};
use std::sync::Arc;
use std::time::Duration;

/// Starts router + control plane + HTTP on an ephemeral loopback port through the same
/// builder as `rhizo serve` (state in memory), with the `extra` flags; returns the server
/// and its ws URL.
async fn start_with(id: &str, extra: &[&str]) -> (rhizo::Server, String) {
    let mut args = vec![
        "rhizo",
        "--port",
        "0",
        "--server-id",
        id,
        "--jwt-secret",
        "loadtest-smoke-secret",
    ];
    args.extend_from_slice(extra);
    let settings = rhizo::Settings::parse_from(args).unwrap();
    let server = rhizo::Server::builder(settings)
        .in_memory()
        .bind()
        .await
        .unwrap();
    let url = format!("{}/ws", server.url().replace("http://", "ws://"));
    (server, url)
}

/// A single server.
async fn start_server() -> (rhizo::Server, String) {
    start_with("smoke", &[]).await
}

/// One node of a cluster: `--redis-uri` on the local Redis (database 0) with the cluster's
/// own key prefix.
async fn start_node(prefix: &str, id: &str) -> (rhizo::Server, String) {
    let redis = [
        "--redis-uri",
        "redis://127.0.0.1:6379/0",
        "--redis-prefix",
        prefix,
    ];
    start_with(id, &redis).await
}

fn assert_clean(r: &rhizo_loadtest::report::RunResult) {
    assert_eq!(r.errors, 0, "{}", r.summary());
    assert!(r.error_kinds.is_empty(), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_run_clean_against_rhizo() {
    let (_server, url) = start_server().await;
    let target = Target::parse(&format!("rhizo={url}")).unwrap();
    let ctx = RunContext::default();

    let echo = Scenario::Echo(EchoConfig {
        pairs: 2,
        in_flight: 16,
        payload: 1000,
        calls: Some(400),
        duration: Duration::from_secs(20),
        ..Default::default()
    });
    let r = tokio::time::timeout(Duration::from_secs(20), echo.run(&target, &ctx))
        .await
        .expect("echo in time")
        .unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 400, "{}", r.summary());
    assert_eq!(r.latency.count, 400);
    assert!(r.throughput_per_s > 0.0);
    assert_eq!(r.details["late_replies"], 0);

    // A payload larger than rhizo's frame limit is clamped to fit and still echoed.
    let big = Scenario::Echo(EchoConfig {
        pairs: 1,
        in_flight: 2,
        payload: 3 << 20,
        max_frame: 1 << 20,
        calls: Some(4),
        ..Default::default()
    });
    let r = big.run(&target, &ctx).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 4);
    assert_eq!(r.details["payload_bytes"], (1 << 20) - 1024);

    let connect = Scenario::Connect(ConnectConfig {
        clients: 12,
        concurrency: 12,
        verify: 4,
        ..Default::default()
    });
    let r = connect.run(&target, &ctx).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 12);
    assert_eq!(r.details["verified_services"], 4);

    let shared = Scenario::Connect(ConnectConfig {
        clients: 5,
        concurrency: 5,
        same_workspace: true,
        verify: 5,
        ..Default::default()
    });
    let r = shared.run(&target, &ctx).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 5);

    let fanout = Scenario::Fanout(FanoutConfig {
        subscribers: 6,
        rate: 500.0,
        messages: Some(50),
        duration: Duration::from_secs(5),
        ..Default::default()
    });
    let r = fanout.run(&target, &ctx).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 50, "{}", r.summary());
    assert_eq!(r.details["deliveries"], 300);
    assert_eq!(r.latency.count, 50);

    let mixed = Scenario::Mixed(MixedConfig {
        workspaces: 2,
        clients: 2,
        rate: 300.0,
        duration: Duration::from_millis(700),
        cross: 0.5,
        protected: 0.5,
        resolve: 0.2,
        ..Default::default()
    });
    let r = mixed.run(&target, &ctx).await.unwrap();
    assert_clean(&r);
    assert!(r.ops > 100, "{}", r.summary());
    assert!(
        r.details["refused_as_expected"].as_u64().unwrap() > 0,
        "{}",
        r.summary()
    );
    assert_eq!(r.details["protected_leaks"], 0);
}

/// Two nodes sharing Redis under a prefix of their own: echo with every caller on node b
/// and every provider on node a, then fan-out from a publisher on a to subscribers on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_run_clean_across_two_nodes() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("lt-smoke-{}-{nanos}", std::process::id());
    let (a, url_a) = start_node(&prefix, "a").await;
    let (b, url_b) = start_node(&prefix, "b").await;
    let bus = |s: &rhizo::Server| {
        let c = rhizo_interface::RouterControl::counters(s.router());
        (c.bus_sent, c.bus_received)
    };
    let (a0, b0) = (bus(&a), bus(&b));
    let ctx = RunContext::default();

    let cross = Target::parse(&format!("cross={url_a},{url_b}")).unwrap();
    let echo = Scenario::Echo(EchoConfig {
        pairs: 2,
        in_flight: 16,
        payload: 1000,
        calls: Some(400),
        duration: Duration::from_secs(20),
        ..Default::default()
    });
    let r = tokio::time::timeout(Duration::from_secs(30), echo.run(&cross, &ctx))
        .await
        .expect("cross-node echo in time")
        .unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 400, "{}", r.summary());
    assert_eq!(r.latency.count, 400);
    assert_eq!(r.details["late_replies"], 0);
    assert_eq!(r.details["caller_nodes"], serde_json::json!([url_b, url_b]));
    let by = |k: &str| r.details[k].as_u64().unwrap();
    assert_eq!(by("resolved_by_get_service") + by("resolved_by_address"), 2);
    // The calls went out of b and their replies out of a through Redis.
    let (a1, b1) = (bus(&a), bus(&b));
    assert!(b1.0 - b0.0 >= 400 && a1.1 - a0.1 >= 400, "{b0:?} {b1:?}");
    assert!(a1.0 - a0.0 >= 400 && b1.1 - b0.1 >= 400, "{a0:?} {a1:?}");

    // Subscribers on both nodes: 3 on b, 2 on a (the publisher's).
    let spread = Target::parse(&format!("spread={url_a},{url_b},{url_a}")).unwrap();
    let fanout = Scenario::Fanout(FanoutConfig {
        subscribers: 5,
        rate: 500.0,
        messages: Some(50),
        duration: Duration::from_secs(5),
        ..Default::default()
    });
    let r = tokio::time::timeout(Duration::from_secs(30), fanout.run(&spread, &ctx))
        .await
        .expect("cross-node fan-out in time")
        .unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 50, "{}", r.summary());
    assert_eq!(r.details["deliveries"], 250);
    assert_eq!(r.latency.count, 50);
    assert_eq!(r.details["subscriber_nodes"][&url_b], 3);
    assert_eq!(r.details["subscriber_nodes"][&url_a], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_the_relay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::parse(&format!("relay://{}", listener.local_addr().unwrap())).unwrap();
    let stats = Arc::new(relay::RelayStats::default());
    let task = tokio::spawn(relay::serve(listener, stats.clone()));
    let echo = Scenario::Echo(EchoConfig {
        pairs: 2,
        in_flight: 8,
        payload: 64 << 10,
        calls: Some(300),
        ..Default::default()
    });
    let r = echo.run(&target, &RunContext::default()).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 300);
    assert_eq!(r.details["mode"], "relay");
    assert_eq!(stats.pairs.load(std::sync::atomic::Ordering::Relaxed), 2);
    // A second run pairs afresh.
    let r = echo.run(&target, &RunContext::default()).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.ops, 300);
    task.abort();
}

/// The Rust client describes its functions with the server's `public_base_url` as
/// `_rserver` (and a raw connection does too): a peer that sees another URL there (the
/// reference's manager) proxies the method through itself instead of passing it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn described_methods_carry_the_server_url() {
    use rhizo_client::{handler, Client, ConnectOptions};
    use rhizo_protocol::value::{get, get_str, map};
    let (_server, url) = start_server().await;
    let base = url.trim_end_matches("/ws").replace("ws://", "http://");
    let provider = Client::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    let sid = provider
        .register_service(
            "svc",
            map([("visibility", "public".into())]),
            vec![("f", handler(|_| async { Ok(1.into()) }))],
        )
        .await
        .unwrap();
    let mut raw = rhizo_client::raw::RawConnection::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    let raw_sid = raw
        .register_service("rsvc", map([("visibility", "public".into())]), &["g"])
        .await
        .unwrap();
    let (ws, responder) = raw.into_parts();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(serve(ws, responder, stopped));
    let consumer = Client::connect(&url, ConnectOptions::default())
        .await
        .unwrap();
    for (id, member) in [(sid, "f"), (raw_sid, "g")] {
        let svc = consumer
            .manager_call("get_service", vec![id.as_str().into()])
            .await
            .unwrap();
        let m = get(&svc, member).unwrap();
        assert_eq!(get_str(m, "_rserver"), Some(base.as_str()), "{id}");
        assert!(id.starts_with(get_str(m, "_rtarget").unwrap()), "{id}");
    }
    let _ = stop.send(true);
    let _ = serving.await;
}

/// Answers built-in calls on a raw connection until told to stop.
async fn serve(
    mut ws: rhizo_client::raw::WsStream,
    responder: rhizo_client::raw::Responder,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            m = ws.next() => match m {
                Some(Ok(Message::Binary(f))) => {
                    if let Some(a) = responder.answer(&f) {
                        ws.send(Message::Binary(a)).await.unwrap();
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}
