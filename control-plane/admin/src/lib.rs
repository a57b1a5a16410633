//! rhizo's admin utilities (workspace-api.md §9.3): the control-plane service
//! `ws-user-root/admin-utils` ([`AdminUtils`]), protected, for the root user only — the
//! root token, or a token of a user with admin rights on `ws-user-root`.
//!
//! | function | answers |
//! |---|---|
//! | `list_servers()` | the server ids of the cluster's live nodes |
//! | `kickout_client(workspace, client_id, code=1000, reason)` | `None`; the client is closed with `code` wherever it is connected |
//! | `list_workspaces()` | every loaded workspace's info |
//! | `unload_workspace(workspace, wait=False, timeout=10)` | `None`; its clients are closed (1001 `Workspace unloaded: <ws>`) |
//! | `get_metrics()` | `{rpc: {…router counters…}, eventbus: {…cluster bus counters…}}` |
//! | `block_user(user_id, duration=3600, reason="")` | `"Blocked user <id>, kicked <n> connections"` |
//! | `unblock_user(user_id)` / `block_ip(ip, duration=3600, reason="")` / `unblock_ip(ip)` | a sentence saying what was done |
//! | `list_blocked()` | `{users: [{id, reason, ttl_seconds}], ips: [...]}` |
//! | `get_resource_usage()` | `{connections_per_user, connections_per_workspace, services_per_client, active_rate_limiters, limits}` |
//!
//! Blocks are kept in the database and enforced at every boundary (see
//! `rhizo_control_plane::blocklist`): a blocked user's tokens are refused on connect and
//! on HTTP (403), a blocked address gets 403 before any route runs. A duration of 0 means
//! 30 days, as in the reference. Figures are this node's unless said otherwise.
//!
//! ```python
//! admin = await root_api.get_service("ws-user-root/admin-utils")
//! await admin.block_user("mallory", duration=600, reason="spam")
//! print(await admin.list_blocked())
//! ```

use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec, ServiceHost};
use rhizo_control_plane::storage::{now_unix, BlockKind};
use rhizo_control_plane::{Manager, ManagerError, ManagerResult};
use rhizo_protocol::user::Permission;
use rhizo_protocol::value;
use rmpv::Value;
use serde_json::{json, Value as Json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The workspace the service lives in.
pub const WORKSPACE: &str = "ws-user-root";

/// `ws-user-root/admin-utils`.
#[derive(Default)]
pub struct AdminUtils {
    host: OnceLock<Arc<dyn ServiceHost>>,
}

impl std::fmt::Debug for AdminUtils {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUtils").finish_non_exhaustive()
    }
}

const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "list_servers",
        params: &[],
        doc: "List the server ids of the live nodes of the cluster.",
    },
    FunctionSpec {
        name: "kickout_client",
        params: &[
            ("workspace", false),
            ("client_id", false),
            ("code", true),
            ("reason", true),
        ],
        doc: "Force disconnect a client: its connection is closed with `code` (default \
              1000) and `reason` (default 'Admin requested disconnect').",
    },
    FunctionSpec {
        name: "list_workspaces",
        params: &[],
        doc: "List all loaded workspaces.",
    },
    FunctionSpec {
        name: "unload_workspace",
        params: &[("workspace", false), ("wait", true), ("timeout", true)],
        doc: "Unload a workspace: close its clients; with wait=True wait up to `timeout` \
              seconds (default 10) for them to be gone.",
    },
    FunctionSpec {
        name: "get_metrics",
        params: &[],
        doc: "Get server metrics: the router's counters (rpc) and the cluster bus's \
              (eventbus).",
    },
    FunctionSpec {
        name: "block_user",
        params: &[("user_id", false), ("duration", true), ("reason", true)],
        doc: "Block a user for `duration` seconds (default 3600; 0 = 30 days) and close \
              all its connections; its tokens are refused everywhere until then.",
    },
    FunctionSpec {
        name: "unblock_user",
        params: &[("user_id", false)],
        doc: "Unblock a previously blocked user.",
    },
    FunctionSpec {
        name: "block_ip",
        params: &[("ip", false), ("duration", true), ("reason", true)],
        doc: "Block an IP address for `duration` seconds (default 3600; 0 = 30 days): its \
              connections and HTTP requests are refused with 403.",
    },
    FunctionSpec {
        name: "unblock_ip",
        params: &[("ip", false)],
        doc: "Unblock a previously blocked IP address.",
    },
    FunctionSpec {
        name: "list_blocked",
        params: &[],
        doc: "List the blocked users and IP addresses: {users: [{id, reason, \
              ttl_seconds}], ips: [...]}.",
    },
    FunctionSpec {
        name: "get_resource_usage",
        params: &[],
        doc: "Get a snapshot of this node's resource usage counters and limits.",
    },
];

/// Default `reason` of `kickout_client`, as in the reference.
const KICK_REASON: &str = "Admin requested disconnect";

/// Default block duration, seconds.
const BLOCK_SECS: i64 = 3600;

// === impl AdminUtils ===

impl AdminUtils {
    /// The service (it reaches the manager once attached).
    pub fn new() -> Arc<AdminUtils> {
        Arc::new(AdminUtils::default())
    }

    fn manager(&self) -> ManagerResult<Arc<Manager>> {
        self.host
            .get()
            .and_then(|h| h.manager())
            .ok_or_else(|| ManagerError::Internal("the server is shutting down".into()))
    }

    async fn run(&self, ctx: &Ctx, function: &str, args: Vec<Value>) -> ManagerResult<Value> {
        if !(ctx.user.id == "root" || ctx.user.can(WORKSPACE, Permission::Admin)) {
            return Err(ManagerError::Permission(format!(
                "Permission denied: the admin utilities are for the root user, not {}",
                ctx.user.id
            )));
        }
        let m = self.manager()?;
        let a = Args(&args);
        let out = match function {
            "list_servers" => {
                let mut ids = vec![m.config.server_id.clone()];
                ids.extend(m.router.nodes());
                ids.sort();
                ids.dedup();
                json!(ids)
            }
            "kickout_client" => {
                let code = a.int(2, "code")?.unwrap_or(1000);
                let code = u16::try_from(code).map_err(|_| {
                    ManagerError::InvalidArgument(format!("close code {code} is out of range"))
                })?;
                let reason = a.text(3, "reason")?.unwrap_or(KICK_REASON);
                m.kick_client(
                    a.required(0, "workspace")?,
                    a.required(1, "client_id")?,
                    code,
                    reason,
                )?;
                Json::Null
            }
            "list_workspaces" => {
                let mut all = m.workspaces.all();
                all.sort_by(|x, y| x.id.cmp(&y.id));
                serde_json::to_value(all).unwrap_or_default()
            }
            "unload_workspace" => {
                let ws = a.required(0, "workspace")?;
                let wait = a.flag(1, "wait")?.unwrap_or(false);
                let timeout = a.float(2, "timeout")?.unwrap_or(10.0).clamp(0.0, 300.0);
                unload(&m, ws, wait.then(|| Duration::from_secs_f64(timeout))).await?;
                Json::Null
            }
            "get_metrics" => metrics(&m),
            "block_user" | "block_ip" => {
                let kind = if function == "block_user" {
                    BlockKind::User
                } else {
                    BlockKind::Ip
                };
                let key = a.required(
                    0,
                    if kind == BlockKind::User {
                        "user_id"
                    } else {
                        "ip"
                    },
                )?;
                let secs = a.int(1, "duration")?.unwrap_or(BLOCK_SECS);
                let reason = a.text(2, "reason")?.unwrap_or("");
                let (block, kicked) = m.block(kind, key, reason, secs).await?;
                tracing::info!(kind = kind.as_str(), key = %block.key, by = %ctx.user.id, "blocked");
                match kind {
                    BlockKind::User => {
                        json!(format!(
                            "Blocked user {}, kicked {kicked} connections",
                            block.key
                        ))
                    }
                    BlockKind::Ip => json!(format!("Blocked IP {}", block.key)),
                }
            }
            "unblock_user" | "unblock_ip" => {
                let (kind, what, name) = if function == "unblock_user" {
                    (BlockKind::User, "user", "user_id")
                } else {
                    (BlockKind::Ip, "IP", "ip")
                };
                let key = a.required(0, name)?;
                let lifted = m.unblock(kind, key).await?;
                if lifted {
                    json!(format!("Unblocked {what} {}", key.trim()))
                } else {
                    json!(format!("{what} {} was not blocked", key.trim()))
                }
            }
            "list_blocked" => {
                let now = now_unix();
                let (mut users, mut ips) = (Vec::new(), Vec::new());
                for b in m.tokens.blocklist().list() {
                    let row = json!({"id": b.key, "reason": b.reason, "ttl_seconds": (b.expires_at - now).max(0)});
                    match b.kind {
                        BlockKind::User => users.push(row),
                        BlockKind::Ip => ips.push(row),
                    }
                }
                json!({"users": users, "ips": ips})
            }
            "get_resource_usage" => resource_usage(&m),
            other => return Err(ManagerError::MethodNotFound(format!("admin-utils.{other}"))),
        };
        Ok(value::from_json(&out))
    }
}

/// Closes every client of `ws` on every node; with `wait`, waits up to that long for
/// the cluster to count none.
///
/// Errors: [`ManagerError::NotFound`] for a workspace that is not loaded.
async fn unload(m: &Manager, ws: &str, wait: Option<Duration>) -> ManagerResult<()> {
    if m.workspaces.get(ws).is_none() {
        return Err(ManagerError::NotFound(format!("Workspace {ws} not found")));
    }
    let reason = format!("Workspace unloaded: {ws}");
    let mut cids: Vec<String> = m
        .router
        .presence(ws)
        .into_iter()
        .map(|p| p.client_id)
        .collect();
    cids.extend(m.registry.clients_all(ws).into_iter().map(|r| r.cid));
    cids.sort();
    cids.dedup();
    for cid in cids {
        // A client that left meanwhile is fine.
        let _ = m.kick_client(ws, &cid, 1001, &reason);
    }
    if let Some(wait) = wait {
        let deadline = tokio::time::Instant::now() + wait;
        while m.router.cluster_client_count(ws) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn metrics(m: &Manager) -> Json {
    let c = m.router.counters();
    json!({
        "rpc": {
            "connections": c.connections,
            "frames_in": c.frames_in,
            "bytes_in": c.bytes_in,
            "frames_out": c.frames_out,
            "bytes_out": c.bytes_out,
            "rejected": c.rejected,
            "dropped": c.dropped,
            "held": c.held,
            "slow_consumer_closes": c.slow_consumer_closes,
            "queued_bytes_total": c.queued_bytes_total,
            "queued_bytes_max": c.queued_bytes_max,
        },
        "eventbus": {
            "clustered": !m.router.node_id().is_empty(),
            "connected": c.bus_connected == 1,
            "sent": c.bus_sent,
            "received": c.bus_received,
            "inbox_dropped": c.bus_inbox_dropped,
            "outbox_dropped": c.bus_outbox_dropped,
            "undelivered": c.bus_undelivered,
            "inbox_backlog": c.bus_inbox_backlog,
        },
    })
}

fn resource_usage(m: &Manager) -> Json {
    let (per_user, per_ws) = m.sessions.usage();
    let mut per_client = serde_json::Map::new();
    for r in m.registry.find(&Default::default()) {
        if r.name == "built-in" {
            continue;
        }
        let key = format!("{}/{}", r.ws, r.cid);
        let n = per_client.get(&key).and_then(Json::as_u64).unwrap_or(0);
        per_client.insert(key, json!(n + 1));
    }
    let l = &m.config.limits;
    json!({
        "connections_per_user": per_user.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "connections_per_workspace": per_ws.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "services_per_client": per_client,
        // rhizo has no per-connection message rate limiter (the reference's token
        // buckets); none is active.
        "active_rate_limiters": 0,
        "limits": {
            "max_connections_per_user": l.connections_per_user,
            "max_clients_per_workspace": l.clients_per_workspace,
            "max_services_per_client": l.services_per_client,
            "max_concurrent_handshakes": l.concurrent_handshakes,
        },
    })
}

/// Reads the bound arguments, with errors that name the parameter.
struct Args<'a>(&'a [Value]);

impl<'a> Args<'a> {
    fn get(&self, i: usize) -> Option<&'a Value> {
        self.0.get(i).filter(|v| !v.is_nil())
    }

    fn text(&self, i: usize, name: &str) -> ManagerResult<Option<&'a str>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| ManagerError::BadCall(format!("{name} must be a string"))),
        }
    }

    fn required(&self, i: usize, name: &str) -> ManagerResult<&'a str> {
        self.text(i, name)?
            .ok_or_else(|| ManagerError::BadCall(format!("{name} is required")))
    }

    fn int(&self, i: usize, name: &str) -> ManagerResult<Option<i64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| ManagerError::BadCall(format!("{name} must be an integer"))),
        }
    }

    fn float(&self, i: usize, name: &str) -> ManagerResult<Option<f64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .or_else(|| v.as_i64().map(|n| n as f64))
                .map(Some)
                .ok_or_else(|| ManagerError::BadCall(format!("{name} must be a number"))),
        }
    }

    fn flag(&self, i: usize, name: &str) -> ManagerResult<Option<bool>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| ManagerError::BadCall(format!("{name} must be a boolean"))),
        }
    }
}

impl ControlService for AdminUtils {
    fn id(&self) -> &'static str {
        "admin-utils"
    }

    fn name(&self) -> &str {
        "Admin Utilities"
    }

    fn description(&self) -> &str {
        "Administrative utilities for the root user: servers, workspaces, kicking \
         clients, blocking users and IP addresses, metrics and resource usage."
    }

    fn workspace(&self) -> &'static str {
        WORKSPACE
    }

    fn visibility(&self) -> &'static str {
        "protected"
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        FUNCTIONS
    }

    fn attach(&self, host: Arc<dyn ServiceHost>) {
        let _ = self.host.set(host);
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(self.run(ctx, function, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_by_name() {
        let args = [Value::from("x"), Value::from(2.5), Value::Nil];
        let a = Args(&args);
        assert_eq!(a.required(0, "workspace").unwrap(), "x");
        let e = a.int(1, "code").unwrap_err().to_string();
        assert!(e.contains("code must be an integer"), "{e}");
        assert_eq!(a.float(1, "timeout").unwrap(), Some(2.5));
        assert_eq!(a.flag(2, "wait").unwrap(), None);
        let e = a.required(2, "client_id").unwrap_err().to_string();
        assert!(e.contains("client_id is required"), "{e}");
        assert!(a.text(1, "reason").is_err());
    }

    #[test]
    fn every_function_has_a_doc_and_the_service_is_protected_in_the_root_workspace() {
        let s = AdminUtils::default();
        assert_eq!(s.workspace(), "ws-user-root");
        assert_eq!(s.visibility(), "protected");
        assert_eq!(s.functions().len(), 11);
        assert!(s.functions().iter().all(|f| !f.doc.is_empty()));
    }
}
