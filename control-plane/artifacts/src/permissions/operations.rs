//! Operations and permission codes (spec artifacts.md §2.2): every operation name, what
//! each code grants, explicit operation lists, and the `_permissions` view of responses.

use super::*;

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
