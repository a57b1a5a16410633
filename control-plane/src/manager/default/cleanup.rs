//! `cleanup(workspace, timeout)` (workspace-api.md §5.2): pings the clients of a workspace
//! through the manager peer and removes the unresponsive ones from the router and the
//! [`crate::registry::Registry`], or unloads an empty temporary workspace.

use super::{args, num, opt_string, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use rhizo_interface::CloseReason;
use rhizo_protocol::value::map;
use rmpv::Value;
use std::collections::BTreeSet;

/// How many clients `cleanup` pings at once.
const PING_BATCH: usize = 50;

/// `cleanup(workspace, timeout)`.
#[derive(Debug)]
pub(crate) struct Cleanup {
    /// The caller's workspace by default.
    workspace: Option<String>,
    /// Seconds each ping may take (positive; default 5).
    timeout: Option<f64>,
}

// === impl Cleanup ===

impl Cleanup {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [workspace, timeout] = args(a);
        Cleanup {
            workspace: opt_string(&workspace),
            timeout: num(Some(&timeout)),
        }
    }

    /// Needs admin on (or ownership of) the caller's workspace and the target. An empty
    /// temporary workspace is removed (`{removed_workspace, removed_clients: []}`);
    /// otherwise every client is pinged and those that do not answer are disconnected and
    /// their services removed (`{removed_clients: ["ws/cid", …]}`, or `{}`).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::NotFound`].
    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.workspaces.require_admin_or_owner(ctx, &ctx.ws)?;
        let ws = self.workspace.unwrap_or_else(|| ctx.ws.clone());
        m.workspaces.require_admin_or_owner(ctx, &ws)?;
        let info = m
            .workspaces
            .get(&ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {ws}")))?;
        let mut clients: BTreeSet<String> =
            m.registry.clients(&ws).into_iter().map(|r| r.cid).collect();
        clients.extend(m.router.presence(&ws).into_iter().map(|c| c.client_id));
        if clients.is_empty() {
            if !info.persistent && m.workspaces.unload_if_empty(&ws) {
                return Ok(map([
                    ("removed_workspace", ws.as_str().into()),
                    ("removed_clients", Value::Array(vec![])),
                ]));
            }
            return Ok(Value::Map(vec![]));
        }
        let clients: Vec<String> = clients.into_iter().collect();
        let mut removed = Vec::new();
        for batch in clients.chunks(PING_BATCH) {
            let pings = batch.iter().map(|cid| {
                let target = Value::from(format!("{ws}/{cid}"));
                async move { (cid, m.ping(ctx, &target, self.timeout).await) }
            });
            for (cid, answer) in futures_util::future::join_all(pings).await {
                if answer.as_str() != Some("pong") {
                    removed.push(cid.clone());
                }
            }
        }
        for cid in &removed {
            let addr = format!("{ws}/{cid}");
            tracing::info!(client = %addr, "cleanup: removing an unresponsive client");
            m.router.close(
                &addr,
                None,
                CloseReason::Policy("Removed by cleanup: the client did not answer a ping".into()),
            );
            m.registry.remove_unresponsive(&ws, cid);
        }
        if removed.is_empty() {
            return Ok(Value::Map(vec![]));
        }
        let list = removed.iter().map(|c| format!("{ws}/{c}").into()).collect();
        Ok(map([("removed_clients", Value::Array(list))]))
    }
}
