//! `create_workspace`, `delete_workspace`, `list_workspaces`, `get_workspace_info` and
//! `check_status` (workspace-api.md §5.3), applied to [`crate::workspaces::Workspaces`],
//! which persists and announces its changes.

use super::{args, opt_string, Ctx, Manager};
use crate::error::ManagerResult;
use crate::workspaces::WorkspaceSpec;
use rhizo_protocol::value;
use rmpv::Value;

/// `create_workspace(config, overwrite)`.
#[derive(Debug)]
pub(crate) struct CreateWorkspace {
    spec: WorkspaceSpec,
    overwrite: bool,
}

// === impl CreateWorkspace ===

impl CreateWorkspace {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [config, overwrite] = args(a);
        CreateWorkspace {
            spec: WorkspaceSpec::parse(&config),
            overwrite: overwrite.as_bool().unwrap_or(false),
        }
    }

    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.create(ctx, self.spec, self.overwrite).await
    }
}

/// `delete_workspace(workspace)`.
#[derive(Debug)]
pub(crate) struct DeleteWorkspace {
    workspace: String,
}

// === impl DeleteWorkspace ===

impl DeleteWorkspace {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [workspace] = args(a);
        DeleteWorkspace {
            workspace: workspace.as_str().unwrap_or_default().to_owned(),
        }
    }

    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.delete(ctx, &self.workspace).await?;
        Ok(Value::Nil)
    }
}

/// `list_workspaces(match, offset, limit)`.
#[derive(Debug)]
pub(crate) struct ListWorkspaces {
    matching: serde_json::Value,
    offset: usize,
    limit: u64,
}

// === impl ListWorkspaces ===

impl ListWorkspaces {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [matching, offset, limit] = args(a);
        ListWorkspaces {
            matching: value::to_json(&matching),
            offset: offset.as_u64().unwrap_or(0) as usize,
            limit: limit.as_u64().unwrap_or(256),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces
            .list(ctx, &self.matching, self.offset, self.limit)
            .map(Value::Array)
    }
}

/// `get_workspace_info(workspace)`.
#[derive(Debug)]
pub(crate) struct GetWorkspaceInfo {
    workspace: Option<String>,
}

// === impl GetWorkspaceInfo ===

impl GetWorkspaceInfo {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [workspace] = args(a);
        GetWorkspaceInfo {
            workspace: opt_string(&workspace),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.info(ctx, self.workspace.as_deref())
    }
}

/// `check_status()`.
#[derive(Debug)]
pub(crate) struct CheckStatus;

// === impl CheckStatus ===

impl CheckStatus {
    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.check_status(ctx)
    }
}
