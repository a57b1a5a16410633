//! What the load generator reads about processes from `/proc` (Linux): resident memory
//! and CPU time of the server under test, and this process's own file-descriptor limit.

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Kernel clock ticks per second for `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, …), or `None` if the process
/// or the field does not exist.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, field)
}

fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU time of `pid`, seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text)
}

fn parse_stat_cpu(text: &str) -> Option<f64> {
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// This process's resident memory, KiB.
pub fn own_rss_kib() -> Option<u64> {
    status_kib(std::process::id(), "VmRSS")
}

/// Raises this process's soft `RLIMIT_NOFILE` as far as the hard limit allows and returns
/// the new soft limit (idle and connect runs hold thousands of sockets).
///
/// Errors: the `setrlimit` failure.
pub fn raise_nofile() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// CPU and memory of the server process during one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// The server's process id.
    pub pid: u32,
    /// CPU time the server used during the run, seconds.
    pub cpu_s: f64,
    /// Mean CPU use during the run, percent of one core.
    pub cpu_percent: f64,
    /// Server CPU time per completed operation, µs (`None` when no operation completed).
    pub cpu_us_per_op: Option<f64>,
    /// Resident memory before the run, KiB.
    pub rss_kib_before: Option<u64>,
    /// Resident memory after the run, KiB.
    pub rss_kib_after: Option<u64>,
    /// Peak resident memory of the process so far (`VmHWM`), KiB.
    pub rss_kib_peak: Option<u64>,
}

/// Samples a server process at the start of a run; [`ServerProbe::finish`] turns the
/// difference into [`ServerStats`].
#[derive(Debug, Clone)]
pub struct ServerProbe {
    pid: u32,
    started: Instant,
    cpu0: Option<f64>,
    rss0: Option<u64>,
}

// === impl ServerProbe ===

impl ServerProbe {
    /// Takes the first sample of `pid`.
    pub fn start(pid: u32) -> Self {
        ServerProbe {
            pid,
            started: Instant::now(),
            cpu0: cpu_seconds(pid),
            rss0: status_kib(pid, "VmRSS"),
        }
    }

    /// The resident memory sampled at the start, KiB.
    pub fn rss_before(&self) -> Option<u64> {
        self.rss0
    }

    /// Takes the second sample; `ops` is the run's completed operation count.
    pub fn finish(&self, ops: u64) -> ServerStats {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let cpu_s = match (self.cpu0, cpu_seconds(self.pid)) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        ServerStats {
            pid: self.pid,
            cpu_s,
            cpu_percent: 100.0 * cpu_s / wall,
            cpu_us_per_op: (ops > 0).then(|| cpu_s * 1e6 / ops as f64),
            rss_kib_before: self.rss0,
            rss_kib_after: status_kib(self.pid, "VmRSS"),
            rss_kib_peak: status_kib(self.pid, "VmHWM"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\trhizo\nVmHWM:\t   20480 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(12345));
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn parses_stat_cpu_with_spaces_in_the_name() {
        let text = "42 (my server) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu(text), Some(3.0));
    }

    #[test]
    fn reads_own_process() {
        assert!(own_rss_kib().is_some_and(|k| k > 0));
        assert!(cpu_seconds(std::process::id()).is_some());
        let probe = ServerProbe::start(std::process::id());
        let stats = probe.finish(10);
        assert!(stats.rss_kib_after.is_some());
        assert!(stats.cpu_percent >= 0.0);
    }
}
