//! What happens to instances without anyone calling the controller (apps-workers.md
//! §1.5 step 12, §1.8): a worker that leaves takes its sessions with it; an app client
//! that leaves ends its session (python-eval records stay 300 s for their logs, daemon
//! apps are started again, worker-managed ones are kept); an instance whose client has
//! sent nothing for `stop_after_inactive` seconds is stopped. Traffic is the router's
//! per-connection frame counter, sampled every [`super::AppsOptions::idle_check_interval`]
//! by the node that holds the app client's connection; whoever stops an instance in the
//! background first takes its `app-stop-lock:{id}` in the session store (30 s, §0), so that
//! one node stops it.

use super::run::StartRequest;
use super::ServerApps;
use crate::sessions::ws_of;
use crate::workers::root_ctx;
use rhizo_control_plane::registry::{RegistryEvent, WatchError};
use serde_json::{json, Value};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a python-eval record outlives its client (for its logs).
const STOPPED_RECORD_TTL: Duration = Duration::from_secs(300);

/// How long a background stop holds a session's stop lock (the reference's 30 s).
const STOP_LOCK_TTL: Duration = Duration::from_secs(30);

/// Starts the controller's background tasks; they end when the controller is dropped.
pub(super) fn spawn(me: Arc<ServerApps>) {
    let Ok(host) = me.host() else { return };
    let Some(mut rx) = host.watch_registry() else {
        return;
    };
    let interval = me.options.idle_check_interval;
    let autoscale_interval = me.options.autoscale_interval;
    let weak = Arc::downgrade(&me);
    drop(me);
    let w = weak.clone();
    tokio::spawn(async move {
        // Daemon apps start when the server starts, once a worker for them is there.
        if let Some(me) = w.upgrade() {
            let me2 = me.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                me2.ensure_daemons(None).await;
            });
        }
        loop {
            match rx.recv().await {
                Ok(RegistryEvent::ClientGone { ws, cid }) => {
                    let Some(me) = w.upgrade() else { return };
                    me.client_gone(&format!("{ws}/{cid}")).await;
                }
                Ok(RegistryEvent::ServiceAdded { ws, record }) => {
                    if rhizo_protocol::value::get_str(&record, "type") == Some("server-app-worker")
                    {
                        let Some(me) = w.upgrade() else { return };
                        // A new worker may run daemon apps that could not start before:
                        // those of its workspace (every workspace for a public one).
                        let scope = (ws != "public").then_some(ws);
                        tokio::spawn(async move { me.ensure_daemons(scope).await });
                    }
                }
                Err(WatchError::Lagged(n)) => {
                    tracing::debug!(missed = n, "server apps fell behind the registry; sweeping");
                    let Some(me) = w.upgrade() else { return };
                    me.sweep_departed().await;
                }
                Err(WatchError::Closed) => return,
            }
        }
    });
    tokio::spawn(super::autoscale::run(weak.clone(), autoscale_interval));
    tokio::spawn(idle_loop(weak, interval));
}

async fn idle_loop(me: Weak<ServerApps>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let Some(me) = me.upgrade() else { return };
        me.stop_idle().await;
        me.sweep_departed().await;
    }
}

// === impl ServerApps (lifecycle) ===

impl ServerApps {
    /// Every session record for a background pass; a store failure is logged and reads
    /// as none (the next pass tries again).
    pub(super) async fn records(&self) -> Vec<Value> {
        self.sessions.list().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "server apps could not read the session records");
            Vec::new()
        })
    }

    /// Takes session `id`'s stop lock: false when another node (or pass) is stopping it,
    /// or the store cannot say.
    pub(super) async fn claim_stop(&self, id: &str) -> bool {
        match self
            .sessions
            .try_lock(&format!("app-stop-lock:{id}"), STOP_LOCK_TTL)
            .await
        {
            Ok(guard) => guard.is_some(),
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "no stop lock; not stopping");
                false
            }
        }
    }

    /// The client `addr` (`ws/cid`) left.
    async fn client_gone(&self, addr: &str) {
        for s in self.records().await {
            let id = s.get("id").and_then(Value::as_str).unwrap_or_default();
            let worker = s
                .get("worker_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let worker_client = worker.split_once(':').map(|(c, _)| c).unwrap_or(worker);
            if worker_client == addr {
                // The worker died: its sessions are gone with it.
                tracing::info!(session = %id, worker = %worker, "worker left; session ended");
                self.forget(id).await;
            } else if id == addr {
                self.app_client_gone(s).await;
            }
        }
    }

    async fn app_client_gone(&self, s: Value) {
        let id = s["id"].as_str().unwrap_or_default().to_owned();
        if s.get("status").and_then(Value::as_str) != Some("running") {
            // A start in progress decides itself (a script may connect and leave); a
            // stopped record is kept for its logs.
            return;
        }
        if s.get("worker_managed").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if s.get("app_type").and_then(Value::as_str) == Some("python-eval") {
            let mut s = s;
            s["status"] = json!("stopped");
            if let Err(e) = self.sessions.put(s, Some(STOPPED_RECORD_TTL)).await {
                tracing::warn!(session = %id, error = %e, "could not mark a session stopped");
            }
            self.activity.remove(&id);
            return;
        }
        if !self.claim_stop(&id).await {
            return;
        }
        let daemon = s.get("daemon").and_then(Value::as_bool) == Some(true);
        if let Err(e) = self.stop_record(&s).await {
            tracing::info!(session = %id, error = %e, "stopping a departed app failed");
            self.forget(&id).await;
        }
        if daemon {
            self.restart_daemon(&s).await;
        }
    }

    /// Starts a daemon app again after its instance ended (through a daemon pass of its
    /// workspace, so that it is started once).
    async fn restart_daemon(&self, s: &Value) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.ensure_daemons(Some(ws_of(s).to_owned())).await;
    }

    /// Starts every daemon app (of workspace `scope`, or of every persistent workspace)
    /// that has no instance yet, as its installer (§1.8 `prepare_workspace`). One pass at
    /// a time on this node, and one start per app in the cluster (the app's start lock: a
    /// daemon another node is starting is skipped); an app without a worker is skipped
    /// quietly (a later worker triggers a new pass).
    pub(super) async fn ensure_daemons(&self, scope: Option<String>) {
        let Ok(host) = self.host() else { return };
        let _one_pass = self.daemon_pass.lock().await;
        let workspaces = match scope {
            Some(ws) => vec![ws],
            None => host.persistent_workspaces(),
        };
        for ws in workspaces {
            let root = root_ctx(&**host, &ws);
            let Ok(apps) = self.list_apps(&root).await else {
                continue;
            };
            for manifest in apps.as_array().into_iter().flatten() {
                if manifest.get("daemon").and_then(Value::as_bool) != Some(true)
                    || manifest.get("disabled").and_then(Value::as_bool) == Some(true)
                {
                    continue;
                }
                let Some(app) = manifest.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let Ok(records) = self.sessions.list().await else {
                    continue;
                };
                let running = records
                    .iter()
                    .any(|s| crate::sessions::app_of(s) == app && ws_of(s) == ws);
                if running {
                    continue;
                }
                let lock = format!("app-start-lock:{ws}/{app}");
                let hold = Duration::from_secs_f64(self.options.default_timeout + 30.0);
                let Ok(Some(guard)) = self.sessions.try_lock(&lock, hold).await else {
                    continue;
                };
                // Another node may have started it between the two looks.
                let started_elsewhere = self.sessions.list().await.map_or(true, |l| {
                    l.iter()
                        .any(|s| crate::sessions::app_of(s) == app && ws_of(s) == ws)
                });
                if started_elsewhere {
                    let _ = self.sessions.unlock(&guard).await;
                    continue;
                }
                let ctx = super::run::startup_ctx(manifest, &root);
                let req = StartRequest {
                    app_id: format!("{ws}/{app}"),
                    fresh: true,
                    ..Default::default()
                };
                let outcome = self.start(&ctx, req).await;
                let _ = self.sessions.unlock(&guard).await;
                match outcome {
                    Ok(_) => tracing::info!(%ws, %app, "daemon app started"),
                    Err(crate::AppsError::NoWorker(t)) => {
                        tracing::debug!(%ws, %app, app_type = %t, "daemon app waits for a worker")
                    }
                    Err(e) => tracing::warn!(%ws, %app, error = %e, "daemon app did not start"),
                }
            }
        }
    }

    /// Sessions whose worker's client is no longer connected anywhere we can see.
    async fn sweep_departed(&self) {
        let Ok(host) = self.host() else { return };
        for s in self.records().await {
            let worker = s
                .get("worker_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (ws_cid, name) = worker.split_once(':').unwrap_or((worker, ""));
            let Some((ws, cid)) = ws_cid.split_once('/') else {
                continue;
            };
            let live = !host
                .find_services(&rhizo_control_plane::registry::Pattern {
                    ws: Some(ws),
                    cid: Some(cid),
                    name: Some(name),
                    ..Default::default()
                })
                .is_empty();
            if !live {
                self.client_gone(ws_cid).await;
            }
        }
    }

    /// Stops instances idle for longer than their `stop_after_inactive`.
    async fn stop_idle(&self) {
        let Ok(host) = self.host() else { return };
        let now = Instant::now();
        for s in self.records().await {
            let id = s
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let limit = s
                .get("stop_after_inactive")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            if limit <= 0.0 || s.get("status").and_then(Value::as_str) != Some("running") {
                continue;
            }
            let frames = host.client(&id).map(|p| p.frames_in);
            if frames.is_none() && self.connected_elsewhere(&**host, &s) {
                // Its connection is on another node, which samples its traffic.
                self.activity.remove(&id);
                continue;
            }
            let mut entry = self.activity.entry(id.clone()).or_insert((0, now));
            if let Some(f) = frames {
                if f != entry.0 {
                    *entry = (f, now);
                }
            }
            let idle = now.duration_since(entry.1);
            drop(entry);
            if idle.as_secs_f64() >= limit && self.claim_stop(&id).await {
                tracing::info!(session = %id, idle_s = idle.as_secs_f64(), "stopping idle app");
                if let Err(e) = self.stop_record(&s).await {
                    tracing::info!(session = %id, error = %e, "idle stop failed");
                }
            }
        }
    }

    /// Whether session `s`'s app client has services registered on another node (so
    /// that node holds its connection and judges its inactivity).
    fn connected_elsewhere(
        &self,
        host: &dyn rhizo_control_plane::service::ServiceHost,
        s: &Value,
    ) -> bool {
        let ws = ws_of(s);
        let Some(cid) = s.get("client_id").and_then(Value::as_str) else {
            return false;
        };
        !host
            .find_services(&rhizo_control_plane::registry::Pattern {
                ws: Some(ws),
                cid: Some(cid),
                ..Default::default()
            })
            .is_empty()
    }
}
