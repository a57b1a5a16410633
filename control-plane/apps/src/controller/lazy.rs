//! Lazy start (apps-workers.md §1.7): `get_service("svc@app_id")` finds no live
//! service, so the app that declares `svc` is started — once, however many callers ask at
//! the same moment, on this node or any other of the cluster — and the caller gets the new
//! instance's service.

use super::run::{startup_ctx, StartRequest};
use super::ServerApps;
use crate::error::{AppsError, AppsResult};
use crate::manifest::StartupConfig;
use crate::sessions::{app_of, ws_of};
use rhizo_control_plane::registry::Pattern;
use rhizo_control_plane::Ctx;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How often a node that found another node starting the app looks for its instance.
const PEER_START_POLL: Duration = Duration::from_millis(100);

/// The service `get_service` asked for: `svc@app` in a workspace.
#[derive(Debug)]
pub(crate) struct LazyTarget {
    ws: String,
    name: String,
    app: String,
    full: String,
}

impl LazyTarget {
    /// `svc@app`, `ws/svc@app`, `*:svc@app` or `ws/*:svc@app`; `None` for any other id
    /// (a named client is not an app's service to start).
    pub(crate) fn parse(ctx: &Ctx, id: &str) -> Option<LazyTarget> {
        let (left, app) = id.split_once('@')?;
        let (ws, rest) = match left.split_once('/') {
            Some((w, r)) => (w.to_owned(), r),
            None => (ctx.ws.clone(), left),
        };
        let name = match rest.split_once(':') {
            Some(("*", n)) => n,
            Some(_) => return None,
            None => rest,
        };
        if name.is_empty() || app.is_empty() || ws == "*" {
            return None;
        }
        Some(LazyTarget {
            full: format!("{ws}/*:{name}@{app}"),
            ws,
            name: name.to_owned(),
            app: app.to_owned(),
        })
    }
}

// === impl ServerApps (lazy start) ===

impl ServerApps {
    /// Lazy start (§1.7): the running instance's service, or a new instance of the app
    /// that declares service `want.name`, started once however many callers ask at once:
    /// callers on this node queue on the app's local lock, and nodes take the store's
    /// `app-start-lock:{ws}/{app}` (a node that finds it held waits for the other node's
    /// instance instead of starting its own).
    pub(crate) async fn lazy_start(&self, ctx: &Ctx, want: LazyTarget) -> AppsResult<String> {
        let not_found = || AppsError::NotFound(format!("Service not found: {}", want.full));
        let key = format!("{}/{}", want.ws, want.app);
        let _counted = self.autoscale.waiting(&key);
        let lock = self.start_locks.entry(key.clone()).or_default().clone();
        let _one = lock.lock().await;
        if let Some(id) = self.running_service(&want).await? {
            return Ok(id);
        }
        let manifest = self
            .read_app(&want.ws, &want.app, None, false)
            .await
            .map_err(|_| not_found())?;
        let declared = manifest
            .get("services")
            .and_then(Value::as_array)
            .is_some_and(|l| {
                l.iter().any(|s| {
                    s.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.ends_with(&format!(":{}", want.name)))
                })
            });
        if !declared {
            return Err(not_found());
        }
        let timeout = StartupConfig::from_manifest(&manifest)
            .ok()
            .and_then(|c| c.timeout)
            .unwrap_or(self.options.default_timeout)
            .max(0.1);
        let guard = match self.peer_start(&key, &want, timeout).await? {
            PeerStart::Ours(guard) => guard,
            PeerStart::Theirs(id) => return Ok(id),
        };
        let launch = startup_ctx(&manifest, ctx);
        let req = StartRequest {
            app_id: want.app.clone(),
            call: StartupConfig {
                wait_for_service: Some(json!(want.name)),
                ..Default::default()
            },
            ..Default::default()
        };
        let started = self.start(&launch, req).await;
        if let Err(e) = self.sessions.unlock(&guard).await {
            tracing::info!(app = %key, error = %e, "start lock not released; it expires");
        }
        let started = started?;
        let sid = started
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(format!("{sid}:{}", want.name))
    }

    /// Takes the cluster's start lock of app `key` (`ws/app`), or waits while another
    /// node holds it: for that node's instance to show the service, or for the lock to
    /// come free (that start failed: this node tries). Errors: the store failed, or
    /// `timeout` seconds passed.
    async fn peer_start(
        &self,
        key: &str,
        want: &LazyTarget,
        timeout: f64,
    ) -> AppsResult<PeerStart> {
        let name = format!("app-start-lock:{key}");
        let hold = Duration::from_secs_f64(timeout + 30.0);
        let deadline = Instant::now() + Duration::from_secs_f64(timeout);
        loop {
            if let Some(guard) = self.sessions.try_lock(&name, hold).await? {
                // The other node may have finished between our two looks.
                if let Some(id) = self.running_service(want).await? {
                    let _ = self.sessions.unlock(&guard).await;
                    return Ok(PeerStart::Theirs(id));
                }
                return Ok(PeerStart::Ours(guard));
            }
            if let Some(id) = self.running_service(want).await? {
                return Ok(PeerStart::Theirs(id));
            }
            if Instant::now() >= deadline {
                return Err(AppsError::Timeout(format!(
                    "Timed out waiting for app {key}, which another server is starting"
                )));
            }
            tokio::time::sleep(PEER_START_POLL).await;
        }
    }

    /// `ws/cid:name` of a running instance of the app that has the service (on any
    /// node: the registry sees the cluster's services). Among several instances (an
    /// autoscaled app) the app's `service_selection_mode` picks: `random` (the default
    /// when unset) or `first`/`exact` (the first found).
    async fn running_service(&self, want: &LazyTarget) -> AppsResult<Option<String>> {
        let host = self.host()?;
        let found: Vec<String> = self
            .sessions
            .list()
            .await?
            .into_iter()
            .filter(|s| app_of(s) == want.app && ws_of(s) == want.ws)
            .filter_map(|s| {
                s.get("client_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|cid| {
                !host
                    .find_services(&Pattern {
                        ws: Some(&want.ws),
                        cid: Some(cid),
                        name: Some(&want.name),
                        ..Default::default()
                    })
                    .is_empty()
            })
            .collect();
        let pick = if found.len() > 1 {
            match self.service_selection_mode(want).await.as_deref() {
                None | Some("random") => rand::random::<usize>() % found.len(),
                Some(_) => 0,
            }
        } else {
            0
        };
        Ok(found
            .get(pick)
            .map(|cid| format!("{}/{cid}:{}", want.ws, want.name)))
    }
}

impl ServerApps {
    /// The `service_selection_mode` of the app `want` names, from its manifest; for an
    /// autoscaled app that sets none, `"random"` (its instances are interchangeable, and
    /// `exact` would fail as soon as a second one starts); `None` when it sets none
    /// otherwise or the app is not installed.
    pub(crate) async fn service_selection_mode(&self, want: &LazyTarget) -> Option<String> {
        let manifest = self.read_app(&want.ws, &want.app, None, false).await.ok()?;
        if let Some(mode) = manifest
            .get("service_selection_mode")
            .and_then(Value::as_str)
        {
            return Some(mode.to_owned());
        }
        crate::manifest::autoscaling(&manifest)
            .ok()
            .flatten()
            .filter(|c| c.enabled)
            .map(|_| "random".to_owned())
    }
}

/// What [`ServerApps::peer_start`] found.
enum PeerStart {
    /// This node holds the start lock and starts the instance.
    Ours(crate::sessions::LockGuard),
    /// Another node's instance has the service: its id.
    Theirs(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::user::UserInfo;

    fn ctx() -> Ctx {
        Ctx {
            ws: "ws-a".into(),
            from: "ws-a/c".into(),
            cid: "c".into(),
            user: UserInfo::root(),
        }
    }

    #[test]
    fn lazy_targets() {
        let t = LazyTarget::parse(&ctx(), "echo@my-app").unwrap();
        assert_eq!(
            (t.ws.as_str(), t.name.as_str(), t.app.as_str()),
            ("ws-a", "echo", "my-app")
        );
        let t = LazyTarget::parse(&ctx(), "ws-b/*:echo@my-app").unwrap();
        assert_eq!(t.ws, "ws-b");
        assert!(LazyTarget::parse(&ctx(), "ws-b/client:echo@my-app").is_none());
        assert!(LazyTarget::parse(&ctx(), "echo").is_none());
        assert!(LazyTarget::parse(&ctx(), "*/echo@a").is_none());
    }
}
