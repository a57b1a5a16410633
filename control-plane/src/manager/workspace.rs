//! Workspace methods of the `default` service (workspace-api.md §5.3–5.5): creating,
//! listing and deleting workspaces, environment variables, bookmarks, status and summary,
//! service types, text search over services, the event log, and token revocation.
//!
//! State lives in memory for now (the `Workspaces` table and an event list); where the
//! reference has a QUIRK, the safer behaviour is taken (docs/compat.md).

use super::{Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::events;
use crate::registry::Visibility;
use crate::tokens::now_secs;
use crate::workspaces::WorkspaceInfo;
use rhizo_interface::CloseReason;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Rows the in-memory event log keeps.
const MAX_EVENTS: usize = 100_000;

/// One row of the event log (workspace-api.md §2.10).
#[derive(Debug, Clone)]
pub struct EventLog {
    /// Row id, increasing.
    pub id: u64,
    /// Event type (no spaces).
    pub event_type: String,
    /// Workspace it was logged in.
    pub workspace: String,
    /// User who logged it.
    pub user_id: String,
    /// Seconds since the epoch.
    pub timestamp: f64,
    /// Payload.
    pub data: serde_json::Value,
}

fn to_value(v: &impl serde::Serialize) -> Value {
    value::from_json(&serde_json::to_value(v).unwrap_or_default())
}

fn valid_workspace_id(id: &str, root: bool) -> ManagerResult<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ManagerError::InvalidArgument(format!(
            "Invalid workspace id: {id} (lowercase letters, digits and '-' only)"
        )));
    }
    if !root && !id.contains('-') {
        return Err(ManagerError::InvalidArgument(format!(
            "Workspace id must contain a hyphen: {id}"
        )));
    }
    Ok(())
}

/// The bookmark of a workspace, as kept in a personal workspace's `config.bookmarks`.
fn workspace_bookmark(w: &WorkspaceInfo) -> serde_json::Value {
    json!({"bookmark_type": "workspace", "id": w.id, "name": w.name, "description": w.description})
}

fn time_arg(v: &Value) -> Option<f64> {
    v.as_f64().or(v.as_i64().map(|i| i as f64))
}

// === impl Manager (workspaces) ===

impl Manager {
    pub(super) fn create_workspace(
        &self,
        ctx: &Ctx,
        config: &Value,
        overwrite: bool,
    ) -> ManagerResult<Value> {
        if ctx.user.is_anonymous {
            return Err(ManagerError::Permission(
                "Only registered user can create workspace.".into(),
            ));
        }
        let id = get_str(config, "id")
            .or_else(|| get_str(config, "name"))
            .ok_or_else(|| ManagerError::InvalidArgument("Workspace id is required".into()))?;
        let root = ctx.user.id == "root";
        valid_workspace_id(id, root)?;
        if let Some(existing) = self.workspaces.get(id) {
            if !overwrite {
                return Err(ManagerError::Internal(format!(
                    "Workspace already exists: {id}"
                )));
            }
            let owner = existing.owners.contains(&ctx.user.id);
            if !(root || owner || ctx.user.can(id, Permission::Admin)) {
                return Err(ManagerError::Permission(format!(
                    "Permission denied for workspace {id}"
                )));
            }
        } else if !root {
            let limit = self.config.limits.workspaces_per_user;
            let owned = self.workspaces.count_owned_by(&ctx.user.id);
            if crate::config::reached(owned, limit) {
                return Err(ManagerError::Quota(format!(
                    "Workspace quota exceeded: user {} owns {owned} workspaces (limit {limit})",
                    ctx.user.id
                )));
            }
        }
        let mut owners = value::get_strs(config, "owners");
        if !owners.contains(&ctx.user.id) {
            owners.push(ctx.user.id.clone());
        }
        let persistent = get(config, "persistent")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut info = WorkspaceInfo::new(
            id,
            get_str(config, "description").unwrap_or(""),
            persistent,
            owners,
        );
        info.name = get_str(config, "name").unwrap_or(id).to_owned();
        info.read_only = get(config, "read_only")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let personal = ctx.user.personal_workspace();
        if id == personal {
            info.config
                .insert("bookmarks".into(), json!([workspace_bookmark(&info)]));
        } else {
            self.set_bookmark(&personal, id, Some(workspace_bookmark(&info)));
        }
        self.workspaces.put(info.clone());
        let v = to_value(&info);
        events::emit(
            &*self.router,
            &ctx.user.personal_workspace(),
            "workspace_loaded",
            v.clone(),
        );
        // Nothing to prepare here (no S3, no apps yet): the workspace is ready at once.
        events::emit(&*self.router, id, "workspace_ready", v.clone());
        self.status_changed(id, "ready");
        Ok(v)
    }

    /// Broadcasts `workspace_status_changed {workspace, status}` to `ws` (§4.4).
    fn status_changed(&self, ws: &str, status: &str) {
        let data = map([("workspace", ws.into()), ("status", status.into())]);
        events::emit(&*self.router, ws, "workspace_status_changed", data);
    }

    /// Broadcasts `workspace_changed <WorkspaceInfo>` to `ws` after its record changed
    /// (bookmarks, environment, service types; workspace-api.md §6.2).
    pub(super) fn workspace_changed(&self, ws: &str) {
        if let Some(info) = self.workspaces.get(ws) {
            events::emit(&*self.router, ws, "workspace_changed", to_value(&info));
        }
    }

    /// Removes `ws` if it is temporary and no client is connected to it, telling it
    /// `workspace_unloaded` (workspace-api.md §4.5). Returns whether it was removed.
    pub fn unload_if_empty(&self, ws: &str) -> bool {
        let in_use = || self.router.client_count(ws) > 0 || self.sessions.count_in(ws) > 0;
        match self.workspaces.unload_if_temporary(ws, in_use) {
            Some(info) => {
                tracing::debug!(workspace = ws, "unloaded temporary workspace");
                self.status_changed(ws, "closed");
                events::emit(&*self.router, ws, "workspace_unloaded", to_value(&info));
                true
            }
            None => false,
        }
    }

    /// The last client of `ws` left: unload it now, or after the grace period
    /// (`HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD`) if still empty then. A client joining and
    /// leaving again restarts the wait.
    pub(crate) fn schedule_unload(self: &Arc<Self>, ws: &str) {
        let grace = self.config.workspace_unload_grace;
        if grace.is_zero() {
            self.unload_if_empty(ws);
            return;
        }
        if self.workspaces.get(ws).is_none_or(|w| w.persistent) {
            return;
        }
        let ticket = self.unload_tickets.fetch_add(1, Ordering::Relaxed) + 1;
        self.pending_unloads.insert(ws.to_owned(), ticket);
        let me = self.clone();
        let ws = ws.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if me
                .pending_unloads
                .remove_if(&ws, |_, t| *t == ticket)
                .is_some()
            {
                me.unload_if_empty(&ws);
            }
        });
    }

    /// `cleanup(workspace, timeout)` (workspace-api.md §5.2): needs admin on the caller's
    /// workspace and on the target. An empty temporary workspace is removed
    /// (`{removed_workspace, removed_clients: []}`); otherwise every client is pinged (50
    /// at a time, `timeout` seconds each) and those that do not answer are disconnected
    /// and their services removed (`{removed_clients: ["ws/cid", …]}`, or `{}`).
    pub(super) async fn cleanup(
        self: &Arc<Self>,
        ctx: &Ctx,
        workspace: Option<&str>,
        timeout: Option<f64>,
    ) -> ManagerResult<Value> {
        self.require_admin_or_owner(ctx, &ctx.ws)?;
        let ws = workspace.unwrap_or(&ctx.ws).to_owned();
        self.require_admin_or_owner(ctx, &ws)?;
        let info = self
            .workspaces
            .get(&ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {ws}")))?;
        let mut clients: std::collections::BTreeSet<String> = self
            .registry
            .clients(&ws)
            .into_iter()
            .map(|r| r.cid)
            .collect();
        clients.extend(self.router.presence(&ws).into_iter().map(|c| c.client_id));
        if clients.is_empty() {
            if !info.persistent && self.unload_if_empty(&ws) {
                return Ok(map([
                    ("removed_workspace", ws.as_str().into()),
                    ("removed_clients", Value::Array(vec![])),
                ]));
            }
            return Ok(Value::Map(vec![]));
        }
        let clients: Vec<String> = clients.into_iter().collect();
        let mut removed = Vec::new();
        for batch in clients.chunks(50) {
            let pings = batch.iter().map(|cid| {
                let target = Value::from(format!("{ws}/{cid}"));
                async move { (cid, self.ping(ctx, &target, timeout).await) }
            });
            for (cid, answer) in futures_util::future::join_all(pings).await {
                if answer.as_str() != Some("pong") {
                    removed.push(cid.clone());
                }
            }
        }
        for cid in &removed {
            self.remove_unresponsive(&ws, cid);
        }
        if removed.is_empty() {
            return Ok(Value::Map(vec![]));
        }
        let list = removed.iter().map(|c| format!("{ws}/{c}").into()).collect();
        Ok(map([("removed_clients", Value::Array(list))]))
    }

    /// Disconnects a client that did not answer `cleanup`'s ping and drops its services.
    fn remove_unresponsive(&self, ws: &str, cid: &str) {
        tracing::info!(client = %format!("{ws}/{cid}"), "cleanup: removing an unresponsive client");
        self.router.close(
            &format!("{ws}/{cid}"),
            None,
            CloseReason::Policy("Removed by cleanup: the client did not answer a ping".into()),
        );
        if !self.registry.remove_client(ws, cid).is_empty() {
            let data = map([("id", cid.into()), ("workspace", ws.into())]);
            events::emit(&*self.router, ws, "client_disconnected", data);
        }
    }

    fn require_admin_or_owner(&self, ctx: &Ctx, ws: &str) -> ManagerResult<()> {
        if ctx.user.can(ws, Permission::Admin) || self.workspaces.owned_by(ws, &ctx.user.id) {
            Ok(())
        } else {
            Err(ManagerError::Permission(format!(
                "Permission denied for workspace {ws}"
            )))
        }
    }

    pub(super) fn delete_workspace(&self, ctx: &Ctx, ws: &str) -> ManagerResult<Value> {
        if ["public", "ws-user-root", "ws-anonymous"].contains(&ws) {
            return Err(ManagerError::Permission(format!(
                "Workspace {ws} cannot be deleted"
            )));
        }
        self.require_admin_or_owner(ctx, ws)?;
        let info = self
            .workspaces
            .remove(ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {ws}")))?;
        self.set_bookmark(&ctx.user.personal_workspace(), ws, None);
        events::emit(
            &*self.router,
            &ctx.user.personal_workspace(),
            "workspace_deleted",
            to_value(&info),
        );
        Ok(Value::Nil)
    }

    pub(super) fn list_workspaces(
        &self,
        ctx: &Ctx,
        matching: &Value,
        offset: &Value,
        limit: &Value,
    ) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let offset = offset.as_u64().unwrap_or(0) as usize;
        let limit = limit.as_u64().unwrap_or(256);
        if !(1..=256).contains(&limit) {
            return Err(ManagerError::InvalidArgument(
                "limit must be between 1 and 256".into(),
            ));
        }
        let mut all = self.workspaces.all();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let items = all
            .into_iter()
            .filter(|w| ctx.user.can(&w.id, Permission::Read) || w.owners.contains(&ctx.user.id))
            .map(|w| json!({"id": w.id, "name": w.name, "description": w.description, "read_only": w.read_only, "persistent": w.persistent, "owners": w.owners}))
            .filter(|w| match value::to_json(matching) {
                serde_json::Value::Object(m) => m.iter().all(|(k, v)| w.get(k) == Some(v)),
                _ => true,
            })
            .skip(offset)
            .take(limit as usize)
            .map(|w| value::from_json(&w))
            .collect();
        Ok(Value::Array(items))
    }

    pub(super) fn set_env(&self, ctx: &Ctx, key: &Value, val: &Value) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let key = key
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("key must be a string".into()))?
            .to_owned();
        let val = value::to_json(val);
        self.workspaces
            .update(&ctx.ws, |w| {
                let env = w.config.entry("environs").or_insert_with(|| json!({}));
                if let Some(env) = env.as_object_mut() {
                    if val.is_null() {
                        env.remove(&key);
                    } else {
                        env.insert(key.clone(), val.clone());
                    }
                }
            })
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {}", ctx.ws)))?;
        Ok(Value::Nil)
    }

    pub(super) fn get_env(&self, ctx: &Ctx, key: &Value) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let info = self
            .workspaces
            .get(&ctx.ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {}", ctx.ws)))?;
        let env = info.config.get("environs").cloned().unwrap_or(json!({}));
        match key.as_str() {
            None => Ok(value::from_json(&env)),
            Some(k) => env.get(k).map(value::from_json).ok_or_else(|| {
                ManagerError::NotFound(format!("Environment variable not found: {k}"))
            }),
        }
    }

    pub(super) fn check_status(&self, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let permission: Value = ctx
            .user
            .permission(&ctx.ws)
            .map_or(Value::Nil, |p| p.code().into());
        Ok(match self.workspaces.get(&ctx.ws) {
            Some(_) => map([
                ("status", "ready".into()),
                ("errors", Value::Nil),
                ("user_permission", permission.clone()),
            ]),
            None => map([
                ("status", "not_found".into()),
                ("error", "Workspace not found".into()),
                ("user_permission", permission),
            ]),
        })
    }

    pub(super) fn get_summary(&self, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let info = self
            .workspaces
            .get(&ctx.ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {}", ctx.ws)))?;
        let clients: Vec<Value> = self
            .registry
            .clients(&ctx.ws)
            .iter()
            .map(|r| format!("{}/{}", r.ws, r.cid).into())
            .collect();
        let services: Vec<Value> = self
            .registry
            .find(&crate::registry::Pattern {
                ws: Some(&ctx.ws),
                ..Default::default()
            })
            .into_iter()
            .filter(|r| !r.is_built_in())
            .map(|r| {
                let rec = &r.record;
                map([
                    ("id", r.id().into()),
                    ("name", get(rec, "name").cloned().unwrap_or(Value::Nil)),
                    ("type", r.kind.as_str().into()),
                    (
                        "description",
                        get(rec, "description").cloned().unwrap_or(Value::Nil),
                    ),
                    ("config", get(rec, "config").cloned().unwrap_or(Value::Nil)),
                ])
            })
            .collect();
        Ok(map([
            ("name", info.name.as_str().into()),
            ("description", info.description.as_str().into()),
            ("client_count", clients.len().into()),
            ("clients", Value::Array(clients)),
            ("service_count", services.len().into()),
            ("services", Value::Array(services)),
        ]))
    }

    pub(super) fn bookmark(&self, ctx: &Ctx, item: &Value, add: bool) -> ManagerResult<Value> {
        let id = get_str(item, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("bookmark id is required".into()))?
            .to_owned();
        let entry = if add {
            let kind = get_str(item, "bookmark_type").unwrap_or_default();
            let entry = match kind {
                "workspace" => {
                    let w = self.workspaces.get(&id).ok_or_else(|| {
                        ManagerError::NotFound(format!("Workspace not found: {id}"))
                    })?;
                    workspace_bookmark(&w)
                }
                "service" => {
                    let info =
                        self.get_service_info(ctx, &Value::from(id.as_str()), &Value::Nil)?;
                    json!({"bookmark_type": "service", "id": id, "name": get_str(&info, "name"),
                           "description": get_str(&info, "description"), "config": value::to_json(get(&info, "config").unwrap_or(&Value::Nil))})
                }
                other => {
                    return Err(ManagerError::InvalidArgument(format!(
                        "Invalid bookmark type: {other}"
                    )))
                }
            };
            Some(entry)
        } else {
            None
        };
        let personal = ctx.user.personal_workspace();
        self.set_bookmark(&personal, &id, entry)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {personal}")))?;
        Ok(Value::Nil)
    }

    /// Replaces (with `entry`) or removes (`None`) the bookmark `id` in the
    /// `config.bookmarks` of workspace `ws`; `None` if `ws` is not loaded.
    fn set_bookmark(&self, ws: &str, id: &str, entry: Option<serde_json::Value>) -> Option<()> {
        self.workspaces.update(ws, |w| {
            let marks = w.config.entry("bookmarks").or_insert_with(|| json!([]));
            if let Some(list) = marks.as_array_mut() {
                list.retain(|b| b.get("id").and_then(|i| i.as_str()) != Some(id));
                if let Some(e) = entry {
                    list.push(e);
                }
            }
        })
    }

    pub(super) fn register_service_type(
        &self,
        ctx: &Ctx,
        type_info: &Value,
    ) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let raw = get_str(type_info, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("service type id is required".into()))?;
        let (ws, id) = raw.split_once('/').unwrap_or((ctx.ws.as_str(), raw));
        if ws != ctx.ws {
            return Err(ManagerError::Permission(
                "Cannot register service types in other workspaces".into(),
            ));
        }
        if get(type_info, "definition").is_none() {
            return Err(ManagerError::InvalidArgument(
                "service type definition is required".into(),
            ));
        }
        let mut info = value::to_json(type_info);
        info["id"] = json!(id);
        let stored = self
            .workspaces
            .update(&ctx.ws, |w| {
                if w.service_types.contains_key(id) {
                    return false;
                }
                w.service_types.insert(id.to_owned(), info.clone());
                true
            })
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {}", ctx.ws)))?;
        if !stored {
            return Err(ManagerError::NotFound(format!(
                "Service type already exists: {id}"
            )));
        }
        info["id"] = json!(format!("{ws}/{id}"));
        Ok(value::from_json(&info))
    }

    pub(super) fn get_service_type(&self, ctx: &Ctx, type_id: &Value) -> ManagerResult<Value> {
        let raw = type_id
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("type_id must be a string".into()))?;
        let (ws, id) = raw.split_once('/').unwrap_or((ctx.ws.as_str(), raw));
        let info = self
            .workspaces
            .get(ws)
            .and_then(|w| w.service_types.get(id).cloned());
        let mut info = info
            .ok_or_else(|| ManagerError::NotFound(format!("Service type not found: {ws}/{id}")))?;
        let public = info.pointer("/config/visibility").and_then(|v| v.as_str()) == Some("public");
        if !public {
            ctx.require(ws, Permission::Read)?;
        }
        info["id"] = json!(format!("{ws}/{id}"));
        Ok(value::from_json(&info))
    }

    pub(super) fn list_service_types(
        &self,
        ctx: &Ctx,
        workspace: Option<&str>,
    ) -> ManagerResult<Value> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        let w = self
            .workspaces
            .get(ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {ws}")))?;
        Ok(Value::Array(
            w.service_types.values().map(value::from_json).collect(),
        ))
    }

    /// Text search: every query word must appear in the name, description, docs or id of a
    /// service the caller may see (public ones anywhere, all of its own workspace).
    pub(super) fn search_services(
        &self,
        ctx: &Ctx,
        query: &Value,
        limit: &Value,
        offset: &Value,
    ) -> ManagerResult<Value> {
        let words: Vec<String> = query
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let limit = limit.as_u64().unwrap_or(5) as usize;
        let offset = offset.as_u64().unwrap_or(0) as usize;
        let hits = self
            .registry
            .find(&crate::registry::Pattern::default())
            .into_iter()
            .filter(|r| !r.is_built_in())
            .filter(|r| {
                r.ws == ctx.ws && self_visible(ctx, r) || r.visibility == Visibility::Public
            })
            .filter(|r| {
                let rec = &r.record;
                let text = [
                    get_str(rec, "name"),
                    get_str(rec, "description"),
                    get_str(rec, "docs"),
                    Some(r.id().as_str()),
                ]
                .iter()
                .flatten()
                .map(|s| s.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
                words.iter().all(|w| text.contains(w.as_str()))
            })
            .skip(offset)
            .take(limit)
            .map(|r| r.record)
            .collect();
        Ok(Value::Array(hits))
    }

    fn log_event_row(&self, ctx: &Ctx, event_type: &str, data: serde_json::Value) {
        let mut log = self.event_log.lock().expect("event log lock");
        // Bounded: the oldest tenth goes once the log holds MAX_EVENTS rows.
        if log.len() >= MAX_EVENTS {
            log.drain(..MAX_EVENTS / 10);
        }
        let id = log.last().map_or(1, |e| e.id + 1);
        log.push(EventLog {
            id,
            event_type: event_type.to_owned(),
            workspace: ctx.ws.clone(),
            user_id: ctx.user.id.clone(),
            timestamp: now_secs() as f64,
            data,
        });
    }

    pub(super) async fn log_event(
        &self,
        ctx: &Ctx,
        event_type: &Value,
        data: &Value,
    ) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let kind = event_type
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("event_type must be a string".into()))?;
        if kind.is_empty() || kind.contains(' ') {
            return Err(ManagerError::InvalidArgument(
                "event_type must not be empty or contain spaces".into(),
            ));
        }
        self.record_event(ctx, kind, value::to_json(data)).await?;
        Ok(Value::Nil)
    }

    /// Appends to the event log: the store's when one is attached, else the in-memory one.
    pub(super) async fn record_event(
        &self,
        ctx: &Ctx,
        kind: &str,
        data: serde_json::Value,
    ) -> ManagerResult<()> {
        match self.store.get() {
            Some(store) => store
                .log_event(
                    &ctx.ws,
                    &ctx.user.id,
                    kind,
                    Some(&data),
                    crate::storage::now_ms(),
                )
                .await
                .map(|_| ())
                .map_err(|e| ManagerError::Store(format!("could not log the event: {e}"))),
            None => {
                self.log_event_row(ctx, kind, data);
                Ok(())
            }
        }
    }

    /// Events of the caller's workspace logged by the caller, filtered by type and time
    /// (inclusive bounds, seconds since the epoch).
    async fn events_for(
        &self,
        ctx: &Ctx,
        event_type: &Value,
        start: &Value,
        end: &Value,
    ) -> ManagerResult<Vec<EventLog>> {
        if let Some(store) = self.store.get() {
            let mut filter = crate::storage::EventFilter::new(&ctx.ws, &ctx.user.id);
            filter.event_type = event_type.as_str().map(str::to_owned);
            filter.start_ms = time_arg(start).map(|s| (s * 1000.0) as i64);
            filter.end_ms = time_arg(end).map(|s| (s * 1000.0) as i64);
            let rows = store
                .get_events(&filter)
                .await
                .map_err(|e| ManagerError::Store(format!("reading events: {e}")))?;
            return Ok(rows
                .into_iter()
                .map(|r| EventLog {
                    id: r.id.max(0) as u64,
                    event_type: r.event_type,
                    workspace: r.workspace,
                    user_id: r.user_id,
                    timestamp: r.timestamp_ms as f64 / 1000.0,
                    data: r.data.unwrap_or(serde_json::Value::Null),
                })
                .collect());
        }
        let log = self.event_log.lock().expect("event log lock");
        Ok(log
            .iter()
            .filter(|e| e.workspace == ctx.ws && e.user_id == ctx.user.id)
            .filter(|e| event_type.as_str().is_none_or(|t| e.event_type == t))
            .filter(|e| time_arg(start).is_none_or(|s| e.timestamp >= s))
            .filter(|e| time_arg(end).is_none_or(|t| e.timestamp <= t))
            .cloned()
            .collect())
    }

    pub(super) async fn get_events(
        &self,
        ctx: &Ctx,
        event_type: &Value,
        start: &Value,
        end: &Value,
    ) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let rows = self
            .events_for(ctx, event_type, start, end)
            .await?
            .into_iter()
            .map(|e| {
                map([
                    ("id", e.id.into()),
                    ("event_type", e.event_type.as_str().into()),
                    ("workspace", e.workspace.as_str().into()),
                    ("user_id", e.user_id.as_str().into()),
                    ("timestamp", Value::F64(e.timestamp)),
                    ("data", value::from_json(&e.data)),
                ])
            })
            .collect();
        Ok(Value::Array(rows))
    }

    pub(super) async fn get_event_stats(
        &self,
        ctx: &Ctx,
        event_type: &Value,
        start: &Value,
        end: &Value,
    ) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let mut counts = std::collections::BTreeMap::new();
        for e in self.events_for(ctx, event_type, start, end).await? {
            *counts.entry(e.event_type).or_insert(0u64) += 1;
        }
        Ok(Value::Array(
            counts
                .into_iter()
                .map(|(t, n)| map([("event_type", t.as_str().into()), ("count", n.into())]))
                .collect(),
        ))
    }

    /// `revoke_token(token)`: needs admin on the caller's workspace; persisted when a
    /// store is configured, so the revocation survives a restart.
    pub(super) async fn revoke_token(&self, ctx: &Ctx, token: &Value) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Admin)?;
        let token = token
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("token must be a string".into()))?;
        let (hash, exp) = self
            .tokens
            .revoke(token)
            .map_err(|e| ManagerError::InvalidArgument(format!("Invalid token: {e}")))?;
        if let Some(store) = self.store.get() {
            store.revoke_token(&hash, exp as i64).await.map_err(|e| {
                ManagerError::Store(format!("could not persist the revocation: {e}"))
            })?;
        }
        // Connections opened with the token (or a reconnection token descending from it)
        // end now. The caller's own connection is left to receive this reply; its next
        // token refresh closes it.
        for addr in self.sessions.with_origin(&hash) {
            if addr == ctx.from {
                continue;
            }
            self.router.close(
                &addr,
                None,
                CloseReason::Policy("Authentication error: Token has been revoked".into()),
            );
        }
        Ok(Value::Nil)
    }

    /// Writes the record of workspace `id` to the store: persistent workspaces are saved,
    /// a missing one is deleted, temporary ones are left out. No-op without a store.
    pub(crate) async fn persist_workspace(&self, id: &str) -> ManagerResult<()> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let result = match self.workspaces.get(id) {
            Some(w) if w.persistent => store.put_workspace(&record_of(&w)).await,
            Some(_) => return Ok(()),
            None => store.delete_workspace(id).await.map(|_| ()),
        };
        result.map_err(|e| ManagerError::Store(format!("could not persist workspace {id}: {e}")))
    }
}

fn record_of(w: &WorkspaceInfo) -> crate::storage::WorkspaceRecord {
    crate::storage::WorkspaceRecord {
        id: w.id.clone(),
        name: w.name.clone(),
        description: w.description.clone(),
        persistent: w.persistent,
        owners: w.owners.clone(),
        read_only: w.read_only,
        config: w.config.clone(),
        service_types: w.service_types.clone(),
    }
}

// === impl Manager (store) ===

impl Manager {
    /// Uses `store` for persistent workspaces and token revocations, and loads what it
    /// holds. Call once at start, before serving. Returns `(workspaces, revocations)`
    /// loaded.
    ///
    /// Errors: the store could not be read.
    pub async fn attach_store(
        &self,
        store: std::sync::Arc<dyn crate::storage::Store>,
    ) -> Result<(usize, usize), crate::storage::StoreError> {
        let workspaces = store.list_workspaces().await?;
        let revocations = store.list_revocations(crate::storage::now_unix()).await?;
        let counts = (workspaces.len(), revocations.len());
        for r in workspaces {
            let mut w = WorkspaceInfo::new(&r.id, &r.description, r.persistent, r.owners);
            w.name = r.name;
            w.read_only = r.read_only;
            w.config = r.config;
            w.service_types = r.service_types;
            self.workspaces.put(w);
        }
        for (hash, exp) in revocations {
            self.tokens.load_revoked(hash, exp.max(0) as u64);
        }
        let _ = self.store.set(store);
        Ok(counts)
    }
}

fn self_visible(ctx: &Ctx, r: &crate::registry::ServiceRecord) -> bool {
    ctx.user.can(&r.ws, Permission::Read)
}
