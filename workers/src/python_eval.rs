//! The python-eval worker (apps-workers.md §4.1, types `["python-eval"]`): `start` fetches
//! the app's entry script and runs it once as `<python> -c <script>`, with an environment
//! of exactly `HYPHA_SERVER_URL`, `HYPHA_WORKSPACE`, `HYPHA_CLIENT_ID` and `HYPHA_TOKEN`
//! (no `PATH`, nothing of the worker's own environment, so the worker's token never
//! reaches an app). The script is expected to connect as the given client, register its
//! services and exit; `start` returns when it has exited.
//!
//! Logs: `stdout` and `stderr` (each the whole output as one entry, when not empty) and
//! `info` ("Process exited with return code: N"). A python that cannot be spawned gives an
//! `error` entry and return code −1, and `start` still succeeds (as the reference). A
//! script still running after `timeout` seconds (default [`DEFAULT_TIMEOUT`]) is killed with
//! its whole process group and `start` fails with a `TimeoutError`; `stop` during `start`
//! kills it the same way.
//!
//! rhizo extension: a manifest with `"wait_for_exit": false` makes the script a service
//! process — `start` returns once it is running (the controller then waits for the
//! services it registers, as for any app), it runs without a time limit, `stop` kills its
//! process group, and its output lands in the logs when it exits. The reference's
//! python-eval always waits for the exit, so a script that serves cannot be started there.

use crate::args::Args;
use crate::config::progress;
use crate::error::{WorkerError, WorkerResult};
use crate::fetch::AppFiles;
use crate::logs::Logs;
use crate::session::{SessionInfo, SessionStatus};
use rhizo_client::Client;
use rhizo_protocol::message::Call;
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// The start timeout when the config gives none, seconds (the controller's default).
pub const DEFAULT_TIMEOUT: f64 = 60.0;

/// How long to wait for the output pipes to close after the process has exited (a
/// grandchild that keeps them open must not hold `start` forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The python-eval worker's state: its sessions and what it needs to run them.
pub(crate) struct PythonEval {
    /// The interpreter, an absolute path (resolved at start-up: the child has no PATH).
    python: PathBuf,
    /// The worker's own server URL, for configs without `server_url`.
    server_url: String,
    client: Weak<Client>,
    files: AppFiles,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    info: SessionInfo,
    logs: Logs,
    /// Kills the running script (taken by `stop`); `None` once it has finished.
    kill: Option<oneshot::Sender<()>>,
}

/// How a script run ended.
#[derive(Debug)]
enum Ended {
    Exited(i32),
    TimedOut(f64),
    Stopped,
    SpawnFailed(String),
}

impl PythonEval {
    pub(crate) fn new(
        python: PathBuf,
        server_url: String,
        client: Weak<Client>,
        files: AppFiles,
    ) -> Self {
        PythonEval {
            python,
            server_url,
            client,
            files,
            sessions: Mutex::default(),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().expect("sessions lock")
    }

    /// `start(config)` → the session id. See the module docs.
    pub(crate) async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let config = args.start_config()?;
        let entry = config.entry_point.clone().ok_or_else(|| {
            WorkerError::Invalid(
                "a python-eval app needs an entry point (manifest entry_point, e.g. main.py)"
                    .into(),
            )
        })?;
        let (kill_tx, kill_rx) = oneshot::channel();
        {
            let mut sessions = self.sessions();
            if sessions.contains_key(&config.id) {
                return Err(WorkerError::SessionExists(config.id.clone()).into());
            }
            let session = Session {
                info: SessionInfo::new(&config, "python-eval"),
                logs: Logs::default(),
                kill: Some(kill_tx),
            };
            sessions.insert(config.id.clone(), session);
        }
        let cb = config.progress.as_ref();
        progress(cb, &self.client, "info", &format!("Fetching {entry}…")).await;
        let base = config.files_base(&self.server_url);
        let script = match self.files.get(&base, &entry, config.token.as_deref()).await {
            Ok(body) => String::from_utf8(body).map_err(|_| {
                WorkerError::Invalid(format!("the entry point {entry} is not UTF-8 text"))
            }),
            Err(e) => Err(e),
        };
        let script = match script {
            Ok(s) => dedent(&s),
            Err(e) => {
                self.fail(&config.id, &e.to_string());
                progress(cb, &self.client, "error", &e.to_string()).await;
                return Err(e.into());
            }
        };
        self.set_status(&config.id, SessionStatus::Running);
        progress(cb, &self.client, "info", &format!("Running {entry}…")).await;
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let env = [
            (
                "HYPHA_SERVER_URL",
                config.server_url.clone().unwrap_or(self.server_url.clone()),
            ),
            ("HYPHA_WORKSPACE", config.workspace.clone()),
            ("HYPHA_CLIENT_ID", config.client_id.clone()),
            ("HYPHA_TOKEN", config.token.clone().unwrap_or_default()),
        ];
        let serving =
            value::get(&config.manifest, "wait_for_exit").and_then(Value::as_bool) == Some(false);
        if serving {
            let (me, python, id) = (self.clone(), self.python.clone(), config.id.clone());
            tokio::spawn(async move {
                let (stdout, stderr, ended) =
                    run(&python, &script, &env, f64::INFINITY, kill_rx).await;
                let _ = me.finish(&id, &stdout, &stderr, &ended);
            });
            progress(cb, &self.client, "success", "Python script running").await;
            return Ok(config.id.clone().into());
        }
        let (stdout, stderr, ended) = run(&self.python, &script, &env, timeout, kill_rx).await;
        let result = self.finish(&config.id, &stdout, &stderr, &ended);
        match &result {
            Ok(_) => progress(cb, &self.client, "success", "Python script finished").await,
            Err(e) => progress(cb, &self.client, "error", e).await,
        }
        result
    }

    fn fail(&self, id: &str, error: &str) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.info.status = SessionStatus::Failed;
            s.info.error = Some(error.to_owned());
            s.logs.push("error", error);
            s.kill = None;
        }
    }

    fn set_status(&self, id: &str, status: SessionStatus) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.info.status = status;
        }
    }

    /// Records a run's outcome in the session (if `stop` has not removed it meanwhile).
    fn finish(&self, id: &str, stdout: &str, stderr: &str, ended: &Ended) -> Result<Value, String> {
        let mut sessions = self.sessions();
        let stopped = || Err(format!("Session {id} was stopped while its script ran"));
        let Some(s) = sessions.get_mut(id) else {
            return stopped();
        };
        s.kill = None;
        if !stdout.is_empty() {
            s.logs.push("stdout", stdout);
        }
        if !stderr.is_empty() {
            s.logs.push("stderr", stderr);
        }
        match ended {
            Ended::Exited(code) => {
                s.logs
                    .push("info", format!("Process exited with return code: {code}"));
                s.info.status = if *code == 0 {
                    SessionStatus::Completed
                } else {
                    SessionStatus::Failed
                };
                Ok(id.into())
            }
            Ended::SpawnFailed(e) => {
                s.logs.push("error", e.as_str());
                s.logs.push("info", "Process exited with return code: -1");
                s.info.status = SessionStatus::Failed;
                s.info.error = Some(e.clone());
                Ok(id.into())
            }
            Ended::TimedOut(t) => {
                let e = WorkerError::Timeout(format!(
                    "the python-eval script of session {id} did not finish within {t} s and was killed"
                ));
                s.logs.push("error", e.to_string());
                s.info.status = SessionStatus::Failed;
                s.info.error = Some(e.to_string());
                Err(e.into())
            }
            Ended::Stopped => stopped(),
        }
    }

    /// `stop(session_id)`: kills a running script and forgets the session; an unknown id
    /// is not an error.
    pub(crate) async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        let mut sessions = self.sessions();
        if let Some(s) = sessions.get(id) {
            args.caller().check(id, &s.info.workspace)?;
            if let Some(mut s) = sessions.remove(id) {
                if let Some(kill) = s.kill.take() {
                    let _ = kill.send(());
                }
            }
        }
        Ok(Value::Nil)
    }

    /// Runs `f` on session `id` after checking the caller may use it.
    fn with_session<T>(&self, args: &Args<'_>, f: impl FnOnce(&Session) -> T) -> WorkerResult<T> {
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions();
        let s = sessions
            .get(id)
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
        args.caller().check(id, &s.info.workspace)?;
        Ok(f(s))
    }

    /// `get_logs(session_id, type=None, offset=0, limit=None)` (§3.2).
    pub(crate) async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let kind = args.opt_str(1, "type")?;
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0);
        let limit = args.opt_usize(3, "limit")?;
        Ok(self.with_session(&args, |s| s.logs.page(kind, offset, limit))?)
    }

    /// `get_session_info(session_id)` → SessionInfo (§3.4).
    pub(crate) async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        Ok(self.with_session(&args, |s| s.info.to_value())?)
    }

    /// `list_sessions(workspace=None)` → the SessionInfo of the sessions of `workspace`
    /// (default: the caller's).
    pub(crate) async fn list_sessions(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("list_sessions", &call);
        let ws = args.listed_workspace()?;
        let list = self
            .sessions()
            .values()
            .filter(|s| s.info.workspace == ws)
            .map(|s| s.info.to_value())
            .collect();
        Ok(Value::Array(list))
    }

    /// Kills every running script and forgets all sessions (worker shutdown).
    pub(crate) fn stop_all(&self) {
        for (_, mut s) in self.sessions().drain() {
            if let Some(kill) = s.kill.take() {
                let _ = kill.send(());
            }
        }
    }
}

/// The script with the leading whitespace common to all its non-blank lines removed
/// (Python's `textwrap.dedent`): a source written indented inside a triple-quoted string,
/// as seed 002's example is, runs instead of failing with `IndentationError`.
pub(crate) fn dedent(script: &str) -> String {
    let common = script
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .reduce(|a, b| {
            let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            &a[..n]
        })
        .unwrap_or("");
    if common.is_empty() {
        return script.to_owned();
    }
    script
        .lines()
        .map(|l| {
            l.strip_prefix(common)
                .unwrap_or(l.trim_start_matches([' ', '\t']))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `python -c script` with exactly `env`, until it exits, `timeout` seconds pass or
/// `kill` fires; returns its output and how it ended.
async fn run(
    python: &std::path::Path,
    script: &str,
    env: &[(&str, String)],
    timeout: f64,
    kill: oneshot::Receiver<()>,
) -> (String, String, Ended) {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg("-c")
        .arg(script)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let e = format!("Failed to start {}: {e}", python.display());
            return (String::new(), String::new(), Ended::SpawnFailed(e));
        }
    };
    let out = tokio::spawn(read_all(child.stdout.take()));
    let err = tokio::spawn(read_all(child.stderr.take()));
    let limit = Duration::from_secs_f64(timeout.clamp(0.001, 1e9));
    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => Ended::Exited(s.code().unwrap_or(-1)),
            Err(e) => Ended::SpawnFailed(format!("waiting for the script failed: {e}")),
        },
        _ = tokio::time::sleep(limit) => Ended::TimedOut(timeout),
        _ = kill => Ended::Stopped,
    };
    if !matches!(ended, Ended::Exited(_)) {
        kill_group(&mut child).await;
    }
    let collect = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(DRAIN_GRACE, h).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        }
    };
    let stdout = collect(out).await;
    let stderr = collect(err).await;
    (stdout, stderr, ended)
}

/// SIGKILLs the child's process group (the child leads it) and reaps the child.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut buf).await;
    }
    buf
}

/// The functions of the python-eval service, in registration order.
pub(crate) fn functions(w: &Arc<PythonEval>) -> Vec<(&'static str, rhizo_client::Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, PythonEval::start)),
        ("stop", bind(w, PythonEval::stop)),
        ("get_logs", bind(w, PythonEval::get_logs)),
        ("get_session_info", bind(w, PythonEval::get_session_info)),
        ("list_sessions", bind(w, PythonEval::list_sessions)),
        (
            "compile",
            bind(w, |_, call| crate::service::compile_identity(call)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::dedent;

    #[test]
    fn indented_sources_are_dedented_like_textwrap() {
        let src = "\n    import os\n\n    if True:\n        print(1)\n    ";
        assert_eq!(dedent(src), "\nimport os\n\nif True:\n    print(1)\n");
        assert_eq!(
            dedent("print(1)\n  x = 2"),
            "print(1)\n  x = 2",
            "nothing common"
        );
        assert_eq!(dedent("\tprint(1)\n\tprint(2)"), "print(1)\nprint(2)");
        assert_eq!(dedent(""), "");
    }
}
