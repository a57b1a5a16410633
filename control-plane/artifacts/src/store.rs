//! Persistence of artifact rows (spec artifacts.md §1.1).
//!
//! [`ArtifactStore`] is what the artifact manager holds, as `Arc<dyn ArtifactStore>`, so
//! tests can swap backends (STYLE.md §3, practice 16). [`SqlArtifactStore`] implements it
//! on SQLite and PostgreSQL with one schema (`control-plane/artifacts/migrations/
//! {sqlite,postgres}`), migrated on connect; [`MemoryArtifactStore`] keeps the same table
//! in memory. All three run through one contract test suite
//! (`control-plane/artifacts/tests/store.rs`).
//!
//! The table is the reference's: unique `(workspace, alias)`, an index on `workspace`, a
//! self-referencing `parent_id`. Two choices differ from it on purpose:
//!
//! * JSON columns are TEXT on both backends, not JSONB on PostgreSQL: the same SQL and
//!   the same sqlx `Any` driver serve both, and the listing filters of §3.8 are evaluated
//!   on the decoded rows for now (§1.1 allows it for an MVP). A later migration can move
//!   the PostgreSQL columns to JSONB (`USING col::jsonb`) when filters move into SQL.
//! * Deleting a parent sets its children's `parent_id` to NULL (`ON DELETE SET NULL`),
//!   so they become root artifacts. Upstream leaves the FK without an action, which
//!   fails the delete on PostgreSQL and leaves dangling ids on SQLite.

mod memory;
mod sql;

pub use memory::MemoryArtifactStore;
pub use sql::SqlArtifactStore;

use crate::error::ArtifactResult;
use crate::ids::ArtifactRef;
use crate::model::Artifact;
use async_trait::async_trait;

/// The persistence interface of the artifact manager. Object-safe; hold it as
/// `Arc<dyn ArtifactStore>`. Every method is one statement (or one locked step in memory),
/// so concurrent callers never see half a row.
#[async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    /// Checks that the store answers a trivial query now (readiness).
    async fn ping(&self) -> ArtifactResult<()>;

    /// Inserts `artifact` as it is (no field is changed).
    ///
    /// # Errors
    /// [`ArtifactError::AliasExists`](crate::ArtifactError::AliasExists) when the
    /// workspace already has the alias; [`ArtifactError::InvalidArgument`](crate::ArtifactError::InvalidArgument)
    /// when the id is taken; [`ArtifactError::NotFound`](crate::ArtifactError::NotFound)
    /// when `parent_id` names no row.
    async fn insert(&self, artifact: &Artifact) -> ArtifactResult<()>;

    /// The row with internal id `id`, if any.
    async fn get(&self, id: &str) -> ArtifactResult<Option<Artifact>>;

    /// The row with `alias` in `workspace`, if any.
    async fn get_by_alias(&self, workspace: &str, alias: &str) -> ArtifactResult<Option<Artifact>>;

    /// The row an `artifact_id` argument names, once resolved by
    /// [`resolve_artifact_id`](crate::ids::resolve_artifact_id) (§1.2): by primary key or
    /// by `(workspace, alias)`.
    async fn find(&self, target: &ArtifactRef) -> ArtifactResult<Option<Artifact>> {
        match target {
            ArtifactRef::Id(id) => self.get(id).await,
            ArtifactRef::Alias { workspace, alias } => self.get_by_alias(workspace, alias).await,
        }
    }

    /// Replaces every column of the row with `artifact.id` (but `id` and `created_at`)
    /// by `artifact`'s, with `last_modified` set to `now_unix` (seconds); returns the row
    /// as stored.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`](crate::ArtifactError::NotFound) when there is no such
    /// row or `parent_id` names none; [`ArtifactError::AliasExists`](crate::ArtifactError::AliasExists)
    /// when the new alias is taken in the (new) workspace.
    async fn update(&self, artifact: &Artifact, now_unix: i64) -> ArtifactResult<Artifact>;

    /// Deletes the row with `id` (§1.1: its `parent_id` is nulled first, then the row
    /// is deleted; its children's `parent_id` becomes NULL). `true` if there was one.
    async fn delete(&self, id: &str) -> ArtifactResult<bool>;

    /// The children of `parent_id`, ordered by id (creation order, ids being UUIDv7),
    /// skipping `offset` and returning at most `limit`.
    async fn list_children(
        &self,
        parent_id: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>>;

    /// How many rows have `parent_id` as parent (`config.child_count`, §1.4).
    async fn count_children(&self, parent_id: &str) -> ArtifactResult<u64>;

    /// Every row of `workspace`, ordered by id, skipping `offset` and returning at most
    /// `limit`.
    async fn list_workspace(
        &self,
        workspace: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>>;

    /// Adds `delta` to `view_count` in one atomic step (§1.8); `last_modified` is kept.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`](crate::ArtifactError::NotFound) when there is no such row.
    async fn add_views(&self, id: &str, delta: f64) -> ArtifactResult<()>;

    /// Adds `weight` to `download_count` in one atomic step (§1.8); `last_modified` is kept.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`](crate::ArtifactError::NotFound) when there is no such row.
    async fn add_downloads(&self, id: &str, weight: f64) -> ArtifactResult<()>;
}
