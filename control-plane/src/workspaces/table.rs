//! The table under the workspace domain: the loaded workspace records
//! ([`WorkspaceInfo`], workspace-api.md §2.5) and the admission holds.
//!
//! Only [`super::Workspaces`] holds a [`WorkspaceTable`]: every change to a record goes
//! through it, which writes the record through the store and emits the workspace events.
//! `public`, `ws-user-root` and `ws-anonymous` exist from start.

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// A workspace record (subset of the reference's `WorkspaceInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// `"workspace"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Workspace id.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Whether it survives its last client.
    pub persistent: bool,
    /// User ids (or e-mails) that own it.
    pub owners: Vec<String>,
    /// Whether clients may only read.
    pub read_only: bool,
    /// Free-form settings; the server uses `bookmarks` (list) and `environs` (map).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Service types registered in the workspace, by id.
    #[serde(default)]
    pub service_types: std::collections::BTreeMap<String, serde_json::Value>,
}

// === impl WorkspaceInfo ===

impl WorkspaceInfo {
    /// A workspace record.
    pub fn new(id: &str, description: &str, persistent: bool, owners: Vec<String>) -> Self {
        WorkspaceInfo {
            kind: "workspace".into(),
            id: id.into(),
            name: id.into(),
            description: description.into(),
            persistent,
            owners,
            read_only: false,
            config: serde_json::Map::new(),
            service_types: std::collections::BTreeMap::new(),
        }
    }
}

/// The workspace table.
#[derive(Debug)]
pub struct WorkspaceTable {
    map: DashMap<String, WorkspaceInfo>,
    /// Admissions in progress per workspace ([`WorkspaceTable::hold`]): a workspace is never
    /// unloaded while a client is being admitted to it.
    holds: DashMap<String, usize>,
}

/// A client is being admitted to a workspace: while this lives, the workspace is not
/// unloaded ([`WorkspaceTable::unload_if_temporary`]). Dropping it releases the hold.
#[derive(Debug)]
pub struct Hold<'a> {
    table: &'a WorkspaceTable,
    id: String,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Some(mut n) = self.table.holds.get_mut(&self.id) {
            *n = n.saturating_sub(1);
        }
        self.table.holds.remove_if(&self.id, |_, n| *n == 0);
    }
}

impl Default for WorkspaceTable {
    fn default() -> Self {
        let map = DashMap::new();
        let mut public =
            WorkspaceInfo::new("public", "Public workspace", true, vec!["root".into()]);
        public.read_only = true;
        map.insert("public".into(), public);
        map.insert(
            "ws-user-root".into(),
            WorkspaceInfo::new("ws-user-root", "Root workspace", true, vec!["root".into()]),
        );
        map.insert(
            "ws-anonymous".into(),
            WorkspaceInfo::new(
                "ws-anonymous",
                "Anonymous Workspace",
                true,
                vec!["root".into()],
            ),
        );
        WorkspaceTable {
            map,
            holds: DashMap::new(),
        }
    }
}

// === impl WorkspaceTable ===

impl WorkspaceTable {
    /// The record of `id`.
    pub fn get(&self, id: &str) -> Option<WorkspaceInfo> {
        self.map.get(id).map(|w| w.clone())
    }

    /// Creates `info` unless a workspace with its id exists; returns the stored record.
    pub fn get_or_create(&self, info: WorkspaceInfo) -> WorkspaceInfo {
        self.map.entry(info.id.clone()).or_insert(info).clone()
    }

    /// Stores `info`, replacing any record with its id.
    pub fn put(&self, info: WorkspaceInfo) {
        self.map.insert(info.id.clone(), info);
    }

    /// Applies `f` to the record of `id`; `None` if there is none.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut WorkspaceInfo) -> T) -> Option<T> {
        self.map.get_mut(id).map(|mut w| f(&mut w))
    }

    /// Removes the record of `id`.
    pub fn remove(&self, id: &str) -> Option<WorkspaceInfo> {
        self.map.remove(id).map(|(_, w)| w)
    }

    /// Every record (a snapshot).
    pub fn all(&self) -> Vec<WorkspaceInfo> {
        self.map.iter().map(|w| w.clone()).collect()
    }

    /// Holds `id` for an admission (see [`Hold`]). Taken under the record's lock, so an
    /// unload either happened before (the admission then finds no record) or sees the hold.
    pub fn hold(&self, id: &str) -> Hold<'_> {
        let _record = self.map.get(id);
        *self.holds.entry(id.to_owned()).or_default() += 1;
        Hold {
            table: self,
            id: id.to_owned(),
        }
    }

    /// Removes a non-persistent workspace that nobody is being admitted to and for which
    /// `in_use` says no (checked under the record's lock, so it cannot race an admission's
    /// [`WorkspaceTable::hold`]); returns its record if it was removed.
    pub fn unload_if_temporary(
        &self,
        id: &str,
        in_use: impl FnOnce() -> bool,
    ) -> Option<WorkspaceInfo> {
        self.map
            .remove_if(id, |_, w| {
                !w.persistent && !self.holds.contains_key(id) && !in_use()
            })
            .map(|(_, w)| w)
    }

    /// How many workspaces list `user_id` among their owners.
    pub fn count_owned_by(&self, user_id: &str) -> usize {
        self.map
            .iter()
            .filter(|w| w.owners.iter().any(|o| o == user_id))
            .count()
    }

    /// Whether `user_id` owns `id` (listed owner, or its personal workspace).
    pub fn owned_by(&self, id: &str, user_id: &str) -> bool {
        id == format!("ws-user-{user_id}")
            || self
                .get(id)
                .is_some_and(|w| w.owners.iter().any(|o| o == user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_workspace_is_not_unloaded() {
        let t = WorkspaceTable::default();
        t.put(WorkspaceInfo::new("ws-t", "", false, vec![]));
        let hold = t.hold("ws-t");
        let second = t.hold("ws-t");
        assert!(t.unload_if_temporary("ws-t", || false).is_none());
        drop(hold);
        assert!(
            t.unload_if_temporary("ws-t", || false).is_none(),
            "one hold left"
        );
        drop(second);
        assert!(
            t.unload_if_temporary("ws-t", || true).is_none(),
            "still in use"
        );
        assert!(t.unload_if_temporary("ws-t", || false).is_some());
        assert!(t.get("ws-t").is_none());
        assert!(
            t.unload_if_temporary("public", || false).is_none(),
            "persistent"
        );
    }
}
