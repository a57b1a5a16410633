//! `GET /health`: the diagnostics document of workspace-api.md §8.1, in the reference's
//! shape (`status` HEALTHY / WARNING / CRITICAL, `health_score`, `issues`, `memory`,
//! `connections`, `objects`, `event_bus`, `system`, `tasks`, `leak_monitor`,
//! `uptime_seconds`), filled with this process's real figures: memory, CPU time and file
//! descriptors from `/proc` (Linux; `null` elsewhere), live tokio tasks from the runtime's
//! metrics, connections from the router's counters. Answers 503 when CRITICAL, so that a
//! balancer can use it as a deep check (the shallow ones are `/health/liveness` and
//! `/health/readiness`).
//!
//! The score starts at 100 and loses points per problem ([`assess`]); what counts as a
//! problem is rhizo's, not the reference's (which looks for leaked Python handlers).
//! [`Process`] is shared with `/metrics`, which exports the same figures as the standard
//! `process_*` families.

use crate::manager::Manager;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn routes() -> axum::Router<Arc<Manager>> {
    axum::Router::new().route("/health", get(diagnostics))
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux architecture rhizo builds for).
const USER_HZ: f64 = 100.0;

const MIB: f64 = 1024.0 * 1024.0;

/// RSS above which the score drops (as in the reference: 2 GiB).
const HIGH_RSS_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How long the CPU use of the machine is sampled for `system.cpu_percent`.
const CPU_SAMPLE: Duration = Duration::from_millis(100);

/// This process as `/proc/self` describes it; a figure is `None` where it could not be
/// read (not Linux, or a restricted `/proc`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Process {
    /// Resident set size.
    pub rss_bytes: Option<u64>,
    /// Virtual memory size.
    pub vms_bytes: Option<u64>,
    /// Open file descriptors (sockets included).
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// User plus system CPU time used so far.
    pub cpu_seconds: Option<f64>,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: Option<u64>,
}

impl Process {
    /// Reads `/proc/self/{status,stat,limits,fd}` and `/proc/stat` (a few small reads).
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| status_field(&status, key).map(|kb| kb * 1024);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let stat = parse_stat(&stat);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| status_field(&s, "btime"));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Process {
            rss_bytes: kib("VmRSS:"),
            vms_bytes: kib("VmSize:").or(stat.map(|s| s.vsize)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: max_open_files(&limits),
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            start_time_seconds: match (boot_time, stat) {
                (Some(b), Some(s)) => Some(b as f64 + s.starttime as f64 / USER_HZ),
                _ => None,
            },
            threads: status_field(&status, "Threads:"),
        }
    }

    /// Seconds since the process started.
    pub fn uptime_seconds(&self) -> Option<f64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some((now.as_secs_f64() - self.start_time_seconds?).max(0.0))
    }
}

/// The first number after `key` on the line that starts with it (`/proc` key-value files).
fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft `Max open files` limit of `/proc/self/limits` (`None` when "unlimited").
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

/// The fields of `/proc/self/stat` used here. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Fields 3, 4, … of proc(5): index i here is field i + 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: n(14)?,
        stime: n(15)?,
        starttime: n(22)?,
        vsize: n(23)?,
    })
}

/// Busy and total jiffies of all CPUs (the `cpu` line of `/proc/stat`).
fn cpu_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Percentage of the machine's CPU time that was busy over [`CPU_SAMPLE`].
async fn cpu_percent() -> Option<f64> {
    let read = || cpu_jiffies(&std::fs::read_to_string("/proc/stat").ok()?);
    let (busy0, total0) = read()?;
    tokio::time::sleep(CPU_SAMPLE).await;
    let (busy1, total1) = read()?;
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    Some(round1(
        busy1.saturating_sub(busy0) as f64 * 100.0 / total as f64,
    ))
}

/// Machine memory in use, percent (`MemTotal` less `MemAvailable`), and `MemTotal` bytes.
fn machine_memory() -> (Option<f64>, Option<u64>) {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return (None, None);
    };
    let total = status_field(&info, "MemTotal:");
    let available = status_field(&info, "MemAvailable:");
    let percent = match (total, available) {
        (Some(t), Some(a)) if t > 0 => Some(round1(t.saturating_sub(a) as f64 * 100.0 / t as f64)),
        _ => None,
    };
    (percent, total.map(|t| t * 1024))
}

fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What [`assess`] looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Inputs {
    /// Resident memory, if known.
    pub rss_bytes: Option<u64>,
    /// Live tokio tasks, if known.
    pub tasks: Option<u64>,
    /// Open client connections.
    pub connections: u64,
    /// Open file descriptors and their limit, if known.
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// A cluster bus is configured and it is disconnected.
    pub bus_down: bool,
}

/// The health score (0–100) and the problems that lowered it.
///
/// - cluster bus disconnected: −40 (frames to clients on other nodes cannot go out);
/// - file descriptors at ≥ 95 % of the limit: −50 (new connections fail), at ≥ 80 %: −20;
/// - resident memory above 2 GiB: −20;
/// - more live tasks than 1000 plus 8 per open connection: −15 (tasks that outlive their
///   work; every connection has a few).
pub(crate) fn assess(i: &Inputs) -> (u32, Vec<String>) {
    let mut score: i64 = 100;
    let mut issues = Vec::new();
    if i.bus_down {
        score -= 40;
        issues.push("cluster bus (Redis) is disconnected".to_owned());
    }
    if let (Some(open), Some(max)) = (i.open_fds, i.max_fds.filter(|m| *m > 0)) {
        if open * 100 >= max * 95 {
            score -= 50;
            issues.push(format!(
                "open file descriptors at {open} of {max}: new connections will fail"
            ));
        } else if open * 100 >= max * 80 {
            score -= 20;
            issues.push(format!("open file descriptors at {open} of {max}"));
        }
    }
    if let Some(rss) = i.rss_bytes.filter(|r| *r > HIGH_RSS_BYTES) {
        score -= 20;
        issues.push(format!(
            "high memory usage ({:.0} MiB resident, above 2 GiB)",
            rss as f64 / MIB
        ));
    }
    if let Some(tasks) = i.tasks {
        let expected = 1000 + 8 * i.connections;
        if tasks > expected {
            score -= 15;
            issues.push(format!(
                "high active task count ({tasks} for {} connections)",
                i.connections
            ));
        }
    }
    (score.max(0) as u32, issues)
}

/// The status word of a score, with the reference's bands.
pub(crate) fn status(score: u32) -> &'static str {
    match score {
        80.. => "HEALTHY",
        60..=79 => "WARNING",
        _ => "CRITICAL",
    }
}

/// `now` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), the reference's `timestamp` format.
fn utc_timestamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

async fn diagnostics(State(m): State<Arc<Manager>>) -> Response {
    let c = m.router.counters();
    let p = Process::read();
    let tasks = tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.metrics().num_alive_tasks() as u64);
    let clustered = !m.router.node_id().is_empty();
    let bus_connected = c.bus_connected != 0;
    let inputs = Inputs {
        rss_bytes: p.rss_bytes,
        tasks,
        connections: c.connections,
        open_fds: p.open_fds,
        max_fds: p.max_fds,
        bus_down: clustered && !bus_connected,
    };
    let (score, issues) = assess(&inputs);
    let status = status(score);
    let (memory_percent, memory_total) = machine_memory();
    let cpu_percent = cpu_percent().await;
    let mb = |b: Option<u64>| b.map(|b| round2(b as f64 / MIB));
    let body = json!({
        "timestamp": utc_timestamp(SystemTime::now()),
        "status": status,
        "health_score": score,
        "issues": issues,
        "memory": {
            "rss_mb": mb(p.rss_bytes),
            "vms_mb": mb(p.vms_bytes),
            "percent": memory_percent,
            "rss_percent": match (p.rss_bytes, memory_total) {
                (Some(r), Some(t)) if t > 0 => Some(round2(r as f64 * 100.0 / t as f64)),
                _ => None,
            },
        },
        "connections": {
            "active": c.connections,
            "websocket": c.ws_connections,
            "http_streaming": c.connections.saturating_sub(c.ws_connections),
            "total_created": c.connections_opened,
            "total_closed": c.connections_closed,
            "slow_consumer_closes": c.slow_consumer_closes,
            "rate_limited_closes": c.rate_limited_closes,
            // A connection leaves the router's tables when it ends: none linger.
            "orphaned": 0,
            "leaked_handlers": 0,
        },
        "objects": {
            // The router never decodes payloads, so it holds no client objects.
            "rpc_objects": null,
            "connection_objects": c.connections,
            "manager_calls_running": m.calls_running(),
        },
        "event_bus": {
            "mode": if clustered { "redis" } else { "in-process" },
            "connected": !clustered || bus_connected,
            "circuit_breaker_open": clustered && !bus_connected,
            "consecutive_failures": null,
            "max_failures": null,
            "last_successful_connection": null,
            "envelopes_sent": c.bus_sent,
            "envelopes_received": c.bus_received,
            "inbox_backlog": c.bus_inbox_backlog,
            "dropped": c.bus_inbox_dropped + c.bus_outbox_dropped,
        },
        "system": {
            "cpu_percent": cpu_percent,
            "memory_percent": memory_percent,
            "disk_usage": null,
            "load_average": load_average(),
        },
        "tasks": {
            "active": tasks,
            "threads": p.threads,
        },
        "process": {
            "open_fds": p.open_fds,
            "max_fds": p.max_fds,
            "cpu_seconds": p.cpu_seconds.map(round2),
        },
        "leak_monitor": {
            "leaked_handlers": 0,
            "orphaned_event_bus_clients": 0,
            "note": "rhizo keeps no per-connection handlers on an event bus; watch tasks.active and process.open_fds instead.",
        },
        "server_id": m.config.server_id,
        "version": m.config.version,
        "uptime_seconds": p.uptime_seconds().map(round2),
    });
    let code = if status == "CRITICAL" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_server_is_healthy() {
        let i = Inputs {
            rss_bytes: Some(50 << 20),
            tasks: Some(40),
            connections: 3,
            open_fds: Some(30),
            max_fds: Some(1024),
            bus_down: false,
        };
        assert_eq!(assess(&i), (100, vec![]));
        assert_eq!(status(100), "HEALTHY");
        // Nothing known is nothing wrong.
        assert_eq!(assess(&Inputs::default()).0, 100);
    }

    #[test]
    fn problems_lower_the_score_into_the_reference_bands() {
        let bus = Inputs {
            bus_down: true,
            ..Default::default()
        };
        let (score, issues) = assess(&bus);
        assert_eq!((score, status(score)), (60, "WARNING"));
        assert_eq!(issues.len(), 1);

        let fds = Inputs {
            open_fds: Some(980),
            max_fds: Some(1024),
            ..Default::default()
        };
        let (score, _) = assess(&fds);
        assert_eq!((score, status(score)), (50, "CRITICAL"));
        let some_fds = Inputs {
            open_fds: Some(850),
            ..fds
        };
        assert_eq!(assess(&some_fds).0, 80);

        let memory_and_tasks = Inputs {
            rss_bytes: Some(3 << 30),
            tasks: Some(5000),
            connections: 100,
            ..Default::default()
        };
        let (score, issues) = assess(&memory_and_tasks);
        assert_eq!((score, status(score)), (65, "WARNING"));
        assert_eq!(issues.len(), 2);
        // Tasks in proportion to the connections are not a problem.
        let busy = Inputs {
            tasks: Some(5000),
            connections: 1000,
            ..Default::default()
        };
        assert_eq!(assess(&busy).0, 100);

        let everything = Inputs {
            bus_down: true,
            ..memory_and_tasks
        };
        assert_eq!(status(assess(&everything).0), "CRITICAL");
        assert_eq!(status(79), "WARNING");
        assert_eq!(status(59), "CRITICAL");
    }

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (rhizo (serve) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    250 75 0 0 20 0 12 0 98765 104857600 2560 18446744073709551615";
        let s = parse_stat(stat).unwrap();
        assert_eq!(
            (s.utime, s.stime, s.starttime, s.vsize),
            (250, 75, 98765, 104857600)
        );
        assert_eq!(parse_stat("garbage"), None);

        let status = "Name:\trhizo\nVmSize:\t  102400 kB\nVmRSS:\t    2048 kB\nThreads:\t12\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(status_field(status, "Threads:"), Some(12));
        assert_eq!(status_field(status, "VmSwap:"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);

        let cpu = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_jiffies(cpu), Some((150, 1000)));
    }

    #[test]
    fn this_process_reads_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let p = Process::read();
        assert!(p.rss_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() > 0);
        assert!(p.cpu_seconds.is_some());
        let up = p.uptime_seconds().unwrap();
        assert!((0.0..86_400.0 * 365.0).contains(&up), "uptime {up}");
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.5Z (a leap day).
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
        assert_eq!(utc_timestamp(t), "2024-02-29T12:34:56.500000Z");
    }
}
