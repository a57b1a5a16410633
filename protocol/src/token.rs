//! JWT claims and scope strings in the reference format (protocol.md §8.2,
//! workspace-api.md §1.4). Signing and verifying happen in the control plane; this module
//! only maps between claims and [`UserInfo`].

use crate::user::{Permission, ScopeInfo, UserInfo};
use serde_json::{json, Map, Value};

/// Default `iss` claim (env `AUTH0_ISSUER`).
pub const DEFAULT_ISSUER: &str = "https://amun.ai/";
/// Default `aud` claim (env `AUTH0_AUDIENCE`).
pub const DEFAULT_AUDIENCE: &str = "https://amun-ai.eu.auth0.com/api/v2/";
/// Default namespace of the role/email/parent claims (env `AUTH0_NAMESPACE`).
pub const DEFAULT_NAMESPACE: &str = "https://amun.ai/";

/// Builds the space-separated scope string: `ws:<w>#<p>` per grant, then `cid:`, `wid:`, then
/// extra scopes verbatim.
pub fn scope_string(scope: &ScopeInfo) -> String {
    let mut words: Vec<String> = scope
        .workspaces
        .iter()
        .map(|(w, p)| format!("ws:{w}#{}", p.code()))
        .collect();
    if let Some(c) = &scope.client_id {
        words.push(format!("cid:{c}"));
    }
    if let Some(w) = &scope.current_workspace {
        words.push(format!("wid:{w}"));
    }
    words.extend(scope.extra_scopes.iter().cloned());
    words.join(" ")
}

/// Parses a scope string; unknown words go to `extra_scopes`.
pub fn parse_scope(s: &str) -> ScopeInfo {
    let mut scope = ScopeInfo::default();
    for word in s.split_whitespace() {
        if let Some(rest) = word.strip_prefix("ws:") {
            if let Some((w, p)) = rest.rsplit_once('#') {
                if let Some(p) = Permission::parse(p) {
                    scope.workspaces.insert(w.to_owned(), p);
                    continue;
                }
            }
        } else if let Some(c) = word.strip_prefix("cid:") {
            scope.client_id = Some(c.to_owned());
            continue;
        } else if let Some(w) = word.strip_prefix("wid:") {
            scope.current_workspace = Some(w.to_owned());
            continue;
        }
        scope.extra_scopes.push(word.to_owned());
    }
    scope
}

/// Claim names and fixed values of one deployment.
#[derive(Debug, Clone)]
pub struct ClaimFormat {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Prefix of the `roles`, `email` and `parent` claims.
    pub namespace: String,
}

impl Default for ClaimFormat {
    fn default() -> Self {
        ClaimFormat {
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            namespace: DEFAULT_NAMESPACE.into(),
        }
    }
}

// === impl ClaimFormat ===

impl ClaimFormat {
    /// The claims of a token for `user`, issued at `now` and valid for `expires_in` seconds.
    pub fn claims(&self, user: &UserInfo, now: u64, expires_in: u64) -> Value {
        let ns = &self.namespace;
        let mut m = Map::new();
        m.insert("iss".into(), json!(self.issuer));
        m.insert("sub".into(), json!(user.id));
        m.insert("aud".into(), json!(self.audience));
        m.insert("iat".into(), json!(now));
        m.insert("exp".into(), json!(now + expires_in));
        m.insert("scope".into(), json!(scope_string(&user.scope)));
        m.insert("gty".into(), json!("client-credentials"));
        m.insert(format!("{ns}roles"), json!(user.roles));
        m.insert(format!("{ns}email"), json!(user.email));
        if let Some(p) = &user.parent {
            m.insert(format!("{ns}parent"), json!(p));
        }
        Value::Object(m)
    }

    /// The user a verified token describes. Admin role adds `*: a`; `expires_at` = `exp`.
    ///
    /// Errors: a message if `sub` is missing.
    pub fn user(&self, claims: &Value) -> Result<UserInfo, String> {
        let ns = &self.namespace;
        let id = claims["sub"]
            .as_str()
            .ok_or("token has no subject")?
            .to_owned();
        let roles: Vec<String> = claims[format!("{ns}roles")]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut scope = parse_scope(claims["scope"].as_str().unwrap_or(""));
        if roles.iter().any(|r| r == "admin") {
            scope.workspaces.insert("*".into(), Permission::Admin);
        }
        scope
            .workspaces
            .insert(format!("ws-user-{id}"), Permission::Admin);
        let current_workspace = scope.current_workspace.clone();
        Ok(UserInfo {
            is_anonymous: roles.iter().any(|r| r == "anonymous"),
            roles,
            email: claims[format!("{ns}email")].as_str().map(str::to_owned),
            parent: claims[format!("{ns}parent")].as_str().map(str::to_owned),
            expires_at: claims["exp"].as_f64(),
            current_workspace,
            scope,
            id,
        })
    }
}

/// True if any extra scope contains `:` — such "specialized" tokens may not open
/// connections (workspace-api.md §1.2).
pub fn is_specialized(scope: &ScopeInfo) -> bool {
    scope.extra_scopes.iter().any(|s| s.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_round_trip() {
        let s = "ws:ws-a#rw ws:*#r cid:c1 wid:ws-a openid";
        let scope = parse_scope(s);
        assert_eq!(scope.workspaces.get("ws-a"), Some(&Permission::ReadWrite));
        assert_eq!(scope.workspaces.get("*"), Some(&Permission::Read));
        assert_eq!(scope.client_id.as_deref(), Some("c1"));
        assert_eq!(scope.current_workspace.as_deref(), Some("ws-a"));
        assert_eq!(scope.extra_scopes, vec!["openid".to_string()]);
        assert_eq!(parse_scope(&scope_string(&scope)), scope);
    }

    #[test]
    fn claims_round_trip_through_user() {
        let f = ClaimFormat::default();
        let mut u = UserInfo::root();
        u.id = "child-1".into();
        u.roles = vec![];
        u.parent = Some("p".into());
        u.scope = parse_scope("ws:ws-a#rw wid:ws-a");
        let c = f.claims(&u, 1000, 60);
        assert_eq!(c["https://amun.ai/parent"], "p");
        assert_eq!(c["gty"], "client-credentials");
        let back = f.user(&c).unwrap();
        assert_eq!(back.id, "child-1");
        assert_eq!(back.parent.as_deref(), Some("p"));
        assert_eq!(back.expires_at, Some(1060.0));
        assert_eq!(back.permission("ws-a"), Some(Permission::ReadWrite));
        assert_eq!(back.permission("ws-user-child-1"), Some(Permission::Admin));
        assert!(!back.is_anonymous);
    }

    #[test]
    fn specialized_scopes_are_detected() {
        assert!(is_specialized(&parse_scope("ws:a#r get_file:x:y")));
        assert!(!is_specialized(&parse_scope("ws:a#r openid")));
    }
}
