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

#[cfg(test)]
mod tests;

/// An operation a permission entry can grant (§2.2, §2.4, §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `list`: list children / see the artifact in listings.
    List,
    /// `draft`: create a staged child under a collection.
    Draft,
    /// `list_vectors`.
    ListVectors,
    /// `attach`: add a committed child to a collection.
    Attach,
    /// `add_vectors`.
    AddVectors,
    /// `list_files`.
    ListFiles,
    /// `put_file`.
    PutFile,
    /// `read`.
    Read,
    /// `get_file`.
    GetFile,
    /// `search_vectors`.
    SearchVectors,
    /// `get_vector`.
    GetVector,
    /// `edit`.
    Edit,
    /// `commit`.
    Commit,
    /// `remove_file`.
    RemoveFile,
    /// `remove_vectors`.
    RemoveVectors,
    /// `discard_changes`.
    DiscardChanges,
    /// `detach`: remove a child from a collection.
    Detach,
    /// `mutate`: change a committed child of a collection in place.
    Mutate,
    /// `get_status`.
    GetStatus,
    /// `create` (legacy: draft + attach on the parent, §2.4).
    Create,
    /// `reset_stats`.
    ResetStats,
    /// `publish`.
    Publish,
    /// `delete`.
    Delete,
    /// `get_secret` (no code grants it; workspace admin only).
    GetSecret,
    /// `set_secret` (no code grants it; workspace rw only).
    SetSecret,
    /// `set_download_weight` (no code grants it; workspace rw only).
    SetDownloadWeight,
}

/// Where the §2.4 wrapper looks for a grant of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckedOn {
    /// Read-type: the artifact's permissions, then its parent collection's.
    ArtifactThenParent,
    /// Write-type: the artifact's permissions only.
    Artifact,
    /// `draft`, `attach`, `detach`, `mutate`: the parent collection's permissions.
    Parent,
    /// Legacy `create`: both `draft` and `attach` on the parent collection.
    ParentDraftAndAttach,
}

// === impl Operation ===

impl Operation {
    /// Every operation, in the order of the enum.
    pub const ALL: [Operation; 26] = [
        Operation::List,
        Operation::Draft,
        Operation::ListVectors,
        Operation::Attach,
        Operation::AddVectors,
        Operation::ListFiles,
        Operation::PutFile,
        Operation::Read,
        Operation::GetFile,
        Operation::SearchVectors,
        Operation::GetVector,
        Operation::Edit,
        Operation::Commit,
        Operation::RemoveFile,
        Operation::RemoveVectors,
        Operation::DiscardChanges,
        Operation::Detach,
        Operation::Mutate,
        Operation::GetStatus,
        Operation::Create,
        Operation::ResetStats,
        Operation::Publish,
        Operation::Delete,
        Operation::GetSecret,
        Operation::SetSecret,
        Operation::SetDownloadWeight,
    ];

    /// The upstream name, as written in permission lists and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Draft => "draft",
            Operation::ListVectors => "list_vectors",
            Operation::Attach => "attach",
            Operation::AddVectors => "add_vectors",
            Operation::ListFiles => "list_files",
            Operation::PutFile => "put_file",
            Operation::Read => "read",
            Operation::GetFile => "get_file",
            Operation::SearchVectors => "search_vectors",
            Operation::GetVector => "get_vector",
            Operation::Edit => "edit",
            Operation::Commit => "commit",
            Operation::RemoveFile => "remove_file",
            Operation::RemoveVectors => "remove_vectors",
            Operation::DiscardChanges => "discard_changes",
            Operation::Detach => "detach",
            Operation::Mutate => "mutate",
            Operation::GetStatus => "get_status",
            Operation::Create => "create",
            Operation::ResetStats => "reset_stats",
            Operation::Publish => "publish",
            Operation::Delete => "delete",
            Operation::GetSecret => "get_secret",
            Operation::SetSecret => "set_secret",
            Operation::SetDownloadWeight => "set_download_weight",
        }
    }

    /// The operation named `name` (exact, case-sensitive upstream name), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Operation::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether this is a read-type operation (§2.4): read, list, get_file, list_files,
    /// get_vector, list_vectors, search_vectors.
    pub fn is_read_type(self) -> bool {
        matches!(
            self,
            Operation::Read
                | Operation::List
                | Operation::GetFile
                | Operation::ListFiles
                | Operation::GetVector
                | Operation::ListVectors
                | Operation::SearchVectors
        )
    }

    /// Where the §2.4 wrapper looks for a grant. rhizo: `discard_changes` and
    /// `get_status`, which §2.4 does not place, are checked on the artifact like the
    /// other write operations.
    pub fn checked_on(self) -> CheckedOn {
        match self {
            op if op.is_read_type() => CheckedOn::ArtifactThenParent,
            Operation::Draft | Operation::Attach | Operation::Detach | Operation::Mutate => {
                CheckedOn::Parent
            }
            Operation::Create => CheckedOn::ParentDraftAndAttach,
            _ => CheckedOn::Artifact,
        }
    }

    /// The workspace permission that grants this operation when no permission entry
    /// does (§2.4 "Final fallback"): `r` for read-type operations; `rw` for create,
    /// draft, attach, detach, edit, commit, put_file, remove_file, add/remove_vectors,
    /// discard_changes, set_secret and set_download_weight; admin for delete,
    /// reset_stats, publish and get_secret. rhizo: `get_status` (unlisted) needs `rw`
    /// like its sibling `discard_changes`; `mutate` (unlisted) needs admin, the
    /// fallback §2.5 names for it at edit.
    pub fn workspace_fallback(self) -> Permission {
        match self {
            op if op.is_read_type() => Permission::Read,
            Operation::Delete
            | Operation::ResetStats
            | Operation::Publish
            | Operation::GetSecret
            | Operation::Mutate => Permission::Admin,
            _ => Permission::ReadWrite,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Operation as Op;

const L: &[Op] = &[Op::List];
const L_PLUS: &[Op] = &[Op::List, Op::Draft];
const LV: &[Op] = &[Op::List, Op::ListVectors];
const LV_PLUS: &[Op] = &[
    Op::List,
    Op::ListVectors,
    Op::Draft,
    Op::Attach,
    Op::AddVectors,
];
const LF: &[Op] = &[Op::List, Op::ListFiles];
const LF_PLUS: &[Op] = &[Op::List, Op::ListFiles, Op::Draft, Op::Attach, Op::PutFile];
const R: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::ListFiles,
    Op::List,
    Op::SearchVectors,
    Op::GetVector,
];
const R_PLUS: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::ListFiles,
    Op::List,
    Op::SearchVectors,
    Op::GetVector,
    Op::PutFile,
    Op::Draft,
    Op::Attach,
    Op::AddVectors,
];
const RW: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::GetVector,
    Op::SearchVectors,
    Op::ListFiles,
    Op::ListVectors,
    Op::List,
    Op::Edit,
    Op::Commit,
    Op::PutFile,
    Op::AddVectors,
    Op::RemoveFile,
    Op::RemoveVectors,
    Op::DiscardChanges,
    Op::Detach,
    Op::Mutate,
];
const RD_PLUS: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::GetVector,
    Op::SearchVectors,
    Op::ListFiles,
    Op::ListVectors,
    Op::List,
    Op::Edit,
    Op::PutFile,
    Op::AddVectors,
    Op::RemoveFile,
    Op::RemoveVectors,
    Op::DiscardChanges,
    Op::GetStatus,
    Op::Draft,
];
const RW_PLUS: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::GetVector,
    Op::SearchVectors,
    Op::ListFiles,
    Op::ListVectors,
    Op::List,
    Op::Edit,
    Op::Commit,
    Op::PutFile,
    Op::AddVectors,
    Op::RemoveFile,
    Op::RemoveVectors,
    Op::DiscardChanges,
    Op::Detach,
    Op::Mutate,
    Op::GetStatus,
    Op::Draft,
    Op::Attach,
];
const ALL_CODE: &[Op] = &[
    Op::Read,
    Op::GetFile,
    Op::GetVector,
    Op::SearchVectors,
    Op::ListFiles,
    Op::ListVectors,
    Op::List,
    Op::Edit,
    Op::Commit,
    Op::PutFile,
    Op::AddVectors,
    Op::RemoveFile,
    Op::RemoveVectors,
    Op::DiscardChanges,
    Op::Detach,
    Op::Mutate,
    Op::GetStatus,
    Op::Draft,
    Op::Attach,
    Op::Create,
    Op::ResetStats,
    Op::Publish,
    Op::Delete,
];

/// The permission codes of §2.2, in the order the spec lists them.
pub const CODES: [&str; 13] = [
    "n", "l", "l+", "lv", "lv+", "lf", "lf+", "r", "r+", "rw", "rd+", "rw+", "*",
];

/// The operations a permission code grants (§2.2), in the spec's order; empty for `n`
/// and for an unknown code. No code grants `get_secret`, `set_secret` or
/// `set_download_weight`.
pub fn code_operations(code: &str) -> &'static [Operation] {
    match code {
        "l" => L,
        "l+" => L_PLUS,
        "lv" => LV,
        "lv+" => LV_PLUS,
        "lf" => LF,
        "lf+" => LF_PLUS,
        "r" => R,
        "r+" => R_PLUS,
        "rw" => RW,
        "rd+" => RD_PLUS,
        "rw+" => RW_PLUS,
        "*" => ALL_CODE,
        _ => &[],
    }
}

/// Whether one permission value grants `op` (§2.1, §2.2): a code string grants its
/// [`code_operations`]; a list grants the operations it names (exact upstream names,
/// other elements ignored). rhizo: any other JSON value grants nothing (upstream
/// raises on it).
pub fn grants(value: &Value, op: Operation) -> bool {
    match value {
        Value::String(code) => code_operations(code).contains(&op),
        Value::Array(names) => names.iter().any(|n| n.as_str() == Some(op.as_str())),
        _ => false,
    }
}

/// The operation names one permission value grants, as `_permissions` shows them: a
/// code expanded by [`code_operations`]; a list's string elements as given (names that
/// are no operation included, as upstream passes lists through); nothing otherwise.
pub fn expand(value: &Value) -> Vec<String> {
    match value {
        Value::String(code) => code_operations(code)
            .iter()
            .map(|op| op.as_str().to_owned())
            .collect(),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `_permissions` view of an artifact response (§2.2): each key of
/// `config.permissions` → the list of operation names it grants ([`expand`]). A
/// `permissions` that is missing or not an object gives `{}`.
pub fn permissions_view(permissions: Option<&Value>) -> Map<String, Value> {
    let Some(Value::Object(entries)) = permissions else {
        return Map::new();
    };
    entries
        .iter()
        .map(|(key, value)| {
            let ops = expand(value).into_iter().map(Value::String).collect();
            (key.clone(), Value::Array(ops))
        })
        .collect()
}

/// `config.permissions` of an artifact config, if the config is an object that has it.
pub fn config_permissions(config: Option<&Value>) -> Option<&Value> {
    config?.get("permissions")
}

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

/// One check of a §2.5 gate list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The §2.4 rule for the operation ([`authorize`]).
    Op(Operation),
    /// The operation on the parent collection's permissions, or the caller's workspace
    /// permission of at least `fallback` (the gates of §2.5 name their own fallback).
    Parent {
        /// The operation looked up in the parent's permissions.
        op: Operation,
        /// The workspace permission that passes the gate instead.
        fallback: Permission,
    },
}

/// Runs `gates` in order; the first that fails decides the error.
///
/// # Errors
/// Those of [`authorize`] for [`Gate::Op`]; "User does not have permission '\<op\>' on the
/// parent collection." for a failed [`Gate::Parent`].
pub fn enforce(subject: &Subject<'_>, caller: &Caller, gates: &[Gate]) -> ArtifactResult<()> {
    for gate in gates {
        match *gate {
            Gate::Op(op) => authorize(subject, caller, op)?,
            Gate::Parent { op, fallback } => {
                if !(check_config(subject.parent_config, caller, op)
                    || caller.can(subject.workspace, fallback))
                {
                    return Err(denied_on_parent(op));
                }
            }
        }
    }
    Ok(())
}

/// The gates of `edit` (§2.5 "edit"):
///
/// * `stage=True` needs `edit`;
/// * `stage=False` needs `edit` + `commit`, and, for a child with committed versions,
///   `mutate` on the parent or workspace admin;
/// * `version="new"` under a parent also needs `commit` on the parent (rhizo: with a
///   workspace-rw fallback, `commit`'s own; applied whether staged or not, as the spec
///   line is unconditional).
pub fn edit_gates(
    stage: bool,
    new_version: bool,
    has_parent: bool,
    has_versions: bool,
) -> Vec<Gate> {
    let mut gates = vec![Gate::Op(Operation::Edit)];
    if !stage {
        gates.push(Gate::Op(Operation::Commit));
        if has_parent && has_versions {
            gates.push(Gate::Parent {
                op: Operation::Mutate,
                fallback: Permission::Admin,
            });
        }
    }
    if new_version && has_parent {
        gates.push(Gate::Parent {
            op: Operation::Commit,
            fallback: Permission::ReadWrite,
        });
    }
    gates
}

/// The gates of `commit` (§2.5 "commit"): `commit`; for a first commit (no versions yet)
/// of a child, also `attach` on the parent or workspace rw.
pub fn commit_gates(has_parent: bool, has_versions: bool) -> Vec<Gate> {
    let mut gates = vec![Gate::Op(Operation::Commit)];
    if has_parent && !has_versions {
        gates.push(Gate::Parent {
            op: Operation::Attach,
            fallback: Permission::ReadWrite,
        });
    }
    gates
}

/// The gates of `delete` (§2.5 "delete", §3.6): `delete`; deleting a whole child
/// (`version=None`) non-recursively also needs `detach` on the parent or workspace
/// admin.
pub fn delete_gates(has_parent: bool, whole_artifact: bool, recursive: bool) -> Vec<Gate> {
    let mut gates = vec![Gate::Op(Operation::Delete)];
    if has_parent && whole_artifact && !recursive {
        gates.push(Gate::Parent {
            op: Operation::Detach,
            fallback: Permission::Admin,
        });
    }
    gates
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// Whether `caller` is the recipient of a child in a private-children collection
/// (§1.4): the parent's config sets `private_children` and a `recipient_field`, and the
/// child's `manifest[recipient_field]` equals the caller's e-mail.
pub fn is_recipient(
    parent_config: Option<&Value>,
    manifest: Option<&Value>,
    caller: &Caller,
) -> bool {
    let Some(config) = parent_config else {
        return false;
    };
    if !truthy(config.get("private_children")) {
        return false;
    }
    let Some(field) = config.get("recipient_field").and_then(Value::as_str) else {
        return false;
    };
    let Some(email) = caller.email.as_deref() else {
        return false;
    };
    manifest
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .is_some_and(|r| r == email)
}

/// Whether the recipient self-delete exception applies (§1.4 `recipient_can_delete`,
/// §2.5 "delete"): the parent also sets `recipient_can_delete` and the caller
/// [`is_recipient`] of the child.
pub fn recipient_may_delete(
    parent_config: Option<&Value>,
    manifest: Option<&Value>,
    caller: &Caller,
) -> bool {
    parent_config.is_some_and(|c| truthy(c.get("recipient_can_delete")))
        && is_recipient(parent_config, manifest, caller)
}

/// The restriction a private-children collection puts on listing its children (§1.4,
/// §3.8 "Private-children collections"): when the parent's config sets
/// `private_children` and a `recipient_field` and the caller is not admin of
/// `workspace`, the caller only sees children whose `manifest[field]` equals
/// `email`. `None` when nothing is restricted. An `email` of `None` (no e-mail known)
/// matches no child.
pub fn recipient_filter<'a>(
    parent_config: Option<&'a Value>,
    workspace: &str,
    caller: &'a Caller,
) -> Option<RecipientFilter<'a>> {
    let config = parent_config?;
    if !truthy(config.get("private_children")) || caller.can(workspace, Permission::Admin) {
        return None;
    }
    let field = config.get("recipient_field").and_then(Value::as_str)?;
    Some(RecipientFilter {
        field,
        email: caller.email.as_deref(),
    })
}

/// What [`recipient_filter`] restricts a listing to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientFilter<'a> {
    /// The manifest key holding the recipient's e-mail.
    pub field: &'a str,
    /// The caller's e-mail; `None` matches no child.
    pub email: Option<&'a str>,
}

// === impl RecipientFilter ===

impl RecipientFilter<'_> {
    /// Whether a child with `manifest` passes the filter.
    pub fn admits(&self, manifest: Option<&Value>) -> bool {
        let Some(email) = self.email else {
            return false;
        };
        manifest
            .and_then(|m| m.get(self.field))
            .and_then(Value::as_str)
            .is_some_and(|r| r == email)
    }
}

/// The permission decision of `delete` (§2.5, §3.6): the recipient of a child of a
/// collection with `recipient_can_delete` may delete it (rhizo: without further
/// checks); anyone else passes [`delete_gates`].
///
/// # Errors
/// Those of [`enforce`].
pub fn authorize_delete(
    subject: &Subject<'_>,
    caller: &Caller,
    manifest: Option<&Value>,
    whole_artifact: bool,
    recursive: bool,
) -> ArtifactResult<()> {
    if recipient_may_delete(subject.parent_config, manifest, caller) {
        return Ok(());
    }
    let gates = delete_gates(subject.has_parent(), whole_artifact, recursive);
    enforce(subject, caller, &gates)
}

/// The permission decision of `create` (§2.5 "create"):
///
/// * with a parent (`parent` describes the parent collection itself: its config, its
///   own parent's config and its workspace): `list` on the parent by the §2.4 rule, then
///   `draft` (`stage=True`) or `attach` on the parent's permissions, each with a
///   workspace-rw fallback;
/// * without one: workspace rw on `workspace`.
///
/// The persistence of the target workspace is a separate check
/// ([`require_persistent_workspace`]).
///
/// # Errors
/// [`ArtifactError::Permission`]: "User does not have permission 'list' on the
/// artifact." when the parent is not listable, "User does not have permission
/// '\<draft|attach\>' on the parent collection.", and (rhizo's wording) "User does not
/// have permission 'create' in the workspace '\<ws\>'." for a root artifact.
pub fn authorize_create(
    parent: Option<&Subject<'_>>,
    workspace: &str,
    caller: &Caller,
    stage: bool,
) -> ArtifactResult<()> {
    let Some(parent) = parent else {
        if caller.can(workspace, Permission::ReadWrite) {
            return Ok(());
        }
        return Err(ArtifactError::Permission(format!(
            "User does not have permission 'create' in the workspace '{workspace}'."
        )));
    };
    authorize(parent, caller, Operation::List)?;
    let op = if stage {
        Operation::Draft
    } else {
        Operation::Attach
    };
    if check_config(parent.config, caller, op)
        || caller.can(parent.workspace, Permission::ReadWrite)
    {
        Ok(())
    } else {
        Err(denied_on_parent(op))
    }
}

/// The target workspace of `create` must be persistent (§2.5 "create"): anonymous and
/// ephemeral workspaces cannot hold artifacts.
///
/// # Errors
/// [`ArtifactError::Permission`] (rhizo's wording) "Workspace '\<ws\>' is not persistent:
/// artifacts can only be created in persistent workspaces." when `persistent` is false.
pub fn require_persistent_workspace(workspace: &str, persistent: bool) -> ArtifactResult<()> {
    if persistent {
        Ok(())
    } else {
        Err(ArtifactError::Permission(format!(
            "Workspace '{workspace}' is not persistent: artifacts can only be created in persistent workspaces."
        )))
    }
}

/// The permission decision of `set_parent` (§2.5 "set_parent"): `read` on the artifact
/// (§2.4 rule); `detach` on the old parent, if any, or workspace admin; and, when a new
/// parent is given (described like the artifact, as the subject of its own checks),
/// `read` on it (§2.4 rule) and `attach` on its permissions or workspace rw. The new
/// parent must be in the artifact's workspace. The cycle check needs the ancestry and
/// is the caller's.
///
/// # Errors
/// [`ArtifactError::Permission`] as in [`authorize`] and [`enforce`];
/// [`ArtifactError::InvalidArgument`] (rhizo's wording) when the new parent is in
/// another workspace.
pub fn authorize_set_parent(
    subject: &Subject<'_>,
    new_parent: Option<&Subject<'_>>,
    caller: &Caller,
) -> ArtifactResult<()> {
    authorize(subject, caller, Operation::Read)?;
    if subject.has_parent() {
        enforce(
            subject,
            caller,
            &[Gate::Parent {
                op: Operation::Detach,
                fallback: Permission::Admin,
            }],
        )?;
    }
    let Some(new_parent) = new_parent else {
        return Ok(());
    };
    if new_parent.workspace != subject.workspace {
        return Err(ArtifactError::invalid(format!(
            "The new parent must be in the artifact's workspace '{}', not '{}'.",
            subject.workspace, new_parent.workspace
        )));
    }
    authorize(new_parent, caller, Operation::Read)?;
    if check_config(new_parent.config, caller, Operation::Attach)
        || caller.can(new_parent.workspace, Permission::ReadWrite)
    {
        Ok(())
    } else {
        Err(denied_on_parent(Operation::Attach))
    }
}

/// The config's `permissions` object, created if missing.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when the config or its `permissions` is not an
/// object.
fn permissions_mut(config: &mut Value) -> ArtifactResult<&mut Map<String, Value>> {
    if config.is_null() {
        *config = Value::Object(Map::new());
    }
    let Value::Object(map) = config else {
        return Err(ArtifactError::invalid("The config must be a dict."));
    };
    let permissions = map
        .entry("permissions")
        .or_insert_with(|| Value::Object(Map::new()));
    if permissions.is_null() {
        *permissions = Value::Object(Map::new());
    }
    match permissions {
        Value::Object(p) => Ok(p),
        _ => Err(ArtifactError::invalid(
            "config.permissions must be a dict of principal to permission.",
        )),
    }
}

/// Creator rights at create (§2.5 "Creator rights", §3.1): `config` (`None`/`null` → `{}`)
/// with `permissions[creator_id] = "*"`, replacing any entry the client gave for it. The
/// service passes [`Caller::owner_id`].
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when `config` or its `permissions` is not an object.
pub fn grant_creator(config: Option<Value>, creator_id: &str) -> ArtifactResult<Value> {
    let mut config = config.unwrap_or(Value::Null);
    permissions_mut(&mut config)?.insert(creator_id.to_owned(), Value::String("*".into()));
    Ok(config)
}

/// The permission re-merge of a direct (non-staged) `edit(config=…)` of a child (§2.5,
/// §3.2): the new `config`'s permissions, then `caller_id` → `"*"`, then every entry of
/// the parent's `config.permissions` (in the spec's order, so a parent entry for the
/// caller replaces the `"*"`). Nothing else of the parent is copied.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when `config` or its `permissions` is not an object.
pub fn merge_child_permissions(
    config: Value,
    parent_config: Option<&Value>,
    caller_id: &str,
) -> ArtifactResult<Value> {
    let mut config = config;
    let permissions = permissions_mut(&mut config)?;
    permissions.insert(caller_id.to_owned(), Value::String("*".into()));
    if let Some(Value::Object(parent)) = config_permissions(parent_config) {
        for (key, value) in parent {
            permissions.insert(key.clone(), value.clone());
        }
    }
    Ok(config)
}
