//! The connect scenario: N clients connect, authenticate, register their `built-in`
//! service and one public service, all at once (protocol.md §1, §4.4).
//!
//! The latency of one operation is connect + handshake + both registrations for one
//! client; the headline is the wall time until the last client is ready. Afterwards a
//! separate verifier resolves a sample of the registered services through the manager's
//! `get_service` (which asks each provider for its service, so the providers must still be
//! serving), and checks that each resolves to the right client.

use crate::progress::{self, Goal};
use crate::report::RunResult;
use crate::stats::{Latency, Live};
use crate::{RunContext, Target};
use futures_util::{SinkExt, StreamExt};
use rhizo_client::raw::{self, RawConnection, Responder, WsStream};
use rhizo_client::ConnectOptions;
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The service every client registers.
pub const SERVICE: &str = "loadtest-connect";

/// Connect settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Clients to connect.
    pub clients: usize,
    /// Most handshakes under way at once (`clients` = all at once).
    pub concurrency: usize,
    /// Join one workspace with a token minted by an owner client, instead of each client
    /// getting its own anonymous workspace.
    pub same_workspace: bool,
    /// How many registered services to resolve afterwards as a check.
    pub verify: usize,
    /// Time allowed for one client to become ready.
    pub timeout: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            clients: 100,
            concurrency: 100,
            same_workspace: false,
            verify: 10,
            timeout: crate::DEFAULT_TIMEOUT,
        }
    }
}

/// Credentials for joining a workspace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Join {
    pub(crate) workspace: Option<String>,
    pub(crate) token: Option<String>,
}

/// Mints a read-write token for `owner`'s workspace (workspace-api.md `generate_token`).
///
/// Errors: the manager refused.
pub(crate) async fn mint_token(owner: &mut RawConnection) -> anyhow::Result<Join> {
    let config = map([("permission", "read_write".into())]);
    let token = owner.manager_call("generate_token", vec![config]).await?;
    let token = token
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("generate_token returned {token}, not a string"))?;
    Ok(Join {
        workspace: Some(owner.workspace().to_owned()),
        token: Some(token.to_owned()),
    })
}

/// [`connect_one`] with small buffers within `timeout`, booked in `live`: done, or an
/// error of its kind (`timeout` when it took longer). Returns the connection and the time
/// it took.
pub(crate) async fn connect_timed(
    url: &str,
    cid: String,
    join: &Join,
    service: Option<&str>,
    timeout: std::time::Duration,
    live: &Live,
) -> Option<(RawConnection, std::time::Duration)> {
    let t0 = Instant::now();
    let what = cid.clone();
    match tokio::time::timeout(timeout, connect_one(url, cid, join, service, true)).await {
        Ok(Ok(c)) => {
            live.done(1, 0);
            Some((c, t0.elapsed()))
        }
        Ok(Err((kind, e))) => {
            live.error(kind, 1, e);
            None
        }
        Err(_) => {
            live.error("timeout", 1, format!("{what} not ready after {timeout:?}"));
            None
        }
    }
}

/// With `same_workspace`, connects an owner (`<prefix>-owner`) and mints the token others
/// join its workspace with; the owner must stay connected while they are. Otherwise every
/// client gets its own anonymous workspace.
///
/// Errors: the owner could not connect or mint the token.
pub(crate) async fn shared_join(
    url: &str,
    prefix: &str,
    same_workspace: bool,
) -> anyhow::Result<(Option<RawConnection>, Join)> {
    if !same_workspace {
        return Ok((None, Join::default()));
    }
    let opts = ConnectOptions {
        client_id: Some(format!("{prefix}-owner")),
        ..Default::default()
    };
    let mut owner = RawConnection::connect(url, opts).await?;
    let join = mint_token(&mut owner).await?;
    Ok((Some(owner), join))
}

/// Connects one client and registers `service` (public, member `ping`) if given. `small`
/// selects 4 KiB socket buffers ([`raw::ws_config_small`]) for connections that carry
/// little, since runs hold thousands of them.
pub(crate) async fn connect_one(
    url: &str,
    cid: String,
    join: &Join,
    service: Option<&str>,
    small: bool,
) -> Result<RawConnection, (&'static str, String)> {
    let opts = ConnectOptions {
        client_id: Some(cid),
        workspace: join.workspace.clone(),
        token: join.token.clone(),
        ..Default::default()
    };
    let config = if small {
        raw::ws_config_small()
    } else {
        raw::ws_config()
    };
    let mut c = RawConnection::connect_with(url, opts, config)
        .await
        .map_err(|e| ("connect failed", e.to_string()))?;
    if let Some(s) = service {
        c.register_service(s, map([("visibility", "public".into())]), &["ping"])
            .await
            .map_err(|e| ("register failed", e.to_string()))?;
    }
    Ok(c)
}

/// Keeps a connection served: answers `built-in` calls and protocol pings, until `stop`
/// or the socket closes. Returns whether it was still open when stopped.
pub(crate) async fn serve_until(
    mut ws: WsStream,
    responder: Responder,
    mut stop: watch::Receiver<bool>,
) -> (bool, WsStream) {
    loop {
        let m = tokio::select! {
            _ = stop.changed() => return (true, ws),
            m = ws.next() => m,
        };
        match m {
            Some(Ok(WsMessage::Binary(frame))) => {
                if let Some(a) = responder.answer(&frame) {
                    if ws.send(WsMessage::Binary(a)).await.is_err() {
                        return (false, ws);
                    }
                }
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return (false, ws),
            Some(Ok(_)) => {}
        }
    }
}

/// Runs the connect scenario.
///
/// Errors: only set-up (the owner of a shared workspace could not connect or mint a
/// token, or the verifier could not connect); failed clients are counted as errors.
pub async fn run(
    cfg: &ConnectConfig,
    target: &Target,
    ctx: &RunContext,
) -> anyhow::Result<RunResult> {
    let url = target.ws_url();
    let tag = crate::run_tag();
    let live = Arc::new(Live::default());
    let (owner, join) = shared_join(&url, &format!("lt-conn-{tag}"), cfg.same_workspace).await?;
    let probe = ctx.server_pid.map(crate::proc::ServerProbe::start);
    let meter = progress::start(
        live.clone(),
        Goal::Count(cfg.clients as u64),
        &ctx.label,
        "clients",
        ctx.progress,
    );
    let hist = Arc::new(Mutex::new(Latency::new()));
    let started = Instant::now();
    let ids: Vec<usize> = (0..cfg.clients).collect();
    let conns = crate::bounded(ids, cfg.concurrency, |i| {
        let (url, join, live, hist, tag) = (&url, &join, &live, &hist, &tag);
        async move {
            let cid = format!("lt-conn-{tag}-{i}");
            let (c, took) = connect_timed(url, cid, join, Some(SERVICE), cfg.timeout, live).await?;
            hist.lock().await.record(took);
            Some((c, took))
        }
    })
    .await;
    let wall = started.elapsed();
    let timeline = meter.finish().await;
    let server = probe.map(|p| p.finish(live.ops.load(std::sync::atomic::Ordering::Relaxed)));

    // Keep every client served while the verifier resolves a sample of the services.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for (c, _) in conns.into_iter().flatten() {
        addrs.push(c.address().to_owned());
        let (ws, resp) = c.into_parts();
        servers.push(tokio::spawn(serve_until(ws, resp, stop_rx.clone())));
    }
    let verified = verify(&url, &join, &tag, &addrs, cfg.verify, &live).await;
    let _ = stop_tx.send(true);
    let mut dropped = 0u64;
    let closers: Vec<_> = servers
        .into_iter()
        .map(|s| async move {
            match s.await {
                Ok((open, mut ws)) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    open
                }
                Err(_) => false,
            }
        })
        .collect();
    for open in futures_util::future::join_all(closers).await {
        if !open {
            dropped += 1;
        }
    }
    live.error(
        "dropped by the server",
        dropped,
        "a connected client was closed before the end",
    );
    if let Some(o) = owner {
        o.close().await;
    }

    let hist = hist.lock().await;
    let mut r = RunResult::new(
        "connect",
        target,
        "clients",
        wall.as_secs_f64(),
        &live,
        &hist,
        "connect + register",
        timeline,
    );
    r.server = server;
    r.detail("clients", cfg.clients);
    r.detail("concurrency", cfg.concurrency);
    r.detail("same_workspace", cfg.same_workspace);
    r.detail("wall_time_s", wall.as_secs_f64());
    r.detail("verified_services", verified);
    Ok(r)
}

/// Resolves up to `n` of the registered services from a fresh client and checks each
/// resolves to its provider. Returns how many were verified; failures are errors.
async fn verify(
    url: &str,
    join: &Join,
    tag: &str,
    addrs: &[String],
    n: usize,
    live: &Live,
) -> usize {
    if n == 0 || addrs.is_empty() {
        return 0;
    }
    let mut v = match connect_one(url, format!("lt-conn-{tag}-verifier"), join, None, false).await {
        Ok(v) => v,
        Err((kind, e)) => {
            live.error(kind, 1, format!("verifier: {e}"));
            return 0;
        }
    };
    let step = (addrs.len() / n).max(1);
    let mut ok = 0;
    for addr in addrs.iter().step_by(step).take(n) {
        let sid = format!("{addr}:{SERVICE}");
        match v
            .manager_call("get_service", vec![sid.as_str().into()])
            .await
        {
            Ok(svc) => {
                let target = get(&svc, "ping").and_then(|m| get_str(m, "_rtarget"));
                if target == Some(addr.as_str()) {
                    ok += 1;
                } else {
                    live.error(
                        "wrong service",
                        1,
                        format!("{sid} resolved to {}", show(&svc)),
                    );
                }
            }
            Err(e) => live.error("resolve failed", 1, format!("{sid}: {e}")),
        }
    }
    v.close().await;
    ok
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}
