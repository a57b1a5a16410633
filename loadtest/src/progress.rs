//! The progress bar and the timeline: one task samples [`Live`] every 200 ms, redraws the
//! bar (only when stdout is a terminal) and closes a [`TimelinePoint`] every second.

use crate::stats::{Live, TimelinePoint};
use crate::units::format_count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How the bar measures progress.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// A timed run: the bar fills with elapsed time.
    Time(Duration),
    /// A counted run: the bar fills with completed operations (plus errors).
    Count(u64),
}

/// A running meter; [`Meter::finish`] stops it and returns the timeline.
pub struct Meter {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<TimelinePoint>>,
}

/// Whether progress bars can be drawn: stdout is a terminal.
pub fn interactive() -> bool {
    std::io::stdout().is_terminal()
}

/// Starts sampling `live`. `label` prefixes the bar, `unit` names the operations
/// (`"calls"`); `show` false (or stdout not a terminal) hides the bar but keeps the
/// timeline.
pub fn start(live: Arc<Live>, goal: Goal, label: &str, unit: &'static str, show: bool) -> Meter {
    let (stop, mut stopped) = watch::channel(false);
    let (len, template) = match goal {
        Goal::Time(d) => (
            d.as_millis().max(1) as u64,
            "{prefix} [{elapsed_precise}] {wide_bar} {msg}",
        ),
        Goal::Count(n) => (
            n.max(1),
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if show && interactive() {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut timeline = Vec::new();
        let (mut last_ops, mut last_err, mut last_t) = (0u64, 0u64, 0.0f64);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.tick().await; // the first tick is immediate
        let mut n = 0u64;
        loop {
            let done = tokio::select! {
                _ = tick.tick() => false,
                _ = stopped.changed() => true,
            };
            n += 1;
            let t = started.elapsed().as_secs_f64();
            let ops = live.ops.load(Relaxed);
            let errors = live.errors.load(Relaxed);
            // A timeline point every fifth sample (one second), and a last one at the end.
            if (n >= 5 || done) && t - last_t > 0.05 {
                n = 0;
                let dt = t - last_t;
                timeline.push(TimelinePoint {
                    t_s: t,
                    ops: ops - last_ops,
                    per_s: (ops - last_ops) as f64 / dt,
                    errors: errors - last_err,
                });
                (last_ops, last_err, last_t) = (ops, errors, t);
            }
            match goal {
                Goal::Time(_) => bar.set_position((t * 1000.0) as u64),
                Goal::Count(_) => bar.set_position(ops + errors),
            }
            let rate = timeline.last().map(|p| p.per_s).unwrap_or(0.0);
            bar.set_message(format!(
                "{} {unit}/s, {} {unit}, {errors} errors",
                format_count(rate),
                format_count(ops as f64)
            ));
            if done {
                bar.finish_and_clear();
                return timeline;
            }
        }
    });
    Meter { stop, task }
}

// === impl Meter ===

impl Meter {
    /// Stops sampling (after one last sample) and returns the timeline.
    pub async fn finish(self) -> Vec<TimelinePoint> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}
