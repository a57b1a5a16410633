//! The per-method gates of spec artifacts.md §2.5 (create, edit, commit, delete,
//! set_parent), the private-children rules of §1.4, creator rights at create and the
//! permission re-merge of a direct child edit. Built on [`super::authorize`].

use super::*;

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
