//! `GET /metrics` in the Prometheus text format (issue: HTTP, item 4): connections, frames
//! and bytes in/out, queue depths, rejected/dropped frames, per-workspace clients and
//! services, HTTP requests by route and status, as `rhizo_*` families.
//!
//! Beside them, the families of the reference server (Hypha 0.21.x) under its own names,
//! so that its dashboards and alerts keep working — those whose meaning rhizo can fill
//! honestly (none of them carries labels in the reference, except `event_bus`):
//!
//! | reference family | type | filled from |
//! |---|---|---|
//! | `rpc_call_total` | counter | frames received from clients (`frames_in`): the reference counts every message a client emits |
//! | `client_requests_total` | counter | the same (`frames_in`) |
//! | `websocket_connections` | gauge | WebSocket connections open now (`ws_connections`) |
//! | `websocket_connections_established_total` | counter | WebSocket connections opened since start (`ws_connections_opened`) |
//! | `websocket_rate_limited_disconnects_total` | counter | WebSocket connections closed for exceeding the message rate (`rate_limited_closes`) |
//! | `redis_rpc_active_connections` | gauge | RPC connections open now, every transport (`connections`) |
//! | `redis_rpc_connections_created_total` | counter | RPC connections opened since start, every transport (`connections_opened`) |
//! | `redis_rpc_connections_closed_total` | counter | RPC connections ended since start (`connections_closed`) |
//! | `event_bus_total{event="*",status="processed"}` | counter | envelopes received from other nodes over the cluster bus (`bus_received`; 0 on a single node, where no message crosses a bus) |
//! | `redis_eventbus_messages_processed_total` | counter | the same (`bus_received`) |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_cpu_seconds_total`, `process_start_time_seconds` | gauge / counter | `/proc/self` (Linux), as prometheus_client's process collector, which the reference exports by default |
//!
//! Not exported, for want of an honest source: `client_load_current` (requests per minute
//! of whichever `__rlb` client last reported), `redis_pubsub_latency_seconds` and the other
//! `redis_eventbus_*` pub/sub bookkeeping, the `*_created` timestamps prometheus_client adds
//! to each counter, and the `python_*` runtime families.

use crate::manager::Manager;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::fmt::Write;
use std::sync::Arc;

pub(super) fn routes() -> axum::Router<Arc<Manager>> {
    axum::Router::new().route("/metrics", get(metrics))
}

/// Counts every HTTP request by its route template (never the raw path, so the label
/// set stays small) and response status.
pub(super) async fn count_requests(
    State(m): State<Arc<Manager>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    *m.http_requests
        .entry((route, response.status().as_u16()))
        .or_insert(0) += 1;
    response
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard `process_*` families (as prometheus_client's process collector writes
/// them); a figure `/proc` did not give is left out.
fn process_families(out: &mut String, p: &super::health::Process) {
    let u = |v: Option<u64>| v.map(|v| v as f64);
    for (name, kind, help, value) in [
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            u(p.vms_bytes),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            u(p.rss_bytes),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            u(p.open_fds),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            u(p.max_fds),
        ),
    ] {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
}

async fn metrics(State(m): State<Arc<Manager>>) -> impl IntoResponse {
    let c = m.router.counters();
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let router_families = [
        (
            "rhizo_connections",
            "gauge",
            "Open client connections.",
            c.connections,
        ),
        (
            "rhizo_frames_in_total",
            "counter",
            "Binary frames received from clients.",
            c.frames_in,
        ),
        (
            "rhizo_bytes_in_total",
            "counter",
            "Bytes of binary frames received from clients.",
            c.bytes_in,
        ),
        (
            "rhizo_frames_out_total",
            "counter",
            "Frames queued to clients.",
            c.frames_out,
        ),
        (
            "rhizo_bytes_out_total",
            "counter",
            "Bytes of frames queued to clients.",
            c.bytes_out,
        ),
        (
            "rhizo_frames_rejected_total",
            "counter",
            "Frames refused back to their sender (malformed, unroutable, slow target, denied).",
            c.rejected,
        ),
        (
            "rhizo_frames_dropped_total",
            "counter",
            "Frames dropped because a target queue was full or closed.",
            c.dropped,
        ),
        (
            "rhizo_slow_consumer_closes_total",
            "counter",
            "Connections closed because their queue stayed full.",
            c.slow_consumer_closes,
        ),
        (
            "rhizo_frames_held_total",
            "counter",
            "Frames held for a reconnecting client (delivered when it is back, else dropped).",
            c.held,
        ),
    ];
    for (name, kind, help, value) in router_families {
        metric(name, kind, help, value);
    }
    metric(
        "rhizo_egress_queued_bytes",
        "gauge",
        "Bytes waiting in all connections' egress queues.",
        c.queued_bytes_total,
    );
    metric(
        "rhizo_egress_queued_bytes_max",
        "gauge",
        "Bytes waiting in the fullest egress queue.",
        c.queued_bytes_max,
    );
    // The cluster bus (issue 10); all 0 on a single node.
    for (name, kind, help, value) in [
        (
            "rhizo_bus_envelopes_sent_total",
            "counter",
            "Envelopes handed to the cluster bus.",
            c.bus_sent,
        ),
        (
            "rhizo_bus_envelopes_received_total",
            "counter",
            "Envelopes received from other nodes.",
            c.bus_received,
        ),
        (
            "rhizo_bus_inbox_dropped_total",
            "counter",
            "Received envelopes dropped because the bus inbox was full.",
            c.bus_inbox_dropped,
        ),
        (
            "rhizo_bus_outbox_dropped_total",
            "counter",
            "Outgoing envelopes dropped (bus queue full, disconnected, failed write).",
            c.bus_outbox_dropped,
        ),
        (
            "rhizo_bus_undelivered_total",
            "counter",
            "Outgoing envelopes no node took (target node gone, failed write), re-sent or failed at once.",
            c.bus_undelivered,
        ),
        (
            "rhizo_bus_inbox_backlog",
            "gauge",
            "Envelopes waiting in the bus inbox.",
            c.bus_inbox_backlog,
        ),
        (
            "rhizo_bus_connected",
            "gauge",
            "1 while the cluster bus is connected.",
            c.bus_connected,
        ),
    ] {
        metric(name, kind, help, value);
    }
    // The reference server's families, under its names (see the module doc).
    for (name, kind, help, value) in [
        (
            "rpc_call_total",
            "counter",
            "RPC messages sent by clients, all workspaces.",
            c.frames_in,
        ),
        (
            "client_requests_total",
            "counter",
            "Requests (RPC messages) sent by clients, all workspaces.",
            c.frames_in,
        ),
        (
            "websocket_connections",
            "gauge",
            "Open WebSocket connections.",
            c.ws_connections,
        ),
        (
            "websocket_connections_established_total",
            "counter",
            "WebSocket connections established since start.",
            c.ws_connections_opened,
        ),
        (
            "websocket_rate_limited_disconnects_total",
            "counter",
            "WebSocket connections closed for exceeding the message rate.",
            c.rate_limited_closes,
        ),
        (
            "redis_rpc_active_connections",
            "gauge",
            "Open RPC connections (every transport).",
            c.connections,
        ),
        (
            "redis_rpc_connections_created_total",
            "counter",
            "RPC connections opened since start (every transport).",
            c.connections_opened,
        ),
        (
            "redis_rpc_connections_closed_total",
            "counter",
            "RPC connections ended since start (every transport).",
            c.connections_closed,
        ),
        (
            "redis_eventbus_messages_processed_total",
            "counter",
            "Messages received from other nodes over the cluster bus.",
            c.bus_received,
        ),
    ] {
        metric(name, kind, help, value);
    }
    let _ = writeln!(
        out,
        "# HELP event_bus_total Messages on the cluster bus by event and status.\n\
         # TYPE event_bus_total counter\n\
         event_bus_total{{event=\"*\",status=\"processed\"}} {}",
        c.bus_received
    );
    process_families(&mut out, &super::health::Process::read());
    let clients = m.router.workspace_counts();
    let _ = writeln!(out, "# HELP rhizo_workspace_clients Connected clients per workspace.\n# TYPE rhizo_workspace_clients gauge");
    for (ws, n) in &clients {
        let _ = writeln!(
            out,
            "rhizo_workspace_clients{{workspace=\"{}\"}} {n}",
            escape(ws)
        );
    }
    let _ = writeln!(out, "# HELP rhizo_workspace_services Registered services per workspace.\n# TYPE rhizo_workspace_services gauge");
    for (ws, n) in m.registry.counts_by_workspace() {
        let _ = writeln!(
            out,
            "rhizo_workspace_services{{workspace=\"{}\"}} {n}",
            escape(&ws)
        );
    }
    let _ = writeln!(out, "# HELP rhizo_http_requests_total HTTP requests by route and status.\n# TYPE rhizo_http_requests_total counter");
    let mut http: Vec<((String, u16), u64)> = m
        .http_requests
        .iter()
        .map(|e| (e.key().clone(), *e.value()))
        .collect();
    http.sort();
    for ((route, status), n) in http {
        let _ = writeln!(
            out,
            "rhizo_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
            escape(&route)
        );
    }
    // Families of the control-plane services (the server-apps autoscaler's events).
    for s in m.services().iter() {
        out.push_str(&s.metrics());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
