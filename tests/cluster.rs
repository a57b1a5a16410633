//! Several in-process nodes sharing the real Redis on 127.0.0.1:6379 (started here if it is
//! down), each test under its own `--redis-prefix` (issue 10, stage A): calls across
//! nodes, a reject for a client that left, reject-back from a stale directory entry,
//! broadcasts across nodes, graceful shutdown, Redis connections killed, Redis unreachable.
//!
//! The tests of this file run one at a time: killing Redis connections with `CLIENT KILL
//! TYPE …` would also cut the other tests' nodes.

mod common;

use common::{connect_as, eventually, join};
use rhizo_client::{handler, Client, ClientError, Event};
use rhizo_interface::RouterControl;
use rhizo_protocol::value::map;
use rmpv::Value;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);
const REDIS: &str = "redis://127.0.0.1:6379/0";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn redis_cli(args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Redis on 6379, started (without persistence) if it is not running.
async fn ensure_redis() {
    if redis_cli(&["ping"]).as_deref() == Some("PONG") {
        return;
    }
    let _ = Command::new("redis-server")
        .args(["--daemonize", "yes", "--port", "6379", "--save", ""])
        .status();
    assert!(
        eventually(T, || redis_cli(&["ping"]).as_deref() == Some("PONG")).await,
        "Redis did not start"
    );
}

fn prefix(test: &str) -> String {
    format!("rhizo-test-{test}-{}", std::process::id())
}

/// A node `id` of the cluster under `prefix`, reaching Redis at `uri`.
async fn node_with(id: &str, prefix: &str, uri: &str) -> rhizo::Server {
    let settings = rhizo::Settings::parse_from([
        "rhizo",
        "--port",
        "0",
        "--server-id",
        id,
        "--jwt-secret",
        "cluster-test-secret",
        "--redis-uri",
        uri,
        "--redis-prefix",
        prefix,
    ])
    .unwrap();
    rhizo::Server::builder(settings)
        .in_memory()
        .control_config(|c| c.public_base_url = c.local_base_url.clone())
        .bind()
        .await
        .unwrap()
}

/// A connected node.
async fn node(id: &str, prefix: &str) -> rhizo::Server {
    let s = node_with(id, prefix, REDIS).await;
    assert!(
        eventually(T, || connected(&s)).await,
        "node {id} did not connect to Redis"
    );
    s
}

fn connected(s: &rhizo::Server) -> bool {
    RouterControl::counters(s.router()).bus_connected == 1
}

fn knows(s: &rhizo::Server, ws: &str, cid: &str) -> bool {
    s.router().bus().locate(ws, cid).is_some()
}

async fn provider(url: &str, cid: &str) -> Client {
    let c = connect_as(url, cid).await;
    let echo = handler(|call| async move { Ok(call.args.first().cloned().unwrap_or(Value::Nil)) });
    c.register_service(
        "svc",
        map([("visibility", "public".into())]),
        vec![("echo", echo)],
    )
    .await
    .unwrap();
    c
}

async fn echo(caller: &Client, to: &str, v: &str) -> Result<Value, ClientError> {
    caller
        .call(to, "services.svc.echo", vec![v.into()], T)
        .await
}

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
