//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver. Both
//! backends share one schema (the two migration directories differ only in the
//! auto-increment id of `event_logs`) and the same SQL (`$n` placeholders, `ON CONFLICT`
//! and `RETURNING` work on both).

use super::{Block, BlockKind, EventFilter, EventLog, Store, StoreError, WorkspaceRecord};
use async_trait::async_trait;
use sqlx::any::{install_default_drivers, AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};
use std::fmt::Write as _;
use std::path::Path;

/// The schema migrations; they ignore versions in the database they do not know, since
/// the artifact manager's tables may live in the same database with migrations of their
/// own.
fn sqlite_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/sqlite");
    m.set_ignore_missing(true);
    m
}

/// See [`sqlite_migrations`].
fn postgres_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    m.set_ignore_missing(true);
    m
}

/// A [`Store`] backed by a SQLite file, an in-memory SQLite database, or PostgreSQL.
/// Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    uri: String,
}

// === impl SqlStore ===

impl SqlStore {
    /// Opens the database at `uri` and brings its schema up to date. Accepted forms:
    ///
    /// * `sqlite://<path>` (relative or, as `sqlite:///abs/path`, absolute): the file and
    ///   its parent directory are created if missing (`mode=rwc` is added unless the URI
    ///   sets a `mode`), and the file is switched to WAL journaling;
    /// * `sqlite::memory:`: a private in-memory database (one connection, gone on close);
    /// * `postgres://user[:password]@host[:port]/database` (or `postgresql://`): the
    ///   database must exist.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUri`] for other schemes, [`StoreError::Open`] when the
    /// directory cannot be created or the server/file cannot be opened,
    /// [`StoreError::Migrate`] when the schema cannot be applied.
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let (pool, uri) = open_pool(uri, &sqlite_migrations(), &postgres_migrations()).await?;
        Ok(SqlStore { pool, uri })
    }

    /// The URI this store was opened with, password redacted (for logs).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Closes every connection, waiting for queries in flight. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn put_workspace(&self, ws: &WorkspaceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workspaces \
               (id, name, description, persistent, owners, read_only, config, service_types) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET \
               name = excluded.name, description = excluded.description, \
               persistent = excluded.persistent, owners = excluded.owners, \
               read_only = excluded.read_only, config = excluded.config, \
               service_types = excluded.service_types",
        )
        .bind(&ws.id)
        .bind(&ws.name)
        .bind(&ws.description)
        .bind(i64::from(ws.persistent))
        .bind(to_json(&ws.owners))
        .bind(i64::from(ws.read_only))
        .bind(to_json(&ws.config))
        .bind(to_json(&ws.service_types))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_workspace(&self, id: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        let row = sqlx::query(&format!("{WORKSPACE_SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    async fn delete_workspace(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        let rows = sqlx::query(&format!("{WORKSPACE_SELECT} ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(workspace_from_row).collect()
    }

    async fn put_block(&self, block: &Block) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO blocks (kind, block_key, reason, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, block_key) DO UPDATE SET reason = excluded.reason, \
               expires_at = excluded.expires_at",
        )
        .bind(block.kind.as_str())
        .bind(&block.key)
        .bind(&block.reason)
        .bind(block.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_block(&self, kind: BlockKind, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM blocks WHERE kind = $1 AND block_key = $2")
            .bind(kind.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_blocks(&self, now_unix: i64) -> Result<Vec<Block>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, block_key, reason, expires_at FROM blocks WHERE expires_at > $1 \
             ORDER BY kind, block_key",
        )
        .bind(now_unix)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(0)?;
            let key: String = r.try_get(1)?;
            // A kind this build does not know (a newer node wrote it) is skipped.
            let Some(kind) = BlockKind::parse(&kind) else {
                continue;
            };
            out.push(Block {
                kind,
                key,
                reason: r.try_get(2)?,
                expires_at: r.try_get(3)?,
            });
        }
        Ok(out)
    }

    async fn revoke_token(&self, token_hash: &str, expires_at_unix: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (token_hash, expires_at) VALUES ($1, $2) \
             ON CONFLICT (token_hash) DO UPDATE SET expires_at = \
               CASE WHEN excluded.expires_at > revoked_tokens.expires_at \
                    THEN excluded.expires_at ELSE revoked_tokens.expires_at END",
        )
        .bind(token_hash)
        .bind(expires_at_unix)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn is_revoked(&self, token_hash: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash FROM revoked_tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(super::now_unix())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn list_revocations(&self, now_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT token_hash, expires_at FROM revoked_tokens WHERE expires_at > $1")
                .bind(now_unix)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    async fn purge_expired_revocations(&self, now_unix: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now_unix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn log_event(
        &self,
        workspace: &str,
        user_id: &str,
        event_type: &str,
        data: Option<&serde_json::Value>,
        timestamp_ms: i64,
    ) -> Result<EventLog, StoreError> {
        let row = sqlx::query(
            "INSERT INTO event_logs (event_type, workspace, user_id, timestamp_ms, data) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(event_type)
        .bind(workspace)
        .bind(user_id)
        .bind(timestamp_ms)
        .bind(data.map(to_json))
        .fetch_one(&self.pool)
        .await?;
        Ok(EventLog {
            id: row.try_get("id")?,
            event_type: event_type.into(),
            workspace: workspace.into(),
            user_id: user_id.into(),
            timestamp_ms,
            data: data.cloned(),
        })
    }

    async fn get_events(&self, filter: &EventFilter) -> Result<Vec<EventLog>, StoreError> {
        let sql = format!(
            "SELECT id, event_type, workspace, user_id, timestamp_ms, data FROM event_logs{} \
             ORDER BY timestamp_ms, id",
            where_clause(filter)
        );
        let rows = bind_filter(sqlx::query(&sql), filter)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn event_stats(&self, filter: &EventFilter) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!(
            "SELECT event_type, COUNT(*) AS n FROM event_logs{} \
             GROUP BY event_type ORDER BY event_type",
            where_clause(filter)
        );
        let rows = bind_filter(sqlx::query(&sql), filter)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event_type")?, r.try_get("n")?)))
            .collect()
    }
}

const WORKSPACE_SELECT: &str = "SELECT id, name, description, persistent, owners, read_only, \
     config, service_types FROM workspaces";

fn workspace_from_row(row: &AnyRow) -> Result<WorkspaceRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let owners = from_json(row, "owners", "workspaces.owners", &id)?;
    let config = from_json(row, "config", "workspaces.config", &id)?;
    let service_types = from_json(row, "service_types", "workspaces.service_types", &id)?;
    Ok(WorkspaceRecord {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        persistent: row.try_get::<i64, _>("persistent")? != 0,
        owners,
        read_only: row.try_get::<i64, _>("read_only")? != 0,
        config,
        service_types,
        id,
    })
}

fn event_from_row(row: &AnyRow) -> Result<EventLog, StoreError> {
    let id: i64 = row.try_get("id")?;
    let data = match row.try_get::<Option<String>, _>("data")? {
        Some(text) => Some(
            serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                column: "event_logs.data",
                key: id.to_string(),
                source,
            })?,
        ),
        None => None,
    };
    Ok(EventLog {
        id,
        event_type: row.try_get("event_type")?,
        workspace: row.try_get("workspace")?,
        user_id: row.try_get("user_id")?,
        timestamp_ms: row.try_get("timestamp_ms")?,
        data,
    })
}

/// ` WHERE …` for `filter`; placeholders are numbered in the order [`bind_filter`] binds.
fn where_clause(filter: &EventFilter) -> String {
    let mut sql = String::from(" WHERE workspace = $1 AND user_id = $2");
    let mut n = 2;
    let mut add = |cond: &str| {
        n += 1;
        let _ = write!(sql, " AND {cond} ${n}");
    };
    if filter.event_type.is_some() {
        add("event_type =");
    }
    if filter.start_ms.is_some() {
        add("timestamp_ms >=");
    }
    if filter.end_ms.is_some() {
        add("timestamp_ms <=");
    }
    sql
}

fn bind_filter<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    filter: &'q EventFilter,
) -> Query<'q, Any, AnyArguments<'q>> {
    let mut query = query.bind(&filter.workspace).bind(&filter.user_id);
    if let Some(t) = &filter.event_type {
        query = query.bind(t);
    }
    if let Some(start) = filter.start_ms {
        query = query.bind(start);
    }
    if let Some(end) = filter.end_ms {
        query = query.bind(end);
    }
    query
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Only string-keyed maps, lists, strings and `Value`s are passed here: infallible.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    field: &str,
    column: &'static str,
    key: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(field)?;
    serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
        column,
        key: key.into(),
        source,
    })
}

/// Opens the database at `uri` (the forms of [`SqlStore::connect`]) and runs `sqlite` or
/// `postgres` on it, whichever matches the URI. Shared by every SQL store of the server
/// (the control plane's, the artifact manager's), so that they open, configure and
/// migrate a database the same way. Returns the pool and the URI with its password
/// redacted. Migrators that share one database should `set_ignore_missing(true)`.
///
/// # Errors
/// [`StoreError::UnsupportedUri`], [`StoreError::Open`], [`StoreError::Migrate`], as for
/// [`SqlStore::connect`].
pub async fn open_pool(
    uri: &str,
    sqlite: &Migrator,
    postgres: &Migrator,
) -> Result<(AnyPool, String), StoreError> {
    install_default_drivers();
    let shown = redact(uri);
    let open_err = |reason: String| StoreError::Open {
        uri: shown.clone(),
        reason,
    };
    let (url, options, migrator, file) = if uri.starts_with("sqlite::memory:") {
        // Every connection to `:memory:` is a new database: keep exactly one, forever.
        let options = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        (uri.to_string(), options, sqlite, false)
    } else if let Some(rest) = uri
        .strip_prefix("sqlite://")
        .or_else(|| uri.strip_prefix("sqlite:"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(open_err("no file path in the URI".into()));
        }
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let url = if query.split('&').any(|kv| kv.starts_with("mode=")) {
            uri.to_string()
        } else if query.is_empty() {
            format!("{uri}?mode=rwc")
        } else {
            format!("{uri}&mode=rwc")
        };
        (url, AnyPoolOptions::new().max_connections(8), sqlite, true)
    } else if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        (
            uri.to_string(),
            AnyPoolOptions::new().max_connections(16),
            postgres,
            false,
        )
    } else {
        return Err(StoreError::UnsupportedUri { uri: shown });
    };

    let pool = options
        .connect(&url)
        .await
        .map_err(|e| open_err(e.to_string()))?;
    if file {
        // Readers then never wait for the writer; the setting is stored in the file.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .map_err(|e| open_err(e.to_string()))?;
    }
    migrator
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            uri: shown.clone(),
            source,
        })?;
    Ok((pool, shown))
}

/// `uri` with the password (if any) replaced by `***`.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => uri.into(),
        },
        None => uri.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    #[test]
    fn where_clause_numbers_placeholders_in_bind_order() {
        let mut f = EventFilter::new("ws", "u");
        assert_eq!(where_clause(&f), " WHERE workspace = $1 AND user_id = $2");
        f.event_type = Some("t".into());
        f.end_ms = Some(5);
        assert_eq!(
            where_clause(&f),
            " WHERE workspace = $1 AND user_id = $2 AND event_type = $3 AND timestamp_ms <= $4"
        );
    }
}
