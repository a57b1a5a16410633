//! Workspace lifecycle (workspace-api.md §4, §5.3): `create_workspace`,
//! `delete_workspace`, `list_workspaces`, the personal workspace made on connect, and
//! unloading a temporary workspace once its last client has left.

use super::settings::workspace_bookmark;
use super::{to_value, WorkspaceInfo, Workspaces};
use crate::error::{ManagerError, ManagerResult};
use crate::events;
use crate::manager::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The `config` of `create_workspace` (workspace-api.md §5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceSpec {
    /// `id`, else `name`; required.
    pub id: Option<String>,
    /// Display name (defaults to the id).
    pub name: Option<String>,
    /// Free text.
    pub description: String,
    /// Owners besides the caller (who is always one).
    pub owners: Vec<String>,
    /// Whether it survives its last client.
    pub persistent: bool,
    /// Whether clients may only read.
    pub read_only: bool,
}

// === impl WorkspaceSpec ===

impl WorkspaceSpec {
    /// Reads the wire `config` map; missing or mistyped fields take their defaults.
    pub fn parse(config: &Value) -> Self {
        let flag = |k: &str| get(config, k).and_then(Value::as_bool).unwrap_or(false);
        WorkspaceSpec {
            id: get_str(config, "id")
                .or_else(|| get_str(config, "name"))
                .map(str::to_owned),
            name: get_str(config, "name").map(str::to_owned),
            description: get_str(config, "description").unwrap_or("").to_owned(),
            owners: value::get_strs(config, "owners"),
            persistent: flag("persistent"),
            read_only: flag("read_only"),
        }
    }
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

// === impl Workspaces (lifecycle) ===

impl Workspaces {
    /// `create_workspace(config, overwrite)` for the caller: stores the record (the caller
    /// among its owners) and bookmarks it in the caller's personal workspace, persists
    /// both, then tells the personal workspace `workspace_loaded` and the new one
    /// `workspace_ready` and `workspace_status_changed ready`. Returns the record.
    ///
    /// Errors: [`ManagerError::Permission`] (anonymous caller; overwriting without being
    /// root, owner or admin), [`ManagerError::InvalidArgument`] (no or bad id),
    /// [`ManagerError::Internal`] (`Workspace already exists: …` without `overwrite`),
    /// [`ManagerError::Quota`], [`ManagerError::Store`].
    pub async fn create(
        &self,
        ctx: &Ctx,
        spec: WorkspaceSpec,
        overwrite: bool,
    ) -> ManagerResult<Value> {
        if ctx.user.is_anonymous {
            return Err(ManagerError::Permission(
                "Only registered user can create workspace.".into(),
            ));
        }
        let id = spec
            .id
            .as_deref()
            .ok_or_else(|| ManagerError::InvalidArgument("Workspace id is required".into()))?;
        let root = ctx.user.id == "root";
        valid_workspace_id(id, root)?;
        if let Some(existing) = self.table.get(id) {
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
            let limit = self.workspaces_per_user;
            let owned = self.table.count_owned_by(&ctx.user.id);
            if crate::config::reached(owned, limit) {
                return Err(ManagerError::Quota(format!(
                    "Workspace quota exceeded: user {} owns {owned} workspaces (limit {limit})",
                    ctx.user.id
                )));
            }
        }
        let mut owners = spec.owners.clone();
        if !owners.contains(&ctx.user.id) {
            owners.push(ctx.user.id.clone());
        }
        let mut info = WorkspaceInfo::new(id, &spec.description, spec.persistent, owners);
        info.name = spec.name.clone().unwrap_or_else(|| id.to_owned());
        info.read_only = spec.read_only;
        let personal = ctx.user.personal_workspace();
        let mut marked = false;
        if id == personal {
            info.config
                .insert("bookmarks".into(), json!([workspace_bookmark(&info)]));
        } else {
            marked = self
                .set_bookmark(&personal, id, Some(workspace_bookmark(&info)))
                .is_some();
        }
        self.table.put(info.clone());
        self.persist(id).await?;
        if marked {
            self.persist(&personal).await?;
        }
        let v = to_value(&info);
        events::emit(&*self.router, &personal, "workspace_loaded", v.clone());
        // Nothing to prepare here (no S3, no apps yet): the workspace is ready at once.
        events::emit(&*self.router, id, "workspace_ready", v.clone());
        self.status_changed(id, "ready");
        Ok(v)
    }

    /// `delete_workspace(workspace)`: removes the record and the caller's bookmark of it,
    /// persists both, then tells the caller's personal workspace `workspace_deleted`.
    ///
    /// Errors: [`ManagerError::Permission`] (a built-in workspace; neither admin nor
    /// owner), [`ManagerError::NotFound`], [`ManagerError::Store`].
    pub async fn delete(&self, ctx: &Ctx, ws: &str) -> ManagerResult<()> {
        if ["public", "ws-user-root", "ws-anonymous"].contains(&ws) {
            return Err(ManagerError::Permission(format!(
                "Workspace {ws} cannot be deleted"
            )));
        }
        self.require_admin_or_owner(ctx, ws)?;
        let info = self
            .table
            .remove(ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {ws}")))?;
        let personal = ctx.user.personal_workspace();
        let marked = self.set_bookmark(&personal, ws, None).is_some();
        self.persist(ws).await?;
        if marked {
            self.persist(&personal).await?;
        }
        events::emit(
            &*self.router,
            &personal,
            "workspace_deleted",
            to_value(&info),
        );
        Ok(())
    }

    /// The personal workspace `ws` of `owner`, made (and, unless the owner is anonymous,
    /// persisted) if it is not loaded: what a client connecting to it finds (§4.1, §4.3).
    /// A store failure is logged, not fatal: the connection proceeds.
    pub async fn ensure_personal(&self, ws: &str, owner: &str) {
        if self.table.get(ws).is_some() {
            return;
        }
        // A registered user's workspace persists (bookmarks, environment); an anonymous
        // one goes with its last client (workspace-api.md §4.1).
        let persistent = !owner.starts_with("anonymouz-");
        let info = WorkspaceInfo::new(
            ws,
            &format!("Workspace for user {owner}"),
            persistent,
            vec![owner.to_owned()],
        );
        self.table.get_or_create(info);
        // A temporary one is not stored, only announced to the other nodes.
        if let Err(e) = self.persist(ws).await {
            tracing::warn!(workspace = %ws, error = %e, "personal workspace not stored");
        }
    }

    /// `list_workspaces(match, offset, limit)`: the workspaces the caller may read or owns,
    /// by id, as `{id, name, description, read_only, persistent, owners}`, those whose
    /// fields equal every entry of `matching` (a JSON object; anything else matches all).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::InvalidArgument`] for a limit
    /// outside 1..=256.
    pub fn list(
        &self,
        ctx: &Ctx,
        matching: &serde_json::Value,
        offset: usize,
        limit: u64,
    ) -> ManagerResult<Vec<Value>> {
        ctx.require(&ctx.ws, Permission::Read)?;
        if !(1..=256).contains(&limit) {
            return Err(ManagerError::InvalidArgument(
                "limit must be between 1 and 256".into(),
            ));
        }
        let mut all = self.table.all();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all
            .into_iter()
            .filter(|w| ctx.user.can(&w.id, Permission::Read) || w.owners.contains(&ctx.user.id))
            .map(|w| json!({"id": w.id, "name": w.name, "description": w.description, "read_only": w.read_only, "persistent": w.persistent, "owners": w.owners}))
            .filter(|w| match matching {
                serde_json::Value::Object(m) => m.iter().all(|(k, v)| w.get(k) == Some(v)),
                _ => true,
            })
            .skip(offset)
            .take(limit as usize)
            .map(|w| value::from_json(&w))
            .collect())
    }

    /// Removes `ws` if it is temporary, no client is connected or being admitted to it on
    /// this node, and no other node is its origin (see [`replica`]), telling it
    /// `workspace_status_changed closed` and `workspace_unloaded` (workspace-api.md §4.5)
    /// and announcing it to the other nodes. Returns whether it was removed. Temporary
    /// workspaces are never stored, so there is nothing to persist.
    pub fn unload_if_empty(&self, ws: &str) -> bool {
        let in_use = || self.used_here(ws) || self.held_elsewhere(ws);
        match self.table.unload_if_temporary(ws, in_use) {
            Some(info) => {
                tracing::debug!(workspace = ws, "unloaded temporary workspace");
                self.announce_unloaded(ws);
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
    pub fn schedule_unload(self: &Arc<Self>, ws: &str) {
        let grace = self.unload_grace;
        if grace.is_zero() {
            self.unload_if_empty(ws);
            return;
        }
        if self.table.get(ws).is_none_or(|w| w.persistent) {
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
}
