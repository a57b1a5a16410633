//! The service registry (protocol.md §4.5–4.7, workspace-api.md §2.1–2.4, §5.1): the
//! records of the services live clients registered, how a service id resolves to one of
//! them, listing and text search, and the service events.
//!
//! [`Registry`] owns its table ([`table`]), so every change goes through one of its
//! methods, and each of those emits the events the change means (`service_added`,
//! `service_removed`, `client_connected`, `client_updated`, `client_disconnected`,
//! workspace-api.md §6.2) before it returns: there is no way to change the registry and
//! forget to tell the workspace. Records belong to live clients and are kept in memory
//! only; they are purged when their client leaves.
//!
//! * [`resolve`] — `get_service` / `get_service_info` resolution and visibility.
//! * [`listing`] — `list_services`, `list_clients`.
//! * [`search`] — `search_services` (word matching; rhizo has no vector index).
//! * `replica` — the other nodes' records (issue 10 stage B, [`crate::cluster`]): every
//!   lookup and listing sees this node's table and the replica together (a key held here
//!   wins); local changes are announced to the peers under one lock with the table
//!   change, so an announcement and a snapshot leave this node in the order they happened.

mod listing;
mod replica;
mod resolve;
mod search;
mod table;

pub use listing::ServiceQuery;
pub use resolve::{parse_select, Candidates, Criterion};
pub use search::{parse_order, Search};
pub use table::{glob, Inserted, Pattern, ServiceRecord, Visibility};
pub use tokio::sync::broadcast::error::RecvError as WatchError;

use crate::cluster::Msg;
use crate::error::{ManagerError, ManagerResult};
use crate::events;
use crate::manager::Ctx;
use rhizo_interface::RouterControl;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use table::ServiceTable;

/// The service registry of this server: records, resolution and the service events.
pub struct Registry {
    table: ServiceTable,
    /// Where the service events go (broadcast to the workspace's subscribers).
    router: Arc<dyn RouterControl>,
    /// `HYPHA_MAX_SERVICES_PER_CLIENT` (0: unlimited), `built-in` not counted.
    services_per_client: usize,
    /// The other nodes' records.
    replica: replica::Replica,
    /// Held around a table change and its announcement, and around a snapshot.
    announce: Mutex<()>,
    /// In-process observers of the changes ([`Registry::watch`]).
    watchers: tokio::sync::broadcast::Sender<RegistryEvent>,
}

/// A change of this node's registry, as in-process observers see it
/// ([`Registry::watch`]; the server-apps controller waits for an app's services and
/// notices departed workers and app clients with it, apps-workers.md §7 "Event hooks").
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A service other than `built-in` was registered (or replaced): its stored record.
    ServiceAdded {
        /// The record's workspace.
        ws: String,
        /// The record (`id` = `ws/cid:name`, `config`, `type`, …).
        record: Value,
    },
    /// A client's records went because the client left (or was found unresponsive).
    ClientGone {
        /// Its workspace.
        ws: String,
        /// Its client id.
        cid: String,
    },
}

/// Events an observer may fall behind by before it misses some (it then sees
/// `RecvError::Lagged` and should re-read the registry).
const WATCH_CAPACITY: usize = 4096;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("services", &self.table.len())
            .finish_non_exhaustive()
    }
}

/// The fields of `service` the reference persists (workspace-api.md §2.2).
const KEPT_FIELDS: [&str; 8] = [
    "id",
    "name",
    "type",
    "description",
    "docs",
    "app_id",
    "config",
    "service_schema",
];

// === impl Registry ===

impl Registry {
    /// An empty registry emitting its events through `router`; a client may hold at most
    /// `services_per_client` services besides `built-in` (0: unlimited).
    pub fn new(router: Arc<dyn RouterControl>, services_per_client: usize) -> Self {
        Registry {
            table: ServiceTable::default(),
            router,
            services_per_client,
            replica: replica::Replica::default(),
            announce: Mutex::new(()),
            watchers: tokio::sync::broadcast::channel(WATCH_CAPACITY).0,
        }
    }

    /// Subscribes to this node's registry changes from now on. Best effort: a receiver
    /// that falls more than a few thousand events behind gets `Lagged` and must re-read
    /// what it cares about with [`Registry::find_all`].
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<RegistryEvent> {
        self.watchers.subscribe()
    }

    fn tell_watchers(&self, event: RegistryEvent) {
        if self.watchers.receiver_count() > 0 {
            let _ = self.watchers.send(event);
        }
    }

    /// Records matching `pattern`, in key order (`ws/cid:name@app`).
    pub fn find(&self, pattern: &Pattern<'_>) -> Vec<ServiceRecord> {
        self.table.find(pattern)
    }

    /// The `built-in` records of `ws`: one per live client (§4.5).
    pub fn clients(&self, ws: &str) -> Vec<ServiceRecord> {
        self.table.clients(ws)
    }

    /// Number of records per workspace (for `/metrics`).
    pub fn counts_by_workspace(&self) -> BTreeMap<String, usize> {
        self.table.counts_by_workspace()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if no service is registered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `register_service(service)` for the caller `ctx` (workspace-api.md §5.1): checks the
    /// id (`<ws>/<cid>:<name>`, relative ids taken in the caller's workspace) belongs to the
    /// caller, normalises the record (workspace, visibility, `created_by`; only the
    /// persisted fields kept), applies the per-client quota and [`Registry::add`]s it.
    /// Services named `_rintf_*` or marked `_local_only` are not recorded.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] (not a map, no id, bad id or app id,
    /// `authorized_workspaces` without `protected`, singleton taken),
    /// [`ManagerError::Permission`] (another workspace or client, no write permission),
    /// [`ManagerError::Quota`].
    pub fn register(&self, ctx: &Ctx, mut svc: Value) -> ManagerResult<()> {
        if !svc.is_map() {
            return Err(ManagerError::InvalidArgument(
                "service must be a map".into(),
            ));
        }
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let mut id = get_str(&svc, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("Service id is required".into()))?
            .to_owned();
        if !id.contains('/') {
            id = format!("{}/{id}", ctx.ws);
        }
        let (ws, rest) = id.split_once('/').expect("has /");
        let (cid, name) = rest.split_once(':').ok_or_else(|| {
            ManagerError::InvalidArgument("Service id info must contain ':'".into())
        })?;
        if ws != ctx.ws {
            return Err(ManagerError::Permission(
                "Cannot register services in other workspaces".into(),
            ));
        }
        if cid != ctx.cid {
            return Err(ManagerError::Permission(format!(
                "Cannot register services for another client ({cid})"
            )));
        }
        let mut config = get(&svc, "config").cloned().unwrap_or(Value::Nil);
        if name.starts_with("_rintf_")
            || get(&config, "_local_only").and_then(Value::as_bool) == Some(true)
        {
            return Ok(());
        }
        let visibility = Visibility::parse(get_str(&config, "visibility"));
        let authorized = get(&config, "authorized_workspaces").filter(|v| !v.is_nil());
        if authorized.is_some() && visibility != Visibility::Protected {
            return Err(ManagerError::InvalidArgument(
                "authorized_workspaces can only be set when visibility is 'protected'".into(),
            ));
        }
        let app_id = get_str(&svc, "app_id").unwrap_or("*").to_owned();
        if app_id.contains('/') {
            return Err(ManagerError::InvalidArgument(
                "app_id must not contain '/'".into(),
            ));
        }
        let built_in = name == "built-in";
        let created_by = if built_in {
            value::from_json(&serde_json::to_value(&ctx.user).unwrap_or_default())
        } else {
            map([("id", ctx.user.id.as_str().into())])
        };
        value::set(&mut config, "workspace", ctx.ws.as_str().into());
        value::set(&mut config, "visibility", visibility.as_str().into());
        value::set(&mut config, "created_by", created_by);
        value::remove(&mut config, "service_embedding");
        value::set(&mut svc, "id", id.as_str().into());
        value::set(&mut svc, "app_id", app_id.as_str().into());
        value::set(&mut svc, "config", config);
        if get_str(&svc, "name").is_none() {
            value::set(&mut svc, "name", name.into());
        }
        if get_str(&svc, "type").is_none() {
            value::set(&mut svc, "type", "generic".into());
        }
        if let Value::Map(entries) = &mut svc {
            entries.retain(|(k, _)| k.as_str().is_some_and(|k| KEPT_FIELDS.contains(&k)));
        }
        let record = ServiceRecord::from_value(svc)?;
        if !built_in {
            self.check_quota(ctx, &record.name)?;
        }
        self.add(record).map(|_| ())
    }

    /// Stores `record` (replacing records with its full id) and tells its workspace: a
    /// client's `built-in` service is `client_connected` (or `client_updated` when it
    /// replaces one), any other service `service_added`, after a `service_removed` for
    /// each record it replaced.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] when a singleton of that name exists.
    pub fn add(&self, record: ServiceRecord) -> ManagerResult<Inserted> {
        let ws = record.ws.clone();
        let client = map([
            ("id", format!("{}/{}", record.ws, record.cid).into()),
            ("workspace", ws.as_str().into()),
        ]);
        let built_in = record.is_built_in();
        let data = record.record.clone();
        let inserted = {
            let _order = self.announce.lock().expect("announce lock");
            let clustered = self.clustered();
            if clustered {
                // The singleton rule holds across nodes: other nodes' records too.
                let in_ws = Pattern {
                    ws: Some(&record.ws),
                    ..Default::default()
                };
                let taken = self.replica.find(&in_ws).into_iter().any(|(_, _, r)| {
                    r.name == record.name
                        && r.cid != record.cid
                        && (r.singleton || record.singleton)
                });
                if taken {
                    return Err(table::singleton_taken(&record));
                }
            }
            let shared = clustered.then(|| record.record.clone());
            let inserted = self.table.insert(record)?;
            if let Some(r) = shared {
                self.router.cluster_publish(Msg::Added(vec![r]).encode());
            }
            inserted
        };
        if !built_in {
            self.tell_watchers(RegistryEvent::ServiceAdded {
                ws: ws.clone(),
                record: data.clone(),
            });
        }
        let emit = |kind: &str, data: Value| events::emit(&*self.router, &ws, kind, data);
        match &inserted {
            Inserted::New if built_in => emit("client_connected", client),
            Inserted::Replaced(_) if built_in => emit("client_updated", client),
            Inserted::New => emit("service_added", data),
            Inserted::Replaced(old) => {
                for o in old {
                    emit("service_removed", o.record.clone());
                }
                emit("service_added", data);
            }
        }
        Ok(inserted)
    }

    /// `HYPHA_MAX_SERVICES_PER_CLIENT`: a client may hold that many services besides
    /// `built-in`; re-registering a name it holds does not count (workspace-api.md §5.1).
    fn check_quota(&self, ctx: &Ctx, name: &str) -> ManagerResult<()> {
        let limit = self.services_per_client;
        if limit == 0 {
            return Ok(());
        }
        let held = self
            .table
            .find(&Pattern {
                ws: Some(&ctx.ws),
                cid: Some(&ctx.cid),
                ..Default::default()
            })
            .iter()
            .filter(|r| !r.is_built_in() && r.name != name)
            .count();
        if crate::config::reached(held, limit) {
            return Err(ManagerError::Quota(format!(
                "Service quota exceeded: client {} already has {held} services (limit {limit})",
                ctx.from
            )));
        }
        Ok(())
    }

    /// `unregister_service(service_id)`: removes the caller's own service (`name`,
    /// `cid:name` or a full id, any `@app` ignored); admins of the workspace may name any
    /// service of it. Safer than the reference (QUIRK in workspace-api.md §5.1: no
    /// ownership check there). Emits `service_removed` per record (`client_disconnected`
    /// for a `built-in` one).
    ///
    /// Errors: [`ManagerError::Permission`], [`ManagerError::InvalidArgument`] when
    /// `service_id` is not a string, [`ManagerError::NotFound`].
    pub fn unregister(&self, ctx: &Ctx, service_id: Option<&str>) -> ManagerResult<()> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let raw = service_id
            .ok_or_else(|| ManagerError::InvalidArgument("service_id must be a string".into()))?;
        let raw = raw.split_once('@').map(|(i, _)| i).unwrap_or(raw);
        let id = if raw.contains('/') {
            raw.to_owned()
        } else if raw.contains(':') {
            format!("{}/{raw}", ctx.ws)
        } else {
            format!("{}/{}:{raw}", ctx.ws, ctx.cid)
        };
        let (ws, rest) = id.split_once('/').expect("has /");
        let cid = rest.split_once(':').map(|(c, _)| c).unwrap_or_default();
        let allowed = ws == ctx.ws && (cid == ctx.cid || ctx.user.can(ws, Permission::Admin));
        if !allowed {
            return Err(ManagerError::Permission(format!(
                "Permission denied: cannot unregister service {id} of another client"
            )));
        }
        let removed = {
            let _order = self.announce.lock().expect("announce lock");
            let removed = self.table.remove_id(&id);
            if self.clustered() && !removed.is_empty() {
                let keys = removed.iter().map(ServiceRecord::key).collect();
                self.router.cluster_publish(Msg::Removed(keys).encode());
            }
            removed
        };
        if removed.is_empty() {
            return Err(ManagerError::NotFound(format!("Service not found: {id}")));
        }
        for r in removed {
            if r.is_built_in() {
                self.client_disconnected(&r.ws, &r.cid);
            } else {
                events::emit(&*self.router, &r.ws, "service_removed", r.record);
            }
        }
        Ok(())
    }

    /// A client left for good (§6.4): its records go, and `client_disconnected` goes to its
    /// workspace and to `foreign_callers` (clients of other workspaces that had called it,
    /// so that their calls fail at once; an improvement on the reference).
    pub fn client_gone(&self, ws: &str, cid: &str, foreign_callers: &[String]) {
        self.remove_client(ws, cid);
        self.tell_watchers(RegistryEvent::ClientGone {
            ws: ws.to_owned(),
            cid: cid.to_owned(),
        });
        let data = map([("id", cid.into()), ("workspace", ws.into())]);
        let event = events::frame("client_disconnected", data);
        self.router
            .broadcast(ws, "client_disconnected", event.clone());
        for caller in foreign_callers {
            self.router
                .deliver_event(caller, "client_disconnected", event.clone());
        }
    }

    /// `ws`/`cid`, a client on another node, is gone; `callers` (clients of this node in
    /// other workspaces that had called it) hear `client_disconnected`, so their pending
    /// calls fail at once. Its workspace hears it from its own node (or, when that node
    /// died, from every node's `node_left`).
    pub fn tell_callers_gone(&self, ws: &str, cid: &str, callers: &[String]) {
        let data = map([("id", cid.into()), ("workspace", ws.into())]);
        let event = events::frame("client_disconnected", data);
        for caller in callers {
            self.router
                .deliver_event(caller, "client_disconnected", event.clone());
        }
    }

    /// A client `cleanup` found unresponsive: its records go, and if it had any its
    /// workspace hears `client_disconnected`.
    pub fn remove_unresponsive(&self, ws: &str, cid: &str) {
        if !self.remove_client(ws, cid).is_empty() {
            self.client_disconnected(ws, cid);
        }
    }

    /// A new connection takes over the address `ws/cid` of a stale client (admission,
    /// protocol.md §1.3): the stale records go silently, as in the reference — the new
    /// client's `built-in` registration follows as `client_connected`.
    pub fn supersede(&self, ws: &str, cid: &str) {
        self.remove_client(ws, cid);
    }

    /// Removes the client's local records and tells the peers.
    fn remove_client(&self, ws: &str, cid: &str) -> Vec<ServiceRecord> {
        let _order = self.announce.lock().expect("announce lock");
        let removed = self.table.remove_client(ws, cid);
        if self.clustered() && !removed.is_empty() {
            let msg = Msg::ClientGone {
                ws: ws.to_owned(),
                cid: cid.to_owned(),
            };
            self.router.cluster_publish(msg.encode());
        }
        removed
    }

    fn client_disconnected(&self, ws: &str, cid: &str) {
        self.tell_watchers(RegistryEvent::ClientGone {
            ws: ws.to_owned(),
            cid: cid.to_owned(),
        });
        let data = map([("id", cid.into()), ("workspace", ws.into())]);
        events::emit(&*self.router, ws, "client_disconnected", data);
    }
}

// === impl Registry (across nodes) ===

impl Registry {
    fn clustered(&self) -> bool {
        !self.router.node_id().is_empty()
    }

    /// Records of every node matching `pattern`, in key order; a key held here wins over
    /// a peer's copy.
    pub fn find_all(&self, pattern: &Pattern<'_>) -> Vec<ServiceRecord> {
        let local = self.table.find(pattern);
        let remote = self.replica.find(pattern);
        if remote.is_empty() {
            return local;
        }
        let mut all: BTreeMap<String, ServiceRecord> =
            remote.into_iter().map(|(k, _, r)| (k, r)).collect();
        for r in local {
            all.insert(r.key(), r);
        }
        all.into_values().collect()
    }

    /// The `built-in` records of `ws` on every node: one per live client of the cluster.
    pub fn clients_all(&self, ws: &str) -> Vec<ServiceRecord> {
        self.find_all(&Pattern {
            ws: Some(ws),
            name: Some("built-in"),
            ..Default::default()
        })
    }

    /// The node that announced `r`, when it is not a record of this node.
    pub fn remote_node(&self, r: &ServiceRecord) -> Option<String> {
        let key = r.key();
        let here = self.table.find(&Pattern {
            ws: Some(&r.ws),
            cid: Some(&r.cid),
            name: Some(&r.name),
            app_id: Some(&r.app_id),
            kind: None,
        });
        if here.iter().any(|h| h.key() == key) {
            return None;
        }
        self.replica.node_of(&key)
    }

    /// Records the other nodes announced (for `/metrics` and tests).
    pub fn remote_len(&self) -> usize {
        self.replica.len()
    }

    /// Sends this node's full list of records to `node`, with `workspaces` (this node's
    /// workspace records, [`crate::workspaces::Workspaces::snapshot`]).
    pub(crate) fn send_snapshot(&self, node: &str, workspaces: Vec<Value>) {
        let _order = self.announce.lock().expect("announce lock");
        let records = self
            .table
            .find(&Pattern::default())
            .into_iter()
            .map(|r| r.record)
            .collect();
        self.router.cluster_send(
            node,
            Msg::Snapshot {
                records,
                workspaces,
            }
            .encode(),
        );
    }

    fn parse_all(records: Vec<Value>) -> Vec<ServiceRecord> {
        records
            .into_iter()
            .filter_map(|v| ServiceRecord::from_value(v).ok())
            .collect()
    }

    /// `node`'s full list: replaces what was known of it. No events (see
    /// [`crate::cluster`]).
    pub(crate) fn apply_snapshot(&self, node: &str, records: Vec<Value>) {
        self.replica.replace(node, Self::parse_all(records));
    }

    /// `node` registered `records`. No events: `node` broadcast them.
    pub(crate) fn apply_added(&self, node: &str, records: Vec<Value>) {
        self.replica.added(node, Self::parse_all(records));
    }

    /// `node` removed the records with these keys. No events.
    pub(crate) fn apply_removed(&self, node: &str, keys: &[String]) {
        self.replica.removed(node, keys);
    }

    /// A client of `node` left. No events.
    pub(crate) fn apply_client_gone(&self, node: &str, ws: &str, cid: &str) {
        self.replica.client_gone(node, ws, cid);
    }

    /// `node` left the cluster: its records go at once, and the local subscribers of each
    /// affected workspace (only those of this node: every remaining node does the same
    /// for its own) hear `service_removed` per service and `client_disconnected` per
    /// client. Returns the addresses (`ws/cid`) of the departed clients.
    pub(crate) fn node_left(&self, node: &str) -> Vec<String> {
        let gone = self.replica.drop_node(node);
        let mut clients = std::collections::BTreeSet::new();
        for r in &gone {
            clients.insert((r.ws.clone(), r.cid.clone()));
            if !r.is_built_in() {
                self.emit_local(&r.ws, "service_removed", r.record.clone());
            }
        }
        for (ws, cid) in &clients {
            let data = map([
                ("id", cid.as_str().into()),
                ("workspace", ws.as_str().into()),
            ]);
            self.emit_local(ws, "client_disconnected", data);
        }
        clients
            .into_iter()
            .map(|(ws, cid)| format!("{ws}/{cid}"))
            .collect()
    }

    /// Event `kind` to the subscribers of `ws` connected to this node only.
    fn emit_local(&self, ws: &str, kind: &str, data: Value) {
        let frame = events::frame(kind, data);
        for p in self.router.presence(ws) {
            self.router
                .deliver_event(&format!("{ws}/{}", p.client_id), kind, frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_interface::{ClientPresence, CloseReason, CountersSnapshot};

    struct NoRouter;

    impl RouterControl for NoRouter {
        fn manager_addr(&self) -> &str {
            "*/manager-t"
        }
        fn deliver(&self, _: &str, _: bytes::Bytes) -> bool {
            true
        }
        fn broadcast(&self, _: &str, _: &str, _: bytes::Bytes) {}
        fn deliver_event(&self, _: &str, _: &str, _: bytes::Bytes) {}
        fn subscribe(&self, _: &str, _: &[String]) -> bool {
            true
        }
        fn unsubscribe(&self, _: &str, _: &[String]) -> bool {
            true
        }
        fn close(&self, _: &str, _: Option<u64>, _: CloseReason) -> bool {
            true
        }
        fn client(&self, _: &str) -> Option<ClientPresence> {
            None
        }
        fn presence(&self, _: &str) -> Vec<ClientPresence> {
            vec![]
        }
        fn client_count(&self, _: &str) -> usize {
            0
        }
        fn workspace_counts(&self) -> Vec<(String, usize)> {
            vec![]
        }
        fn counters(&self) -> CountersSnapshot {
            Default::default()
        }
    }

    fn record(id: &str) -> ServiceRecord {
        ServiceRecord::from_value(map([
            ("id", id.into()),
            ("config", map([("visibility", "public".into())])),
        ]))
        .unwrap()
    }

    #[test]
    fn watchers_see_services_added_and_clients_gone_but_not_built_ins() {
        let reg = Registry::new(Arc::new(NoRouter), 0);
        reg.add(record("w/c:x")).unwrap(); // nobody watching yet: not buffered
        let mut rx = reg.watch();
        reg.add(record("w/c:built-in")).unwrap();
        reg.add(record("w/c:echo")).unwrap();
        reg.client_gone("w", "c", &[]);
        match rx.try_recv().unwrap() {
            RegistryEvent::ServiceAdded { ws, record } => {
                assert_eq!(ws, "w");
                assert_eq!(get_str(&record, "id"), Some("w/c:echo"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rx.try_recv().unwrap(),
            RegistryEvent::ClientGone { ws, cid } if ws == "w" && cid == "c"
        ));
        assert!(rx.try_recv().is_err(), "nothing else");
        assert!(reg.find(&Pattern::default()).is_empty());
    }
}
