//! [`MemoryStore`]: the [`Store`] kept in the process's memory, for `rhizo serve
//! --database-uri memory` and tests. It answers exactly as [`super::SqlStore`] does (the
//! contract tests in `control-plane/tests/storage.rs` run against both); its data is gone
//! when the process ends.
//!
//! One `std::sync::Mutex` guards all tables; no method awaits while holding it.

use super::{Block, BlockKind, EventFilter, EventLog, Store, StoreError, WorkspaceRecord};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Event rows a [`MemoryStore`] keeps by default; once full, the oldest tenth is dropped
/// (a database grows on disk, memory must not grow without bound).
pub const DEFAULT_EVENT_LIMIT: usize = 100_000;

/// A [`Store`] in memory. Cloning is not offered: share it as `Arc<dyn Store>`.
#[derive(Debug)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    event_limit: usize,
}

#[derive(Debug, Default)]
struct Tables {
    /// Workspace records by id (ordered, as `list_workspaces` returns them).
    workspaces: BTreeMap<String, WorkspaceRecord>,
    /// Token hash → revocation expiry (unix seconds).
    revoked: BTreeMap<String, i64>,
    /// Blocks by (kind, key).
    blocks: BTreeMap<(BlockKind, String), Block>,
    /// Event rows in insertion order (ids increase).
    events: Vec<EventLog>,
    /// The id of the last row appended (ids are never reused, as with an auto-increment).
    last_event_id: i64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    /// An empty store keeping at most [`DEFAULT_EVENT_LIMIT`] event rows.
    pub fn new() -> Self {
        Self::with_event_limit(DEFAULT_EVENT_LIMIT)
    }

    /// An empty store keeping at most `event_limit` event rows (at least 10); beyond that
    /// the oldest tenth of the rows is dropped before a row is appended.
    pub fn with_event_limit(event_limit: usize) -> Self {
        MemoryStore {
            tables: Mutex::new(Tables::default()),
            event_limit: event_limit.max(10),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves whole rows behind: the data is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `e` passes `filter` (the same conditions as the SQL `WHERE` clause).
fn accepts(filter: &EventFilter, e: &EventLog) -> bool {
    e.workspace == filter.workspace
        && e.user_id == filter.user_id
        && filter
            .event_type
            .as_ref()
            .is_none_or(|t| *t == e.event_type)
        && filter.start_ms.is_none_or(|s| e.timestamp_ms >= s)
        && filter.end_ms.is_none_or(|t| e.timestamp_ms <= t)
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_workspace(&self, ws: &WorkspaceRecord) -> Result<(), StoreError> {
        self.tables().workspaces.insert(ws.id.clone(), ws.clone());
        Ok(())
    }

    async fn get_workspace(&self, id: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        Ok(self.tables().workspaces.get(id).cloned())
    }

    async fn delete_workspace(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.tables().workspaces.remove(id).is_some())
    }

    async fn list_workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        Ok(self.tables().workspaces.values().cloned().collect())
    }

    async fn put_block(&self, block: &Block) -> Result<(), StoreError> {
        self.tables()
            .blocks
            .insert((block.kind, block.key.clone()), block.clone());
        Ok(())
    }

    async fn delete_block(&self, kind: BlockKind, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .tables()
            .blocks
            .remove(&(kind, key.to_owned()))
            .is_some())
    }

    async fn list_blocks(&self, now_unix: i64) -> Result<Vec<Block>, StoreError> {
        let mut out: Vec<Block> = self
            .tables()
            .blocks
            .values()
            .filter(|b| b.expires_at > now_unix)
            .cloned()
            .collect();
        // The order of the SQL backend: kind as stored text, then key.
        out.sort_by(|a, b| (a.kind.as_str(), &a.key).cmp(&(b.kind.as_str(), &b.key)));
        Ok(out)
    }

    async fn revoke_token(&self, token_hash: &str, expires_at_unix: i64) -> Result<(), StoreError> {
        let mut t = self.tables();
        let exp = t.revoked.entry(token_hash.to_owned()).or_insert(i64::MIN);
        *exp = (*exp).max(expires_at_unix);
        Ok(())
    }

    async fn is_revoked(&self, token_hash: &str) -> Result<bool, StoreError> {
        let now = super::now_unix();
        Ok(self
            .tables()
            .revoked
            .get(token_hash)
            .is_some_and(|exp| *exp > now))
    }

    async fn list_revocations(&self, now_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self
            .tables()
            .revoked
            .iter()
            .filter(|(_, exp)| **exp > now_unix)
            .map(|(h, exp)| (h.clone(), *exp))
            .collect())
    }

    async fn purge_expired_revocations(&self, now_unix: i64) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let before = t.revoked.len();
        t.revoked.retain(|_, exp| *exp > now_unix);
        Ok((before - t.revoked.len()) as u64)
    }

    async fn log_event(
        &self,
        workspace: &str,
        user_id: &str,
        event_type: &str,
        data: Option<&serde_json::Value>,
        timestamp_ms: i64,
    ) -> Result<EventLog, StoreError> {
        let mut t = self.tables();
        if t.events.len() >= self.event_limit {
            let drop = self.event_limit / 10;
            t.events.drain(..drop);
        }
        t.last_event_id += 1;
        let row = EventLog {
            id: t.last_event_id,
            event_type: event_type.into(),
            workspace: workspace.into(),
            user_id: user_id.into(),
            timestamp_ms,
            data: data.cloned(),
        };
        t.events.push(row.clone());
        Ok(row)
    }

    async fn get_events(&self, filter: &EventFilter) -> Result<Vec<EventLog>, StoreError> {
        let mut rows: Vec<EventLog> = self
            .tables()
            .events
            .iter()
            .filter(|e| accepts(filter, e))
            .cloned()
            .collect();
        rows.sort_by_key(|e| (e.timestamp_ms, e.id));
        Ok(rows)
    }

    async fn event_stats(&self, filter: &EventFilter) -> Result<Vec<(String, i64)>, StoreError> {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for e in self.tables().events.iter().filter(|e| accepts(filter, e)) {
            *counts.entry(e.event_type.clone()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_tenth_of_the_events_goes_when_full() {
        let store = MemoryStore::with_event_limit(20);
        for i in 0..25 {
            store.log_event("ws", "u", "e", None, i).await.unwrap();
        }
        let rows = store
            .get_events(&EventFilter::new("ws", "u"))
            .await
            .unwrap();
        // Two rows go before the 21st, the 23rd and the 25th row; ids are never reused.
        let ids: Vec<i64> = rows.iter().map(|e| e.id).collect();
        assert_eq!(ids, (7..=25).collect::<Vec<_>>());
    }
}
