//! Measurements: HDR latency histograms, live counters for the progress bar, the error
//! log, and the per-second timeline.
//!
//! Each worker task keeps its own [`Latency`] (no sharing on the hot path) and the run
//! merges them at the end; [`Live`] holds the few atomics the progress bar samples.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Highest latency a histogram records, ns (one hour); larger values are clamped.
const MAX_NS: u64 = 3_600_000_000_000;

/// Percentiles of the curve stored in reports and drawn in charts.
pub const CURVE_PERCENTILES: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    99.9999, 100.0,
];

/// A latency histogram with nanosecond resolution and three significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

/// The latency figures of a run, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of recorded samples.
    pub count: u64,
    /// Smallest sample, µs.
    pub min_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

/// One point of a latency-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0–100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub us: f64,
}

// === impl Latency ===

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram (1 ns to 1 h).
    pub fn new() -> Self {
        Latency(Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds"))
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        self.record_ns(d.as_nanos().min(MAX_NS as u128) as u64);
    }

    /// Records one sample given in nanoseconds (clamped to 1 ns – 1 h).
    pub fn record_ns(&mut self, ns: u64) {
        let _ = self.0.record(ns.clamp(1, MAX_NS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles and extremes in µs; all zero when empty.
    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        let q = |p: f64| self.0.value_at_quantile(p) as f64 / 1000.0;
        LatencySummary {
            count: self.0.len(),
            min_us: self.0.min() as f64 / 1000.0,
            mean_us: self.0.mean() / 1000.0,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.0.max() as f64 / 1000.0,
        }
    }

    /// The latency at each of [`CURVE_PERCENTILES`]; empty when there are no samples.
    pub fn curve(&self) -> Vec<CurvePoint> {
        if self.0.is_empty() {
            return Vec::new();
        }
        CURVE_PERCENTILES
            .iter()
            .map(|&p| CurvePoint {
                percentile: p,
                us: self.0.value_at_quantile(p / 100.0) as f64 / 1000.0,
            })
            .collect()
    }
}

/// Counters shared by a run's tasks and sampled by the progress bar, plus the error log.
///
/// Errors are rare, so the log is a mutex; the counters are relaxed atomics.
#[derive(Debug, Default)]
pub struct Live {
    /// Completed, verified operations (calls, connections, deliveries).
    pub ops: AtomicU64,
    /// Payload bytes moved by completed operations (one way).
    pub bytes: AtomicU64,
    /// Errors so far (the sum of [`Live::error_kinds`]).
    pub errors: AtomicU64,
    log: Mutex<ErrorLog>,
}

#[derive(Debug, Default)]
struct ErrorLog {
    kinds: BTreeMap<String, u64>,
    samples: Vec<String>,
}

/// How many error messages a run keeps verbatim.
pub const ERROR_SAMPLES: usize = 10;

// === impl Live ===

impl Live {
    /// Counts `n` completed operations that moved `bytes` bytes.
    pub fn done(&self, n: u64, bytes: u64) {
        self.ops.fetch_add(n, Relaxed);
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Relaxed);
        }
    }

    /// Counts `n` errors of `kind` (a short fixed label such as `"timeout"`), keeping
    /// `detail` as a sample if fewer than [`ERROR_SAMPLES`] are kept.
    pub fn error(&self, kind: &str, n: u64, detail: impl std::fmt::Display) {
        if n == 0 {
            return;
        }
        self.errors.fetch_add(n, Relaxed);
        let mut log = self.log.lock().expect("error log lock");
        *log.kinds.entry(kind.to_owned()).or_default() += n;
        if log.samples.len() < ERROR_SAMPLES {
            log.samples.push(format!("{kind}: {detail}"));
        }
    }

    /// Errors by kind.
    pub fn error_kinds(&self) -> BTreeMap<String, u64> {
        self.log.lock().expect("error log lock").kinds.clone()
    }

    /// The first few error messages.
    pub fn error_samples(&self) -> Vec<String> {
        self.log.lock().expect("error log lock").samples.clone()
    }
}

/// One interval of a run's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// End of the interval, seconds since the measurement started.
    pub t_s: f64,
    /// Operations completed in the interval.
    pub ops: u64,
    /// Operations per second over the interval.
    pub per_s: f64,
    /// Errors in the interval.
    pub errors: u64,
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
/// NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = Latency::new();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
        assert!(close(s.p50_us, 5_000.0), "{s:?}");
        assert!(close(s.p90_us, 9_000.0), "{s:?}");
        assert!(close(s.p99_us, 9_900.0), "{s:?}");
        assert!(close(s.p999_us, 9_990.0), "{s:?}");
        assert!(close(s.max_us, 10_000.0), "{s:?}");
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.mean_us, 5_000.5), "{s:?}");
    }

    #[test]
    fn merge_adds_samples_and_curve_is_monotonic() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 0..1000 {
            a.record_ns(1_000 + i);
            b.record_ns(1_000_000 + i * 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 2000);
        let curve = a.curve();
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(curve.windows(2).all(|w| w[0].us <= w[1].us));
        assert!(a.summary().p50_us < 10.0);
        assert!(a.summary().p90_us > 1000.0);
    }

    #[test]
    fn empty_histogram_summarises_to_zeros() {
        let h = Latency::new();
        assert_eq!(h.summary(), LatencySummary::default());
        assert!(h.curve().is_empty());
    }

    #[test]
    fn out_of_range_samples_are_clamped() {
        let mut h = Latency::new();
        h.record_ns(0);
        h.record(Duration::from_secs(7200));
        assert_eq!(h.count(), 2);
        assert!(h.summary().max_us <= MAX_NS as f64 / 1000.0 * 1.001);
    }

    #[test]
    fn error_log_counts_by_kind_and_keeps_few_samples() {
        let live = Live::default();
        for i in 0..25 {
            live.error("timeout", 1, format!("call {i}"));
        }
        live.error("mismatch", 2, "bytes differ");
        live.error("nothing", 0, "ignored");
        assert_eq!(live.errors.load(Relaxed), 27);
        let kinds = live.error_kinds();
        assert_eq!(kinds["timeout"], 25);
        assert_eq!(kinds["mismatch"], 2);
        assert!(!kinds.contains_key("nothing"));
        assert_eq!(live.error_samples().len(), ERROR_SAMPLES);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
