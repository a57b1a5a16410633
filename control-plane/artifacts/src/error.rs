//! [`ArtifactError`]: why an artifact operation failed, one variant per way the control
//! plane reports it (STYLE.md practice 15). This crate does not depend on
//! `rhizo-control-plane`; the service that wires it in maps each variant once:
//!
//! | variant | Python class ([`ArtifactError::python_class`]) | `ManagerError` | HTTP |
//! |---|---|---|---|
//! | [`NotFound`](ArtifactError::NotFound) | `KeyError` | `NotFound` | 404 |
//! | [`InvalidArgument`](ArtifactError::InvalidArgument) | `ValueError` | `InvalidArgument` | 400 |
//! | [`Permission`](ArtifactError::Permission) | `PermissionError` | `Permission` | 403 |
//! | [`AliasExists`](ArtifactError::AliasExists) | `FileExistsError` | none yet: `Remote(wire())` keeps the class | 409 |
//! | [`FileNotFound`](ArtifactError::FileNotFound) | `FileNotFoundError` | `Remote(wire())` | 404 |
//! | [`Store`](ArtifactError::Store) | `RuntimeError` | `Store` | 500 |
//! | [`ObjectStore`](ArtifactError::ObjectStore) | `RuntimeError` | `Store` | 500 |
//!
//! The messages are the ones a user reads; [`ArtifactError::wire`] puts the class in front,
//! as hypha-rpc clients expect (protocol.md §3.4).

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact (or the parent it names) does not exist (`KeyError`, 404; spec
    /// artifacts.md §2.4).
    #[error("{0}")]
    NotFound(String),
    /// An argument has a wrong value: a bad id, alias or version (`ValueError`, 400;
    /// §1.2, §1.3, §1.6).
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller lacks a permission (`PermissionError`, 403; §2).
    #[error("{0}")]
    Permission(String),
    /// Another artifact of the workspace already has this alias (`FileExistsError`;
    /// §1.3 "Explicit alias that already exists").
    #[error("Artifact with alias '{alias}' already exists in workspace '{workspace}'.")]
    AliasExists {
        /// The workspace of the existing artifact.
        workspace: String,
        /// The alias taken.
        alias: String,
    },
    /// A file the call names is not in the artifact (`FileNotFoundError`, 404; §3.4
    /// step 2, §3.13): "File '<path>' does not exist in the artifact."
    #[error("{0}")]
    FileNotFound(String),
    /// The database failed or holds a row this crate cannot read (`RuntimeError`, 500).
    #[error("artifact store: {0}")]
    Store(#[from] StoreError),
    /// The object store holding the file bytes failed: local I/O or, later, S3
    /// (`RuntimeError`, 500; §1.7, §5.1). The text names the operation and key and is
    /// meant for logs, not for callers.
    #[error("object store: {0}")]
    ObjectStore(String),
}

/// Shorthand for the results of artifact operations.
pub type ArtifactResult<T> = Result<T, ArtifactError>;

/// Why the database behind an [`crate::ArtifactStore`] failed: the control plane's own
/// store error, since both open, migrate and query their databases the same way
/// ([`rhizo_control_plane::storage::open_pool`]); `Corrupt`'s `key` is the artifact's
/// internal id.
pub use rhizo_control_plane::storage::StoreError;

// === impl ArtifactError ===

impl ArtifactError {
    /// `KeyError: Artifact with ID '<id>' does not exist.` (§2.4).
    pub fn not_found(id: &str) -> Self {
        ArtifactError::NotFound(format!("Artifact with ID '{id}' does not exist."))
    }

    /// `FileNotFoundError: File '<path>' does not exist in the artifact.` (§3.4, §3.13).
    pub fn file_not_found(path: &str) -> Self {
        ArtifactError::FileNotFound(format!("File '{path}' does not exist in the artifact."))
    }

    /// A [`ArtifactError::InvalidArgument`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ArtifactError::InvalidArgument(message.into())
    }

    /// The Python exception class the caller's client raises (see the module table).
    pub fn python_class(&self) -> &'static str {
        match self {
            ArtifactError::NotFound(_) => "KeyError",
            ArtifactError::InvalidArgument(_) => "ValueError",
            ArtifactError::Permission(_) => "PermissionError",
            ArtifactError::AliasExists { .. } => "FileExistsError",
            ArtifactError::FileNotFound(_) => "FileNotFoundError",
            ArtifactError::Store(_) | ArtifactError::ObjectStore(_) => "RuntimeError",
        }
    }

    /// The text of the reject sent to the caller: class, colon, message.
    pub fn wire(&self) -> String {
        format!("{}: {self}", self.python_class())
    }

    /// The HTTP status code of this error (§4: KeyError → 404, PermissionError → 403,
    /// validation → 400; an alias conflict is 409, a store failure 500).
    pub fn status(&self) -> u16 {
        match self {
            ArtifactError::NotFound(_) | ArtifactError::FileNotFound(_) => 404,
            ArtifactError::InvalidArgument(_) => 400,
            ArtifactError::Permission(_) => 403,
            ArtifactError::AliasExists { .. } => 409,
            ArtifactError::Store(_) | ArtifactError::ObjectStore(_) => 500,
        }
    }
}

impl From<sqlx::Error> for ArtifactError {
    fn from(e: sqlx::Error) -> Self {
        ArtifactError::Store(StoreError::Query(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_leads_with_the_python_class() {
        let e = ArtifactError::not_found("ws/x");
        assert_eq!(
            e.wire(),
            "KeyError: Artifact with ID 'ws/x' does not exist."
        );
        assert_eq!(e.status(), 404);
        let e = ArtifactError::AliasExists {
            workspace: "ws".into(),
            alias: "a".into(),
        };
        assert_eq!(
            e.wire(),
            "FileExistsError: Artifact with alias 'a' already exists in workspace 'ws'."
        );
        assert_eq!(ArtifactError::invalid("bad").wire(), "ValueError: bad");
        assert_eq!(ArtifactError::Permission("no".into()).status(), 403);
        let e = ArtifactError::ObjectStore("cannot read 'k': gone".into());
        assert_eq!((e.python_class(), e.status()), ("RuntimeError", 500));
    }
}
