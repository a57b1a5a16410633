//! Starting and stopping app instances (apps-workers.md §1.5, §1.2 stop) and the lazy
//! start of `get_service("svc@app_id")` (§1.7).

use super::{Args, ServerApps};
use crate::error::{AppsError, AppsResult};
use crate::manifest::StartupConfig;
use crate::sessions::{app_of, ws_of};
use crate::workers::{self, root_ctx, Worker};
use rhizo_control_plane::names::readable_id;
use rhizo_control_plane::registry::{Pattern, RegistryEvent};
use rhizo_control_plane::Ctx;
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Seconds an app token is valid (the app's client refreshes it through reconnection
/// tokens while it stays connected).
const APP_TOKEN_SECONDS: u64 = 24 * 3600;

/// What to wait for after the worker's `start` (§1.5 step 4).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wait {
    /// The app's service of this name.
    Service(String),
    /// The app's client connecting.
    Client,
    /// Nothing: detached mode (`wait_for_service=False`).
    Detached,
}

impl Wait {
    fn parse(v: &Value) -> Wait {
        match v {
            Value::Bool(false) => Wait::Detached,
            Value::String(s) if s.is_empty() => Wait::Client,
            Value::String(s) => Wait::Service(s.rsplit(':').next().unwrap_or(s).to_owned()),
            _ => Wait::Service("default".into()),
        }
    }
}

/// How one start was asked for.
#[derive(Debug, Default, Clone)]
pub(crate) struct StartRequest {
    pub app_id: String,
    pub version: Option<String>,
    pub stage: bool,
    pub call: StartupConfig,
    pub worker_id: Option<String>,
    pub selection_mode: Option<String>,
    pub progress: Option<rmpv::Value>,
    /// Start a new instance even when one is running (verification runs, autoscaling).
    pub fresh: bool,
}

// === impl ServerApps (start, stop) ===

impl ServerApps {
    /// `start(app_id, …)` as called by a client.
    pub(crate) async fn start_call(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let req = StartRequest {
            app_id: a.req("app_id")?,
            version: a.str("version"),
            stage: a.bool("stage", false),
            call: StartupConfig {
                timeout: a.num("timeout"),
                wait_for_service: Some(a.json("wait_for_service")).filter(|v| !v.is_null()),
                additional_kwargs: Some(a.json("additional_kwargs")).filter(|v| !v.is_null()),
                stop_after_inactive: a.num("stop_after_inactive"),
            },
            worker_id: a.str("worker_id"),
            selection_mode: a.str("worker_selection_mode"),
            progress: a.callable("progress_callback"),
            fresh: false,
        };
        self.start(ctx, req).await
    }

    /// Reports `message` of `kind` to the caller's progress callback, best effort.
    pub(crate) fn progress(&self, ctx: &Ctx, cb: Option<&rmpv::Value>, kind: &str, message: &str) {
        tracing::debug!(kind, message, "app progress");
        let (Some(cb), Ok(host)) = (cb, self.host()) else {
            return;
        };
        let (Some(target), Some(method)) = (
            value::get_str(cb, "_rtarget"),
            value::get_str(cb, "_rmethod"),
        ) else {
            return;
        };
        let target = if target.contains('/') {
            target.to_owned()
        } else {
            format!("{}/{target}", ctx.ws)
        };
        let (host, method, ws, user) = (
            host.clone(),
            method.to_owned(),
            ctx.ws.clone(),
            ctx.user.clone(),
        );
        let msg = value::from_json(&json!({"type": kind, "message": message}));
        tokio::spawn(async move {
            let _ = host
                .call_client(
                    &target,
                    &method,
                    vec![msg],
                    None,
                    &ws,
                    &user,
                    Duration::from_secs(10),
                )
                .await;
        });
    }

    /// The worker for `app_type` in `ws` (§1.6): `worker_id` if given (must be live, not
    /// disabled, and run the type), else workspace workers, else public ones, by
    /// `mode`; disabled workers are never chosen.
    pub(crate) async fn choose_worker(
        &self,
        ws: &str,
        app_type: &str,
        worker_id: Option<&str>,
        mode: Option<&str>,
    ) -> AppsResult<Worker> {
        let host = self.host()?;
        if let Some(id) = worker_id {
            let id = if id.contains('/') {
                id.to_owned()
            } else {
                format!("{ws}/{id}")
            };
            if self.is_disabled(&id).await? {
                return Err(AppsError::Invalid(format!(
                    "Worker with ID {id} is disabled"
                )));
            }
            let w = workers::fetch(&**host, &id).await?;
            if !w.supported_types.iter().any(|t| t == app_type) {
                return Err(AppsError::Invalid(format!(
                    "Worker {id} does not support app type {app_type}"
                )));
            }
            return Ok(w);
        }
        for scope in [ws, "public"] {
            let disabled = self.sessions.disabled_workers(scope).await?;
            let fits: Vec<Worker> = workers::in_workspace(&**host, scope)
                .await
                .into_iter()
                .filter(|w| w.supported_types.iter().any(|t| t == app_type))
                .filter(|w| !disabled.contains(&w.id))
                .collect();
            if !fits.is_empty() {
                return workers::select(&**host, fits, mode, app_type).await;
            }
            if ws == "public" {
                break;
            }
        }
        Err(AppsError::NoWorker(app_type.to_owned()))
    }

    /// Whether worker `worker_id` (`ws/cid:svc`) is disabled in its workspace.
    pub(crate) async fn is_disabled(&self, worker_id: &str) -> AppsResult<bool> {
        let ws = worker_id
            .split_once('/')
            .map(|(w, _)| w)
            .unwrap_or_default();
        Ok(self
            .sessions
            .disabled_workers(ws)
            .await?
            .contains(worker_id))
    }

    /// The manifest of app `alias` in `ws` (staged or a version), read as root.
    pub(crate) async fn read_app(
        &self,
        ws: &str,
        alias: &str,
        version: Option<&str>,
        stage: bool,
    ) -> AppsResult<Value> {
        let host = self.host()?;
        let root = root_ctx(&**host, ws);
        let rec = self
            .artifacts(
                &root,
                "read",
                vec![
                    ("artifact_id", json!(format!("{ws}/{alias}"))),
                    ("version", version.map(|v| json!(v)).unwrap_or(Value::Null)),
                    ("stage", json!(stage)),
                ],
            )
            .await
            .map_err(|e| AppsError::NotFound(format!("App not found: {alias} ({e})")))?;
        Ok(rec.get("manifest").cloned().unwrap_or_else(|| json!({})))
    }

    /// Starts an instance (§1.5), or returns the running one the reuse rules pick.
    ///
    /// Errors: permission, app not found or disabled, no worker, and
    /// `Failed to start app '{app_id}', error: …, logs:\n…` when the worker fails or the
    /// app does not register its service in time (nothing is left behind then).
    pub(crate) async fn start(&self, ctx: &Ctx, req: StartRequest) -> AppsResult<Value> {
        let (ws, alias) = match req.app_id.split_once('/') {
            Some((w, a)) => (w.to_owned(), a.to_owned()),
            None => (ctx.ws.clone(), req.app_id.clone()),
        };
        Self::require(ctx, &ws, Permission::Read, "start apps")?;
        let host = self.host()?.clone();
        let manifest = self
            .read_app(&ws, &alias, req.version.as_deref(), req.stage)
            .await?;
        if manifest.get("disabled").and_then(Value::as_bool) == Some(true) {
            return Err(AppsError::Invalid(format!("App {alias} is disabled")));
        }
        let mut cfg = StartupConfig::from_manifest(&manifest).map_err(AppsError::Invalid)?;
        cfg.overlay(&req.call);
        let timeout = cfg.timeout.unwrap_or(self.options.default_timeout).max(0.1);
        let wait = Wait::parse(cfg.wait_for_service.as_ref().unwrap_or(&Value::Null));
        let daemon = manifest.get("daemon").and_then(Value::as_bool) == Some(true);
        let singleton = manifest.get("singleton").and_then(Value::as_bool) == Some(true);
        let autoscaled = manifest
            .pointer("/autoscaling/enabled")
            .and_then(Value::as_bool)
            == Some(true);
        if !req.fresh && !daemon && !autoscaled {
            let running = self.sessions.list().await?.into_iter().find(|s| {
                app_of(s) == alias
                    && (singleton || ws_of(s) == ws)
                    && s.get("status").and_then(Value::as_str) != Some("stopped")
            });
            if let Some(s) = running {
                return Ok(crate::sessions::public_view(&s));
            }
        }
        let stop_after = cfg.stop_after_inactive;
        if daemon && stop_after.is_some_and(|s| s > 0.0) {
            return Err(AppsError::Invalid(
                "Daemon apps cannot have stop_after_inactive > 0".into(),
            ));
        }
        let stop_after = if daemon {
            0.0
        } else {
            stop_after.unwrap_or(self.options.default_stop_after_inactive)
        };
        let app_type = manifest
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| *t != "application")
            .ok_or_else(|| AppsError::Invalid(format!("App {alias} has no runnable type")))?
            .to_owned();
        self.progress(
            ctx,
            req.progress.as_ref(),
            "info",
            &format!("Initializing {app_type} worker..."),
        );
        let worker = self
            .choose_worker(
                &ws,
                &app_type,
                req.worker_id.as_deref(),
                req.selection_mode.as_deref(),
            )
            .await?;
        let client_id = format!("_rapp_{}__rlb", readable_id());
        let session_id = format!("{ws}/{client_id}");
        // The app acts as the installer (its stored startup context) or the caller, with
        // read-write on the app's workspace only and bound to its client id (§1.5 step 1).
        let token = host.sign_token(&app_user(&ctx.user, &ws, &client_id), APP_TOKEN_SECONDS);
        let server_url = worker.server_url(&host.local_base_url(), &host.public_base_url());
        let mut watch = host.watch_registry();
        let mut record = json!({
            "id": session_id,
            "session_id": session_id,
            "app_id": alias,
            "workspace": ws,
            "client_id": client_id,
            "app_type": app_type,
            "entry_point": manifest.get("entry_point").cloned().unwrap_or(Value::Null),
            "name": manifest.get("name").cloned().unwrap_or(Value::Null),
            "description": manifest.get("description").cloned().unwrap_or(Value::Null),
            "version": req.version,
            "source_hash": manifest.get("source_hash").cloned().unwrap_or(Value::Null),
            "worker_id": worker.id,
            "daemon": daemon,
            "worker_managed": manifest.get("worker_managed").and_then(Value::as_bool).unwrap_or(false),
            "stop_after_inactive": stop_after,
            "status": "starting",
            "started_at": rhizo_control_plane::tokens::now_secs(),
            "startup_timeout": timeout,
            "_stage": req.stage,
        });
        self.sessions.put(record.clone(), None).await?;
        let cb_session = format!("apps{}", rhizo_control_plane::names::random_string(12));
        let progress_cb = self.relay_progress(ctx, &cb_session, &worker, req.progress.clone());
        let mut config = json!({
            "id": session_id,
            "app_id": alias,
            "workspace": ws,
            "client_id": client_id,
            "server_url": server_url,
            "public_base_url": host.public_base_url(),
            "local_base_url": host.local_base_url(),
            "app_files_base_url": format!("{server_url}/{ws}/artifacts/{alias}/files"),
            "token": token,
            "entry_point": manifest.get("entry_point").cloned().unwrap_or(Value::Null),
            "artifact_id": format!("{ws}/{alias}"),
            "timeout": timeout,
            "manifest": manifest,
            "disable_ssl": false,
        });
        if let (Some(Value::Object(extra)), Some(c)) =
            (&cfg.additional_kwargs, config.as_object_mut())
        {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        let mut config = value::from_json(&config);
        if let Some(cb) = progress_cb {
            value::set(&mut config, "progress_callback", cb);
        }
        let deadline = Instant::now() + Duration::from_secs_f64(timeout);
        let mut seen = Vec::new();
        let started = worker
            .call(
                &*host,
                "start",
                vec![config],
                None,
                &ws,
                &ctx.user,
                Duration::from_secs_f64(timeout),
            )
            .await;
        // A python-eval script has run to its end when `start` returns (unless it serves,
        // `wait_for_exit: false`): there is nothing left to wait for, only its exit code.
        let one_shot = app_type == "python-eval"
            && manifest.get("wait_for_exit").and_then(Value::as_bool) != Some(false);
        let outcome = match started {
            Err(e) => Err(e),
            Ok(_) if one_shot => {
                drain(&mut watch, &session_id, &mut seen);
                self.script_exit(&worker, &session_id, &ws, &ctx.user).await
            }
            Ok(_) => match &wait {
                Wait::Detached => {
                    self.progress(
                        ctx,
                        req.progress.as_ref(),
                        "info",
                        "Application started in detached mode",
                    );
                    Ok(())
                }
                w => {
                    if let Wait::Service(name) = w {
                        self.progress(
                            ctx,
                            req.progress.as_ref(),
                            "info",
                            &format!("Waiting for service '{name}'..."),
                        );
                    }
                    self.wait_for(&mut watch, &ws, &client_id, w, deadline, &mut seen)
                        .await
                }
            },
        };
        host.drop_callbacks(&cb_session);
        if outcome.is_ok() && wait != Wait::Detached && req.stage {
            // An app registers its services one after another: in the verification run,
            // whose list lazy start reads later, let the rest follow the one waited for
            // (the reference sleeps 0.1 s after every start) before they are recorded.
            settle(&mut watch, &session_id, &mut seen).await;
        }
        if let Err(e) = outcome {
            let logs = self
                .worker_logs_text(&worker, &session_id, &ws, &ctx.user)
                .await;
            let _ = worker
                .call(
                    &*host,
                    "stop",
                    vec![session_id.clone().into()],
                    None,
                    &ws,
                    &ctx.user,
                    Duration::from_secs(10),
                )
                .await;
            self.forget(&session_id).await;
            let core = match &e {
                AppsError::Timeout(_) => "Application startup timed out".to_owned(),
                other => other.to_string(),
            };
            return Err(AppsError::Worker(format!(
                "Failed to start app '{alias}', error: {core}, logs:\n{logs}"
            )));
        }
        if app_type == "python-eval" {
            // The script has finished; keep its logs with the record (§1.5 step 10).
            if let Ok(logs) = self
                .fetch_logs(&worker, &session_id, None, 0, None, &ws, &ctx.user)
                .await
            {
                record["logs"] = regroup(&logs);
            }
        }
        let mut services = self.services_of(&ws, &client_id);
        for r in seen {
            let id = r.get("id").cloned();
            if !services.iter().any(|s| s.get("id") == id.as_ref()) {
                services.push(r);
            }
        }
        if let Some(default) = services.iter().find(|s| {
            s.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.ends_with(":default"))
        }) {
            record["config"] = default.get("config").cloned().unwrap_or_else(|| json!({}));
            for key in ["name", "description"] {
                if record[key].is_null() {
                    record[key] = default.get(key).cloned().unwrap_or(Value::Null);
                }
            }
        } else {
            record["config"] = json!({});
        }
        if let Wait::Service(name) = &wait {
            record["service_id"] = json!(format!("{session_id}:{name}@{alias}"));
        }
        record["services"] = Value::Array(services.clone());
        record["status"] = json!("running");
        let connected = host.client(&session_id).is_some();
        if app_type == "python-eval" && !connected {
            // The script ran and left: its record stays a while for its logs (§1.8).
            record["status"] = json!("stopped");
            self.sessions
                .put(record.clone(), Some(Duration::from_secs(300)))
                .await?;
        } else {
            self.sessions.put(record.clone(), None).await?;
        }
        self.activity
            .insert(session_id.clone(), (0, Instant::now()));
        if req.stage {
            self.save_services(ctx, &ws, &alias, &services).await;
        }
        self.progress(
            ctx,
            req.progress.as_ref(),
            "success",
            "Application startup completed successfully",
        );
        Ok(crate::sessions::public_view(&record))
    }

    /// A callback handed to the worker as `progress_callback` that relays each message
    /// to the caller's own callback (and the log), callable only by the worker.
    pub(crate) fn relay_progress(
        &self,
        ctx: &Ctx,
        session: &str,
        worker: &Worker,
        caller_cb: Option<rmpv::Value>,
    ) -> Option<rmpv::Value> {
        let host = self.host().ok()?.clone();
        let me = self.me.clone();
        let ctx = ctx.clone();
        let f: rhizo_control_plane::manager::Callback = std::sync::Arc::new(move |call| {
            let (me, ctx, cb) = (me.clone(), ctx.clone(), caller_cb.clone());
            Box::pin(async move {
                let msg = call.args.first().map(value::to_json).unwrap_or(Value::Null);
                let kind = msg
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("info")
                    .to_owned();
                let text = msg
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| msg.to_string());
                if let Some(me) = me.upgrade() {
                    me.progress(&ctx, cb.as_ref(), &kind, &text);
                }
                Ok(rmpv::Value::Nil)
            })
        });
        Some(host.callback(session, "progress", &worker.client, f))
    }

    /// Waits until `wait` holds for the app client `ws/cid`, or `deadline`. The change
    /// stream was subscribed before the worker started, so a service registered (and
    /// perhaps gone again, as a python-eval script's) meanwhile counts; the services
    /// seen are added to `seen`.
    async fn wait_for(
        &self,
        watch: &mut Option<tokio::sync::broadcast::Receiver<RegistryEvent>>,
        ws: &str,
        cid: &str,
        wait: &Wait,
        deadline: Instant,
        seen: &mut Vec<Value>,
    ) -> AppsResult<()> {
        let host = self.host()?;
        let addr = format!("{ws}/{cid}");
        let prefix = format!("{addr}:");
        let mut came_and_went = false;
        loop {
            if let Some(rx) = watch.as_mut() {
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        RegistryEvent::ServiceAdded { record, .. } => {
                            let r = value::to_json(&record);
                            if r.get("id")
                                .and_then(Value::as_str)
                                .is_some_and(|id| id.starts_with(&prefix))
                            {
                                seen.push(r);
                            }
                        }
                        RegistryEvent::ClientGone { ws: w, cid: c } if w == ws && c == cid => {
                            came_and_went = true;
                        }
                        RegistryEvent::ClientGone { .. } => {}
                    }
                }
            }
            let in_seen = |name: &str| {
                let id = format!("{prefix}{name}");
                seen.iter()
                    .any(|r| r.get("id").and_then(Value::as_str) == Some(id.as_str()))
            };
            let ready = match wait {
                Wait::Service(name) if in_seen(name) => true,
                Wait::Client if came_and_went || !seen.is_empty() => true,
                Wait::Service(name) => !host
                    .find_services(&Pattern {
                        ws: Some(ws),
                        cid: Some(cid),
                        name: Some(name),
                        ..Default::default()
                    })
                    .is_empty(),
                Wait::Client => host.client(&addr).is_some(),
                Wait::Detached => true,
            };
            if ready {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AppsError::Timeout("Application startup timed out".into()));
            }
            // Woken by a registry change (handled at the top of the loop), or at the
            // latest every 200 ms: the change stream is best effort.
            let tick = (deadline - now).min(Duration::from_millis(200));
            match watch.as_mut() {
                Some(rx) => {
                    if let Ok(Ok(ev)) = tokio::time::timeout(tick, rx.recv()).await {
                        // Put back in front of the next round's drain.
                        if let RegistryEvent::ServiceAdded { record, .. } = &ev {
                            let r = value::to_json(record);
                            if r.get("id")
                                .and_then(Value::as_str)
                                .is_some_and(|id| id.starts_with(&prefix))
                            {
                                seen.push(r);
                            }
                        }
                        if let RegistryEvent::ClientGone { ws: w, cid: c } = &ev {
                            came_and_went |= w == ws && c == cid;
                        }
                    }
                }
                None => tokio::time::sleep(tick).await,
            }
        }
    }

    /// The services the app client `ws/cid` registered, as stored records.
    pub(crate) fn services_of(&self, ws: &str, cid: &str) -> Vec<Value> {
        let Ok(host) = self.host() else {
            return Vec::new();
        };
        host.find_services(&Pattern {
            ws: Some(ws),
            cid: Some(cid),
            ..Default::default()
        })
        .into_iter()
        .filter(|r| !r.is_built_in())
        .map(|r| value::to_json(&r.record))
        .collect()
    }

    /// Writes the services of a verification run into the staged manifest, with the
    /// instance's client id replaced by `*` (§1.5 step 14): what lazy start reads.
    async fn save_services(&self, ctx: &Ctx, ws: &str, alias: &str, services: &[Value]) {
        let Ok(mut manifest) = self.read_app(ws, alias, None, true).await else {
            return;
        };
        let abstract_ids: Vec<Value> = services
            .iter()
            .filter_map(|s| s.get("id").and_then(Value::as_str))
            .map(|id| {
                let (w, rest) = id.split_once('/').unwrap_or(("", id));
                let name = rest.split_once(':').map(|(_, n)| n).unwrap_or(rest);
                json!(format!("{w}/*:{name}"))
            })
            .collect();
        let listed: Vec<Value> = services
            .iter()
            .zip(&abstract_ids)
            .map(|(s, id)| {
                let mut s = s.clone();
                s["id"] = id.clone();
                s
            })
            .collect();
        manifest["services"] = Value::Array(listed);
        manifest["service_ids"] = Value::Array(abstract_ids);
        let _ = self
            .artifacts(
                ctx,
                "edit",
                vec![
                    ("artifact_id", json!(format!("{ws}/{alias}"))),
                    ("manifest", manifest),
                    ("stage", json!(true)),
                ],
            )
            .await;
    }

    /// `stop(session_id, raise_exception=True)`.
    pub(crate) async fn stop_call(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let id = a.req("session_id")?;
        match self.stop(ctx, &id).await {
            Err(e) if !a.bool("raise_exception", true) => {
                tracing::info!(session = %id, error = %e, "stop failed (not raised)");
                Ok(Value::Null)
            }
            other => other.map(|_| Value::Null),
        }
    }

    /// Looks up a session for `ctx`, requiring `needed` on the session's workspace
    /// (callers from other workspaces cannot stop, read or run in it).
    pub(crate) async fn session_for(
        &self,
        ctx: &Ctx,
        id: &str,
        needed: Permission,
    ) -> AppsResult<Value> {
        let ws = id.split_once('/').map(|(w, _)| w).unwrap_or_default();
        Self::require(ctx, ws, needed, "use the app instance")?;
        self.sessions
            .get(id)
            .await?
            .ok_or_else(|| AppsError::NotFound(format!("Server app instance not found: {id}")))
    }

    /// Stops session `id` for `ctx` (read-write on its workspace needed).
    pub(crate) async fn stop(&self, ctx: &Ctx, id: &str) -> AppsResult<()> {
        let record = self.session_for(ctx, id, Permission::ReadWrite).await?;
        self.stop_record(&record).await
    }

    /// Tells the session's worker to stop it, then forgets the record. A worker that is
    /// gone cannot be asked: its sessions are forgotten anyway.
    pub(crate) async fn stop_record(&self, record: &Value) -> AppsResult<()> {
        let host = self.host()?;
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let worker_id = record
            .get("worker_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ws = ws_of(record).to_owned();
        let result = match workers::fetch(&**host, worker_id).await {
            Ok(w) => w
                .call(
                    &**host,
                    "stop",
                    vec![id.clone().into()],
                    None,
                    &ws,
                    &UserInfo::root(),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ()),
            Err(e) => {
                tracing::info!(session = %id, error = %e, "worker gone; forgetting its session");
                Ok(())
            }
        };
        if result.is_ok() {
            self.forget(&id).await;
        }
        result
    }

    /// Removes session `id`'s record (a store failure is logged: the record then stays
    /// until its worker or client is found gone) and its inactivity counter.
    pub(crate) async fn forget(&self, id: &str) {
        if let Err(e) = self.sessions.remove(id).await {
            tracing::warn!(session = %id, error = %e, "could not remove a session record");
        }
        self.activity.remove(id);
    }
}

/// Collects the app client's `service_added` events already received.
fn drain(
    watch: &mut Option<tokio::sync::broadcast::Receiver<RegistryEvent>>,
    session_id: &str,
    seen: &mut Vec<Value>,
) {
    let Some(rx) = watch.as_mut() else { return };
    let prefix = format!("{session_id}:");
    while let Ok(ev) = rx.try_recv() {
        if let RegistryEvent::ServiceAdded { record, .. } = ev {
            let r = value::to_json(&record);
            if r.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with(&prefix))
            {
                seen.push(r);
            }
        }
    }
}

/// Collects the app client's further `service_added` events until none has come for
/// 150 ms (at most 1 s).
async fn settle(
    watch: &mut Option<tokio::sync::broadcast::Receiver<RegistryEvent>>,
    session_id: &str,
    seen: &mut Vec<Value>,
) {
    let Some(rx) = watch.as_mut() else { return };
    let prefix = format!("{session_id}:");
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(150), rx.recv()).await {
            Ok(Ok(RegistryEvent::ServiceAdded { record, .. })) => {
                let r = value::to_json(&record);
                if r.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with(&prefix))
                {
                    seen.push(r);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// The identity an app instance acts with: `user`'s, read-write on `ws` only, bound to
/// the app's client id; never root, never admin (§1.5 step 1; issue 12 "Security").
pub(crate) fn app_user(user: &UserInfo, ws: &str, client_id: &str) -> UserInfo {
    let mut scope = ScopeInfo {
        current_workspace: Some(ws.to_owned()),
        client_id: Some(client_id.to_owned()),
        ..Default::default()
    };
    scope
        .workspaces
        .insert(ws.to_owned(), Permission::ReadWrite);
    UserInfo {
        id: if user.id == "root" {
            format!("app-{}", readable_id())
        } else {
            user.id.clone()
        },
        roles: user
            .roles
            .iter()
            .filter(|r| *r != "admin")
            .cloned()
            .collect(),
        is_anonymous: user.is_anonymous,
        scope,
        email: user.email.clone(),
        parent: Some(user.parent.clone().unwrap_or_else(|| user.id.clone())),
        expires_at: None,
        current_workspace: Some(ws.to_owned()),
    }
}

/// The context lazy and daemon starts run in: the installer's stored
/// `startup_context` (`{ws, user}`), else `fallback`.
pub(crate) fn startup_ctx(manifest: &Value, fallback: &Ctx) -> Ctx {
    let stored = manifest.get("startup_context");
    let user = stored
        .and_then(|c| c.get("user"))
        .and_then(|u| serde_json::from_value::<UserInfo>(u.clone()).ok());
    let ws = stored.and_then(|c| c.get("ws")).and_then(Value::as_str);
    match (user, ws) {
        (Some(user), Some(ws)) => Ctx {
            ws: ws.to_owned(),
            from: fallback.from.clone(),
            cid: fallback.cid.clone(),
            user,
        },
        _ => fallback.clone(),
    }
}

/// Log items regrouped by type (`{type: [content…]}`, the cached python-eval logs).
fn regroup(logs: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for item in logs
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = item.get("type").and_then(Value::as_str).unwrap_or("log");
        let list = out.entry(t.to_owned()).or_insert_with(|| json!([]));
        if let Some(l) = list.as_array_mut() {
            l.push(item.get("content").cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
