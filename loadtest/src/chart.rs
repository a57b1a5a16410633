//! SVG charts (`--chart FILE.svg`), drawn with plotters' SVG backend only.
//!
//! Left panel: the latency-percentile curve (x in "nines": 0 = p0, 1 = p90, 2 = p99,
//! 3 = p99.9 …; y in µs, log scale). Right panel: operations per second over time. A
//! comparison draws one curve per target (its median-throughput round).

use crate::compare::CompareSummary;
use crate::report::RunResult;
use crate::stats::CurvePoint;
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 480;

/// Colours of the series, in target order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Highest "nines" value drawn (p99.999).
const MAX_NINES: f64 = 5.0;

/// Percentile → "nines": `-log10(1 - p/100)`, capped at [`MAX_NINES`].
pub fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 10f64.powf(-MAX_NINES) {
        MAX_NINES
    } else {
        -rest.log10()
    }
}

fn nines_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p < 99.0 {
        format!("p{p:.0}")
    } else {
        let digits = (x.round() as usize).saturating_sub(2);
        format!("p{p:.digits$}")
    }
}

/// One series to draw: a name, its percentile curve and its (t, ops/s) timeline.
struct Series<'a> {
    name: &'a str,
    curve: &'a [CurvePoint],
    timeline: Vec<(f64, f64)>,
}

/// Draws a single run.
///
/// Errors: the file cannot be written.
pub fn write_run(path: &Path, r: &RunResult) -> anyhow::Result<()> {
    let title = format!("{} → {} ({})", r.scenario, r.target, r.latency_of);
    let series = [Series {
        name: &r.target,
        curve: &r.latency_curve,
        timeline: r.timeline.iter().map(|p| (p.t_s, p.per_s)).collect(),
    }];
    draw(path, &title, &r.op, &series)
}

/// Draws a comparison: per target, the round with the median throughput.
///
/// Errors: the file cannot be written.
pub fn write_compare(path: &Path, c: &CompareSummary) -> anyhow::Result<()> {
    let series: Vec<Series<'_>> = c
        .targets
        .iter()
        .filter_map(|t| {
            let mut runs: Vec<&RunResult> = t.runs.iter().collect();
            runs.sort_by(|a, b| a.throughput_per_s.total_cmp(&b.throughput_per_s));
            let r = runs.get(runs.len() / 2)?;
            Some(Series {
                name: &t.name,
                curve: &r.latency_curve,
                timeline: r.timeline.iter().map(|p| (p.t_s, p.per_s)).collect(),
            })
        })
        .collect();
    let op = c
        .targets
        .iter()
        .flat_map(|t| t.runs.first())
        .map(|r| r.op.as_str())
        .next()
        .unwrap_or("ops");
    let title = format!("compare {} ({})", c.scenario, c.setup);
    draw(path, &title, op, &series)
}

fn draw(path: &Path, title: &str, op: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
    let (left, right) = root.split_horizontally(WIDTH / 2);

    // Latency percentiles.
    let all_us = series.iter().flat_map(|s| s.curve.iter().map(|p| p.us));
    let (lo, hi) = all_us.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi <= 0.0 {
        (1.0, 10.0)
    } else {
        ((lo.max(0.1) / 1.5), hi * 1.5)
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("latency by percentile", ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..MAX_NINES, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&nines_label)
        .y_label_formatter(&|us| crate::units::format_us(*us))
        .y_desc("latency")
        .x_desc("percentile")
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = s
            .curve
            .iter()
            .map(|p| (nines(p.percentile), p.us.max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;

    // Throughput over time.
    let t_max = series
        .iter()
        .flat_map(|s| s.timeline.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let r_max = series
        .iter()
        .flat_map(|s| s.timeline.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&right)
        .caption(format!("{op} per second"), ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..t_max, 0f64..r_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(format!("{op}/s"))
        .y_label_formatter(&|v| crate::units::format_count(*v))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.timeline.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, Live, TimelinePoint};
    use std::time::Duration;

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
        assert_eq!(nines_label(&0.0), "p0");
        assert_eq!(nines_label(&1.0), "p90");
        assert_eq!(nines_label(&2.0), "p99");
        assert_eq!(nines_label(&3.0), "p99.9");
        assert_eq!(nines_label(&4.0), "p99.99");
    }

    #[test]
    fn writes_an_svg() {
        let live = Live::default();
        live.done(1000, 0);
        let mut h = Latency::new();
        for i in 1..1000 {
            h.record(Duration::from_micros(i));
        }
        let t = crate::Target::parse("rhizo=ws://127.0.0.1:1/ws").unwrap();
        let timeline = (1..5)
            .map(|i| TimelinePoint {
                t_s: i as f64,
                ops: 250,
                per_s: 250.0,
                errors: 0,
            })
            .collect();
        let r = RunResult::new(
            "echo",
            &t,
            "calls",
            4.0,
            &live,
            &h,
            "call round trip",
            timeline,
        );
        let path = std::env::temp_dir().join(format!("rhizo-lt-chart-{}.svg", std::process::id()));
        write_run(&path, &r).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(svg.contains("latency by percentile"));
        let _ = std::fs::remove_file(path);

        // An empty run still draws.
        let empty = RunResult::new(
            "echo",
            &t,
            "calls",
            1.0,
            &Live::default(),
            &Latency::new(),
            "x",
            vec![],
        );
        let path =
            std::env::temp_dir().join(format!("rhizo-lt-chart-empty-{}.svg", std::process::id()));
        write_run(&path, &empty).unwrap();
        let _ = std::fs::remove_file(path);
    }
}
