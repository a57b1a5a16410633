//! Persistence (DESIGN.md "storage: sqlx: SQLite (default) | Postgres").
//!
//! [`Store`] is what the rest of the control plane holds, as `Arc<dyn Store>`, so tests can
//! swap backends (STYLE.md §3, practice 16). [`SqlStore`] implements it on SQLite and
//! PostgreSQL with one schema (`control-plane/migrations/{sqlite,postgres}`), migrated on
//! connect; [`MemoryStore`] keeps the same tables in memory (`--database-uri memory`).
//! Both run through one contract test suite (`control-plane/tests/storage.rs`).
//!
//! What is stored:
//! * workspace records ([`WorkspaceRecord`], workspace-api.md §2.5);
//! * revoked tokens, as the SHA-256 hex of the token ([`token_hash`], §1.4 and §5.4);
//! * event logs ([`EventLog`], the `event_logs` table of §2.10, queried as in §5.5);
//! * blocked users and IP addresses ([`Block`], §9.3).
//!
//! Times are integers: revocation expiry in unix seconds, event timestamps in unix
//! milliseconds (UTC).

mod memory;
mod sql;

pub use memory::{MemoryStore, DEFAULT_EVENT_LIMIT};
pub use sql::{open_pool, redact, SqlStore};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// A stored workspace: the persistent fields of `WorkspaceInfo` (workspace-api.md §2.5).
/// `status` is runtime state and is not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    /// Workspace id (primary key).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Whether it survives its last client.
    pub persistent: bool,
    /// User ids (or e-mails) that own it.
    pub owners: Vec<String>,
    /// Whether clients may only read.
    pub read_only: bool,
    /// Free-form settings; the server uses `bookmarks` (list) and `environs` (map str → str).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Service types registered in the workspace: type id → ServiceTypeInfo (§2.6).
    pub service_types: BTreeMap<String, serde_json::Value>,
}

/// One row of the `event_logs` table (workspace-api.md §2.10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLog {
    /// Row id, increasing in insertion order.
    pub id: i64,
    /// Event type (the caller checks it has no spaces).
    pub event_type: String,
    /// Workspace the event was logged in.
    pub workspace: String,
    /// Id of the user who logged it.
    pub user_id: String,
    /// When it was logged: unix milliseconds, UTC.
    pub timestamp_ms: i64,
    /// Payload, if any.
    pub data: Option<serde_json::Value>,
}

/// What a [`Block`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// A user id: its tokens are refused everywhere.
    User,
    /// An IP address: its connections and HTTP requests are refused.
    Ip,
}

// === impl BlockKind ===

impl BlockKind {
    /// `"user"` or `"ip"`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::User => "user",
            BlockKind::Ip => "ip",
        }
    }

    /// The kind stored as `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(BlockKind::User),
            "ip" => Some(BlockKind::Ip),
            _ => None,
        }
    }
}

/// One row of the `blocks` table (workspace-api.md §9.3): `key` (a user id or an IP
/// address) is refused until `expires_at` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// User or IP.
    pub kind: BlockKind,
    /// The user id or the IP address, as given.
    pub key: String,
    /// Why, as given by the admin (may be empty).
    pub reason: String,
    /// Unix seconds after which the block no longer applies.
    pub expires_at: i64,
}

/// Filters of `get_events` / `get_event_stats` (workspace-api.md §5.5). The workspace and
/// user are always required (the reference restricts both); the rest narrow further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Workspace whose rows to read.
    pub workspace: String,
    /// User whose rows to read.
    pub user_id: String,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only rows with `timestamp_ms >= start_ms` (inclusive).
    pub start_ms: Option<i64>,
    /// Only rows with `timestamp_ms <= end_ms` (inclusive).
    pub end_ms: Option<i64>,
}

// === impl EventFilter ===

impl EventFilter {
    /// Every event of `user_id` in `workspace`.
    pub fn new(workspace: &str, user_id: &str) -> Self {
        EventFilter {
            workspace: workspace.into(),
            user_id: user_id.into(),
            ..Default::default()
        }
    }
}

/// Why a [`Store`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URI names no backend this build supports.
    #[error("unsupported database URI {uri:?}: expected sqlite://<path>, sqlite::memory: or postgres://…")]
    UnsupportedUri {
        /// The URI as given (password redacted).
        uri: String,
    },
    /// Connecting (or creating the SQLite file or its directory) failed.
    #[error("cannot open database at {uri}: {reason}")]
    Open {
        /// The URI (password redacted).
        uri: String,
        /// What went wrong.
        reason: String,
    },
    /// The schema migrations failed.
    #[error("cannot migrate database at {uri}: {source}")]
    Migrate {
        /// The URI (password redacted).
        uri: String,
        /// The migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored JSON column did not parse as the expected shape.
    #[error("corrupt {column} in stored row {key:?}: {source}")]
    Corrupt {
        /// The column, e.g. `workspaces.config`.
        column: &'static str,
        /// The row's key.
        key: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The persistence interface of the control plane. Object-safe; hold it as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks that the store answers a trivial query now (`/health/readiness`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts `ws`, or replaces every field of the record with the same id.
    async fn put_workspace(&self, ws: &WorkspaceRecord) -> Result<(), StoreError>;

    /// The record of `id`, if stored.
    async fn get_workspace(&self, id: &str) -> Result<Option<WorkspaceRecord>, StoreError>;

    /// Removes the record of `id`; `true` if there was one.
    async fn delete_workspace(&self, id: &str) -> Result<bool, StoreError>;

    /// Every stored record, ordered by id.
    async fn list_workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError>;

    /// Marks the token with SHA-256 hex `token_hash` (see [`token_hash`]) revoked until
    /// `expires_at_unix` (seconds; the token's own `exp`). Revoking again keeps the later
    /// expiry.
    async fn revoke_token(&self, token_hash: &str, expires_at_unix: i64) -> Result<(), StoreError>;

    /// Whether `token_hash` is revoked and that revocation has not expired (now < expiry).
    async fn is_revoked(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Revocations still in force at `now_unix`: `(token_hash, expires_at_unix)`.
    async fn list_revocations(&self, now_unix: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Deletes revocations whose expiry is at or before `now_unix` (seconds); returns how
    /// many were deleted.
    async fn purge_expired_revocations(&self, now_unix: i64) -> Result<u64, StoreError>;

    /// Appends an event log row stamped `timestamp_ms` (unix ms; see [`now_ms`]) and returns
    /// it with its id.
    async fn log_event(
        &self,
        workspace: &str,
        user_id: &str,
        event_type: &str,
        data: Option<&serde_json::Value>,
        timestamp_ms: i64,
    ) -> Result<EventLog, StoreError>;

    /// The rows matching `filter`, oldest first.
    async fn get_events(&self, filter: &EventFilter) -> Result<Vec<EventLog>, StoreError>;

    /// `(event_type, count)` of the rows matching `filter`, ordered by event type.
    async fn event_stats(&self, filter: &EventFilter) -> Result<Vec<(String, i64)>, StoreError>;

    /// Inserts `block`, or replaces the reason and expiry of the one with the same kind
    /// and key.
    async fn put_block(&self, block: &Block) -> Result<(), StoreError>;

    /// Removes the block of `key`; `true` if there was one (expired or not).
    async fn delete_block(&self, kind: BlockKind, key: &str) -> Result<bool, StoreError>;

    /// The blocks in force at `now_unix` (expiry after it), ordered by kind then key.
    async fn list_blocks(&self, now_unix: i64) -> Result<Vec<Block>, StoreError>;
}

/// The SHA-256 of `token` as 64 lowercase hex digits: the key under which a revocation is
/// stored (the token itself never is).
pub fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// The current time in unix seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A connection to the `postgres` maintenance database of the PostgreSQL server at
/// `server` (`postgres://user@host:port`, no database), for test set-up: when the server
/// does not answer, the local cluster is started with `pg_ctlcluster` (every version under
/// `/etc/postgresql`) and asked again for up to 10 s.
///
/// # Errors
/// The reason the last attempt failed, naming what was tried.
pub async fn postgres_admin(server: &str) -> Result<sqlx::PgConnection, String> {
    use sqlx::Connection as _;
    let admin = format!("{server}/postgres");
    if let Ok(conn) = sqlx::PgConnection::connect(&admin).await {
        return Ok(conn);
    }
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for version in &versions {
        let _ = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", version, "main", "start"])
            .status();
    }
    let mut last_err = None;
    for _ in 0..50 {
        match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Err(format!(
        "PostgreSQL is not reachable at {admin} (tried `pg_ctlcluster --skip-systemctl-redirect \
         <version> main start` for versions {versions:?}): {}",
        last_err.map(|e| e.to_string()).unwrap_or_default()
    ))
}
