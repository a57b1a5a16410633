//! The client table: every live connection of this router, keyed by workspace and client
//! id (DESIGN.md "Router"). Sharded `DashMap`s; no guard is ever held across an `.await`
//! (callers clone the `Arc<Conn>` out and drop the guard before sending).
//!
//! The table tells the [`Bus`] about local interest: a workspace's first local member and
//! its last ([`Bus::workspace_interest`]), and every address gained or lost
//! ([`Bus::client_joined`], [`Bus::client_left`]). Those calls are made under the shard
//! lock that orders the change, so the bus sees them in table order; they never wait.

use crate::bus::{Bus, InProcess};
use crate::egress::Egress;
use crate::http_stream::StreamCredentials;
use bytes::Bytes;
use dashmap::DashMap;
use rhizo_protocol::frame::Stamp;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// How a connection reaches its client.
#[derive(Debug, Default)]
pub enum Transport {
    /// A WebSocket at `/ws`.
    #[default]
    WebSocket,
    /// An HTTP stream opened with `GET /rpc` (protocol.md §7), with what a `POST /rpc` for
    /// it must prove: the opening request's bearer token and the stream's secret cookie.
    HttpStream(StreamCredentials),
}

/// One live client connection.
#[derive(Debug)]
pub struct Conn {
    /// Unique per router instance; tells a connection apart from its successor.
    pub id: u64,
    /// Workspace the connection is bound to.
    pub ws: String,
    /// Client id inside the workspace.
    pub cid: String,
    /// `"<ws>/<cid>"`.
    pub addr: String,
    /// The user record, msgpack-encoded once at connect.
    pub user: Bytes,
    /// `from`, `ws` and `user` as encoded map entries, appended to every header this
    /// connection sends (`rhizo_protocol::frame::Stamp::encode`).
    pub stamp: Bytes,
    /// Whether the user may broadcast into its workspace (read-write or admin).
    pub can_write: bool,
    /// The transport carrying the connection.
    pub transport: Transport,
    /// Event names this connection subscribed to (protocol.md §4.7, §6.3).
    subscriptions: RwLock<HashSet<String>>,
    /// Outgoing queue drained by the connection's writer task.
    pub egress: Egress,
    /// Set when a newer connection for the same address took over.
    superseded: AtomicBool,
    /// Binary frames received from this connection (one relaxed add per frame on its own
    /// reader task; read by the control plane through `ClientPresence::frames_in`).
    pub frames_in: std::sync::atomic::AtomicU64,
    /// Calls this connection was sent that await its answer (frames with a `session`),
    /// minus the answers it sent back (`….resolve` / `….reject` methods), never below 0:
    /// the calls in flight at a service provider, sampled by the control plane through
    /// `ClientPresence::calls_in_flight` (the autoscaler's concurrency metric). One relaxed
    /// add on delivery, one saturating subtract on an answer.
    calls_in_flight: std::sync::atomic::AtomicU64,
    /// Addresses in other workspaces this connection has sent frames to; only its own
    /// reader touches it, so the lock is uncontended. Lets each foreign target learn its
    /// callers once instead of on every frame.
    foreign_targets: Mutex<HashSet<String>>,
    /// Id of the last foreign target noted: a caller usually talks to the same provider,
    /// so the common case skips the lock and the set.
    last_foreign_target: std::sync::atomic::AtomicU64,
    /// Connections in other workspaces that have sent frames to this one: they are told
    /// when it disconnects, so their pending calls fail at once (protocol.md §6.3; the
    /// reference tells only the departed client's own workspace).
    /// A plain mutex: written once per new caller, read once at disconnect.
    foreign_callers: Mutex<HashSet<String>>,
}

// === impl Conn ===

impl Conn {
    /// A connection record; `user` is the msgpack-encoded user record.
    pub fn new(id: u64, ws: &str, cid: &str, user: Bytes, can_write: bool, egress: Egress) -> Self {
        let addr = format!("{ws}/{cid}");
        let stamp = Stamp {
            from: &addr,
            ws,
            user: &user,
        }
        .encode();
        Conn {
            id,
            ws: ws.to_owned(),
            cid: cid.to_owned(),
            stamp: Bytes::from(stamp),
            addr,
            user,
            can_write,
            transport: Transport::WebSocket,
            subscriptions: RwLock::new(HashSet::new()),
            egress,
            superseded: AtomicBool::new(false),
            frames_in: std::sync::atomic::AtomicU64::new(0),
            calls_in_flight: std::sync::atomic::AtomicU64::new(0),
            foreign_targets: Mutex::new(HashSet::new()),
            last_foreign_target: std::sync::atomic::AtomicU64::new(0),
            foreign_callers: Mutex::new(HashSet::new()),
        }
    }

    /// Counts a call delivered to this connection (a frame with a `session`).
    pub fn call_delivered(&self) {
        self.calls_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes back [`Conn::call_delivered`] for a call its queue refused.
    pub fn call_undelivered(&self) {
        let _ = self.calls_in_flight.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
    }

    /// Counts an answer this connection sent when `method` (of a frame it sent) is a
    /// promise callback (`<session>.resolve` / `<session>.reject`).
    pub fn note_sent_method(&self, method: &str) {
        if method.ends_with(".resolve") || method.ends_with(".reject") {
            self.call_undelivered();
        }
    }

    /// Calls delivered to this connection and not answered yet.
    pub fn calls_in_flight(&self) -> u64 {
        self.calls_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The same connection record carried by `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Records that this connection sent a frame to `target` in another workspace.
    pub fn note_foreign_target(&self, target: &Conn) {
        if self.last_foreign_target.swap(target.id, Ordering::Relaxed) == target.id {
            return;
        }
        let first = self
            .foreign_targets
            .lock()
            // `contains` first: no allocation on the per-frame path once the target is known.
            .map(|mut t| !t.contains(&target.addr) && t.insert(target.addr.clone()))
            .unwrap_or(false);
        if first {
            if let Ok(mut callers) = target.foreign_callers.lock() {
                callers.insert(self.addr.clone());
            }
        }
    }

    /// Addresses of the connections in other workspaces that have called this one.
    pub fn foreign_callers(&self) -> Vec<String> {
        self.foreign_callers
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this connection wants events of type `kind`.
    pub fn subscribed(&self, kind: &str) -> bool {
        self.subscriptions
            .read()
            .map(|s| s.contains(kind))
            .unwrap_or(false)
    }

    /// Adds event names to the subscription set.
    pub fn subscribe<I: IntoIterator<Item = String>>(&self, names: I) {
        if let Ok(mut s) = self.subscriptions.write() {
            s.extend(names);
        }
    }

    /// Removes event names from the subscription set.
    pub fn unsubscribe<'a, I: IntoIterator<Item = &'a str>>(&self, names: I) {
        if let Ok(mut s) = self.subscriptions.write() {
            for n in names {
                s.remove(n);
            }
        }
    }

    /// True once a newer connection for the same address replaced this one.
    #[cfg(test)]
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}

/// Hasher of the client tables: randomly seeded (client ids come from clients) and much
/// cheaper than SipHash on the per-frame lookup.
type Hasher = foldhash::fast::RandomState;

type Members = Arc<DashMap<String, Arc<Conn>, Hasher>>;

/// Live connections: workspace → client id → connection.
pub struct ClientTable {
    workspaces: DashMap<String, Members, Hasher>,
    /// Bumped by every insert and removal; route caches compare it.
    generation: std::sync::atomic::AtomicU64,
    /// Told about local interest (see the module docs).
    bus: Arc<dyn Bus>,
}

impl Default for ClientTable {
    fn default() -> Self {
        ClientTable::with_bus(Arc::new(InProcess))
    }
}

impl std::fmt::Debug for ClientTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTable")
            .field("workspaces", &self.workspaces.len())
            .finish_non_exhaustive()
    }
}

// === impl ClientTable ===

impl ClientTable {
    /// An empty table that reports local interest to `bus`.
    pub fn with_bus(bus: Arc<dyn Bus>) -> Self {
        ClientTable {
            workspaces: DashMap::default(),
            generation: Default::default(),
            bus,
        }
    }

    /// Inserts `conn`, returning the connection it supersedes (now marked superseded).
    ///
    /// The member is inserted while the workspace's entry is held (its shard locked), so a
    /// concurrent [`ClientTable::remove`] of the workspace's last member cannot drop the
    /// member map between the lookup and the insert: its emptiness check takes the same
    /// shard lock. Lock order is always workspace shard, then member shard; nothing here
    /// awaits.
    pub fn insert(&self, conn: Arc<Conn>) -> Option<Arc<Conn>> {
        let old = {
            let members = match self.workspaces.entry(conn.ws.clone()) {
                dashmap::Entry::Occupied(o) => o.into_ref(),
                dashmap::Entry::Vacant(v) => {
                    self.bus.workspace_interest(&conn.ws, true);
                    v.insert(Members::default())
                }
            };
            self.bus.client_joined(&conn.addr);
            members.insert(conn.cid.clone(), conn)
        };
        self.generation.fetch_add(1, Ordering::Release);
        if let Some(old) = &old {
            old.superseded.store(true, Ordering::Release);
        }
        old
    }

    /// Removes the connection if it is still the registered one for its address.
    /// Returns whether it was removed (false when superseded).
    ///
    /// The workspace's member map is dropped from the table only if it is empty while its
    /// shard is write-locked (`remove_if`), the lock [`ClientTable::insert`] holds while
    /// adding a member, so a member is never left in a map the table no longer holds.
    pub fn remove(&self, conn: &Conn) -> bool {
        let removed = {
            let Some(members) = self.workspaces.get(&conn.ws) else {
                return false;
            };
            members
                .remove_if(&conn.cid, |_, c| {
                    let current = c.id == conn.id;
                    if current {
                        self.bus.client_left(&conn.addr);
                    }
                    current
                })
                .is_some()
        };
        if removed {
            self.generation.fetch_add(1, Ordering::Release);
            self.workspaces.remove_if(&conn.ws, |_, m| {
                let empty = m.is_empty();
                if empty {
                    self.bus.workspace_interest(&conn.ws, false);
                }
                empty
            });
        }
        removed
    }

    /// Changes whenever a connection is added or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The live connection at `ws`/`cid`.
    pub fn get(&self, ws: &str, cid: &str) -> Option<Arc<Conn>> {
        let members = self.workspaces.get(ws)?;
        let conn = members.get(cid)?.clone();
        Some(conn)
    }

    /// The live connection at `"<ws>/<cid>"`.
    pub fn get_addr(&self, addr: &str) -> Option<Arc<Conn>> {
        let (ws, cid) = addr.split_once('/')?;
        self.get(ws, cid)
    }

    /// All connections of a workspace (a snapshot).
    pub fn members(&self, ws: &str) -> Vec<Arc<Conn>> {
        let Some(members) = self.workspaces.get(ws).map(|m| m.clone()) else {
            return Vec::new();
        };
        members.iter().map(|e| e.value().clone()).collect()
    }

    /// Number of live connections in workspace `ws`.
    pub fn count(&self, ws: &str) -> usize {
        self.workspaces.get(ws).map_or(0, |m| m.len())
    }

    /// Number of live connections.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.workspaces.iter().map(|m| m.len()).sum()
    }

    /// True if no connection is live.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live connection (a snapshot).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        let ws: Vec<Members> = self.workspaces.iter().map(|m| m.value().clone()).collect();
        ws.iter()
            .flat_map(|m| m.iter().map(|e| e.value().clone()).collect::<Vec<_>>())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conn(id: u64, ws: &str, cid: &str) -> Arc<Conn> {
        let (e, _rx) = Egress::new(1024, Duration::from_secs(1));
        Arc::new(Conn::new(id, ws, cid, Bytes::new(), true, e))
    }

    #[test]
    fn supersede_keeps_the_newer_connection() {
        let t = ClientTable::default();
        let a = conn(1, "w", "c");
        let b = conn(2, "w", "c");
        assert!(t.insert(a.clone()).is_none());
        assert_eq!(t.insert(b.clone()).unwrap().id, 1);
        assert!(a.is_superseded());
        assert!(
            !t.remove(&a),
            "the old connection must not remove the new one"
        );
        assert_eq!(t.get_addr("w/c").unwrap().id, 2);
        assert!(t.remove(&b));
        assert!(t.is_empty());
    }

    #[test]
    fn members_and_subscriptions() {
        let t = ClientTable::default();
        let a = conn(1, "w", "a");
        t.insert(a.clone());
        t.insert(conn(2, "w", "b"));
        t.insert(conn(3, "x", "a"));
        assert_eq!(t.members("w").len(), 2);
        assert_eq!(t.len(), 3);
        a.subscribe(["ev".to_owned()]);
        assert!(a.subscribed("ev"));
        a.unsubscribe(["ev"]);
        assert!(!a.subscribed("ev"));
    }

    /// Records what the table tells the bus.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Bus for Recorder {
        fn node_id(&self) -> &str {
            "n"
        }
        fn clustered(&self) -> bool {
            true
        }
        fn connected(&self) -> bool {
            true
        }
        fn locate(&self, _: &str, _: &str) -> Option<Arc<str>> {
            None
        }
        fn send_to_node(&self, _: &Arc<str>, _: Bytes) -> Result<(), crate::bus::BusError> {
            Ok(())
        }
        fn publish_workspace(&self, _: &str, _: Bytes) -> Result<(), crate::bus::BusError> {
            Ok(())
        }
        fn workspace_interest(&self, ws: &str, wanted: bool) {
            let verb = if wanted { "sub" } else { "unsub" };
            self.0.lock().unwrap().push(format!("{verb} {ws}"));
        }
        fn client_joined(&self, addr: &str) {
            self.0.lock().unwrap().push(format!("join {addr}"));
        }
        fn client_left(&self, addr: &str) {
            self.0.lock().unwrap().push(format!("leave {addr}"));
        }
        fn start(
            &self,
            _: Arc<dyn crate::bus::LocalClients>,
        ) -> Option<tokio::sync::mpsc::Receiver<Bytes>> {
            None
        }
        fn shutdown(&self) {}
        fn settled(&self) -> crate::bus::Settle {
            Box::pin(async {})
        }
        fn stats(&self) -> crate::bus::BusStats {
            Default::default()
        }
    }

    /// First member in subscribes, last one out unsubscribes; a superseded connection's
    /// removal tells the bus nothing (its successor holds the address).
    #[test]
    fn interest_follows_first_and_last_member() {
        let rec = Arc::new(Recorder::default());
        let t = ClientTable::with_bus(rec.clone());
        let (a, b, a2) = (conn(1, "w", "a"), conn(2, "w", "b"), conn(3, "w", "a"));
        t.insert(a.clone());
        t.insert(b.clone());
        t.insert(a2.clone());
        assert!(!t.remove(&a));
        assert!(t.remove(&b));
        assert!(t.remove(&a2));
        t.insert(conn(4, "w", "c"));
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "sub w",
                "join w/a",
                "join w/b",
                "join w/a",
                "leave w/b",
                "leave w/a",
                "unsub w",
                "sub w",
                "join w/c",
            ]
        );
    }

    /// Threads join and leave one workspace, each under its own client id, so the
    /// workspace keeps emptying while others join. Every connection that was inserted and
    /// not yet removed must be found by `get` (before the fix an insert could land in a
    /// member map that a concurrent removal had just dropped from the table).
    #[test]
    fn concurrent_insert_and_remove_never_lose_a_connection() {
        const THREADS: u64 = 8;
        const ROUNDS: u64 = 20_000;
        let table = Arc::new(ClientTable::default());
        let lost = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Arc::new(std::sync::Barrier::new(THREADS as usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (table, lost, start) = (table.clone(), lost.clone(), start.clone());
                std::thread::spawn(move || {
                    let cid = format!("c{t}");
                    start.wait();
                    for round in 0..ROUNDS {
                        let c = conn(t * ROUNDS + round + 1, "w", &cid);
                        table.insert(c.clone());
                        if table.get("w", &cid).map(|g| g.id) != Some(c.id) {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                        assert!(table.remove(&c));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(
            lost.load(Ordering::Relaxed),
            0,
            "connections inserted into a member map no longer in the table"
        );
        assert!(table.is_empty());
        assert_eq!(table.count("w"), 0);
    }
}
