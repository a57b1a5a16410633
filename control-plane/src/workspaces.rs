//! Workspaces (workspace-api.md §2.5, §4, §5.3–5.5): the records of the workspaces this
//! server has loaded, their lifecycle (create, delete, unload) and their settings
//! (environment, bookmarks, service types).
//!
//! [`Workspaces`] owns the table ([`table`]), so a record changes only inside one of its
//! methods, and each of those writes the record through the store (persistent workspaces
//! are saved, deleted ones removed, temporary ones never stored) and then emits the events
//! the change means (`workspace_loaded`, `workspace_ready`, `workspace_changed`,
//! `workspace_deleted`, `workspace_unloaded`, `workspace_status_changed`, §6.2): no
//! caller can change a workspace and skip either. On a cluster, the same write also
//! announces the record to the other nodes, which apply it silently ([`replica`]).
//!
//! * [`lifecycle`] — create, delete, personal workspaces on connect, unloading.
//! * [`settings`] — environment, bookmarks, service types, status.
//! * [`replica`] — the records across nodes.

mod lifecycle;
mod replica;
mod settings;
mod table;

pub use lifecycle::WorkspaceSpec;
pub use settings::workspace_bookmark;
pub use table::{Hold, WorkspaceInfo};

use crate::config::ServerConfig;
use crate::error::{ManagerError, ManagerResult};
use crate::event_log::EventLogs;
use crate::events;
use crate::manager::Ctx;
use crate::sessions::Sessions;
use crate::storage::{Store, StoreError, WorkspaceRecord};
use dashmap::DashMap;
use rhizo_interface::RouterControl;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, map};
use rmpv::Value;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use table::WorkspaceTable;

/// The workspaces of this server: records, lifecycle, settings, their persistence and
/// their events.
pub struct Workspaces {
    table: WorkspaceTable,
    /// Where persistent records are written (and read at start).
    store: Arc<dyn Store>,
    /// Where the workspace events go.
    router: Arc<dyn RouterControl>,
    /// Live sessions: an admitted client keeps its workspace loaded.
    sessions: Arc<Sessions>,
    /// The event log, for the server's own rows (`env_set`, `env_removed`).
    event_logs: EventLogs,
    /// `HYPHA_MAX_WORKSPACES_PER_USER` (0: unlimited; root is exempt).
    workspaces_per_user: usize,
    /// `HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD`: how long an empty temporary workspace stays.
    unload_grace: Duration,
    /// Workspaces waiting out the unload grace period → the ticket of the latest wait.
    pending_unloads: DashMap<String, u64>,
    unload_tickets: AtomicU64,
    /// Temporary workspaces another node announced first → that node ([`replica`]).
    origins: DashMap<String, String>,
    /// Held around reading a record and publishing it to the other nodes.
    announce_order: Mutex<()>,
}

impl std::fmt::Debug for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspaces")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The stored form of `w`.
fn record_of(w: &WorkspaceInfo) -> WorkspaceRecord {
    WorkspaceRecord {
        id: w.id.clone(),
        name: w.name.clone(),
        description: w.description.clone(),
        persistent: w.persistent,
        owners: w.owners.clone(),
        read_only: w.read_only,
        config: w.config.clone(),
        service_types: w.service_types.clone(),
    }
}

/// A record as sent to clients.
fn to_value(v: &impl serde::Serialize) -> Value {
    value::from_json(&serde_json::to_value(v).unwrap_or_default())
}

// === impl Workspaces ===

impl Workspaces {
    /// The built-in workspaces (`public`, `ws-user-root`, `ws-anonymous`), writing through
    /// `store` and emitting through `router`; limits and the unload grace from `config`.
    /// Call [`Workspaces::load`] before serving.
    pub fn new(
        config: &ServerConfig,
        store: Arc<dyn Store>,
        router: Arc<dyn RouterControl>,
        sessions: Arc<Sessions>,
        event_logs: EventLogs,
    ) -> Self {
        Workspaces {
            table: WorkspaceTable::default(),
            store,
            router,
            sessions,
            event_logs,
            workspaces_per_user: config.limits.workspaces_per_user,
            unload_grace: config.workspace_unload_grace,
            pending_unloads: DashMap::new(),
            unload_tickets: AtomicU64::new(0),
            origins: DashMap::new(),
            announce_order: Mutex::new(()),
        }
    }

    /// Loads every stored workspace record (replacing a built-in one of the same id);
    /// returns how many. Errors: the store could not be read.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let records = self.store.list_workspaces().await?;
        let n = records.len();
        for r in records {
            let mut w = WorkspaceInfo::new(&r.id, &r.description, r.persistent, r.owners);
            w.name = r.name;
            w.read_only = r.read_only;
            w.config = r.config;
            w.service_types = r.service_types;
            self.table.put(w);
        }
        Ok(n)
    }

    /// The record of `id`.
    pub fn get(&self, id: &str) -> Option<WorkspaceInfo> {
        self.table.get(id)
    }

    /// Every record (a snapshot).
    pub fn all(&self) -> Vec<WorkspaceInfo> {
        self.table.all()
    }

    /// How many workspaces list `user_id` among their owners.
    pub fn count_owned_by(&self, user_id: &str) -> usize {
        self.table.count_owned_by(user_id)
    }

    /// Whether `user_id` owns `id` (listed owner, or its personal workspace).
    pub fn owned_by(&self, id: &str, user_id: &str) -> bool {
        self.table.owned_by(id, user_id)
    }

    /// Holds `id` for an admission: it is not unloaded while the [`Hold`] lives.
    pub fn hold(&self, id: &str) -> Hold<'_> {
        self.table.hold(id)
    }

    /// Fails with [`ManagerError::Permission`] (`Permission denied for workspace <ws>`)
    /// unless the caller is admin of `ws` or owns it.
    pub fn require_admin_or_owner(&self, ctx: &Ctx, ws: &str) -> ManagerResult<()> {
        if ctx.user.can(ws, Permission::Admin) || self.table.owned_by(ws, &ctx.user.id) {
            Ok(())
        } else {
            Err(ManagerError::Permission(format!(
                "Permission denied for workspace {ws}"
            )))
        }
    }

    /// Writes the record of `id` to the store: a persistent workspace is saved, a missing
    /// one deleted, a temporary one left out; and announces it to the other nodes of a
    /// cluster ([`replica`]). Every mutation below ends here.
    async fn persist(&self, id: &str) -> ManagerResult<()> {
        self.announce(id);
        let result = match self.table.get(id) {
            Some(w) if w.persistent => self.store.put_workspace(&record_of(&w)).await,
            Some(_) => return Ok(()),
            None => self.store.delete_workspace(id).await.map(|_| ()),
        };
        result.map_err(|e| ManagerError::Store(format!("could not persist workspace {id}: {e}")))
    }

    /// Persists `ws` and tells it `workspace_changed <WorkspaceInfo>` (bookmarks,
    /// environment, service types; workspace-api.md §6.2).
    async fn changed(&self, ws: &str) -> ManagerResult<()> {
        self.persist(ws).await?;
        if let Some(info) = self.table.get(ws) {
            events::emit(&*self.router, ws, "workspace_changed", to_value(&info));
        }
        Ok(())
    }

    /// Broadcasts `workspace_status_changed {workspace, status}` to `ws` (§4.4).
    fn status_changed(&self, ws: &str, status: &str) {
        let data = map([("workspace", ws.into()), ("status", status.into())]);
        events::emit(&*self.router, ws, "workspace_status_changed", data);
    }
}
