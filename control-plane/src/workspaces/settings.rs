//! Workspace settings (workspace-api.md §2.5, §2.6, §5.3–5.5): environment variables,
//! bookmarks, service types, and the reads of a record (`get_workspace_info`,
//! `check_status`). Each change is persisted and announced as `workspace_changed`.

use super::{to_value, WorkspaceInfo, Workspaces};
use crate::error::{ManagerError, ManagerResult};
use crate::manager::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use serde_json::json;

/// The bookmark of a workspace, as kept in a personal workspace's `config.bookmarks`:
/// `{bookmark_type: "workspace", id, name, description}`.
pub fn workspace_bookmark(w: &WorkspaceInfo) -> serde_json::Value {
    json!({"bookmark_type": "workspace", "id": w.id, "name": w.name, "description": w.description})
}

fn not_found(ws: &str) -> ManagerError {
    ManagerError::NotFound(format!("Workspace not found: {ws}"))
}

// === impl Workspaces (settings) ===

impl Workspaces {
    /// `set_env(key, value)` in the caller's workspace (`null` removes the key): persisted,
    /// announced as `workspace_changed`, and logged as an `env_set` / `env_removed` event
    /// row `{key}`.
    ///
    /// Errors: [`ManagerError::Permission`] without write permission,
    /// [`ManagerError::InvalidArgument`] when `key` is not a string,
    /// [`ManagerError::NotFound`], [`ManagerError::Store`].
    pub async fn set_env(
        &self,
        ctx: &Ctx,
        key: Option<&str>,
        val: serde_json::Value,
    ) -> ManagerResult<()> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let key =
            key.ok_or_else(|| ManagerError::InvalidArgument("key must be a string".into()))?;
        let removed = val.is_null();
        self.table
            .update(&ctx.ws, |w| {
                let env = w.config.entry("environs").or_insert_with(|| json!({}));
                if let Some(env) = env.as_object_mut() {
                    if removed {
                        env.remove(key);
                    } else {
                        env.insert(key.to_owned(), val);
                    }
                }
            })
            .ok_or_else(|| not_found(&ctx.ws))?;
        self.changed(&ctx.ws).await?;
        let kind = if removed { "env_removed" } else { "env_set" };
        self.event_logs
            .record(&ctx.ws, &ctx.user.id, kind, json!({ "key": key }))
            .await
    }

    /// `get_env(key)`: one variable of the caller's workspace, or the whole map when `key`
    /// is `None`. Errors: [`ManagerError::Permission`] without write permission (as the
    /// reference: variables may hold secrets), [`ManagerError::NotFound`].
    pub fn get_env(&self, ctx: &Ctx, key: Option<&str>) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let info = self.table.get(&ctx.ws).ok_or_else(|| not_found(&ctx.ws))?;
        let env = info.config.get("environs").cloned().unwrap_or(json!({}));
        match key {
            None => Ok(value::from_json(&env)),
            Some(k) => env.get(k).map(value::from_json).ok_or_else(|| {
                ManagerError::NotFound(format!("Environment variable not found: {k}"))
            }),
        }
    }

    /// Sets (`entry`) or removes (`None`) the bookmark `id` in the caller's personal
    /// workspace: persisted and announced there as `workspace_changed`.
    ///
    /// Errors: [`ManagerError::NotFound`] when the personal workspace is not loaded,
    /// [`ManagerError::Store`].
    pub async fn bookmark(
        &self,
        ctx: &Ctx,
        id: &str,
        entry: Option<serde_json::Value>,
    ) -> ManagerResult<()> {
        let personal = ctx.user.personal_workspace();
        self.set_bookmark(&personal, id, entry)
            .ok_or_else(|| not_found(&personal))?;
        self.changed(&personal).await
    }

    /// Replaces (with `entry`) or removes (`None`) the bookmark `id` in the
    /// `config.bookmarks` of workspace `ws`, in the table only: the caller persists.
    /// `None` if `ws` is not loaded.
    pub(super) fn set_bookmark(
        &self,
        ws: &str,
        id: &str,
        entry: Option<serde_json::Value>,
    ) -> Option<()> {
        self.table.update(ws, |w| {
            let marks = w.config.entry("bookmarks").or_insert_with(|| json!([]));
            if let Some(list) = marks.as_array_mut() {
                list.retain(|b| b.get("id").and_then(|i| i.as_str()) != Some(id));
                if let Some(e) = entry {
                    list.push(e);
                }
            }
        })
    }

    /// `register_service_type(type_info)` in the caller's workspace (§2.6): persisted and
    /// announced as `workspace_changed`; returns the type with its id as given (`id` or
    /// `ws/id`, as the reference returns it).
    ///
    /// Errors: [`ManagerError::Permission`] (no write permission, another workspace),
    /// [`ManagerError::InvalidArgument`] (no id or definition), [`ManagerError::NotFound`]
    /// (no workspace; `Service type already exists: …`), [`ManagerError::Store`].
    pub async fn register_service_type(
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
            .table
            .update(&ctx.ws, |w| {
                if w.service_types.contains_key(id) {
                    return false;
                }
                w.service_types.insert(id.to_owned(), info.clone());
                true
            })
            .ok_or_else(|| not_found(&ctx.ws))?;
        if !stored {
            return Err(ManagerError::NotFound(format!(
                "Service type already exists: {id}"
            )));
        }
        self.changed(&ctx.ws).await?;
        info["id"] = json!(raw);
        Ok(value::from_json(&info))
    }

    /// `get_service_type(type_id)` (`id` in the caller's workspace, or `ws/id`); public
    /// types (`config.visibility: public`) need no permission.
    ///
    /// Errors: [`ManagerError::NotFound`], [`ManagerError::Permission`].
    pub fn get_service_type(&self, ctx: &Ctx, type_id: &str) -> ManagerResult<Value> {
        let (ws, id) = type_id
            .split_once('/')
            .unwrap_or((ctx.ws.as_str(), type_id));
        let info = self
            .table
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

    /// `list_service_types(workspace)` (the caller's by default).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::NotFound`].
    pub fn list_service_types(&self, ctx: &Ctx, workspace: Option<&str>) -> ManagerResult<Value> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        let w = self.table.get(ws).ok_or_else(|| not_found(ws))?;
        Ok(Value::Array(
            w.service_types.values().map(value::from_json).collect(),
        ))
    }

    /// `get_workspace_info(workspace)`: the record. Needs read permission on the target
    /// workspace (safer than the reference, which only checks the caller's own:
    /// workspace-api.md §5.3 QUIRK).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::NotFound`].
    pub fn info(&self, ctx: &Ctx, workspace: Option<&str>) -> ManagerResult<Value> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        let info = self.table.get(ws).ok_or_else(|| {
            ManagerError::NotFound(format!(
                "Workspace {ws} does not exist or is not accessible"
            ))
        })?;
        Ok(to_value(&info))
    }

    /// `check_status()`: `{status: "ready", errors: null, user_permission}` for a loaded
    /// caller's workspace, else `{status: "not_found", error, user_permission}`.
    ///
    /// Errors: [`ManagerError::Permission`] without read permission.
    pub fn check_status(&self, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let permission: Value = ctx
            .user
            .permission(&ctx.ws)
            .map_or(Value::Nil, |p| p.code().into());
        Ok(match self.table.get(&ctx.ws) {
            Some(_) => map([
                ("status", "ready".into()),
                ("errors", Value::Nil),
                ("user_permission", permission),
            ]),
            None => map([
                ("status", "not_found".into()),
                ("error", "Workspace not found".into()),
                ("user_permission", permission),
            ]),
        })
    }
}
