//! Handshake decisions and the router hooks (protocol.md §1.3–1.4, §6.2, §6.4).
//!
//! [`Hooks`] is the control plane's side of the router's narrow interface: it admits
//! connections, mints reconnection tokens, takes frames addressed to the manager and
//! cleans up after departed clients.

use crate::cluster::Incoming;
use crate::config::reached;
use crate::manager::Manager;
use crate::names::readable_id;
use crate::sessions::Session;
use crate::tokens::now_secs;
use crate::tokens::TokenError;
use bytes::Bytes;
use rhizo_interface::{Admission, BoxFuture, ConnRef, ControlHooks, Refusal};
use rhizo_protocol::handshake::AuthRequest;
use rhizo_protocol::token::is_specialized;
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long the duplicate-client check waits for the existing client's pong.
const DUPLICATE_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The router hooks, backed by the manager.
#[derive(Debug)]
pub struct Hooks(pub Arc<Manager>);

fn auth_error(message: impl std::fmt::Display) -> Refusal {
    Refusal {
        message: format!("Authentication error: {message}"),
        code: 1008,
    }
}

fn setup_error(message: impl std::fmt::Display) -> Refusal {
    Refusal {
        message: format!("Failed to establish connection: {message}"),
        code: 1001,
    }
}

/// A new anonymous user (workspace-api.md §1.6): admin of its own workspace only.
pub fn anonymous_user() -> UserInfo {
    let id = format!("anonymouz-{}", readable_id());
    let mut scope = ScopeInfo::default();
    scope
        .workspaces
        .insert(format!("ws-user-{id}"), Permission::Admin);
    UserInfo {
        id,
        roles: vec!["anonymous".into()],
        is_anonymous: true,
        scope,
        email: None,
        parent: None,
        expires_at: Some((now_secs() + 600) as f64),
        current_workspace: None,
    }
}

// === impl Manager (admission) ===

impl Manager {
    /// Authenticates a handshake and resolves its workspace (protocol.md §1.3).
    ///
    /// `conn_id` is the router's id for the connection; the session recorded under it
    /// serves the per-user limit, token refresh and revocation.
    pub async fn admit(
        self: Arc<Self>,
        conn_id: u64,
        req: AuthRequest,
    ) -> Result<Admission, Refusal> {
        // At most `HYPHA_MAX_CONCURRENT_CONNECTIONS` handshakes at once (§7 step 3); the
        // turn is held until the decision, including a duplicate-client ping.
        let _turn = match &self.handshakes {
            None => None,
            Some(s) => {
                match tokio::time::timeout(self.config.limits.handshake_wait, s.acquire()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        return Err(Refusal {
                            message: "Server busy, please retry".into(),
                            code: 1013,
                        })
                    }
                }
            }
        };
        let cid = req.client_id().to_owned();
        let mut origin = None;
        let (mut user, ws, reconnecting) = if let Some(rt) = &req.reconnection_token {
            let (u, o) = self.tokens.verify_with_origin(rt).map_err(auth_error)?;
            origin = o;
            if is_specialized(&u.scope) {
                return Err(auth_error(
                    "Specialized tokens cannot be used for general workspace access",
                ));
            }
            let wid = u
                .scope
                .current_workspace
                .clone()
                .ok_or_else(|| auth_error("Reconnection token has no workspace"))?;
            if u.scope.client_id.as_deref() != Some(cid.as_str()) {
                return Err(auth_error("Client id mismatch in the reconnection token"));
            }
            if req.workspace.as_ref().is_some_and(|w| *w != wid) {
                return Err(auth_error(format!(
                    "Workspace mismatch: the reconnection token is for {wid}"
                )));
            }
            (u, wid, true)
        } else if let Some(t) = &req.token {
            let (u, o) = self.tokens.verify_with_origin(t).map_err(auth_error)?;
            origin = o;
            if is_specialized(&u.scope) {
                return Err(auth_error(
                    "Specialized tokens cannot be used for general workspace access",
                ));
            }
            if let Some(c) = &u.scope.client_id {
                if *c != cid {
                    return Err(auth_error(format!(
                        "Client id mismatch: the token is restricted to client {c}"
                    )));
                }
            }
            let root = u.id == "root";
            let wid = u.scope.current_workspace.clone().filter(|_| !root);
            let mut ws = match (&req.workspace, &wid) {
                (Some(w), Some(t)) if w != t => {
                    return Err(auth_error(format!(
                        "Token is not authorized for workspace {w}"
                    )));
                }
                (Some(w), _) => w.clone(),
                (None, Some(t)) => t.clone(),
                (None, None) => u.personal_workspace(),
            };
            if ws == "public" && wid.as_deref() != Some("public") && !root {
                ws = wid.clone().unwrap_or_else(|| u.personal_workspace());
            }
            (u, ws, false)
        } else {
            let u = anonymous_user();
            let ws = req
                .workspace
                .clone()
                .unwrap_or_else(|| u.personal_workspace());
            (u, ws, false)
        };

        // From here until the session is open, the workspace is not unloaded under the
        // admission (a temporary workspace whose last client leaves meanwhile stays).
        let _hold = self.workspaces.hold(&ws);
        let personal = ws == user.personal_workspace()
            || user
                .parent
                .as_deref()
                .is_some_and(|p| ws == format!("ws-user-{p}"));
        if self.workspaces.get(&ws).is_none() {
            // Only personal workspaces are made on connect: the user's own, or its parent's
            // for a child identity that may read it (§4.3).
            let owner = if ws == user.personal_workspace() {
                user.id.clone()
            } else if personal && user.can(&ws, Permission::Read) {
                ws.trim_start_matches("ws-user-").to_owned()
            } else {
                return Err(setup_error(format!(
                    "Workspace {ws} does not exist or is not accessible"
                )));
            };
            self.workspaces.ensure_personal(&ws, &owner).await;
        }
        // Explicit grants win; listed ownership only fills in where the token grants nothing.
        // Owners are listed by user id or by e-mail (workspace-api.md §2.5).
        let permission = user.permission(&ws).or_else(|| {
            let owns = self.workspaces.owned_by(&ws, &user.id)
                || user
                    .email
                    .as_deref()
                    .is_some_and(|e| !e.is_empty() && self.workspaces.owned_by(&ws, e));
            owns.then_some(Permission::Admin)
        });
        let Some(permission) = permission else {
            return Err(setup_error(format!(
                "Permission denied for workspace: {ws}"
            )));
        };
        user.scope.workspaces.insert(ws.clone(), permission);
        user.scope.current_workspace = Some(ws.clone());
        user.scope.client_id = Some(cid.clone());
        user.current_workspace = Some(ws.clone());

        let addr = format!("{ws}/{cid}");
        self.check_connection_limits(&user, &ws, &addr)?;
        if !reconnecting {
            if self.router.client(&addr).is_some() {
                let alive = self
                    .call_client(
                        &addr,
                        "services.built-in.ping",
                        vec!["ping".into()],
                        DUPLICATE_PING_TIMEOUT,
                    )
                    .await;
                if alive.as_ref().ok().and_then(|v| v.as_str()) == Some("pong") {
                    return Err(setup_error(format!(
                        "Client already exists and is active: {addr}"
                    )));
                }
            }
            // A stale client of that id: its records go; the new connection supersedes it.
            self.registry.supersede(&ws, &cid);
        }

        let user_json = serde_json::to_value(&user).expect("user record serialises");
        let user_bytes = Bytes::from(value::encode(&value::from_json(&user_json)));
        let token = self.reconnection_token(&user, &ws, &cid, permission, origin.as_deref());
        let c = &self.config;
        let info = json!({
            "type": "connection_info",
            "hypha_version": c.version,
            "public_base_url": c.public_base_url,
            "local_base_url": c.local_base_url,
            "manager_id": self.manager_id(),
            "workspace": ws,
            "client_id": cid,
            "user": user_json,
            "reconnection_token": token,
            "reconnection_token_life_time": c.reconnection_token_life_time,
        });
        self.sessions.open(
            &addr,
            Session {
                conn_id,
                user_id: user.id.clone(),
                origin,
            },
        );
        Ok(Admission {
            workspace: ws,
            client_id: cid,
            user: user_bytes,
            can_write: permission >= Permission::ReadWrite,
            connection_info: info,
            reconnecting,
        })
    }

    /// `HYPHA_MAX_CONNECTIONS_PER_USER` and `HYPHA_MAX_CLIENTS_PER_WORKSPACE` (per
    /// instance, workspace-api.md §7 step 6). A connection taking over its own address
    /// does not count twice. Errors: close 1008 with the limit in the reason.
    fn check_connection_limits(
        &self,
        user: &UserInfo,
        ws: &str,
        addr: &str,
    ) -> Result<(), Refusal> {
        let limits = &self.config.limits;
        let same_user_here = self
            .sessions
            .get(addr)
            .is_some_and(|s| s.user_id == user.id);
        if user.id != "root"
            && !same_user_here
            && reached(
                self.sessions.count_for(&user.id),
                limits.connections_per_user,
            )
        {
            return Err(Refusal {
                message: format!(
                    "Too many connections for user {} (limit {} per server)",
                    user.id, limits.connections_per_user
                ),
                code: 1008,
            });
        }
        let here = self.router.client(addr).is_some();
        // Counted over the whole cluster (the directory's replica: no Redis round trip).
        let clients = self.router.cluster_client_count(ws);
        if !here && reached(clients, limits.clients_per_workspace) {
            return Err(Refusal {
                message: format!(
                    "Too many clients in workspace {ws} (limit {})",
                    limits.clients_per_workspace
                ),
                code: 1008,
            });
        }
        Ok(())
    }

    /// A token that lets `user` reconnect as `ws/cid` (protocol.md §1.7, §6.2), descending
    /// from the token with hash `origin`. It never outlives the identity it was made from:
    /// its expiry is capped at the user's `expires_at` (anonymous users excepted, whose
    /// nominal expiry is not a token's).
    pub fn reconnection_token(
        &self,
        user: &UserInfo,
        ws: &str,
        cid: &str,
        permission: Permission,
        origin: Option<&str>,
    ) -> String {
        let mut life = self.config.reconnection_token_life_time;
        if let (false, Some(exp)) = (user.is_anonymous, user.expires_at) {
            life = life.min((exp as u64).saturating_sub(now_secs()));
        }
        let mut u = user.clone();
        u.scope = ScopeInfo {
            current_workspace: Some(ws.to_owned()),
            client_id: Some(cid.to_owned()),
            ..Default::default()
        };
        u.scope.workspaces.insert(ws.to_owned(), permission);
        self.tokens.sign_descendant(&u, life, origin)
    }

    /// A new reconnection token for a live connection (protocol.md §6.2), unless its
    /// identity expired or its origin token was revoked meanwhile: then the connection
    /// is closed with 1008 (the reference keeps minting tokens for expired sessions).
    pub fn refresh(&self, conn: ConnRef<'_>) -> Result<String, Refusal> {
        let addr = format!("{}/{}", conn.ws, conn.cid);
        let live = self
            .router
            .client(&addr)
            .filter(|c| c.conn_id == conn.id)
            .ok_or_else(|| auth_error("the connection is gone"))?;
        let user = rmpv::decode::read_value(&mut &live.user[..])
            .ok()
            .and_then(|u| serde_json::from_value::<UserInfo>(value::to_json(&u)).ok())
            .ok_or_else(|| auth_error("unreadable session identity"))?;
        // Same rule as token verification: expired once `exp` is strictly in the past.
        if !user.is_anonymous && user.expires_at.is_some_and(|e| e < now_secs() as f64) {
            return Err(auth_error(TokenError::Expired));
        }
        let origin = self
            .sessions
            .get(&addr)
            .filter(|s| s.conn_id == conn.id)
            .and_then(|s| s.origin);
        if origin.as_deref().is_some_and(|o| self.tokens.is_revoked(o)) {
            return Err(auth_error(TokenError::Revoked));
        }
        if let Some(reason) = self.tokens.blocklist().user(&user.id) {
            return Err(auth_error(reason));
        }
        let permission = user
            .permission(conn.ws)
            .ok_or_else(|| auth_error("no permission on the workspace"))?;
        Ok(self.reconnection_token(&user, conn.ws, conn.cid, permission, origin.as_deref()))
    }

    /// A connection ended for good: fail calls waiting on it, purge its services, tell its
    /// workspace, and drop the workspace if it was temporary and is now empty (§6.4).
    ///
    /// `foreign_callers` (clients in other workspaces that had sent it frames) get the
    /// `client_disconnected` event too, so that their calls fail at once instead of timing
    /// out (an improvement on the reference, which tells only the client's workspace).
    pub fn client_gone(
        self: &Arc<Self>,
        conn_id: u64,
        ws: &str,
        cid: &str,
        foreign_callers: &[String],
    ) {
        let addr = format!("{ws}/{cid}");
        self.sessions.close(&addr, conn_id);
        self.fail_calls_to(&addr);
        tracing::debug!(client = %addr, ?foreign_callers, "client gone");
        self.registry.client_gone(ws, cid, foreign_callers);
        if self.router.client_count(ws) == 0 {
            self.workspaces.schedule_unload(ws);
        }
    }
}

// === impl Hooks ===

impl ControlHooks for Hooks {
    fn admit(&self, conn_id: u64, req: AuthRequest) -> BoxFuture<'_, Result<Admission, Refusal>> {
        Box::pin(self.0.clone().admit(conn_id, req))
    }

    fn refresh_token(&self, conn: ConnRef<'_>) -> Result<String, Refusal> {
        self.0.refresh(conn)
    }

    fn manager_frame(&self, frame: Bytes) {
        self.0.handle_frame(frame);
    }

    fn stateless_call(
        &self,
        token: Option<String>,
        workspace: Option<String>,
        body: Bytes,
    ) -> BoxFuture<'_, (u16, serde_json::Value)> {
        Box::pin(async move {
            self.0
                .stateless_call(token.as_deref(), workspace.as_deref(), &body)
                .await
        })
    }

    fn remote_client_gone(&self, addr: &str, callers: Vec<String>) {
        let Some((ws, cid)) = addr.split_once('/') else {
            return;
        };
        self.0.registry.tell_callers_gone(ws, cid, &callers);
    }

    fn disconnected(&self, conn: ConnRef<'_>, foreign_callers: Vec<String>) {
        self.0
            .client_gone(conn.id, conn.ws, conn.cid, &foreign_callers);
    }

    fn cluster_message(&self, from_node: &str, message: Bytes) {
        self.0
            .cluster
            .push(Incoming::Message(from_node.to_owned(), message));
    }

    fn cluster_undelivered(&self, to_node: &str, message: Bytes) {
        self.0
            .cluster
            .push(Incoming::Undelivered(to_node.to_owned(), message));
    }

    fn node_joined(&self, node: &str) {
        self.0.cluster.push(Incoming::Joined(node.to_owned()));
    }

    fn node_left(&self, node: &str) {
        self.0.cluster.push(Incoming::Left(node.to_owned()));
    }
}
