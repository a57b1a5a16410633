//! The terminal worker (apps-workers.md §4.2, types `["terminal"]`): each session is a
//! program (manifest `startup_command`, default `/bin/bash`) in a PTY of its own, in its
//! own directory `{base}/{sanitised session id}` into which `files_to_stage` are fetched
//! first.
//!
//! The program's environment is built, not inherited: `PATH`, `HOME`, `USER`, `LOGNAME`,
//! `LANG` and `SHELL` of the worker (when set), `TERM=xterm-256color`, and the app's
//! `HYPHA_SERVER_URL`, `HYPHA_WORKSPACE`, `HYPHA_CLIENT_ID`, `HYPHA_TOKEN` and
//! `HYPHA_APP_ID` — the worker's own token never reaches a session.
//!
//! Functions: `start`, `stop`, `get_logs` (`type="screen"` → the rendered screen as a
//! string), `get_session_info`, `list_sessions`, `execute` (see `execute.rs`), `write_terminal`,
//! `read_terminal`, `resize_terminal`, `get_screen_content`, `attach` (`attach.rs`),
//! `execute_stream` (a remote generator, `stream.rs`) and `compile`. Not provided: the
//! xterm.js web page of the reference.

mod attach;
mod execute;
mod pty;
mod session;
mod stage;
mod stream;

pub(crate) use stage::dir_name as session_dir_name;
pub(crate) use stage::stage_files;
pub(crate) use text::strip_ansi;
mod text;

use crate::args::{number, Args};
use crate::config::{progress, WorkerConfig};
use crate::error::{WorkerError, WorkerResult};
use crate::fetch::AppFiles;
use crate::session::SessionInfo;
use rhizo_client::{Client, Handler};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::{get, map, set};
use rmpv::Value;
use session::TermSession;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long `start` waits for the program's first output (its prompt) before returning.
const FIRST_OUTPUT_WAIT: Duration = Duration::from_secs(2);

/// What the terminal worker is configured with.
#[derive(Debug, Clone)]
pub(crate) struct TerminalOptions {
    /// Base of the session directories; `None`: a fresh temp dir.
    pub(crate) working_dir: Option<PathBuf>,
    /// Session cap.
    pub(crate) max_sessions: usize,
    /// The worker's server URL, for configs without `server_url`.
    pub(crate) server_url: String,
}

/// The terminal worker's state.
pub(crate) struct Terminal {
    base: PathBuf,
    /// Whether `base` is ours to remove at shutdown.
    own_base: bool,
    max_sessions: usize,
    server_url: String,
    client: Weak<Client>,
    files: AppFiles,
    sessions: Mutex<HashMap<String, Slot>>,
}

/// A session's entry: reserved while `start` prepares it, then live, then held while
/// `stop` ends it (so that the id and its directory are not reused meanwhile).
enum Slot {
    Starting { workspace: String },
    Live(Arc<TermSession>),
    Stopping { workspace: String },
}

impl Terminal {
    /// Errors: the base directory cannot be created.
    pub(crate) fn new(
        opts: TerminalOptions,
        client: Weak<Client>,
        files: AppFiles,
    ) -> std::io::Result<Self> {
        let (base, own_base) = match opts.working_dir {
            Some(d) => (d, false),
            None => (
                std::env::temp_dir().join(format!("hypha_sessions_{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&base)?;
        Ok(Terminal {
            base: std::path::absolute(&base)?,
            own_base,
            max_sessions: opts.max_sessions,
            server_url: opts.server_url,
            client,
            files,
            sessions: Mutex::default(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.sessions.lock().expect("sessions lock")
    }

    /// The live session named by the call's `session_id` (argument 0), if the caller may
    /// use it.
    ///
    /// Errors: `Session not found: …`, a session still starting, or a PermissionError.
    pub(crate) fn live(&self, args: &Args<'_>) -> WorkerResult<Arc<TermSession>> {
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions();
        match sessions.get(id) {
            None => Err(WorkerError::SessionNotFound(id.to_owned())),
            Some(Slot::Starting { workspace }) => {
                args.caller().check(id, workspace)?;
                Err(WorkerError::Invalid(format!(
                    "session {id} is still starting"
                )))
            }
            Some(Slot::Stopping { workspace }) => {
                args.caller().check(id, workspace)?;
                Err(WorkerError::Invalid(format!("session {id} is stopping")))
            }
            Some(Slot::Live(s)) => {
                args.caller().check(id, &s.workspace())?;
                Ok(s.clone())
            }
        }
    }

    /// `start(config)` → the session id.
    ///
    /// Errors: bad config, a session with that id exists, the session cap is reached, a
    /// bad `startup_command` or `files_to_stage`, or the program cannot be started.
    pub(crate) async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let config = args.start_config()?;
        let argv = stage::startup_command(&config.manifest)?;
        {
            let mut sessions = self.sessions();
            if sessions.contains_key(&config.id) {
                return Err(WorkerError::SessionExists(config.id.clone()).into());
            }
            if sessions.len() >= self.max_sessions {
                return Err(WorkerError::TooManySessions(self.max_sessions).into());
            }
            let workspace = config.workspace.clone();
            sessions.insert(config.id.clone(), Slot::Starting { workspace });
        }
        let cb = config.progress.as_ref();
        let launched = self.launch(&config, argv).await;
        let session = match launched {
            Ok(s) => s,
            Err(e) => {
                self.sessions().remove(&config.id);
                progress(cb, &self.client, "error", &e.to_string()).await;
                return Err(e.into());
            }
        };
        let replaced = {
            let mut sessions = self.sessions();
            match sessions.get_mut(&config.id) {
                Some(slot @ Slot::Starting { .. }) => {
                    *slot = Slot::Live(session.clone());
                    true
                }
                _ => false,
            }
        };
        if !replaced {
            session.stop().await;
            return Err(format!(
                "Session {} was stopped while it started",
                config.id
            ));
        }
        let _ = tokio::time::timeout(FIRST_OUTPUT_WAIT, async {
            while !session.has_output() && session.is_alive() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let msg = format!(
            "Terminal session started: {}",
            session.startup_command.join(" ")
        );
        progress(cb, &self.client, "success", &msg).await;
        Ok(config.id.as_str().into())
    }

    /// Prepares the directory, stages files and spawns the program.
    async fn launch(
        &self,
        config: &WorkerConfig,
        argv: Vec<String>,
    ) -> WorkerResult<Arc<TermSession>> {
        let dir = self.base.join(stage::dir_name(&config.id));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| WorkerError::Io(format!("creating {}: {e}", dir.display())))?;
        let cb = config.progress.as_ref();
        let prepared = async {
            if get(&config.manifest, "files_to_stage").is_some() {
                progress(cb, &self.client, "info", "Staging files…").await;
            }
            let base = config.files_base(&self.server_url);
            stage::stage_files(
                &self.files,
                &config.manifest,
                &base,
                config.token.as_deref(),
                &dir,
            )
            .await?;
            progress(
                cb,
                &self.client,
                "info",
                &format!("Starting {}…", argv.join(" ")),
            )
            .await;
            let env = self.session_env(config);
            pty::spawn(&argv, &dir, &env, pty::DEFAULT_SIZE).map_err(WorkerError::Io)
        }
        .await;
        match prepared {
            Ok(spawned) => {
                let info = SessionInfo::new(config, "terminal");
                Ok(TermSession::launch(
                    info,
                    argv,
                    dir,
                    spawned,
                    pty::DEFAULT_SIZE,
                ))
            }
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(e)
            }
        }
    }

    fn session_env(&self, config: &WorkerConfig) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "SHELL"]
            .iter()
            .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        let server = config.server_url.clone().unwrap_or(self.server_url.clone());
        env.extend([
            ("TERM".into(), "xterm-256color".into()),
            ("HYPHA_SERVER_URL".into(), server),
            ("HYPHA_WORKSPACE".into(), config.workspace.clone()),
            ("HYPHA_CLIENT_ID".into(), config.client_id.clone()),
            (
                "HYPHA_TOKEN".into(),
                config.token.clone().unwrap_or_default(),
            ),
            ("HYPHA_APP_ID".into(), config.app_id.clone()),
        ]);
        env
    }

    /// `stop(session_id)`: ends the program (and its process group and session) and
    /// removes the directory; an unknown id is not an error.
    pub(crate) async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        let caller = args.caller();
        let live = {
            let mut sessions = self.sessions();
            let (workspace, live) = match sessions.get(id) {
                None | Some(Slot::Stopping { .. }) => return Ok(Value::Nil),
                Some(Slot::Starting { workspace }) => (workspace.clone(), None),
                Some(Slot::Live(s)) => (s.workspace(), Some(s.clone())),
            };
            caller.check(id, &workspace)?;
            match &live {
                // `start` sees its slot gone and stops what it launched.
                None => sessions.remove(id),
                Some(_) => sessions.insert(id.to_owned(), Slot::Stopping { workspace }),
            };
            live
        };
        if let Some(s) = live {
            s.stop().await;
            self.sessions().remove(id);
        }
        Ok(Value::Nil)
    }

    /// `get_logs(session_id, type=None, offset=0, limit=None)`; `type="screen"` gives the
    /// rendered screen as a string.
    pub(crate) async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let s = self.live(&args)?;
        let kind = args.opt_str(1, "type")?;
        if kind == Some("screen") {
            return Ok(s.screen_text().into());
        }
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0);
        let limit = args.opt_usize(3, "limit")?;
        Ok(s.logs_page(kind, offset, limit))
    }

    /// `get_session_info(session_id)` → SessionInfo with `startup_command`, `is_alive`,
    /// `pid`, `working_dir` and `terminal_size`.
    pub(crate) async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        Ok(self.live(&args)?.describe())
    }

    /// `list_sessions(workspace=None)` → `{success, sessions: [...]}`, the sessions of
    /// `workspace` (default: the caller's).
    pub(crate) async fn list_sessions(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("list_sessions", &call);
        let ws = args.listed_workspace()?;
        let live: Vec<Arc<TermSession>> = self
            .sessions()
            .values()
            .filter_map(|slot| match slot {
                Slot::Live(s) => Some(s.clone()),
                Slot::Starting { .. } | Slot::Stopping { .. } => None,
            })
            .collect();
        let sessions = live
            .iter()
            .filter(|s| s.workspace() == ws)
            .map(|s| s.describe())
            .collect();
        Ok(map([
            ("success", true.into()),
            ("sessions", Value::Array(sessions)),
        ]))
    }

    /// `write_terminal(session_id, data)` → `{success, bytes_written}`: raw keystrokes.
    pub(crate) async fn write_terminal(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("write_terminal", &call);
        let s = self.live(&args)?;
        let data = args.str(1, "data")?;
        Ok(match s.write(data.as_bytes()).await {
            Ok(n) => map([("success", true.into()), ("bytes_written", n.into())]),
            Err(e) => failure(&format!("the terminal is closed: {e}")),
        })
    }

    /// `read_terminal(session_id)` → `{success, output}`: what the program printed since
    /// the last `read_terminal` (at most the last MiB).
    pub(crate) async fn read_terminal(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("read_terminal", &call);
        let s = self.live(&args)?;
        Ok(map([
            ("success", true.into()),
            ("output", s.take_unread().into()),
        ]))
    }

    /// `resize_terminal(session_id, rows, cols)` → `{success}`.
    pub(crate) async fn resize_terminal(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("resize_terminal", &call);
        let s = self.live(&args)?;
        let dim = |i, name: &str| -> WorkerResult<u16> {
            args.get(i, name)
                .and_then(number)
                .filter(|n| n.fract() == 0.0 && (1.0..=1000.0).contains(n))
                .map(|n| n as u16)
                .ok_or_else(|| {
                    WorkerError::Argument(format!(
                        "resize_terminal(): '{name}' must be an integer from 1 to 1000"
                    ))
                })
        };
        let (rows, cols) = (dim(1, "rows")?, dim(2, "cols")?);
        Ok(match s.resize(rows, cols).await {
            Ok(()) => map([("success", true.into())]),
            Err(e) => failure(&e),
        })
    }

    /// `get_screen_content(session_id)` → `{success, content}` (the rendered screen).
    pub(crate) async fn get_screen_content(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_screen_content", &call);
        let s = self.live(&args)?;
        Ok(map([
            ("success", true.into()),
            ("content", s.screen_text().into()),
        ]))
    }

    /// Stops every session (worker shutdown), at once, and removes the base directory if
    /// the worker made it.
    pub(crate) async fn stop_all(&self) {
        let live: Vec<Arc<TermSession>> = self
            .sessions()
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Live(s) => Some(s),
                Slot::Starting { .. } | Slot::Stopping { .. } => None,
            })
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for s in live {
            tasks.spawn(async move { s.stop().await });
        }
        while tasks.join_next().await.is_some() {}
        if self.own_base {
            let _ = tokio::fs::remove_dir_all(&self.base).await;
        }
    }
}

impl Drop for Terminal {
    /// Whatever [`Terminal::stop_all`] did not stop is killed now (SIGKILL to each
    /// session's process group and session), without waiting.
    fn drop(&mut self) {
        self.kill_all_now();
    }
}

impl Terminal {
    /// SIGKILLs every session and removes the directories, at once and synchronously (for
    /// a worker dropped without a shutdown, e.g. by a panicking test).
    pub(crate) fn kill_all_now(&self) {
        let live: Vec<Arc<TermSession>> = self
            .sessions()
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Live(s) => Some(s),
                Slot::Starting { .. } | Slot::Stopping { .. } => None,
            })
            .collect();
        for s in live {
            pty::kill_session(s.pid);
            let _ = std::fs::remove_dir_all(&s.dir);
        }
        if self.own_base {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// `{success: false, error}`.
pub(crate) fn failure(error: &str) -> Value {
    map([("success", false.into()), ("error", error.into())])
}

/// `compile(manifest, files, config=None)`: fills `entry_point: "main.sh"` and
/// `startup_command: "/bin/bash"` when absent; returns `[manifest, files]`.
async fn compile(call: Call) -> Result<Value, String> {
    let args = Args::new("compile", &call);
    let mut manifest = args.get(0, "manifest").cloned().ok_or_else(|| {
        WorkerError::Argument("compile() missing required argument: 'manifest'".into())
    })?;
    if !manifest.is_map() {
        return Err(WorkerError::Argument("compile(): 'manifest' must be a map".into()).into());
    }
    if get(&manifest, "entry_point").is_none_or(Value::is_nil) {
        set(&mut manifest, "entry_point", "main.sh".into());
    }
    if get(&manifest, "startup_command").is_none_or(Value::is_nil) {
        set(
            &mut manifest,
            "startup_command",
            stage::DEFAULT_STARTUP_COMMAND.into(),
        );
    }
    let files = args
        .get(1, "files")
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    Ok(Value::Array(vec![manifest, files]))
}

/// The functions of the terminal service, in registration order.
pub(crate) fn functions(w: &Arc<Terminal>) -> Vec<(&'static str, Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, Terminal::start)),
        ("stop", bind(w, Terminal::stop)),
        ("get_logs", bind(w, Terminal::get_logs)),
        ("get_session_info", bind(w, Terminal::get_session_info)),
        ("list_sessions", bind(w, Terminal::list_sessions)),
        ("execute", bind(w, execute::execute)),
        ("write_terminal", bind(w, Terminal::write_terminal)),
        ("read_terminal", bind(w, Terminal::read_terminal)),
        ("resize_terminal", bind(w, Terminal::resize_terminal)),
        ("get_screen_content", bind(w, Terminal::get_screen_content)),
        ("attach", bind(w, attach::attach)),
        ("execute_stream", bind(w, stream::execute_stream)),
        ("compile", bind(w, |_, call| compile(call))),
    ]
}
