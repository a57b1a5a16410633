//! `set_env`, `get_env`, `bookmark`, `unbookmark`, `register_service_type`,
//! `get_service_type` and `list_service_types` (workspace-api.md §2.6, §5.3–5.5), applied
//! to [`crate::workspaces::Workspaces`], which persists each change and announces it as
//! `workspace_changed`.

use super::{args, opt_string, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::workspaces::workspace_bookmark;
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use serde_json::json;

/// `set_env(key, value)`; a nil value removes the key.
#[derive(Debug)]
pub(crate) struct SetEnv {
    key: Option<String>,
    value: serde_json::Value,
}

// === impl SetEnv ===

impl SetEnv {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [key, val] = args(a);
        SetEnv {
            key: opt_string(&key),
            value: value::to_json(&val),
        }
    }

    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces
            .set_env(ctx, self.key.as_deref(), self.value)
            .await?;
        Ok(Value::Nil)
    }
}

/// `get_env(key)`; no (string) key: every variable.
#[derive(Debug)]
pub(crate) struct GetEnv {
    key: Option<String>,
}

// === impl GetEnv ===

impl GetEnv {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [key] = args(a);
        GetEnv {
            key: opt_string(&key),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.get_env(ctx, self.key.as_deref())
    }
}

/// What a bookmark points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BookmarkKind {
    Workspace,
    Service,
}

/// `bookmark(item)` (`add`) or `unbookmark(item)`, in the caller's personal workspace.
#[derive(Debug)]
pub(crate) struct Bookmark {
    id: String,
    /// `None` for `unbookmark`.
    add: Option<BookmarkKind>,
}

// === impl Bookmark ===

impl Bookmark {
    /// Errors: [`ManagerError::InvalidArgument`] without `item.id`, or (to add) with a
    /// `bookmark_type` other than `workspace` and `service`.
    pub(crate) fn parse(a: Vec<Value>, add: bool) -> ManagerResult<Self> {
        let [item] = args(a);
        let id = get_str(&item, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("bookmark id is required".into()))?
            .to_owned();
        let add = if add {
            Some(match get_str(&item, "bookmark_type").unwrap_or_default() {
                "workspace" => BookmarkKind::Workspace,
                "service" => BookmarkKind::Service,
                other => {
                    return Err(ManagerError::InvalidArgument(format!(
                        "Invalid bookmark type: {other}"
                    )))
                }
            })
        } else {
            None
        };
        Ok(Bookmark { id, add })
    }

    /// Errors: [`ManagerError::NotFound`] (the workspace to bookmark, or the caller's
    /// personal one), service resolution errors, [`ManagerError::Store`].
    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        let entry = match self.add {
            None => None,
            Some(BookmarkKind::Workspace) => {
                let w = m.workspaces.get(&self.id).ok_or_else(|| {
                    ManagerError::NotFound(format!("Workspace not found: {}", self.id))
                })?;
                Some(workspace_bookmark(&w))
            }
            Some(BookmarkKind::Service) => {
                let info = m.get_service_info(ctx, &Value::from(self.id.as_str()), &Value::Nil)?;
                Some(json!({
                    "bookmark_type": "service", "id": self.id,
                    "name": get_str(&info, "name"), "description": get_str(&info, "description"),
                    "config": value::to_json(get(&info, "config").unwrap_or(&Value::Nil)),
                }))
            }
        };
        m.workspaces.bookmark(ctx, &self.id, entry).await?;
        Ok(Value::Nil)
    }
}

/// `register_service_type(type_info)`.
#[derive(Debug)]
pub(crate) struct RegisterServiceType {
    type_info: Value,
}

// === impl RegisterServiceType ===

impl RegisterServiceType {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [type_info] = args(a);
        RegisterServiceType { type_info }
    }

    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces
            .register_service_type(ctx, &self.type_info)
            .await
    }
}

/// `get_service_type(type_id)`.
#[derive(Debug)]
pub(crate) struct GetServiceType {
    type_id: String,
}

// === impl GetServiceType ===

impl GetServiceType {
    /// Errors: [`ManagerError::InvalidArgument`] when `type_id` is not a string.
    pub(crate) fn parse(a: Vec<Value>) -> ManagerResult<Self> {
        let [type_id] = args(a);
        let type_id = type_id
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("type_id must be a string".into()))?;
        Ok(GetServiceType {
            type_id: type_id.to_owned(),
        })
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.get_service_type(ctx, &self.type_id)
    }
}

/// `list_service_types(workspace)`.
#[derive(Debug)]
pub(crate) struct ListServiceTypes {
    workspace: Option<String>,
}

// === impl ListServiceTypes ===

impl ListServiceTypes {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [workspace] = args(a);
        ListServiceTypes {
            workspace: opt_string(&workspace),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces
            .list_service_types(ctx, self.workspace.as_deref())
    }
}
