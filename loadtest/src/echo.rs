//! The echo scenario: `pairs` caller/provider pairs; each caller keeps `in_flight` calls
//! outstanding to its provider's `echo`, which returns its argument.
//!
//! Against a Hypha server every provider registers a real public service
//! (`loadtest-echo`, member `echo`) and every caller resolves it once through the manager's
//! `get_service`, then calls `<ws>/<provider cid>` method `services.loadtest-echo.echo`
//! directly, with compact promises (protocol.md §3.4). With further cluster nodes
//! ([`Target::nodes`]) the providers stay on the first node and pair `i`'s caller connects
//! to [`Target::node_url`]`(i)`; there it resolves the service through its own node's
//! manager, or, where that node cannot (yet) see services of other nodes, calls the
//! address the provider's registration returned — the same frames either way; the report
//! counts which (`resolved_by_get_service`, `resolved_by_address`). Against a relay ([`crate::relay`])
//! both sides skip the handshake and the manager and exchange the same frames over the pipe.
//!
//! The hot path is lean: one task per connection that owns its socket, call frames built
//! from a [`CallTemplate`], session ids from a counter, replies matched by decoding the
//! header only ([`HeaderView`]), the provider answering by slicing `args[0]` out of the
//! payload ([`first_arg`]), and many frames fed before one flush. Each reply is verified
//! by comparing its argument byte for byte with the one sent (the first 8 payload bytes
//! carry the call's sequence number, so a reply to the wrong call does not match).

use crate::progress::{self, Goal};
use crate::report::RunResult;
use crate::stats::{Latency, Live};
use crate::{RunContext, Target};
use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rhizo_client::raw::{
    self, first_arg, reject_text, write_bin_header, write_reply, CallTemplate, CallView,
    RawConnection, Responder, WsStream,
};
use rhizo_client::ConnectOptions;
use rhizo_protocol::value::{get, get_str, map};
use rhizo_protocol::HeaderView;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The service id every echo provider registers.
pub const SERVICE: &str = "loadtest-echo";

/// Bytes kept free for headers when a payload is clamped to the frame limit.
pub const FRAME_HEADROOM: usize = 1024;

/// Most payload bytes the callers may keep outstanding together (2 GiB).
pub const MAX_HELD_BYTES: u64 = 2 << 30;

/// Most frames read before the writes they cause are flushed.
const READ_BATCH: usize = 256;

/// How often a caller looks for calls past their timeout, and wakes up when idle.
const TICK: Duration = Duration::from_millis(100);

/// Echo settings.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Caller/provider pairs (two connections each).
    pub pairs: usize,
    /// Calls each caller keeps outstanding.
    pub in_flight: usize,
    /// Payload bytes per call (a msgpack `bin` argument); clamped so that a call frame fits
    /// `max_frame`.
    pub payload: usize,
    /// How long to keep calling.
    pub duration: Duration,
    /// Stop after this many calls in total (whichever comes first with `duration`).
    pub calls: Option<u64>,
    /// A call without a reply for this long is an error.
    pub timeout: Duration,
    /// The server's frame limit, bytes (16 MiB for rhizo and the reference by default).
    /// Payloads are sent as single frames, not chunked through `message_cache`.
    pub max_frame: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            pairs: 4,
            in_flight: 64,
            payload: 128,
            duration: Duration::from_secs(10),
            calls: None,
            timeout: crate::DEFAULT_TIMEOUT,
            max_frame: 16 << 20,
        }
    }
}

// === impl EchoConfig ===

impl EchoConfig {
    /// The payload actually sent: `payload`, or less so that the frame fits `max_frame`.
    pub fn effective_payload(&self) -> usize {
        self.payload
            .min(self.max_frame.saturating_sub(FRAME_HEADROOM))
    }
}

/// One caller's view of where to send calls.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    to: String,
    method: String,
}

/// Runs the echo scenario.
///
/// Errors: a connection, registration or `get_service` resolution failed during set-up,
/// or the resolved service does not point at the provider.
pub async fn run(cfg: &EchoConfig, target: &Target, ctx: &RunContext) -> anyhow::Result<RunResult> {
    let payload = cfg.effective_payload();
    // Every outstanding call keeps its frame for verification.
    let held = (cfg.pairs * cfg.in_flight.max(1)) as u128 * payload as u128;
    anyhow::ensure!(
        held <= MAX_HELD_BYTES as u128,
        "{} pairs × {} in flight × {} would keep {} of call frames outstanding \
         (limit {}); lower --in-flight or --pairs",
        cfg.pairs,
        cfg.in_flight,
        crate::units::format_size(payload as u64),
        crate::units::format_size(held.min(u64::MAX as u128) as u64),
        crate::units::format_size(MAX_HELD_BYTES)
    );
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let tag = crate::run_tag();

    // Set up every pair: providers first (their loops must answer get_service), then
    // callers, which resolve the service once.
    let mut callers = Vec::with_capacity(cfg.pairs);
    let mut providers = Vec::with_capacity(cfg.pairs);
    let mut by_get_service = 0usize;
    let mut fallback_why = None;
    for i in 0..cfg.pairs {
        let (caller, route) = if target.relay {
            let (caller, route, p) = setup_relay_pair(target).await?;
            providers.push(tokio::spawn(provider_loop(
                p,
                None,
                format!("services.{SERVICE}.echo").into_bytes(),
                stop_rx.clone(),
                live.clone(),
            )));
            (caller, route)
        } else {
            let (caller, route, how) =
                setup_hypha_pair(target, &tag, i, &live, stop_rx.clone(), &mut providers).await?;
            match how {
                Resolved::GetService => by_get_service += 1,
                Resolved::Registered(why) => {
                    fallback_why.get_or_insert(why);
                }
            }
            (caller, route)
        };
        callers.push((caller, route));
    }

    let probe = ctx.server_pid.map(crate::proc::ServerProbe::start);
    let goal = match cfg.calls {
        Some(n) => Goal::Count(n),
        None => Goal::Time(cfg.duration),
    };
    let meter = progress::start(live.clone(), goal, &ctx.label, "calls", ctx.progress);
    let budget = Arc::new(AtomicI64::new(
        cfg.calls
            .map(|n| n.min(i64::MAX as u64) as i64)
            .unwrap_or(i64::MAX),
    ));
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let late = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(i, ((ws, responder), route))| {
            let caller = Caller::new(
                ws,
                responder,
                &route,
                CallerSettings {
                    window: cfg.in_flight.max(1),
                    payload,
                    timeout: cfg.timeout,
                    deadline,
                    seed: i as u64,
                },
                live.clone(),
                budget.clone(),
                late.clone(),
            );
            tokio::spawn(caller.run())
        })
        .collect();
    let mut hist = Latency::new();
    for t in tasks {
        if let Ok(h) = t.await {
            hist.merge(&h);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let timeline = meter.finish().await;
    let _ = stop_tx.send(true);
    for p in providers {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }

    let mut r = RunResult::new(
        "echo",
        target,
        "calls",
        elapsed,
        &live,
        &hist,
        "call round trip",
        timeline,
    );
    r.mib_per_s = Some(live.bytes.load(Relaxed) as f64 / (1 << 20) as f64 / r.duration_s);
    r.server = probe.map(|p| p.finish(r.ops));
    r.detail("mode", if target.relay { "relay" } else { "hypha" });
    if target.is_cluster() {
        // Where the callers were (the providers are on `url`), and how many of them
        // resolved the service through their own node's get_service rather than using the
        // registered address.
        let nodes: Vec<String> = (0..cfg.pairs).map(|i| target.node_url(i)).collect();
        r.detail("caller_nodes", nodes);
        r.detail("resolved_by_get_service", by_get_service);
        r.detail("resolved_by_address", cfg.pairs - by_get_service);
        if let Some(why) = fallback_why {
            r.detail("resolve_fallback_reason", why);
        }
    }
    r.detail("pairs", cfg.pairs);
    r.detail("in_flight_per_pair", cfg.in_flight);
    r.detail("payload_bytes", payload);
    if payload != cfg.payload {
        r.detail("payload_requested_bytes", cfg.payload);
    }
    r.detail("late_replies", late.load(Relaxed));
    Ok(r)
}

type CallerSide = (WsStream, Option<Responder>);

/// Connects a caller and a provider to a relay, in that order (the relay pairs
/// connections in arrival order).
async fn setup_relay_pair(target: &Target) -> anyhow::Result<(CallerSide, Route, WsStream)> {
    let url = target.ws_url();
    let caller = raw::open(&url)
        .await
        .with_context(|| format!("connecting to the relay at {url}"))?;
    let provider = raw::open(&url).await.context("connecting the provider")?;
    let route = Route {
        to: "relay/provider".into(),
        method: format!("services.{SERVICE}.echo"),
    };
    Ok(((caller, None), route, provider))
}

/// How a caller found its provider's echo service.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    /// Through `get_service` on the caller's node.
    GetService,
    /// Cross-node, where the caller's node could not resolve the service (why): the
    /// address the provider's registration returned (the service is public, so the call
    /// is allowed).
    Registered(String),
}

/// Connects a provider to the target's first node (registers the echo service, starts
/// its loop) and a caller to [`Target::node_url`]`(i)`, which resolves the service through
/// its node's manager. Cross-node, a failed or foreign resolution falls back to the
/// registered address ([`Resolved::Registered`]); on one node it is an error.
async fn setup_hypha_pair(
    target: &Target,
    tag: &str,
    i: usize,
    live: &Arc<Live>,
    stop: watch::Receiver<bool>,
    providers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<(CallerSide, Route, Resolved)> {
    let url = target.ws_url();
    let caller_url = target.node_url(i);
    let cross = caller_url != url;
    let opts = |role: &str| ConnectOptions {
        client_id: Some(format!("lt-echo-{tag}-{role}{i}")),
        ..Default::default()
    };
    let mut provider = RawConnection::connect(&url, opts("p"))
        .await
        .with_context(|| format!("connecting provider {i} to {url}"))?;
    let sid = provider
        .register_service(SERVICE, map([("visibility", "public".into())]), &["echo"])
        .await
        .context("registering the echo service")?;
    let provider_addr = provider.address().to_owned();
    let (pws, presp) = provider.into_parts();
    providers.push(tokio::spawn(provider_loop(
        pws,
        Some(presp),
        format!("services.{SERVICE}.echo").into_bytes(),
        stop,
        live.clone(),
    )));
    let mut caller = RawConnection::connect(&caller_url, opts("c"))
        .await
        .with_context(|| format!("connecting caller {i} to {caller_url}"))?;
    let expected = Route {
        to: provider_addr.clone(),
        method: format!("services.{SERVICE}.echo"),
    };
    let resolved = resolve(&mut caller, &sid).await;
    let (route, how) = match resolved {
        Ok(r) if r == expected => (r, Resolved::GetService),
        Ok(r) if cross => (
            expected,
            Resolved::Registered(format!("get_service answered {r:?}")),
        ),
        Err(e) if cross => {
            // The answer may still come (after a timeout) and would look like a stray
            // reply to the caller loop: start from a fresh connection.
            let _ = tokio::time::timeout(Duration::from_secs(2), caller.close()).await;
            caller = RawConnection::connect(&caller_url, opts("c2"))
                .await
                .with_context(|| format!("reconnecting caller {i} to {caller_url}"))?;
            (expected, Resolved::Registered(format!("{e:#}")))
        }
        Ok(Route { to, method }) => anyhow::bail!(
            "get_service returned echo at {to:?} {method:?}, expected {provider_addr:?}"
        ),
        Err(e) => return Err(e),
    };
    let (cws, cresp) = caller.into_parts();
    Ok(((cws, Some(cresp)), route, how))
}

/// Resolves `sid` through the caller's manager to the echo member's target and method.
///
/// Errors: the manager refused or took longer than 10 s, or the service has no `echo`.
async fn resolve(caller: &mut RawConnection, sid: &str) -> anyhow::Result<Route> {
    let svc = tokio::time::timeout(
        Duration::from_secs(10),
        caller.manager_call("get_service", vec![sid.into()]),
    )
    .await
    .map_err(|_| anyhow::anyhow!("get_service({sid}) unanswered after 10s"))?
    .with_context(|| format!("resolving {sid} through the manager"))?;
    let echo = get(&svc, "echo").context("the resolved service has no `echo` member")?;
    Ok(Route {
        to: get_str(echo, "_rtarget").unwrap_or_default().to_owned(),
        method: get_str(echo, "_rmethod").unwrap_or_default().to_owned(),
    })
}

/// Answers echo calls until `stop` or the socket closes. `method` is the echo path;
/// other calls go to `responder` (none over a relay).
async fn provider_loop(
    mut ws: WsStream,
    responder: Option<Responder>,
    method: Vec<u8>,
    mut stop: watch::Receiver<bool>,
    live: Arc<Live>,
) {
    let mut pending = 0usize;
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        let mut next = first;
        let mut n = 0;
        loop {
            match next {
                Some(Ok(WsMessage::Binary(frame))) => {
                    if let Some(reply) = provider_answer(&frame, &method, responder.as_ref(), &live)
                    {
                        if ws.feed(WsMessage::Binary(reply)).await.is_err() {
                            return;
                        }
                        pending += 1;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    let _ = ws.flush().await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => return,
            }
            n += 1;
            if n >= READ_BATCH {
                break;
            }
            match ws.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if pending > 0 {
            if ws.flush().await.is_err() {
                return;
            }
            pending = 0;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

/// The provider's answer to one frame: an echo reply built from the argument's bytes, or
/// the responder's answer to anything else.
fn provider_answer(
    frame: &Bytes,
    method: &[u8],
    responder: Option<&Responder>,
    live: &Live,
) -> Option<Bytes> {
    let view = match CallView::parse(frame) {
        Ok(v) => v,
        Err(e) => {
            live.error("provider: malformed frame", 1, e);
            return None;
        }
    };
    if view.method(frame) != method {
        return responder.and_then(|r| r.answer(frame));
    }
    let session = view.session(frame);
    if session.is_empty() {
        return None;
    }
    // Over a relay nobody stamps `from`; the caller does not check the reply's `to`.
    let to = match view.from(frame) {
        "" => "caller",
        f => f,
    };
    let arg = match first_arg(frame, view.header_len) {
        Ok(Some((a, b))) => &frame[a..b],
        _ => {
            live.error("provider: call without argument", 1, session);
            return None;
        }
    };
    let mut out = Vec::with_capacity(arg.len() + to.len() + session.len() + 48);
    write_reply(&mut out, to, session, true, arg);
    Some(Bytes::from(out))
}

/// An outstanding call.
struct Slot {
    seq: u64,
    sent: Instant,
    frame: Bytes,
    arg: (usize, usize),
}

/// Per-caller settings.
struct CallerSettings {
    window: usize,
    payload: usize,
    timeout: Duration,
    deadline: Instant,
    seed: u64,
}

/// One caller connection and its window of outstanding calls.
struct Caller {
    ws: WsStream,
    responder: Option<Responder>,
    template: CallTemplate,
    /// The payload's fixed bytes (after the 8-byte sequence number).
    filler: Vec<u8>,
    payload: usize,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    seq: u64,
    in_flight: usize,
    session: String,
    settings: CallerSettings,
    hist: Latency,
    live: Arc<Live>,
    budget: Arc<AtomicI64>,
    late: Arc<AtomicU64>,
    stopping: bool,
    unflushed: usize,
}

/// Why a caller stopped early.
#[derive(Debug)]
struct Closed(String);

// === impl Caller ===

impl Caller {
    fn new(
        ws: WsStream,
        responder: Option<Responder>,
        route: &Route,
        settings: CallerSettings,
        live: Arc<Live>,
        budget: Arc<AtomicI64>,
        late: Arc<AtomicU64>,
    ) -> Self {
        let template = if responder.is_none() {
            // Over a relay: say who we are, as a server would have.
            CallTemplate::with_header(
                &route.to,
                &route.method,
                settings.timeout,
                &[("from", "relay/caller")],
            )
        } else {
            CallTemplate::new(&route.to, &route.method, settings.timeout)
        };
        let payload = settings.payload;
        let filler: Vec<u8> = (0..payload.saturating_sub(8))
            .map(|i| (i as u64 ^ settings.seed).wrapping_mul(31) as u8)
            .collect();
        let window = settings.window;
        Caller {
            ws,
            responder,
            template,
            filler,
            payload,
            slots: (0..window).map(|_| None).collect(),
            free: (0..window).rev().collect(),
            seq: 0,
            in_flight: 0,
            session: String::with_capacity(32),
            settings,
            hist: Latency::new(),
            live,
            budget,
            late,
            stopping: false,
            unflushed: 0,
        }
    }

    /// Runs until the deadline or the call budget is reached and every outstanding call
    /// is answered or timed out; returns the latency histogram.
    async fn run(mut self) -> Latency {
        if let Err(Closed(why)) = self.drive().await {
            let lost = self.in_flight as u64;
            self.live.error("connection lost", 1, &why);
            self.live.error(
                "no reply",
                lost,
                format!("{lost} calls outstanding when {why}"),
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        self.hist
    }

    async fn drive(&mut self) -> Result<(), Closed> {
        let mut last_sweep = Instant::now();
        self.fill().await?;
        self.flush().await?;
        loop {
            let now = Instant::now();
            if !self.stopping && now >= self.settings.deadline {
                self.stopping = true;
            }
            if self.stopping && self.in_flight == 0 {
                return Ok(());
            }
            if now.duration_since(last_sweep) >= TICK {
                self.sweep(now);
                last_sweep = now;
            }
            let first = tokio::time::timeout(TICK, self.ws.next()).await.ok();
            if let Some(mut next) = first {
                let mut n = 0;
                loop {
                    match next {
                        Some(Ok(WsMessage::Binary(frame))) => self.on_frame(frame).await?,
                        Some(Ok(WsMessage::Text(t))) => self.on_text(t.as_str()),
                        Some(Ok(WsMessage::Close(f))) => {
                            return Err(Closed(format!(
                                "closed by the server: {}",
                                f.map(|f| f.reason.to_string()).unwrap_or_default()
                            )))
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(Closed(e.to_string())),
                        None => return Err(Closed("connection ended".into())),
                    }
                    n += 1;
                    if n >= READ_BATCH {
                        break;
                    }
                    match self.ws.next().now_or_never() {
                        Some(m) => next = m,
                        None => break,
                    }
                }
            }
            self.fill().await?;
            self.flush().await?;
        }
    }

    /// Issues calls into free slots while the run goes on.
    async fn fill(&mut self) -> Result<(), Closed> {
        while !self.stopping && !self.free.is_empty() {
            if self.budget.fetch_sub(1, Relaxed) <= 0 {
                self.stopping = true;
                break;
            }
            if Instant::now() >= self.settings.deadline {
                self.stopping = true;
                break;
            }
            let slot = self.free.pop().expect("free slot");
            self.seq += 1;
            let seq = self.seq;
            self.session.clear();
            let _ = write!(self.session, "{slot}x{seq}");
            let mut buf =
                Vec::with_capacity(self.template.overhead(self.session.len()) + self.payload + 5);
            let at = self.template.write_head(&mut buf, &self.session);
            write_bin_header(&mut buf, self.payload);
            let seq_bytes = seq.to_le_bytes();
            let k = self.payload.min(8);
            buf.extend_from_slice(&seq_bytes[..k]);
            buf.extend_from_slice(&self.filler);
            let end = buf.len();
            let frame = Bytes::from(buf);
            self.slots[slot] = Some(Slot {
                seq,
                sent: Instant::now(),
                frame: frame.clone(),
                arg: (at, end),
            });
            self.in_flight += 1;
            self.ws
                .feed(WsMessage::Binary(frame))
                .await
                .map_err(|e| Closed(e.to_string()))?;
            self.unflushed += 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if self.unflushed > 0 {
            self.unflushed = 0;
            self.ws.flush().await.map_err(|e| Closed(e.to_string()))?;
        }
        Ok(())
    }

    /// Handles one binary frame: a reply to one of our calls, or a call into `built-in`.
    async fn on_frame(&mut self, frame: Bytes) -> Result<(), Closed> {
        match check_reply(&frame, &self.slots) {
            Reply::Ok { slot, .. } => {
                let s = self.slots[slot].take().expect("checked slot");
                self.hist.record(s.sent.elapsed());
                self.live.done(1, self.payload as u64);
                self.release(slot);
            }
            Reply::Wrong { slot, kind, detail } => {
                self.slots[slot] = None;
                self.live.error(kind, 1, detail);
                self.release(slot);
            }
            Reply::Heartbeat => {}
            Reply::Late => {
                self.late.fetch_add(1, Relaxed);
            }
            Reply::Other => {
                let answer = self.responder.as_ref().and_then(|r| r.answer(&frame));
                if let Some(a) = answer {
                    self.ws
                        .feed(WsMessage::Binary(a))
                        .await
                        .map_err(|e| Closed(e.to_string()))?;
                    self.unflushed += 1;
                }
            }
            Reply::Unmatched(detail) => self.live.error("unmatched reply", 1, detail),
        }
        Ok(())
    }

    fn on_text(&mut self, text: &str) {
        if text.contains("\"error\"") {
            self.live.error("server error message", 1, text);
        }
    }

    fn release(&mut self, slot: usize) {
        self.in_flight -= 1;
        self.free.push(slot);
    }

    /// Counts calls older than the timeout as errors and frees their slots.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.settings.timeout;
        for i in 0..self.slots.len() {
            let expired = self.slots[i]
                .as_ref()
                .is_some_and(|s| now.duration_since(s.sent) >= timeout);
            if expired {
                let s = self.slots[i].take().expect("expired slot");
                self.live.error(
                    "timeout",
                    1,
                    format!("call {i}x{} unanswered after {timeout:?}", s.seq),
                );
                self.release(i);
            }
        }
    }
}

/// What a frame arriving at a caller is.
#[derive(Debug, PartialEq)]
enum Reply {
    /// A resolve whose argument equals what the call sent.
    Ok { slot: usize },
    /// A reply to an outstanding call that is wrong (reject, different bytes).
    Wrong {
        slot: usize,
        kind: &'static str,
        detail: String,
    },
    /// A heartbeat; ignored.
    Heartbeat,
    /// A reply to a call that already timed out.
    Late,
    /// Not a reply at all (a call into us, an event).
    Other,
    /// Looks like a reply but names no call we made.
    Unmatched(String),
}

/// Classifies and verifies a frame against the outstanding calls. Decodes the header
/// only; compares the reply's argument bytes with the call's.
fn check_reply(frame: &[u8], slots: &[Option<Slot>]) -> Reply {
    let Ok(view) = HeaderView::parse(frame) else {
        return Reply::Unmatched("malformed frame".into());
    };
    let Some(method) = view.method(frame) else {
        return Reply::Other;
    };
    if method.starts_with("services.") {
        return Reply::Other;
    }
    let Some((session, kind)) = method.rsplit_once('.') else {
        return Reply::Other;
    };
    let Some((slot, seq)) = parse_session(session) else {
        return match kind {
            "resolve" | "reject" | "heartbeat" => Reply::Unmatched(method.to_owned()),
            _ => Reply::Other,
        };
    };
    let live = slots
        .get(slot)
        .and_then(|s| s.as_ref())
        .filter(|s| s.seq == seq);
    let Some(s) = live else {
        return match kind {
            "heartbeat" => Reply::Heartbeat,
            _ if slot < slots.len() => Reply::Late,
            _ => Reply::Unmatched(method.to_owned()),
        };
    };
    match kind {
        "heartbeat" => Reply::Heartbeat,
        "resolve" => {
            let sent = &s.frame[s.arg.0..s.arg.1];
            match first_arg(frame, view.header_len()) {
                Ok(Some((a, b))) if &frame[a..b] == sent => Reply::Ok { slot },
                Ok(Some((a, b))) => Reply::Wrong {
                    slot,
                    kind: "wrong reply",
                    detail: format!(
                        "call {session}: {} bytes back, {} sent, contents differ",
                        b - a,
                        sent.len()
                    ),
                },
                _ => Reply::Wrong {
                    slot,
                    kind: "wrong reply",
                    detail: format!("call {session}: resolve without a result"),
                },
            }
        }
        "reject" => Reply::Wrong {
            slot,
            kind: "rejected",
            detail: format!("call {session}: {}", reject_text(frame)),
        },
        _ => Reply::Unmatched(method.to_owned()),
    }
}

/// `"<slot>x<seq>"` → `(slot, seq)`.
fn parse_session(s: &str) -> Option<(usize, u64)> {
    let (a, b) = s.split_once('x')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests;
