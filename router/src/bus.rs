//! The Bus: how router instances (nodes) hand frames to each other (DESIGN.md "Router",
//! "Modes"; STYLE.md practices 12–13). One implementation is picked once at start and the
//! router holds it as `Arc<dyn Bus>`:
//!
//! * [`InProcess`] — the default: a single node, nothing leaves the process, every call is
//!   a no-op and [`Bus::locate`] finds nobody, so the router behaves as without a Bus.
//! * [`self::redis::RedisBus`] — Redis pub/sub between nodes that share one Redis, with the
//!   [`crate::directory`] of which node holds which client.
//!
//! Contract: every method is synchronous and never waits on I/O. Sending hands an encoded
//! envelope ([`rhizo_protocol::envelope`]) to a bounded outgoing queue drained by the bus's
//! own task; a full queue or a disconnected bus is an immediate error, which the router
//! turns into a reject like a slow peer's. An envelope that was queued but then could not
//! be handed over (nobody listened under the node's id, or the write failed) comes back
//! through [`LocalClients::undelivered`] (cluster messages through
//! [`ControlHooks::cluster_undelivered`]), so that the router can re-send it or fail the
//! call at once. Received envelopes reach the router through the bounded inbox that
//! [`Bus::start`] returns; when it is full they are counted and handed to
//! [`LocalClients::overflowed`] (a call gets a reject-back).
//!
//! Interest: the client table calls [`Bus::workspace_interest`] on a workspace's first
//! local member and its last (under the table's shard lock, so the calls for one workspace
//! are ordered), and [`Bus::client_joined`] / [`Bus::client_left`] for every address it
//! gains or loses. The Redis bus keeps the wanted set and reconciles its subscriptions with
//! it, also after a reconnect; a subscription that fails is retried at the next reconnect
//! rather than undone, since the local member it serves is already connected.
//!
//! Cluster channel (stage B): [`Bus::cluster_send`] carries the control plane's messages to
//! its peers, and [`Bus::attach_cluster`] names the hooks that receive theirs and hear of
//! nodes joining ([`ControlHooks::node_joined`]: a `sync` on the control channel, or a
//! live node found when this one (re)connects) and leaving
//! ([`ControlHooks::node_left`]: `down`, or an expired heartbeat). [`InProcess`] has no
//! peers: sends fail with [`BusError::NotClustered`] and no hook is ever called.

pub mod redis;

use bytes::Bytes;
use rhizo_interface::ControlHooks;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why an envelope was not handed to the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Single-node bus: there is no other node.
    #[error("no other node: this server runs without a cluster bus")]
    NotClustered,
    /// The outgoing queue is full (Redis is slower than the senders); the envelope was
    /// dropped and counted.
    #[error("the cluster bus is congested")]
    Full,
    /// The bus is not connected to Redis now; it reconnects with backoff.
    #[error("the cluster bus is disconnected")]
    Disconnected,
}

/// The bus figures shown in `/metrics`: monotonic counts since start, and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Envelopes handed to Redis.
    pub sent: u64,
    /// Envelopes received from Redis (accepted into the inbox or dropped).
    pub received: u64,
    /// Received envelopes dropped because the inbox was full.
    pub inbox_dropped: u64,
    /// Outgoing envelopes dropped: queue full, bus disconnected, or lost in a failed write.
    pub outbox_dropped: u64,
    /// Outgoing envelopes queued but not handed over (no subscriber on the node's channel,
    /// or a failed write), given to [`LocalClients::undelivered`] or
    /// [`ControlHooks::cluster_undelivered`].
    pub undelivered: u64,
    /// Envelopes waiting in the inbox now (gauge).
    pub inbox_backlog: u64,
    /// Whether the bus is connected now (gauge; always false for [`InProcess`]).
    pub connected: bool,
}

/// What a bus may read of the local node: the addresses of its live clients, to rewrite
/// its directory entries after a reconnect.
pub trait LocalClients: Send + Sync + 'static {
    /// Every live local client address, `<ws>/<cid>`.
    fn addresses(&self) -> Vec<String>;

    /// The directory dropped the remote client `addr` (it left its node, or its node went
    /// down or expired). Called from the bus's reader or supervisor: must not block.
    fn remote_gone(&self, addr: &str) {
        let _ = addr;
    }

    /// The node `node` went down or stopped answering: every client it held is gone.
    /// Called from the bus's reader or supervisor: must not block.
    fn node_gone(&self, node: &str) {
        let _ = node;
    }

    /// A frame envelope this node queued for `node` that the bus could not hand over: no
    /// node listened under that id when it was published (the node is gone or
    /// restarting), or the write to Redis failed. The router re-sends it where the
    /// directory places its target now, or answers its local sender's call with a reject,
    /// so that no call waits for its timeout on a frame lost here. Called from the bus's
    /// supervisor: must not block.
    fn undelivered(&self, node: &str, envelope: Bytes) {
        let _ = (node, envelope);
    }

    /// A frame envelope that arrived from another node but found the inbox full: the
    /// router answers its call (if it is one) with a reject-back to the origin node.
    /// Called from the bus's reader: must not block.
    fn overflowed(&self, envelope: Bytes) {
        let _ = envelope;
    }
}

/// A future the caller may await or drop.
pub type Settle = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The transport between nodes. See the module docs for the contract.
pub trait Bus: Send + Sync + 'static {
    /// This node's id (the server id); empty for [`InProcess`].
    fn node_id(&self) -> &str;

    /// Whether other nodes may exist (false for [`InProcess`]: the router then skips every
    /// cross-node step).
    fn clustered(&self) -> bool;

    /// Whether the bus can send now.
    fn connected(&self) -> bool;

    /// The node holding the client `ws`/`cid`, from the in-memory directory. Never does
    /// I/O.
    fn locate(&self, ws: &str, cid: &str) -> Option<Arc<str>>;

    /// How many clients of workspace `ws` the directory places on other nodes. Never does
    /// I/O.
    fn remote_clients(&self, ws: &str) -> usize {
        let _ = ws;
        0
    }

    /// Queues `envelope` for the node `node`. Never waits.
    ///
    /// Errors: [`BusError`]; the envelope is dropped and counted.
    fn send_to_node(&self, node: &Arc<str>, envelope: Bytes) -> Result<(), BusError>;

    /// Queues `envelope` (a broadcast) for the other nodes with members of `ws`. Never
    /// waits.
    ///
    /// Errors: [`BusError`]; the envelope is dropped and counted.
    fn publish_workspace(&self, ws: &str, envelope: Bytes) -> Result<(), BusError>;

    /// `wanted`: this node got its first local member of `ws`; otherwise its last left.
    fn workspace_interest(&self, ws: &str, wanted: bool);

    /// A local client connected at `addr`.
    fn client_joined(&self, addr: &str);

    /// The local client at `addr` disconnected.
    fn client_left(&self, addr: &str);

    /// Starts the bus's tasks (needs a tokio runtime); returns the inbox of envelopes for
    /// this node, or `None` when nothing can arrive. Called once by the router.
    fn start(&self, local: Arc<dyn LocalClients>) -> Option<mpsc::Receiver<Bytes>>;

    /// Announces at once that this node is leaving (others drop its directory entries)
    /// and stops the bus's tasks; returns without waiting. Idempotent.
    fn shutdown(&self);

    /// Completes once the bus stopped after [`Bus::shutdown`]: the announcement was
    /// written or could not be. Fine to drop; callers bound it with a timeout.
    fn settled(&self) -> Settle;

    /// The figures now.
    fn stats(&self) -> BusStats;

    /// Hands cluster messages ([`rhizo_protocol::envelope::CLUSTER_KIND`]) and node
    /// changes to `hooks` from now on, from the bus's reader or supervisor: the hooks must
    /// not block. Set once; later calls are ignored. Without it they are dropped.
    fn attach_cluster(&self, hooks: Arc<dyn ControlHooks>) {
        let _ = hooks;
    }

    /// Queues a cluster message for the control plane of `node`, or of every other node
    /// when `None`. Never waits.
    ///
    /// Errors: [`BusError`]; the message is dropped and counted.
    fn cluster_send(&self, node: Option<&str>, message: Bytes) -> Result<(), BusError> {
        let _ = (node, message);
        Err(BusError::NotClustered)
    }

    /// The other nodes known to be live (announced, loaded or heard from, and not dropped
    /// since).
    fn peers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether `node` is one of [`Bus::peers`] (without copying the set).
    fn is_peer(&self, node: &str) -> bool {
        let _ = node;
        false
    }
}

/// The single-node bus: nothing leaves the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

// === impl InProcess ===

impl Bus for InProcess {
    fn node_id(&self) -> &str {
        ""
    }

    fn clustered(&self) -> bool {
        false
    }

    fn connected(&self) -> bool {
        false
    }

    fn locate(&self, _ws: &str, _cid: &str) -> Option<Arc<str>> {
        None
    }

    fn send_to_node(&self, _node: &Arc<str>, _envelope: Bytes) -> Result<(), BusError> {
        Err(BusError::NotClustered)
    }

    fn publish_workspace(&self, _ws: &str, _envelope: Bytes) -> Result<(), BusError> {
        Err(BusError::NotClustered)
    }

    fn workspace_interest(&self, _ws: &str, _wanted: bool) {}

    fn client_joined(&self, _addr: &str) {}

    fn client_left(&self, _addr: &str) {}

    fn start(&self, _local: Arc<dyn LocalClients>) -> Option<mpsc::Receiver<Bytes>> {
        None
    }

    fn shutdown(&self) {}

    fn settled(&self) -> Settle {
        Box::pin(async {})
    }

    fn stats(&self) -> BusStats {
        BusStats::default()
    }
}
