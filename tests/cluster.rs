//! Several in-process nodes sharing the real Redis on 127.0.0.1:6379 (started here if it is
//! down), each test under its own `--redis-prefix` (issue 10, stage A): calls across
//! nodes, a reject for a client that left, reject-back from a stale directory entry,
//! broadcasts across nodes, graceful shutdown, Redis connections killed, Redis unreachable;
//! and the control plane across nodes (stage B): services found, listed and called from
//! another node, unregistration, a node's shutdown and late start, revocations, workspace
//! records created, changed and deleted on one node and seen on another.
//!
//! The tests of this file run one at a time: killing Redis connections with `CLIENT KILL
//! TYPE …` would also cut the other tests' nodes.

mod common;

use common::{connect_as, eventually, join};
use rhizo_client::{handler, Client, ClientError, Event};
use rhizo_interface::RouterControl;
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);
const REDIS: &str = "redis://127.0.0.1:6379/0";
const ROOT: &str = "Kq7vR2xWm9pLz4tN8bYc3hJf6dGs1aEu";

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
    node_args(id, prefix, uri, &[]).await
}

/// [`node_with`] with further command-line flags.
async fn node_args(id: &str, prefix: &str, uri: &str, extra: &[&str]) -> rhizo::Server {
    let mut args = vec![
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
        "--root-token",
        ROOT,
    ];
    args.extend_from_slice(extra);
    let settings = rhizo::Settings::parse_from(args).unwrap();
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

/// The ids `list_services` (with `query`) returns to `c`.
async fn listed(c: &Client, query: Value) -> Vec<String> {
    match c.manager_call("list_services", vec![query]).await {
        Ok(Value::Array(items)) => items
            .iter()
            .filter_map(|r| get_str(r, "id").map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Polls `list_services` until `id` is listed to `c` (or, with `present` false, is not).
async fn listed_eventually(
    c: &Client,
    query: Value,
    id: &str,
    present: bool,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if listed(c, query.clone()).await.iter().any(|x| x == id) == present {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `get_service(id)` for `c`, then `echo(v)` through the object.
async fn echo_through_object(c: &Client, id: &str, v: &str) -> Result<Value, String> {
    let svc = c
        .manager_call("get_service", vec![id.into()])
        .await
        .map_err(|e| e.to_string())?;
    let f = get(&svc, "echo").ok_or("the object has no echo")?;
    let target = get_str(f, "_rtarget").ok_or("no _rtarget")?.to_owned();
    let method = get_str(f, "_rmethod").ok_or("no _rmethod")?.to_owned();
    c.call(&target, &method, vec![v.into()], T)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_one_node_are_found_listed_and_called_from_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("registry");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let id = format!("{ws}/prov:svc");
    let caller = join(b.url(), &prov, "caller").await.unwrap();
    let stranger = connect_as(b.url(), "stranger").await;

    assert!(
        listed_eventually(&caller, Value::Nil, &id, true, T).await,
        "B lists A's service"
    );
    assert!(listed(&caller, Value::Nil)
        .await
        .contains(&format!("{ws}/prov:built-in")));
    assert_eq!(
        echo_through_object(&caller, "prov:svc", "same ws").await,
        Ok(Value::from("same ws"))
    );
    // A public service of another workspace, from a client of B's own workspace.
    assert_eq!(
        echo_through_object(&stranger, &id, "other ws").await,
        Ok(Value::from("other ws"))
    );
    let info = stranger
        .manager_call("get_service_info", vec![id.as_str().into()])
        .await
        .unwrap();
    assert_eq!(get_str(&info, "id"), Some(id.as_str()));
    let clients = caller.manager_call("list_clients", vec![]).await.unwrap();
    let ids: Vec<&str> = clients
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| get_str(c, "id"))
        .collect();
    assert!(ids.contains(&format!("{ws}/prov").as_str()), "{ids:?}");
    assert!(ids.contains(&format!("{ws}/caller").as_str()), "{ids:?}");

    prov.manager_call("unregister_service", vec!["svc".into()])
        .await
        .unwrap();
    assert!(
        listed_eventually(&caller, Value::Nil, &id, false, T).await,
        "unregistered on A, gone on B"
    );
    let err = echo_through_object(&stranger, &id, "x").await.unwrap_err();
    assert!(err.contains("not found"), "{err}");
    drop((prov, caller, stranger));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutdown_removes_its_services_and_tells_subscribers_at_once() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("node-left");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let id = format!("{ws}/prov:svc");
    let mut sub = join(b.url(), &prov, "sub").await.unwrap();
    sub.manager_call(
        "subscribe",
        vec![Value::Array(vec!["client_disconnected".into()])],
    )
    .await
    .unwrap();
    assert!(listed_eventually(&sub, Value::Nil, &id, true, T).await);
    let stopped = std::time::Instant::now();
    a.shutdown().await;
    assert!(
        listed_eventually(&sub, Value::Nil, &id, false, Duration::from_millis(1500)).await,
        "B still lists A's service {:?} after A's shutdown",
        stopped.elapsed()
    );
    let event = tokio::time::timeout(T, async {
        loop {
            match sub.next_event().await {
                Some(Event::Frame(m)) => {
                    let kind = get_str(&m.merged, "type").map(str::to_owned);
                    if kind.as_deref() == Some("client_disconnected") {
                        return Some(m.merged);
                    }
                }
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .expect("the subscriber on B heard client_disconnected");
    let data = get(&event, "data").expect("data");
    assert_eq!(get_str(data, "workspace"), Some(ws.as_str()));
    drop((prov, sub));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_sees_the_existing_services() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("late");
    let a = node("a", &p).await;
    let prov = provider(a.url(), "prov").await;
    let id = format!("{}/prov:svc", prov.workspace());
    let b = node("b", &p).await;
    let c = connect_as(b.url(), "late-caller").await;
    assert!(
        listed_eventually(&c, "*".into(), &id, true, T).await,
        "B, started after the registration, lists it"
    );
    assert_eq!(
        echo_through_object(&c, &id, "late").await,
        Ok(Value::from("late"))
    );
    drop((prov, c));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_closes_its_session_on_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("revoke");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let token = common::mint(&owner).await.unwrap();
    let mut held = rhizo_client::Client::connect(
        a.url(),
        rhizo_client::ConnectOptions {
            client_id: Some("held".into()),
            workspace: Some(ws.clone()),
            token: Some(token.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let admin_token = owner
        .manager_call(
            "generate_token",
            vec![map([("permission", "admin".into())])],
        )
        .await
        .unwrap();
    let admin = rhizo_client::Client::connect(
        b.url(),
        rhizo_client::ConnectOptions {
            client_id: Some("admin".into()),
            workspace: Some(ws.clone()),
            token: admin_token.as_str().map(str::to_owned),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    admin
        .manager_call("revoke_token", vec![token.as_str().into()])
        .await
        .unwrap();
    let closed = tokio::time::timeout(T, async {
        while let Some(e) = held.next_event().await {
            if matches!(e, Event::Closed(_)) {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the session on A opened with the token was closed"
    );
    assert!(eventually(T, || !knows(&b, &ws, "held")).await);
    drop((owner, admin));
    a.shutdown().await;
    b.shutdown().await;
}

/// Client `cid` in workspace `ws` of `url`, with `token`.
async fn connect_to(url: &str, cid: &str, ws: &str, token: &str) -> Result<Client, ClientError> {
    let opts = rhizo_client::ConnectOptions {
        client_id: Some(cid.into()),
        workspace: Some(ws.into()),
        token: Some(token.into()),
        ..Default::default()
    };
    Client::connect(url, opts).await
}

/// Retries `connect_to` until it succeeds (the record travels in the background).
async fn connect_eventually(url: &str, cid: &str, ws: &str, token: &str) -> Client {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match connect_to(url, cid, ws, token).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("not admitted: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_records_cross_nodes() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("workspaces");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let ws = "shared-ws";
    let root_a = connect_to(a.url(), "root-a", "ws-user-root", ROOT)
        .await
        .unwrap();
    let root_b = connect_to(b.url(), "root-b", "ws-user-root", ROOT)
        .await
        .unwrap();
    let created = root_a
        .manager_call(
            "create_workspace",
            vec![map([("id", ws.into()), ("persistent", true.into())])],
        )
        .await
        .unwrap();
    assert_eq!(get_str(&created, "id"), Some(ws));
    let token = root_a
        .manager_call(
            "generate_token",
            vec![map([
                ("workspace", ws.into()),
                ("permission", "read_write".into()),
            ])],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();

    // Created on A: B admits a client with a token for it, lists it and describes it.
    let member = connect_eventually(b.url(), "member", ws, &token).await;
    let listed = root_b
        .manager_call("list_workspaces", vec![])
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| get_str(w, "id"))
        .collect();
    assert!(ids.contains(&ws), "{ids:?}");
    let info = root_b
        .manager_call("get_workspace_info", vec![ws.into()])
        .await
        .unwrap();
    assert_eq!(
        get(&info, "persistent").and_then(Value::as_bool),
        Some(true)
    );
    // The bookmark made in root's personal workspace travelled too.
    let root_info = root_b
        .manager_call("get_workspace_info", vec!["ws-user-root".into()])
        .await
        .unwrap();
    assert!(format!("{root_info:?}").contains(ws), "{root_info:?}");

    // set_env on A is read by get_env on B.
    let writer = connect_to(a.url(), "writer", ws, &token).await.unwrap();
    writer
        .manager_call("set_env", vec!["colour".into(), "blue".into()])
        .await
        .unwrap();
    let mut seen = Value::Nil;
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        if let Ok(v) = member.manager_call("get_env", vec!["colour".into()]).await {
            seen = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Value::from("blue"));

    // Deleted on A: B refuses new admissions and no longer describes it.
    root_a
        .manager_call("delete_workspace", vec![ws.into()])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    let mut refused = None;
    while refused.is_none() && tokio::time::Instant::now() < deadline {
        match connect_to(b.url(), "late", ws, &token).await {
            Err(e) => refused = Some(e.to_string()),
            Ok(c) => {
                drop(c);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let refused = refused.expect("B refuses the deleted workspace");
    assert!(refused.contains("does not exist"), "{refused}");
    assert!(root_b
        .manager_call("get_workspace_info", vec![ws.into()])
        .await
        .is_err());
    drop((root_a, root_b, member, writer));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_and_temporary_workspaces() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("ws-late");
    let a = node("a", &p).await;
    let root_a = connect_to(a.url(), "root-a", "ws-user-root", ROOT)
        .await
        .unwrap();
    root_a
        .manager_call(
            "create_workspace",
            vec![map([
                ("id", "temp-ws".into()),
                ("persistent", false.into()),
            ])],
        )
        .await
        .unwrap();
    let token = root_a
        .manager_call(
            "generate_token",
            vec![map([
                ("workspace", "temp-ws".into()),
                ("permission", "read_write".into()),
            ])],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();
    let on_a = connect_to(a.url(), "on-a", "temp-ws", &token)
        .await
        .unwrap();
    // B starts later: A's snapshot brings the temporary workspace.
    let b = node("b", &p).await;
    let on_b = connect_eventually(b.url(), "on-b", "temp-ws", &token).await;
    // The client on B leaves: A (the origin, with a client in it) keeps it on B.
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = connect_to(b.url(), "again", "temp-ws", &token).await;
    assert!(again.is_ok(), "B keeps A's temporary workspace");
    drop(again);
    // A's last client leaves: A unloads it and B, with nobody in it, drops it too.
    drop(on_a);
    let deadline = tokio::time::Instant::now() + T;
    let mut gone = false;
    while !gone && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gone = root_a
            .manager_call("get_workspace_info", vec!["temp-ws".into()])
            .await
            .is_err()
            && connect_to(b.url(), "probe", "temp-ws", &token)
                .await
                .is_err();
    }
    assert!(gone, "unloaded on both nodes");
    drop(root_a);
    a.shutdown().await;
    b.shutdown().await;
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

/// A Redis server of this test's own on a free port, so that it can be stopped and
/// started again without touching the shared one.
struct OwnRedis {
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ])
            .status()
            .expect("redis-server runs");
        assert!(status.success());
        let r = OwnRedis { port };
        for _ in 0..100 {
            if r.cli(&["ping"]).as_deref() == Some("PONG") {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not come up");
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let port = self.port.to_string();
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        redis_cli(&all)
    }

    /// Stops the server (no save); the port is free again afterwards.
    fn stop(&self) {
        let _ = self.cli(&["shutdown", "nosave"]);
        for _ in 0..100 {
            if self.cli(&["ping"]).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// The per-workspace client quota counts the clients of every node: with a limit of two,
/// a workspace with one client on each node refuses a third on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_client_quota_holds_across_nodes() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("quota");
    let limit = ["--max-clients-per-workspace", "2"];
    let a = node_args("a", &p, REDIS, &limit).await;
    let b = node_args("b", &p, REDIS, &limit).await;
    assert!(eventually(T, || connected(&a) && connected(&b)).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let second = join(b.url(), &owner, "second").await.unwrap();
    assert!(eventually(T, || knows(&a, &ws, "second") && knows(&b, &ws, "owner")).await);
    for url in [a.url(), b.url()] {
        let err = join(url, &owner, "third")
            .await
            .err()
            .expect("a third client is refused");
        assert!(
            err.to_string().contains("Too many clients in workspace"),
            "{err}"
        );
    }
    drop(second);
    assert!(eventually(T, || !knows(&a, &ws, "second")).await);
    let third = join(b.url(), &owner, "third").await;
    assert!(
        third.is_ok(),
        "room again once a client left: {:?}",
        third.err()
    );
    drop((owner, third));
    a.shutdown().await;
    b.shutdown().await;
}

/// The singleton rule holds across nodes: a singleton service registered on one node
/// keeps another client on another node from registering the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_on_one_node_binds_the_name_on_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("singleton");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let echo = handler(|call| async move { Ok(call.args.first().cloned().unwrap_or(Value::Nil)) });
    owner
        .register_service(
            "solo",
            map([("singleton", true.into())]),
            vec![("echo", echo.clone())],
        )
        .await
        .unwrap();
    let other = join(b.url(), &owner, "other").await.unwrap();
    let mut refused = None;
    for _ in 0..50 {
        match other
            .register_service(
                "solo",
                map([("visibility", "protected".into())]),
                vec![("echo", echo.clone())],
            )
            .await
        {
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
            // The record had not reached B yet: undo and try again.
            Ok(_) => {
                let _ = other
                    .manager_call(
                        "unregister_service",
                        vec![format!("{ws}/other:solo").into()],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let refused = refused.expect("B refuses the name of A's singleton");
    assert!(
        refused.contains("singleton service with the name 'solo'"),
        "{refused}"
    );
    drop((owner, other));
    a.shutdown().await;
    b.shutdown().await;
}
