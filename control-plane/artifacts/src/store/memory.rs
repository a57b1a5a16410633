//! [`MemoryArtifactStore`]: the [`ArtifactStore`] kept in the process's memory, for tests
//! and `--database-uri memory`. It answers exactly as [`super::SqlArtifactStore`] does (the
//! contract tests in `control-plane/artifacts/tests/store.rs` run against both); its data
//! is gone when the process ends.
//!
//! One `std::sync::Mutex` guards the table; no method awaits while holding it.

use super::ArtifactStore;
use crate::error::{ArtifactError, ArtifactResult};
use crate::model::Artifact;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// An [`ArtifactStore`] in memory. Share it as `Arc<dyn ArtifactStore>`.
#[derive(Debug, Default)]
pub struct MemoryArtifactStore {
    /// Rows by internal id (ordered, as the listings return them).
    rows: Mutex<BTreeMap<String, Artifact>>,
}

// === impl MemoryArtifactStore ===

impl MemoryArtifactStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, BTreeMap<String, Artifact>> {
        // A panic while holding the lock leaves whole rows behind: the data is still usable.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The checks the SQL constraints make: unique `(workspace, alias)` among the other rows,
/// and a `parent_id` that names a row (or the row itself).
fn check_constraints(rows: &BTreeMap<String, Artifact>, a: &Artifact) -> ArtifactResult<()> {
    if let Some(alias) = &a.alias {
        let taken = rows.values().any(|other| {
            other.id != a.id
                && other.workspace == a.workspace
                && other.alias.as_ref() == Some(alias)
        });
        if taken {
            return Err(ArtifactError::AliasExists {
                workspace: a.workspace.clone(),
                alias: alias.clone(),
            });
        }
    }
    match &a.parent_id {
        Some(parent) if *parent != a.id && !rows.contains_key(parent) => {
            Err(ArtifactError::not_found(parent))
        }
        _ => Ok(()),
    }
}

fn page(rows: impl Iterator<Item = Artifact>, offset: u64, limit: u64) -> Vec<Artifact> {
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    rows.skip(skip).take(take).collect()
}

#[async_trait]
impl ArtifactStore for MemoryArtifactStore {
    async fn ping(&self) -> ArtifactResult<()> {
        Ok(())
    }

    async fn insert(&self, artifact: &Artifact) -> ArtifactResult<()> {
        let mut rows = self.rows();
        if rows.contains_key(&artifact.id) {
            return Err(ArtifactError::invalid(format!(
                "An artifact with id '{}' already exists.",
                artifact.id
            )));
        }
        check_constraints(&rows, artifact)?;
        rows.insert(artifact.id.clone(), artifact.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> ArtifactResult<Option<Artifact>> {
        Ok(self.rows().get(id).cloned())
    }

    async fn get_by_alias(&self, workspace: &str, alias: &str) -> ArtifactResult<Option<Artifact>> {
        Ok(self
            .rows()
            .values()
            .find(|a| a.workspace == workspace && a.alias.as_deref() == Some(alias))
            .cloned())
    }

    async fn update(&self, artifact: &Artifact, now_unix: i64) -> ArtifactResult<Artifact> {
        let mut rows = self.rows();
        let Some(created_at) = rows.get(&artifact.id).map(|a| a.created_at) else {
            return Err(ArtifactError::not_found(&artifact.id));
        };
        check_constraints(&rows, artifact)?;
        let stored = Artifact {
            created_at,
            last_modified: now_unix,
            ..artifact.clone()
        };
        rows.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn delete(&self, id: &str) -> ArtifactResult<bool> {
        let mut rows = self.rows();
        if rows.remove(id).is_none() {
            return Ok(false);
        }
        for child in rows.values_mut() {
            if child.parent_id.as_deref() == Some(id) {
                child.parent_id = None;
            }
        }
        Ok(true)
    }

    async fn list_children(
        &self,
        parent_id: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>> {
        let rows = self.rows();
        let children = rows
            .values()
            .filter(|a| a.parent_id.as_deref() == Some(parent_id))
            .cloned();
        Ok(page(children, offset, limit))
    }

    async fn count_children(&self, parent_id: &str) -> ArtifactResult<u64> {
        let rows = self.rows();
        Ok(rows
            .values()
            .filter(|a| a.parent_id.as_deref() == Some(parent_id))
            .count() as u64)
    }

    async fn list_workspace(
        &self,
        workspace: &str,
        offset: u64,
        limit: u64,
    ) -> ArtifactResult<Vec<Artifact>> {
        let rows = self.rows();
        let in_ws = rows.values().filter(|a| a.workspace == workspace).cloned();
        Ok(page(in_ws, offset, limit))
    }

    async fn add_views(&self, id: &str, delta: f64) -> ArtifactResult<()> {
        match self.rows().get_mut(id) {
            Some(a) => {
                a.view_count += delta;
                Ok(())
            }
            None => Err(ArtifactError::not_found(id)),
        }
    }

    async fn add_downloads(&self, id: &str, weight: f64) -> ArtifactResult<()> {
        match self.rows().get_mut(id) {
            Some(a) => {
                a.download_count += weight;
                Ok(())
            }
            None => Err(ArtifactError::not_found(id)),
        }
    }
}
