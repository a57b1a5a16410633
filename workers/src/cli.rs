//! `rhizo worker <kind>`: runs one built-in worker against a server until ctrl-c or
//! SIGTERM (or until the connection ends), then stops its sessions and disconnects. Each
//! flag has an environment default (`HYPHA_SERVER_URL`, `HYPHA_TOKEN`, …), as the
//! reference's `python -m hypha.workers.<name>` has.
//!
//! `rhizo worker ai-cli` also serves py-worker's REST/WebSocket API and web UI with
//! `--http-port` (seed 003), and registers on a Hypha server only when `--server-url` (or
//! `HYPHA_SERVER_URL`) is given; its CLI settings come from the environment and `.env`
//! ([`crate::ai_cli::AiCliOptions::from_env`]).

use crate::ai_cli::{AgentManager, AiCliOptions};
use crate::{start_worker_with, WorkerKind, WorkerOptions, DEFAULT_MAX_SESSIONS};
use anyhow::Context as _;
use std::path::PathBuf;

/// The server a worker connects to when none is given (ai-cli: none, REST only).
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:9527";

/// Flags of `rhizo worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Which worker: `python-eval`, `terminal`, `ai-cli`, `browser`, `conda`, `mcp-proxy` or
    /// `a2a-proxy`.
    #[arg(value_parser = clap::builder::ValueParser::new(parse_kind))]
    pub kind: WorkerKind,
    /// The server, http(s)://host:port or a ws(s):// URL (default http://127.0.0.1:9527;
    /// an ai-cli worker without it serves only its REST API).
    #[arg(long, env = "HYPHA_SERVER_URL")]
    pub server_url: Option<String>,
    /// The worker's token (registering in `public` needs write access there).
    #[arg(long, env = "HYPHA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Workspace to register in, e.g. `public`; default: the token's.
    #[arg(long, env = "HYPHA_WORKSPACE")]
    pub workspace: Option<String>,
    /// Service id (default python-eval-worker / terminal-worker).
    #[arg(long, env = "HYPHA_SERVICE_ID")]
    pub service_id: Option<String>,
    /// Client id (default: random).
    #[arg(long, env = "HYPHA_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Service visibility: public, protected or unlisted.
    #[arg(long, env = "HYPHA_VISIBILITY", default_value = "public")]
    pub visibility: String,
    /// python-eval: the interpreter (a bare name is looked up on PATH); conda: the one
    /// environments are made from.
    #[arg(long, env = "HYPHA_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// terminal: base directory of the session directories (default: a fresh temp dir).
    #[arg(long, env = "TERMINAL_WORKING_DIR")]
    pub working_dir: Option<PathBuf>,
    /// terminal: the most sessions at once.
    #[arg(long, env = "HYPHA_MAX_TERMINAL_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
    /// conda: the uv binary that builds the Python environments (a bare name is looked
    /// up on PATH; `pip install uv` ships it). Environments are made from `--python`.
    #[arg(long, env = "RHIZO_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// conda: the environment cache (default ~/.cache/rhizo-conda-envs).
    #[arg(long, env = "CONDA_CACHE_DIR")]
    pub conda_cache_dir: Option<PathBuf>,
    /// conda: base directory of the session directories (default: a fresh temp dir).
    #[arg(long, env = "CONDA_WORKING_DIR")]
    pub conda_working_dir: Option<PathBuf>,
    /// ai-cli: serve py-worker's REST/WebSocket API and web UI on this port.
    #[arg(long, env = "AI_CLI_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// ai-cli: the address of the REST API.
    #[arg(long, env = "AI_CLI_HTTP_HOST", default_value = "127.0.0.1")]
    pub http_host: String,
    /// ai-cli: require this bearer token on every REST/WebSocket request.
    #[arg(long, env = "AI_CLI_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// ai-cli: the `.env` file to read (default `./.env` when present).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

fn parse_kind(s: &str) -> Result<WorkerKind, String> {
    s.parse()
}

impl WorkerArgs {
    /// The [`WorkerOptions`] these flags describe.
    pub fn options(&self) -> WorkerOptions {
        WorkerOptions {
            server_url: self
                .server_url
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned()),
            token: self.token.clone(),
            workspace: self.workspace.clone(),
            service_id: self.service_id.clone(),
            client_id: self.client_id.clone(),
            visibility: self.visibility.clone(),
            python: self.python.clone(),
            working_dir: self.working_dir.clone(),
            max_sessions: self.max_sessions,
            // Read from the environment by `run` (the RHIZO_BROWSER_* variables).
            browser: crate::browser::BrowserOptions::default(),
            uv: self.uv.clone(),
            conda_cache_dir: self.conda_cache_dir.clone(),
            conda_working_dir: self.conda_working_dir.clone(),
        }
    }
}

/// Starts the worker and serves until ctrl-c, SIGTERM or the end of the connection; then
/// stops every session and disconnects.
///
/// Errors: those of [`start_worker`]; the connection ending by itself (so that a
/// supervisor restarts the worker).
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let manager = if args.kind == WorkerKind::AiCli {
        let opts = AiCliOptions::from_env(args.env_file.as_deref())
            .context("reading the ai-cli configuration")?;
        Some(AgentManager::new(opts))
    } else {
        None
    };
    let http = match (&manager, args.http_port) {
        (Some(m), Some(port)) => {
            let listener = tokio::net::TcpListener::bind((args.http_host.as_str(), port))
                .await
                .with_context(|| format!("binding {}:{port}", args.http_host))?;
            println!(
                "ai-cli REST API at http://{} (docs at /docs)",
                listener.local_addr()?
            );
            let (m, token) = (m.clone(), args.http_token.clone());
            Some(tokio::spawn(crate::ai_cli::http::serve(listener, m, token)))
        }
        (None, Some(_)) => anyhow::bail!("--http-port is for the ai-cli worker"),
        _ => None,
    };
    let hypha = args.kind != WorkerKind::AiCli || args.server_url.is_some();
    if !hypha {
        anyhow::ensure!(
            http.is_some(),
            "an ai-cli worker needs --http-port, --server-url or both"
        );
        shutdown_signal().await;
        if let Some(m) = &manager {
            m.stop_all().await;
        }
        return Ok(());
    }
    let mut opts = args.options();
    if args.kind == WorkerKind::Browser {
        opts.browser = crate::browser::BrowserOptions::from_env().map_err(anyhow::Error::msg)?;
    }
    let worker = start_worker_with(args.kind, opts, manager.clone()).await?;
    println!("{} worker registered as {}", args.kind, worker.service_id());
    let lost = tokio::select! {
        _ = shutdown_signal() => false,
        _ = worker.closed() => true,
    };
    tracing::info!("stopping the worker's sessions");
    worker.shutdown().await;
    if let Some(m) = &manager {
        m.stop_all().await;
    }
    anyhow::ensure!(
        !lost,
        "the connection to {} ended",
        args.options().server_url
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn flags_parse_into_options() {
        let cli = Cli::try_parse_from([
            "w",
            "terminal",
            "--server-url",
            "http://127.0.0.1:1",
            "--workspace",
            "public",
            "--max-sessions",
            "3",
        ])
        .unwrap();
        let o = cli.worker.options();
        assert_eq!(cli.worker.kind, WorkerKind::Terminal);
        assert_eq!(o.server_url, "http://127.0.0.1:1");
        assert_eq!(o.workspace.as_deref(), Some("public"));
        assert_eq!(o.max_sessions, 3);
        assert_eq!(o.visibility, "public");
        assert!(Cli::try_parse_from(["w", "k8s"]).is_err());
        let cli = Cli::try_parse_from([
            "w",
            "conda-jupyter-kernel",
            "--uv",
            "/opt/uv",
            "--conda-cache-dir",
            "/c",
        ])
        .unwrap();
        let o = cli.worker.options();
        assert_eq!(cli.worker.kind, WorkerKind::Conda);
        assert_eq!(o.uv, PathBuf::from("/opt/uv"));
        assert_eq!(o.conda_cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(o.conda_working_dir, None);
    }
}
