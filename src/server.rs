//! Assembles one rhizo instance from its [`Settings`]: the router, the control plane over the
//! router's [`RouterControl`] interface, the store, and the HTTP routes of both planes on one
//! listener (DESIGN.md "Modes": `rhizo serve`).
//!
//! ```no_run
//! # async fn run() -> Result<(), rhizo::server::StartError> {
//! let settings = rhizo::Settings::parse_from(["rhizo", "--port", "0"]).unwrap();
//! let server = rhizo::Server::builder(settings).bind().await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Shutdown (STYLE.md practice 10): stop accepting, tell every connection to close with
//! 1001 (clients reconnect elsewhere), wait for them to drain under a hard deadline.

use crate::settings::{ConfigError, Settings};
use anyhow::Context;
use axum::serve::ListenerExt;
use rhizo_control_plane::service::{ControlService, ServiceSet};
use rhizo_control_plane::storage::{MemoryStore, SqlStore, Store};
use rhizo_control_plane::{Manager, ServerConfig};
use rhizo_interface::RouterControl;
use rhizo_router::bus::redis::{RedisBus, RedisConfig};
use rhizo_router::{Bus, InProcess, Router, RouterConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long [`Server::shutdown`] waits for connections to drain before it gives up.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable; nothing was bound (`rhizo serve` exits with 64).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Binding, the data directory or the database failed.
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// Where the control plane keeps persistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Database {
    /// `--database-uri`, or `sqlite://<data-dir>/rhizo.db`.
    FromSettings,
    /// The in-memory store ([`MemoryStore`]): nothing survives the process.
    Memory,
}

type Adjust<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Builds a [`Server`]: `Server::builder(settings)`, optional adjustments, then
/// [`ServerBuilder::bind`].
pub struct ServerBuilder {
    settings: Settings,
    router: Vec<Adjust<RouterConfig>>,
    control: Vec<Adjust<ServerConfig>>,
    database: Database,
    services: Vec<Arc<dyn ControlService>>,
}

/// A running instance: its address, both planes, and its HTTP task.
pub struct Server {
    local_addr: SocketAddr,
    url: String,
    router: Router,
    manager: Arc<Manager>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The built-in workers running in this process as clients of it (issue 12,
    /// DESIGN.md "Workers"), filled once they have connected.
    workers: Arc<tokio::sync::Mutex<Vec<rhizo_workers::RunningWorker>>>,
}

// === impl ServerBuilder ===

impl ServerBuilder {
    /// Changes router tunables that have no flag (tests: small egress limits, short grace
    /// periods). Applied after the settings.
    pub fn router_config(mut self, f: impl FnOnce(&mut RouterConfig) + Send + 'static) -> Self {
        self.router.push(Box::new(f));
        self
    }

    /// Changes control-plane settings that have no flag. Applied after the settings.
    pub fn control_config(mut self, f: impl FnOnce(&mut ServerConfig) + Send + 'static) -> Self {
        self.control.push(Box::new(f));
        self
    }

    /// Keeps every record in the in-memory store ([`MemoryStore`]): no database is opened,
    /// nothing survives the process. The same as `--database-uri memory`.
    pub fn in_memory(mut self) -> Self {
        self.database = Database::Memory;
        self
    }

    /// Exposes a control-plane service (the interface later crates implement: artifacts,
    /// server apps, …) as `public/<id>` through the manager, with its HTTP routes.
    pub fn service(mut self, service: Arc<dyn ControlService>) -> Self {
        self.services.push(service);
        self
    }

    /// Validates the settings, binds the listener, builds and wires both planes, loads the
    /// store and starts serving.
    ///
    /// Errors: [`StartError::Config`] before anything is bound; [`StartError::Io`] when
    /// the address cannot be bound or the data directory or database cannot be opened.
    pub async fn bind(self) -> Result<Server, StartError> {
        let s = &self.settings;
        s.validate()?;
        let secret = jwt_secret(s.jwt_secret.as_deref(), &s.data_dir)?;
        let addr = resolve(&s.host, s.port)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let base = s.base();
        let local_url = format!("http://{}:{}{}", s.host, local.port(), base);
        let public_url = s
            .public_base_url
            .clone()
            .unwrap_or_else(|| local_url.clone());
        let server_id = s
            .server_id
            .clone()
            .unwrap_or_else(rhizo_control_plane::names::readable_id);

        let mut router_config = s.router_config();
        for f in self.router {
            f(&mut router_config);
        }
        let mut config = s.server_config(server_id, &public_url, local_url.clone(), secret);
        for f in self.control {
            f(&mut config);
        }
        let uri = match (&self.database, s.database_uri.as_deref()) {
            (Database::Memory, _) | (_, Some("memory")) => None,
            (_, Some(u)) => Some(u.to_owned()),
            (_, None) => Some(format!(
                "sqlite://{}",
                s.data_dir.join("rhizo.db").display()
            )),
        };
        let store: Arc<dyn Store> = match &uri {
            None => Arc::new(MemoryStore::new()),
            Some(uri) => Arc::new(
                SqlStore::connect(uri)
                    .await
                    .context("opening the database (--database-uri)")?,
            ),
        };
        let artifacts = artifact_manager(s, uri.as_deref()).await?;
        let router = Router::with_bus(
            &format!("manager-{}", config.server_id),
            router_config,
            bus(s, &config.server_id)?,
        );
        let mut services = ServiceSet::default();
        services.add(artifacts).map_err(|e| anyhow::anyhow!(e))?;
        services
            .add(login_service(s, uri.as_deref()).await?)
            .map_err(|e| anyhow::anyhow!(e))?;
        if !s.disable_server_apps {
            services
                .add(server_apps(s)?)
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        for s in self.services {
            services.add(s).map_err(|e| anyhow::anyhow!(e))?;
        }
        services
            .add(task_queue(s)?)
            .map_err(|e| anyhow::anyhow!(e))?;
        // `ws-user-root/admin-utils` (workspace-api.md §9.3), for the root user.
        services
            .add(rhizo_admin::AdminUtils::new())
            .map_err(|e| anyhow::anyhow!(e))?;
        if !s.disable_agent_skills {
            // Described in `public`: every control-plane service added before it.
            let ids = services.iter().map(|c| c.id()).collect();
            services
                .add(rhizo_skills::AgentSkills::new(ids))
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        let (manager, hooks) = rhizo_control_plane::start_with_services(
            config,
            Arc::new(router.clone()),
            store,
            services,
        )
        .await
        .map_err(|e| anyhow::anyhow!("loading from the database: {e}"))?;
        router.set_hooks(hooks);

        let assets = self
            .settings
            .assets_dir
            .clone()
            .unwrap_or_else(crate::assets::default_dir);
        let mut extra = Vec::new();
        if s.enable_mcp {
            extra.push(rhizo_mcp::routes(manager.clone()));
        }
        if s.enable_a2a {
            extra.push(rhizo_a2a::routes(manager.clone()));
        }
        let app = http_app(&router, &manager, &base, &assets, extra);
        // Small frames flow both ways on every socket: without TCP_NODELAY, Nagle plus
        // delayed ACKs add milliseconds to calls.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // The peer address reaches the handlers (blocked addresses, §9.3).
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::info!(
            "rhizo listening on http://{local}{base} (manager {})",
            manager.manager_id()
        );
        let url = format!("http://{local}{base}");
        let workers = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        if !s.disable_server_apps && !s.disable_builtin_workers {
            spawn_builtin_workers(&url, &manager, s, workers.clone());
        }
        Ok(Server {
            local_addr: local,
            url,
            router,
            manager,
            stop: Some(stop),
            task,
            workers,
        })
    }
}

/// Starts the built-in workers as clients of this server, registered in `public`
/// (apps-workers.md §4.1–4.3, §4.7): `python-eval` and `terminal` always, `browser` when
/// its Chromium is found, `conda` (`conda-jupyter-kernel`) when its `uv` is found; each
/// with a token that may write there and nowhere else. In the background: the server is up before they connect, and
/// a worker that cannot start is logged, not fatal.
fn spawn_builtin_workers(
    url: &str,
    manager: &Arc<Manager>,
    s: &Settings,
    into: Arc<tokio::sync::Mutex<Vec<rhizo_workers::RunningWorker>>>,
) {
    use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
    use rhizo_workers::{start_worker, WorkerKind, WorkerOptions};
    let mut scope = ScopeInfo {
        current_workspace: Some("public".into()),
        ..Default::default()
    };
    scope
        .workspaces
        .insert("public".into(), Permission::ReadWrite);
    let user = UserInfo {
        id: "rhizo-builtin-workers".into(),
        roles: Vec::new(),
        is_anonymous: false,
        scope,
        email: None,
        parent: None,
        expires_at: None,
        current_workspace: Some("public".into()),
    };
    let token = manager.tokens.sign(&user, 10 * 365 * 24 * 3600);
    // The MCP and A2A proxies need no program of their own.
    let mut kinds = vec![
        WorkerKind::PythonEval,
        WorkerKind::Terminal,
        WorkerKind::McpProxy,
        WorkerKind::A2aProxy,
    ];
    // The browser worker needs a Chromium; its page settings come from RHIZO_BROWSER_*.
    let mut browser = rhizo_workers::browser::BrowserOptions::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "browser worker settings ignored");
        Default::default()
    });
    browser.chromium = s.chromium.clone();
    if find_program(&browser.chromium).is_some() {
        kinds.push(WorkerKind::Browser);
    } else {
        tracing::info!(
            chromium = %s.chromium.display(),
            "no Chromium found: the built-in browser worker is off (install Debian's chromium \
             or pass --chromium)"
        );
    }
    // The conda-jupyter-kernel worker builds its environments with uv.
    if find_program(&s.uv).is_some() {
        kinds.push(WorkerKind::Conda);
    } else {
        tracing::info!(
            uv = %s.uv.display(),
            "uv not found: the built-in conda-jupyter-kernel worker is off (pip install uv, \
             or pass --uv)"
        );
    }
    for kind in kinds {
        let opts = WorkerOptions {
            server_url: url.to_owned(),
            token: Some(token.clone()),
            workspace: Some("public".into()),
            python: s.python_eval_python.clone(),
            browser: browser.clone(),
            uv: s.uv.clone(),
            conda_cache_dir: s.conda_cache_dir.clone(),
            ..Default::default()
        };
        let into = into.clone();
        tokio::spawn(async move {
            match start_worker(kind, opts).await {
                Ok(w) => {
                    tracing::info!(worker = %w.service_id(), "built-in worker ready");
                    into.lock().await.push(w);
                }
                Err(e) => tracing::warn!(%kind, error = %e, "built-in worker did not start"),
            }
        });
    }
}

/// `program` if it is an existing file, or the first match of a bare name on `PATH`.
fn find_program(program: &std::path::Path) -> Option<std::path::PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

/// The HTTP app of both planes under `base` (`""` or e.g. `"/hypha"`): the router's `/ws`
/// and `/rpc`, the control plane's routes, the front-end packages of `assets`
/// ([`crate::assets`]), the optional MCP/A2A routes `extra` (`--enable-mcp`, `--enable-a2a`),
/// and the control plane's layers over all of them.
pub fn http_app(
    router: &Router,
    manager: &Arc<Manager>,
    base: &str,
    assets: &std::path::Path,
    extra: Vec<axum::Router>,
) -> axum::Router {
    let mut app = rhizo_control_plane::http::routes(manager.clone())
        .merge(crate::assets::routes(assets))
        .merge(rhizo_router::ws::routes(router.clone()))
        .merge(rhizo_router::http_stream::routes(router.clone()));
    for r in extra {
        app = app.merge(r);
    }
    let app = rhizo_control_plane::http::layers(manager.clone(), app);
    if base.is_empty() {
        app
    } else {
        axum::Router::new().nest(base, app)
    }
}

/// The server-apps controller: its session records in the cluster's Redis with
/// `--redis-uri` (every node sees every instance, §0 of apps-workers.md), else in memory.
/// `RHIZO_AUTOSCALE_TICK_MS` sets how often the autoscaler decides (default 2 s).
fn server_apps(s: &Settings) -> anyhow::Result<Arc<rhizo_apps::ServerApps>> {
    let mut options = rhizo_apps::AppsOptions::default();
    if let Some(ms) = std::env::var("RHIZO_AUTOSCALE_TICK_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
    {
        options.autoscale_interval = std::time::Duration::from_millis(ms);
    }
    let sessions: Arc<dyn rhizo_apps::SessionStore> = match s.redis_uri.as_deref() {
        None => Arc::new(rhizo_apps::MemorySessions::default()),
        Some(uri) => Arc::new(
            rhizo_apps::RedisSessions::new(uri, &s.redis_prefix)
                .map_err(|e| anyhow::anyhow!("--redis-uri: {e}"))?,
        ),
    };
    Ok(rhizo_apps::ServerApps::new(options, sessions))
}

/// `public/hypha-login` (workspace-api.md §9.1), with local accounts in the database at
/// `uri` (in memory without one) when `--enable-local-auth` is on.
async fn login_service(s: &Settings, uri: Option<&str>) -> anyhow::Result<Arc<dyn ControlService>> {
    use rhizo_login::{LoginService, UserStore};
    let users = match (s.enable_local_auth, uri) {
        (false, _) => None,
        (true, None) => Some(UserStore::memory()),
        (true, Some(uri)) => Some(
            UserStore::connect(uri)
                .await
                .context("opening the local accounts table (--database-uri)")?,
        ),
    };
    Ok(LoginService::new(users))
}

/// The task queue (`public/queue`, workspace-api.md §9.2): its queues in the cluster's
/// Redis with `--redis-uri` (a task pushed on one node pops on any), else in memory.
fn task_queue(s: &Settings) -> anyhow::Result<Arc<rhizo_queue::TaskQueue>> {
    let store: Arc<dyn rhizo_queue::QueueStore> = match s.redis_uri.as_deref() {
        None => Arc::new(rhizo_queue::MemoryQueues::new()),
        Some(uri) => Arc::new(
            rhizo_queue::RedisQueues::new(uri, &s.redis_prefix)
                .map_err(|e| anyhow::anyhow!("--redis-uri: {e}"))?,
        ),
    };
    Ok(rhizo_queue::TaskQueue::new(
        store,
        rhizo_queue::QueueLimits::default(),
    ))
}

/// The Bus picked once at start: Redis with `--redis-uri` (node id = the server id), else
/// the single-node in-process bus. Nothing connects here; an unreachable Redis is retried
/// by the bus in the background.
/// The artifact manager (`public/artifact-manager`): its rows in the control plane's
/// database (`uri`; in memory when `None`), its files in S3 (`--enable-s3`), under
/// `<data-dir>/artifacts`, or in memory with the in-memory database.
async fn artifact_manager(
    s: &Settings,
    uri: Option<&str>,
) -> anyhow::Result<Arc<dyn ControlService>> {
    use rhizo_artifacts::objects::{S3Config, S3ObjectStore};
    use rhizo_artifacts::{
        ArtifactManager, ArtifactOptions, ArtifactStore, LocalObjectStore, MemoryArtifactStore,
        MemoryObjectStore, ObjectStore, SqlArtifactStore,
    };
    let store: Arc<dyn ArtifactStore> = match uri {
        None => Arc::new(MemoryArtifactStore::new()),
        Some(uri) => Arc::new(
            SqlArtifactStore::connect(uri)
                .await
                .context("opening the artifact tables (--database-uri)")?,
        ),
    };
    let objects: Arc<dyn ObjectStore> = if s.enable_s3 {
        let config = S3Config {
            endpoint_url: s.endpoint_url.clone().unwrap_or_default(),
            access_key_id: s.access_key_id.clone().unwrap_or_default(),
            secret_access_key: s.secret_access_key.clone().unwrap_or_default(),
            region: s.region_name.clone(),
            bucket: s.workspace_bucket.clone(),
        };
        let s3 = S3ObjectStore::connect(config)
            .await
            .context("connecting to S3 (--endpoint-url)")?;
        s3.ensure_bucket()
            .await
            .context("creating the workspace bucket (--workspace-bucket)")?;
        Arc::new(s3)
    } else if uri.is_none() {
        Arc::new(MemoryObjectStore::new())
    } else {
        Arc::new(LocalObjectStore::new(s.data_dir.join("artifacts")))
    };
    let options = ArtifactOptions {
        proxy: s.enable_s3_proxy,
    };
    Ok(ArtifactManager::new(store, objects, options))
}

fn bus(s: &Settings, node_id: &str) -> Result<Arc<dyn Bus>, ConfigError> {
    let Some(uri) = s.redis_uri.as_deref() else {
        return Ok(Arc::new(InProcess));
    };
    let cfg = RedisConfig::new(uri, &s.redis_prefix, node_id);
    let bus = RedisBus::new(cfg).map_err(|e| ConfigError {
        flag: "--redis-uri",
        problem: e.to_string(),
    })?;
    Ok(Arc::new(bus))
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    format!("{host}:{port}")
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("resolving {host}:{port}: no address"))
}

/// `--jwt-secret`/`HYPHA_JWT_SECRET`, else `JWT_SECRET`, else a secret kept in
/// `<data_dir>/jwt-secret` so that reconnection tokens survive a restart (protocol.md
/// §1.7). Empty values count as unset.
pub(crate) fn jwt_secret(flag: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(s) = flag.filter(|s| !s.is_empty()) {
        return Ok(s.to_owned());
    }
    if let Ok(s) = std::env::var("JWT_SECRET") {
        if !s.is_empty() {
            return Ok(s);
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

// === impl Server ===

impl Server {
    /// A builder for a server with `settings`.
    pub fn builder(settings: Settings) -> ServerBuilder {
        ServerBuilder {
            settings,
            router: Vec::new(),
            control: Vec::new(),
            database: Database::FromSettings,
            services: Vec::new(),
        }
    }

    /// The bound address (the real port when `--port 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<bound address><base path>`, the URL clients connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data plane.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The control plane's manager.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// Graceful shutdown: the control-plane services' own shutdown
    /// ([`ControlService::shutdown`], up to 2 s each), then stop accepting, close every
    /// connection with 1001, wait up to
    /// 2 s for them to go while the cluster bus still carries their last frames (and, in a
    /// cluster, up to 2 s more while replies held for them wait for their reconnection
    /// elsewhere), tell the other nodes this one is leaving, then wait up to
    /// [`SHUTDOWN_DEADLINE`] in all for
    /// the rest (upgraded WebSocket connections are not tracked by the HTTP server's own
    /// graceful shutdown). Cancel-safe to drop midway
    /// only in the sense that the connections were already told to close.
    pub async fn shutdown(mut self) {
        // The control-plane services hand over what other nodes should take at once
        // (the autoscaler's lease), bounded.
        for s in self.manager.services().iter() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
        // The built-in workers stop their sessions (processes, terminals) first.
        let workers = std::mem::take(&mut *self.workers.lock().await);
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(3), w.shutdown()).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.router.shutdown();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        // The clients go first while the bus still carries their last frames; then the
        // other nodes are told at once (no TTL wait). Both bounded, so neither slow
        // clients nor a dead Redis can hold the shutdown.
        let drained = tokio::time::Instant::now() + Duration::from_secs(2);
        while RouterControl::counters(&self.router).connections > 0
            && tokio::time::Instant::now() < drained
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Replies held for the clients just closed go to the nodes they reconnect to
        // (hypha-rpc reconnects within a second), bounded.
        if self.router.bus().clustered() {
            let held = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.router.holds_frames() && tokio::time::Instant::now() < held {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.router.leave_cluster();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.router.bus_settled()).await;
        while RouterControl::counters(&self.router).connections > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match tokio::time::timeout_at(deadline, &mut self.task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("connections did not drain within 5 s; exiting"),
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
