//! Driving the autoscaler (apps-workers.md §5; issue 15): every
//! [`super::AppsOptions::autoscale_interval`] the node that holds the autoscaler's leader
//! lease looks at every app with instances whose manifest has `autoscaling.enabled`,
//! builds a [`Snapshot`] of their load, asks the pure [`Policy::decide`] what to do and
//! does it: new instances are started as a daemon or lazy start starts them (the app's
//! stored startup context, bypassing the reuse rule of §1.5 step 5), instances are stopped
//! as the inactivity stop stops them (the session's `app-stop-lock`, then the worker's
//! `stop`).
//!
//! * **Scope**: one [`ScalerState`] per `ws/app` in this process (the reference keys by
//!   app only). A new leader starts with fresh states (its first decision may act at once:
//!   cooldowns never started count as passed).
//! * **Load** (§5.2): an instance's requests per minute is the growth of its app client's
//!   frame counter (`frames_in`, frames the client sent — answers, calls, registrations)
//!   over the passes of the last [`LOAD_WINDOW`] (5 s), per minute of that window
//!   ([`window_rate`]); the reference's window is up to 60 s. A starting instance counts
//!   with 0 (its connecting and registering is not load). Only the node holding an
//!   instance's connection can sample it (`ServiceHost::client`), so **every** node, leader
//!   or not, samples on every pass the running instances whose connection it holds and
//!   publishes each one's requests per minute to the session store
//!   ([`SessionStore::put_loads`](crate::SessionStore::put_loads); with Redis a key
//!   `P:apps:load:<id>` each) with a TTL of three passes, at least 5 s ([`load_ttl`]). The
//!   leader's snapshot takes an instance's figure from its own sample when it holds the
//!   connection, else the figure published by the node that does, else 0 (nobody
//!   published one: the instance is connecting, or its node died and the figure expired).
//!   An instance seen for the first time counts 0 until the next pass gives it a baseline;
//!   a published figure is at most one pass older than a local one.
//! * **Calls in flight** (`metric_type: "concurrency"`): the router's count of calls
//!   delivered to the app client and not yet answered (`ClientPresence::calls_in_flight`),
//!   read at each pass for instances connected to this node and published with the
//!   requests per minute (one [`Load`](crate::Load) per instance), so the leader sees
//!   every node's. The calls **waiting for a lazy start** of the app (callers inside
//!   `lazy_start`, counted per `ws/app` by [`Autoscale::waiting`]) are published per app
//!   under the pseudo-session `<ws>/<app>#waiting` and add to the signal as
//!   [`Snapshot::waiting_calls`]: a burst of calls at an app starting its first instance
//!   asks for as many instances as it needs at once. Nodes publish one figure per app,
//!   so when calls wait on several nodes at once the leader sees the last one published
//!   (a lower bound).
//! * **Left-behind starts**: a `starting` record more than [`STALE_START_GRACE`] past its
//!   `startup_timeout` belongs to a node that died while starting it (a live node removes
//!   a failed start itself); a pass removes it, or it would count as an instance for ever.
//! * **Instances** are the records of the app in the workspace that are not stopped and not
//!   a verification run (`_stage`), starting ones included (so that a pass does not start
//!   again what is starting). A pass waits for the starts it makes before the next pass.
//!   A starting instance is never stopped (it may be a lazy start's, with a caller
//!   waiting), and scaling to zero forgets the app's state, so the instance the next call
//!   starts gets a fresh idle clock.
//! * **Draining**: an instance chosen for a scale-down is taken out of the count at once
//!   (its stop lock taken) and stopped by a task of its own once its calls in flight
//!   are answered, or after [`DRAIN_GRACE`] (10 s) — so a pass is never held by a slow
//!   call and a caller mid-call is not cut off. New calls can still reach it while it
//!   drains (callers pick among the registered services).
//! * **Leader** (§5.4): the store lock `autoscaler-leader`, taken with `SET NX PX` and
//!   extended (compare and extend) every pass; its TTL is 15 s or three passes, whichever
//!   is longer. With the in-memory store (one node) this node always leads. A node that
//!   loses the lease drops its decision states (not its samples: it keeps publishing). A
//!   node shutting down makes no more passes and releases the lease
//!   ([`ServerApps::autoscale_shutdown`]), so another node leads at its next pass; a node
//!   that dies leaves it to expire.

use super::run::{startup_ctx, StartRequest};
use super::ServerApps;
use crate::autoscaler::{Decision, DownReason, InstanceLoad, Policy, ScalerState, Snapshot};
use crate::sessions::{app_of, ws_of, Load, LockGuard};
use crate::workers::root_ctx;
use dashmap::DashMap;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Weak;
use std::time::{Duration, Instant};

/// The store lock whose holder runs the autoscaler.
pub(crate) const LEADER_LOCK: &str = "autoscaler-leader";

/// The shortest leader lease.
const MIN_LEASE: Duration = Duration::from_secs(15);

/// The span an instance's requests per minute are measured over (at least; a single
/// stray frame then reads as 12 requests/min, not 120 as over a 0.5 s pass).
pub(crate) const LOAD_WINDOW: Duration = Duration::from_secs(5);

/// One instance's frame counter as sampled by the passes.
#[derive(Debug)]
pub(crate) struct Samples {
    /// When a pass first saw the instance.
    first_seen: Instant,
    /// (when, frames_in), oldest first, covering at least [`LOAD_WINDOW`] when there are
    /// samples that old.
    counts: VecDeque<(Instant, u64)>,
}

/// Requests per minute over the samples `counts` (oldest first): the counter's growth
/// from the oldest to the newest, per minute of `max(span, window)` — so a new
/// instance's first seconds are not over-read. 0 with fewer than two samples.
pub(crate) fn window_rate(counts: &VecDeque<(Instant, u64)>, window: Duration) -> f64 {
    let (Some(&(t0, c0)), Some(&(t1, c1))) = (counts.front(), counts.back()) else {
        return 0.0;
    };
    if counts.len() < 2 {
        return 0.0;
    }
    rate_per_minute(c0, c1, t1.duration_since(t0).max(window))
}

/// What the autoscaler keeps between passes (in [`ServerApps`]).
#[derive(Debug)]
pub(crate) struct Autoscale {
    /// The clock [`Policy::decide`] is given: time since this instant.
    epoch: Instant,
    /// The leader lease, while this node holds it.
    lease: tokio::sync::Mutex<Option<LockGuard>>,
    /// Per `ws/app`: the state of the last decision.
    states: DashMap<String, ScalerState>,
    /// Per session: its frame counter over the last [`LOAD_WINDOW`].
    samples: DashMap<String, Samples>,
    /// Per `ws/app`: the figures of the last decision (`/metrics`; the leader's only).
    observed: DashMap<String, crate::autoscaler::Observed>,
    /// Scale events so far (instances started, instances stopped).
    started: std::sync::atomic::AtomicU64,
    stopped: std::sync::atomic::AtomicU64,
    /// Whether the last pass that needed the lease held it.
    leading: std::sync::atomic::AtomicBool,
    /// Per `ws/app`: the calls on this node waiting for a lazy start of the app.
    waiting: DashMap<String, u64>,
    /// Set at shutdown: no more passes, the lease released.
    closed: std::sync::atomic::AtomicBool,
    /// The sessions a scale-down is draining and stopping: no longer counted.
    draining: dashmap::DashSet<String>,
}

/// One call waiting for a lazy start, counted in [`Autoscale::waiting`] while it lives.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    map: &'a DashMap<String, u64>,
    key: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.map.remove_if_mut(&self.key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl Autoscale {
    /// Counts one call waiting for a lazy start of app `key` (`ws/app`) until the guard
    /// drops.
    pub(crate) fn waiting(&self, key: &str) -> Waiting<'_> {
        *self.waiting.entry(key.to_owned()).or_default() += 1;
        Waiting {
            map: &self.waiting,
            key: key.to_owned(),
        }
    }
}

/// The pseudo-session under which a node publishes the calls waiting for a lazy start
/// of app `key` (`ws/app`).
fn waiting_id(key: &str) -> String {
    format!("{key}#waiting")
}

impl Default for Autoscale {
    fn default() -> Self {
        Autoscale {
            epoch: Instant::now(),
            lease: tokio::sync::Mutex::new(None),
            states: DashMap::new(),
            samples: DashMap::new(),
            observed: DashMap::new(),
            started: Default::default(),
            stopped: Default::default(),
            leading: Default::default(),
            waiting: DashMap::new(),
            closed: Default::default(),
            draining: Default::default(),
        }
    }
}

/// Requests per minute from a monotonic counter that went from `before` to `after` in
/// `elapsed`: 0 when no time passed or the counter went back (a new connection).
pub(crate) fn rate_per_minute(before: u64, after: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || after < before {
        return 0.0;
    }
    (after - before) as f64 * 60.0 / secs
}

/// The lease TTL for passes every `interval`.
fn lease_ttl(interval: Duration) -> Duration {
    MIN_LEASE.max(interval.saturating_mul(3))
}

/// The shortest life of a published load figure.
const MIN_LOAD_TTL: Duration = Duration::from_secs(5);

/// How long a load figure published by a pass every `interval` lives: three passes, at
/// least [`MIN_LOAD_TTL`] (a node that dies stops counting within it).
fn load_ttl(interval: Duration) -> Duration {
    MIN_LOAD_TTL.max(interval.saturating_mul(3))
}

/// Runs autoscaler passes until the controller is dropped.
pub(super) async fn run(me: Weak<ServerApps>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(me) = me.upgrade() else { return };
        me.autoscale_pass().await;
    }
}

// === impl ServerApps (autoscaling) ===

impl ServerApps {
    /// Scale events so far: (instances started, instances stopped).
    pub fn autoscale_events(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.autoscale.started.load(Relaxed),
            self.autoscale.stopped.load(Relaxed),
        )
    }

    /// The autoscaler's `/metrics` families: scale events by direction, and whether this
    /// node leads.
    pub(super) fn autoscale_metrics(&self) -> String {
        let (up, down) = self.autoscale_events();
        let leading = u8::from(
            self.autoscale
                .leading
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        format!(
            "# HELP rhizo_autoscaler_instances_total App instances the autoscaler started and stopped.\n\
             # TYPE rhizo_autoscaler_instances_total counter\n\
             rhizo_autoscaler_instances_total{{direction=\"up\"}} {up}\n\
             rhizo_autoscaler_instances_total{{direction=\"down\"}} {down}\n\
             # HELP rhizo_autoscaler_leader 1 while this node holds the autoscaler's lease.\n\
             # TYPE rhizo_autoscaler_leader gauge\n\
             rhizo_autoscaler_leader {leading}\n{}",
            self.app_metrics()
        )
    }

    /// Per autoscaled app (on the leader, from its last decision): instances, requests
    /// per minute, calls in flight and the instances the metric asks for, labelled
    /// `workspace` and `app`.
    fn app_metrics(&self) -> String {
        let mut rows: Vec<(String, crate::autoscaler::Observed)> = self
            .autoscale
            .observed
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let series: [(&str, &str, ObservedFigure); 4] = [
            (
                "rhizo_app_instances",
                "Instances of an autoscaled app.",
                |o| o.instances.into(),
            ),
            (
                "rhizo_app_requests_per_minute",
                "Requests per minute to an autoscaled app's instances.",
                |o| o.requests_per_minute,
            ),
            (
                "rhizo_app_calls_in_flight",
                "Calls in flight at an autoscaled app's instances.",
                |o| o.in_flight,
            ),
            (
                "rhizo_app_desired_instances",
                "Instances the autoscaling metric asks for.",
                |o| o.desired.into(),
            ),
        ];
        for (name, help, value) in series {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (key, o) in &rows {
                let (ws, app) = key.split_once('/').unwrap_or((key.as_str(), ""));
                out.push_str(&format!(
                    "{name}{{workspace=\"{}\",app=\"{}\"}} {}\n",
                    label(ws),
                    label(app),
                    value(o)
                ));
            }
        }
        out
    }

    /// Whether this node leads the autoscaler: extends its lease, or takes a free one.
    async fn autoscale_leader(&self) -> bool {
        let leads = self.take_or_keep_lease().await;
        self.autoscale
            .leading
            .store(leads, std::sync::atomic::Ordering::Relaxed);
        leads
    }

    /// Extends this node's lease, or takes a free one: whether it holds it now.
    async fn take_or_keep_lease(&self) -> bool {
        let a = &self.autoscale;
        let ttl = lease_ttl(self.options.autoscale_interval);
        let mut lease = a.lease.lock().await;
        if a.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        if let Some(held) = lease.as_ref() {
            match self.sessions.extend(held, ttl).await {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::info!("autoscaler leader lease lost");
                    *lease = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "autoscaler lease not extended; not leading");
                    *lease = None;
                    return false;
                }
            }
        }
        match self.sessions.try_lock(LEADER_LOCK, ttl).await {
            Ok(Some(g)) => {
                tracing::info!("this node leads the autoscaler");
                *lease = Some(g);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "autoscaler lease not taken; not leading");
                false
            }
        }
    }

    /// Shutdown: no more passes, and the lease released so that another node leads at
    /// once rather than when it expires.
    pub(super) async fn autoscale_shutdown(&self) {
        let a = &self.autoscale;
        a.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        let held = a.lease.lock().await.take();
        a.leading.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(lease) = held {
            match self.sessions.unlock(&lease).await {
                Ok(()) => tracing::info!("autoscaler leader lease released"),
                Err(e) => tracing::info!(error = %e, "autoscaler lease not released; it expires"),
            }
        }
    }

    /// One pass over every autoscaled app with instances (module doc).
    pub(super) async fn autoscale_pass(&self) {
        if self
            .autoscale
            .closed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let Ok(host) = self.host().cloned() else {
            return;
        };
        let records = self.records().await;
        let a = &self.autoscale;
        let mut apps: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        let wall = rhizo_control_plane::tokens::now_secs();
        for s in records {
            if stale_start(&s, wall) {
                self.forget_stale_start(&s).await;
                continue;
            }
            if s.get("status").and_then(Value::as_str) == Some("stopped")
                || s.get("_stage").and_then(Value::as_bool) == Some(true)
                || s.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| a.draining.contains(id))
            {
                continue;
            }
            apps.entry((ws_of(&s).to_owned(), app_of(&s).to_owned()))
                .or_default()
                .push(s);
        }
        let now = Instant::now();
        // Every node, leader or not, samples the instances whose connection it holds and
        // publishes their load for the leader (module doc, "Load").
        let mut local: HashMap<String, Load> = HashMap::new();
        let mut live_sessions = HashSet::new();
        for s in apps.values().flatten() {
            let Some(id) = s.get("id").and_then(Value::as_str) else {
                continue;
            };
            live_sessions.insert(id.to_owned());
            // A starting instance's own traffic (connecting, registering) is not
            // load: it is counted, with 0, until it runs.
            let running = s.get("status").and_then(Value::as_str) == Some("running");
            let presence = host.client(id).filter(|_| running);
            let frames = presence.as_ref().map(|p| p.frames_in);
            let in_flight = presence.map_or(0.0, |p| p.calls_in_flight as f64);
            let mut entry = a.samples.entry(id.to_owned()).or_insert_with(|| Samples {
                first_seen: now,
                counts: VecDeque::new(),
            });
            let Some(f) = frames else { continue };
            entry.counts.push_back((now, f));
            while entry.counts.len() > 2
                && entry
                    .counts
                    .get(1)
                    .is_some_and(|(t, _)| now.duration_since(*t) >= LOAD_WINDOW)
            {
                entry.counts.pop_front();
            }
            let load = Load {
                requests_per_minute: window_rate(&entry.counts, LOAD_WINDOW),
                in_flight,
            };
            local.insert(id.to_owned(), load);
        }
        a.samples.retain(|id, _| live_sessions.contains(id));
        let waiting_here: Vec<(String, Load)> = a
            .waiting
            .iter()
            .map(|e| {
                let load = Load {
                    requests_per_minute: 0.0,
                    in_flight: *e.value() as f64,
                };
                (waiting_id(e.key()), load)
            })
            .collect();
        if !local.is_empty() || !waiting_here.is_empty() {
            let mut loads: Vec<(String, Load)> =
                local.iter().map(|(k, v)| (k.clone(), *v)).collect();
            loads.extend(waiting_here);
            let ttl = load_ttl(self.options.autoscale_interval);
            if let Err(e) = self.sessions.put_loads(&loads, ttl).await {
                tracing::debug!(error = %e, "instance loads not published");
            }
        }
        // The lease is kept (extended) even while there is nothing to scale, so that
        // leadership stays put; a node that does not lead forgets its decisions.
        if !self.autoscale_leader().await || apps.is_empty() {
            a.states.clear();
            return;
        }
        // The instances connected elsewhere: the figures their nodes published; and the
        // calls waiting for each app on any node.
        let mut remote: Vec<String> = live_sessions
            .iter()
            .filter(|id| !local.contains_key(*id))
            .cloned()
            .collect();
        remote.extend(
            apps.keys()
                .map(|(ws, app)| waiting_id(&format!("{ws}/{app}"))),
        );
        let published = match self.sessions.loads(&remote).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "published instance loads not read");
                HashMap::new()
            }
        };
        let clock = now.duration_since(a.epoch);
        let mut live_apps = HashSet::new();
        for ((ws, app), sessions) in apps {
            let key = format!("{ws}/{app}");
            let Ok(manifest) = self.read_app(&ws, &app, None, false).await else {
                continue;
            };
            let config = match crate::manifest::autoscaling(&manifest) {
                Ok(Some(c)) if c.enabled => c,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(app = %key, error = %e, "autoscaling config unusable");
                    continue;
                }
            };
            let policy = match Policy::new(config) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(app = %key, error = %e, "not autoscaling");
                    continue;
                }
            };
            live_apps.insert(key.clone());
            let mut instances = Vec::with_capacity(sessions.len());
            for s in &sessions {
                let id = s
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let running = s.get("status").and_then(Value::as_str) == Some("running");
                let load = if running {
                    local
                        .get(&id)
                        .or_else(|| published.get(&id))
                        .copied()
                        .unwrap_or_default()
                } else {
                    Load::default()
                };
                let first_seen = a.samples.get(&id).map_or(now, |e| e.first_seen);
                instances.push(InstanceLoad {
                    session_id: id,
                    requests_per_minute: load.requests_per_minute,
                    in_flight: load.in_flight,
                    started_at: first_seen.duration_since(a.epoch),
                });
            }
            // Published by every node with waiting calls (this one's included).
            let waiting = published
                .get(&waiting_id(&key))
                .map_or(0, |l| l.in_flight.clamp(0.0, f64::from(u32::MAX)) as u32);
            let snapshot = Snapshot {
                instances,
                waiting_calls: waiting,
            };
            let state = a.states.get(&key).map(|s| s.clone()).unwrap_or_default();
            let outcome = policy.decide(&state, &snapshot, clock);
            a.states.insert(key.clone(), outcome.state);
            a.observed.insert(key.clone(), outcome.observed.clone());
            let o = &outcome.observed;
            match outcome.decision {
                Decision::Hold { reason } => {
                    tracing::debug!(app = %key, instances = o.instances,
                        rpm = o.requests_per_minute, ?reason, "autoscaler holds");
                }
                Decision::ScaleUp { by, reason } => {
                    tracing::info!(app = %key, instances = o.instances, by,
                        rpm = o.requests_per_minute, ?reason, "autoscaler scales up");
                    let root = root_ctx(&*host, &ws);
                    let ctx = startup_ctx(&manifest, &root);
                    let Some(me) = self.me.upgrade() else { return };
                    let mut starts = tokio::task::JoinSet::new();
                    for _ in 0..by {
                        let (me, ctx, key) = (me.clone(), ctx.clone(), key.clone());
                        starts.spawn(async move {
                            let req = StartRequest {
                                app_id: key,
                                fresh: true,
                                ..Default::default()
                            };
                            me.start(&ctx, req).await
                        });
                    }
                    while let Some(r) = starts.join_next().await {
                        match r {
                            Ok(Ok(s)) => {
                                a.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let id = s.get("id").and_then(Value::as_str).unwrap_or("");
                                tracing::info!(app = %key, session = %id,
                                    "autoscaler started an instance");
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(app = %key, error = %e, "autoscaler start failed")
                            }
                            Err(e) => {
                                tracing::warn!(app = %key, error = %e, "autoscaler start panicked")
                            }
                        }
                    }
                }
                Decision::ScaleDown { stop, reason } => {
                    if reason == DownReason::ToZero {
                        // The next instance (a lazy start's) starts a new idle clock.
                        a.states.remove(&key);
                    }
                    tracing::info!(app = %key, instances = o.instances, stop = stop.len(),
                        rpm = o.requests_per_minute, ?reason, "autoscaler scales down");
                    for id in stop {
                        // A start in progress (a lazy start's) is never stopped.
                        let Some(s) = sessions.iter().find(|s| {
                            s.get("id").and_then(Value::as_str) == Some(id.as_str())
                                && s.get("status").and_then(Value::as_str) == Some("running")
                        }) else {
                            continue;
                        };
                        if !self.claim_stop(&id).await {
                            continue;
                        }
                        let Some(me) = self.me.upgrade() else { return };
                        a.draining.insert(id.clone());
                        let (record, key) = (s.clone(), key.clone());
                        tokio::spawn(async move { me.drain_and_stop(&key, &id, &record).await });
                    }
                }
            }
        }
        a.states.retain(|k, _| live_apps.contains(k));
        a.observed.retain(|k, _| live_apps.contains(k));
    }
}

/// How long a scale-down waits for an instance's calls in flight to be answered before
/// it stops the instance anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// How often a draining instance's calls in flight are looked at.
const DRAIN_POLL: Duration = Duration::from_millis(100);

impl ServerApps {
    /// Scale-down of one instance: waits up to [`DRAIN_GRACE`] for its calls in flight
    /// to be answered (the router's count when its connection is on this node, else the
    /// figure its node publishes every pass), then stops it (stop lock already taken).
    async fn drain_and_stop(&self, key: &str, id: &str, record: &Value) {
        let a = &self.autoscale;
        let deadline = Instant::now() + DRAIN_GRACE;
        loop {
            let in_flight = match self.host().ok().and_then(|h| h.client(id)) {
                Some(p) => p.calls_in_flight as f64,
                None => self
                    .sessions
                    .loads(&[id.to_owned()])
                    .await
                    .ok()
                    .and_then(|m| m.get(id).copied())
                    .map_or(0.0, |l| l.in_flight),
            };
            if in_flight <= 0.0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::info!(app = %key, session = %id, in_flight,
                    "instance not drained within the grace; stopping it anyway");
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        match self.stop_record(record).await {
            Ok(()) => {
                a.stopped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                a.samples.remove(id);
                tracing::info!(app = %key, session = %id, "autoscaler stopped an instance");
            }
            Err(e) => tracing::info!(session = %id, error = %e, "autoscaler stop failed"),
        }
        a.draining.remove(id);
    }
}

/// How long past its startup timeout a `starting` record is kept before it counts as
/// left behind by a node that died while starting it.
const STALE_START_GRACE: f64 = 30.0;

/// Whether `record` is a start that cannot be in progress any more at wall-clock time
/// `now` (seconds): still `starting` more than [`STALE_START_GRACE`] past its
/// `startup_timeout` (the node starting it would have given up and removed it; it died).
fn stale_start(record: &Value, now: u64) -> bool {
    if record.get("status").and_then(Value::as_str) != Some("starting") {
        return false;
    }
    let (Some(started), Some(timeout)) = (
        record.get("started_at").and_then(Value::as_u64),
        record.get("startup_timeout").and_then(Value::as_f64),
    ) else {
        return false;
    };
    now as f64 > started as f64 + timeout + STALE_START_GRACE
}

impl ServerApps {
    /// Removes a start left behind by a dead node ([`stale_start`]), so that it no longer
    /// counts as an instance (a starting instance is never stopped). Exactly one node
    /// removes it.
    async fn forget_stale_start(&self, record: &Value) {
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return;
        };
        if let Ok(Some(_)) = self.sessions.remove(id).await {
            tracing::warn!(session = %id, "removed an app start left behind by a node that died");
        }
    }
}

/// One figure of an [`crate::autoscaler::Observed`], as a gauge value.
type ObservedFigure = fn(&crate::autoscaler::Observed) -> f64;

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_labels_are_escaped() {
        assert_eq!(super::label("ws-a"), "ws-a");
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    use super::*;

    #[test]
    fn requests_per_minute_from_frame_counters() {
        let s = Duration::from_secs;
        assert_eq!(rate_per_minute(10, 70, s(60)), 60.0);
        assert_eq!(rate_per_minute(0, 30, s(2)), 900.0);
        assert_eq!(rate_per_minute(5, 5, s(2)), 0.0);
        assert_eq!(
            rate_per_minute(0, 30, Duration::ZERO),
            0.0,
            "no time passed"
        );
        assert_eq!(rate_per_minute(30, 4, s(2)), 0.0, "a new connection");
        assert!((rate_per_minute(0, 1, Duration::from_millis(500)) - 120.0).abs() < 1e-9);
    }

    #[test]
    fn requests_per_minute_over_the_window() {
        let t = Instant::now();
        let at = |ms: u64, c: u64| (t + Duration::from_millis(ms), c);
        let w = Duration::from_secs(5);
        assert_eq!(window_rate(&VecDeque::new(), w), 0.0);
        assert_eq!(
            window_rate(&VecDeque::from([at(0, 9)]), w),
            0.0,
            "one sample"
        );
        // One stray frame within half a second reads over the whole window.
        assert!((window_rate(&VecDeque::from([at(0, 3), at(500, 4)]), w) - 12.0).abs() < 1e-9);
        // Load over a span longer than the window reads over that span.
        let load = VecDeque::from([at(0, 0), at(5_000, 250), at(10_000, 500)]);
        assert!((window_rate(&load, w) - 3000.0).abs() < 1e-9);
    }

    #[test]
    fn the_lease_outlives_several_passes() {
        assert_eq!(lease_ttl(Duration::from_secs(2)), MIN_LEASE);
        assert_eq!(
            lease_ttl(Duration::from_millis(200)),
            Duration::from_secs(15)
        );
        assert_eq!(lease_ttl(Duration::from_secs(10)), Duration::from_secs(30));
    }

    #[test]
    fn starts_left_behind_are_stale_only_past_their_timeout_and_grace() {
        let rec = |status: &str| serde_json::json!({"status": status, "started_at": 1000, "startup_timeout": 60.0});
        assert!(!stale_start(&rec("starting"), 1000));
        assert!(!stale_start(&rec("starting"), 1090), "within the grace");
        assert!(stale_start(&rec("starting"), 1091));
        assert!(!stale_start(&rec("running"), 5000), "only starts");
        assert!(
            !stale_start(
                &serde_json::json!({"status": "starting", "started_at": 1}),
                5000
            ),
            "an older record without a timeout is left alone"
        );
    }

    #[test]
    fn published_loads_outlive_three_passes() {
        assert_eq!(load_ttl(Duration::from_millis(500)), MIN_LOAD_TTL);
        assert_eq!(load_ttl(Duration::from_secs(2)), Duration::from_secs(6));
    }
}
