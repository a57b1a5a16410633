//! Set-up for the multi-node tests (`tests/cluster.rs`, `tests/cluster_control.rs`):
//! in-process nodes sharing the real Redis on 127.0.0.1:6379 (started if it is down), each
//! test under its own `--redis-prefix`, a Redis server of a test's own to stop and start,
//! and the client calls the tests share. The tests of each file run one at a time
//! ([`SERIAL`]): killing Redis connections with `CLIENT KILL TYPE …` would also cut the other
//! tests' nodes (cargo runs the test binaries themselves one after another).

use super::{connect_as, eventually};
use rhizo_client::{handler, Client, ClientError};
use rhizo_interface::RouterControl;
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::process::Command;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(5);
pub const REDIS: &str = "redis://127.0.0.1:6379/0";
pub const ROOT: &str = "Kq7vR2xWm9pLz4tN8bYc3hJf6dGs1aEu";

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn redis_cli(args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Redis on 6379, started (without persistence) if it is not running.
pub async fn ensure_redis() {
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

pub fn prefix(test: &str) -> String {
    format!("rhizo-test-{test}-{}", std::process::id())
}

/// A node `id` of the cluster under `prefix`, reaching Redis at `uri`.
pub async fn node_with(id: &str, prefix: &str, uri: &str) -> rhizo::Server {
    node_args(id, prefix, uri, &[]).await
}

/// [`node_with`] with further command-line flags.
pub async fn node_args(id: &str, prefix: &str, uri: &str, extra: &[&str]) -> rhizo::Server {
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
pub async fn node(id: &str, prefix: &str) -> rhizo::Server {
    let s = node_with(id, prefix, REDIS).await;
    assert!(
        eventually(T, || connected(&s)).await,
        "node {id} did not connect to Redis"
    );
    s
}

pub fn connected(s: &rhizo::Server) -> bool {
    RouterControl::counters(s.router()).bus_connected == 1
}

pub fn knows(s: &rhizo::Server, ws: &str, cid: &str) -> bool {
    s.router().bus().locate(ws, cid).is_some()
}

pub async fn provider(url: &str, cid: &str) -> Client {
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

pub async fn echo(caller: &Client, to: &str, v: &str) -> Result<Value, ClientError> {
    caller
        .call(to, "services.svc.echo", vec![v.into()], T)
        .await
}

/// The ids `list_services` (with `query`) returns to `c`.
pub async fn listed(c: &Client, query: Value) -> Vec<String> {
    match c.manager_call("list_services", vec![query]).await {
        Ok(Value::Array(items)) => items
            .iter()
            .filter_map(|r| get_str(r, "id").map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Polls `list_services` until `id` is listed to `c` (or, with `present` false, is not).
pub async fn listed_eventually(
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
pub async fn echo_through_object(c: &Client, id: &str, v: &str) -> Result<Value, String> {
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

/// Client `cid` in workspace `ws` of `url`, with `token`.
pub async fn connect_to(
    url: &str,
    cid: &str,
    ws: &str,
    token: &str,
) -> Result<Client, ClientError> {
    let opts = rhizo_client::ConnectOptions {
        client_id: Some(cid.into()),
        workspace: Some(ws.into()),
        token: Some(token.into()),
        ..Default::default()
    };
    Client::connect(url, opts).await
}

/// Retries `connect_to` until it succeeds (the record travels in the background).
pub async fn connect_eventually(url: &str, cid: &str, ws: &str, token: &str) -> Client {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match connect_to(url, cid, ws, token).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("not admitted: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A Redis server of this test's own on a free port, so that it can be stopped and
/// started again without touching the shared one.
pub struct OwnRedis {
    pub port: u16,
}

impl OwnRedis {
    pub fn start(port: u16) -> Self {
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

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let port = self.port.to_string();
        let mut all = vec!["-p", &port];
        all.extend_from_slice(args);
        redis_cli(&all)
    }

    /// Stops the server (no save); the port is free again afterwards.
    pub fn stop(&self) {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
