//! A real S3-compatible server for the S3 object-store tests: moto's `moto_server`, one
//! per test, on a free loopback port, killed when the [`Moto`] guard drops (also when
//! the test panics). Each test also uses a bucket of its own.
//!
//! The binary is `$RHIZO_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server` (the venv
//! `tests/run.sh` sets up from `tests/compat/requirements.txt`, or `$RHIZO_VENV` instead of
//! `.venv`). When neither exists, [`Moto::start`]
//! answers `None` and the test is skipped with a note, except under CI (`CI` set and
//! not `false`/`0`), where a missing S3 server fails the test.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rhizo_artifacts::{S3Config, S3ObjectStore};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The access key id every test signs with (moto accepts any).
pub const ACCESS_KEY_ID: &str = "test";
/// The secret every test signs with.
pub const SECRET_ACCESS_KEY: &str = "test";
/// The region every test signs for.
pub const REGION: &str = "us-east-1";

/// How long moto may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    endpoint: String,
    /// Where the server's output goes; shown when it fails to start, removed on drop.
    log: PathBuf,
}

// === impl Moto ===

impl Moto {
    /// Starts a server and waits until it answers HTTP; `None` (after a note on stderr)
    /// when there is no `moto_server` and this is not CI.
    ///
    /// # Panics
    /// Under CI when the binary is missing; when the server exits or does not answer
    /// within 30 s.
    pub async fn start(test: &str) -> Option<Moto> {
        let Some(binary) = binary() else {
            let hint = "set RHIZO_MOTO_SERVER to a moto_server binary, or set up .venv \
                        with `bash tests/run.sh` (it installs tests/compat/requirements.txt, \
                        moto[server] included)";
            if in_ci() {
                panic!("{test}: no moto_server found and CI is set: {hint}");
            }
            eprintln!("note: {test} skipped, no moto_server found ({hint})");
            return None;
        };
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "rhizo-moto-{port}-{:08x}.log",
            rand::random::<u32>()
        ));
        let out = std::fs::File::create(&log).expect("create the moto log file");
        let err = out.try_clone().expect("clone the moto log file");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", binary.display()));
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        moto.wait_ready(test, port).await;
        Some(moto)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The configuration of a store on `bucket` of this server.
    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint_url: self.endpoint.clone(),
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
            region: REGION.into(),
            bucket: bucket.into(),
        }
    }

    /// A connected store on a fresh bucket named after `test`, the bucket created.
    pub async fn store(&self, test: &str) -> S3ObjectStore {
        let bucket = format!(
            "rhizo-{}-{:08x}",
            test.replace('_', "-")
                .chars()
                .take(40)
                .collect::<String>()
                .trim_end_matches('-'),
            rand::random::<u32>()
        );
        let store = S3ObjectStore::connect(self.config(&bucket))
            .await
            .expect("connect to moto");
        store.ensure_bucket().await.expect("create the bucket");
        store
    }

    /// A plain SDK client on this server, to look behind the store (multipart uploads
    /// in progress, ETags, the CORS rule).
    pub fn sdk(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "test",
            ))
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Polls until the server answers an HTTP request.
    async fn wait_ready(&mut self, test: &str, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{test}: moto_server exited with {status} before answering:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if answers(port).await {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{test}: moto_server did not answer within {START_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether an HTTP server answers on `127.0.0.1:port`.
async fn answers(port: u16) -> bool {
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    conn.read_exact(&mut head).await.is_ok() && &head == b"HTTP/"
}

/// The `moto_server` to run, if there is one.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RHIZO_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // An explicit path that does not exist is a mistake, not a skip.
        assert!(
            path.is_file(),
            "RHIZO_MOTO_SERVER={} is not a file",
            path.display()
        );
        return Some(path);
    }
    // control-plane/artifacts → the repository root; the venv tests/run.sh sets up
    // (`$RHIZO_VENV`, default `.venv`, relative to the root).
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("RHIZO_VENV")
        .filter(|v| !v.is_empty())
        .map_or_else(|| repo.join(".venv"), |v| repo.join(v));
    let path = venv.join("bin/moto_server");
    path.is_file().then_some(path)
}

/// Whether the tests run under CI (`CI` set, and not to `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}
