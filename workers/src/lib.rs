//! rhizo's built-in server-app workers (apps-workers.md §3, §4.1–§4.2), as ordinary
//! clients of a Hypha server: each connects with [`rhizo_client::Client`], registers one
//! service of `type: "server-app-worker"` and serves the worker protocol's calls. They
//! touch nothing of the server's internals, so they work the same against rhizo and
//! against the reference (Python) server.
//!
//! - [`WorkerKind::PythonEval`] (types `["python-eval"]`, [`python_eval`]): runs an app's
//!   entry script once with `python -c`, with only the app's `HYPHA_*` variables.
//! - [`WorkerKind::Terminal`] (types `["terminal"]`, [`terminal`]): an interactive program
//!   (default `/bin/bash`) in a PTY per session, with `execute`, raw keystrokes, a screen
//!   model and `attach` for live screen updates.
//! - [`WorkerKind::AiCli`] (types `["ai-cli", "code-agent"]`, [`ai_cli`]): coding CLIs
//!   (Claude Code, OpenCode) as agent sessions; also py-worker's REST/WebSocket API.
//! - [`WorkerKind::Browser`] (types `web-python`, `web-worker`, `window`, `iframe`,
//!   `hypha`, `web-app`, [`browser`]): browser apps as pages of one headless Chromium,
//!   with `execute` (evaluate in the page) and `take_screenshot`.
//! - [`WorkerKind::Conda`] (types `["conda-jupyter-kernel"]`, [`conda`]): a Jupyter kernel
//!   per session in a cached Python environment built with `uv` for the app's
//!   dependencies, with `execute` in that kernel.
//! - [`WorkerKind::McpProxy`] (types `["mcp-server"]`, [`mcp_proxy`]): MCP servers reached
//!   over streamable HTTP or SSE become Hypha services (tools, resources, prompts).
//! - [`WorkerKind::A2aProxy`] (types `["a2a-agent"]`, [`a2a_proxy`]): A2A agents become
//!   Hypha services (skills, `run`, `agent_card`).
//!
//! A call may touch a session only when its trusted workspace (`ws` of the frame header)
//! is the session's workspace, or its user holds admin there: the controller calls a
//! worker on behalf of the app's workspace, while a stranger's direct call from another
//! workspace is refused with a `PermissionError`.
//!
//! Start one with [`start_worker`] (the server does for its built-in workers) or from the
//! command line with `rhizo worker <kind>` ([`cli`]).

pub mod a2a_proxy;
pub mod ai_cli;
pub mod browser;
pub mod cli;
pub mod conda;
mod error;
pub mod mcp_proxy;
pub mod python_eval;
mod session;
pub mod terminal;

mod args;
mod config;
mod fetch;
mod logs;
mod service;

pub use error::WorkerError;

use anyhow::Context as _;
use rhizo_client::{Client, ConnectOptions, Event};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Which built-in worker to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// `python-eval` (§4.1).
    PythonEval,
    /// `terminal` (§4.2).
    Terminal,
    /// `ai-cli` (§6.2).
    AiCli,
    /// `browser` (§4.7).
    Browser,
    /// `conda` (§4.3), app type `conda-jupyter-kernel`.
    Conda,
    /// `mcp-proxy` (§4.5), app type `mcp-server`.
    McpProxy,
    /// `a2a-proxy` (§4.6), app type `a2a-agent`.
    A2aProxy,
}

impl WorkerKind {
    /// The kind's name and app type: `"python-eval"` or `"terminal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::PythonEval => "python-eval",
            WorkerKind::Terminal => "terminal",
            WorkerKind::AiCli => "ai-cli",
            WorkerKind::Browser => "browser",
            WorkerKind::Conda => "conda",
            WorkerKind::McpProxy => "mcp-proxy",
            WorkerKind::A2aProxy => "a2a-proxy",
        }
    }

    /// The service id a worker of this kind registers unless told otherwise.
    pub fn default_service_id(self) -> &'static str {
        match self {
            WorkerKind::PythonEval => "python-eval-worker",
            WorkerKind::Terminal => "terminal-worker",
            WorkerKind::AiCli => "ai-cli-worker",
            WorkerKind::Browser => "browser-worker",
            WorkerKind::Conda => "conda-worker",
            WorkerKind::McpProxy => "mcp-proxy-worker",
            WorkerKind::A2aProxy => "a2a-proxy-worker",
        }
    }
}

impl std::fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkerKind {
    type Err = String;

    /// `"python-eval"`, `"terminal"` or `"ai-cli"` (alias `"code-agent"`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "python-eval" => Ok(WorkerKind::PythonEval),
            "terminal" => Ok(WorkerKind::Terminal),
            "ai-cli" | "code-agent" => Ok(WorkerKind::AiCli),
            "browser" => Ok(WorkerKind::Browser),
            "conda" | "conda-jupyter-kernel" => Ok(WorkerKind::Conda),
            "mcp-proxy" | "mcp-server" => Ok(WorkerKind::McpProxy),
            "a2a-proxy" | "a2a-agent" => Ok(WorkerKind::A2aProxy),
            other => Err(format!(
                "unknown worker kind {other:?}; expected python-eval, terminal, ai-cli, browser, \
                 conda, mcp-proxy or a2a-proxy"
            )),
        }
    }
}

/// How to connect a worker and what it may use.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server: `http(s)://host:port` (the client connects to its `/ws`) or a `ws(s)://`
    /// URL. Also the `HYPHA_SERVER_URL` of apps whose config names no server.
    pub server_url: String,
    /// The worker's own token; registering in `public` needs one with write access there
    /// (e.g. the root token). Never passed on to apps.
    pub token: Option<String>,
    /// Workspace to register in, e.g. `Some("public")` for a worker every workspace may
    /// use; `None`: the one the server gives the token.
    pub workspace: Option<String>,
    /// Service id; default `python-eval-worker` / `terminal-worker`.
    pub service_id: Option<String>,
    /// Client id; random when `None`.
    pub client_id: Option<String>,
    /// Service visibility: `public` (default), `protected` (own workspace only) or
    /// `unlisted`.
    pub visibility: String,
    /// python-eval's interpreter (default `python3`); a bare name is looked up on the
    /// worker's `PATH` at start, since the app's process gets no `PATH`.
    pub python: PathBuf,
    /// Terminal: where session directories go (`{base}/{sanitised session id}`); default a
    /// fresh `hypha_sessions_<uuid>` in the system temp dir, removed at shutdown.
    pub working_dir: Option<PathBuf>,
    /// Terminal: the most sessions at once (default 50, or `HYPHA_MAX_TERMINAL_SESSIONS`).
    pub max_sessions: usize,
    /// Browser: Chromium, the session cap and the page settings
    /// ([`browser::BrowserOptions`]).
    pub browser: browser::BrowserOptions,
    /// Conda: the `uv` binary environments are built with (default `uv`, looked up on
    /// `PATH`); environments are made from `python`'s interpreter.
    pub uv: PathBuf,
    /// Conda: the environment cache (default `~/.cache/rhizo-conda-envs`).
    pub conda_cache_dir: Option<PathBuf>,
    /// Conda: where session directories go; default a fresh `hypha_conda_<uuid>` in the
    /// system temp dir, removed at shutdown.
    pub conda_working_dir: Option<PathBuf>,
}

/// The default terminal session cap.
pub const DEFAULT_MAX_SESSIONS: usize = 50;

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            server_url: "http://127.0.0.1:9527".into(),
            token: None,
            workspace: None,
            service_id: None,
            client_id: None,
            visibility: "public".into(),
            python: PathBuf::from("python3"),
            working_dir: None,
            max_sessions: std::env::var("HYPHA_MAX_TERMINAL_SESSIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MAX_SESSIONS),
            browser: browser::BrowserOptions::default(),
            uv: PathBuf::from("uv"),
            conda_cache_dir: None,
            conda_working_dir: None,
        }
    }
}

enum Running {
    PythonEval(Arc<python_eval::PythonEval>),
    Terminal(Arc<terminal::Terminal>),
    AiCli(Arc<ai_cli::hypha::AiCliWorker>),
    Browser(Arc<browser::BrowserWorker>),
    Conda(Arc<conda::Conda>),
    /// mcp-proxy and a2a-proxy.
    Proxy(Arc<mcp_proxy::proxy::ProxyHost>),
}

/// A started worker: its connection and sessions. Dropping it without
/// [`RunningWorker::shutdown`] kills what still runs at once (python-eval scripts,
/// terminal process groups and sessions, with SIGKILL) and closes the connection.
pub struct RunningWorker {
    client: Arc<Client>,
    service_id: String,
    running: Running,
    closed: watch::Receiver<bool>,
}

impl RunningWorker {
    /// The full service id, `ws/client_id:service_id`.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The worker's client (e.g. to read its `connection_info`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves when the connection to the server has ended (the client does not
    /// reconnect; a supervisor should start the worker again).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Stops every session (terminal processes: SIGTERM/SIGHUP, then SIGKILL after a
    /// grace period; their directories removed) and disconnects.
    pub async fn shutdown(self) {
        match &self.running {
            Running::PythonEval(w) => w.stop_all(),
            Running::Terminal(w) => w.stop_all().await,
            Running::AiCli(w) => w.stop_all().await,
            Running::Browser(w) => w.stop_all().await,
            Running::Conda(w) => w.stop_all().await,
            Running::Proxy(w) => w.stop_all(),
        }
        // Dropping disconnects.
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        match &self.running {
            Running::PythonEval(w) => w.stop_all(),
            Running::Terminal(w) => w.kill_all_now(),
            Running::AiCli(w) => w.manager.kill_all_now(),
            // Dropping the browser kills its process.
            Running::Browser(_) => {}
            Running::Conda(w) => w.kill_all_now(),
            Running::Proxy(w) => w.stop_all(),
        }
        self.client.disconnect();
    }
}

/// Connects to `opts.server_url`, registers the worker service of `kind` and returns it
/// running; calls are served on the current tokio runtime until
/// [`RunningWorker::shutdown`].
///
/// Errors: the python interpreter cannot be found (python-eval), the terminal base
/// directory cannot be created, the connection is refused (bad token, unknown workspace)
/// or the manager refuses the registration (no write permission in the workspace).
pub async fn start_worker(kind: WorkerKind, opts: WorkerOptions) -> anyhow::Result<RunningWorker> {
    let manager = match kind {
        WorkerKind::AiCli => Some(ai_cli::AgentManager::new(
            ai_cli::AiCliOptions::from_env(None).context("reading the ai-cli configuration")?,
        )),
        _ => None,
    };
    start_worker_with(kind, opts, manager).await
}

/// [`start_worker`]; an ai-cli worker serves the sessions of `manager` (shared with its
/// REST API, [`ai_cli::http`]).
///
/// Errors: those of [`start_worker`]; an ai-cli worker without a manager.
pub async fn start_worker_with(
    kind: WorkerKind,
    opts: WorkerOptions,
    manager: Option<Arc<ai_cli::AgentManager>>,
) -> anyhow::Result<RunningWorker> {
    let files = fetch::AppFiles::new().context("setting up the HTTP client")?;
    let python = match kind {
        WorkerKind::PythonEval | WorkerKind::Conda => Some(resolve_program(&opts.python)?),
        WorkerKind::Terminal
        | WorkerKind::AiCli
        | WorkerKind::Browser
        | WorkerKind::McpProxy
        | WorkerKind::A2aProxy => None,
    };
    let connect = ConnectOptions {
        client_id: opts.client_id.clone(),
        workspace: opts.workspace.clone(),
        token: opts.token.clone(),
        reconnection_token: None,
    };
    let mut client = Client::connect(&opts.server_url, connect)
        .await
        .with_context(|| format!("connecting to {}", opts.server_url))?;
    let closed = watch_events(&mut client);
    let client = Arc::new(client);
    let id = opts
        .service_id
        .clone()
        .unwrap_or_else(|| kind.default_service_id().to_owned());
    let (running, functions, record) = match kind {
        WorkerKind::PythonEval => {
            let w = Arc::new(python_eval::PythonEval::new(
                python.expect("resolved above"),
                opts.server_url.clone(),
                Arc::downgrade(&client),
                files,
            ));
            let record = service::record(
                "Python Eval Worker",
                "Runs python-eval apps: fetches the entry script and runs it once with \
                 `python -c`, with only the app's HYPHA_* environment.",
                &["python-eval"],
                &opts.visibility,
            );
            let f = python_eval::functions(&w);
            (Running::PythonEval(w), f, record)
        }
        WorkerKind::Terminal => {
            let w = Arc::new(
                terminal::Terminal::new(
                    terminal::TerminalOptions {
                        working_dir: opts.working_dir.clone(),
                        max_sessions: opts.max_sessions,
                        server_url: opts.server_url.clone(),
                    },
                    Arc::downgrade(&client),
                    files,
                )
                .context("preparing the terminal session directory")?,
            );
            let record = service::record(
                "Terminal Worker",
                "Runs terminal apps: an interactive program (default /bin/bash) in a PTY \
                 per session, with execute, raw keystrokes, screen content and attach.",
                &["terminal"],
                &opts.visibility,
            );
            let f = terminal::functions(&w);
            (Running::Terminal(w), f, record)
        }
        WorkerKind::AiCli => {
            let manager = manager.context("an ai-cli worker needs its session manager")?;
            let w = Arc::new(ai_cli::hypha::AiCliWorker::new(
                manager,
                Arc::downgrade(&client),
                opts.server_url.clone(),
                files,
            ));
            let record = service::record(
                "AI CLI Worker",
                "Runs ai-cli apps: coding CLIs (Claude Code, OpenCode) as agent sessions, \
                 driven turn by turn with execute, attach and the per-session agent service.",
                &["ai-cli", "code-agent"],
                &opts.visibility,
            );
            let f = ai_cli::hypha::functions(&w);
            (Running::AiCli(w), f, record)
        }
        WorkerKind::Browser => {
            let w = browser::BrowserWorker::new(
                opts.browser.clone(),
                opts.server_url.clone(),
                Arc::downgrade(&client),
                files,
            );
            let record = service::record(
                "Browser Worker",
                "Runs browser apps (web-worker, window, iframe, hypha, web-python, web-app) as \
                 pages of one headless Chromium, with execute and take_screenshot.",
                &browser::compile::BROWSER_TYPES,
                &opts.visibility,
            );
            let f = browser::functions(&w);
            (Running::Browser(w), f, record)
        }
        WorkerKind::Conda => {
            let uv = conda::find_program(&opts.uv).with_context(|| {
                format!(
                    "uv {:?} not found; pass --uv /path/to/uv (pip install uv)",
                    opts.uv
                )
            })?;
            let w = Arc::new(
                conda::Conda::new(
                    conda::CondaOptions {
                        uv,
                        python: python.expect("resolved above"),
                        cache_dir: opts.conda_cache_dir.clone(),
                        working_dir: opts.conda_working_dir.clone(),
                        server_url: opts.server_url.clone(),
                    },
                    Arc::downgrade(&client),
                    files,
                )
                .context("preparing the environment cache and session directories")?,
            );
            let record = service::record(
                "Conda Worker (uv)",
                "Runs conda-jupyter-kernel apps: a Jupyter kernel per session in a cached \
                 Python environment built with uv for the app's (PyPI) dependencies, with \
                 execute in that kernel.",
                &[conda::APP_TYPE],
                &opts.visibility,
            );
            let f = conda::functions(&w);
            (Running::Conda(w), f, record)
        }
        WorkerKind::McpProxy => {
            let w = Arc::new(mcp_proxy::host(
                opts.server_url.clone(),
                Arc::downgrade(&client),
            ));
            let record = service::record(
                "MCP Proxy Worker",
                "MCP proxy worker for connecting to MCP servers: each server of an mcp-server \
                 app (streamable HTTP or SSE) becomes a service with its tools, resources and \
                 prompts.",
                &[mcp_proxy::APP_TYPE],
                &opts.visibility,
            );
            let f = mcp_proxy::proxy::functions(&w);
            (Running::Proxy(w), f, record)
        }
        WorkerKind::A2aProxy => {
            let w = Arc::new(a2a_proxy::host(
                opts.server_url.clone(),
                Arc::downgrade(&client),
            ));
            let record = service::record(
                "A2A Proxy Worker",
                "A2A proxy worker for connecting to A2A agents: each agent of an a2a-agent app \
                 becomes a service with its skills, run and agent_card.",
                &[a2a_proxy::APP_TYPE],
                &opts.visibility,
            );
            let f = mcp_proxy::proxy::functions(&w);
            (Running::Proxy(w), f, record)
        }
    };
    let service_id = client
        .register_service_record(&id, record, functions)
        .await
        .with_context(|| format!("registering the {kind} worker service {id:?}"))?;
    tracing::info!(%service_id, "worker registered");
    Ok(RunningWorker {
        client,
        service_id,
        running,
        closed,
    })
}

/// Drains the client's events on a task (nobody else reads them) and reports the end of
/// the connection.
fn watch_events(client: &mut Client) -> watch::Receiver<bool> {
    let mut events = client.take_events();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Event::Closed(reason) = ev {
                tracing::warn!(?reason, "the worker's connection closed");
                break;
            }
        }
        let _ = tx.send(true);
    });
    rx
}

/// `program` as a path the child can be started with although it gets no `PATH`: a bare
/// name is looked up on the worker's `PATH`; anything else is made absolute (symlinks are
/// kept, so a virtualenv's `bin/python` stays itself).
///
/// Errors: the program does not exist.
fn resolve_program(program: &Path) -> anyhow::Result<PathBuf> {
    let bare = program.components().count() == 1 && !program.is_absolute();
    if bare {
        let path = std::env::var_os("PATH").unwrap_or_default();
        return std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|c| c.is_file())
            .with_context(|| {
                format!(
                    "python interpreter {:?} not found on PATH; pass --python /path/to/python",
                    program
                )
            });
    }
    anyhow::ensure!(
        program.is_file(),
        "python interpreter {} does not exist",
        program.display()
    );
    Ok(std::path::absolute(program)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in [
            WorkerKind::PythonEval,
            WorkerKind::Terminal,
            WorkerKind::AiCli,
            WorkerKind::Browser,
            WorkerKind::Conda,
            WorkerKind::McpProxy,
            WorkerKind::A2aProxy,
        ] {
            assert_eq!(k.to_string().parse::<WorkerKind>(), Ok(k));
        }
        assert_eq!(
            "conda-jupyter-kernel".parse::<WorkerKind>(),
            Ok(WorkerKind::Conda)
        );
        assert!("k8s"
            .parse::<WorkerKind>()
            .unwrap_err()
            .contains("python-eval"));
    }

    #[test]
    fn bare_programs_are_found_on_path() {
        let sh = resolve_program(Path::new("sh")).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        let e = resolve_program(Path::new("no-such-python-xyz")).unwrap_err();
        assert!(e.to_string().contains("--python"), "{e}");
        assert!(resolve_program(Path::new("/no/such/python")).is_err());
    }
}
