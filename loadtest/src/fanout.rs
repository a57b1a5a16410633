//! The fan-out scenario: one publisher and N subscribers in one workspace.
//!
//! The publisher connects anonymously and mints a read-write token; the subscribers join
//! its workspace with it and `subscribe` to the event name through the manager (protocol.md
//! §4.7, §6.3). The publisher then broadcasts `{"type":<name>, "to":"*", "data":{"seq",
//! "ts", "pad"}}` frames at a fixed rate. The latency of one message is from its send time
//! (`ts`) until the LAST subscriber received it; per-delivery latency is reported too.
//!
//! With further cluster nodes ([`Target::nodes`]) the publisher stays on the first node and
//! subscriber `i` (and stuck subscriber `i`) connects to [`Target::node_url`]`(i)`, with the
//! same token: the broadcast reaches them across nodes.
//!
//! Each subscriber checks that sequence numbers arrive in order without gaps; a missing,
//! repeated or out-of-order message is an error, as is a message that has not reached
//! every subscriber by the end.

use crate::connect::{connect_one, mint_token, Join};
use crate::progress::{self, Goal};
use crate::report::RunResult;
use crate::stats::{Latency, Live};
use crate::{RunContext, Target};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rhizo_client::raw::{write_bin_header, RawConnection, Responder, WsStream};
use rhizo_client::ConnectOptions;
use rhizo_protocol::msgpack::{read_map_len, read_str, skip, write_map_len, write_str};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The event name subscribers listen to.
pub const EVENT: &str = "loadtest-fanout";

/// Fan-out settings.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Subscribers in the publisher's workspace.
    pub subscribers: usize,
    /// Messages per second the publisher sends.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Stop after this many messages (whichever comes first with `duration`).
    pub messages: Option<u64>,
    /// Padding bytes per message (`data.pad`).
    pub payload: usize,
    /// Time a message may take to reach every subscriber before it counts as lost.
    pub timeout: Duration,
    /// Extra subscribers that never read (slow consumers); not counted as deliveries.
    pub stuck: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            subscribers: 50,
            rate: 200.0,
            duration: Duration::from_secs(10),
            messages: None,
            payload: 64,
            timeout: crate::DEFAULT_TIMEOUT,
            stuck: 0,
        }
    }
}

/// Delivery bookkeeping shared by the subscribers: one slot per message.
struct Tracker {
    subscribers: u32,
    base: Instant,
    /// Subscribers that got message `seq`.
    count: Vec<AtomicU32>,
    /// Latest receive time of message `seq`, ns since `base`.
    last: Vec<AtomicU64>,
    /// Last-subscriber latency of complete messages.
    complete: Mutex<Latency>,
    live: Arc<Live>,
}

// === impl Tracker ===

impl Tracker {
    fn new(subscribers: usize, messages: u64, live: Arc<Live>) -> Self {
        let n = messages as usize;
        Tracker {
            subscribers: subscribers as u32,
            base: Instant::now(),
            count: (0..n).map(|_| AtomicU32::new(0)).collect(),
            last: (0..n).map(|_| AtomicU64::new(0)).collect(),
            complete: Mutex::new(Latency::new()),
            live,
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Notes that one subscriber received message `seq` sent at `ts` (ns since `base`) at
    /// `now`; the last subscriber records the message's latency.
    fn delivered(&self, seq: u64, ts: u64, now: u64) {
        let i = seq as usize;
        if i >= self.count.len() {
            return;
        }
        self.last[i].fetch_max(now, SeqCst);
        if self.count[i].fetch_add(1, SeqCst) + 1 == self.subscribers {
            let last = self.last[i].load(SeqCst);
            self.complete
                .lock()
                .expect("tracker lock")
                .record_ns(last.saturating_sub(ts));
            self.live.done(1, 0);
        }
    }

    /// Messages below `sent` that did not reach every subscriber, and the deliveries
    /// missing from them.
    fn incomplete(&self, sent: u64) -> (u64, u64) {
        let mut msgs = 0;
        let mut missing = 0;
        for c in self.count.iter().take(sent as usize) {
            let got = c.load(SeqCst);
            if got < self.subscribers {
                msgs += 1;
                missing += (self.subscribers - got) as u64;
            }
        }
        (msgs, missing)
    }
}

/// Builds a broadcast frame (a single map, as events are).
pub fn event_frame(seq: u64, ts_ns: u64, pad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + EVENT.len() + pad.len());
    write_map_len(&mut out, 3);
    write_str(&mut out, "type");
    write_str(&mut out, EVENT);
    write_str(&mut out, "to");
    write_str(&mut out, "*");
    write_str(&mut out, "data");
    write_map_len(&mut out, 3);
    write_str(&mut out, "seq");
    out.push(0xcf);
    out.extend_from_slice(&seq.to_be_bytes());
    write_str(&mut out, "ts");
    out.push(0xcf);
    out.extend_from_slice(&ts_ns.to_be_bytes());
    write_str(&mut out, "pad");
    write_bin_header(&mut out, pad.len());
    out.extend_from_slice(pad);
    out
}

/// Reads `(seq, ts, pad length)` out of a received event frame without decoding the rest;
/// `None` if the frame is not one of our events. Accepts any msgpack integer encoding (a
/// server may re-encode the map, as the reference does).
pub fn parse_event(frame: &[u8]) -> Option<(u64, u64, usize)> {
    let (n, mut pos) = read_map_len(frame, 0).ok()?;
    let mut is_ours = false;
    let mut data = None;
    for _ in 0..n {
        let (key, after) = read_str(frame, pos).ok()?;
        let key = &frame[key?.0..key?.1];
        let end = skip(frame, after).ok()?;
        match key {
            b"type" => {
                let (v, _) = read_str(frame, after).ok()?;
                is_ours = v.is_some_and(|(a, b)| &frame[a..b] == EVENT.as_bytes());
            }
            b"data" => data = Some(after),
            _ => {}
        }
        pos = end;
    }
    if !is_ours {
        return None;
    }
    let (m, mut pos) = read_map_len(frame, data?).ok()?;
    let (mut seq, mut ts, mut pad) = (None, None, 0);
    for _ in 0..m {
        let (key, after) = read_str(frame, pos).ok()?;
        let key = &frame[key?.0..key?.1];
        match key {
            b"seq" => seq = read_uint(frame, after),
            b"ts" => ts = read_uint(frame, after),
            b"pad" => pad = bin_len(frame, after).unwrap_or(0),
            _ => {}
        }
        pos = skip(frame, after).ok()?;
    }
    Some((seq?, ts?, pad))
}

fn read_uint(b: &[u8], p: usize) -> Option<u64> {
    let be = |n: usize| -> Option<u64> {
        let s = b.get(p + 1..p + 1 + n)?;
        Some(s.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64))
    };
    match *b.get(p)? {
        m @ 0x00..=0x7f => Some(m as u64),
        0xcc | 0xd0 => be(1).filter(|v| b[p] == 0xcc || *v < 0x80),
        0xcd | 0xd1 => be(2).filter(|v| b[p] == 0xcd || *v < 0x8000),
        0xce | 0xd2 => be(4).filter(|v| b[p] == 0xce || *v < 0x8000_0000),
        0xcf | 0xd3 => be(8).filter(|v| b[p] == 0xcf || *v < 0x8000_0000_0000_0000),
        _ => None,
    }
}

fn bin_len(b: &[u8], p: usize) -> Option<usize> {
    let be = |n: usize| -> Option<usize> {
        let s = b.get(p + 1..p + 1 + n)?;
        Some(s.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize))
    };
    match *b.get(p)? {
        0xc4 => be(1),
        0xc5 => be(2),
        0xc6 => be(4),
        _ => None,
    }
}

/// Runs the fan-out scenario.
///
/// Errors: set-up failed (publisher, token, a subscriber's connection or subscription).
pub async fn run(
    cfg: &FanoutConfig,
    target: &Target,
    ctx: &RunContext,
) -> anyhow::Result<RunResult> {
    let url = target.ws_url();
    let tag = crate::run_tag();
    let live = Arc::new(Live::default());
    anyhow::ensure!(cfg.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(cfg.subscribers > 0, "--subscribers must be at least 1");
    let total = cfg
        .messages
        .unwrap_or(u64::MAX)
        .min((cfg.rate * cfg.duration.as_secs_f64()).ceil() as u64)
        .max(1);

    let mut publisher = RawConnection::connect(
        &url,
        ConnectOptions {
            client_id: Some(format!("lt-fan-{tag}-pub")),
            ..Default::default()
        },
    )
    .await?;
    let join: Join = mint_token(&mut publisher).await?;
    let ids: Vec<usize> = (0..cfg.subscribers).collect();
    let subs = crate::bounded(ids, 64, |i| {
        let (join, tag) = (&join, &tag);
        let url = target.node_url(i);
        async move {
            let mut c = connect_one(&url, format!("lt-fan-{tag}-s{i}"), join, None, false)
                .await
                .map_err(|(k, e)| anyhow::anyhow!("subscriber {i}: {k}: {e}"))?;
            c.manager_call("subscribe", vec![vec![rmpv::Value::from(EVENT)].into()])
                .await
                .map_err(|e| anyhow::anyhow!("subscriber {i}: subscribe: {e}"))?;
            anyhow::Ok(c)
        }
    })
    .await;
    let subs: Vec<RawConnection> = subs.into_iter().collect::<Result<_, _>>()?;
    // Slow consumers: subscribed like the others, then never read. Held until the end.
    let mut stuck = Vec::with_capacity(cfg.stuck);
    for i in 0..cfg.stuck {
        let node = target.node_url(i);
        let mut c = connect_one(&node, format!("lt-fan-{tag}-stuck{i}"), &join, None, false)
            .await
            .map_err(|(k, e)| anyhow::anyhow!("stuck subscriber {i}: {k}: {e}"))?;
        c.manager_call("subscribe", vec![vec![rmpv::Value::from(EVENT)].into()])
            .await
            .map_err(|e| anyhow::anyhow!("stuck subscriber {i}: subscribe: {e}"))?;
        stuck.push(c.into_parts());
    }

    let tracker = Arc::new(Tracker::new(cfg.subscribers, total, live.clone()));
    let per_delivery = Arc::new(Mutex::new(Latency::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|c| {
            let (ws, resp) = c.into_parts();
            tokio::spawn(subscriber_loop(
                ws,
                resp,
                tracker.clone(),
                per_delivery.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    let probe = ctx.server_pid.map(crate::proc::ServerProbe::start);
    let meter = progress::start(
        live.clone(),
        Goal::Count(total),
        &ctx.label,
        "messages",
        ctx.progress,
    );
    let started = Instant::now();
    let (mut pws, presp) = publisher.into_parts();
    let pad: Vec<u8> = (0..cfg.payload).map(|i| i as u8).collect();
    let sent = publish(&mut pws, &presp, &tracker, total, cfg.rate, &pad, &live).await;
    let publish_s = started.elapsed().as_secs_f64();

    // Wait until every message reached every subscriber, or the timeout.
    let drain_deadline = Instant::now() + cfg.timeout;
    while tracker.incomplete(sent).0 > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let timeline = meter.finish().await;
    let server = probe.map(|p| p.finish(live.ops.load(Relaxed)));
    let (lost_msgs, missing) = tracker.incomplete(sent);
    live.error(
        "not delivered",
        missing,
        format!(
            "{lost_msgs} messages did not reach every subscriber within {:?}",
            cfg.timeout
        ),
    );
    let _ = stop_tx.send(true);
    for t in sub_tasks {
        if let Ok(Ok(Some(err))) = tokio::time::timeout(Duration::from_secs(5), t).await {
            live.error("subscriber", 1, err);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), pws.close(None)).await;

    let hist = tracker.complete.lock().expect("tracker lock").clone();
    let deliveries = per_delivery.lock().expect("latency lock").clone();
    let mut r = RunResult::new(
        "fanout",
        target,
        "messages",
        elapsed,
        &live,
        &hist,
        "send until the last subscriber received it",
        timeline,
    );
    r.server = server;
    let delivered = deliveries.count();
    r.mib_per_s = Some(delivered as f64 * cfg.payload as f64 / (1 << 20) as f64 / r.duration_s);
    r.detail("subscribers", cfg.subscribers);
    r.detail("rate_per_s", cfg.rate);
    r.detail("messages_sent", sent);
    r.detail("publish_s", publish_s);
    r.detail("deliveries", delivered);
    r.detail("deliveries_per_s", delivered as f64 / r.duration_s);
    r.detail("delivery_latency", deliveries.summary());
    r.detail("payload_bytes", cfg.payload);
    r.detail("stuck_subscribers", cfg.stuck);
    if target.is_cluster() {
        // Subscribers per node (the publisher is on `url`).
        let mut per_node = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..cfg.subscribers {
            *per_node.entry(target.node_url(i)).or_default() += 1;
        }
        r.detail("subscriber_nodes", per_node);
    }
    drop(stuck);
    Ok(r)
}

/// Sends `total` messages at `rate` per second; returns how many were sent.
async fn publish(
    ws: &mut WsStream,
    responder: &Responder,
    tracker: &Tracker,
    total: u64,
    rate: f64,
    pad: &[u8],
    live: &Live,
) -> u64 {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < total {
        tokio::select! {
            _ = tick.tick() => {}
            m = ws.next() => match m {
                Some(Ok(WsMessage::Binary(f))) => {
                    if let Some(a) = responder.answer(&f) {
                        let _ = ws.feed(WsMessage::Binary(a)).await;
                    }
                    continue;
                }
                Some(Ok(WsMessage::Text(t))) => {
                    if t.contains("\"error\"") {
                        live.error("publisher refused", 1, t.as_str());
                    }
                    continue;
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    live.error("connection lost", 1, "publisher closed by the server");
                    return sent;
                }
                Some(Ok(_)) => continue,
            },
        }
        let due = ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let frame = event_frame(sent, tracker.now_ns(), pad);
            if ws.feed(WsMessage::Binary(frame.into())).await.is_err() {
                live.error("connection lost", 1, "publisher write failed");
                return sent;
            }
            sent += 1;
        }
        if ws.flush().await.is_err() {
            live.error("connection lost", 1, "publisher flush failed");
            return sent;
        }
    }
    // Keep reading briefly so that a refusal sent for the last frames is seen.
    while let Some(Some(Ok(m))) = ws.next().now_or_never() {
        if let WsMessage::Text(t) = m {
            if t.contains("\"error\"") {
                live.error("publisher refused", 1, t.as_str());
            }
        }
    }
    sent
}

/// Receives events until `stop`; returns an error message if the sequence broke or the
/// connection was lost.
async fn subscriber_loop(
    mut ws: WsStream,
    responder: Responder,
    tracker: Arc<Tracker>,
    per_delivery: Arc<Mutex<Latency>>,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let mut expect = 0u64;
    let mut hist = Latency::new();
    let mut problem = None;
    'run: loop {
        let mut next = tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        // Handle everything already read, then flush any answers once.
        let mut answers = 0;
        for _ in 0..256 {
            match next {
                Some(Ok(WsMessage::Binary(frame))) => {
                    let now = tracker.now_ns();
                    match parse_event(&frame) {
                        Some((seq, ts, _)) => {
                            if seq != expect && problem.is_none() {
                                problem = Some(format!("expected message {expect}, got {seq}"));
                            }
                            expect = expect.max(seq + 1);
                            hist.record_ns(now.saturating_sub(ts));
                            tracker.delivered(seq, ts, now);
                        }
                        None => {
                            if let Some(a) = responder.answer(&frame) {
                                let _ = ws.feed(WsMessage::Binary(a)).await;
                                answers += 1;
                            }
                        }
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    problem.get_or_insert_with(|| "subscriber closed by the server".to_owned());
                    break 'run;
                }
                Some(Ok(_)) => {}
            }
            match ws.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if answers > 0 {
            let _ = ws.flush().await;
        }
    }
    per_delivery.lock().expect("latency lock").merge(&hist);
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::{self, map};

    #[test]
    fn event_frames_round_trip() {
        let f = event_frame(42, 123_456_789, &[1, 2, 3]);
        assert_eq!(parse_event(&f), Some((42, 123_456_789, 3)));
        // Decodes as an ordinary event map too.
        let m = rhizo_protocol::message::Message::decode(&f).unwrap();
        assert_eq!(value::get_str(&m.merged, "type"), Some(EVENT));
        assert_eq!(value::get_str(&m.merged, "to"), Some("*"));
    }

    #[test]
    fn parses_reencoded_events_with_stamped_fields() {
        // As a server that re-encodes the map would deliver it: compact integers, extra keys.
        let v = map([
            ("from", "ws/p".into()),
            ("type", EVENT.into()),
            ("to", "ws/*".into()),
            (
                "data",
                map([
                    ("ts", 300.into()),
                    ("seq", 7.into()),
                    ("pad", rmpv::Value::Binary(vec![0; 70_000])),
                ]),
            ),
            ("user", map([("id", "u".into())])),
        ]);
        assert_eq!(parse_event(&value::encode(&v)), Some((7, 300, 70_000)));
        let other = map([
            ("type", "client_connected".into()),
            ("data", map([("seq", 1.into())])),
        ]);
        assert_eq!(parse_event(&value::encode(&other)), None);
    }

    #[test]
    fn tracker_records_the_last_subscriber() {
        let live = Arc::new(Live::default());
        let t = Tracker::new(3, 2, live.clone());
        t.delivered(0, 1_000, 5_000);
        t.delivered(0, 1_000, 9_000);
        assert_eq!(live.ops.load(Relaxed), 0);
        assert_eq!(t.incomplete(2), (2, 4));
        t.delivered(0, 1_000, 7_000);
        assert_eq!(live.ops.load(Relaxed), 1);
        let s = t.complete.lock().unwrap().summary();
        assert!((s.max_us - 8.0).abs() < 0.01, "{s:?}");
        assert_eq!(t.incomplete(2), (1, 3));
        t.delivered(99, 0, 1); // out of range: ignored
    }
}
