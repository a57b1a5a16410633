//! The `rhizo` command: `rhizo serve` runs the router and the control plane in one process
//! with embedded defaults (DESIGN.md "Modes").
//!
//! Flags follow the reference server's names; every flag can also be given as
//! `HYPHA_<FLAG>` in the environment, as with the reference's `--from-env`.

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Args, Parser, Subcommand};
use rhizo_control_plane::config::Limits;
use rhizo_control_plane::{Manager, ServerConfig};
use rhizo_protocol::token::ClaimFormat;
use rhizo_router::rate::MsgRate;
use rhizo_router::{Router, RouterConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code for bad configuration (EX_USAGE), returned before any port is bound.
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "rhizo", version, about = "A Hypha server in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router and the control plane in one process.
    Serve(Serve),
}

#[derive(Debug, Args)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "HYPHA_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free port; the chosen one is logged).
    #[arg(long, env = "HYPHA_PORT", default_value_t = 9527)]
    port: u16,
    /// Serve everything under this path prefix, e.g. `/hypha`.
    #[arg(long, env = "HYPHA_BASE_PATH", default_value = "/")]
    base_path: String,
    /// URL clients use to reach this server; default `http://<host>:<port><base-path>`.
    #[arg(long, env = "HYPHA_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Server id; the manager is `manager-<server-id>`. Random when not given.
    #[arg(long, env = "HYPHA_SERVER_ID")]
    server_id: Option<String>,
    /// Opaque root token (at least 32 characters) that authenticates as the root user.
    #[arg(long, env = "HYPHA_ROOT_TOKEN", hide_env_values = true)]
    root_token: Option<String>,
    /// Directory for local state (the generated token secret when no
    /// `HYPHA_JWT_SECRET`/`JWT_SECRET` is set).
    #[arg(long, env = "RHIZO_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Database for persistent workspaces and token revocations: `sqlite://PATH`
    /// (default `<data-dir>/rhizo.db`) or `postgres://user@host/db`.
    #[arg(long, env = "HYPHA_DATABASE_URI")]
    database_uri: Option<String>,
    /// Close WebSocket connections idle for this many seconds.
    #[arg(long, env = "HYPHA_WS_IDLE_TIMEOUT", default_value_t = 600)]
    ws_idle_timeout: u64,
    /// Messages per second one WebSocket connection may send before it is closed with 1008
    /// "Rate limit exceeded" (0: no limit; the reference enforces 200 by default).
    #[arg(long, env = "HYPHA_WS_MSG_RATE_LIMIT", default_value_t = 0)]
    ws_msg_rate_limit: u32,
    /// Messages a connection may send at once above that rate (with the rate limit only).
    #[arg(long, env = "HYPHA_WS_MSG_BURST_LIMIT", default_value_t = 2000)]
    ws_msg_burst_limit: u32,
    /// Largest accepted frame, bytes.
    #[arg(long, env = "RHIZO_MAX_FRAME_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_frame_bytes: usize,
    /// Per-connection read buffer, bytes (the memory floor of a connection).
    #[arg(long, env = "RHIZO_READ_BUFFER_BYTES", default_value_t = 8 * 1024)]
    read_buffer_bytes: usize,
    /// Per-connection egress queue limit, bytes.
    #[arg(long, env = "RHIZO_EGRESS_LIMIT_BYTES", default_value_t = 64 * 1024 * 1024)]
    egress_limit_bytes: usize,
    /// Lifetime of reconnection tokens, seconds.
    #[arg(long, env = "RECONNECTION_TOKEN_LIFE_TIME", default_value_t = 172_800)]
    reconnection_token_life_time: u64,
    /// Token issuer claim.
    #[arg(long, env = "AUTH0_ISSUER", default_value = rhizo_protocol::token::DEFAULT_ISSUER)]
    jwt_issuer: String,
    /// Token audience claim.
    #[arg(long, env = "AUTH0_AUDIENCE", default_value = rhizo_protocol::token::DEFAULT_AUDIENCE)]
    jwt_audience: String,
    /// Namespace of the roles/email/parent claims.
    #[arg(long, env = "AUTH0_NAMESPACE", default_value = rhizo_protocol::token::DEFAULT_NAMESPACE)]
    jwt_namespace: String,
    /// Seconds a temporary workspace outlives its last client (0: removed at once).
    #[arg(
        long,
        env = "HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD",
        default_value_t = 0.0
    )]
    workspace_unload_grace_period: f64,
    /// Workspaces a user may own (0: no limit; root is exempt).
    #[arg(long, env = "HYPHA_MAX_WORKSPACES_PER_USER", default_value_t = 100)]
    max_workspaces_per_user: usize,
    /// Services besides `built-in` one client may register (0: no limit).
    #[arg(long, env = "HYPHA_MAX_SERVICES_PER_CLIENT", default_value_t = 1000)]
    max_services_per_client: usize,
    /// Connections one user may hold on this server (0: no limit; root is exempt).
    #[arg(long, env = "HYPHA_MAX_CONNECTIONS_PER_USER", default_value_t = 200)]
    max_connections_per_user: usize,
    /// Connections one workspace may hold on this server (0: no limit).
    #[arg(long, env = "HYPHA_MAX_CLIENTS_PER_WORKSPACE", default_value_t = 1000)]
    max_clients_per_workspace: usize,
    /// Handshakes handled at once; others wait up to 30 s, then get 1013 (0: no limit).
    #[arg(long, env = "HYPHA_MAX_CONCURRENT_CONNECTIONS", default_value_t = 10)]
    max_concurrent_connections: usize,
}

/// Refuses weak root tokens as the reference does (workspace-api.md §1.5).
fn check_root_token(token: &str) -> Result<(), String> {
    if token.len() < 32 {
        return Err("--root-token must be at least 32 characters".into());
    }
    const WEAK: [&str; 10] = [
        "test", "root", "admin", "password", "token", "secret", "123", "abc", "hypha", "default",
    ];
    let lower = token.to_lowercase();
    if token.len() < 64 {
        if let Some(w) = WEAK.iter().find(|w| lower.contains(*w)) {
            return Err(format!(
                "--root-token shorter than 64 characters must not contain '{w}'"
            ));
        }
    }
    Ok(())
}

/// `HYPHA_JWT_SECRET`, else `JWT_SECRET`, else a secret kept in `<data_dir>/jwt-secret`
/// so that reconnection tokens survive a restart (protocol.md §1.7).
fn jwt_secret(data_dir: &Path) -> anyhow::Result<String> {
    for var in ["HYPHA_JWT_SECRET", "JWT_SECRET"] {
        if let Ok(s) = std::env::var(var) {
            if !s.is_empty() {
                return Ok(s);
            }
        }
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_owned());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = rhizo_control_plane::names::random_string(43);
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    let secret = jwt_secret(&args.data_dir)?;
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            format!("{}:{}", args.host, args.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))
        })
        .with_context(|| format!("resolving {}:{}", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // Small frames flow both ways on every socket: without TCP_NODELAY, Nagle plus delayed
    // ACKs add milliseconds to calls.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let base = args.base_path.trim_end_matches('/').to_owned();
    let base = if base.is_empty() || base.starts_with('/') {
        base
    } else {
        format!("/{base}")
    };
    let local_url = format!("http://{}:{}{}", args.host, local.port(), base);
    let public_url = args
        .public_base_url
        .clone()
        .unwrap_or_else(|| local_url.clone());
    let server_id = args
        .server_id
        .clone()
        .unwrap_or_else(rhizo_control_plane::names::readable_id);

    let router = Router::new(
        &format!("manager-{server_id}"),
        RouterConfig {
            max_frame_bytes: args.max_frame_bytes,
            egress_limit_bytes: args.egress_limit_bytes,
            read_buffer_bytes: args.read_buffer_bytes.max(1024),
            idle_timeout: Duration::from_secs(args.ws_idle_timeout.max(1)),
            msg_rate: (args.ws_msg_rate_limit > 0).then_some(MsgRate {
                per_second: args.ws_msg_rate_limit,
                burst: args.ws_msg_burst_limit.max(1),
            }),
            ..RouterConfig::default()
        },
    );
    let config = ServerConfig {
        server_id,
        public_base_url: public_url.trim_end_matches('/').to_owned(),
        local_base_url: local_url,
        jwt_secret: secret,
        claims: ClaimFormat {
            issuer: args.jwt_issuer,
            audience: args.jwt_audience,
            namespace: args.jwt_namespace,
        },
        root_token: args.root_token.clone(),
        reconnection_token_life_time: args.reconnection_token_life_time,
        limits: Limits {
            workspaces_per_user: args.max_workspaces_per_user,
            services_per_client: args.max_services_per_client,
            connections_per_user: args.max_connections_per_user,
            clients_per_workspace: args.max_clients_per_workspace,
            concurrent_handshakes: args.max_concurrent_connections,
            ..Limits::default()
        },
        workspace_unload_grace: Duration::from_secs_f64(
            Some(args.workspace_unload_grace_period)
                .filter(|g| g.is_finite())
                .map_or(0.0, |g| g.clamp(0.0, 365.0 * 86_400.0)),
        ),
        ..ServerConfig::default()
    };
    let manager: Arc<Manager> = rhizo_control_plane::start(config, router.clone());
    let database_uri = args
        .database_uri
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("rhizo.db").display()));
    let store = rhizo_control_plane::storage::SqlStore::connect(&database_uri)
        .await
        .with_context(|| "opening the database (--database-uri)".to_owned())?;
    let (workspaces, revocations) = manager
        .attach_store(Arc::new(store))
        .await
        .map_err(|e| anyhow::anyhow!("loading from the database: {e}"))?;
    tracing::info!(workspaces, revocations, "state loaded from the database");
    let app = rhizo_control_plane::http::app(manager.clone(), &base);
    tracing::info!(
        "rhizo listening on http://{local}{base} (manager {})",
        manager.manager_id()
    );
    println!("rhizo listening on http://{local}{base}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown_signal().await;
    tracing::info!("shutting down");
    // Stop accepting, tell every connection to close (1001, so clients reconnect
    // elsewhere), and wait for them under a hard deadline: upgraded WebSocket connections
    // are not tracked by the HTTP server's graceful shutdown.
    let _ = stop_tx.send(());
    router.shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while router
        .counters()
        .connections
        .load(std::sync::atomic::Ordering::Acquire)
        > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match tokio::time::timeout_at(deadline, server).await {
        Ok(r) => r??,
        Err(_) => tracing::warn!("connections did not drain within 5 s; exiting"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RHIZO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            if let Some(t) = &args.root_token {
                if let Err(e) = check_root_token(t) {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_root_tokens_are_refused() {
        assert!(check_root_token("short").is_err());
        assert!(check_root_token(&format!("{}admin", "x".repeat(40))).is_err());
        assert!(check_root_token(&"x".repeat(40)).is_ok());
        assert!(check_root_token(&format!("{}admin", "x".repeat(70))).is_ok());
    }

    #[test]
    fn flags_parse_with_reference_names() {
        let cli = Cli::try_parse_from([
            "rhizo",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--base-path",
            "/hypha",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command;
        assert_eq!(s.host, "0.0.0.0");
        assert_eq!(s.port, 0);
        assert_eq!(s.base_path, "/hypha");
    }
}
