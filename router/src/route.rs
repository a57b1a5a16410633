//! The routing pipeline (protocol.md §2.3–2.7): decode the header only, normalise `to`,
//! stamp the trusted fields, deliver to one connection, the manager or the subscribers of a
//! workspace, and answer undeliverable calls with a reject the caller understands.

use crate::close::CloseReason;
use crate::egress::{Outbound, PushError};
use crate::hooks::ControlHooks;
use crate::table::{ClientTable, Conn};
use crate::{Counters, RouterConfig};
use bytes::Bytes;
use rhizo_protocol::frame::{rewritten_len, write_rewritten_header, HeaderView};
use rhizo_protocol::handshake;
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

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
    /// A client connected to another router instance, named by that instance's node id,
    /// reached through the Bus (DESIGN.md "Router"). Not produced yet: this router knows
    /// only its own connections until the Redis Bus lands; delivering it reports the
    /// target as not connected.
    #[allow(dead_code)] // constructed by the Bus (scale-out issue)
    Remote(String),
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
}

// === impl Router ===

impl Router {
    /// A router whose manager peer is `*/<manager_id>`.
    pub fn new(manager_id: &str, config: RouterConfig) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Router {
            inner: Arc::new(Inner {
                table: ClientTable::default(),
                manager_addr: format!("*/{manager_id}"),
                hooks: OnceLock::new(),
                config,
                counters: Counters::default(),
                next_id: std::sync::atomic::AtomicU64::new(1),
                shutdown,
            }),
        }
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

    /// Tells every connection to close with `CloseReason::Shutdown`.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        for c in self.inner.table.all() {
            c.egress.close(CloseReason::Shutdown);
        }
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
        let raw_to = view.target(frame)?.ok_or(RouteError::NoTarget)?;
        // Normalise without allocating: a relative target is `<own ws>/<raw_to>`.
        let (ws, cid) = match raw_to.split_once('/') {
            Some((w, c)) => (w, c),
            None => (conn.ws.as_str(), raw_to),
        };
        let dest = self.resolve(conn, raw_to, ws, cid, cache)?;
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
            return Err(RouteError::NotConnected(format!("{ws}/{cid}")));
        };
        if !cache.disabled {
            cache.generation = generation;
            cache.to.clear();
            cache.to.extend_from_slice(raw_to.as_bytes());
            cache.target = Some(t.clone());
        }
        Ok(Destination::Local(t))
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
        let mut out = Vec::with_capacity(
            rewritten_len(view, ws.len() + 1 + cid.len(), stamp.len()) + body.len(),
        );
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
                Ok(())
            }
            Destination::Local(target) => {
                if target.ws != conn.ws {
                    conn.note_foreign_target(&target);
                }
                self.push(&target, Outbound::Binary(out))
                    .map_err(|_| RouteError::SlowPeer(format!("{ws}/{cid}")))
            }
            Destination::Remote(_) => Err(RouteError::NotConnected(format!("{ws}/{cid}"))),
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
        let header = value::map([
            ("type", "method".into()),
            ("from", target.into()),
            ("to", conn.addr.as_str().into()),
            ("method", format!("{session}.reject").into()),
        ]);
        let extra = value::map([("args", rmpv::Value::Array(vec![value::error(message)]))]);
        let frame = encode_frame(&header, Some(&extra));
        // Bounded like any frame: a client that floods bad frames and never reads cannot
        // grow its own queue without limit.
        let _ = self.push(conn, Outbound::Binary(Bytes::from(frame)));
    }

    /// Delivers a frame built by the manager (already carrying `from: "*/<manager_id>"`) to
    /// one client address. Returns false if the client is not connected or not accepting.
    pub fn deliver(&self, to: &str, frame: Bytes) -> bool {
        let Some(target) = self.inner.table.get_addr(to) else {
            return false;
        };
        self.push(&target, Outbound::Binary(frame)).is_ok()
    }

    /// Delivers a server event (a single-map frame) to the subscribers of `kind` in `ws`.
    pub fn broadcast_event(&self, ws: &str, kind: &str, frame: Bytes) {
        self.fan_out(ws, kind, &frame);
    }

    /// Delivers a server event to one client address if it subscribed to `kind`.
    pub fn deliver_event(&self, to: &str, kind: &str, frame: Bytes) {
        if let Some(target) = self.inner.table.get_addr(to) {
            if target.subscribed(kind) {
                let _ = self.push(&target, Outbound::Binary(frame));
            }
        }
    }
}

#[cfg(test)]
mod tests;
