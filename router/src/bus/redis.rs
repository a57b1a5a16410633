//! The Redis bus: nodes that share one Redis hand each other envelopes over pub/sub and keep
//! the [`Directory`] of which node holds which client (issue 10 stage A; STYLE.md
//! practice 13; the reference's layout is workspace-api.md §11, rhizo's own differs since
//! only rhizo nodes read it).
//!
//! Layout under the prefix `P` (`--redis-prefix`, default `rhizo`):
//!
//! | name                 | type     | content                                              |
//! |----------------------|----------|------------------------------------------------------|
//! | `P:node:<node>`      | channel  | envelopes for clients of `<node>` (unicast, event, reject-back) |
//! | `P:ws:<ws>`          | channel  | broadcast envelopes of workspace `<ws>`; a node subscribes while it has a local member of `<ws>` |
//! | `P:control`          | channel  | directory changes ([`ControlMsg`]: join, leave, down, sync), and cluster envelopes published to every node |
//! | `P:clients:<node>`   | hash     | field per client address of `<node>`, value `1`; expires with the heartbeat |
//! | `P:alive:<node>`     | string   | `1`, expires after [`RedisConfig::ttl`] unless refreshed |
//! | `P:nodes`            | set      | node ids that joined; a node whose `alive` key expired is removed by whoever notices |
//!
//! Tasks and connections: one supervisor task owns two RESP3 connections. The subscriber
//! connection's pushes are handled by a callback inside the redis driver that never
//! awaits: directory changes are applied on the spot (a few `DashMap` operations), and
//! envelopes are `try_send`-ed into the bounded inbox the router drains; when the inbox is
//! full they are counted and handed back to the router ([`LocalClients::overflowed`]). The
//! command connection publishes: the router's sends go into a bounded outgoing queue, and
//! the supervisor writes what is queued as one pipeline per batch, up to eight batches in
//! flight, with the envelopes of a batch for one channel bundled into one PUBLISH
//! ([`envelope::write_bundle`]). A node channel's PUBLISH that reached no subscriber, and
//! every envelope of a failed write or of a queue left behind by a lost connection, go
//! back to the router or the control plane ([`LocalClients::undelivered`],
//! [`ControlHooks::cluster_undelivered`]) to be re-sent or failed at once. The supervisor also beats the heartbeat, finds dead nodes,
//! reconciles the workspace subscriptions with local interest, and on any error drops both
//! connections, waits (100 ms doubling to 2 s) and reconnects: it resubscribes, reloads the
//! directory from every live node's hash and rewrites its own.
//!
//! Cluster messages (stage B): a cluster envelope ([`envelope::CLUSTER_KIND`]) published to
//! every node goes on `P:control`, one for a single node on `P:node:<node>`; the push
//! callback tells them from the text directory changes and the frame envelopes by their
//! first two bytes and hands them to the attached [`ControlHooks`] on the spot (never into
//! the router's inbox). The set of peers follows the directory: a `sync` (a node that
//! (re)connected) or a node found live when this one (re)connects calls
//! [`ControlHooks::node_joined`]; a `down` or an expired heartbeat
//! [`ControlHooks::node_left`] (once per node until it joins again).

use super::{Bus, BusError, BusStats, LocalClients, Settle};
use crate::directory::{ControlMsg, Directory};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use rhizo_interface::ControlHooks;
use rhizo_protocol::envelope;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// Settings of the Redis bus.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (`--redis-uri`).
    pub uri: String,
    /// Prefix of every key and channel (`--redis-prefix`), so that several clusters or
    /// tests can share one Redis.
    pub prefix: String,
    /// This node's id (the server id); at most 255 bytes.
    pub node_id: String,
    /// Interval of the heartbeat and of the dead-node check.
    pub heartbeat: Duration,
    /// Lifetime of this node's `alive` key and client hash without a heartbeat: how long
    /// a node that died without a word keeps its entries elsewhere (about `ttl` plus one
    /// heartbeat).
    pub ttl: Duration,
    /// Capacity of the inbox (received envelopes waiting for the router), envelopes.
    pub inbox: usize,
    /// Capacity of the outgoing queue, envelopes and directory changes.
    pub outbox: usize,
}

impl RedisConfig {
    /// Defaults for `uri`, `prefix` and `node_id`: heartbeat 2 s, TTL 6 s, queues of
    /// 8192.
    pub fn new(uri: &str, prefix: &str, node_id: &str) -> Self {
        RedisConfig {
            uri: uri.to_owned(),
            prefix: prefix.to_owned(),
            node_id: node_id.to_owned(),
            heartbeat: Duration::from_secs(2),
            ttl: Duration::from_secs(6),
            inbox: 8192,
            outbox: 8192,
        }
    }
}

/// Why the Redis bus could not be set up (before any connection is tried).
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URI does not parse as a Redis URI.
    #[error("invalid Redis URI: {0}")]
    Uri(String),
    /// The node id is empty or longer than 255 bytes.
    #[error("the server id must be 1 to 255 bytes to join a cluster")]
    NodeId,
}

/// The Redis bus. See the module docs.
pub struct RedisBus {
    shared: Arc<Shared>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    client: redis::Client,
}

enum Outgoing {
    Node(Arc<str>, Bytes),
    Workspace(String, Bytes),
    Joined(String),
    Left(String),
    /// A cluster envelope for one node (`Some`) or every node (`None`: the control channel).
    Cluster(Option<String>, Bytes),
}

struct Names {
    node_prefix: String,
    ws_prefix: String,
    control: String,
    nodes: String,
    alive_prefix: String,
    clients_prefix: String,
}

impl Names {
    fn new(prefix: &str) -> Self {
        Names {
            node_prefix: format!("{prefix}:node:"),
            ws_prefix: format!("{prefix}:ws:"),
            control: format!("{prefix}:control"),
            nodes: format!("{prefix}:nodes"),
            alive_prefix: format!("{prefix}:alive:"),
            clients_prefix: format!("{prefix}:clients:"),
        }
    }
    fn node(&self, n: &str) -> String {
        format!("{}{n}", self.node_prefix)
    }
    fn ws(&self, ws: &str) -> String {
        format!("{}{ws}", self.ws_prefix)
    }
    fn alive(&self, n: &str) -> String {
        format!("{}{n}", self.alive_prefix)
    }
    fn clients(&self, n: &str) -> String {
        format!("{}{n}", self.clients_prefix)
    }
}

struct Shared {
    cfg: RedisConfig,
    names: Names,
    directory: Directory,
    outbox: mpsc::Sender<Outgoing>,
    inbox: OnceLock<mpsc::Sender<Bytes>>,
    local: OnceLock<Arc<dyn LocalClients>>,
    /// Where cluster messages and node changes go ([`Bus::attach_cluster`]).
    cluster: OnceLock<Arc<dyn ControlHooks>>,
    /// The other nodes known live, for [`Bus::peers`] and to call `node_left` once.
    peers: Mutex<HashSet<String>>,
    /// Workspaces with local members (the wanted subscriptions). Never locked across an
    /// await.
    wanted: Mutex<HashSet<String>>,
    /// Nodes whose hash is to be reloaded (they sent `sync`).
    reload: Mutex<Vec<String>>,
    /// Wakes the supervisor: `wanted` or `reload` changed.
    changed: Notify,
    /// Wakes the supervisor: the subscriber connection of session `session` was lost.
    lost: Notify,
    session: AtomicU64,
    connected: AtomicBool,
    /// Own directory entries may have been missed (queue full): rewrite them.
    resync: AtomicBool,
    stopping: AtomicBool,
    stop: Notify,
    done: watch::Sender<bool>,
    sent: AtomicU64,
    received: AtomicU64,
    inbox_dropped: AtomicU64,
    outbox_dropped: AtomicU64,
    undelivered: AtomicU64,
}

// === impl RedisBus ===

impl RedisBus {
    /// A bus for `cfg`; nothing connects before [`Bus::start`].
    ///
    /// Errors: [`RedisSetupError`] for an unparsable URI or an unusable node id.
    pub fn new(cfg: RedisConfig) -> Result<Self, RedisSetupError> {
        if cfg.node_id.is_empty() || cfg.node_id.len() > 255 || cfg.node_id.contains('\n') {
            return Err(RedisSetupError::NodeId);
        }
        let mut info = cfg
            .uri
            .as_str()
            .into_connection_info()
            .map_err(|e| RedisSetupError::Uri(e.to_string()))?;
        // Pushes (pub/sub messages) on a multiplexed connection need RESP3.
        info.redis.protocol = ProtocolVersion::RESP3;
        let client = redis::Client::open(info).map_err(|e| RedisSetupError::Uri(e.to_string()))?;
        let (outbox, outbox_rx) = mpsc::channel(cfg.outbox.max(1));
        let (done, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            names: Names::new(&cfg.prefix),
            cfg,
            directory: Directory::default(),
            outbox,
            inbox: OnceLock::new(),
            local: OnceLock::new(),
            cluster: OnceLock::new(),
            peers: Mutex::default(),
            wanted: Mutex::default(),
            reload: Mutex::default(),
            changed: Notify::new(),
            lost: Notify::new(),
            session: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            resync: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            done,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            inbox_dropped: AtomicU64::new(0),
            outbox_dropped: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
        });
        Ok(RedisBus {
            shared,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            client,
        })
    }

    /// The in-memory directory replica (for tests and introspection).
    pub fn directory(&self) -> &Directory {
        &self.shared.directory
    }

    fn queue(&self, item: Outgoing) -> Result<(), BusError> {
        let s = &self.shared;
        if !s.connected.load(Acquire) {
            s.outbox_dropped.fetch_add(1, Relaxed);
            return Err(BusError::Disconnected);
        }
        s.outbox.try_send(item).map_err(|_| {
            s.outbox_dropped.fetch_add(1, Relaxed);
            BusError::Full
        })
    }

    fn queue_directory(&self, item: Outgoing) {
        let s = &self.shared;
        // While disconnected nothing is queued: the reconnect rewrites every entry.
        if s.connected.load(Acquire) && s.outbox.try_send(item).is_err() {
            s.resync.store(true, Release);
        }
    }
}

impl Bus for RedisBus {
    fn node_id(&self) -> &str {
        &self.shared.cfg.node_id
    }

    fn clustered(&self) -> bool {
        true
    }

    fn connected(&self) -> bool {
        self.shared.connected.load(Acquire)
    }

    fn locate(&self, ws: &str, cid: &str) -> Option<Arc<str>> {
        self.shared.directory.locate(ws, cid)
    }

    fn remote_clients(&self, ws: &str) -> usize {
        self.shared.directory.count(ws)
    }

    fn send_to_node(&self, node: &Arc<str>, envelope: Bytes) -> Result<(), BusError> {
        self.queue(Outgoing::Node(node.clone(), envelope))
    }

    fn publish_workspace(&self, ws: &str, envelope: Bytes) -> Result<(), BusError> {
        self.queue(Outgoing::Workspace(ws.to_owned(), envelope))
    }

    fn workspace_interest(&self, ws: &str, wanted: bool) {
        let s = &self.shared;
        if let Ok(mut w) = s.wanted.lock() {
            if wanted {
                w.insert(ws.to_owned());
            } else {
                w.remove(ws);
            }
        }
        s.changed.notify_one();
    }

    fn client_joined(&self, addr: &str) {
        self.queue_directory(Outgoing::Joined(addr.to_owned()));
    }

    fn client_left(&self, addr: &str) {
        self.queue_directory(Outgoing::Left(addr.to_owned()));
    }

    fn start(&self, local: Arc<dyn LocalClients>) -> Option<mpsc::Receiver<Bytes>> {
        let rx = self.outbox_rx.lock().ok()?.take()?;
        let _ = self.shared.local.set(local);
        let (tx, inbox) = mpsc::channel(self.shared.cfg.inbox.max(1));
        let _ = self.shared.inbox.set(tx);
        tokio::spawn(supervise(self.shared.clone(), self.client.clone(), rx));
        Some(inbox)
    }

    fn shutdown(&self) {
        let s = &self.shared;
        s.stopping.store(true, Release);
        s.stop.notify_one();
        let not_started = self.outbox_rx.lock().map(|r| r.is_some()).unwrap_or(false);
        if not_started {
            let _ = s.done.send(true);
        }
    }

    fn settled(&self) -> Settle {
        let mut done = self.shared.done.subscribe();
        Box::pin(async move {
            let _ = done.wait_for(|d| *d).await;
        })
    }

    fn attach_cluster(&self, hooks: Arc<dyn ControlHooks>) {
        let _ = self.shared.cluster.set(hooks);
    }

    fn cluster_send(&self, node: Option<&str>, message: Bytes) -> Result<(), BusError> {
        let target = node.unwrap_or("");
        let env = envelope::encode_cluster(&self.shared.cfg.node_id, target, &message)
            .map_err(|_| BusError::Full)?;
        self.queue(Outgoing::Cluster(node.map(str::to_owned), Bytes::from(env)))
    }

    fn is_peer(&self, node: &str) -> bool {
        self.shared.peers.lock().is_ok_and(|p| p.contains(node))
    }

    fn peers(&self) -> Vec<String> {
        let peers = self
            .shared
            .peers
            .lock()
            .map(|p| p.iter().cloned().collect());
        peers.unwrap_or_default()
    }

    fn stats(&self) -> BusStats {
        let s = &self.shared;
        let backlog = s
            .inbox
            .get()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        BusStats {
            sent: s.sent.load(Relaxed),
            received: s.received.load(Relaxed),
            inbox_dropped: s.inbox_dropped.load(Relaxed),
            outbox_dropped: s.outbox_dropped.load(Relaxed),
            undelivered: s.undelivered.load(Relaxed),
            inbox_backlog: backlog as u64,
            connected: s.connected.load(Acquire),
        }
    }
}

// === impl Shared (the push callback: never awaits) ===

impl Shared {
    fn on_push(&self, session: u64, info: PushInfo) {
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    return;
                };
                let enveloped = envelope::is_cluster(&payload) || envelope::is_bundle(&payload);
                if channel == self.names.control.as_bytes() && !enveloped {
                    self.on_control(&payload);
                    return;
                }
                // The driver's own buffer becomes the frames': no copy.
                let payload = Bytes::from(payload);
                if envelope::is_bundle(&payload) {
                    let Ok(parts) = envelope::Bundle::new(payload) else {
                        return;
                    };
                    for part in parts {
                        match part {
                            Ok(env) if !envelope::is_bundle(&env) => self.on_envelope(env),
                            _ => {
                                self.received.fetch_add(1, Relaxed);
                                self.inbox_dropped.fetch_add(1, Relaxed);
                            }
                        }
                    }
                } else {
                    self.on_envelope(payload);
                }
            }
            PushKind::Disconnection if self.session.load(Acquire) == session => {
                self.lost.notify_one();
            }
            _ => {}
        }
    }

    /// One envelope from another node: a cluster message to the hooks, a frame envelope
    /// into the inbox (or, when it is full, to [`LocalClients::overflowed`]).
    fn on_envelope(&self, env: Bytes) {
        if envelope::is_cluster(&env) {
            self.on_cluster(env);
            return;
        }
        self.received.fetch_add(1, Relaxed);
        let Some(inbox) = self.inbox.get() else {
            return;
        };
        if let Err(e) = inbox.try_send(env) {
            self.inbox_dropped.fetch_add(1, Relaxed);
            if let (mpsc::error::TrySendError::Full(env), Some(local)) = (e, self.local.get()) {
                local.overflowed(env);
            }
        }
    }

    /// An envelope queued for `node` that was not handed over: a cluster message back to
    /// the hooks, a frame envelope back to the router ([`LocalClients::undelivered`]).
    fn bounce(&self, node: &str, env: Bytes) {
        self.undelivered.fetch_add(1, Relaxed);
        if envelope::is_cluster(&env) {
            if let (Ok((_, _, message)), Some(hooks)) =
                (envelope::decode_cluster(&env), self.cluster.get())
            {
                hooks.cluster_undelivered(node, message);
            }
        } else if let Some(local) = self.local.get() {
            local.undelivered(node, env);
        }
    }

    fn on_control(&self, payload: &[u8]) {
        let Some(msg) = ControlMsg::decode(payload) else {
            return;
        };
        if msg.node() == self.cfg.node_id {
            return;
        }
        if let ControlMsg::Sync { node } = msg {
            if let Ok(mut r) = self.reload.lock() {
                r.push(node.to_owned());
            }
            self.changed.notify_one();
        }
        let gone = self.directory.apply(msg);
        self.tell_gone(gone);
        match msg {
            ControlMsg::Sync { node } => self.peer_joined(node, true),
            ControlMsg::Joined { node, .. } => self.peer_joined(node, false),
            ControlMsg::Down { node } => self.peer_left(node),
            ControlMsg::Left { .. } => {}
        }
    }

    /// A cluster envelope: to the hooks, unless it is this node's own (published ones
    /// come back) or meant for another node.
    fn on_cluster(&self, payload: Bytes) {
        let Ok((origin, target, message)) = envelope::decode_cluster(&payload) else {
            return;
        };
        let me = self.cfg.node_id.as_str();
        if origin == me || !(target.is_empty() || target == me) {
            return;
        }
        self.received.fetch_add(1, Relaxed);
        // A message from a node not known yet (it connected while this one was away).
        self.peer_joined(origin, false);
        if let Some(hooks) = self.cluster.get() {
            hooks.cluster_message(origin, message);
        }
    }

    /// `node` is live: noted, and the hooks told when it is new or `always` (it
    /// reconnected and may have missed messages).
    fn peer_joined(&self, node: &str, always: bool) {
        if node == self.cfg.node_id {
            return;
        }
        let new = self
            .peers
            .lock()
            .map(|mut p| p.insert(node.to_owned()))
            .unwrap_or(false);
        if new || always {
            if let Some(hooks) = self.cluster.get() {
                hooks.node_joined(node);
            }
        }
    }

    /// Tells the router which remote clients the directory dropped (see
    /// [`LocalClients::remote_gone`]).
    fn tell_gone(&self, gone: Vec<String>) {
        if let Some(local) = self.local.get() {
            for addr in gone {
                local.remote_gone(&addr);
            }
        }
    }

    /// `node` left (down or expired): the hooks are told once.
    fn peer_left(&self, node: &str) {
        let known = self
            .peers
            .lock()
            .map(|mut p| p.remove(node))
            .unwrap_or(false);
        if known {
            if let Some(local) = self.local.get() {
                local.node_gone(node);
            }
            if let Some(hooks) = self.cluster.get() {
                hooks.node_left(node);
            }
        }
    }

    fn ttl_secs(&self) -> u64 {
        self.cfg.ttl.as_secs().max(1)
    }
}

mod supervisor;
use supervisor::supervise;

#[cfg(test)]
mod tests {
    use super::*;

    struct NoClients;
    impl LocalClients for NoClients {
        fn addresses(&self) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn bad_setup_is_refused_before_connecting() {
        assert!(matches!(
            RedisBus::new(RedisConfig::new("not a uri", "p", "a")),
            Err(RedisSetupError::Uri(_))
        ));
        assert!(matches!(
            RedisBus::new(RedisConfig::new("redis://127.0.0.1:1/0", "p", "")),
            Err(RedisSetupError::NodeId)
        ));
    }

    /// Without a connection every send fails at once and is counted; interest and
    /// directory changes are kept for the reconnect, not queued.
    #[tokio::test]
    async fn disconnected_bus_refuses_at_once() {
        let bus = RedisBus::new(RedisConfig::new("redis://127.0.0.1:1/0", "p", "a")).unwrap();
        let node: Arc<str> = Arc::from("b");
        assert_eq!(
            bus.send_to_node(&node, Bytes::from_static(b"x")),
            Err(BusError::Disconnected)
        );
        assert_eq!(
            bus.publish_workspace("w", Bytes::from_static(b"x")),
            Err(BusError::Disconnected)
        );
        bus.workspace_interest("w", true);
        bus.client_joined("w/c");
        assert!(bus.shared.wanted.lock().unwrap().contains("w"));
        assert_eq!(bus.shared.outbox.capacity(), bus.shared.cfg.outbox);
        bus.workspace_interest("w", false);
        assert!(bus.shared.wanted.lock().unwrap().is_empty());
        let stats = bus.stats();
        assert_eq!(stats.outbox_dropped, 2);
        assert!(!stats.connected);
        let _inbox = bus.start(Arc::new(NoClients)).unwrap();
        bus.shutdown();
        tokio::time::timeout(Duration::from_secs(3), bus.settled())
            .await
            .expect("shutdown settles while disconnected");
    }

    #[test]
    fn pushes_feed_the_inbox_and_the_directory_without_waiting() {
        let bus = RedisBus::new(RedisConfig {
            inbox: 1,
            ..RedisConfig::new("redis://127.0.0.1:1/0", "p", "a")
        })
        .unwrap();
        let s = &bus.shared;
        let (tx, mut rx) = mpsc::channel(1);
        let _ = s.inbox.set(tx);
        let msg = |ch: &str, payload: &[u8]| PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(ch.as_bytes().to_vec()),
                Value::BulkString(payload.to_vec()),
            ],
        };
        s.on_push(0, msg("p:node:a", b"one"));
        s.on_push(0, msg("p:node:a", b"two")); // inbox full: dropped
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"one"));
        let st = bus.stats();
        assert_eq!((st.received, st.inbox_dropped), (2, 1));
        s.on_push(0, msg("p:control", b"join\nb\nw/c"));
        s.on_push(0, msg("p:control", b"join\na\nw/self")); // own: ignored
        assert_eq!(bus.locate("w", "c").as_deref(), Some("b"));
        assert!(bus.locate("w", "self").is_none());
        s.on_push(0, msg("p:control", b"down\nb"));
        assert!(bus.locate("w", "c").is_none());
    }
}
