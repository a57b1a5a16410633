//! The router's side of the cluster (issue 10): what it hands the Bus and what the Bus
//! hands back. Envelopes from other nodes are delivered here ([`Router::receive_envelope`],
//! with reject-back for calls that find nobody); envelopes the Bus could not hand over come
//! back to be re-sent or failed ([`Router::undelivered`]); replies for a client that just
//! left are held for its reconnection ([`crate::held`], [`Router::hold`] and the flush
//! task); and the Bus's view of the local clients ([`LocalView`]) tells callers when a
//! remote client they called is gone.

use super::*;

/// The local clients as the Bus sees them (without keeping the router alive).
pub(super) struct LocalView(pub(super) Weak<Inner>);

impl LocalClients for LocalView {
    fn addresses(&self) -> Vec<String> {
        self.0
            .upgrade()
            .map(|i| i.table.all().iter().map(|c| c.addr.clone()).collect())
            .unwrap_or_default()
    }

    fn remote_gone(&self, addr: &str) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        inner.held.departed(addr);
        let Some((ws, cid)) = addr.split_once('/') else {
            return;
        };
        let callers = inner
            .remote_callers
            .get(ws)
            .and_then(|m| m.remove(cid).map(|(_, (_, c))| c));
        inner.remote_callers.remove_if(ws, |_, m| m.is_empty());
        if let Some(callers) = callers {
            tell_remote_gone(&inner, addr, callers);
        }
    }

    fn undelivered(&self, node: &str, envelope: Bytes) {
        if let Some(inner) = self.0.upgrade() {
            Router { inner }.undelivered(node, envelope);
        }
    }

    fn overflowed(&self, envelope: Bytes) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let router = Router { inner };
        if let Ok((head, frame)) = envelope::decode_bytes(&envelope) {
            if head.kind == Kind::Unicast {
                let e = format!(
                    "Server node {} is overloaded; message rejected",
                    router.inner.bus.node_id()
                );
                router.reject_back(head.origin, head.target, &frame, &e);
            }
        }
    }

    fn node_gone(&self, node: &str) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let mut gone = Vec::new();
        for per_ws in inner.remote_callers.iter() {
            let ws = per_ws.key().clone();
            per_ws.retain(|cid, (n, callers)| {
                let keep = &**n != node;
                if !keep {
                    gone.push((format!("{ws}/{cid}"), std::mem::take(callers)));
                }
                keep
            });
        }
        inner.remote_callers.retain(|_, m| !m.is_empty());
        for (addr, callers) in gone {
            tell_remote_gone(&inner, &addr, callers);
        }
    }
}

/// Tells the callers of the remote client `addr` that are still connected here that it is
/// gone ([`ControlHooks::remote_client_gone`]).
fn tell_remote_gone(inner: &Inner, addr: &str, callers: std::collections::HashSet<String>) {
    let callers: Vec<String> = callers
        .into_iter()
        .filter(|c| inner.table.get_addr(c).is_some())
        .collect();
    tracing::debug!(client = %addr, ?callers, "remote client gone; telling its callers");
    if let (false, Some(hooks)) = (callers.is_empty(), inner.hooks.get()) {
        hooks.remote_client_gone(addr, callers);
    }
}

impl Router {
    /// Records that `conn` sent a frame to the remote client `ws`/`cid` of another
    /// workspace (see [`Inner::remote_callers`]); no allocation once the pair is known.
    pub(super) fn note_remote_caller(&self, conn: &Conn, ws: &str, cid: &str, node: &Arc<str>) {
        let known = self
            .inner
            .remote_callers
            .get(ws)
            .and_then(|m| {
                m.get(cid)
                    .map(|e| Arc::ptr_eq(&e.0, node) && e.1.contains(&conn.addr))
            })
            .unwrap_or(false);
        if !known {
            let per_ws = self.inner.remote_callers.entry(ws.to_owned()).or_default();
            let mut e = per_ws
                .entry(cid.to_owned())
                .or_insert_with(|| (node.clone(), Default::default()));
            if !Arc::ptr_eq(&e.0, node) {
                // The client moved to another node: its old callers stay noted.
                e.0 = node.clone();
            }
            e.1.insert(conn.addr.clone());
        }
    }

    /// Publishes a broadcast `frame` of event type `kind` in `ws` for the other nodes
    /// (a no-op on a single node). Best effort: a refused envelope is counted by the bus.
    pub(super) fn publish_broadcast(&self, ws: &str, kind: &str, frame: &[u8]) {
        let bus = &self.inner.bus;
        if !bus.clustered() {
            return;
        }
        let head = envelope::Envelope {
            kind: Kind::Broadcast { event: kind },
            origin: bus.node_id(),
            target: ws,
        };
        if let Ok(env) = head.encode(frame) {
            let _ = bus.publish_workspace(ws, Bytes::from(env));
        }
    }

    /// Sends `frame` to `addr` on `node` as one envelope of `kind`.
    pub(super) fn send_remote(
        &self,
        node: &Arc<str>,
        kind: Kind<'_>,
        addr: &str,
        frame: &[u8],
    ) -> Result<(), BusError> {
        let bus = &self.inner.bus;
        let head = envelope::Envelope {
            kind,
            origin: bus.node_id(),
            target: addr,
        };
        let env = head.encode(frame).map_err(|_| BusError::Full)?;
        bus.send_to_node(node, Bytes::from(env))
    }

    /// Delivers one envelope another node sent here (the inbox drain calls it). The frame
    /// was stamped by the origin node's router, which is trusted; the target is checked
    /// again here: a call (a frame with a `session`) for a client that is not connected,
    /// or whose queue is full, is answered with a reject-back to the origin node.
    /// Malformed envelopes are dropped and counted.
    pub(crate) fn receive_envelope(&self, env: Bytes) {
        let Ok((head, frame)) = envelope::decode_bytes(&env) else {
            self.inner.counters.dropped.fetch_add(1, Relaxed);
            return;
        };
        match head.kind {
            Kind::Unicast if head.target == self.inner.manager_addr => {
                self.hooks().manager_frame(frame);
            }
            Kind::Unicast => match self.inner.table.get_addr(head.target) {
                Some(t) => {
                    // Counted before the push: the answer may be routed before it returns.
                    let call = is_call(&frame);
                    if call {
                        t.call_delivered();
                    }
                    if self.push(&t, Outbound::Binary(frame.clone())).is_err() {
                        if call {
                            t.call_undelivered();
                        }
                        let e = RouteError::SlowPeer(head.target.to_owned());
                        self.reject_back(head.origin, head.target, &frame, &e.to_string());
                    }
                }
                None if is_call(&frame) => {
                    let e = RouteError::NotConnected(head.target.to_owned());
                    self.reject_back(head.origin, head.target, &frame, &e.to_string());
                }
                None if self.inner.held.recently_departed(head.target) => {
                    // It is reconnecting, maybe to another node: the origin holds it.
                    let origin: Arc<str> = Arc::from(head.origin);
                    let _ = self.send_remote(&origin, Kind::Returned, head.target, &frame);
                }
                None => {
                    self.inner.counters.dropped.fetch_add(1, Relaxed);
                }
            },
            Kind::Returned => {
                if !self.hold(head.target, frame, true) {
                    self.inner.counters.dropped.fetch_add(1, Relaxed);
                }
            }
            Kind::Event { event } => {
                if let Some(t) = self.inner.table.get_addr(head.target) {
                    if t.subscribed(event) {
                        let _ = self.push(&t, Outbound::Binary(frame));
                    }
                }
            }
            Kind::Broadcast { event } => {
                if head.origin != self.inner.bus.node_id() {
                    self.fan_out(head.target, event, &frame);
                }
            }
            Kind::Reject => {
                if head.target == self.inner.manager_addr {
                    self.hooks().manager_frame(frame);
                } else if let Some(t) = self.inner.table.get_addr(head.target) {
                    let _ = self.push(&t, Outbound::Binary(frame));
                }
            }
        }
    }

    /// Answers a call in `frame` (sent from a client on `origin` to `target` here) with
    /// `<session>.reject` carrying `message`, through the origin node. Frames without a
    /// session are dropped and counted.
    fn reject_back(&self, origin: &str, target: &str, frame: &[u8], message: &str) {
        self.inner.counters.rejected.fetch_add(1, Relaxed);
        let Some((session, from)) = self.call_of(frame) else {
            return;
        };
        let reject = reject_frame(target, &from, &session, message);
        let node: Arc<str> = Arc::from(origin);
        let _ = self.send_remote(&node, Kind::Reject, &from, &reject);
    }

    /// The `(session, from)` of a stamped call frame; `None` (counted as dropped) for a
    /// frame without a session (a reply, a notification) or an unreadable header. Rare
    /// path: the stamped `from` is not among the routing fields, so the header is decoded
    /// whole here.
    fn call_of(&self, frame: &[u8]) -> Option<(String, String)> {
        let call = match rmpv::decode::read_value(&mut &frame[..]) {
            Ok(rmpv::Value::Map(header)) => {
                let field = |k: &str| {
                    header
                        .iter()
                        .find(|(key, _)| key.as_str() == Some(k))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_owned)
                };
                field("session").zip(field("from"))
            }
            _ => None,
        };
        if call.is_none() {
            self.inner.counters.dropped.fetch_add(1, Relaxed);
        }
        call
    }

    /// An envelope this node queued for `node` came back undelivered (see
    /// [`LocalClients::undelivered`]). A frame for a client goes where the client is now
    /// (connected here, or placed on another node by the directory); failing that, a call
    /// is answered with a reject to its sender here (a client or the manager). Other
    /// kinds are dropped and counted.
    pub(crate) fn undelivered(&self, node: &str, env: Bytes) {
        let Ok((head, frame)) = envelope::decode_bytes(&env) else {
            self.inner.counters.dropped.fetch_add(1, Relaxed);
            return;
        };
        let event = match head.kind {
            Kind::Unicast => None,
            Kind::Event { event } => Some(event),
            Kind::Reject | Kind::Broadcast { .. } | Kind::Returned => {
                self.inner.counters.dropped.fetch_add(1, Relaxed);
                return;
            }
        };
        if let Some(t) = self.inner.table.get_addr(head.target) {
            if event.is_none_or(|e| t.subscribed(e)) {
                let _ = self.push(&t, Outbound::Binary(frame));
            }
            return;
        }
        if let Some(now) = self.locate_addr(head.target) {
            if &*now != node && self.inner.bus.send_to_node(&now, env.clone()).is_ok() {
                return;
            }
        }
        if event.is_some() {
            self.inner.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        if !is_call(&frame) {
            // A reply for a client of the node that is gone: it is reconnecting.
            if !self.hold(head.target, frame, true) {
                self.inner.counters.dropped.fetch_add(1, Relaxed);
            }
            return;
        }
        let e = RouteError::NodeGone(head.target.to_owned(), node.to_owned());
        self.fail_local_call(head.target, &frame, &e.to_string());
    }

    /// Answers the call in `frame` (stamped here, sent to `target`) with a reject to its
    /// sender on this node: a client, or the manager. A frame without a session (a
    /// reply, a notification) is dropped and counted.
    fn fail_local_call(&self, target: &str, frame: &[u8], message: &str) {
        self.inner.counters.rejected.fetch_add(1, Relaxed);
        let Some((session, from)) = self.call_of(frame) else {
            return;
        };
        if from == self.inner.manager_addr {
            let reject = reject_frame(target, &from, &session, message);
            self.hooks().manager_frame(Bytes::from(reject));
        } else if let Some(conn) = self.inner.table.get_addr(&from) {
            self.reject_to(&conn, target, &session, message);
        }
    }

    /// Holds `frame` for the client at `addr` ([`crate::held`]); `vouched`: another node
    /// says the client just left. Returns whether it was held.
    pub(super) fn hold(&self, addr: &str, frame: Bytes, vouched: bool) -> bool {
        let held = self.inner.held.hold(addr, frame, vouched);
        if held {
            self.inner.counters.held.fetch_add(1, Relaxed);
        }
        tracing::debug!(client = %addr, vouched, held, "frame for a departed client");
        held
    }

    /// Delivers the held frames whose client is connected again, here or on another node;
    /// drops (and counts) those that waited too long.
    fn flush_held(&self) {
        let taken = self.inner.held.take(|addr| {
            self.inner.table.get_addr(addr).is_some() || self.locate_addr(addr).is_some()
        });
        let c = &self.inner.counters;
        c.dropped.fetch_add(taken.expired as u64, Relaxed);
        for (addr, frames) in taken.ready {
            tracing::debug!(client = %addr, frames = frames.len(), "held frames delivered");
            if let Some(t) = self.inner.table.get_addr(&addr) {
                for f in frames {
                    let _ = self.push(&t, Outbound::Binary(f));
                }
            } else if let Some(node) = self.locate_addr(&addr) {
                for f in frames {
                    if self.send_remote(&node, Kind::Unicast, &addr, &f).is_err() {
                        c.dropped.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    /// Holds the frames queued for the client at `addr` that its connection did not write
    /// before it ended, except calls (their callers hear of the departure anyway), for
    /// its reconnection ([`crate::held`]).
    pub(crate) fn hold_unsent(&self, addr: &str, unsent: impl Iterator<Item = Outbound>) {
        for item in unsent {
            if let Outbound::Binary(frame) = item {
                if !is_call(&frame) && !self.hold(addr, frame, true) {
                    self.inner.counters.dropped.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// A client connection ended: it leaves the table (unless a newer connection took its
    /// address), its departure is noted for [`crate::held`], and the control plane is
    /// told.
    pub(crate) fn forget(&self, conn: &Conn) {
        if self.inner.table.remove(conn) {
            self.inner.held.departed(&conn.addr);
            tracing::debug!(client = %conn.addr, "disconnected");
            let r = ConnRef {
                id: conn.id,
                ws: &conn.ws,
                cid: &conn.cid,
            };
            self.hooks().disconnected(r, conn.foreign_callers());
        }
    }
}

/// The error a sender gets when the Bus refused its frame for `ws`/`cid`.
pub(super) fn bus_refusal(e: BusError, ws: &str, cid: &str) -> RouteError {
    match e {
        BusError::Full => RouteError::SlowPeer(format!("{ws}/{cid}")),
        BusError::Disconnected => RouteError::ClusterDown(format!("{ws}/{cid}")),
        BusError::NotClustered => RouteError::NotConnected(format!("{ws}/{cid}")),
    }
}

/// Whether a stamped frame is a call (its header has a `session`: a reply is expected).
pub(super) fn is_call(frame: &[u8]) -> bool {
    HeaderView::parse(frame).is_ok_and(|v| v.session(frame).is_some())
}

/// Delivers the router's held frames every 50 ms while any is held, until the router
/// goes away (also while it shuts down: a node that is leaving still hands its departed
/// clients' frames to the nodes they reconnect to).
pub(super) async fn flush_held(inner: Weak<Inner>, held: Arc<Held>) {
    loop {
        if !held.any() {
            held.wake.notified().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Router { inner }.flush_held();
    }
}

/// Delivers what other nodes send to this one, in batches, until the bus or the router
/// goes away. The bus's reader only `try_send`s into `inbox`; this task does the work.
pub(super) async fn drain_inbox(inner: Weak<Inner>, mut inbox: tokio::sync::mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(64);
    while inbox.recv_many(&mut batch, 64).await > 0 {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let router = Router { inner };
        for env in batch.drain(..) {
            router.receive_envelope(env);
        }
    }
}
