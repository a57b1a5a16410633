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
//! full they are dropped and counted. The command connection publishes: the router's
//! sends go into a bounded outgoing queue, and the supervisor writes what is queued as one
//! pipeline per batch. The supervisor also beats the heartbeat, finds dead nodes,
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
                if envelope::is_cluster(&payload) {
                    self.on_cluster(Bytes::from(payload));
                    return;
                }
                if channel == self.names.control.as_bytes() {
                    self.on_control(&payload);
                    return;
                }
                self.received.fetch_add(1, Relaxed);
                let Some(inbox) = self.inbox.get() else {
                    return;
                };
                // The driver's own buffer becomes the frame's: no copy.
                if inbox.try_send(Bytes::from(payload)).is_err() {
                    self.inbox_dropped.fetch_add(1, Relaxed);
                }
            }
            PushKind::Disconnection if self.session.load(Acquire) == session => {
                self.lost.notify_one();
            }
            _ => {}
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

// === the supervisor task ===

/// Why a session with Redis ended.
enum End {
    Stop,
    Lost,
}

async fn supervise(s: Arc<Shared>, client: redis::Client, mut outbox: mpsc::Receiver<Outgoing>) {
    let mut backoff = Duration::from_millis(100);
    let mut announce = None;
    while !s.stopping.load(Acquire) {
        let session = s.session.fetch_add(1, AcqRel) + 1;
        match connect(&s, &client, session).await {
            Ok((sub, mut cmd)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(node = %s.cfg.node_id, "cluster bus connected");
                let end = run(&s, sub, &mut cmd, &mut outbox).await;
                s.connected.store(false, Release);
                // What was queued for the lost connection is lost too.
                while let Ok(item) = outbox.try_recv() {
                    if matches!(
                        item,
                        Outgoing::Node(..) | Outgoing::Workspace(..) | Outgoing::Cluster(..)
                    ) {
                        s.outbox_dropped.fetch_add(1, Relaxed);
                    }
                }
                if let End::Stop = end {
                    announce = Some(cmd);
                    break;
                }
                tracing::warn!(node = %s.cfg.node_id, "cluster bus disconnected; reconnecting");
            }
            Err(e) => {
                s.connected.store(false, Release);
                tracing::debug!(error = %e, "cluster bus: connecting to Redis failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = s.stop.notified() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    if let Some(mut cmd) = announce {
        let me = &s.cfg.node_id;
        let n = &s.names;
        let mut p = redis::pipe();
        p.publish(&n.control, ControlMsg::Down { node: me }.encode())
            .ignore()
            .del(n.clients(me))
            .ignore()
            .del(n.alive(me))
            .ignore()
            .srem(&n.nodes, me)
            .ignore();
        let r = tokio::time::timeout(Duration::from_secs(2), p.query_async::<()>(&mut cmd)).await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::warn!("cluster bus: could not announce this node's shutdown");
        }
    }
    let _ = s.done.send(true);
}

/// Opens both connections, subscribes, loads the directory, rewrites this node's entries
/// and marks the bus connected.
async fn connect(
    s: &Arc<Shared>,
    client: &redis::Client,
    session: u64,
) -> redis::RedisResult<(MultiplexedConnection, MultiplexedConnection)> {
    let base = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(3));
    let pushes = s.clone();
    let sub_cfg = base.clone().set_push_sender(move |info: PushInfo| {
        pushes.on_push(session, info);
        Ok::<(), std::convert::Infallible>(())
    });
    let mut sub = client
        .get_multiplexed_async_connection_with_config(&sub_cfg)
        .await?;
    let mut cmd = client
        .get_multiplexed_async_connection_with_config(&base)
        .await?;
    let n = &s.names;
    let me = &s.cfg.node_id;
    sub.subscribe(&[n.node(me), n.control.clone()]).await?;
    let wanted: Vec<String> = s
        .wanted
        .lock()
        .map(|w| w.iter().cloned().collect())
        .unwrap_or_default();
    for ws in &wanted {
        sub.subscribe(n.ws(ws)).await?;
    }
    // Subscribed to control first, then loaded: no change falls in between.
    load_directory(s, &mut cmd).await?;
    s.connected.store(true, Release);
    rewrite_own(s, &mut cmd).await?;
    Ok((sub, cmd))
}

/// Replaces the replica with every live node's hash, and forgets nodes found dead.
async fn load_directory(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let n = &s.names;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&n.nodes)
        .query_async(cmd)
        .await?;
    let known: HashSet<&str> = nodes.iter().map(String::as_str).collect();
    for old in s.directory.nodes() {
        if !known.contains(&*old) {
            s.tell_gone(s.directory.drop_node(&old));
        }
    }
    for old in s.peers.lock().map(|p| p.clone()).unwrap_or_default() {
        if !known.contains(old.as_str()) {
            s.peer_left(&old);
        }
    }
    for node in nodes.iter().filter(|x| **x != s.cfg.node_id) {
        if reload_node(s, cmd, node).await? {
            // This node (re)connected: it may have missed the peer's messages.
            s.peer_joined(node, true);
        }
    }
    Ok(())
}

/// Reloads `node`'s entries if it is alive (returns true), else drops it.
async fn reload_node(
    s: &Shared,
    cmd: &mut MultiplexedConnection,
    node: &str,
) -> redis::RedisResult<bool> {
    let n = &s.names;
    let alive: bool = redis::cmd("EXISTS")
        .arg(n.alive(node))
        .query_async(cmd)
        .await?;
    if alive {
        let addrs: Vec<String> = redis::cmd("HKEYS")
            .arg(n.clients(node))
            .query_async(cmd)
            .await?;
        let gone = s
            .directory
            .replace_node(node, addrs.iter().map(String::as_str));
        s.tell_gone(gone);
    } else {
        s.tell_gone(s.directory.drop_node(node));
        s.peer_left(node);
        redis::cmd("SREM")
            .arg(&n.nodes)
            .arg(node)
            .query_async::<()>(cmd)
            .await?;
    }
    Ok(alive)
}

/// Rewrites this node's hash from the client table and tells the others to reload it.
async fn rewrite_own(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    s.resync.store(false, Release);
    let n = &s.names;
    let me = &s.cfg.node_id;
    let addrs = s.local.get().map(|l| l.addresses()).unwrap_or_default();
    let ttl = s.ttl_secs();
    let key = n.clients(me);
    let mut p = redis::pipe();
    p.atomic().del(&key).ignore();
    for chunk in addrs.chunks(512) {
        let items: Vec<(&str, u8)> = chunk.iter().map(|a| (a.as_str(), 1)).collect();
        p.hset_multiple(&key, &items).ignore();
    }
    p.expire(&key, ttl as i64)
        .ignore()
        .set_ex(n.alive(me), 1, ttl)
        .ignore()
        .sadd(&n.nodes, me)
        .ignore()
        .publish(&n.control, ControlMsg::Sync { node: me }.encode())
        .ignore();
    p.query_async::<()>(cmd).await
}

/// One connected session: write what is queued, beat the heartbeat, follow interest,
/// until an error (reconnect) or a stop.
async fn run(
    s: &Arc<Shared>,
    mut sub: MultiplexedConnection,
    cmd: &mut MultiplexedConnection,
    outbox: &mut mpsc::Receiver<Outgoing>,
) -> End {
    let mut subscribed: HashSet<String> = s.wanted.lock().map(|w| w.clone()).unwrap_or_default();
    let mut channels: HashMap<Arc<str>, String> = HashMap::new();
    let mut batch = Vec::with_capacity(256);
    let mut heartbeat = tokio::time::interval(s.cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick is immediate; connect() just wrote everything
    loop {
        let result = tokio::select! {
            biased;
            _ = s.stop.notified() => return End::Stop,
            _ = s.lost.notified() => return End::Lost,
            got = outbox.recv_many(&mut batch, 256) => {
                if got == 0 {
                    return End::Stop;
                }
                write_batch(s, cmd, &mut batch, &mut channels).await
            }
            _ = heartbeat.tick() => beat(s, cmd).await,
            _ = s.changed.notified() => follow(s, &mut sub, cmd, &mut subscribed).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "cluster bus: Redis command failed");
            return End::Lost;
        }
        if s.stopping.load(Acquire) {
            return End::Stop;
        }
    }
}

async fn write_batch(
    s: &Shared,
    cmd: &mut MultiplexedConnection,
    batch: &mut Vec<Outgoing>,
    channels: &mut HashMap<Arc<str>, String>,
) -> redis::RedisResult<()> {
    let n = &s.names;
    let me = &s.cfg.node_id;
    let clients = n.clients(me);
    let mut p = redis::pipe();
    let mut frames = 0u64;
    for item in batch.drain(..) {
        match item {
            Outgoing::Node(node, env) => {
                frames += 1;
                let ch = channels
                    .entry(node.clone())
                    .or_insert_with(|| n.node(&node));
                p.publish(&*ch, &env[..]).ignore();
            }
            Outgoing::Workspace(ws, env) => {
                frames += 1;
                p.publish(n.ws(&ws), &env[..]).ignore();
            }
            Outgoing::Cluster(node, env) => {
                frames += 1;
                match node {
                    Some(node) => p.publish(n.node(&node), &env[..]).ignore(),
                    None => p.publish(&n.control, &env[..]).ignore(),
                };
            }
            Outgoing::Joined(addr) => {
                p.hset(&clients, &addr, 1)
                    .ignore()
                    .publish(
                        &n.control,
                        ControlMsg::Joined {
                            node: me,
                            addr: &addr,
                        }
                        .encode(),
                    )
                    .ignore();
            }
            Outgoing::Left(addr) => {
                p.hdel(&clients, &addr)
                    .ignore()
                    .publish(
                        &n.control,
                        ControlMsg::Left {
                            node: me,
                            addr: &addr,
                        }
                        .encode(),
                    )
                    .ignore();
            }
        }
    }
    if channels.len() > 1024 {
        channels.clear();
    }
    match p.query_async::<()>(cmd).await {
        Ok(()) => {
            s.sent.fetch_add(frames, Relaxed);
            Ok(())
        }
        Err(e) => {
            s.outbox_dropped.fetch_add(frames, Relaxed);
            Err(e)
        }
    }
}

/// The heartbeat: refresh this node's keys (rewrite them if they were lost or missed),
/// then drop the nodes whose `alive` key expired.
async fn beat(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let n = &s.names;
    let me = &s.cfg.node_id;
    let ttl = s.ttl_secs();
    let ((), added): ((), i64) = redis::pipe()
        .set_ex(n.alive(me), 1, ttl)
        .expire(n.clients(me), ttl as i64)
        .ignore()
        .sadd(&n.nodes, me)
        .query_async(cmd)
        .await?;
    if added == 1 || s.resync.load(Acquire) {
        // Someone took this node for dead (or a directory change was missed).
        rewrite_own(s, cmd).await?;
    }
    let mut nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&n.nodes)
        .query_async(cmd)
        .await?;
    // Also the nodes only the replica or the peer set know (announced, never or no
    // longer in the set).
    let peers = s.peers.lock().map(|p| p.clone()).unwrap_or_default();
    for known in s
        .directory
        .nodes()
        .iter()
        .map(|k| k.to_string())
        .chain(peers)
    {
        if !nodes.contains(&known) {
            nodes.push(known);
        }
    }
    for node in nodes.iter().filter(|x| *x != me) {
        let alive: bool = redis::cmd("EXISTS")
            .arg(n.alive(node))
            .query_async(cmd)
            .await?;
        if !alive {
            tracing::info!(node = %node, "cluster bus: node's heartbeat expired; dropping its clients");
            s.tell_gone(s.directory.drop_node(node));
            s.peer_left(node);
            redis::cmd("SREM")
                .arg(&n.nodes)
                .arg(node)
                .query_async::<()>(cmd)
                .await?;
        }
    }
    Ok(())
}

/// Reconciles the workspace subscriptions with local interest and reloads the nodes that
/// asked for it.
async fn follow(
    s: &Shared,
    sub: &mut MultiplexedConnection,
    cmd: &mut MultiplexedConnection,
    subscribed: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let n = &s.names;
    let wanted: HashSet<String> = s.wanted.lock().map(|w| w.clone()).unwrap_or_default();
    let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
    let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
    for ws in add {
        sub.subscribe(n.ws(&ws)).await?;
        subscribed.insert(ws);
    }
    for ws in remove {
        sub.unsubscribe(n.ws(&ws)).await?;
        subscribed.remove(&ws);
    }
    let reload: Vec<String> = s
        .reload
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for node in reload {
        let _alive = reload_node(s, cmd, &node).await?;
    }
    Ok(())
}

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
