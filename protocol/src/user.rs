//! The user record stamped into every header and sent in `connection_info`
//! (protocol.md §8.3, workspace-api.md §1.1–1.3).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A workspace permission: read, read-write or admin (workspace-api.md §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
pub enum Permission {
    /// `r`: list and call services, connect.
    #[serde(rename = "r")]
    Read,
    /// `rw`: also register services, broadcast, log.
    #[serde(rename = "rw")]
    ReadWrite,
    /// `a`: also manage the workspace and mint tokens for it.
    #[serde(rename = "a")]
    Admin,
}

// === impl Permission ===

impl Permission {
    /// The short code used in scopes: `r`, `rw` or `a`.
    pub fn code(self) -> &'static str {
        match self {
            Permission::Read => "r",
            Permission::ReadWrite => "rw",
            Permission::Admin => "a",
        }
    }

    /// Parses a short code (`r`, `rw`, `a`) or a long name (`read`, `read_write`, `admin`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "r" | "read" => Some(Permission::Read),
            "rw" | "read_write" => Some(Permission::ReadWrite),
            "a" | "admin" => Some(Permission::Admin),
            _ => None,
        }
    }
}

/// Scope of a user for one connection or token (workspace-api.md §1.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeInfo {
    /// The workspace the connection or token is bound to (`wid:`).
    #[serde(default)]
    pub current_workspace: Option<String>,
    /// Workspace id (or `*`) → permission.
    #[serde(default)]
    pub workspaces: BTreeMap<String, Permission>,
    /// Client id the token is restricted to (`cid:`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Any other scope words, verbatim.
    #[serde(default)]
    pub extra_scopes: Vec<String>,
}

/// A user record as the reference serialises it (workspace-api.md §1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// User id (`sub` of the token; `anonymouz-…` for anonymous users).
    pub id: String,
    /// Roles, e.g. `["anonymous"]`, `["admin"]`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// True iff `roles` contains `anonymous`.
    #[serde(default)]
    pub is_anonymous: bool,
    /// Scope of this identity.
    #[serde(default)]
    pub scope: ScopeInfo,
    /// E-mail, if known.
    #[serde(default)]
    pub email: Option<String>,
    /// Parent user id for child identities minted by `generate_token`.
    #[serde(default)]
    pub parent: Option<String>,
    /// Expiry, seconds since the epoch; `None` = never.
    #[serde(default)]
    pub expires_at: Option<f64>,
    /// The workspace this record is used in.
    #[serde(default)]
    pub current_workspace: Option<String>,
}

// === impl UserInfo ===

impl UserInfo {
    /// The effective permission on `workspace` (workspace-api.md §1.3): admin on the user's
    /// own `ws-user-<id>`; otherwise the stronger of the explicit grants for it and for `*`;
    /// failing those, admin on the parent's personal workspace (child identities). An
    /// explicit grant wins over the parent rule, so a read-only child token stays read-only.
    pub fn permission(&self, workspace: &str) -> Option<Permission> {
        if workspace == format!("ws-user-{}", self.id) {
            return Some(Permission::Admin);
        }
        let explicit = [
            self.scope.workspaces.get(workspace),
            self.scope.workspaces.get("*"),
        ]
        .into_iter()
        .flatten()
        .max()
        .copied();
        let parents = self
            .parent
            .as_deref()
            .is_some_and(|p| workspace == format!("ws-user-{p}"));
        match explicit {
            Some(p) => Some(p),
            None if parents => Some(Permission::Admin),
            None => None,
        }
    }

    /// True if the user has at least `needed` on `workspace`.
    pub fn can(&self, workspace: &str, needed: Permission) -> bool {
        self.permission(workspace).is_some_and(|p| p >= needed)
    }

    /// The user's personal workspace, `ws-user-<id>`.
    pub fn personal_workspace(&self) -> String {
        format!("ws-user-{}", self.id)
    }

    /// The root user (workspace-api.md §1.5): admin everywhere, never expires.
    pub fn root() -> Self {
        let mut workspaces = BTreeMap::new();
        workspaces.insert("*".to_owned(), Permission::Admin);
        UserInfo {
            id: "root".into(),
            roles: vec!["admin".into()],
            is_anonymous: false,
            scope: ScopeInfo {
                current_workspace: Some("*".into()),
                workspaces,
                ..Default::default()
            },
            email: None,
            parent: None,
            expires_at: None,
            current_workspace: Some("*".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, grants: &[(&str, Permission)]) -> UserInfo {
        let mut u = UserInfo::root();
        u.id = id.into();
        u.roles.clear();
        u.scope.workspaces = grants.iter().map(|(w, p)| (w.to_string(), *p)).collect();
        u
    }

    #[test]
    fn permission_is_the_stronger_grant() {
        let u = user(
            "u1",
            &[("ws-a", Permission::Read), ("*", Permission::ReadWrite)],
        );
        assert_eq!(u.permission("ws-a"), Some(Permission::ReadWrite));
        assert_eq!(u.permission("ws-b"), Some(Permission::ReadWrite));
        let v = user("u2", &[("ws-a", Permission::Read)]);
        assert!(v.can("ws-a", Permission::Read));
        assert!(!v.can("ws-a", Permission::ReadWrite));
        assert!(!v.can("ws-b", Permission::Read));
        assert_eq!(v.permission("ws-user-u2"), Some(Permission::Admin));
        let mut child = user("c1", &[("ws-user-p", Permission::Read)]);
        child.parent = Some("p".into());
        assert_eq!(
            child.permission("ws-user-p"),
            Some(Permission::Read),
            "explicit grant wins"
        );
        child.scope.workspaces.clear();
        assert_eq!(child.permission("ws-user-p"), Some(Permission::Admin));
    }

    #[test]
    fn serialises_short_codes() {
        let u = user("u1", &[("ws-a", Permission::ReadWrite)]);
        let j = serde_json::to_value(&u).unwrap();
        assert_eq!(j["scope"]["workspaces"]["ws-a"], "rw");
        let back: UserInfo = serde_json::from_value(j).unwrap();
        assert_eq!(back, u);
    }
}
