//! [`SqlArtifactStore`]: the [`ArtifactStore`] on SQLite or PostgreSQL through sqlx's
//! `Any` driver. Both backends share one schema (the migrations differ only in column
//! type names) and the same SQL (`$n` placeholders and `RETURNING` work on both).
//!
//! The database may be the one the control plane's own store uses: it is opened with the
//! same [`open_pool`], the migrations have versions of their own (`20260301…`) and both
//! migrators run with `ignore_missing`, so each skips the other's rows in
//! `_sqlx_migrations`.

use super::ArtifactStore;
use crate::error::{ArtifactError, ArtifactResult, StoreError};
use crate::model::{Artifact, Version};
use async_trait::async_trait;
use rhizo_control_plane::storage::open_pool;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

fn sqlite_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/sqlite");
    m.set_ignore_missing(true);
    m
}

fn postgres_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    m.set_ignore_missing(true);
    m
}

/// An [`ArtifactStore`] backed by a SQLite file, an in-memory SQLite database, or
/// PostgreSQL. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqlArtifactStore {
    pool: AnyPool,
    uri: String,
}

// === impl SqlArtifactStore ===

impl SqlArtifactStore {
    /// Opens the database at `uri` and brings the `artifacts` table up to date. Accepted
    /// forms (those of the control plane's `--database-uri`):
    ///
    /// * `sqlite://<path>`: the file and its parent directory are created if missing
    ///   (`mode=rwc` is added unless the URI sets a `mode`), and the file is switched to
    ///   WAL journaling;
    /// * `sqlite::memory:`: a private in-memory database (one connection, gone on close);
    /// * `postgres://user[:password]@host[:port]/database` (or `postgresql://`): the
    ///   database must exist.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUri`] for other schemes, [`StoreError::Open`] when the
    /// directory cannot be created or the server/file cannot be opened,
    /// [`StoreError::Migrate`] when the schema cannot be applied (all inside
    /// [`ArtifactError::Store`]).
    pub async fn connect(uri: &str) -> ArtifactResult<Self> {
        let (pool, uri) = open_pool(uri, &sqlite_migrations(), &postgres_migrations()).await?;
        Ok(SqlArtifactStore { pool, uri })
    }

    /// The URI this store was opened with, password redacted (for logs).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Closes every connection, waiting for queries in flight. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The rows whose `column` (a fixed column name, never user input) equals `value`, in
    /// id order, `limit` of them from `offset`.
    async fn page_where(
        &self,
        column: &'static str,
        value: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM artifacts WHERE {column} = $1 ORDER BY id LIMIT $2 OFFSET $3"
        ))
        .bind(value)
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(artifact_from_row).collect()
    }

    /// The error for a failed write of `a`: a unique violation is the alias (or, if a
    /// row has the id, the id), a foreign-key violation the parent.
    async fn write_error(&self, e: sqlx::Error, a: &Artifact, inserting: bool) -> ArtifactError {
        let Some(db) = e.as_database_error() else {
            return e.into();
        };
        if db.is_foreign_key_violation() {
            return ArtifactError::not_found(a.parent_id.as_deref().unwrap_or_default());
        }
        if !db.is_unique_violation() {
            return e.into();
        }
        if inserting {
            match self.get(&a.id).await {
                Ok(Some(_)) => {
                    return ArtifactError::invalid(format!(
                        "An artifact with id '{}' already exists.",
                        a.id
                    ))
                }
                Ok(None) => {}
                Err(other) => return other,
            }
        }
        ArtifactError::AliasExists {
            workspace: a.workspace.clone(),
            alias: a.alias.clone().unwrap_or_default(),
        }
    }
}

const COLUMNS: &str = "id, type, workspace, parent_id, alias, manifest, staging, \
     download_count, view_count, file_count, created_at, created_by, last_modified, \
     versions, config, secrets";

#[async_trait]
impl ArtifactStore for SqlArtifactStore {
    async fn ping(&self) -> ArtifactResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert(&self, a: &Artifact) -> ArtifactResult<()> {
        let sql = format!(
            "INSERT INTO artifacts ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        let done = sqlx::query(&sql)
            .bind(&a.id)
            .bind(&a.kind)
            .bind(&a.workspace)
            .bind(&a.parent_id)
            .bind(&a.alias)
            .bind(a.manifest.as_ref().map(to_json))
            .bind(a.staging.as_ref().map(to_json))
            .bind(a.download_count)
            .bind(a.view_count)
            .bind(a.file_count)
            .bind(a.created_at)
            .bind(&a.created_by)
            .bind(a.last_modified)
            .bind(to_json(&a.versions))
            .bind(a.config.as_ref().map(to_json))
            .bind(a.secrets.as_ref().map(to_json))
            .execute(&self.pool)
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) => Err(self.write_error(e, a, true).await),
        }
    }

    async fn get(&self, id: &str) -> ArtifactResult<Option<Artifact>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM artifacts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(artifact_from_row).transpose()
    }

    async fn get_by_alias(&self, workspace: &str, alias: &str) -> ArtifactResult<Option<Artifact>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM artifacts WHERE workspace = $1 AND alias = $2"
        ))
        .bind(workspace)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(artifact_from_row).transpose()
    }

    async fn update(&self, a: &Artifact, now_unix: i64) -> ArtifactResult<Artifact> {
        let done = sqlx::query(
            "UPDATE artifacts SET type = $2, workspace = $3, parent_id = $4, alias = $5, \
               manifest = $6, staging = $7, download_count = $8, view_count = $9, \
               file_count = $10, created_by = $11, last_modified = $12, versions = $13, \
               config = $14, secrets = $15 \
             WHERE id = $1 RETURNING created_at",
        )
        .bind(&a.id)
        .bind(&a.kind)
        .bind(&a.workspace)
        .bind(&a.parent_id)
        .bind(&a.alias)
        .bind(a.manifest.as_ref().map(to_json))
        .bind(a.staging.as_ref().map(to_json))
        .bind(a.download_count)
        .bind(a.view_count)
        .bind(a.file_count)
        .bind(&a.created_by)
        .bind(now_unix)
        .bind(to_json(&a.versions))
        .bind(a.config.as_ref().map(to_json))
        .bind(a.secrets.as_ref().map(to_json))
        .fetch_optional(&self.pool)
        .await;
        match done {
            Ok(Some(row)) => Ok(Artifact {
                created_at: row.try_get("created_at")?,
                last_modified: now_unix,
                ..a.clone()
            }),
            Ok(None) => Err(ArtifactError::not_found(&a.id)),
            Err(e) => Err(self.write_error(e, a, false).await),
        }
    }

    async fn delete(&self, id: &str) -> ArtifactResult<bool> {
        // §1.1: null the row's own parent_id, then delete it; the schema's
        // `ON DELETE SET NULL` detaches its children.
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE artifacts SET parent_id = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM artifacts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_children(
        &self,
        parent_id: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>> {
        self.page_where("parent_id", parent_id, offset, limit).await
    }

    async fn count_children(&self, parent_id: &str) -> ArtifactResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM artifacts WHERE parent_id = $1")
            .bind(parent_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    async fn list_workspace(
        &self,
        workspace: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>> {
        self.page_where("workspace", workspace, offset, limit).await
    }

    async fn add_views(&self, id: &str, delta: f64) -> ArtifactResult<()> {
        let done = sqlx::query("UPDATE artifacts SET view_count = view_count + $1 WHERE id = $2")
            .bind(delta)
            .bind(id)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected(), id)
    }

    async fn add_downloads(&self, id: &str, weight: f64) -> ArtifactResult<()> {
        let done =
            sqlx::query("UPDATE artifacts SET download_count = download_count + $1 WHERE id = $2")
                .bind(weight)
                .bind(id)
                .execute(&self.pool)
                .await?;
        found(done.rows_affected(), id)
    }
}

fn found(rows_affected: u64, id: &str) -> ArtifactResult<()> {
    if rows_affected == 0 {
        Err(ArtifactError::not_found(id))
    } else {
        Ok(())
    }
}

/// `LIMIT`/`OFFSET` values: both backends take a signed 64-bit integer.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn artifact_from_row(row: &AnyRow) -> ArtifactResult<Artifact> {
    let id: String = row.try_get("id")?;
    let json = |column: &'static str| -> ArtifactResult<Option<Value>> {
        parse_json(row.try_get::<Option<String>, _>(column)?, column, &id)
    };
    let versions: Vec<Version> = match row.try_get::<Option<String>, _>("versions")? {
        Some(text) => serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
            column: "artifacts.versions",
            key: id.clone(),
            source,
        })?,
        None => Vec::new(),
    };
    Ok(Artifact {
        kind: row.try_get("type")?,
        workspace: row.try_get("workspace")?,
        parent_id: row.try_get("parent_id")?,
        alias: row.try_get("alias")?,
        manifest: json("manifest")?,
        staging: json("staging")?,
        download_count: row.try_get("download_count")?,
        view_count: row.try_get("view_count")?,
        file_count: row.try_get("file_count")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        last_modified: row.try_get("last_modified")?,
        versions,
        config: json("config")?,
        secrets: json("secrets")?,
        id,
    })
}

fn parse_json(
    text: Option<String>,
    column: &'static str,
    id: &str,
) -> ArtifactResult<Option<Value>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let value = serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
        column,
        key: id.into(),
        source,
    })?;
    Ok(Some(value))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Only `Value`s and version lists are passed here: string keys, infallible.
    serde_json::to_string(value).unwrap_or_default()
}
