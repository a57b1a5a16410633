//! rhizo's data plane: owns client connections and forwards their frames.
//!
//! For every binary frame it decodes only the msgpack header, stamps the trusted fields and
//! hands the frame to the destination's bounded egress queue; the payload travels as a
//! `Bytes` slice of the frame it arrived in (DESIGN.md "Router"). Everything with state or
//! policy lives in the control plane, reached through [`hooks::ControlHooks`]; the control
//! plane drives the router through [`RouterControl`] (implemented in `control.rs`).
//!
//! * [`ws`] — the WebSocket transport at `/ws` and the handshake (protocol.md §1, §6).
//! * [`http_stream`] — the HTTP streaming transport at `/rpc` (protocol.md §7).
//! * [`route`] — the routing pipeline (protocol.md §2).
//! * [`table`] — the sharded client table.
//! * [`egress`] — per-connection bounded queues and the slow-consumer policy.
//! * [`close`] — close reasons. [`rate`] — per-connection message budgets.
//! * [`bus`] — the Bus between nodes (in-process | Redis); [`directory`] — which node
//!   holds which client.

pub mod bus;
mod control;
pub mod directory;
mod egress;
mod held;
pub mod http_stream;
#[cfg(feature = "internals")]
pub mod internals;
pub mod rate;
pub mod route;
mod table;
pub mod ws;

pub use bus::{Bus, BusStats, InProcess};
/// Close reasons and the control-plane hooks live in the interface crate that both planes
/// depend on; re-exported here under their old paths.
pub use rhizo_interface::{close, hooks};
pub use rhizo_interface::{Admission, CloseReason, ControlHooks, Refusal, RouterControl};
pub use route::{RouteError, Router};

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Router tunables. Defaults are the reference's where one exists.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Largest accepted WebSocket message, bytes (reference/uvicorn: 16 MiB). Larger
    /// frames close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Egress queue limit per connection, bytes. Size it to a few large frames: clients
    /// chunk calls at 256 KiB, but a single event or reply may be up to `max_frame_bytes`.
    pub egress_limit_bytes: usize,
    /// How long an egress queue may stay full before the connection is closed.
    pub slow_consumer_grace: Duration,
    /// Time allowed for the first (auth) frame (reference: 5 s).
    pub auth_timeout: Duration,
    /// Close a connection after this long without any frame (reference: 600 s).
    pub idle_timeout: Duration,
    /// Frames a writer sends per batch before flushing.
    pub write_batch: usize,
    /// Per-connection read buffer, bytes: allocated for every connection and the most one
    /// socket read takes. Small keeps idle connections cheap (tungstenite's default of
    /// 128 KiB costs ~150 KiB RSS per connection); large frames still arrive whole, in
    /// more reads.
    pub read_buffer_bytes: usize,
    /// Interval of the `{"type":"ping"}` keepalive records on HTTP streams (protocol.md
    /// §7.1: at most 15 s, below the Python client's 30 s read timeout).
    pub stream_keepalive: Duration,
    /// Messages a WebSocket connection may send (`HYPHA_WS_MSG_RATE_LIMIT` /
    /// `HYPHA_WS_MSG_BURST_LIMIT`); beyond it the connection is closed with 1008 "Rate
    /// limit exceeded". `None` (the default) sets no limit.
    pub msg_rate: Option<rate::MsgRate>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            egress_limit_bytes: 64 * 1024 * 1024,
            slow_consumer_grace: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            write_batch: 64,
            read_buffer_bytes: 8 * 1024,
            stream_keepalive: http_stream::KEEPALIVE_INTERVAL,
            msg_rate: None,
        }
    }
}

/// Load and traffic counters, sampled by the control plane (all monotonic except the
/// gauges `connections` and `ws_connections`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Binary frames received from clients.
    pub frames_in: AtomicU64,
    /// Bytes of binary frames received from clients.
    pub bytes_in: AtomicU64,
    /// Frames queued to clients.
    pub frames_out: AtomicU64,
    /// Bytes of the frames queued to clients.
    pub bytes_out: AtomicU64,
    /// Frames refused back to their sender (malformed, unroutable, slow target, denied).
    pub rejected: AtomicU64,
    /// Frames dropped because a target's queue was full or closed.
    pub dropped: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_consumer_closes: AtomicU64,
    /// Frames held for a client that was reconnecting (see `held`); those not delivered
    /// within the window are also counted in `dropped`.
    pub held: AtomicU64,
    /// Connections currently open (after the handshake).
    pub connections: AtomicU64,
    /// Connections opened since start, every transport (monotonic).
    pub connections_opened: AtomicU64,
    /// Connections ended since start, every transport (monotonic).
    pub connections_closed: AtomicU64,
    /// WebSocket connections currently open (a part of `connections`).
    pub ws_connections: AtomicU64,
    /// WebSocket connections opened since start (monotonic).
    pub ws_connections_opened: AtomicU64,
    /// WebSocket connections closed for going over the message rate (monotonic).
    pub rate_limited_closes: AtomicU64,
}

impl Counters {
    /// A connection passed its handshake: one relaxed increment per counter, once per
    /// connection (never per frame).
    pub(crate) fn opened(&self, websocket: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connections.fetch_add(1, Relaxed);
        self.connections_opened.fetch_add(1, Relaxed);
        if websocket {
            self.ws_connections.fetch_add(1, Relaxed);
            self.ws_connections_opened.fetch_add(1, Relaxed);
        }
    }

    /// A connection counted by [`Counters::opened`] ended.
    pub(crate) fn closed(&self, websocket: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connections.fetch_sub(1, Relaxed);
        self.connections_closed.fetch_add(1, Relaxed);
        if websocket {
            self.ws_connections.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod counters_tests {
    use super::Counters;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn opened_and_closed_keep_the_gauges_and_totals_apart() {
        let c = Counters::default();
        c.opened(true);
        c.opened(false);
        c.opened(true);
        c.closed(true);
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        assert_eq!(read(&c.connections), 2);
        assert_eq!(read(&c.ws_connections), 1);
        assert_eq!(read(&c.connections_opened), 3);
        assert_eq!(read(&c.ws_connections_opened), 2);
        assert_eq!(read(&c.connections_closed), 1);
        c.closed(false);
        assert_eq!(read(&c.connections), 1);
        assert_eq!(read(&c.ws_connections), 1);
        assert_eq!(read(&c.connections_closed), 2);
    }
}
