//! Startup functions (`rhizo serve --startup-functions module_or_file.py:function`,
//! workspace-api.md §9.4): Python functions run once the server is bound, each awaited with
//! a hypha-rpc connection to `public` as the root user.
//!
//! The reference calls them inside its own process; rhizo runs each in a Python child
//! ([`RUNNER`], `src/startup_runner.py`) with the `--python-eval-python` interpreter. The
//! child gets a short-lived root token in its environment (never on its command line),
//! connects, awaits the function and prints [`DONE`]; then it stays connected, so that the
//! services the function registered live as long as the server, and leaves when its
//! standard input closes ([`StartupFunctions::stop`], or the server dying). The functions
//! run one after another, in order; until all are done `/health/readiness` answers 503
//! ([`Manager::set_pending`](rhizo_control_plane::Manager::set_pending)), and one that
//! fails (its traceback goes to the server's standard error) stops the server.

use crate::Server;
use rhizo_protocol::user::UserInfo;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python program that runs one startup function (`src/startup_runner.py`).
pub const RUNNER: &str = include_str!("startup_runner.py");

/// The `python -c` program that runs [`RUNNER`] from the environment.
const BOOT: &str = "import os; exec(compile(os.environ.pop('RHIZO_STARTUP_RUNNER'), \
                    'startup_runner.py', 'exec'), {'__name__': '__main__'})";

/// The line the runner prints once its function has returned.
pub const DONE: &str = "RHIZO_STARTUP_DONE";

/// Lifetime of the root token a runner connects with, seconds (it reconnects with the
/// reconnection tokens the server hands out).
const ROOT_TOKEN_LIFETIME: u64 = 600;

/// How long [`StartupFunctions::stop`] waits for the runners to leave before killing them.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Why the startup functions did not all complete.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The Python interpreter could not be started.
    #[error("startup function {entry}: cannot run {}: {source}", python.display())]
    Spawn {
        /// The `module_or_file.py:function` entry.
        entry: String,
        /// The interpreter (`--python-eval-python`).
        python: PathBuf,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The function (or importing it, or connecting) failed; its traceback was printed
    /// on the server's standard error.
    #[error("startup function {entry} failed ({status}); see its traceback above")]
    Failed {
        /// The `module_or_file.py:function` entry.
        entry: String,
        /// How its runner ended.
        status: String,
    },
}

/// The runners of the startup functions that completed, still connected: their services
/// stay registered until [`StartupFunctions::stop`] (or the drop, which kills them).
#[derive(Debug, Default)]
pub struct StartupFunctions {
    running: Vec<Runner>,
}

#[derive(Debug)]
struct Runner {
    entry: String,
    child: Child,
}

/// Runs `entries` (`module_or_file.py:function`, empty ones skipped) against `server`, one
/// after another, with the interpreter `python`; returns once each has returned, with
/// their runners still connected. Readiness answers 503 meanwhile.
///
/// Errors: the first entry whose runner cannot start or ends before its function
/// returned; the runners started before it are stopped, and readiness stays 503.
/// Cancel-safe: dropping the future kills the runners it started.
pub async fn run(
    server: &Server,
    entries: &[String],
    python: &Path,
) -> Result<StartupFunctions, StartupError> {
    let mut started = StartupFunctions::default();
    let entries: Vec<&String> = entries.iter().filter(|e| !e.is_empty()).collect();
    if entries.is_empty() {
        return Ok(started);
    }
    let manager = server.manager();
    manager.set_pending(Some("startup functions".into()));
    let token = manager.tokens.sign(&UserInfo::root(), ROOT_TOKEN_LIFETIME);
    for entry in entries {
        tracing::info!(%entry, "running startup function");
        match start(server.url(), &token, entry, python).await {
            Ok(runner) => {
                tracing::info!(%entry, "startup function done");
                started.running.push(runner);
            }
            Err(e) => {
                started.stop().await;
                return Err(e);
            }
        }
    }
    manager.set_pending(None);
    Ok(started)
}

/// Starts the runner of `entry` and waits for its [`DONE`] line.
async fn start(url: &str, token: &str, entry: &str, python: &Path) -> Result<Runner, StartupError> {
    // The program travels in the environment too: a short command line in `ps`, and
    // tracebacks that name `startup_runner.py`.
    let mut child = Command::new(python)
        .arg("-c")
        .arg(BOOT)
        .arg(entry)
        .env("RHIZO_STARTUP_RUNNER", RUNNER)
        .env("RHIZO_STARTUP_SERVER_URL", url)
        .env("RHIZO_STARTUP_TOKEN", token)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StartupError::Spawn {
            entry: entry.to_owned(),
            python: python.to_owned(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim_end() == DONE => break,
            Ok(Some(line)) => tracing::info!(%entry, "{line}"),
            Ok(None) | Err(_) => {
                let status = match child.wait().await {
                    Ok(s) => describe(s),
                    Err(e) => e.to_string(),
                };
                return Err(StartupError::Failed {
                    entry: entry.to_owned(),
                    status,
                });
            }
        }
    }
    // What the function's services print later is logged too (and the pipe never fills).
    let e = entry.to_owned();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(entry = %e, "{line}");
        }
    });
    Ok(Runner {
        entry: entry.to_owned(),
        child,
    })
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    }
}

// === impl StartupFunctions ===

impl StartupFunctions {
    /// How many runners are connected.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// True when no startup function runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Closes every runner's standard input (it disconnects and exits), waits up to 3 s
    /// in all, then kills those still running.
    pub async fn stop(mut self) {
        for r in &mut self.running {
            drop(r.child.stdin.take());
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for r in &mut self.running {
            match tokio::time::timeout_at(deadline, r.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(entry = %r.entry, "startup function did not leave; killing it");
                    let _ = r.child.kill().await;
                }
            }
        }
    }
}
