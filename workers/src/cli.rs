//! `rhizo worker <kind>`: runs one built-in worker against a server until ctrl-c or
//! SIGTERM (or until the connection ends), then stops its sessions and disconnects. Each
//! flag has an environment default (`HYPHA_SERVER_URL`, `HYPHA_TOKEN`, …), as the
//! reference's `python -m hypha.workers.<name>` has.

use crate::{start_worker, WorkerKind, WorkerOptions, DEFAULT_MAX_SESSIONS};
use std::path::PathBuf;

/// Flags of `rhizo worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Which worker: `python-eval` or `terminal`.
    #[arg(value_parser = clap::builder::ValueParser::new(parse_kind))]
    pub kind: WorkerKind,
    /// The server, http(s)://host:port or a ws(s):// URL.
    #[arg(
        long,
        env = "HYPHA_SERVER_URL",
        default_value = "http://127.0.0.1:9527"
    )]
    pub server_url: String,
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
    /// python-eval: the interpreter (a bare name is looked up on PATH).
    #[arg(long, env = "HYPHA_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// terminal: base directory of the session directories (default: a fresh temp dir).
    #[arg(long, env = "TERMINAL_WORKING_DIR")]
    pub working_dir: Option<PathBuf>,
    /// terminal: the most sessions at once.
    #[arg(long, env = "HYPHA_MAX_TERMINAL_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
}

fn parse_kind(s: &str) -> Result<WorkerKind, String> {
    s.parse()
}

impl WorkerArgs {
    /// The [`WorkerOptions`] these flags describe.
    pub fn options(&self) -> WorkerOptions {
        WorkerOptions {
            server_url: self.server_url.clone(),
            token: self.token.clone(),
            workspace: self.workspace.clone(),
            service_id: self.service_id.clone(),
            client_id: self.client_id.clone(),
            visibility: self.visibility.clone(),
            python: self.python.clone(),
            working_dir: self.working_dir.clone(),
            max_sessions: self.max_sessions,
        }
    }
}

/// Starts the worker and serves until ctrl-c, SIGTERM or the end of the connection; then
/// stops every session and disconnects.
///
/// Errors: those of [`start_worker`]; the connection ending by itself (so that a
/// supervisor restarts the worker).
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let worker = start_worker(args.kind, args.options()).await?;
    println!("{} worker registered as {}", args.kind, worker.service_id());
    let lost = tokio::select! {
        _ = shutdown_signal() => false,
        _ = worker.closed() => true,
    };
    tracing::info!("stopping the worker's sessions");
    worker.shutdown().await;
    anyhow::ensure!(!lost, "the connection to {} ended", args.server_url);
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
        assert!(Cli::try_parse_from(["w", "conda"]).is_err());
    }
}
