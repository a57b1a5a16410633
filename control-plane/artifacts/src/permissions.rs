//! The artifact permission engine (spec artifacts.md §2), sans-IO: callers pass the
//! configs, workspace and caller; nothing here reads a store.
//!
//! * [`Operation`] — every operation name of §2.2/§2.4/§2.5, spelled as upstream.
//! * [`code_operations`], [`grants`], [`permissions_view`] — permission codes and explicit
//!   operation lists (§2.2), and the `_permissions` view of responses.
//! * [`Caller`] — who asks: ids, email, anonymity, current workspace, workspace grants.
//! * [`check`] — one operation against one `config.permissions` (§2.3).
//! * [`authorize`] — the wrapper every method runs (§2.4): artifact, parent, then the
//!   caller's workspace permission.
//! * [`Gate`], [`enforce`] and the per-method gates of §2.5 ([`edit_gates`],
//!   [`commit_gates`], [`delete_gates`], [`authorize_create`], [`authorize_delete`],
//!   [`authorize_set_parent`]), the private-children rules ([`is_recipient`],
//!   [`recipient_filter`]); creator rights ([`grant_creator`]) and the permission
//!   re-merge of a direct child edit ([`merge_child_permissions`]).
//!
//! Choices where §2 is silent are marked "rhizo:" in the item docs.

use crate::error::{ArtifactError, ArtifactResult};
use rhizo_protocol::user::{Permission, UserInfo};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

mod gates;
mod operations;

pub use gates::*;
pub use operations::*;

#[cfg(test)]
mod tests;

/// Who is asking (§2.1): the identity facts the principals match, and the caller's
/// workspace permissions for the §2.4 fallback. Plain data; build it with
/// [`Caller::from_user`] from the call's context (`Ctx.user`, `Ctx.ws`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's own user id (`UserInfo.id`).
    pub id: String,
    /// The effective (parent) user id of a child identity (`UserInfo.parent`).
    pub effective_id: Option<String>,
    /// The caller's e-mail, matched by e-mail principals.
    pub email: Option<String>,
    /// Anonymous callers are not matched by `"@"` / `"<ws>/@"`.
    pub anonymous: bool,
    /// The caller's current workspace (`context.ws`): workspace-scoped principals
    /// `"<ws>/…"` apply only when it equals `<ws>`.
    pub current_workspace: String,
    /// Workspace id → the caller's permission there; the key `"*"` applies to every
    /// workspace (see [`Caller::workspace_permission`]).
    pub workspaces: BTreeMap<String, Permission>,
}

// === impl Caller ===

impl Caller {
    /// The caller of a call whose context carries `user` and `current_workspace`. The
    /// workspace grants reproduce [`UserInfo::permission`]: the explicit scope grants,
    /// admin on the user's own `ws-user-<id>`, and admin on the parent's personal
    /// workspace unless an explicit grant (for it or `*`) decides.
    pub fn from_user(user: &UserInfo, current_workspace: &str) -> Self {
        let mut workspaces = user.scope.workspaces.clone();
        if let Some(parent) = &user.parent {
            let parents = format!("ws-user-{parent}");
            if !workspaces.contains_key(&parents) && !workspaces.contains_key("*") {
                workspaces.insert(parents, Permission::Admin);
            }
        }
        workspaces.insert(user.personal_workspace(), Permission::Admin);
        Caller {
            id: user.id.clone(),
            effective_id: user.parent.clone(),
            email: user.email.clone(),
            anonymous: user.is_anonymous,
            current_workspace: current_workspace.to_owned(),
            workspaces,
        }
    }

    /// The caller's permission on `workspace`: the stronger of its own entry and the
    /// `"*"` entry, if any.
    pub fn workspace_permission(&self, workspace: &str) -> Option<Permission> {
        [self.workspaces.get(workspace), self.workspaces.get("*")]
            .into_iter()
            .flatten()
            .max()
            .copied()
    }

    /// Whether the caller has at least `needed` on `workspace`.
    pub fn can(&self, workspace: &str, needed: Permission) -> bool {
        self.workspace_permission(workspace)
            .is_some_and(|p| p >= needed)
    }

    /// The id that owns what the caller creates: the effective id if any, else the own
    /// id (the `created_by` of §1.1). rhizo passes it to [`grant_creator`].
    pub fn owner_id(&self) -> &str {
        self.effective_id.as_deref().unwrap_or(&self.id)
    }

    /// The ids and e-mail user principals match (§2.1), in check order.
    fn names(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.id.as_str()),
            self.effective_id.as_deref(),
            self.email.as_deref(),
        ]
        .into_iter()
        .flatten()
    }
}

/// Whether `permissions` (a `config.permissions` object: principal → code or list of
/// operation names) grants `op` to `caller` (§2.3). Principals are tried in order and
/// the first that grants wins:
///
/// 1. workspace-scoped keys `"<ws>/*"`, `"<ws>/@"` (non-anonymous only) and
///    `"<ws>/<id, effective id or email>"`, only when `<ws>` is the caller's current
///    workspace;
/// 2. the caller's id, effective id, e-mail;
/// 3. `"@"` for a non-anonymous caller;
/// 4. `"*"`.
///
/// There is no deny: an entry that grants nothing (`"n"`) only fails to grant, so
/// `{"*": "r", "alice": "n"}` still lets alice read through `"*"`. The upstream docs say
/// otherwise; the code (and rhizo) work this way (§2.3, §9 item 2). A `permissions`
/// that is not an object grants nothing.
pub fn check(permissions: &Value, caller: &Caller, op: Operation) -> bool {
    let Value::Object(entries) = permissions else {
        return false;
    };
    let granted = |key: &str| entries.get(key).is_some_and(|v| grants(v, op));
    let ws = &caller.current_workspace;
    let scoped = |principal: &str| granted(&format!("{ws}/{principal}"));
    if scoped("*") || (!caller.anonymous && scoped("@")) || caller.names().any(&scoped) {
        return true;
    }
    caller.names().any(&granted) || (!caller.anonymous && granted("@")) || granted("*")
}

/// [`check`] on an artifact config: its `permissions`, or nothing.
pub fn check_config(config: Option<&Value>, caller: &Caller, op: Operation) -> bool {
    config_permissions(config).is_some_and(|p| check(p, caller, op))
}

/// What a permission decision is about: an artifact (or, at create, the parent to be),
/// its parent collection's config and its workspace.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The artifact's `config` column.
    pub config: Option<&'a Value>,
    /// The parent collection's `config`; `None` for a root artifact. Pass
    /// `Some(&Value::Null)` for a parent without config, so gates know it exists.
    pub parent_config: Option<&'a Value>,
    /// The artifact's workspace, where the workspace fallback is looked up.
    pub workspace: &'a str,
}

// === impl Subject ===

impl Subject<'_> {
    /// Whether the artifact has a parent collection.
    pub fn has_parent(&self) -> bool {
        self.parent_config.is_some()
    }
}

/// `PermissionError: User does not have permission '<op>' on the artifact.` (§2.4).
pub fn denied_on_artifact(op: Operation) -> ArtifactError {
    ArtifactError::Permission(format!(
        "User does not have permission '{op}' on the artifact."
    ))
}

/// `PermissionError: User does not have permission '<op>' on the parent collection.`
/// (§2.4).
pub fn denied_on_parent(op: Operation) -> ArtifactError {
    ArtifactError::Permission(format!(
        "User does not have permission '{op}' on the parent collection."
    ))
}

/// The check every method runs on its artifact (§2.4, `_get_artifact_with_permission`):
///
/// * read-type operations: the artifact's permissions, then the parent's;
/// * write operations: the artifact's permissions only;
/// * `draft`, `attach`, `detach`, `mutate`: the parent's permissions;
/// * legacy `create`: `draft` and then `attach`, each on the parent;
///
/// and, for every check that fails, the caller's workspace permission on
/// `subject.workspace` against [`Operation::workspace_fallback`].
///
/// # Errors
/// [`ArtifactError::Permission`] "User does not have permission '\<op\>' on the
/// artifact." for operations checked on the artifact, "... on the parent collection."
/// for those checked on the parent. rhizo: a denied legacy `create` names the part that
/// failed (`draft` or `attach`).
pub fn authorize(subject: &Subject<'_>, caller: &Caller, op: Operation) -> ArtifactResult<()> {
    let fallback = |op: Operation| caller.can(subject.workspace, op.workspace_fallback());
    let on_parent = |op: Operation| check_config(subject.parent_config, caller, op);
    match op.checked_on() {
        CheckedOn::ArtifactThenParent => {
            if check_config(subject.config, caller, op) || on_parent(op) || fallback(op) {
                Ok(())
            } else {
                Err(denied_on_artifact(op))
            }
        }
        CheckedOn::Artifact => {
            if check_config(subject.config, caller, op) || fallback(op) {
                Ok(())
            } else {
                Err(denied_on_artifact(op))
            }
        }
        CheckedOn::Parent => {
            if on_parent(op) || fallback(op) {
                Ok(())
            } else {
                Err(denied_on_parent(op))
            }
        }
        CheckedOn::ParentDraftAndAttach => {
            for part in [Operation::Draft, Operation::Attach] {
                if !(on_parent(part) || fallback(Operation::Create)) {
                    return Err(denied_on_parent(part));
                }
            }
            Ok(())
        }
    }
}
