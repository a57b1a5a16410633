//! One scenario against several targets in one run: rounds are interleaved (A B C A B C …)
//! so that slow drifts of the machine affect every target alike; per-target medians, ratios
//! and BENCHMARKS.md-ready markdown rows come out.
//!
//! Ratios are of median throughput (higher is better) and median p50/p99 latency (lower is
//! better): every target against the first, and against targets named `relay` and
//! `reference` when there are such.

use crate::report::RunResult;
use crate::stats::median;
use crate::units::{format_count, format_us};
use crate::{RunContext, Scenario, Target};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;

/// Compare settings.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The targets, in the order given; the first is the baseline of the ratios.
    pub targets: Vec<Target>,
    /// Server process id per target name, for CPU figures.
    pub pids: Vec<(String, u32)>,
    /// Rounds; each runs every target once.
    pub rounds: usize,
    /// Pause between two runs, so that the previous run's connections are gone.
    pub pause: Duration,
}

/// Medians of one target over its successful rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    /// Operations per second.
    pub throughput_per_s: f64,
    /// Payload MiB/s one way, when the scenario has a payload.
    pub mib_per_s: Option<f64>,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Server CPU per operation, µs (when a pid was given).
    pub server_cpu_us_per_op: Option<f64>,
    /// Errors summed over all rounds.
    pub errors: u64,
    /// Rounds that produced a result.
    pub rounds_ok: usize,
}

/// All rounds of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRuns {
    /// Target name.
    pub name: String,
    /// Target URL.
    pub url: String,
    /// Results of the rounds that ran.
    pub runs: Vec<RunResult>,
    /// Rounds that failed to set up, with the reason.
    pub failures: Vec<String>,
    /// Medians over `runs`.
    pub median: Medians,
}

/// One ratio line: `target` against `baseline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// The target measured.
    pub target: String,
    /// What it is compared with.
    pub baseline: String,
    /// `target throughput / baseline throughput` (> 1: target is faster).
    pub throughput: f64,
    /// `target p50 / baseline p50` (< 1: target is quicker).
    pub p50: f64,
    /// `target p99 / baseline p99`.
    pub p99: f64,
}

/// The comparison as it goes into the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    /// The scenario compared.
    pub scenario: String,
    /// Rounds run.
    pub rounds: usize,
    /// Per-target results, in the order given.
    pub targets: Vec<TargetRuns>,
    /// Ratios against the first target and against `relay`/`reference`.
    pub ratios: Vec<Ratio>,
    /// BENCHMARKS.md-ready markdown: a header and one row per target.
    pub markdown: String,
    /// What the scenario was run with, in words.
    pub setup: String,
}

/// Runs the comparison. `on_run` sees each result as it comes (for printing).
///
/// Errors: none of its own; failed rounds are recorded per target.
pub async fn run(
    scenario: &Scenario,
    cfg: &CompareConfig,
    ctx: &RunContext,
    setup: &str,
    mut on_run: impl FnMut(&str, Result<&RunResult, &anyhow::Error>),
) -> CompareSummary {
    let mut per: Vec<TargetRuns> = cfg
        .targets
        .iter()
        .map(|t| TargetRuns {
            name: t.name.clone(),
            url: t.urls(),
            runs: Vec::new(),
            failures: Vec::new(),
            median: Medians::default(),
        })
        .collect();
    for round in 0..cfg.rounds {
        for (i, t) in cfg.targets.iter().enumerate() {
            let label = format!("[{}/{}] {}", round + 1, cfg.rounds, t.name);
            let run_ctx = RunContext {
                label: label.clone(),
                server_pid: cfg.pids.iter().find(|(n, _)| *n == t.name).map(|(_, p)| *p),
                ..ctx.clone()
            };
            match scenario.run(t, &run_ctx).await {
                Ok(r) => {
                    on_run(&label, Ok(&r));
                    per[i].runs.push(r);
                }
                Err(e) => {
                    on_run(&label, Err(&e));
                    per[i].failures.push(format!("round {}: {e:#}", round + 1));
                }
            }
            tokio::time::sleep(cfg.pause).await;
        }
    }
    summarize(scenario.name(), cfg.rounds, per, setup)
}

/// Computes medians, ratios and markdown from the runs.
pub fn summarize(
    scenario: &str,
    rounds: usize,
    mut per: Vec<TargetRuns>,
    setup: &str,
) -> CompareSummary {
    for t in &mut per {
        t.median = medians(&t.runs);
    }
    let mut ratios = Vec::new();
    let mut baselines: Vec<&str> = Vec::new();
    if let Some(first) = per.first() {
        baselines.push(&first.name);
    }
    for named in ["relay", "reference"] {
        if per.iter().any(|t| t.name == named) && !baselines.contains(&named) {
            baselines.push(named);
        }
    }
    for b in &baselines {
        let base = per.iter().find(|t| t.name == *b).expect("baseline exists");
        for t in &per {
            if t.name == base.name || t.median.rounds_ok == 0 || base.median.rounds_ok == 0 {
                continue;
            }
            ratios.push(Ratio {
                target: t.name.clone(),
                baseline: base.name.clone(),
                throughput: div(t.median.throughput_per_s, base.median.throughput_per_s),
                p50: div(t.median.p50_us, base.median.p50_us),
                p99: div(t.median.p99_us, base.median.p99_us),
            });
        }
    }
    let markdown = markdown(scenario, setup, &per, &baselines);
    CompareSummary {
        scenario: scenario.to_owned(),
        rounds,
        targets: per,
        ratios,
        markdown,
        setup: setup.to_owned(),
    }
}

fn div(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn medians(runs: &[RunResult]) -> Medians {
    let col = |f: &dyn Fn(&RunResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let opt = |f: &dyn Fn(&RunResult) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        median(&v)
    };
    Medians {
        throughput_per_s: col(&|r| r.throughput_per_s).unwrap_or(0.0),
        mib_per_s: opt(&|r| r.mib_per_s),
        p50_us: col(&|r| r.latency.p50_us).unwrap_or(0.0),
        p99_us: col(&|r| r.latency.p99_us).unwrap_or(0.0),
        server_cpu_us_per_op: opt(&|r| r.server.as_ref().and_then(|s| s.cpu_us_per_op)),
        errors: runs.iter().map(|r| r.errors).sum(),
        rounds_ok: runs.len(),
    }
}

/// The markdown table: one row per target with medians and ratios against each baseline.
fn markdown(scenario: &str, setup: &str, per: &[TargetRuns], baselines: &[&str]) -> String {
    let op = per
        .iter()
        .flat_map(|t| t.runs.first())
        .map(|r| r.op.trim_end_matches('s').to_owned())
        .next()
        .unwrap_or_else(|| "op".into());
    let mut s = String::new();
    let mut head = format!("| scenario | target | {op}/s | p50 | p99 | server CPU/{op} | errors |");
    let mut rule = "|---|---|---:|---:|---:|---:|---:|".to_owned();
    for b in baselines {
        let _ = write!(head, " vs {b} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{head}");
    let _ = writeln!(s, "{rule}");
    for t in per {
        let m = &t.median;
        let (rate, p50, p99) = if m.rounds_ok == 0 {
            ("failed".to_owned(), "–".to_owned(), "–".to_owned())
        } else {
            (
                format_count(m.throughput_per_s),
                format_us(m.p50_us),
                format_us(m.p99_us),
            )
        };
        let cpu = m
            .server_cpu_us_per_op
            .map(|u| format!("{u:.1} µs"))
            .unwrap_or_else(|| "–".into());
        let _ = write!(
            s,
            "| {scenario} ({setup}) | {} | {rate} | {p50} | {p99} | {cpu} | {} |",
            t.name, m.errors
        );
        for b in baselines {
            let base = per.iter().find(|x| x.name == *b).map(|x| &x.median);
            let cell = match base {
                _ if t.name == *b => "1.00×".to_owned(),
                Some(bm) if bm.rounds_ok > 0 && m.rounds_ok > 0 && bm.throughput_per_s > 0.0 => {
                    format!("{:.2}×", m.throughput_per_s / bm.throughput_per_s)
                }
                _ => "–".to_owned(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s
}

/// The human summary of a comparison.
pub fn print_summary(c: &CompareSummary) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "compare {} ({}), {} rounds, medians:",
        c.scenario, c.setup, c.rounds
    );
    for t in &c.targets {
        let m = &t.median;
        if m.rounds_ok == 0 {
            let _ = writeln!(s, "  {:<12} failed: {}", t.name, t.failures.join("; "));
            continue;
        }
        let _ = write!(
            s,
            "  {:<12} {:>12}/s  p50 {:>9}  p99 {:>9}  errors {}",
            t.name,
            format_count(m.throughput_per_s),
            format_us(m.p50_us),
            format_us(m.p99_us),
            m.errors
        );
        if let Some(cpu) = m.server_cpu_us_per_op {
            let _ = write!(s, "  server {cpu:.1} µs CPU/op");
        }
        s.push('\n');
    }
    for r in &c.ratios {
        let _ = writeln!(
            s,
            "  {} vs {}: {:.2}× throughput, {:.2}× p50, {:.2}× p99",
            r.target, r.baseline, r.throughput, r.p50, r.p99
        );
    }
    s.push('\n');
    s.push_str(&c.markdown);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, Live};

    fn result(name: &str, rate: f64, p50_us: u64) -> RunResult {
        let live = Live::default();
        live.done((rate * 10.0) as u64, 0);
        let mut h = Latency::new();
        for _ in 0..100 {
            h.record_ns(p50_us * 1000);
        }
        let t = Target::parse(&format!("{name}=ws://127.0.0.1:1/ws")).unwrap();
        RunResult::new(
            "echo",
            &t,
            "calls",
            10.0,
            &live,
            &h,
            "call round trip",
            vec![],
        )
    }

    fn target(name: &str, runs: Vec<RunResult>) -> TargetRuns {
        TargetRuns {
            name: name.into(),
            url: "ws://127.0.0.1:1/ws".into(),
            runs,
            failures: vec![],
            median: Medians::default(),
        }
    }

    #[test]
    fn medians_ratios_and_markdown() {
        let per = vec![
            target(
                "rhizo",
                vec![
                    result("rhizo", 100_000.0, 500),
                    result("rhizo", 120_000.0, 400),
                    result("rhizo", 110_000.0, 450),
                ],
            ),
            target(
                "reference",
                vec![
                    result("reference", 5_000.0, 800),
                    result("reference", 4_000.0, 900),
                    result("reference", 4_500.0, 1000),
                ],
            ),
            target("relay", vec![result("relay", 220_000.0, 200)]),
        ];
        let c = summarize("echo", 3, per, "4 pairs × 64 in flight, 128 B");
        assert_eq!(c.targets[0].median.throughput_per_s, 110_000.0);
        assert_eq!(c.targets[1].median.throughput_per_s, 4_500.0);
        assert_eq!(c.targets[0].median.rounds_ok, 3);
        // Against the first, then relay, then reference.
        let find = |t: &str, b: &str| {
            c.ratios
                .iter()
                .find(|r| r.target == t && r.baseline == b)
                .unwrap()
        };
        assert!((find("reference", "rhizo").throughput - 4_500.0 / 110_000.0).abs() < 1e-9);
        assert!((find("rhizo", "relay").throughput - 0.5).abs() < 1e-9);
        assert!((find("rhizo", "reference").throughput - 110_000.0 / 4_500.0).abs() < 1e-9);
        assert!(c.ratios.iter().all(|r| r.target != r.baseline));
        let lines: Vec<&str> = c.markdown.lines().collect();
        assert_eq!(lines.len(), 5, "{}", c.markdown);
        assert!(
            lines[0].contains("vs rhizo")
                && lines[0].contains("vs relay")
                && lines[0].contains("vs reference")
        );
        assert!(lines[2].contains("| rhizo | 110,000 |"), "{}", lines[2]);
        assert!(
            lines[2].contains("1.00×") && lines[2].contains("24.44×"),
            "{}",
            lines[2]
        );
        let text = print_summary(&c);
        assert!(text.contains("rhizo vs reference"), "{text}");
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["markdown"].as_str().unwrap().starts_with("| scenario"));
        assert_eq!(v["targets"][0]["runs"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn failed_targets_show_as_failed() {
        let mut failed = target("reference", vec![]);
        failed.failures.push("round 1: connection refused".into());
        let c = summarize(
            "echo",
            1,
            vec![target("rhizo", vec![result("rhizo", 10.0, 5)]), failed],
            "x",
        );
        assert!(c.ratios.is_empty());
        assert!(
            c.markdown.contains("| reference | failed |"),
            "{}",
            c.markdown
        );
        assert!(print_summary(&c).contains("failed: round 1"));
    }
}
