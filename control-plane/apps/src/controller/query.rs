//! Reading and driving running instances and workers: list_running, get_logs,
//! get_session_info, execute, list_workers, edit_worker (apps-workers.md §1.2).

use super::{Args, ServerApps};
use crate::error::{AppsError, AppsResult};
use crate::sessions::{public_view, ws_of};
use crate::workers::{self, Worker};
use rhizo_control_plane::Ctx;
use rhizo_protocol::user::{Permission, UserInfo};
use rhizo_protocol::value;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a worker's `get_logs` may take.
const LOGS_TIMEOUT: Duration = Duration::from_secs(15);

// === impl ServerApps (queries) ===

impl ServerApps {
    /// `list_running()`: the caller's workspace's instances.
    pub(crate) async fn list_running(&self, ctx: &Ctx) -> AppsResult<Value> {
        let prefix = format!("{}/", ctx.ws);
        let mut list: Vec<Value> = self
            .sessions
            .list()
            .await?
            .iter()
            .filter(|s| {
                s.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with(&prefix))
            })
            .map(public_view)
            .collect();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        Ok(Value::Array(list))
    }

    /// `get_session_info(session_id)` (read permission on the session's workspace).
    pub(crate) async fn get_session_info(&self, ctx: &Ctx, id: &str) -> AppsResult<Value> {
        let ws = id.split_once('/').map(|(w, _)| w).unwrap_or_default();
        Self::require(ctx, ws, Permission::Read, "read app instances")?;
        self.sessions
            .get(id)
            .await?
            .map(|s| public_view(&s))
            .ok_or_else(|| AppsError::NotFound(format!("Session not found: {id}")))
    }

    /// Calls the worker's `get_logs(session_id, type, offset, limit)` (the seed-001
    /// signature).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fetch_logs(
        &self,
        worker: &Worker,
        session_id: &str,
        kind: Option<&str>,
        offset: u64,
        limit: Option<u64>,
        ws: &str,
        user: &UserInfo,
    ) -> AppsResult<Value> {
        let host = self.host()?;
        // Positional, so that JavaScript workers (no keyword arguments) read them too.
        let args = vec![
            session_id.into(),
            kind.map(rmpv::Value::from).unwrap_or(rmpv::Value::Nil),
            offset.into(),
            limit.map(rmpv::Value::from).unwrap_or(rmpv::Value::Nil),
        ];
        let v = worker
            .call(&**host, "get_logs", args, None, ws, user, LOGS_TIMEOUT)
            .await?;
        Ok(value::to_json(&v))
    }

    /// The worker's error log lines for a failure message, or its whole log, as text.
    pub(crate) async fn worker_logs_text(
        &self,
        worker: &Worker,
        id: &str,
        ws: &str,
        user: &UserInfo,
    ) -> String {
        let Ok(logs) = self.fetch_logs(worker, id, None, 0, None, ws, user).await else {
            return String::new();
        };
        let mut lines = Vec::new();
        if let Some(items) = logs.get("items").and_then(Value::as_array) {
            for i in items {
                let t = i.get("type").and_then(Value::as_str).unwrap_or("log");
                let c = match i.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                lines.push(format!("[{t}] {c}"));
            }
        } else if let Some(errors) = logs.get("error").and_then(Value::as_array) {
            lines.extend(errors.iter().map(|e| {
                e.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string())
            }));
        } else if !logs.is_null() {
            lines.push(logs.to_string());
        }
        lines.join("\n")
    }

    /// The outcome of a python-eval script that has run: an error naming its return code
    /// (its stderr follows in the start error's logs) unless it exited with 0.
    pub(crate) async fn script_exit(
        &self,
        worker: &Worker,
        session_id: &str,
        ws: &str,
        user: &UserInfo,
    ) -> AppsResult<()> {
        let logs = self
            .fetch_logs(worker, session_id, Some("info"), 0, None, ws, user)
            .await?;
        let code = logs
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("content").and_then(Value::as_str))
            .filter_map(|c| {
                c.rsplit_once("return code: ")
                    .map(|(_, n)| n.trim().to_owned())
            })
            .next_back();
        match code.as_deref() {
            None | Some("0") => Ok(()),
            Some(n) => Err(AppsError::Worker(format!(
                "the script exited with return code {n}"
            ))),
        }
    }

    /// `get_logs(session_id, type, offset, limit)`: from the worker; when it cannot
    /// answer but the record cached logs (python-eval), from those (§1.2).
    pub(crate) async fn get_logs(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let id = a.req("session_id")?;
        let record = self.session_for(ctx, &id, Permission::Read).await?;
        let kind = a.str("type");
        let offset = a.num("offset").unwrap_or(0.0).max(0.0) as u64;
        let limit = a.num("limit").map(|l| l.max(0.0) as u64);
        let host = self.host()?;
        let worker_id = record
            .get("worker_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let from_worker = match workers::fetch(&**host, worker_id).await {
            Ok(w) => {
                self.fetch_logs(
                    &w,
                    &id,
                    kind.as_deref(),
                    offset,
                    limit,
                    ws_of(&record),
                    &ctx.user,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match (from_worker, record.get("logs")) {
            (Ok(v), _) => Ok(v),
            (Err(_), Some(Value::Object(cached))) => {
                let items: Vec<Value> = cached
                    .iter()
                    .filter(|(t, _)| kind.as_deref().is_none_or(|k| k == t.as_str()))
                    .flat_map(|(t, l)| {
                        l.as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |c| json!({"type": t, "content": c}))
                    })
                    .collect();
                let total = items.len();
                let start = (offset as usize).min(total);
                let end = limit
                    .map(|l| (start + l as usize).min(total))
                    .unwrap_or(total);
                Ok(
                    json!({"items": items[start..end], "total": total, "offset": offset, "limit": limit}),
                )
            }
            (Err(e), _) => Err(e),
        }
    }

    /// `execute(session_id, script, config, progress_callback)`: forwarded to the
    /// session's worker (read-write on the session's workspace needed).
    pub(crate) async fn execute(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let id = a.req("session_id")?;
        let record = self.session_for(ctx, &id, Permission::ReadWrite).await?;
        let host = self.host()?;
        let worker_id = record
            .get("worker_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let worker = workers::fetch(&**host, worker_id).await?;
        if !worker.has("execute") {
            return Err(AppsError::Invalid(format!(
                "Worker {worker_id} does not support execute"
            )));
        }
        let script = a.raw("script").clone();
        let config = a.raw("config").clone();
        let timeout = value::get(&config, "timeout")
            .and_then(|t| t.as_f64().or_else(|| t.as_i64().map(|x| x as f64)))
            .unwrap_or(30.0)
            .max(1.0);
        // Positional (session_id, script, config, progress_callback): JavaScript workers
        // take no keyword arguments.
        let mut args = vec![id.clone().into(), script, config];
        if let Some(cb) = a.callable("progress_callback") {
            let session = format!("apps{}", rhizo_control_plane::names::random_string(12));
            // The worker may call the caller's callback back only through us.
            let relayed = self
                .relay_progress(ctx, &session, &worker, Some(cb))
                .unwrap_or(rmpv::Value::Nil);
            args.push(relayed);
            let out = worker
                .call(
                    &**host,
                    "execute",
                    args,
                    None,
                    ws_of(&record),
                    &ctx.user,
                    Duration::from_secs_f64(timeout + 10.0),
                )
                .await;
            host.drop_callbacks(&session);
            return out.map(|v| value::to_json(&v));
        }
        let v = worker
            .call(
                &**host,
                "execute",
                args,
                None,
                ws_of(&record),
                &ctx.user,
                Duration::from_secs_f64(timeout + 10.0),
            )
            .await?;
        Ok(value::to_json(&v))
    }

    /// `list_workers(app_type=None)`: the workspace's workers, then the public ones.
    pub(crate) async fn list_workers(
        &self,
        ctx: &Ctx,
        app_type: Option<&str>,
    ) -> AppsResult<Value> {
        let host = self.host()?;
        let mut out = Vec::new();
        let scopes: &[&str] = if ctx.ws == "public" {
            &["public"]
        } else {
            &[&ctx.ws, "public"]
        };
        for scope in scopes {
            for w in workers::in_workspace(&**host, scope).await {
                if app_type.is_some_and(|t| !w.supported_types.iter().any(|s| s == t)) {
                    continue;
                }
                out.push(json!({
                    "id": w.id,
                    "name": w.name,
                    "description": w.description,
                    "supported_types": w.supported_types,
                    "disabled": self.is_disabled(&w.id).await?,
                }));
            }
        }
        Ok(Value::Array(out))
    }

    /// `edit_worker(worker_id, disabled)`: read-write on the caller's workspace and on
    /// the worker's. Disabling stops the worker's sessions (the reference only forgets
    /// them, orphaning their processes).
    pub(crate) async fn edit_worker(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let raw = a.req("worker_id")?;
        let id = if raw.contains('/') {
            raw
        } else {
            format!("{}/{raw}", ctx.ws)
        };
        let ws = id
            .split_once('/')
            .map(|(w, _)| w.to_owned())
            .unwrap_or_default();
        Self::require(ctx, &ctx.ws, Permission::ReadWrite, "edit workers")?;
        Self::require(ctx, &ws, Permission::ReadWrite, "edit workers")?;
        let Some(disabled) = a.raw("disabled").as_bool() else {
            return Ok(Value::Null);
        };
        self.sessions
            .set_worker_disabled(&ws, &id, disabled)
            .await?;
        if disabled {
            let bound: Vec<Value> = self
                .sessions
                .list()
                .await?
                .into_iter()
                .filter(|s| s.get("worker_id").and_then(Value::as_str) == Some(id.as_str()))
                .collect();
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    for s in bound {
                        let _ = me.stop_record(&s).await;
                    }
                });
            }
        }
        Ok(Value::Null)
    }
}
