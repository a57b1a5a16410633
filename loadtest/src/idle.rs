//! The idle scenario: open N connections (handshake + `built-in` registration), hold them
//! for the run's duration, and measure what they cost the server.
//!
//! With `server_pid` it reads the server's `VmRSS` from `/proc/<pid>/status` before
//! connecting, once all are connected (after a short settle), at the end of the hold and
//! after closing them all, and reports resident memory per connection. Every connection
//! is served while held (built-in calls answered, WebSocket pings answered by reading) and,
//! like real clients, sends a `{"type":"ping"}` text frame every 20 s. A connection the
//! server closes during the hold is an error.

use crate::connect::{connect_timed, shared_join};
use crate::proc::{own_rss_kib, status_kib};
use crate::progress::{self, Goal};
use crate::report::RunResult;
use crate::stats::{Latency, Live, TimelinePoint};
use crate::{RunContext, Target};
use futures_util::{SinkExt, StreamExt};
use rhizo_client::raw::{Responder, WsStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Interval of the application-level text ping (the Python client's default).
const APP_PING: Duration = Duration::from_secs(20);

/// Idle settings.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// Connections to hold.
    pub clients: usize,
    /// How long to hold them.
    pub duration: Duration,
    /// Most handshakes under way at once.
    pub concurrency: usize,
    /// Join one workspace (token from an owner) instead of one anonymous workspace each.
    pub same_workspace: bool,
    /// The server's process id, for its resident memory.
    pub server_pid: Option<u32>,
    /// Time allowed for one connection.
    pub timeout: Duration,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            clients: 1000,
            duration: Duration::from_secs(10),
            concurrency: 100,
            same_workspace: false,
            server_pid: None,
            timeout: crate::DEFAULT_TIMEOUT,
        }
    }
}

/// Resident memory per connection in KiB: `(after - before) / n`, or `None`.
pub fn per_connection_kib(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    }
}

/// Runs the idle scenario.
///
/// Errors: only set-up of a shared workspace; failed connections are counted.
pub async fn run(cfg: &IdleConfig, target: &Target, ctx: &RunContext) -> anyhow::Result<RunResult> {
    let url = target.ws_url();
    let tag = crate::run_tag();
    let live = Arc::new(Live::default());
    let pid = cfg.server_pid.or(ctx.server_pid);
    let rss = |p: Option<u32>| p.and_then(|p| status_kib(p, "VmRSS"));
    let (owner, join) = shared_join(&url, &format!("lt-idle-{tag}"), cfg.same_workspace).await?;
    let rss_before = rss(pid);
    let own_before = own_rss_kib();
    let probe = pid.map(crate::proc::ServerProbe::start);

    let meter = progress::start(
        live.clone(),
        Goal::Count(cfg.clients as u64),
        &ctx.label,
        "connections",
        ctx.progress,
    );
    let hist = Arc::new(Mutex::new(Latency::new()));
    let started = Instant::now();
    let conns = crate::bounded((0..cfg.clients).collect(), cfg.concurrency, |i| {
        let (url, join, live, hist, tag) = (&url, &join, &live, &hist, &tag);
        async move {
            let cid = format!("lt-idle-{tag}-{i}");
            let (c, took) = connect_timed(url, cid, join, None, cfg.timeout, live).await?;
            hist.lock().expect("latency lock").record(took);
            Some(c)
        }
    })
    .await;
    let connect_s = started.elapsed().as_secs_f64();
    let timeline_connect = meter.finish().await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let holders: Vec<_> = conns
        .into_iter()
        .flatten()
        .map(|c| {
            let (ws, resp) = c.into_parts();
            tokio::spawn(hold(ws, resp, stop_rx.clone()))
        })
        .collect();
    let held = holders.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss(pid);
    let own_connected = own_rss_kib();

    // Hold, sampling the server's memory once a second.
    let mut rss_timeline = Vec::new();
    let hold_start = Instant::now();
    let hold_bar = progress::start(
        live.clone(),
        Goal::Time(cfg.duration),
        &ctx.label,
        "connections",
        ctx.progress,
    );
    while hold_start.elapsed() < cfg.duration {
        tokio::time::sleep(Duration::from_secs(1).min(cfg.duration)).await;
        if let Some(kib) = rss(pid) {
            rss_timeline.push(TimelinePoint {
                t_s: hold_start.elapsed().as_secs_f64(),
                ops: held as u64,
                per_s: kib as f64 / 1024.0,
                errors: 0,
            });
        }
    }
    let _ = hold_bar.finish().await;
    let rss_held = rss(pid);
    let server = probe.map(|p| p.finish(held as u64));
    let _ = stop_tx.send(true);
    let mut dropped = 0u64;
    for h in futures_util::future::join_all(holders).await {
        if !matches!(h, Ok(true)) {
            dropped += 1;
        }
    }
    live.error(
        "dropped by the server",
        dropped,
        "a held connection was closed during the hold",
    );
    if let Some(o) = owner {
        o.close().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_released = rss(pid);

    let hist = hist.lock().expect("latency lock").clone();
    let mut r = RunResult::new(
        "idle",
        target,
        "connections",
        connect_s,
        &live,
        &hist,
        "connect + register built-in",
        timeline_connect,
    );
    r.server = server;
    r.detail("clients", cfg.clients);
    r.detail("held", held);
    r.detail("hold_s", cfg.duration.as_secs_f64());
    r.detail("connect_s", connect_s);
    r.detail("server_rss_kib_before", rss_before);
    r.detail("server_rss_kib_connected", rss_connected);
    r.detail("server_rss_kib_end_of_hold", rss_held);
    r.detail("server_rss_kib_after_close", rss_released);
    r.detail(
        "server_rss_kib_per_connection",
        per_connection_kib(rss_before, rss_connected, held),
    );
    r.detail(
        "loadtest_rss_kib_per_connection",
        per_connection_kib(own_before, own_connected, held),
    );
    r.detail("server_rss_timeline_mib", rss_timeline);
    Ok(r)
}

/// Holds one connection until `stop`; returns whether it was still open.
async fn hold(mut ws: WsStream, responder: Responder, mut stop: watch::Receiver<bool>) -> bool {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + APP_PING, APP_PING);
    let open = loop {
        tokio::select! {
            _ = stop.changed() => break true,
            _ = ping.tick() => {
                if ws.send(WsMessage::Text(r#"{"type":"ping"}"#.into())).await.is_err() {
                    break false;
                }
            }
            m = ws.next() => match m {
                Some(Ok(WsMessage::Binary(frame))) => {
                    if let Some(a) = responder.answer(&frame) {
                        if ws.send(WsMessage::Binary(a)).await.is_err() {
                            break false;
                        }
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break false,
                Some(Ok(_)) => {}
            },
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_connection() {
        assert_eq!(per_connection_kib(Some(1000), Some(3000), 100), Some(20.0));
        assert_eq!(per_connection_kib(Some(1000), Some(900), 10), Some(-10.0));
        assert_eq!(per_connection_kib(None, Some(3000), 100), None);
        assert_eq!(per_connection_kib(Some(1), Some(2), 0), None);
    }
}
