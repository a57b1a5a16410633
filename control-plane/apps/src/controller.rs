//! The `public/server-apps` controller (apps-workers.md §1): its functions, the state it
//! keeps (session records and disabled workers in its [`SessionStore`], one start lock per
//! app on this node, besides the store's cluster-wide locks) and the in-process
//! calls it makes to the artifact manager that holds the apps.
//!
//! * [`install`] — install, commit_app, uninstall (§1.4).
//! * [`run`] — start, stop, the wait for an app's service (§1.5).
//! * [`lazy`] — lazy start of `svc@app_id` (§1.7).
//! * [`query`] — list_running, get_logs, get_session_info, execute, list_workers,
//!   edit_worker.
//! * [`files`] — list_apps, get_app_info, the file functions, edit_app, publish,
//!   validate_app_manifest.
//! * [`autoscale`] — the autoscaler's passes (§5), under the leader lease.
//! * [`lifecycle`] — departed workers and app clients, inactivity stop, daemon restart
//!   (§1.8).

mod autoscale;
mod files;
mod install;
mod lazy;
mod lifecycle;
mod query;
mod run;

use crate::error::{AppsError, AppsResult};
use crate::sessions::{MemorySessions, SessionStore};
use dashmap::DashMap;
use rhizo_control_plane::service::{
    call_by_name, BoxFuture, ControlService, FunctionSpec, ServiceHost,
};
use rhizo_control_plane::{Ctx, ManagerError, ManagerResult};
use rhizo_protocol::user::Permission;
use rhizo_protocol::value;
use rmpv::Value;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct AppsOptions {
    /// Seconds `start` waits for an app by default (§1.5 step 3).
    pub default_timeout: f64,
    /// Seconds of inactivity after which an app stops when nothing says otherwise.
    pub default_stop_after_inactive: f64,
    /// How often app clients' traffic counters are sampled for the inactivity stop.
    pub idle_check_interval: Duration,
    /// How often the autoscaler decides (§5.3; the reference: 10 s).
    pub autoscale_interval: Duration,
}

impl Default for AppsOptions {
    fn default() -> Self {
        AppsOptions {
            default_timeout: 60.0,
            default_stop_after_inactive: 600.0,
            idle_check_interval: Duration::from_secs(2),
            autoscale_interval: Duration::from_secs(2),
        }
    }
}

/// The server-apps controller, a [`ControlService`] exposed as `public/server-apps`.
pub struct ServerApps {
    me: Weak<ServerApps>,
    host: OnceLock<Arc<dyn ServiceHost>>,
    sessions: Arc<dyn SessionStore>,
    options: AppsOptions,
    /// One lock per `ws/app_id`, held while an instance of it starts, so concurrent
    /// first calls of a lazily started app start one instance (§1.7).
    start_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Last traffic counter seen per session and when it last changed (inactivity).
    activity: DashMap<String, (u64, std::time::Instant)>,
    /// Held by a pass starting daemon apps, so two passes never start one twice.
    daemon_pass: tokio::sync::Mutex<()>,
    /// The autoscaler's lease, states and samples.
    autoscale: autoscale::Autoscale,
}

impl std::fmt::Debug for ServerApps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApps").finish_non_exhaustive()
    }
}

const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "install",
        params: &[
            ("source", true),
            ("manifest", true),
            ("app_id", true),
            ("config", true),
            ("files", true),
            ("stop_after_inactive", true),
            ("wait_for_service", true),
            ("workspace", true),
            ("overwrite", true),
            ("timeout", true),
            ("version", true),
            ("stage", true),
            ("progress_callback", true),
            ("additional_kwargs", true),
            ("worker_id", true),
            ("worker_selection_mode", true),
            ("artifact_id", true),
        ],
        doc: "Install an app from source, a manifest and files; test-start it and commit.",
    },
    FunctionSpec {
        name: "uninstall",
        params: &[("app_id", false)],
        doc: "Discard an app's staged version, or delete the app; stop its instances.",
    },
    FunctionSpec {
        name: "start",
        params: &[
            ("app_id", false),
            ("timeout", true),
            ("version", true),
            ("wait_for_service", true),
            ("stop_after_inactive", true),
            ("stage", true),
            ("progress_callback", true),
            ("additional_kwargs", true),
            ("worker_id", true),
            ("worker_selection_mode", true),
        ],
        doc: "Start an instance of an installed app on a worker; returns the session.",
    },
    FunctionSpec {
        name: "stop",
        params: &[("session_id", false), ("raise_exception", true)],
        doc: "Stop a running app instance.",
    },
    FunctionSpec {
        name: "list_apps",
        params: &[],
        doc: "The manifests of the apps installed in the workspace.",
    },
    FunctionSpec {
        name: "list_running",
        params: &[],
        doc: "The running app instances of the workspace.",
    },
    FunctionSpec {
        name: "list_workers",
        params: &[("app_type", true)],
        doc: "The workers of the workspace, then the public ones.",
    },
    FunctionSpec {
        name: "edit_worker",
        params: &[("worker_id", false), ("disabled", true)],
        doc: "Disable or enable a worker.",
    },
    FunctionSpec {
        name: "get_logs",
        params: &[
            ("session_id", false),
            ("type", true),
            ("offset", true),
            ("limit", true),
        ],
        doc: "Logs of an app instance: {items: [{type, content}], total, offset, limit}.",
    },
    FunctionSpec {
        name: "edit_file",
        params: &[
            ("app_id", false),
            ("file_path", false),
            ("file_content", false),
        ],
        doc: "Write a text file of an app (staged until commit_app).",
    },
    FunctionSpec {
        name: "remove_file",
        params: &[("app_id", false), ("file_path", false)],
        doc: "Remove a file of an app (staged until commit_app).",
    },
    FunctionSpec {
        name: "list_files",
        params: &[("app_id", false)],
        doc: "The files of an app.",
    },
    FunctionSpec {
        name: "commit_app",
        params: &[
            ("app_id", false),
            ("timeout", true),
            ("version", true),
            ("stop_after_inactive", true),
            ("wait_for_service", true),
            ("additional_kwargs", true),
            ("progress_callback", true),
            ("worker_id", true),
        ],
        doc: "Test-start the staged version of an app and commit it.",
    },
    FunctionSpec {
        name: "get_app_info",
        params: &[("app_id", false), ("version", true), ("stage", true)],
        doc: "The artifact record of an app.",
    },
    FunctionSpec {
        name: "get_session_info",
        params: &[("session_id", false)],
        doc: "The record of a running app instance.",
    },
    FunctionSpec {
        name: "read_file",
        params: &[
            ("app_id", false),
            ("file_path", false),
            ("format", true),
            ("version", true),
            ("stage", true),
        ],
        doc: "A file of an app as text, parsed JSON or base64 (format text|json|binary).",
    },
    FunctionSpec {
        name: "validate_app_manifest",
        params: &[("manifest", false)],
        doc: "Check a manifest: {valid, errors, warnings, suggestions}.",
    },
    FunctionSpec {
        name: "edit_app",
        params: &[
            ("app_id", false),
            ("manifest", true),
            ("disabled", true),
            ("autoscaling_config", true),
            ("autoscaling_manifest", true),
            ("startup_config", true),
        ],
        doc: "Edit an app's manifest (staged until commit_app); disabled stops it.",
    },
    FunctionSpec {
        name: "publish",
        params: &[
            ("app_id", false),
            ("collection_id", false),
            ("new_app_id", true),
            ("overwrite", true),
            ("remove_secrets", true),
            ("stage", true),
        ],
        doc: "Copy an app into a collection, without its secrets.",
    },
    FunctionSpec {
        name: "execute",
        params: &[
            ("session_id", false),
            ("script", false),
            ("config", true),
            ("progress_callback", true),
        ],
        doc: "Run code or a command in a running app instance (through its worker).",
    },
];

/// The arguments of one call, by parameter name.
pub(crate) struct Args<'a> {
    spec: &'static FunctionSpec,
    values: &'a [Value],
}

// === impl Args ===

impl<'a> Args<'a> {
    fn raw(&self, name: &str) -> &'a Value {
        static NIL: Value = Value::Nil;
        self.spec
            .params
            .iter()
            .position(|(p, _)| *p == name)
            .and_then(|i| self.values.get(i))
            .unwrap_or(&NIL)
    }

    /// The argument as JSON (nil → `Null`).
    pub(crate) fn json(&self, name: &str) -> serde_json::Value {
        value::to_json(self.raw(name))
    }

    /// A string argument, if given.
    pub(crate) fn str(&self, name: &str) -> Option<String> {
        self.raw(name).as_str().map(str::to_owned)
    }

    /// A required string argument.
    pub(crate) fn req(&self, name: &str) -> AppsResult<String> {
        self.str(name)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AppsError::Invalid(format!("{name} must be a non-empty string")))
    }

    /// A boolean argument (`default` when not given).
    pub(crate) fn bool(&self, name: &str, default: bool) -> bool {
        self.raw(name).as_bool().unwrap_or(default)
    }

    /// A number argument, if given.
    pub(crate) fn num(&self, name: &str) -> Option<f64> {
        let v = self.raw(name);
        v.as_f64().or_else(|| v.as_i64().map(|x| x as f64))
    }

    /// A callable argument (an encoded remote method), if given.
    pub(crate) fn callable(&self, name: &str) -> Option<Value> {
        let v = self.raw(name);
        value::get_str(v, "_rtarget").is_some().then(|| v.clone())
    }
}

// === impl ServerApps ===

impl ServerApps {
    /// A controller keeping its session records in `sessions`.
    pub fn new(options: AppsOptions, sessions: Arc<dyn SessionStore>) -> Arc<ServerApps> {
        Arc::new_cyclic(|me| ServerApps {
            me: me.clone(),
            host: OnceLock::new(),
            sessions,
            options,
            start_locks: DashMap::new(),
            activity: DashMap::new(),
            daemon_pass: tokio::sync::Mutex::new(()),
            autoscale: Default::default(),
        })
    }

    /// A controller with in-memory session records and default options.
    pub fn in_memory() -> Arc<ServerApps> {
        ServerApps::new(AppsOptions::default(), Arc::new(MemorySessions::default()))
    }

    pub(crate) fn host(&self) -> AppsResult<&Arc<dyn ServiceHost>> {
        self.host
            .get()
            .ok_or_else(|| AppsError::Worker("the server-apps controller is not attached".into()))
    }

    /// Calls `function` of the artifact manager for `ctx`, arguments by name; the
    /// result as JSON.
    pub(crate) async fn artifacts(
        &self,
        ctx: &Ctx,
        function: &str,
        kwargs: Vec<(&str, serde_json::Value)>,
    ) -> AppsResult<serde_json::Value> {
        let host = self.host()?;
        let am = host.service("artifact-manager").ok_or_else(|| {
            AppsError::Worker("server apps need the artifact manager, which is not running".into())
        })?;
        let kwargs = kwargs
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, value::from_json(&v)))
            .collect();
        let v = call_by_name(&*am, ctx, function, kwargs).await?;
        Ok(value::to_json(&v))
    }

    /// Fails unless the caller has `needed` on `ws`, in the reference's wording.
    pub(crate) fn require(ctx: &Ctx, ws: &str, needed: Permission, what: &str) -> AppsResult<()> {
        if ctx.user.can(ws, needed) {
            return Ok(());
        }
        Err(AppsError::Permission(format!(
            "User {} does not have permission to {what} in workspace {ws}",
            ctx.user.id
        )))
    }

    async fn dispatch(
        &self,
        ctx: &Ctx,
        function: &str,
        a: &Args<'_>,
    ) -> AppsResult<serde_json::Value> {
        match function {
            "install" => self.install(ctx, a).await,
            "uninstall" => self
                .uninstall(ctx, &a.req("app_id")?)
                .await
                .map(|_| serde_json::Value::Null),
            "commit_app" => self.commit_app(ctx, a).await,
            "start" => self.start_call(ctx, a).await,
            "stop" => self.stop_call(ctx, a).await,
            "list_apps" => self.list_apps(ctx).await,
            "list_running" => self.list_running(ctx).await,
            "list_workers" => self.list_workers(ctx, a.str("app_type").as_deref()).await,
            "edit_worker" => self.edit_worker(ctx, a).await,
            "get_logs" => self.get_logs(ctx, a).await,
            "get_session_info" => self.get_session_info(ctx, &a.req("session_id")?).await,
            "execute" => self.execute(ctx, a).await,
            "edit_file" => self.edit_file(ctx, a).await,
            "remove_file" => self.remove_file(ctx, a).await,
            "list_files" => self.list_files(ctx, a).await,
            "read_file" => self.read_file(ctx, a).await,
            "get_app_info" => self.get_app_info(ctx, a).await,
            "validate_app_manifest" => {
                Ok(crate::manifest::validate_app_manifest(&a.json("manifest")))
            }
            "edit_app" => self.edit_app(ctx, a).await,
            "publish" => self.publish(ctx, a).await,
            other => Err(AppsError::Invalid(format!("unknown function {other}"))),
        }
    }
}

impl ControlService for ServerApps {
    fn id(&self) -> &'static str {
        "server-apps"
    }

    fn name(&self) -> &str {
        "Server Apps"
    }

    fn description(&self) -> &str {
        "Install, start and stop apps on server-app workers."
    }

    fn service_type(&self) -> &str {
        "server-apps"
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        FUNCTIONS
    }

    fn attach(&self, host: Arc<dyn ServiceHost>) {
        if self.host.set(host).is_ok() {
            if let Some(me) = self.me.upgrade() {
                lifecycle::spawn(me);
            }
        }
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            let spec = FUNCTIONS
                .iter()
                .find(|f| f.name == function)
                .ok_or_else(|| ManagerError::MethodNotFound(function.to_owned()))?;
            let a = Args {
                spec,
                values: &args,
            };
            let out = self.dispatch(ctx, function, &a).await?;
            Ok(value::from_json(&out))
        })
    }

    fn metrics(&self) -> String {
        self.autoscale_metrics()
    }

    fn resolve_missing<'a>(
        &'a self,
        ctx: &'a Ctx,
        service_id: &'a str,
    ) -> Option<BoxFuture<'a, ManagerResult<String>>> {
        let want = lazy::LazyTarget::parse(ctx, service_id)?;
        Some(Box::pin(async move {
            self.lazy_start(ctx, want).await.map_err(ManagerError::from)
        }))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.autoscale_shutdown())
    }

    fn selection_mode<'a>(
        &'a self,
        ctx: &'a Ctx,
        service_id: &'a str,
    ) -> Option<BoxFuture<'a, Option<String>>> {
        let want = lazy::LazyTarget::parse(ctx, service_id)?;
        Some(Box::pin(
            async move { self.service_selection_mode(&want).await },
        ))
    }
}
