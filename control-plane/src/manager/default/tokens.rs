//! `generate_token(config)`, `parse_token(token)` and `revoke_token(token)`
//! (workspace-api.md §1.4, §5.4), applied to the [`crate::tokens::TokenService`]; a
//! revocation also closes the connections the token opened.

use super::{args, num, opt_string, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::names::readable_id;
use crate::tokens::TokenError;
use rhizo_interface::CloseReason;
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;

/// `generate_token(config)`: a child identity of the caller for one workspace.
#[derive(Debug)]
pub(crate) struct GenerateToken {
    /// Target workspace; the caller's by default.
    workspace: Option<String>,
    /// `read`, `read_write` or `admin` as sent (checked after the caller's permission).
    permission: Option<String>,
    /// Seconds; 3600 unless positive.
    expires_in: u64,
    extra_scopes: Vec<String>,
    client_id: Option<String>,
    email: Option<String>,
}

// === impl GenerateToken ===

impl GenerateToken {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [config] = args(a);
        GenerateToken {
            workspace: get_str(&config, "workspace").map(str::to_owned),
            permission: get_str(&config, "permission").map(str::to_owned),
            expires_in: num(get(&config, "expires_in"))
                .filter(|e| *e > 0.0)
                .unwrap_or(3600.0) as u64,
            extra_scopes: value::get_strs(&config, "extra_scopes"),
            client_id: get_str(&config, "client_id").map(str::to_owned),
            email: get_str(&config, "email").map(str::to_owned),
        }
    }

    /// Mints the token. Ownership counts only for the owner itself and only where its
    /// token grants nothing explicit: a read or read-write child token cannot mint admin
    /// tokens through its parent (the reference upgrades owners to admin; docs/compat.md).
    ///
    /// Errors: [`ManagerError::Permission`] (no permission, not admin, e-mail set by a
    /// non-admin), [`ManagerError::InvalidArgument`] (bad permission, reserved scopes).
    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        let target = self.workspace.unwrap_or_else(|| ctx.ws.clone());
        let owner = !ctx.user.scope.workspaces.contains_key(&target)
            && m.workspaces.owned_by(&target, &ctx.user.id);
        match ctx.user.permission(&target) {
            Some(Permission::Admin) => {}
            _ if owner => {}
            None => {
                return Err(ManagerError::Permission(format!(
                    "You do not have any permission for workspace: {target}"
                )))
            }
            Some(_) => {
                return Err(ManagerError::Permission(
                    "Only admin can generate token.".into(),
                ))
            }
        }
        let permission = match self.permission.as_deref() {
            None => Permission::ReadWrite,
            Some(p) => Permission::parse(p)
                .ok_or_else(|| ManagerError::InvalidArgument(format!("Invalid permission: {p}")))?,
        };
        if self
            .extra_scopes
            .iter()
            .any(|s| s.starts_with("ws:") || s.starts_with("cid:") || s.starts_with("wid:"))
        {
            return Err(ManagerError::InvalidArgument(
                "extra_scopes must not contain ws:, cid: or wid: scopes".into(),
            ));
        }
        let mut scope = ScopeInfo {
            current_workspace: Some(target.clone()),
            client_id: self.client_id,
            extra_scopes: self.extra_scopes,
            ..Default::default()
        };
        scope.workspaces.insert(target.clone(), permission);
        let email = match self.email {
            Some(e) if ctx.user.roles.iter().any(|r| r == "admin") => Some(e),
            Some(_) => {
                return Err(ManagerError::Permission(
                    "Only admin users can set the email of a token".into(),
                ))
            }
            None => ctx.user.email.clone(),
        };
        let child = UserInfo {
            id: readable_id(),
            // Not the `admin` role: it would grant admin on every workspace and void the
            // permission the token is scoped to (the reference copies it; docs/compat.md).
            roles: ctx
                .user
                .roles
                .iter()
                .filter(|r| *r != "admin")
                .cloned()
                .collect(),
            is_anonymous: ctx.user.is_anonymous,
            scope,
            email,
            parent: Some(
                ctx.user
                    .parent
                    .clone()
                    .unwrap_or_else(|| ctx.user.id.clone()),
            ),
            expires_at: None,
            current_workspace: Some(target),
        };
        Ok(m.tokens.sign(&child, self.expires_in).into())
    }
}

/// `parse_token(token)`.
#[derive(Debug)]
pub(crate) struct ParseToken {
    token: Option<String>,
}

// === impl ParseToken ===

impl ParseToken {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [token] = args(a);
        ParseToken {
            token: opt_string(&token),
        }
    }

    /// The token's user record. Errors: [`ManagerError::Permission`] (no read permission;
    /// expired or revoked; for another workspace), [`ManagerError::InvalidArgument`].
    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let token = self
            .token
            .ok_or_else(|| ManagerError::InvalidArgument("token must be a string".into()))?;
        let user = m.tokens.verify(&token).map_err(|e| match e {
            TokenError::Expired | TokenError::Revoked | TokenError::Blocked(_) => {
                ManagerError::Permission(e.to_string())
            }
            TokenError::Invalid(_) => ManagerError::InvalidArgument(e.to_string()),
        })?;
        if let Some(w) = &user.scope.current_workspace {
            if *w != ctx.ws {
                return Err(ManagerError::Permission(format!(
                    "Token is not authorized for workspace {}",
                    ctx.ws
                )));
            }
        }
        Ok(value::from_json(
            &serde_json::to_value(&user).unwrap_or_default(),
        ))
    }
}

/// `revoke_token(token)`.
#[derive(Debug)]
pub(crate) struct RevokeToken {
    token: Option<String>,
}

// === impl Manager (revocation) ===

impl Manager {
    /// Closes this node's connections opened with the token of SHA-256 hex `origin` (or a
    /// reconnection token descending from it), except `spare` (the revoking caller).
    pub(crate) fn close_sessions_of(&self, origin: &str, spare: Option<&str>) {
        for addr in self.sessions.with_origin(origin) {
            if spare == Some(addr.as_str()) {
                continue;
            }
            self.router.close(
                &addr,
                None,
                CloseReason::Policy("Authentication error: Token has been revoked".into()),
            );
        }
    }
}

// === impl RevokeToken ===

impl RevokeToken {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [token] = args(a);
        RevokeToken {
            token: opt_string(&token),
        }
    }

    /// Needs admin on the caller's workspace. The revocation is stored, so it survives a
    /// restart; connections opened with the token (or a reconnection token descending
    /// from it) end now — except the caller's own, left to receive this reply (its next
    /// token refresh closes it).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::InvalidArgument`],
    /// [`ManagerError::Store`].
    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Admin)?;
        let token = self
            .token
            .ok_or_else(|| ManagerError::InvalidArgument("token must be a string".into()))?;
        let origin = m.tokens.revoke(&token).await?;
        m.close_sessions_of(&origin, Some(&ctx.from));
        // The other nodes refuse it too and close their own sessions of it.
        if let Some(exp) = m.tokens.revoked_until(&origin) {
            m.announce_revocation(&origin, exp);
        }
        Ok(Value::Nil)
    }
}
