//! The decision function driven with a fake clock (seconds as plain numbers) and fake
//! samples: every rule of the module doc, for both metrics.

use super::*;

/// `secs` on the fake clock.
fn t(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// An instance started at time 0 with `rpm` requests per minute and `in_flight` calls.
fn inst(id: &str, rpm: f64, in_flight: f64) -> InstanceLoad {
    InstanceLoad {
        session_id: id.to_owned(),
        requests_per_minute: rpm,
        in_flight,
        started_at: t(0),
    }
}

/// Instances `i0, i1, …` with these requests per minute.
fn rpm(loads: &[f64]) -> Snapshot {
    Snapshot {
        instances: loads
            .iter()
            .enumerate()
            .map(|(k, &r)| inst(&format!("i{k}"), r, 0.0))
            .collect(),
        waiting_calls: 0,
    }
}

/// Instances `i0, i1, …` with these calls in flight (and some requests, so not idle).
fn conc(in_flight: &[f64]) -> Snapshot {
    Snapshot {
        instances: in_flight
            .iter()
            .enumerate()
            .map(|(k, &c)| inst(&format!("i{k}"), c * 6.0, c))
            .collect(),
        waiting_calls: 0,
    }
}

/// `n` idle instances.
fn idle(n: usize) -> Snapshot {
    rpm(&vec![0.0; n])
}

fn load_config(edit: impl FnOnce(&mut AutoscalingConfig)) -> AutoscalingConfig {
    let mut c = AutoscalingConfig {
        enabled: true,
        ..AutoscalingConfig::default()
    };
    edit(&mut c);
    c
}

fn conc_config(edit: impl FnOnce(&mut AutoscalingConfig)) -> AutoscalingConfig {
    let mut c = AutoscalingConfig {
        enabled: true,
        ..AutoscalingConfig::defaults_for(MetricType::Concurrency)
    };
    edit(&mut c);
    c
}

/// A policy and the state it carries, as the monitor keeps them.
struct Scaler {
    policy: Policy,
    state: ScalerState,
    last: Option<Observed>,
}

impl Scaler {
    fn new(config: AutoscalingConfig) -> Self {
        Scaler {
            policy: Policy::new(config).unwrap(),
            state: ScalerState::default(),
            last: None,
        }
    }

    /// Decides at `now` (seconds) and keeps the state.
    fn at(&mut self, now: u64, snapshot: &Snapshot) -> Decision {
        let out = self.policy.decide(&self.state, snapshot, t(now));
        self.state = out.state;
        self.last = Some(out.observed);
        out.decision
    }

    fn panicking(&self) -> bool {
        self.last.as_ref().unwrap().panicking
    }
}

fn up(by: u32, reason: UpReason) -> Decision {
    Decision::ScaleUp { by, reason }
}

fn down(stop: &[&str], reason: DownReason) -> Decision {
    Decision::ScaleDown {
        stop: stop.iter().map(|s| s.to_string()).collect(),
        reason,
    }
}

fn hold(reason: HoldReason) -> Decision {
    Decision::Hold { reason }
}

// --- "load": the reference's rules (§5.3) ---

#[test]
fn load_scales_up_at_once_the_first_time() {
    let mut s = Scaler::new(load_config(|_| {}));
    // 95 requests/min > 0.9 × 100: one more instance, with no cooldown to wait for.
    assert_eq!(s.at(0, &rpm(&[95.0])), up(1, UpReason::Load));
    assert_eq!(s.state.last_scale_up(), Some(t(0)));
    assert!(!s.panicking());
}

#[test]
fn load_within_target_holds() {
    let mut s = Scaler::new(load_config(|_| {}));
    for (now, load) in [(0, [50.0, 40.0]), (10, [90.0, 90.0]), (20, [30.0, 30.0])] {
        assert_eq!(s.at(now, &rpm(&load)), hold(HoldReason::WithinTarget));
    }
}

#[test]
fn load_scale_up_waits_for_the_cooldown() {
    let mut s = Scaler::new(load_config(|_| {}));
    assert_eq!(s.at(0, &rpm(&[95.0, 95.0])), up(1, UpReason::Load));
    assert_eq!(
        s.at(10, &rpm(&[95.0, 95.0, 95.0])),
        hold(HoldReason::UpCooldown { remaining: t(290) })
    );
    assert_eq!(
        s.at(299, &rpm(&[95.0, 95.0, 95.0])),
        hold(HoldReason::UpCooldown { remaining: t(1) })
    );
    // Once 300 s have elapsed: one more, one at a time.
    assert_eq!(s.at(300, &rpm(&[95.0, 95.0, 95.0])), up(1, UpReason::Load));
    assert_eq!(s.state.last_scale_up(), Some(t(300)));
}

#[test]
fn load_scale_up_stops_at_max() {
    let mut s = Scaler::new(load_config(|c| c.max_instances = 2));
    assert_eq!(s.at(0, &rpm(&[95.0, 95.0])), hold(HoldReason::AtMax));
    assert_eq!(s.state.last_scale_up(), None);
}

#[test]
fn load_scale_down_stops_the_least_loaded_one() {
    let mut s = Scaler::new(load_config(|_| {}));
    // Average 11.7 < 0.3 × 100: the instance with the fewest requests goes, first time at once.
    assert_eq!(
        s.at(0, &rpm(&[20.0, 5.0, 10.0])),
        down(&["i1"], DownReason::Load)
    );
    assert_eq!(s.state.last_scale_down(), Some(t(0)));
    // Then one per down-cooldown (600 s).
    assert_eq!(
        s.at(10, &rpm(&[20.0, 10.0])),
        hold(HoldReason::DownCooldown { remaining: t(590) })
    );
    assert_eq!(
        s.at(600, &rpm(&[20.0, 10.0])),
        down(&["i1"], DownReason::Load)
    );
}

#[test]
fn least_loaded_ties_go_newest_first_then_by_session_id() {
    let policy = Policy::new(load_config(|c| c.min_instances = 0)).unwrap();
    let mut old = inst("a-old", 5.0, 0.0);
    old.started_at = t(1);
    let mut new = inst("z-new", 5.0, 0.0);
    new.started_at = t(50);
    let (b, c) = (inst("b", 5.0, 0.0), inst("c", 5.0, 0.0));
    let busy = inst("busy", 25.0, 0.0);
    let order = policy.least_loaded(&[busy, c, old, new, b], 5);
    assert_eq!(order, ["z-new", "a-old", "b", "c", "busy"]);
}

#[test]
fn load_scale_down_is_blocked_by_min() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 2));
    assert_eq!(s.at(0, &rpm(&[1.0, 0.0])), hold(HoldReason::AtMin));
    assert_eq!(s.at(10_000, &idle(2)), hold(HoldReason::AtMin));
    assert_eq!(s.state.last_scale_down(), None);
}

#[test]
fn load_never_stops_the_last_instance_when_min_is_at_least_one() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 1));
    assert_eq!(s.at(0, &rpm(&[5.0])), hold(HoldReason::AtMin));
    // Idle for far longer than the down-cooldown: still one (only min 0 scales to zero).
    assert_eq!(s.at(100, &idle(1)), hold(HoldReason::AtMin));
    assert_eq!(s.at(100_000, &idle(1)), hold(HoldReason::AtMin));
}

#[test]
fn load_min_zero_still_keeps_one_while_there_is_traffic() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    assert_eq!(s.at(0, &rpm(&[2.0, 1.0])), down(&["i1"], DownReason::Load));
    // Low but not idle: the last instance stays.
    assert_eq!(s.at(10_000, &rpm(&[1.0])), hold(HoldReason::AtMin));
}

// --- scale to zero, wake, pre-warm, cap ---

#[test]
fn min_zero_scales_to_zero_after_the_down_cooldown_of_idleness() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    assert_eq!(
        s.at(0, &idle(1)),
        hold(HoldReason::ZeroAfter { remaining: t(600) })
    );
    assert_eq!(s.state.idle_since(), Some(t(0)));
    assert_eq!(
        s.at(300, &idle(1)),
        hold(HoldReason::ZeroAfter { remaining: t(300) })
    );
    assert_eq!(s.at(600, &idle(1)), down(&["i0"], DownReason::ToZero));
    // Nothing runs, nothing waits: idle at zero.
    assert_eq!(s.at(610, &idle(0)), hold(HoldReason::Idle));
}

#[test]
fn a_request_restarts_the_idle_clock() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    s.at(0, &idle(1));
    assert_eq!(s.at(100, &rpm(&[1.0])), hold(HoldReason::AtMin));
    assert_eq!(s.state.idle_since(), None);
    s.at(200, &idle(1));
    assert_eq!(
        s.at(700, &idle(1)),
        hold(HoldReason::ZeroAfter { remaining: t(100) })
    );
    assert_eq!(s.at(800, &idle(1)), down(&["i0"], DownReason::ToZero));
}

#[test]
fn idle_instances_go_one_by_one_then_all_at_once_to_zero() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    assert_eq!(s.at(0, &idle(3)), down(&["i0"], DownReason::Load));
    assert_eq!(
        s.at(10, &idle(2)),
        hold(HoldReason::DownCooldown { remaining: t(590) })
    );
    // Idle for the whole down-cooldown: every instance left, at once.
    assert_eq!(s.at(600, &idle(2)), down(&["i0", "i1"], DownReason::ToZero));
}

#[test]
fn a_waiting_call_wakes_an_app_at_zero_whatever_the_cooldown() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    assert_eq!(s.at(0, &rpm(&[95.0])), up(1, UpReason::Load));
    let waiting = Snapshot {
        instances: vec![],
        waiting_calls: 1,
    };
    // The up-cooldown (300 s) does not apply, and waking does not start one.
    assert_eq!(s.at(5, &waiting), up(1, UpReason::Wake));
    assert_eq!(s.state.last_scale_up(), Some(t(0)));
    assert_eq!(s.state.idle_since(), None);
}

#[test]
fn pre_warming_starts_up_to_min_at_once() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 3));
    assert_eq!(s.at(0, &idle(0)), up(3, UpReason::PreWarm));
    assert_eq!(s.at(1, &idle(1)), up(2, UpReason::PreWarm));
    // A call waiting at zero wakes the whole minimum.
    let waiting = Snapshot {
        instances: vec![],
        waiting_calls: 4,
    };
    assert_eq!(s.at(2, &waiting), up(3, UpReason::Wake));
    // No cooldown is started by either.
    assert_eq!(s.state.last_scale_up(), None);
    assert_eq!(s.at(3, &rpm(&[95.0, 95.0, 95.0])), up(1, UpReason::Load));
}

#[test]
fn above_max_the_excess_goes_at_once() {
    let mut s = Scaler::new(load_config(|c| c.max_instances = 2));
    assert_eq!(
        s.at(0, &rpm(&[300.0, 100.0, 200.0, 400.0])),
        down(&["i1", "i2"], DownReason::AboveMax)
    );
    assert_eq!(s.state.last_scale_down(), None);
}

// --- "concurrency" ---

#[test]
fn concurrency_wants_total_in_flight_over_the_target() {
    let mut s = Scaler::new(conc_config(|_| {}));
    // 35 calls in flight, 10 per instance: ⌈3.5⌉ = 4 instances, from 2 (not a panic).
    assert_eq!(s.at(0, &conc(&[20.0, 15.0])), up(2, UpReason::Load));
    assert_eq!(s.last.as_ref().unwrap().desired, 4);
    assert_eq!(
        s.at(1, &conc(&[9.0, 9.0, 9.0, 8.0])),
        hold(HoldReason::WithinTarget)
    );
    // Stable mean over 30 s: (35 + 35 + 49) / 3 = 39.7 → still 4.
    assert_eq!(
        s.at(2, &conc(&[13.0, 12.0, 12.0, 12.0])),
        hold(HoldReason::WithinTarget)
    );
}

#[test]
fn concurrency_is_clamped_to_max_and_waits_its_short_cooldown() {
    let mut s = Scaler::new(conc_config(|c| c.max_instances = 5));
    assert_eq!(s.at(0, &conc(&[19.0, 19.0, 19.0])), up(2, UpReason::Load));
    assert_eq!(s.at(1, &conc(&[12.0; 5])), hold(HoldReason::AtMax));
    let mut s = Scaler::new(conc_config(|_| {}));
    assert_eq!(s.at(0, &conc(&[15.0])), up(1, UpReason::Load));
    // Mean (15 + 28) / 2 = 21.5 → 3 > 2 (no panic: 28 < 2 × 15, 2.8 < 2 × 2), within the
    // 5 s up-cooldown.
    assert_eq!(
        s.at(2, &conc(&[14.0, 14.0])),
        hold(HoldReason::UpCooldown { remaining: t(3) })
    );
    assert_eq!(s.at(5, &conc(&[14.0, 14.0])), up(1, UpReason::Load));
}

#[test]
fn concurrency_scales_down_on_the_stable_mean() {
    let mut s = Scaler::new(conc_config(|_| {}));
    assert_eq!(s.at(0, &conc(&[9.0; 4])), hold(HoldReason::WithinTarget));
    // Almost nothing in flight now, but the 30 s mean is (36 + 3.7) / 2 = 19.85 → 2: the
    // two with the fewest calls in flight go at once.
    let quiet = Snapshot {
        instances: vec![
            inst("a", 1.0, 0.0),
            inst("b", 1.0, 0.5),
            inst("c", 1.0, 3.0),
            inst("d", 1.0, 0.2),
        ],
        waiting_calls: 0,
    };
    assert_eq!(s.at(5, &quiet), down(&["a", "d"], DownReason::Load));
    // (36 + 3.7 + 0.2) / 3 = 13.3 → 2: as many as run.
    assert_eq!(s.at(10, &conc(&[0.1, 0.1])), hold(HoldReason::WithinTarget));
    // The window (1 s, 31 s] says 1, but the 30 s down-cooldown from 5 s has not passed.
    assert_eq!(
        s.at(31, &conc(&[0.1, 0.1])),
        hold(HoldReason::DownCooldown { remaining: t(4) })
    );
    assert_eq!(
        s.at(35, &conc(&[0.1, 0.1])),
        down(&["i0"], DownReason::Load)
    );
    // Never below one with min 1, even idle.
    assert_eq!(s.at(70, &idle(1)), hold(HoldReason::AtMin));
}

#[test]
fn concurrency_counts_waiting_calls_as_in_flight() {
    let mut s = Scaler::new(conc_config(|_| {}));
    let snapshot = Snapshot {
        instances: vec![inst("a", 60.0, 8.0)],
        waiting_calls: 7,
    };
    // 8 + 7 = 15 → 2 instances.
    assert_eq!(s.at(0, &snapshot), up(1, UpReason::Load));
    assert_eq!(s.last.as_ref().unwrap().in_flight, 8.0);
}

#[test]
fn concurrency_scales_to_zero_after_its_short_cooldown() {
    let mut s = Scaler::new(conc_config(|c| c.min_instances = 0));
    assert_eq!(
        s.at(0, &idle(1)),
        hold(HoldReason::ZeroAfter { remaining: t(30) })
    );
    assert_eq!(s.at(30, &idle(1)), down(&["i0"], DownReason::ToZero));
}

// --- panic ---

#[test]
fn panic_when_load_doubles_scales_up_several_at_once_ignoring_the_cooldown() {
    let mut s = Scaler::new(load_config(|_| {}));
    // A scale-up at 0 starts the 300 s cooldown.
    assert_eq!(s.at(0, &rpm(&[95.0])), up(1, UpReason::Load));
    assert_eq!(
        s.at(10, &rpm(&[45.0, 45.0])),
        hold(HoldReason::WithinTarget)
    );
    // 90 → 600 requests/min in one sample: ⌈600 / 100⌉ = 6 at once, from 2.
    assert_eq!(s.at(20, &rpm(&[300.0, 300.0])), up(4, UpReason::Panic));
    assert!(s.panicking());
    assert_eq!(s.state.panicking_since(), Some(t(20)));
    assert_eq!(s.state.last_scale_up(), Some(t(20)));
    // Still above the threshold while panicking: more, still without waiting.
    assert_eq!(s.at(25, &rpm(&[110.0; 6])), up(1, UpReason::Panic));
}

#[test]
fn panic_when_the_load_needs_twice_the_instances() {
    // No growth between samples, but 250 requests/min need ⌈2.5⌉ = 3 ≥ 2 × 1.
    let mut s = Scaler::new(load_config(|_| {}));
    assert_eq!(s.at(0, &rpm(&[250.0])), up(2, UpReason::Panic));
    // Capped at max, still more than one step.
    let mut s = Scaler::new(load_config(|c| c.max_instances = 4));
    assert_eq!(s.at(0, &rpm(&[2_000.0])), up(3, UpReason::Panic));
    assert_eq!(s.at(1, &rpm(&[500.0; 4])), hold(HoldReason::AtMax));
}

#[test]
fn doubling_below_the_threshold_is_no_panic() {
    let mut s = Scaler::new(load_config(|_| {}));
    assert_eq!(
        s.at(0, &rpm(&[10.0, 10.0])),
        down(&["i0"], DownReason::Load)
    );
    assert_eq!(s.at(10, &rpm(&[60.0])), hold(HoldReason::WithinTarget));
    assert!(!s.panicking());
}

#[test]
fn no_scale_down_while_panicking_and_panic_ends_after_the_stable_window() {
    let mut s = Scaler::new(load_config(|_| {}));
    assert_eq!(s.at(0, &rpm(&[50.0, 50.0])), hold(HoldReason::WithinTarget));
    assert_eq!(s.at(10, &rpm(&[200.0, 200.0])), up(2, UpReason::Panic));
    // The burst is gone, but panic mode (60 s after its last trigger) holds the instances.
    assert_eq!(s.at(20, &rpm(&[5.0; 4])), hold(HoldReason::Panicking));
    assert_eq!(s.at(69, &rpm(&[5.0; 4])), hold(HoldReason::Panicking));
    assert!(s.panicking());
    // 60 s after the trigger: stable mode again; the first scale-down is immediate.
    assert_eq!(s.at(70, &rpm(&[5.0; 4])), down(&["i0"], DownReason::Load));
    assert!(!s.panicking());
    assert_eq!(s.state.panicking_since(), None);
    // And the up-cooldown from the panic scale-up (at 10 s) applies again (growing by
    // less than 2× a sample, so no new panic).
    assert_eq!(s.at(75, &rpm(&[50.0; 3])), hold(HoldReason::WithinTarget));
    assert_eq!(
        s.at(80, &rpm(&[95.0; 3])),
        hold(HoldReason::UpCooldown { remaining: t(230) })
    );
}

#[test]
fn a_new_trigger_extends_panic_mode() {
    let mut s = Scaler::new(load_config(|c| c.max_instances = 20));
    assert_eq!(s.at(0, &rpm(&[50.0])), hold(HoldReason::WithinTarget));
    assert_eq!(s.at(10, &rpm(&[150.0])), up(1, UpReason::Panic));
    assert_eq!(s.at(50, &rpm(&[150.0, 150.0])), up(1, UpReason::Panic));
    // Triggered again at 50 s (300 ≥ 2 × 150): still panicking at 100 s, over at 110 s.
    assert_eq!(s.at(100, &rpm(&[1.0; 3])), hold(HoldReason::Panicking));
    assert_eq!(s.state.panicking_since(), Some(t(10)));
    assert_eq!(s.at(110, &rpm(&[1.0; 3])), down(&["i0"], DownReason::Load));
}

#[test]
fn concurrency_panic_jumps_to_the_instantaneous_need() {
    let mut s = Scaler::new(conc_config(|_| {}));
    assert_eq!(s.at(0, &conc(&[5.0])), hold(HoldReason::WithinTarget));
    // 5 → 40 in flight: the mean (22.5 → 3) lags, the sample (4) does not.
    assert_eq!(s.at(2, &conc(&[40.0])), up(3, UpReason::Panic));
    assert!(s.panicking());
    assert_eq!(s.at(4, &conc(&[1.0; 4])), hold(HoldReason::Panicking));
}

// --- inputs, state, purity ---

#[test]
fn garbage_figures_count_as_zero() {
    let mut s = Scaler::new(load_config(|c| c.min_instances = 0));
    let snapshot = Snapshot {
        instances: vec![inst("a", f64::NAN, f64::INFINITY), inst("b", -50.0, -1.0)],
        waiting_calls: 0,
    };
    let d = s.at(0, &snapshot);
    assert_eq!(d, down(&["a"], DownReason::Load));
    let observed = s.last.unwrap();
    assert_eq!(
        (observed.requests_per_minute, observed.in_flight),
        (0.0, 0.0)
    );
    assert!(!observed.panicking);
}

#[test]
fn a_clock_stepping_back_counts_as_no_time_passed() {
    let mut s = Scaler::new(load_config(|_| {}));
    assert_eq!(s.at(1_000, &rpm(&[95.0])), up(1, UpReason::Load));
    assert_eq!(
        s.at(900, &rpm(&[95.0, 95.0])),
        hold(HoldReason::UpCooldown { remaining: t(300) })
    );
}

#[test]
fn decide_is_pure_and_its_history_bounded() {
    let policy = Policy::new(conc_config(|c| c.stable_window = 1e6)).unwrap();
    let state = ScalerState::default();
    let snapshot = conc(&[12.0, 3.0]);
    let a = policy.decide(&state, &snapshot, t(7));
    let b = policy.decide(&state, &snapshot, t(7));
    assert_eq!(a, b);
    assert_eq!(state, ScalerState::default());
    let mut state = a.state;
    for k in 0..(MAX_HISTORY as u64 + 100) {
        state = policy.decide(&state, &snapshot, t(8 + k)).state;
    }
    assert_eq!(state.history.len(), MAX_HISTORY);
    // The state round-trips through serde (to hand it to another leader).
    let back: ScalerState = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
    assert_eq!(back, state);
}

#[test]
fn observed_figures() {
    let policy = Policy::new(load_config(|c| c.max_instances = 3)).unwrap();
    let out = policy.decide(
        &ScalerState::default(),
        &Snapshot {
            instances: vec![inst("a", 130.0, 2.0), inst("b", 60.0, 1.5)],
            waiting_calls: 3,
        },
        t(0),
    );
    assert_eq!(
        out.observed,
        Observed {
            instances: 2,
            requests_per_minute: 190.0,
            in_flight: 3.5,
            stable: 190.0,
            desired: 2,
            panicking: false,
        }
    );
    assert_eq!(out.decision, up(1, UpReason::Load));
    assert_eq!(policy.config().max_instances, 3);
}

#[test]
fn instances_of_scopes_by_workspace_and_app() {
    let scoped = |ws: &str, app: &str, id: &str| ScopedLoad {
        workspace: ws.into(),
        app_id: app.into(),
        load: inst(id, 1.0, 0.0),
    };
    let all = vec![
        scoped("ws-a", "echo", "ws-a/1"),
        scoped("ws-b", "echo", "ws-b/2"),
        scoped("ws-a", "other", "ws-a/3"),
        scoped("ws-a", "echo", "ws-a/4"),
    ];
    let ids = |v: Vec<InstanceLoad>| v.into_iter().map(|i| i.session_id).collect::<Vec<_>>();
    assert_eq!(
        ids(instances_of(&all, "ws-a", "echo")),
        ["ws-a/1", "ws-a/4"]
    );
    assert_eq!(ids(instances_of(&all, "ws-b", "echo")), ["ws-b/2"]);
    assert!(instances_of(&all, "ws-b", "other").is_empty());
}

#[test]
fn bad_configs_are_clear_errors() {
    let err = |c: AutoscalingConfig| Policy::new(c).unwrap_err().to_string();
    assert_eq!(
        err(load_config(|c| {
            c.min_instances = 4;
            c.max_instances = 3;
        })),
        "invalid autoscaling config: autoscaling.min_instances (4) must not exceed \
         autoscaling.max_instances (3)"
    );
    assert_eq!(
        err(load_config(|c| c.target_requests_per_instance = 0.0)),
        "invalid autoscaling config: autoscaling.target_requests_per_instance must be \
         greater than 0"
    );
    assert!(
        err(conc_config(|c| c.target_concurrency_per_instance = 0.0))
            .contains("target_concurrency_per_instance must be greater than 0")
    );
    assert!(err(load_config(|c| c.max_instances = 0)).contains("at least 1"));
    assert!(err(load_config(|c| c.scale_down_threshold = 0.9))
        .contains("scale_down_threshold (0.9) must be below"));
    assert!(err(load_config(|c| c.panic_threshold = 1.0)).contains("panic_threshold"));
    assert!(err(load_config(|c| c.stable_window = 0.0)).contains("stable_window"));
    assert!(err(load_config(|c| c.scale_up_cooldown = f64::NAN)).contains("scale_up_cooldown"));
    assert!(err(load_config(|c| c.scale_down_cooldown = -1.0)).contains("scale_down_cooldown"));
    assert_eq!(
        err(load_config(|c| c.scale_up_cooldown = 1e300)),
        "invalid autoscaling config: autoscaling.scale_up_cooldown is too large, got 1e300 s"
    );
    // Into the controller's error: a bad argument.
    let e: AppsError = Policy::new(load_config(|c| c.min_instances = 11))
        .unwrap_err()
        .into();
    assert!(matches!(e, AppsError::Invalid(m) if m.contains("min_instances (11)")));
}
