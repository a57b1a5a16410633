//! What the control plane may ask of the router (DESIGN.md "Control plane … reaches the
//! router through a narrow interface").
//!
//! Every method is synchronous and non-blocking: it looks up a table, queues a frame on a
//! bounded egress queue, or reads atomics. None of them waits for a client. Addresses are
//! `"<workspace>/<client_id>"`; frames are whole two-segment msgpack frames that already
//! carry their `from` (the manager's `*/<manager_id>`), as protocol.md §2 describes.

use crate::close::CloseReason;
use crate::hooks::ControlHooks;
use bytes::Bytes;
use std::sync::Arc;

/// One live connection of a workspace, as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPresence {
    /// Client id inside the workspace.
    pub client_id: String,
    /// The router's id of the connection (the `conn_id` given to
    /// [`crate::ControlHooks::admit`]); tells a connection apart from its successor.
    pub conn_id: u64,
    /// The user record stamped into the client's frames, msgpack-encoded.
    pub user: Bytes,
    /// Whether the client may broadcast into its workspace.
    pub can_write: bool,
    /// Binary frames this connection has sent since it connected (monotonic): the
    /// control plane samples it to tell an active client from an idle one (DESIGN.md
    /// "load counters"; apps-workers.md §1.5 step 12, inactivity stop).
    pub frames_in: u64,
    /// Calls delivered to this connection (frames with a `session`) that it has not
    /// answered yet (`….resolve` / `….reject`), now: the calls in flight at an app
    /// instance (apps-workers.md §5; the autoscaler's concurrency metric).
    pub calls_in_flight: u64,
}

/// A point-in-time copy of the router's load and traffic counters (all monotonic since
/// start, except the gauges `connections`, `ws_connections`, `queued_bytes_total`,
/// `queued_bytes_max`, `bus_inbox_backlog` and `bus_connected`). The `bus_*` figures are
/// those of the cluster bus (issue 10) and stay 0 on a single node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Binary frames received from clients.
    pub frames_in: u64,
    /// Bytes of binary frames received from clients.
    pub bytes_in: u64,
    /// Frames queued to clients.
    pub frames_out: u64,
    /// Bytes of the frames queued to clients.
    pub bytes_out: u64,
    /// Frames refused back to their sender (malformed, unroutable, slow target, denied).
    pub rejected: u64,
    /// Frames dropped because a target's queue was full or closed.
    pub dropped: u64,
    /// Connections closed as slow consumers.
    pub slow_consumer_closes: u64,
    /// Frames held for a client that was reconnecting, delivered when it came back (or
    /// dropped, and counted in `dropped`, when it did not within a few seconds).
    pub held: u64,
    /// Connections open now (after the handshake).
    pub connections: u64,
    /// Connections opened since start, every transport.
    pub connections_opened: u64,
    /// Connections ended since start, every transport.
    pub connections_closed: u64,
    /// WebSocket connections open now (a part of `connections`).
    pub ws_connections: u64,
    /// WebSocket connections opened since start.
    pub ws_connections_opened: u64,
    /// WebSocket connections closed for going over the message rate.
    pub rate_limited_closes: u64,
    /// Bytes waiting in all egress queues now.
    pub queued_bytes_total: u64,
    /// Bytes waiting in the fullest egress queue now.
    pub queued_bytes_max: u64,
    /// Envelopes this node handed to the cluster bus (written to Redis).
    pub bus_sent: u64,
    /// Envelopes received from other nodes (delivered or dropped).
    pub bus_received: u64,
    /// Received envelopes dropped because the bus inbox was full.
    pub bus_inbox_dropped: u64,
    /// Outgoing envelopes dropped: bus queue full, bus disconnected, or a failed write.
    pub bus_outbox_dropped: u64,
    /// Outgoing envelopes the bus took but could not hand over (no node listened under
    /// the target's id, or the write failed), given back to be re-sent or to fail their
    /// call at once.
    pub bus_undelivered: u64,
    /// Envelopes waiting in the bus inbox now.
    pub bus_inbox_backlog: u64,
    /// 1 while the cluster bus is connected, else 0 (always 0 on a single node).
    pub bus_connected: u64,
}

/// The router as the control plane drives it. Implemented by `rhizo_router::Router`.
///
/// Delivery is best effort and bounded (the egress policy of DESIGN.md "Router"): a `false`
/// return means the frame was not queued (no such client, or its queue is full or closed),
/// and the caller decides what that means for its call.
pub trait RouterControl: Send + Sync + 'static {
    /// The manager's own address, `"*/<manager_id>"`.
    fn manager_addr(&self) -> &str;

    /// Queues `frame` for the client at `to`. Returns whether it was queued.
    fn deliver(&self, to: &str, frame: Bytes) -> bool;

    /// Queues the event `frame` (a server event of type `kind`, protocol.md §6.3) for every
    /// connection of workspace `ws` subscribed to `kind`; all share one buffer.
    fn broadcast(&self, ws: &str, kind: &str, frame: Bytes);

    /// Queues the event `frame` for the client at `to` if it subscribed to `kind`.
    fn deliver_event(&self, to: &str, kind: &str, frame: Bytes);

    /// Adds event names to the subscriptions of the connection at `addr` (protocol.md
    /// §4.7). Returns false if no such connection is live.
    fn subscribe(&self, addr: &str, events: &[String]) -> bool;

    /// Removes event names from the subscriptions of the connection at `addr`. Returns
    /// false if no such connection is live.
    fn unsubscribe(&self, addr: &str, events: &[String]) -> bool;

    /// Closes the connection at `addr` with `reason` — only if its id is `conn_id`, when
    /// given, so that a successor on the same address is left alone. Returns whether a
    /// connection was told to close.
    fn close(&self, addr: &str, conn_id: Option<u64>, reason: CloseReason) -> bool;

    /// The live connection at `addr`, if any.
    fn client(&self, addr: &str) -> Option<ClientPresence>;

    /// Every live connection of workspace `ws` on this router (a snapshot).
    fn presence(&self, ws: &str) -> Vec<ClientPresence>;

    /// Number of live connections of workspace `ws` on this router.
    fn client_count(&self, ws: &str) -> usize;

    /// Live connections per workspace on this router, sorted by workspace id.
    fn workspace_counts(&self) -> Vec<(String, usize)>;

    /// The counters now, with the egress queue depths.
    fn counters(&self) -> CountersSnapshot;

    // --- the cluster channel (issue 10, stage B) ---------------------------------------
    //
    // How the control plane of this node talks to the control planes of the other nodes
    // that share the cluster bus. Messages are opaque bytes to the router (the control
    // plane's own format); delivery is best effort and at most once, in order between two
    // nodes. On a single node (the in-process bus) there is no other node: the defaults
    // below say so, and every message goes nowhere.

    /// This node's id in the cluster (the server id); empty on a single node.
    fn node_id(&self) -> &str {
        ""
    }

    /// The other nodes the directory knows to be live now (not this one), unordered.
    fn nodes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Live connections of workspace `ws` on every node: this router's plus those the
    /// cluster directory places on other nodes. The default (single node) is
    /// [`RouterControl::client_count`].
    fn cluster_client_count(&self, ws: &str) -> usize {
        self.client_count(ws)
    }

    /// Starts handing what arrives on the cluster channel to `hooks`
    /// ([`ControlHooks::cluster_message`], [`ControlHooks::node_joined`],
    /// [`ControlHooks::node_left`]). The control plane calls it once, as soon as it can
    /// take messages (the bus may already be connected before the router serves, so this
    /// does not wait for the router's own hooks to be installed); anything that arrived
    /// before is lost, so the control plane asks its peers for their state afterwards.
    fn cluster_attach(&self, hooks: Arc<dyn ControlHooks>) {
        let _ = hooks;
    }

    /// Queues `message` for the control plane of every other node. Never waits. Returns
    /// false when it was not queued (single node, bus disconnected or congested).
    fn cluster_publish(&self, message: Bytes) -> bool {
        let _ = message;
        false
    }

    /// Queues `message` for the control plane of node `node`. Never waits. Returns false
    /// when it was not queued (single node, bad node id, bus disconnected or congested).
    fn cluster_send(&self, node: &str, message: Bytes) -> bool {
        let _ = (node, message);
        false
    }
}
