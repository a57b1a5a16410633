//! The router's side of [`RouterControl`]: everything the control plane may do to the data
//! plane, as table lookups and queue pushes that never wait (DESIGN.md "Two planes"); the
//! cluster channel between control planes goes over the router's Bus ([`crate::bus`]).

use crate::table::Conn;
use crate::Router;
use bytes::Bytes;
use rhizo_interface::{ClientPresence, CloseReason, ControlHooks, CountersSnapshot, RouterControl};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn presence(c: &Conn) -> ClientPresence {
    ClientPresence {
        client_id: c.cid.clone(),
        conn_id: c.id,
        user: c.user.clone(),
        can_write: c.can_write,
        frames_in: c.frames_in.load(std::sync::atomic::Ordering::Relaxed),
        calls_in_flight: c.calls_in_flight(),
    }
}

// === impl Router (RouterControl) ===

impl RouterControl for Router {
    fn manager_addr(&self) -> &str {
        Router::manager_addr(self)
    }

    fn deliver(&self, to: &str, frame: Bytes) -> bool {
        Router::deliver(self, to, frame)
    }

    fn broadcast(&self, ws: &str, kind: &str, frame: Bytes) {
        self.broadcast_event(ws, kind, frame);
    }

    fn deliver_event(&self, to: &str, kind: &str, frame: Bytes) {
        Router::deliver_event(self, to, kind, frame);
    }

    fn subscribe(&self, addr: &str, events: &[String]) -> bool {
        self.live(addr)
            .map(|c| c.subscribe(events.iter().cloned()))
            .is_some()
    }

    fn unsubscribe(&self, addr: &str, events: &[String]) -> bool {
        self.live(addr)
            .map(|c| c.unsubscribe(events.iter().map(String::as_str)))
            .is_some()
    }

    fn close(&self, addr: &str, conn_id: Option<u64>, reason: CloseReason) -> bool {
        match self.live(addr) {
            Some(c) if conn_id.is_none_or(|id| id == c.id) => {
                c.egress.close(reason);
                true
            }
            _ => false,
        }
    }

    fn client(&self, addr: &str) -> Option<ClientPresence> {
        self.live(addr).map(|c| presence(&c))
    }

    fn presence(&self, ws: &str) -> Vec<ClientPresence> {
        self.inner
            .table
            .members(ws)
            .iter()
            .map(|c| presence(c))
            .collect()
    }

    fn client_count(&self, ws: &str) -> usize {
        self.inner.table.count(ws)
    }

    fn cluster_client_count(&self, ws: &str) -> usize {
        self.inner.table.count(ws) + self.inner.bus.remote_clients(ws)
    }

    fn workspace_counts(&self) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for conn in self.inner.table.all() {
            *counts.entry(conn.ws.clone()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    fn counters(&self) -> CountersSnapshot {
        let c = &self.inner.counters;
        let (mut total, mut max) = (0u64, 0u64);
        for conn in self.inner.table.all() {
            let q = conn.egress.queued() as u64;
            total += q;
            max = max.max(q);
        }
        let bus = self.inner.bus.stats();
        CountersSnapshot {
            frames_in: c.frames_in.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            frames_out: c.frames_out.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            slow_consumer_closes: c.slow_consumer_closes.load(Relaxed),
            held: c.held.load(Relaxed),
            connections: c.connections.load(Relaxed),
            connections_opened: c.connections_opened.load(Relaxed),
            connections_closed: c.connections_closed.load(Relaxed),
            ws_connections: c.ws_connections.load(Relaxed),
            ws_connections_opened: c.ws_connections_opened.load(Relaxed),
            rate_limited_closes: c.rate_limited_closes.load(Relaxed),
            queued_bytes_total: total,
            queued_bytes_max: max,
            bus_sent: bus.sent,
            bus_received: bus.received,
            bus_inbox_dropped: bus.inbox_dropped,
            bus_outbox_dropped: bus.outbox_dropped,
            bus_undelivered: bus.undelivered,
            bus_inbox_backlog: bus.inbox_backlog,
            bus_connected: u64::from(bus.connected),
        }
    }

    fn node_id(&self) -> &str {
        self.inner.bus.node_id()
    }

    fn nodes(&self) -> Vec<String> {
        self.inner.bus.peers()
    }

    fn cluster_attach(&self, hooks: Arc<dyn ControlHooks>) {
        self.inner.bus.attach_cluster(hooks);
    }

    fn cluster_publish(&self, message: Bytes) -> bool {
        self.inner.bus.clustered() && self.inner.bus.cluster_send(None, message).is_ok()
    }

    fn cluster_send(&self, node: &str, message: Bytes) -> bool {
        let bus = &self.inner.bus;
        bus.clustered()
            && !node.is_empty()
            && node != bus.node_id()
            && bus.cluster_send(Some(node), message).is_ok()
    }
}

// === impl Router (control helpers) ===

impl Router {
    fn live(&self, addr: &str) -> Option<Arc<Conn>> {
        self.inner.table.get_addr(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{Egress, Outbound};
    use crate::RouterConfig;
    use std::time::Duration;

    fn router_with(cids: &[&str]) -> (Router, Vec<tokio::sync::mpsc::UnboundedReceiver<Outbound>>) {
        let r = Router::new("manager-t", RouterConfig::default());
        let mut queues = Vec::new();
        for (i, cid) in cids.iter().enumerate() {
            let (e, rx) = Egress::new(1 << 20, Duration::from_secs(1));
            let conn = Conn::new(i as u64 + 1, "w", cid, Bytes::from_static(b"\x80"), true, e);
            r.inner.table.insert(Arc::new(conn));
            queues.push(rx);
        }
        (r, queues)
    }

    #[test]
    fn presence_subscriptions_and_counters() {
        let (r, mut queues) = router_with(&["a", "b"]);
        let ctl: &dyn RouterControl = &r;
        assert_eq!(ctl.manager_addr(), "*/manager-t");
        assert_eq!(ctl.client_count("w"), 2);
        assert_eq!(ctl.workspace_counts(), [("w".to_owned(), 2)]);
        let mut ids: Vec<String> = ctl.presence("w").into_iter().map(|p| p.client_id).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(ctl.client("w/a").unwrap().conn_id, 1);
        assert!(ctl.client("w/zz").is_none());

        assert!(ctl.subscribe("w/a", &["ev".to_owned()]));
        assert!(!ctl.subscribe("w/zz", &["ev".to_owned()]));
        ctl.broadcast("w", "ev", Bytes::from_static(b"event"));
        assert!(matches!(queues[0].try_recv(), Ok(Outbound::Binary(_))));
        assert!(queues[1].try_recv().is_err(), "b did not subscribe");
        assert!(ctl.unsubscribe("w/a", &["ev".to_owned()]));
        ctl.deliver_event("w/a", "ev", Bytes::from_static(b"event"));
        assert!(queues[0].try_recv().is_err(), "a unsubscribed");

        assert!(ctl.deliver("w/b", Bytes::from_static(b"0123456789")));
        assert!(!ctl.deliver("w/zz", Bytes::from_static(b"x")));
        let snap = ctl.counters();
        assert_eq!(snap.frames_out, 2);
        // Nobody told a's egress that the event left (no writer here): 5 + 10 queued.
        assert_eq!(snap.queued_bytes_max, 10);
        assert_eq!(snap.queued_bytes_total, 15);
    }

    #[test]
    fn each_connection_counts_the_frames_it_sends() {
        let (r, _queues) = router_with(&["a", "b"]);
        let ctl: &dyn RouterControl = &r;
        assert_eq!(ctl.client("w/a").unwrap().frames_in, 0);
        let a = r.inner.table.get("w", "a").expect("a is connected");
        let header = rhizo_protocol::value::map([
            ("type", "method".into()),
            ("to", "w/b".into()),
            ("method", "services.x.f".into()),
        ]);
        let frame = Bytes::from(rhizo_protocol::message::encode_frame(&header, None));
        for _ in 0..3 {
            let _ = r.route_from(&a, frame.clone());
        }
        assert_eq!(ctl.client("w/a").unwrap().frames_in, 3);
        assert_eq!(
            ctl.client("w/b").unwrap().frames_in,
            0,
            "receiving is not sending"
        );
    }

    #[test]
    fn calls_in_flight_count_calls_delivered_until_answered() {
        let (r, _queues) = router_with(&["caller", "app"]);
        let ctl: &dyn RouterControl = &r;
        let caller = r.inner.table.get("w", "caller").expect("connected");
        let app = r.inner.table.get("w", "app").expect("connected");
        let frame = |to: &str, method: &str, session: Option<&str>| {
            let mut h = rhizo_protocol::value::map([
                ("type", "method".into()),
                ("to", to.into()),
                ("method", method.into()),
            ]);
            if let Some(s) = session {
                rhizo_protocol::value::set(&mut h, "session", s.into());
            }
            Bytes::from(rhizo_protocol::message::encode_frame(&h, None))
        };
        for s in ["s1", "s2", "s3"] {
            r.route_from(&caller, frame("w/app", "services.echo.echo", Some(s)))
                .unwrap();
        }
        // A notification (no session) awaits no answer.
        r.route_from(&caller, frame("w/app", "services.echo.log", None))
            .unwrap();
        assert_eq!(ctl.client("w/app").unwrap().calls_in_flight, 3);
        assert_eq!(ctl.client("w/caller").unwrap().calls_in_flight, 0);
        r.route_from(&app, frame("w/caller", "s1.resolve", None))
            .unwrap();
        r.route_from(&app, frame("w/caller", "s2.reject", None))
            .unwrap();
        r.route_from(&app, frame("w/caller", "s9.heartbeat", None))
            .unwrap();
        assert_eq!(ctl.client("w/app").unwrap().calls_in_flight, 1);
        // The manager's calls count too; extra answers never go below zero.
        assert!(ctl.deliver(
            "w/app",
            frame("w/app", "services.built-in.ping", Some("m1"))
        ));
        assert_eq!(ctl.client("w/app").unwrap().calls_in_flight, 2);
        for s in ["s3", "m1", "x", "y"] {
            r.route_from(&app, frame("w/caller", &format!("{s}.resolve"), None))
                .unwrap();
        }
        assert_eq!(ctl.client("w/app").unwrap().calls_in_flight, 0);
    }

    #[test]
    fn close_spares_a_successor() {
        let (r, _queues) = router_with(&["a"]);
        let ctl: &dyn RouterControl = &r;
        assert!(
            !ctl.close("w/a", Some(99), CloseReason::Shutdown),
            "wrong id"
        );
        assert!(ctl.close("w/a", Some(1), CloseReason::Shutdown));
        assert!(ctl.close("w/a", None, CloseReason::Shutdown));
        assert!(!ctl.close("w/none", None, CloseReason::Shutdown));
    }
}
