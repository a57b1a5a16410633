//! The routing pipeline (protocol.md §2.3–2.7): decode the header only, normalise `to`,
//! stamp the trusted fields, deliver to one connection, the manager or the subscribers of a
//! workspace, and answer undeliverable calls with a reject the caller understands.

use crate::bus::{Bus, BusError, InProcess, LocalClients};
use crate::close::CloseReason;
use crate::egress::{Outbound, PushError};
use crate::held::Held;
use crate::hooks::{ConnRef, ControlHooks};
use crate::table::{ClientTable, Conn};
use crate::{Counters, RouterConfig};
use bytes::Bytes;
use rhizo_protocol::envelope::{self, Kind};
use rhizo_protocol::frame::{rewritten_len, write_rewritten_header, HeaderView};
use rhizo_protocol::handshake;
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock, Weak};

/// The cluster side: envelopes in and back, held frames, the Bus's view of local clients.
mod remote;
use remote::{bus_refusal, drain_inbox, flush_held, is_call, LocalView};

/// Why a frame from a client was not delivered. Every variant is reported to the sender:
/// as a `<session>.reject` when the frame carries a session, otherwise as an
/// `{"type":"error"}` text frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The frame could not be decoded.
    #[error("Malformed frame: {0}")]
    Frame(#[from] rhizo_protocol::FrameError),
    /// The header has no `to`.
    #[error("Malformed frame: the header has no `to` field")]
    NoTarget,
    /// The target is not connected.
    #[error("Peer {0} is not connected")]
    NotConnected(String),
    /// The target's egress queue is full.
    #[error("Peer {0} is not reading its messages fast enough; message rejected")]
    SlowPeer(String),
    /// A read-only connection tried to broadcast.
    #[error("Permission denied: read-only clients cannot broadcast to workspace {0}")]
    ReadOnlyBroadcast(String),
    /// Broadcast into another workspace.
    #[error("Permission denied: cannot broadcast to workspace {0} from workspace {1}")]
    ForeignBroadcast(String, String),
    /// The target may be on another node, but the cluster bus is disconnected (it
    /// reconnects with backoff).
    #[error("Peer {0} cannot be reached now: the cluster bus (Redis) is disconnected")]
    ClusterDown(String),
    /// The target was placed on a node that no longer listens on the cluster bus (it
    /// stopped or is restarting), and it is not connected anywhere else yet.
    #[error("Peer {0} is not connected (its server node {1} left the cluster)")]
    NodeGone(String, String),
}

/// Where a routed frame goes, decided from its header alone by the resolve step before
/// any byte is copied (protocol.md §2.4). `'t` borrows the frame's normalised target.
#[derive(Debug, Clone)]
pub(crate) enum Destination<'t> {
    /// A live connection of this router instance (`"<ws>/<cid>"`).
    Local(Arc<Conn>),
    /// The manager peer (`"*/<manager_id>"`), reached through
    /// [`ControlHooks::manager_frame`].
    Manager,
    /// Every connection of this workspace subscribed to the frame's `type` (a `"<ws>/*"`
    /// broadcast, fan-out).
    Workspace(&'t str),
    /// A client connected to another router instance, named by that instance's node id
    /// (from the [`crate::directory`]), reached through the Bus as one envelope (DESIGN.md
    /// "Router").
    Remote(Arc<str>),
    /// Nobody at the address now, but its client left a moment ago and the frame is not a
    /// call: held until it reconnects ([`crate::held`]).
    Held,
}

/// A connection's memory of its last unicast target: the raw `to` it wrote, the
/// connection it resolved to, and the table generation at that time. Any connect or
/// disconnect bumps the generation and so invalidates every cache (STYLE.md practice 14).
#[derive(Debug, Default)]
pub struct RouteCache {
    generation: u64,
    to: Vec<u8>,
    target: Option<Arc<Conn>>,
    /// A one-off cache (for [`Router::route_from`]) that is never filled.
    disabled: bool,
}

// === impl RouteCache ===

impl RouteCache {
    fn disabled() -> Self {
        RouteCache {
            disabled: true,
            ..Default::default()
        }
    }
}

/// The router: client table, manager address and the control-plane hooks. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) table: ClientTable,
    pub(crate) manager_addr: String,
    pub(crate) hooks: OnceLock<Arc<dyn ControlHooks>>,
    pub(crate) config: RouterConfig,
    pub(crate) counters: Counters,
    pub(crate) next_id: std::sync::atomic::AtomicU64,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// The Bus to other nodes, picked once at start ([`InProcess`] by default).
    pub(crate) bus: Arc<dyn Bus>,
    /// Remote clients (workspace → client id) that local clients of other workspaces have
    /// sent frames to, with those callers' addresses: when the directory drops such a
    /// client (it left, or its node died), its callers here are told at once
    /// ([`ControlHooks::remote_client_gone`]) so their pending calls fail instead of timing
    /// out. Written once per new (caller, target) pair; callers in the target's own
    /// workspace hear `client_disconnected` from the workspace anyway.
    pub(crate) remote_callers: RemoteCallers,
    /// Frames held for clients that are reconnecting ([`crate::held`]).
    pub(crate) held: Arc<Held>,
}

/// See [`Inner::remote_callers`]: workspace → client id → (its node, local callers).
pub(crate) type RemoteCallers = dashmap::DashMap<
    String,
    dashmap::DashMap<String, (Arc<str>, std::collections::HashSet<String>)>,
>;

// === impl Router ===

impl Router {
    /// A single-node router ([`InProcess`] bus) whose manager peer is `*/<manager_id>`.
    pub fn new(manager_id: &str, config: RouterConfig) -> Self {
        Router::with_bus(manager_id, config, Arc::new(InProcess))
    }

    /// A router whose manager peer is `*/<manager_id>`, reaching other nodes through
    /// `bus`. Starts the bus (a clustered bus needs a tokio runtime) and the task that
    /// delivers what other nodes send here.
    pub fn with_bus(manager_id: &str, config: RouterConfig, bus: Arc<dyn Bus>) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            table: ClientTable::with_bus(bus.clone()),
            manager_addr: format!("*/{manager_id}"),
            hooks: OnceLock::new(),
            config,
            counters: Counters::default(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            shutdown,
            bus,
            remote_callers: Default::default(),
            held: Default::default(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(flush_held(Arc::downgrade(&inner), inner.held.clone()));
        }
        if let Some(inbox) = inner.bus.start(Arc::new(LocalView(Arc::downgrade(&inner)))) {
            tokio::spawn(drain_inbox(Arc::downgrade(&inner), inbox));
        }
        Router { inner }
    }

    /// The Bus to other nodes.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    /// Installs the control plane. Must be called once before serving.
    pub fn set_hooks(&self, hooks: Arc<dyn ControlHooks>) {
        let _ = self.inner.hooks.set(hooks);
    }

    pub(crate) fn hooks(&self) -> &Arc<dyn ControlHooks> {
        self.inner
            .hooks
            .get()
            .expect("router hooks installed before serving")
    }

    /// `"*/<manager_id>"`.
    pub fn manager_addr(&self) -> &str {
        &self.inner.manager_addr
    }

    /// The live client table.
    pub(crate) fn table(&self) -> &ClientTable {
        &self.inner.table
    }

    /// Load and traffic counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// Tells every connection to close with `CloseReason::Shutdown`. The bus stays up, so
    /// that what the closing clients sent last still reaches other nodes and replies for
    /// them are handed back to be held while they reconnect elsewhere; call
    /// [`Router::leave_cluster`] once the connections are gone.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        for c in self.inner.table.all() {
            c.egress.close(CloseReason::Shutdown);
        }
    }

    /// Tells the other nodes at once that this one is leaving, after writing what is
    /// queued ([`Bus::shutdown`]; await [`Router::bus_settled`] before exiting so the
    /// announcement gets out). Idempotent.
    pub fn leave_cluster(&self) {
        self.inner.bus.shutdown();
    }

    /// Completes once the bus stopped after [`Router::leave_cluster`] (at once for the
    /// in-process bus). Bound it with a timeout.
    pub async fn bus_settled(&self) {
        self.inner.bus.settled().await
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Routes one binary frame received from `conn` (protocol.md §2.3).
    ///
    /// Errors are already reported to the sender when this returns; the value is for
    /// counting and tests.
    pub(crate) fn route_from(&self, conn: &Arc<Conn>, frame: Bytes) -> Result<(), RouteError> {
        self.route_from_cached(conn, frame, &mut RouteCache::disabled())
    }

    /// [`Router::route_from`] with the sending connection's [`RouteCache`], which spares the
    /// table lookup while the sender keeps talking to the same peer.
    pub(crate) fn route_from_cached(
        &self,
        conn: &Arc<Conn>,
        frame: Bytes,
        cache: &mut RouteCache,
    ) -> Result<(), RouteError> {
        let c = &self.inner.counters;
        c.frames_in.fetch_add(1, Relaxed);
        conn.frames_in.fetch_add(1, Relaxed);
        c.bytes_in.fetch_add(frame.len() as u64, Relaxed);
        let result = self.route_inner(conn, &frame, cache);
        if let Err(err) = &result {
            c.rejected.fetch_add(1, Relaxed);
            let session = HeaderView::parse(&frame)
                .ok()
                .and_then(|v| v.session(&frame).map(str::to_owned));
            let target = HeaderView::parse(&frame)
                .ok()
                .and_then(|v| v.to(&frame).map(|t| self.normalise(conn, t)))
                .unwrap_or_else(|| self.inner.manager_addr.clone());
            match session {
                Some(s) => self.reject_to(conn, &target, &s, &err.to_string()),
                None => {
                    let text = handshake::error(&err.to_string());
                    let _ = self.push(conn, Outbound::Text(text));
                }
            }
        }
        result
    }

    fn normalise(&self, conn: &Conn, to: &str) -> String {
        if to == "*" {
            format!("{}/*", conn.ws)
        } else if !to.contains('/') {
            format!("{}/{to}", conn.ws)
        } else {
            to.to_owned()
        }
    }

    /// Routes one frame in two steps: [`Router::resolve`] decides where it goes (or why it
    /// is refused) from the header alone, then [`Router::deliver_to`] builds the rewritten
    /// frame — the one allocation — and hands it over. A refused frame is never copied.
    fn route_inner(
        &self,
        conn: &Arc<Conn>,
        frame: &Bytes,
        cache: &mut RouteCache,
    ) -> Result<(), RouteError> {
        let view = HeaderView::parse(frame)?;
        if let Some(m) = view.method(frame) {
            conn.note_sent_method(m);
        }
        let raw_to = view.target(frame)?.ok_or(RouteError::NoTarget)?;
        // Normalise without allocating: a relative target is `<own ws>/<raw_to>`.
        let (ws, cid) = match raw_to.split_once('/') {
            Some((w, c)) => (w, c),
            None => (conn.ws.as_str(), raw_to),
        };
        let dest = match self.resolve(conn, raw_to, ws, cid, cache) {
            // Not a call (a reply, a notification) for a client that is away: it may be
            // reconnecting; held if it left a moment ago (see `held`).
            Err(RouteError::NotConnected(_))
                if ws != "*" && cid != "*" && view.session(frame).is_none() =>
            {
                Destination::Held
            }
            r => r?,
        };
        self.deliver_to(conn, frame, &view, (ws, cid), dest)
    }

    /// Decides where a frame from `conn` addressed to the normalised `ws`/`cid` goes
    /// (protocol.md §2.4), reading the header only: the manager for `*/<manager_id>`, the
    /// subscribers of `ws` for `<ws>/*` (only the sender's own workspace, and only for a
    /// connection that may write — §2.7), otherwise the live connection at `ws`/`cid`,
    /// looked up through `cache` (`raw_to` is the target as the sender wrote it, the cache
    /// key).
    ///
    /// Errors: [`RouteError::NotConnected`] for an unknown target (including `*/<other>`),
    /// [`RouteError::ForeignBroadcast`] and [`RouteError::ReadOnlyBroadcast`] for refused
    /// broadcasts. Never allocates.
    pub(crate) fn resolve<'t>(
        &self,
        conn: &Conn,
        raw_to: &str,
        ws: &'t str,
        cid: &'t str,
        cache: &mut RouteCache,
    ) -> Result<Destination<'t>, RouteError> {
        if ws == "*" {
            if cid == self.manager_id() {
                return Ok(Destination::Manager);
            }
            // In a cluster, another node's manager (`manager-<node id>`) is reached through
            // the bus while that node is live (a provider answering a call that manager
            // made, e.g. for an HTTP request). When it is not (it restarts, or is gone),
            // this node's manager serves the frame: every manager serves the same
            // cluster-wide state, and a client that moved here may still name the old one
            // (hypha-rpc keeps `*/manager-<old node>` in retried lookups).
            let bus = &self.inner.bus;
            if let Some(node) = cid.strip_prefix("manager-").filter(|_| bus.clustered()) {
                if bus.is_peer(node) {
                    return Ok(Destination::Remote(Arc::from(node)));
                }
                return Ok(Destination::Manager);
            }
            return Err(RouteError::NotConnected(format!("{ws}/{cid}")));
        }
        if cid == "*" {
            if ws != conn.ws {
                return Err(RouteError::ForeignBroadcast(ws.to_owned(), conn.ws.clone()));
            }
            if !conn.can_write {
                return Err(RouteError::ReadOnlyBroadcast(ws.to_owned()));
            }
            return Ok(Destination::Workspace(ws));
        }
        let generation = self.inner.table.generation();
        if let Some(t) = &cache.target {
            if cache.generation == generation && cache.to == raw_to.as_bytes() {
                return Ok(Destination::Local(t.clone()));
            }
        }
        let Some(t) = self.inner.table.get(ws, cid) else {
            return self.resolve_remote(ws, cid);
        };
        if !cache.disabled {
            cache.generation = generation;
            cache.to.clear();
            cache.to.extend_from_slice(raw_to.as_bytes());
            cache.target = Some(t.clone());
        }
        Ok(Destination::Local(t))
    }

    /// A local miss: the node the directory names for `ws`/`cid`, if any (issue 10).
    /// Errors: [`RouteError::ClusterDown`] when the directory knows nobody and the bus is
    /// disconnected (it may be stale), else [`RouteError::NotConnected`]. No I/O; allocates
    /// only the error.
    fn resolve_remote<'t>(&self, ws: &str, cid: &str) -> Result<Destination<'t>, RouteError> {
        let bus = &self.inner.bus;
        if bus.clustered() {
            if let Some(node) = bus.locate(ws, cid) {
                return Ok(Destination::Remote(node));
            }
            if !bus.connected() {
                return Err(RouteError::ClusterDown(format!("{ws}/{cid}")));
            }
        }
        Err(RouteError::NotConnected(format!("{ws}/{cid}")))
    }

    /// Builds the frame `conn` sent, with its header rewritten for `to` (protocol.md §2.3
    /// steps 4–5), and hands it to `dest`. The one allocation per forwarded frame:
    /// rewritten header plus payload in one buffer, so a writer sends it as one WebSocket
    /// message without another copy, and every receiver of a fan-out shares it.
    fn deliver_to(
        &self,
        conn: &Conn,
        frame: &Bytes,
        view: &HeaderView,
        (ws, cid): (&str, &str),
        dest: Destination<'_>,
    ) -> Result<(), RouteError> {
        let stamp = &conn.stamp[..];
        let body = &frame[view.header_len()..];
        let to_len = ws.len() + 1 + cid.len();
        // For another node the envelope header goes first, in the same buffer.
        let node_id = self.inner.bus.node_id();
        let envelope_len = match dest {
            Destination::Remote(_) => envelope::header_len_parts(Kind::Unicast, node_id, to_len),
            _ => 0,
        };
        let mut out = Vec::with_capacity(
            envelope_len + rewritten_len(view, to_len, stamp.len()) + body.len(),
        );
        if envelope_len > 0 {
            envelope::write_header(&mut out, Kind::Unicast, node_id, &[ws, "/", cid])
                .map_err(|_| RouteError::NotConnected(format!("{ws}/{cid}")))?;
        }
        write_rewritten_header(&mut out, frame, view, &[ws, "/", cid], stamp);
        out.extend_from_slice(body);
        let out = Bytes::from(out);
        match dest {
            Destination::Manager => {
                self.hooks().manager_frame(out);
                Ok(())
            }
            Destination::Workspace(ws) => {
                let kind = view.kind(frame).unwrap_or_default();
                self.fan_out(ws, kind, &out);
                self.publish_broadcast(ws, kind, &out);
                Ok(())
            }
            Destination::Local(target) => {
                if target.ws != conn.ws {
                    conn.note_foreign_target(&target);
                }
                // Counted before the push: the answer may be routed before push returns.
                let call = view.session(frame).is_some();
                if call {
                    target.call_delivered();
                }
                self.push(&target, Outbound::Binary(out)).map_err(|_| {
                    if call {
                        target.call_undelivered();
                    }
                    RouteError::SlowPeer(format!("{ws}/{cid}"))
                })
            }
            Destination::Held => {
                let addr = format!("{ws}/{cid}");
                if self.hold(&addr, out, false) {
                    Ok(())
                } else {
                    Err(RouteError::NotConnected(addr))
                }
            }
            Destination::Remote(node) => {
                if ws != conn.ws {
                    self.note_remote_caller(conn, ws, cid, &node);
                }
                self.inner
                    .bus
                    .send_to_node(&node, out)
                    .map_err(|e| bus_refusal(e, ws, cid))
            }
        }
    }

    fn manager_id(&self) -> &str {
        &self.inner.manager_addr[2..]
    }

    /// Queues `item` on `target`, applying the slow-consumer policy (see `egress`).
    pub(crate) fn push(&self, target: &Arc<Conn>, item: Outbound) -> Result<(), PushError> {
        let len = item.len() as u64;
        match target.egress.push(item) {
            Ok(()) => {
                self.inner.counters.frames_out.fetch_add(1, Relaxed);
                self.inner.counters.bytes_out.fetch_add(len, Relaxed);
                Ok(())
            }
            Err(PushError::CloseSlowConsumer) => {
                self.inner
                    .counters
                    .slow_consumer_closes
                    .fetch_add(1, Relaxed);
                target.egress.close(CloseReason::SlowConsumer);
                Err(PushError::CloseSlowConsumer)
            }
            Err(e) => {
                self.inner.counters.dropped.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Sends `frame` to every connection of `ws` subscribed to `kind`; every receiver
    /// shares the same buffer.
    fn fan_out(&self, ws: &str, kind: &str, frame: &Bytes) {
        for m in self.inner.table.members(ws) {
            if m.subscribed(kind) {
                let _ = self.push(&m, Outbound::Binary(frame.clone()));
            }
        }
    }

    /// Sends the synthetic `<session>.reject` of protocol.md §2.6 to `conn`, as if from
    /// `target`.
    fn reject_to(&self, conn: &Arc<Conn>, target: &str, session: &str, message: &str) {
        let frame = reject_frame(target, &conn.addr, session, message);
        // Bounded like any frame: a client that floods bad frames and never reads cannot
        // grow its own queue without limit.
        let _ = self.push(conn, Outbound::Binary(Bytes::from(frame)));
    }

    /// Delivers a frame built by the manager (already carrying `from: "*/<manager_id>"`) to
    /// one client address. Returns false if the client is not connected or not accepting.
    /// A client on another node is reached through the Bus; then true means the envelope
    /// was queued for that node.
    ///
    /// A reply (a frame without a session) for a client that left a moment ago is held
    /// for it ([`crate::held`]) and true returned: the manager's answer to a call that
    /// was in flight while its caller's connection dropped reaches it after it reconnects.
    pub fn deliver(&self, to: &str, frame: Bytes) -> bool {
        match self.inner.table.get_addr(to) {
            Some(target) => {
                let call = is_call(&frame);
                if call {
                    target.call_delivered();
                }
                let ok = self.push(&target, Outbound::Binary(frame)).is_ok();
                if !ok && call {
                    target.call_undelivered();
                }
                ok
            }
            None => match self.locate_addr(to) {
                Some(node) => self.send_remote(&node, Kind::Unicast, to, &frame).is_ok(),
                None => !is_call(&frame) && self.hold(to, frame, false),
            },
        }
    }

    /// Whether frames are held for reconnecting clients now ([`crate::held`]); a node
    /// that shuts down waits a moment for them before it leaves the cluster.
    pub fn holds_frames(&self) -> bool {
        self.inner.held.any()
    }

    /// Delivers a server event (a single-map frame) to the subscribers of `kind` in `ws`,
    /// on this node and (through the Bus) on the others.
    pub fn broadcast_event(&self, ws: &str, kind: &str, frame: Bytes) {
        self.fan_out(ws, kind, &frame);
        self.publish_broadcast(ws, kind, &frame);
    }

    /// Delivers a server event to one client address if it subscribed to `kind`, on
    /// whichever node it is connected to.
    pub fn deliver_event(&self, to: &str, kind: &str, frame: Bytes) {
        match self.inner.table.get_addr(to) {
            Some(target) => {
                if target.subscribed(kind) {
                    let _ = self.push(&target, Outbound::Binary(frame));
                }
            }
            None => {
                if let Some(node) = self.locate_addr(to) {
                    let _ = self.send_remote(&node, Kind::Event { event: kind }, to, &frame);
                }
            }
        }
    }

    fn locate_addr(&self, addr: &str) -> Option<Arc<str>> {
        let (ws, cid) = addr.split_once('/')?;
        self.inner.bus.locate(ws, cid)
    }
}

/// The synthetic `<session>.reject` of protocol.md §2.6 from `from` to `to`.
fn reject_frame(from: &str, to: &str, session: &str, message: &str) -> Vec<u8> {
    let header = value::map([
        ("type", "method".into()),
        ("from", from.into()),
        ("to", to.into()),
        ("method", format!("{session}.reject").into()),
    ]);
    let extra = value::map([("args", rmpv::Value::Array(vec![value::error(message)]))]);
    encode_frame(&header, Some(&extra))
}

#[cfg(test)]
mod tests;
