//! Workspace records across nodes ([`crate::cluster`]): what this node announces when one
//! of its records changes, and the silent apply path for what the peers announce.
//!
//! * **Announcing.** Every mutation of the domain ends in [`Workspaces::persist`], which
//!   publishes the record as it is now (`workspace`), or its absence (`workspace_deleted`);
//!   unloading a temporary workspace publishes `workspace_unloaded`. The read of the
//!   record and its publication happen under one lock, so the peers get a record's
//!   versions in the order they were made here.
//! * **Applying.** A peer's record replaces this node's copy: no store write (the origin
//!   wrote the shared store), no event (the origin's events already reached every node as
//!   workspace broadcasts).
//! * **Temporary workspaces.** The node that announced a temporary record first is its
//!   *origin* here. While this node knows an origin for it, it does not unload it when its
//!   own last client leaves: the origin decides. When the origin announces
//!   `workspace_unloaded` (its own last client left) or leaves the cluster, this node drops
//!   its copy too unless it has clients in it (or is admitting one); then the workspace is
//!   this node's own, and it unloads it (and announces) when its last client leaves.
//!   Another node's announcements of the same record change it, not its origin.

use super::{to_value, WorkspaceInfo, Workspaces};
use crate::cluster::Msg;
use rhizo_protocol::value;
use rmpv::Value;

// === impl Workspaces (replica) ===

impl Workspaces {
    fn clustered(&self) -> bool {
        !self.router.node_id().is_empty()
    }

    /// Publishes the record of `id` as it is now in the table (or its deletion).
    pub(super) fn announce(&self, id: &str) {
        if !self.clustered() {
            return;
        }
        let _order = self.announce_order.lock().expect("announce lock");
        let msg = match self.table.get(id) {
            Some(w) => Msg::Workspace(to_value(&w)),
            None => Msg::WorkspaceDeleted(id.to_owned()),
        };
        self.router.cluster_publish(msg.encode());
    }

    /// Publishes that this node unloaded the temporary workspace `id`.
    pub(super) fn announce_unloaded(&self, id: &str) {
        if self.clustered() {
            let _order = self.announce_order.lock().expect("announce lock");
            let msg = Msg::WorkspaceUnloaded(id.to_owned());
            self.router.cluster_publish(msg.encode());
        }
    }

    /// Whether a client of `ws` is connected to this node or being admitted here.
    pub(super) fn used_here(&self, ws: &str) -> bool {
        self.router.client_count(ws) > 0 || self.sessions.count_in(ws) > 0
    }

    /// Whether another node is the origin of the temporary workspace `ws` (see the module
    /// docs): this node then leaves its unloading to that node.
    pub(super) fn held_elsewhere(&self, ws: &str) -> bool {
        self.origins.contains_key(ws)
    }

    /// The records to send a node that joins: every record except the temporary ones of
    /// which another node is the origin (that node sends those).
    pub(crate) fn snapshot(&self) -> Vec<Value> {
        let _order = self.announce_order.lock().expect("announce lock");
        self.table
            .all()
            .into_iter()
            .filter(|w| w.persistent || !self.held_elsewhere(&w.id))
            .map(|w| to_value(&w))
            .collect()
    }

    /// `node` created or changed a workspace: its record replaces this node's copy,
    /// silently (no store write, no event). A temporary record new here takes `node` as
    /// its origin. Unreadable records are ignored.
    pub(crate) fn apply_record(&self, node: &str, record: Value) {
        let Ok(w) = serde_json::from_value::<WorkspaceInfo>(value::to_json(&record)) else {
            tracing::debug!(%node, "cluster: unreadable workspace record ignored");
            return;
        };
        if w.persistent {
            self.origins.remove(&w.id);
        } else if self.table.get(&w.id).is_none() {
            self.origins.insert(w.id.clone(), node.to_owned());
        }
        self.table.put(w);
    }

    /// A snapshot from `node`: each record as [`Workspaces::apply_record`]. Records missing
    /// from it are kept (a snapshot does not say what was deleted).
    pub(crate) fn apply_snapshot(&self, node: &str, records: Vec<Value>) {
        for r in records {
            self.apply_record(node, r);
        }
    }

    /// A peer deleted workspace `id`: the record goes here too, silently.
    pub(crate) fn apply_deleted(&self, id: &str) {
        self.origins.remove(id);
        self.table.remove(id);
    }

    /// `node` unloaded the temporary workspace `id`: if `node` is its origin here (or it
    /// has none), this node's copy goes too, silently, unless a client of this node is in
    /// it; it is then this node's own.
    pub(crate) fn apply_unloaded(&self, node: &str, id: &str) {
        if self.origins.remove_if(id, |_, o| o == node).is_none() && self.held_elsewhere(id) {
            return;
        }
        self.table.unload_if_temporary(id, || self.used_here(id));
    }

    /// `node` left the cluster: the temporary workspaces it was the origin of are dropped
    /// here as by [`Workspaces::apply_unloaded`].
    pub(crate) fn node_left(&self, node: &str) {
        let ids: Vec<String> = self
            .origins
            .iter()
            .filter(|e| e.value() == node)
            .map(|e| e.key().clone())
            .collect();
        for id in ids {
            self.apply_unloaded(node, &id);
        }
    }
}
