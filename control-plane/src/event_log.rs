//! The event log (workspace-api.md §2.10, §5.5): rows of `(event_type, workspace, user,
//! time, data)` that clients append with `log_event` and the server appends for some of
//! its own changes (`env_set`, `env_removed`), read back with `get_events` and
//! `get_event_stats`.
//!
//! [`EventLogs`] is a handle on the store's `event_logs` table: every row goes to the
//! store (memory or SQL, the same code either way). Not to be confused with the workspace
//! events of [`crate::events`], which are broadcast to live clients and never stored.

use crate::error::{ManagerError, ManagerResult};
use crate::storage::{now_ms, EventFilter, EventLog, Store};
use std::sync::Arc;

/// The event log, kept in the store. Cloning shares the store.
#[derive(Debug, Clone)]
pub struct EventLogs {
    store: Arc<dyn Store>,
}

// === impl EventLogs ===

impl EventLogs {
    /// The event log in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        EventLogs { store }
    }

    /// Appends a row of `kind` with `data`, logged by `user_id` in `ws`, stamped now.
    ///
    /// Errors: [`ManagerError::Store`] (`could not log the event: …`).
    pub async fn record(
        &self,
        ws: &str,
        user_id: &str,
        kind: &str,
        data: serde_json::Value,
    ) -> ManagerResult<()> {
        self.store
            .log_event(ws, user_id, kind, Some(&data), now_ms())
            .await
            .map(|_| ())
            .map_err(|e| ManagerError::Store(format!("could not log the event: {e}")))
    }

    /// The rows matching `filter`, oldest first.
    ///
    /// Errors: [`ManagerError::Store`] (`reading events: …`).
    pub async fn rows(&self, filter: &EventFilter) -> ManagerResult<Vec<EventLog>> {
        self.store
            .get_events(filter)
            .await
            .map_err(|e| ManagerError::Store(format!("reading events: {e}")))
    }
}
