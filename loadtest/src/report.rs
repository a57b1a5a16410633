//! What a run produces: [`RunResult`] (one scenario against one target), the JSON
//! [`Report`] written with `--report`, and the human summary printed at the end.

use crate::compare::CompareSummary;
use crate::proc::ServerStats;
use crate::stats::{CurvePoint, LatencySummary, Live, TimelinePoint};
use crate::units::{format_count, format_us};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// The outcome of one scenario against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `echo`, `connect`, `fanout`, `mixed` or `idle`.
    pub scenario: String,
    /// Short name of the target (`rhizo`, `reference`, `relay`, or the URL's host).
    pub target: String,
    /// The URL the run used.
    pub url: String,
    /// Measured wall time, seconds.
    pub duration_s: f64,
    /// What one operation is: `calls`, `clients`, `messages`, `connections`.
    pub op: String,
    /// Operations that completed and were verified.
    pub ops: u64,
    /// Operations per second (`ops / duration_s`).
    pub throughput_per_s: f64,
    /// Payload MiB per second, one way, where payload size matters (echo, fan-out).
    pub mib_per_s: Option<f64>,
    /// Errors: wrong, missing, refused-when-it-should-work or late replies, failed
    /// connections. A correct run has zero.
    pub errors: u64,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first few error messages verbatim.
    pub error_samples: Vec<String>,
    /// Latency of one operation (what it is depends on the scenario; see `latency_of`).
    pub latency: LatencySummary,
    /// What `latency` measures, e.g. `"call round trip"`.
    pub latency_of: String,
    /// Latency at fixed percentiles, for charts.
    pub latency_curve: Vec<CurvePoint>,
    /// Operations per second, second by second.
    pub timeline: Vec<TimelinePoint>,
    /// Server CPU and memory, when `--server-pid` was given.
    pub server: Option<ServerStats>,
    /// Scenario-specific figures and the parameters used.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The `--report` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `"rhizo-loadtest"`.
    pub tool: String,
    /// Version of the tool.
    pub version: String,
    /// The scenario that ran.
    pub scenario: String,
    /// The command line.
    pub command: Vec<String>,
    /// Seconds since the Unix epoch when the report was written.
    pub written_unix_s: u64,
    /// The single run (scenario commands).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<RunResult>,
    /// The comparison (`compare` command).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub compare: Option<CompareSummary>,
}

// === impl Report ===

impl Report {
    /// A report for `scenario` with the current command line and time.
    pub fn new(scenario: &str) -> Self {
        Report {
            tool: "rhizo-loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scenario: scenario.into(),
            command: std::env::args().collect(),
            written_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            result: None,
            compare: None,
        }
    }

    /// Writes the report as pretty JSON.
    ///
    /// Errors: the file cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}

// === impl RunResult ===

impl RunResult {
    /// Builds a result from the run's counters. `latency` is the merged histogram.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        target: &crate::Target,
        op: &str,
        duration_s: f64,
        live: &Live,
        latency: &crate::stats::Latency,
        latency_of: &str,
        timeline: Vec<TimelinePoint>,
    ) -> Self {
        let ops = live.ops.load(Relaxed);
        let duration_s = duration_s.max(1e-9);
        RunResult {
            scenario: scenario.into(),
            target: target.name.clone(),
            url: target.urls(),
            duration_s,
            op: op.into(),
            ops,
            throughput_per_s: ops as f64 / duration_s,
            mib_per_s: None,
            errors: live.errors.load(Relaxed),
            error_kinds: live.error_kinds(),
            error_samples: live.error_samples(),
            latency: latency.summary(),
            latency_of: latency_of.into(),
            latency_curve: latency.curve(),
            timeline,
            server: None,
            details: serde_json::Map::new(),
        }
    }

    /// Sets a scenario-specific figure.
    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        self.details.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
    }

    /// The human summary, several lines.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} -> {} ({}), {}",
            self.scenario,
            self.target,
            self.url,
            format_us(self.duration_s * 1e6)
        );
        let mut rate = format!(
            "{} {}/s",
            format_count(self.throughput_per_s),
            self.op.trim_end_matches('s')
        );
        if let Some(m) = self.mib_per_s {
            let _ = write!(rate, ", {m:.1} MiB/s payload one way");
        }
        let _ = writeln!(
            s,
            "  {:<10} {} ({rate})",
            self.op,
            format_count(self.ops as f64)
        );
        let l = &self.latency;
        if l.count > 0 {
            let _ = writeln!(
                s,
                "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({}, {} samples)",
                format_us(l.p50_us),
                format_us(l.p90_us),
                format_us(l.p99_us),
                format_us(l.p999_us),
                format_us(l.max_us),
                self.latency_of,
                format_count(l.count as f64)
            );
        }
        let _ = write!(s, "  errors     {}", self.errors);
        if !self.error_kinds.is_empty() {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = write!(s, " ({})", kinds.join(", "));
        }
        s.push('\n');
        for e in self.error_samples.iter().take(3) {
            let _ = writeln!(s, "    e.g. {e}");
        }
        if let Some(srv) = &self.server {
            let _ = write!(
                s,
                "  server     pid {}: {:.0}% CPU",
                srv.pid, srv.cpu_percent
            );
            if let Some(us) = srv.cpu_us_per_op {
                let _ = write!(s, " ({us:.2} µs CPU per {})", self.op.trim_end_matches('s'));
            }
            if let (Some(a), Some(b)) = (srv.rss_kib_before, srv.rss_kib_after) {
                let _ = write!(
                    s,
                    ", RSS {:.1} -> {:.1} MiB",
                    a as f64 / 1024.0,
                    b as f64 / 1024.0
                );
            }
            s.push('\n');
        }
        let shown: Vec<String> = self
            .details
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !shown.is_empty() {
            let _ = writeln!(s, "  details    {}", shown.join(" "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;
    use std::time::Duration;

    fn sample() -> RunResult {
        let live = Live::default();
        live.done(1000, 128_000);
        live.error("timeout", 2, "call s1x5");
        let mut h = Latency::new();
        for i in 0..1000 {
            h.record(Duration::from_micros(100 + i));
        }
        let target = crate::Target::parse("rhizo=ws://127.0.0.1:9527/ws").unwrap();
        let mut r = RunResult::new(
            "echo",
            &target,
            "calls",
            2.0,
            &live,
            &h,
            "call round trip",
            vec![],
        );
        r.mib_per_s = Some(0.06);
        r.detail("pairs", 4);
        r
    }

    #[test]
    fn result_fields() {
        let r = sample();
        assert_eq!(r.ops, 1000);
        assert_eq!(r.throughput_per_s, 500.0);
        assert_eq!(r.errors, 2);
        assert_eq!(r.target, "rhizo");
        assert_eq!(r.latency.count, 1000);
        let text = r.summary();
        assert!(text.contains("500 call/s"), "{text}");
        assert!(text.contains("timeout: 2"), "{text}");
        assert!(text.contains("pairs=4"), "{text}");
    }

    #[test]
    fn report_json_shape() {
        let mut rep = Report::new("echo");
        rep.result = Some(sample());
        let v = serde_json::to_value(&rep).unwrap();
        assert_eq!(v["tool"], "rhizo-loadtest");
        assert_eq!(v["scenario"], "echo");
        assert!(v.get("compare").is_none());
        let r = &v["result"];
        for key in [
            "scenario",
            "target",
            "url",
            "duration_s",
            "op",
            "ops",
            "throughput_per_s",
            "mib_per_s",
            "errors",
            "error_kinds",
            "error_samples",
            "latency",
            "latency_of",
            "latency_curve",
            "timeline",
            "server",
            "details",
        ] {
            assert!(r.get(key).is_some(), "missing {key}");
        }
        for key in [
            "count", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
        ] {
            assert!(r["latency"][key].is_number(), "missing latency.{key}");
        }
        assert_eq!(r["error_kinds"]["timeout"], 2);
        assert_eq!(r["details"]["pairs"], 4);
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn report_is_written_to_disk() {
        let dir = std::env::temp_dir().join(format!("rhizo-lt-{}", std::process::id()));
        let path = dir.join("sub/report.json");
        let mut rep = Report::new("echo");
        rep.result = Some(sample());
        rep.write(&path).unwrap();
        let back: Report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.result.unwrap().ops, 1000);
        let _ = std::fs::remove_dir_all(dir);
    }
}
