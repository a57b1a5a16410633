//! The Python-environment worker (apps-workers.md §4.3, types `["conda-jupyter-kernel"]`):
//! each session is a Jupyter kernel (ipykernel) running in a Python environment made for
//! the app's `dependencies`, with the app's entry script run in it at start and `execute`
//! running further code in the same kernel (state persists across calls).
//!
//! rhizo has no conda: environments are virtualenvs built with `uv` from PyPI and cached
//! ([`env`]); dependencies only conda can provide are refused, by `compile` and by
//! `start`, with an error listing them ([`spec`] states the rule). The kernel is driven
//! through a small bundled Python bridge speaking JSON lines ([`kernel`]).
//!
//! `start(config)`: checks the spec, fetches the entry script (`manifest.entry_point`,
//! default `main.py`; `<script>`/`<file>` wrappers stripped, common indentation removed),
//! gets the environment (cached or built, uv's output streamed to the progress callback
//! and the `progress` logs), stages `files_to_stage` into the session's directory
//! `{working_dir}/{sanitised session id}` (as the terminal worker does), starts the
//! kernel there (timeout `config.timeout`, else 30 s), runs an init cell that sets
//! `HYPHA_SERVER_URL`, `HYPHA_WORKSPACE`, `HYPHA_CLIENT_ID`, `HYPHA_TOKEN`, `HYPHA_APP_ID`
//! in `os.environ` and changes into that directory, then the script (timeout
//! `config.timeout`, else 60 s). The script's outputs go to the logs (`stdout`, `stderr`,
//! `error`, `info` "Result: …"); a failing script fails the start with "Initialization
//! script failed: …" (the session stays, `failed`, for its logs until `stop`).
//!
//! The kernel's process environment is built, not inherited (no worker secrets): `PATH`
//! with the env's `bin` first, `VIRTUAL_ENV`, and `HOME`, `USER`, `LOGNAME`, `LANG`,
//! `LC_ALL`, `SHELL`, `TZ`, `TMPDIR`, `SSL_CERT_FILE`, `SSL_CERT_DIR` of the worker when
//! set. The bridge's source and Jupyter's connection file live in a private directory
//! `{working_dir}/.kernels/{sanitised session id}`, not in the app's working directory.
//!
//! `execute(session_id, script, config={timeout: 30}, progress_callback=None,
//! output_callback=None)` → `{status: "ok"|"error", outputs, error?: {ename, evalue,
//! traceback}}` (§3.2); `output_callback` receives each raw iopub message
//! `{msg_type, header, parent_header, metadata, content}` as it arrives. A timeout
//! interrupts the kernel and returns a `TimeoutError` error result. When the kernel (or
//! the bridge) dies, the session turns `failed` and every `execute` returns a `KernelDied`
//! error result at once. `stop` shuts the kernel down, kills what is left of both process
//! groups and removes the session's directories; unknown ids are ignored. Also
//! `get_logs`, `get_session_info`, `list_sessions` and `compile` (the manifest checked and
//! normalised by [`spec::compile_manifest`]).

mod env;
mod execute;
mod kernel;
mod session;
mod spec;
mod start;

use crate::args::Args;
use crate::error::{WorkerError, WorkerResult};
use crate::fetch::AppFiles;
use crate::session::SessionStatus;
use env::EnvCache;
use rhizo_client::{Client, Handler};
use rhizo_protocol::message::Call;
use rmpv::Value;
use session::{describe, Session};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// The app type and the session's `app_type`.
pub const APP_TYPE: &str = "conda-jupyter-kernel";

/// `execute`'s timeout when the config gives none, seconds.
pub const DEFAULT_EXECUTE_TIMEOUT: f64 = 30.0;

/// The kernel start timeout when `config.timeout` is absent, seconds.
const KERNEL_START_TIMEOUT: f64 = 30.0;

/// The entry script's timeout when `config.timeout` is absent, seconds.
const SCRIPT_TIMEOUT: f64 = 60.0;

/// What the worker is configured with.
#[derive(Debug, Clone)]
pub(crate) struct CondaOptions {
    /// The uv binary (absolute).
    pub(crate) uv: PathBuf,
    /// The interpreter environments are made from by default (absolute).
    pub(crate) python: PathBuf,
    /// The environment cache; `None`: `~/.cache/rhizo-conda-envs`.
    pub(crate) cache_dir: Option<PathBuf>,
    /// Base of the session directories; `None`: a fresh temp dir removed at shutdown.
    pub(crate) working_dir: Option<PathBuf>,
    /// The worker's server URL, for configs without `server_url`.
    pub(crate) server_url: String,
}

/// The default environment cache directory: `$HOME/.cache/rhizo-conda-envs` (the temp
/// dir without a `HOME`).
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache"))
        .unwrap_or_else(std::env::temp_dir)
        .join("rhizo-conda-envs")
}

/// `program` as an absolute path: a bare name looked up on `PATH`, anything else made
/// absolute if it is a file; `None` when there is no such program (the server then
/// skips the built-in conda worker).
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() == 1 && !program.is_absolute() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        return std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|c| c.is_file());
    }
    program
        .is_file()
        .then(|| std::path::absolute(program).ok())
        .flatten()
}

/// The worker's state.
pub(crate) struct Conda {
    cache: EnvCache,
    base: PathBuf,
    /// Whether `base` is ours to remove at shutdown.
    own_base: bool,
    server_url: String,
    client: Weak<Client>,
    files: AppFiles,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Conda {
    /// Errors: the cache or the base directory cannot be created.
    pub(crate) fn new(
        opts: CondaOptions,
        client: Weak<Client>,
        files: AppFiles,
    ) -> std::io::Result<Self> {
        let cache_dir = opts.cache_dir.unwrap_or_else(default_cache_dir);
        let cache = EnvCache::new(cache_dir, opts.uv, opts.python)?;
        let (base, own_base) = match opts.working_dir {
            Some(d) => (d, false),
            None => (
                std::env::temp_dir().join(format!("hypha_conda_{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&base)?;
        Ok(Conda {
            cache,
            base: std::path::absolute(&base)?,
            own_base,
            server_url: opts.server_url,
            client,
            files,
            sessions: Mutex::default(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().expect("sessions lock")
    }

    /// The session named by argument 0, if the caller may use it.
    ///
    /// Errors: `Session not found: …` or a PermissionError.
    fn session(&self, args: &Args<'_>) -> WorkerResult<Arc<Session>> {
        let id = args.str(0, "session_id")?;
        let s = self
            .sessions()
            .get(id)
            .cloned()
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
        args.caller().check(id, &s.workspace())?;
        Ok(s)
    }

    /// `stop(session_id)`: shuts the kernel down and removes the session's directories;
    /// an unknown id is not an error.
    pub(crate) async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        let found = self.sessions().get(id).cloned();
        let Some(s) = found else {
            return Ok(Value::Nil);
        };
        args.caller().check(id, &s.workspace())?;
        self.sessions().remove(id);
        let _ = s.cancel.send(true);
        s.set_status(SessionStatus::Stopping);
        s.teardown().await;
        s.set_status(SessionStatus::Stopped);
        Ok(Value::Nil)
    }

    /// `get_logs(session_id, type=None, offset=0, limit=None)` (§3.2).
    pub(crate) async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let s = self.session(&args)?;
        let kind = args.opt_str(1, "type")?;
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0);
        let limit = args.opt_usize(3, "limit")?;
        let page = s.logs.lock().expect("logs lock").page(kind, offset, limit);
        Ok(page)
    }

    /// `get_session_info(session_id)` → SessionInfo (§3.4) with `working_dir`,
    /// `env_path` and `kernel_pid` once known.
    pub(crate) async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        let s = self.session(&args)?;
        Ok(describe(&s))
    }

    /// `list_sessions(workspace=None)` → the SessionInfo of the sessions of `workspace`
    /// (default: the caller's).
    pub(crate) async fn list_sessions(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("list_sessions", &call);
        let ws = args.listed_workspace()?;
        let all: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        Ok(Value::Array(
            all.iter()
                .filter(|s| s.workspace() == ws)
                .map(|s| describe(s))
                .collect(),
        ))
    }

    /// Stops every session (worker shutdown) and removes the base directory if the
    /// worker made it.
    pub(crate) async fn stop_all(&self) {
        let all: Vec<Arc<Session>> = self.sessions().drain().map(|(_, s)| s).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for s in all {
            let _ = s.cancel.send(true);
            tasks.spawn(async move { s.teardown().await });
        }
        while tasks.join_next().await.is_some() {}
        if self.own_base {
            let _ = tokio::fs::remove_dir_all(&self.base).await;
        }
    }

    /// Kills every kernel and removes the directories, at once and synchronously (a
    /// worker dropped without a shutdown).
    pub(crate) fn kill_all_now(&self) {
        let all: Vec<Arc<Session>> = self.sessions().drain().map(|(_, s)| s).collect();
        for s in all {
            let _ = s.cancel.send(true);
            if let Some(k) = s.kernel.lock().expect("kernel lock").take() {
                k.kill_now();
            }
            let _ = std::fs::remove_dir_all(&s.dir);
            let _ = std::fs::remove_dir_all(&s.private);
        }
        if self.own_base {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

impl Drop for Conda {
    fn drop(&mut self) {
        self.kill_all_now();
    }
}

/// `compile(manifest, files, config=None)` → `[manifest, files]` with the manifest
/// normalised ([`spec::compile_manifest`]).
async fn compile(call: Call) -> Result<Value, String> {
    let args = Args::new("compile", &call);
    let manifest = args.get(0, "manifest").cloned().ok_or_else(|| {
        WorkerError::Argument("compile() missing required argument: 'manifest'".into())
    })?;
    let manifest = spec::compile_manifest(manifest)?;
    let files = args
        .get(1, "files")
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    Ok(Value::Array(vec![manifest, files]))
}

/// The functions of the conda worker service, in registration order.
pub(crate) fn functions(w: &Arc<Conda>) -> Vec<(&'static str, Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, Conda::start)),
        ("stop", bind(w, Conda::stop)),
        ("get_logs", bind(w, Conda::get_logs)),
        ("get_session_info", bind(w, Conda::get_session_info)),
        ("list_sessions", bind(w, Conda::list_sessions)),
        ("execute", bind(w, Conda::execute)),
        ("compile", bind(w, |_, call| compile(call))),
    ]
}
