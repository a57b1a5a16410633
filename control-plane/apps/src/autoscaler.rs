//! The autoscaler's decision (apps-workers.md §5; issue 15 items 2–3): how many instances
//! of one app in one workspace should run, as a pure function of a snapshot of their load,
//! the app's [`AutoscalingConfig`], the state carried from the previous decision and the
//! clock. No I/O, no clock reads, no tasks: the caller (the controller's monitor, under the
//! leader lease of §5.4) samples the load, calls [`Policy::decide`] every few seconds,
//! applies the [`Decision`] (start instances, stop sessions) and keeps the returned
//! [`ScalerState`] for the next call. The shape follows Knative's
//! `pkg/autoscaler/scaling/autoscaler.go` (`Scale(now)`: stable and panic windows, no
//! scale-down while panicking); the rules are the reference's (§5.3) plus rhizo's.
//!
//! # Inputs and units
//!
//! * `now` — a [`Duration`] since any fixed epoch, on one monotonic clock shared with the
//!   [`ScalerState`] (and with `started_at`); a clock that steps back counts as no time
//!   passed. Cooldowns and windows are seconds in the config and [`Duration`]s here.
//! * A [`Snapshot`]: every instance of the app in the workspace that is running *or
//!   starting* (an instance still starting must be counted, or the next decision starts
//!   another), each with `requests_per_minute` (calls received per minute, the §5.2
//!   metric — already a one-minute rate) and `in_flight` (calls in flight, averaged over
//!   the sample); plus `waiting_calls`, the calls waiting for an instance to start (lazy
//!   start). Non-finite or negative figures count as 0. [`instances_of`] picks one app of
//!   one workspace out of the cluster's samples (the reference counts across workspaces).
//!
//! Write `n` for the instances in the snapshot, `min`, `max` for `min_instances`,
//! `max_instances`, and `W` for `stable_window`. The *signal* `S` is the total over the
//! instances of the metric: requests per minute for `metric_type: "load"` (target
//! `T = target_requests_per_instance`), calls in flight plus waiting calls for
//! `"concurrency"` (target `T = target_concurrency_per_instance`). The *stable* value `Ŝ` is
//! `S` for `"load"` (the rate is already averaged over a minute) and the mean of the
//! signals sampled in the last `W` for `"concurrency"`. Instances wanted:
//! `desired_now = ⌈S / T⌉`, `desired = ⌈Ŝ / T⌉` (so that each instance carries at most
//! its target).
//!
//! # Rules, in order (the first that applies decides)
//!
//! 1. **Wake from zero** — `n = 0` and `waiting_calls > 0`: [`Decision::ScaleUp`] by
//!    `max(min, 1)` at once, whatever the cooldown. *(rhizo; the reference has no zero.)*
//! 2. **Pre-warm** — `n < min`: scale up by `min − n` at once. *(rhizo; the reference never
//!    enforces `min` upward.)*
//! 3. **Cap** — `n > max` (after `edit_app` lowered it): stop the `n − max` least-loaded
//!    instances at once. *(rhizo.)*
//! 4. **Idle at zero** — `n = 0`: hold.
//! 5. **Panic bookkeeping** (Knative's panic window, one sample wide). The current sample
//!    *wants more* when the average load `S / n > scale_up_threshold × T` (`"load"`) or
//!    `desired_now > n` (`"concurrency"`). It *triggers panic* when it wants more and
//!    either the signal grew by `panic_threshold` within one sample
//!    (`S ≥ panic_threshold × S_prev` with `S_prev > 0`, the previous sample within `W`)
//!    or it needs that many times the running instances (`S / T ≥ panic_threshold × n`;
//!    this also covers a burst after silence). Panic mode lasts until
//!    `W` has passed since the last trigger. While panicking the up-cooldown is ignored and
//!    nothing is scaled down. Wake, pre-warm and cap (1–3) apply even while panicking.
//! 6. **Scale up.** `"load"`: when `S / n > scale_up_threshold × T` (§5.3). `"concurrency"`:
//!    when the wanted count `D = desired` (panicking: `max(desired, desired_now)`) exceeds
//!    `n`. At `max` → hold ([`HoldReason::AtMax`]). Panicking → scale up to
//!    `min(max, max(desired_now, n + 1))` (`"load"`) or `min(max, D)` (`"concurrency"`) at
//!    once, possibly by more than one. Otherwise the up-cooldown must have passed since the
//!    last scale-up (never → passed, so the first action is immediate, as in §5.3), and
//!    then `"load"` adds one instance (§5.3) and `"concurrency"` adds `min(max, D) − n`.
//! 7. **Scale down.** `"load"`: when `S / n < scale_down_threshold × T` (§5.3).
//!    `"concurrency"`: when `desired < n`. Also when the app is idle (no requests, nothing
//!    in flight, no waiting call) and `min = 0`. Panicking → hold. `min = 0` and idle for
//!    the whole down-cooldown → stop every instance (**scale to zero**; the next call wakes
//!    it through rule 1). Otherwise the floor is `max(min, 1)` — the load rule never stops
//!    the last instance — and the target `"load"`: `n − 1` (§5.3: one at a time),
//!    `"concurrency"`: `desired`, raised to the floor; at the floor → hold
//!    ([`HoldReason::AtMin`], or [`HoldReason::ZeroAfter`] while an idle app waits to scale
//!    to zero). The down-cooldown must have passed since the last scale-down; then the
//!    least-loaded instances are stopped (fewest requests per minute for `"load"`, fewest
//!    calls in flight for `"concurrency"`; ties: the newest first, then by session id).
//! 8. Otherwise hold ([`HoldReason::WithinTarget`]).
//!
//! A cooldown has passed once that long has elapsed (`≥`; the reference uses `>`). Only
//! rules 6 and 7 record their time in the state: wake, pre-warm and cap do not start a
//! cooldown, so that an app woken under heavy load can scale up at once.
//!
//! # Defaults (see [`AutoscalingConfig::defaults_for`])
//!
//! | field | `"load"` | `"concurrency"` |
//! |---|---|---|
//! | `min_instances` / `max_instances` | 1 / 10 | 1 / 10 |
//! | target | 100 requests/min | 10 calls in flight |
//! | `scale_up_threshold` / `scale_down_threshold` | 0.9 / 0.3 | unused |
//! | `scale_up_cooldown` | 300 s | 5 s |
//! | `scale_down_cooldown` (also idle time before zero) | 600 s | 30 s |
//! | `stable_window` (averaging; panic duration) | 60 s | 30 s |
//! | `panic_threshold` | 2 | 2 |
//!
//! For `"concurrency"` to react within seconds the caller should decide every 2–5 s; the
//! reference's monitor ticks every 10 s.
//!
//! # Differences from the reference (§5.3)
//!
//! Scoped by workspace *and* app; `min_instances` enforced upward; scale to zero and wake
//! on a waiting call; the `"concurrency"` metric; the panic window; the cap when above
//! `max`; cooldowns compared with `≥`; configs with `scale_down_threshold ≥
//! scale_up_threshold` or the other refusals of [`AutoscalingConfig::validate`] are errors.

use crate::error::AppsError;
pub use crate::manifest::{AutoscalingConfig, MetricType};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// The most samples a [`ScalerState`] keeps, whatever the stable window and the decision
/// rate: memory stays bounded if the caller decides very often.
pub const MAX_HISTORY: usize = 512;

/// The autoscaling config is unusable ([`AutoscalingConfig::validate`] refused it, or a
/// cooldown or window is too large for a [`Duration`]). The text names the field, e.g.
/// `invalid autoscaling config: autoscaling.min_instances (4) must not exceed
/// autoscaling.max_instances (3)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid autoscaling config: {0}")]
pub struct ConfigError(pub String);

impl From<ConfigError> for AppsError {
    fn from(e: ConfigError) -> Self {
        AppsError::Invalid(e.to_string())
    }
}

/// One instance's load in one sample (§5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceLoad {
    /// The session id (`ws/_rapp_…__rlb`); what [`Decision::ScaleDown`] lists.
    pub session_id: String,
    /// Calls received per minute (the `"load"` metric).
    pub requests_per_minute: f64,
    /// Calls in flight, averaged over the sample (the `"concurrency"` metric).
    pub in_flight: f64,
    /// When the instance started, on the decision's clock; breaks ties when choosing
    /// whom to stop (the newest goes first).
    pub started_at: Duration,
}

/// What one decision sees: the app's instances in one workspace and the calls waiting
/// for one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every instance that is running or starting, of one app in one workspace.
    pub instances: Vec<InstanceLoad>,
    /// Calls waiting for an instance to start (lazy start, §1.7); with none running, one
    /// waiting call wakes the app. For `"concurrency"` they count as calls in flight.
    pub waiting_calls: u32,
}

/// An instance's load with the workspace and app it belongs to, as the sampler gathers
/// them across the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopedLoad {
    /// The workspace the instance runs in.
    pub workspace: String,
    /// The app id (alias) it is an instance of.
    pub app_id: String,
    /// Its load.
    pub load: InstanceLoad,
}

/// The loads of the instances of app `app_id` in workspace `workspace`, out of `all` —
/// the scoping the reference lacks (§5.3: it counts every workspace's instances of an app
/// id). Order is kept.
pub fn instances_of<'a>(
    all: impl IntoIterator<Item = &'a ScopedLoad>,
    workspace: &str,
    app_id: &str,
) -> Vec<InstanceLoad> {
    all.into_iter()
        .filter(|s| s.workspace == workspace && s.app_id == app_id)
        .map(|s| s.load.clone())
        .collect()
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Start `by` (≥ 1) new instances.
    ScaleUp {
        /// How many instances to start.
        by: u32,
        /// Which rule asked for them.
        reason: UpReason,
    },
    /// Stop these sessions (least loaded first; never empty).
    ScaleDown {
        /// Session ids to stop, in the order to stop them.
        stop: Vec<String>,
        /// Which rule asked for it.
        reason: DownReason,
    },
    /// Change nothing.
    Hold {
        /// Why not.
        reason: HoldReason,
    },
}

/// Why a [`Decision::ScaleUp`] (the rule numbers of the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpReason {
    /// Rule 1: no instance and a call waiting.
    Wake,
    /// Rule 2: fewer instances than `min_instances`.
    PreWarm,
    /// Rule 6: the load is above the threshold (`"load"`) or needs more instances
    /// (`"concurrency"`), and the up-cooldown has passed.
    Load,
    /// Rule 6 in panic mode: the cooldown was not waited for.
    Panic,
}

/// Why a [`Decision::ScaleDown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownReason {
    /// Rule 3: more instances than `max_instances`.
    AboveMax,
    /// Rule 7: the load is below the threshold (`"load"`) or needs fewer instances
    /// (`"concurrency"`), and the down-cooldown has passed.
    Load,
    /// Rule 7: idle for the whole down-cooldown with `min_instances` 0 — every instance.
    ToZero,
}

/// Why a [`Decision::Hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldReason {
    /// Rule 4: no instance, no call waiting, `min_instances` 0.
    Idle,
    /// Rule 8: the load is within the thresholds.
    WithinTarget,
    /// More are wanted but `max_instances` run.
    AtMax,
    /// Fewer are wanted but the floor (`max(min_instances, 1)`) runs.
    AtMin,
    /// More are wanted but the last scale-up was too recent.
    UpCooldown {
        /// Until the cooldown has passed.
        remaining: Duration,
    },
    /// Fewer are wanted but the last scale-down was too recent.
    DownCooldown {
        /// Until the cooldown has passed.
        remaining: Duration,
    },
    /// Idle with `min_instances` 0, down to one instance, not yet idle for the whole
    /// down-cooldown.
    ZeroAfter {
        /// Until it scales to zero if it stays idle.
        remaining: Duration,
    },
    /// Fewer are wanted but panic mode forbids scaling down.
    Panicking,
}

/// What a decision measured, for logs and `/metrics` (totals over the snapshot's
/// instances).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Instances in the snapshot.
    pub instances: u32,
    /// Total requests per minute.
    pub requests_per_minute: f64,
    /// Total calls in flight (waiting calls not included).
    pub in_flight: f64,
    /// The metric's stable value `Ŝ` (module doc), in its unit.
    pub stable: f64,
    /// `⌈Ŝ / T⌉` clamped to `[min_instances, max_instances]`: the instances the metric
    /// asks for. The `"load"` rules move towards it one step at a time.
    pub desired: u32,
    /// Whether panic mode is on after this decision.
    pub panicking: bool,
}

/// A decision, the state to keep for the next one, and the figures it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What to do.
    pub decision: Decision,
    /// The state for the next call, which assumes the decision is applied. If applying it
    /// failed, keep the previous state instead so the cooldown does not start.
    pub state: ScalerState,
    /// What was measured.
    pub observed: Observed,
}

/// What one app's autoscaler carries from one decision to the next: the times of the last
/// scale-up and scale-down (`None`: never, so the first is immediate), panic mode, since
/// when the app has been idle, and the signals sampled within the stable window. A new
/// leader starts from [`ScalerState::default`] unless the state is handed over
/// (it is `serde`); the clock must then be shared too (e.g. wall clock since the UNIX
/// epoch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    last_scale_up: Option<Duration>,
    last_scale_down: Option<Duration>,
    panic_since: Option<Duration>,
    last_panic_trigger: Option<Duration>,
    idle_since: Option<Duration>,
    /// `(time, signal)`, oldest first, within the stable window.
    history: VecDeque<(Duration, f64)>,
}

// === impl ScalerState ===

impl ScalerState {
    /// When the autoscaler last scaled up (rule 6), if ever.
    pub fn last_scale_up(&self) -> Option<Duration> {
        self.last_scale_up
    }

    /// When the autoscaler last scaled down (rule 7), if ever.
    pub fn last_scale_down(&self) -> Option<Duration> {
        self.last_scale_down
    }

    /// Since when panic mode is on, if it is.
    pub fn panicking_since(&self) -> Option<Duration> {
        self.panic_since
    }

    /// Since when the app has been idle (no requests, nothing in flight, no waiting
    /// call), if it is.
    pub fn idle_since(&self) -> Option<Duration> {
        self.idle_since
    }
}

/// A validated [`AutoscalingConfig`] with its times as [`Duration`]s: the decision
/// function of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    config: AutoscalingConfig,
    up_cooldown: Duration,
    down_cooldown: Duration,
    stable_window: Duration,
}

// === impl Policy ===

impl Policy {
    /// Checks `config` ([`AutoscalingConfig::validate`]: min ≤ max, max ≥ 1, targets > 0,
    /// `scale_down_threshold` < `scale_up_threshold`, `panic_threshold` > 1, …) and
    /// converts its seconds. `enabled` is not looked at: whether to run the autoscaler is
    /// the caller's choice.
    ///
    /// Errors: [`ConfigError`] naming the field.
    pub fn new(config: AutoscalingConfig) -> Result<Self, ConfigError> {
        config.validate().map_err(ConfigError)?;
        let secs = |key: &str, s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| ConfigError(format!("autoscaling.{key} is too large, got {s:e} s")))
        };
        Ok(Policy {
            up_cooldown: secs("scale_up_cooldown", config.scale_up_cooldown)?,
            down_cooldown: secs("scale_down_cooldown", config.scale_down_cooldown)?,
            stable_window: secs("stable_window", config.stable_window)?,
            config,
        })
    }

    /// The config this policy was built from.
    pub fn config(&self) -> &AutoscalingConfig {
        &self.config
    }

    /// Decides what to do at `now` given `snapshot` and the `state` returned by the
    /// previous call ([`ScalerState::default`] for the first), by the rules of the module
    /// doc. Pure: the same arguments give the same [`Outcome`]; nothing panics on any
    /// figures.
    pub fn decide(&self, state: &ScalerState, snapshot: &Snapshot, now: Duration) -> Outcome {
        let c = &self.config;
        let mut st = state.clone();
        let n = u32::try_from(snapshot.instances.len()).unwrap_or(u32::MAX);
        let rpm: f64 = snapshot
            .instances
            .iter()
            .map(|i| clean(i.requests_per_minute))
            .sum();
        let in_flight: f64 = snapshot.instances.iter().map(|i| clean(i.in_flight)).sum();
        let (signal, target) = match c.metric_type {
            MetricType::Load => (rpm, c.target_requests_per_instance),
            MetricType::Concurrency => (
                in_flight + f64::from(snapshot.waiting_calls),
                c.target_concurrency_per_instance,
            ),
        };

        // The window of samples: drop what is older than `W` (or from a clock that has
        // since stepped back), remember the previous signal, add this one.
        let window = self.stable_window;
        st.history
            .retain(|&(t, _)| t <= now && now.saturating_sub(t) < window);
        let previous = st.history.back().map(|&(_, s)| s);
        st.history.push_back((now, signal));
        while st.history.len() > MAX_HISTORY {
            st.history.pop_front();
        }
        let stable = match c.metric_type {
            MetricType::Load => signal,
            MetricType::Concurrency => {
                st.history.iter().map(|&(_, s)| s).sum::<f64>() / st.history.len() as f64
            }
        };
        let desired_now = ceil_count(signal / target);
        let desired = ceil_count(stable / target);

        let idle = rpm == 0.0 && in_flight == 0.0 && snapshot.waiting_calls == 0;
        st.idle_since = if idle {
            st.idle_since.or(Some(now))
        } else {
            None
        };

        // Panic mode ends a stable window after its last trigger.
        if st
            .last_panic_trigger
            .is_some_and(|t| now.saturating_sub(t) >= self.stable_window)
        {
            st.panic_since = None;
            st.last_panic_trigger = None;
        }

        // Rules 1–4: floors and caps, before the metric.
        let floor_decision = if n == 0 && snapshot.waiting_calls > 0 {
            Some(Decision::ScaleUp {
                by: c.min_instances.max(1),
                reason: UpReason::Wake,
            })
        } else if n < c.min_instances {
            Some(Decision::ScaleUp {
                by: c.min_instances - n,
                reason: UpReason::PreWarm,
            })
        } else if n > c.max_instances {
            Some(Decision::ScaleDown {
                stop: self.least_loaded(&snapshot.instances, (n - c.max_instances) as usize),
                reason: DownReason::AboveMax,
            })
        } else if n == 0 {
            Some(Decision::Hold {
                reason: HoldReason::Idle,
            })
        } else {
            None
        };

        // Rule 5: does this sample trigger panic?
        let average = if n == 0 { 0.0 } else { signal / f64::from(n) };
        let wants_more_now = n > 0
            && match c.metric_type {
                MetricType::Load => average > c.scale_up_threshold * target,
                MetricType::Concurrency => desired_now > n,
            };
        let grew = previous.is_some_and(|p| p > 0.0 && signal >= c.panic_threshold * p);
        let hot = signal / target >= c.panic_threshold * f64::from(n);
        if floor_decision.is_none() && wants_more_now && (grew || hot) {
            st.panic_since = st.panic_since.or(Some(now));
            st.last_panic_trigger = Some(now);
        }
        let panicking = st.last_panic_trigger.is_some();

        let decision = match floor_decision {
            Some(d) => d,
            None => self.scale(
                &mut st,
                snapshot,
                now,
                n,
                average,
                desired,
                desired_now,
                panicking,
            ),
        };
        let observed = Observed {
            instances: n,
            requests_per_minute: rpm,
            in_flight,
            stable,
            desired: desired.clamp(c.min_instances, c.max_instances),
            panicking,
        };
        Outcome {
            decision,
            state: st,
            observed,
        }
    }

    /// Rules 6–8, for `1 ≤ n ≤ max`.
    #[allow(clippy::too_many_arguments)]
    fn scale(
        &self,
        st: &mut ScalerState,
        snapshot: &Snapshot,
        now: Duration,
        n: u32,
        average: f64,
        desired: u32,
        desired_now: u32,
        panicking: bool,
    ) -> Decision {
        let c = &self.config;
        let target = match c.metric_type {
            MetricType::Load => c.target_requests_per_instance,
            MetricType::Concurrency => c.target_concurrency_per_instance,
        };
        let hold = |reason| Decision::Hold { reason };

        // Rule 6: scale up.
        let wanted = match c.metric_type {
            MetricType::Load => {
                (average > c.scale_up_threshold * target).then(|| desired_now.max(n + 1))
            }
            MetricType::Concurrency => {
                let d = if panicking {
                    desired.max(desired_now)
                } else {
                    desired
                };
                (d > n).then_some(d)
            }
        };
        if let Some(wanted) = wanted {
            if n >= c.max_instances {
                return hold(HoldReason::AtMax);
            }
            let to = wanted.min(c.max_instances);
            if panicking {
                st.last_scale_up = Some(now);
                return Decision::ScaleUp {
                    by: to - n,
                    reason: UpReason::Panic,
                };
            }
            if let Err(remaining) = passed(st.last_scale_up, self.up_cooldown, now) {
                return hold(HoldReason::UpCooldown { remaining });
            }
            st.last_scale_up = Some(now);
            let by = match c.metric_type {
                MetricType::Load => 1,
                MetricType::Concurrency => to - n,
            };
            return Decision::ScaleUp {
                by,
                reason: UpReason::Load,
            };
        }

        // Rule 7: scale down.
        let wants_fewer = match c.metric_type {
            MetricType::Load => average < c.scale_down_threshold * target,
            MetricType::Concurrency => desired < n,
        };
        let idle_for = st.idle_since.map(|t| now.saturating_sub(t));
        let to_zero = c.min_instances == 0 && idle_for.is_some();
        if !wants_fewer && !to_zero {
            return hold(HoldReason::WithinTarget);
        }
        if panicking {
            return hold(HoldReason::Panicking);
        }
        if let Some(idle_for) = idle_for.filter(|_| to_zero) {
            if idle_for >= self.down_cooldown {
                st.last_scale_down = Some(now);
                return Decision::ScaleDown {
                    stop: self.least_loaded(&snapshot.instances, n as usize),
                    reason: DownReason::ToZero,
                };
            }
        }
        let floor = c.min_instances.max(1);
        let to = if !wants_fewer {
            n
        } else {
            match c.metric_type {
                MetricType::Load => n - 1,
                MetricType::Concurrency => desired,
            }
        }
        .max(floor);
        if to >= n {
            return match idle_for.filter(|_| to_zero) {
                Some(idle_for) => hold(HoldReason::ZeroAfter {
                    remaining: self.down_cooldown.saturating_sub(idle_for),
                }),
                None => hold(HoldReason::AtMin),
            };
        }
        if let Err(remaining) = passed(st.last_scale_down, self.down_cooldown, now) {
            return hold(HoldReason::DownCooldown { remaining });
        }
        st.last_scale_down = Some(now);
        Decision::ScaleDown {
            stop: self.least_loaded(&snapshot.instances, (n - to) as usize),
            reason: DownReason::Load,
        }
    }

    /// The session ids of the `count` least-loaded instances, least loaded first: by the
    /// metric's figure, then the other metric's, then the newest first, then session id.
    fn least_loaded(&self, instances: &[InstanceLoad], count: usize) -> Vec<String> {
        let key = |i: &InstanceLoad| match self.config.metric_type {
            MetricType::Load => (clean(i.requests_per_minute), clean(i.in_flight)),
            MetricType::Concurrency => (clean(i.in_flight), clean(i.requests_per_minute)),
        };
        let mut sorted: Vec<&InstanceLoad> = instances.iter().collect();
        sorted.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(b.started_at.cmp(&a.started_at))
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        sorted
            .into_iter()
            .take(count)
            .map(|i| i.session_id.clone())
            .collect()
    }
}

/// Whether `cooldown` has passed since `last` (never → yes); otherwise how long remains.
fn passed(last: Option<Duration>, cooldown: Duration, now: Duration) -> Result<(), Duration> {
    match last {
        None => Ok(()),
        Some(t) => {
            let elapsed = now.saturating_sub(t);
            match elapsed.cmp(&cooldown) {
                Ordering::Less => Err(cooldown - elapsed),
                _ => Ok(()),
            }
        }
    }
}

/// A load figure as counted: non-finite or negative → 0.
fn clean(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// `⌈x⌉` as an instance count (saturating; NaN → 0).
fn ceil_count(x: f64) -> u32 {
    // `as` saturates at the bounds and maps NaN to 0.
    x.ceil() as u32
}
