//! The real `rhizo` binary: start-up, `--base-path`, SIGTERM, bad configuration.

use rhizo_client::{Client, ConnectOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(extra: &[&str]) -> Server {
    // Each server its own working directory (and so its own default database).
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rhizo-bin-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rhizo"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .args(extra)
        .current_dir(&dir)
        .env("HYPHA_JWT_SECRET", "binary-test-secret")
        .env("RHIZO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "starts quickly");
    let url = line
        .trim()
        .strip_prefix("rhizo listening on ")
        .expect("listening line")
        .to_owned();
    Server { child, url }
}

/// A plain HTTP/1.0 GET; returns (status, body).
fn http_get(url: &str, path: &str) -> (u16, String) {
    let hostport = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn base_path_prefixes_every_route() {
    let s = spawn(&["--base-path", "/hypha"]);
    assert!(s.url.ends_with("/hypha"), "{}", s.url);
    let (status, body) = http_get(&s.url, "/hypha/health/liveness");
    assert_eq!(status, 200);
    assert!(body.contains("OK"));
    assert_eq!(http_get(&s.url, "/health/liveness").0, 404);
    let (status, body) = http_get(&s.url, "/hypha/assets/config.json");
    assert_eq!(status, 200);
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["public_base_url"], s.url.as_str());
    let c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    assert!(c.workspace().starts_with("ws-user-anonymouz-"));
    assert_eq!(c.info()["public_base_url"], s.url.as_str());
}

#[tokio::test]
async fn sigterm_closes_clients_and_exits_cleanly() {
    let mut s = spawn(&[]);
    let mut c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The client is told to go (1001, so hypha-rpc clients reconnect elsewhere).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.next_event().await {
                Some(rhizo_client::Event::Closed(r)) => return r,
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(closed.map(|(code, _)| code), Some(1001));
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "exited within the deadline");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn weak_root_token_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rhizo"))
        .args([
            "serve",
            "--port",
            "0",
            "--root-token",
            "admin-admin-admin-admin-admin-admin-1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("root-token"));
}

/// Values clap accepts but the server cannot use stop it before it binds, with exit 64
/// and the flag's name (they used to be clamped silently).
#[test]
fn unusable_values_are_usage_errors_before_anything_is_bound() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (args, flag) in [
        (&["--read-buffer-bytes", "16"][..], "--read-buffer-bytes"),
        (&["--ws-idle-timeout", "0"][..], "--ws-idle-timeout"),
        (
            &["--workspace-unload-grace-period=-5"][..],
            "--workspace-unload-grace-period",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rhizo"))
            .args(["serve", "--port", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(
            !err.contains("listening"),
            "{args:?} bound before failing: {err}"
        );
    }
}

const ROOT_TOKEN: &str = "rz-binary-Zm9yVGVzdHNPbmx5QmluYXJ5VGVzdA-55aa";

fn stop(mut s: Server) {
    let pid = s.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = s.child.wait();
}

/// Creates a persistent workspace with an environment variable and revokes a token, then
/// restarts the server on the same database and checks that all of it is still there.
/// A root client (`--root-token`), in `ws` or its own workspace.
async fn as_root(url: &str, ws: Option<&str>) -> Client {
    let opts = ConnectOptions {
        token: Some(ROOT_TOKEN.into()),
        workspace: ws.map(str::to_owned),
        ..Default::default()
    };
    Client::connect(url, opts).await.unwrap()
}

async fn state_survives_a_restart(database_uri: &str) {
    use rhizo_protocol::value::{get, get_str, map};
    let args = ["--root-token", ROOT_TOKEN, "--database-uri", database_uri];
    let s = spawn(&args);
    let ws = format!("ws-persist-{}", std::process::id());
    let root = as_root(&s.url, None).await;
    let config = map([
        ("id", ws.as_str().into()),
        ("persistent", true.into()),
        ("description", "kept".into()),
    ]);
    root.manager_call("create_workspace", vec![config])
        .await
        .unwrap();
    let token = root
        .manager_call(
            "generate_token",
            vec![map([("workspace", ws.as_str().into())])],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();
    let inside = as_root(&s.url, Some(&ws)).await;
    inside
        .manager_call("set_env", vec!["GREETING".into(), "hello".into()])
        .await
        .unwrap();
    inside
        .manager_call("revoke_token", vec![token.as_str().into()])
        .await
        .unwrap();
    inside
        .manager_call(
            "log_event",
            vec!["kept_event".into(), map([("n", 7.into())])],
        )
        .await
        .unwrap();
    drop(inside);
    drop(root);
    stop(s);

    let s = spawn(&args);
    let root = as_root(&s.url, None).await;
    let info = root
        .manager_call("get_workspace_info", vec![ws.as_str().into()])
        .await
        .unwrap();
    assert_eq!(get_str(&info, "description"), Some("kept"));
    let env = get(get(&info, "config").unwrap(), "environs").unwrap();
    assert_eq!(get_str(env, "GREETING"), Some("hello"));
    let err = Client::connect(
        &s.url,
        ConnectOptions {
            token: Some(token),
            workspace: Some(ws.clone()),
            ..Default::default()
        },
    )
    .await
    .err()
    .expect("a revoked token stays revoked after a restart");
    assert!(err.to_string().contains("revoked"), "{err}");
    let inside = as_root(&s.url, Some(&ws)).await;
    let events = inside
        .manager_call("get_events", vec!["kept_event".into()])
        .await
        .unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        get(get(&events[0], "data").unwrap(), "n").and_then(rmpv::Value::as_i64),
        Some(7)
    );
    drop(inside);
    root.manager_call("delete_workspace", vec![ws.as_str().into()])
        .await
        .unwrap();
    drop(root);
    stop(s);
}

#[tokio::test]
async fn state_survives_a_restart_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("rhizo-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let uri = format!("sqlite://{}", dir.join("state.db").display());
    state_survives_a_restart(&uri).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `sql` with psql as the `postgres` user on 127.0.0.1:5432.
fn psql(sql: &str) -> std::io::Result<std::process::Output> {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
}

/// A new, empty PostgreSQL database `<prefix>_<pid>`. PostgreSQL runs on 127.0.0.1:5432 with
/// trust auth on the project's machines; it is started if it is down, and the test fails
/// (not skips) if it cannot be reached.
fn fresh_postgres_database(prefix: &str) -> String {
    if !psql("select 1")
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let _ = Command::new("sh")
            .args([
                "-c",
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            ])
            .status();
        std::thread::sleep(Duration::from_secs(3));
    }
    let db = format!("{prefix}_{}", std::process::id());
    let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    let created = psql(&format!("CREATE DATABASE {db}")).expect("psql runs");
    assert!(
        created.status.success(),
        "PostgreSQL at 127.0.0.1:5432 is needed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    db
}

#[tokio::test]
async fn state_survives_a_restart_on_postgres() {
    let db = fresh_postgres_database("rhizo_bin");
    state_survives_a_restart(&format!("postgres://postgres@127.0.0.1:5432/{db}")).await;
    let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

/// `/health/readiness` asks the database: 200 while it answers, 503 naming the store once
/// it is gone (here: dropped under the running server), so a balancer stops sending
/// clients to this instance.
#[tokio::test]
async fn readiness_reports_a_database_that_is_gone() {
    let db = fresh_postgres_database("rhizo_ready");
    let s = spawn(&[
        "--database-uri",
        &format!("postgres://postgres@127.0.0.1:5432/{db}"),
    ]);
    let (status, body) = http_get(&s.url, "/health/readiness");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ready"), "{body}");
    let dropped = psql(&format!("DROP DATABASE {db} WITH (FORCE)")).expect("psql runs");
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = http_get(&s.url, "/health/readiness");
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"store\"") && body.contains("error"),
        "{body}"
    );
    // Liveness is about the process, not the store.
    assert_eq!(http_get(&s.url, "/health/liveness").0, 200);
    stop(s);
}
