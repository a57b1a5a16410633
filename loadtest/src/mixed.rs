//! The mixed scenario: W workspaces × C clients, each client providing a public and a
//! protected service, calling each other at a fixed rate within and across workspaces.
//!
//! Each workspace has an owner that connects anonymously and mints a token; the other
//! clients join with it. Every client registers `loadtest-pub` (public) and
//! `loadtest-prot` (protected), both with an `echo` member. Operations are picked at random:
//! a direct call `services.<svc>.echo` to another client (the callee enforces visibility,
//! protocol.md §3.7), or, for a fraction `resolve`, a `get_service` through the manager
//! (which enforces it, §4.6).
//!
//! Expected outcomes: calls and resolutions within a workspace and to public services
//! succeed with the right answer; protected services of another workspace are REFUSED —
//! that refusal is the expected outcome and counts as a completed operation. A protected
//! service that answers across workspaces, a wrong answer, a timeout or an unexpected
//! refusal is an error.

use crate::progress::{self, Goal};
use crate::report::RunResult;
use crate::stats::{Latency, Live};
use crate::{RunContext, Target};
use anyhow::Context as _;
use rand::Rng;
use rhizo_client::{handler, Client, ClientError, ConnectOptions};
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The public service every client registers.
pub const PUBLIC: &str = "loadtest-pub";
/// The protected service every client registers.
pub const PROTECTED: &str = "loadtest-prot";

/// Mixed settings.
#[derive(Debug, Clone)]
pub struct MixedConfig {
    /// Workspaces.
    pub workspaces: usize,
    /// Clients per workspace (the owner included).
    pub clients: usize,
    /// Operations per second, all clients together.
    pub rate: f64,
    /// How long to run.
    pub duration: Duration,
    /// Fraction of operations that target another workspace (0–1).
    pub cross: f64,
    /// Fraction of operations that target the protected service (0–1).
    pub protected: f64,
    /// Fraction of operations that resolve through the manager instead of calling (0–1).
    pub resolve: f64,
    /// Payload bytes per call.
    pub payload: usize,
    /// Most operations outstanding at once; when reached the schedule waits.
    pub in_flight: usize,
    /// Time allowed for one operation.
    pub timeout: Duration,
}

impl Default for MixedConfig {
    fn default() -> Self {
        MixedConfig {
            workspaces: 4,
            clients: 5,
            rate: 1000.0,
            duration: Duration::from_secs(10),
            cross: 0.5,
            protected: 0.3,
            resolve: 0.05,
            payload: 64,
            in_flight: 256,
            timeout: crate::DEFAULT_TIMEOUT,
        }
    }
}

/// One member of the mesh.
struct Member {
    client: Client,
    ws: usize,
}

/// Operations by category: `<within|cross>/<public|protected>/<call|resolve>`.
#[derive(Debug, Default, Serialize)]
struct Tally {
    total: BTreeMap<String, u64>,
    refused_as_expected: u64,
}

/// Runs the mixed scenario.
///
/// Errors: set-up failed (a client could not connect, join or register).
pub async fn run(
    cfg: &MixedConfig,
    target: &Target,
    ctx: &RunContext,
) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        cfg.workspaces >= 1 && cfg.clients >= 1,
        "need at least one client"
    );
    anyhow::ensure!(cfg.rate > 0.0, "--rate must be positive");
    let url = target.ws_url();
    let tag = crate::run_tag();
    let members = Arc::new(setup(&url, &tag, cfg).await?);
    let live = Arc::new(Live::default());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let latency = Arc::new(Mutex::new(Latency::new()));
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.in_flight.max(1)));
    let leaked = Arc::new(AtomicU64::new(0));

    let probe = ctx.server_pid.map(crate::proc::ServerProbe::start);
    let meter = progress::start(
        live.clone(),
        Goal::Time(cfg.duration),
        &ctx.label,
        "ops",
        ctx.progress,
    );
    let started = Instant::now();
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < cfg.duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * cfg.rate) as u64;
        while issued < due && started.elapsed() < cfg.duration {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("open semaphore");
            issued += 1;
            let op = Op::pick(&mut rand::thread_rng(), cfg, &members);
            let (members, live, tally, latency, leaked) = (
                members.clone(),
                live.clone(),
                tally.clone(),
                latency.clone(),
                leaked.clone(),
            );
            let (timeout, payload) = (cfg.timeout, cfg.payload);
            tasks.spawn(async move {
                let t0 = Instant::now();
                let outcome = op.execute(&members, payload, timeout).await;
                let took = t0.elapsed();
                let mut t = tally.lock().expect("tally lock");
                *t.total.entry(op.category()).or_default() += 1;
                match outcome {
                    Outcome::Ok => {
                        live.done(1, payload as u64);
                        latency.lock().expect("latency lock").record(took);
                    }
                    Outcome::Refused => {
                        t.refused_as_expected += 1;
                        live.done(1, 0);
                        latency.lock().expect("latency lock").record(took);
                    }
                    Outcome::Leaked(detail) => {
                        leaked.fetch_add(1, Relaxed);
                        live.error("protected service leaked", 1, detail);
                    }
                    Outcome::Error(kind, detail) => live.error(kind, 1, detail),
                }
                drop(permit);
            });
            // Reap finished tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let timeline = meter.finish().await;
    let server = probe.map(|p| p.finish(live.ops.load(Relaxed)));
    if let Ok(members) = Arc::try_unwrap(members) {
        for m in members {
            m.client.disconnect();
        }
    }

    let hist = latency.lock().expect("latency lock").clone();
    let mut r = RunResult::new(
        "mixed",
        target,
        "ops",
        elapsed,
        &live,
        &hist,
        "call or get_service round trip",
        timeline,
    );
    r.server = server;
    r.detail("workspaces", cfg.workspaces);
    r.detail("clients_per_workspace", cfg.clients);
    r.detail("rate_per_s", cfg.rate);
    r.detail("issued", issued);
    r.detail("cross_fraction", cfg.cross);
    r.detail("protected_fraction", cfg.protected);
    r.detail("resolve_fraction", cfg.resolve);
    let t = tally.lock().expect("tally lock");
    r.detail("refused_as_expected", t.refused_as_expected);
    r.detail("by_category", &t.total);
    r.detail("protected_leaks", leaked.load(Relaxed));
    Ok(r)
}

/// Connects every workspace's owner, mints tokens, joins the others and registers both
/// services on every client.
async fn setup(url: &str, tag: &str, cfg: &MixedConfig) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::with_capacity(cfg.workspaces * cfg.clients);
    for w in 0..cfg.workspaces {
        let owner = Client::connect(
            url,
            ConnectOptions {
                client_id: Some(format!("lt-mix-{tag}-w{w}c0")),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("connecting the owner of workspace {w}"))?;
        let token = owner
            .manager_call(
                "generate_token",
                vec![map([("permission", "read_write".into())])],
            )
            .await
            .context("minting a token")?;
        let token = token.as_str().map(str::to_owned);
        let ws_name = owner.workspace().to_owned();
        let joins = crate::bounded((1..cfg.clients).collect(), 32, |c| {
            let token = token.clone();
            let ws_name = ws_name.clone();
            async move {
                Client::connect(
                    url,
                    ConnectOptions {
                        client_id: Some(format!("lt-mix-{tag}-w{w}c{c}")),
                        workspace: Some(ws_name),
                        token,
                        ..Default::default()
                    },
                )
                .await
                .with_context(|| format!("joining workspace {w} as client {c}"))
            }
        })
        .await;
        members.push(Member {
            client: owner,
            ws: w,
        });
        for j in joins {
            members.push(Member { client: j?, ws: w });
        }
    }
    let results = crate::bounded(members.iter().collect(), 32, |m| async move {
        let echo =
            || handler(|call| async move { Ok(call.args.first().cloned().unwrap_or(Value::Nil)) });
        m.client
            .register_service(
                PUBLIC,
                map([("visibility", "public".into())]),
                vec![("echo", echo())],
            )
            .await?;
        m.client
            .register_service(
                PROTECTED,
                map([("visibility", "protected".into())]),
                vec![("echo", echo())],
            )
            .await?;
        Ok::<_, ClientError>(())
    })
    .await;
    for r in results {
        r.context("registering services")?;
    }
    Ok(members)
}

/// One operation: who calls whom, which service, and how.
#[derive(Debug, Clone, Copy)]
struct Op {
    from: usize,
    to: usize,
    cross: bool,
    protected: bool,
    resolve: bool,
}

/// What happened to an operation.
#[derive(Debug)]
enum Outcome {
    /// Answered correctly.
    Ok,
    /// Refused, as it should be.
    Refused,
    /// A protected service answered a foreign workspace.
    Leaked(String),
    /// Anything else that went wrong.
    Error(&'static str, String),
}

/// A workspace index other than `from_ws`, uniformly among `n > 1`.
fn other_workspace(rng: &mut impl Rng, from_ws: usize, n: usize) -> usize {
    let other = rng.gen_range(0..n - 1);
    if other >= from_ws {
        other + 1
    } else {
        other
    }
}

// === impl Op ===

impl Op {
    fn pick(rng: &mut impl Rng, cfg: &MixedConfig, members: &[Member]) -> Op {
        let from = rng.gen_range(0..members.len());
        let cross = cfg.workspaces > 1 && rng.gen_bool(cfg.cross.clamp(0.0, 1.0));
        let from_ws = members[from].ws;
        let to_ws = if cross {
            other_workspace(rng, from_ws, cfg.workspaces)
        } else {
            from_ws
        };
        let to = to_ws * cfg.clients + rng.gen_range(0..cfg.clients);
        Op {
            from,
            to,
            cross,
            protected: rng.gen_bool(cfg.protected.clamp(0.0, 1.0)),
            resolve: rng.gen_bool(cfg.resolve.clamp(0.0, 1.0)),
        }
    }

    fn category(&self) -> String {
        format!(
            "{}/{}/{}",
            if self.cross { "cross" } else { "within" },
            if self.protected {
                "protected"
            } else {
                "public"
            },
            if self.resolve { "resolve" } else { "call" }
        )
    }

    async fn execute(&self, members: &[Member], payload: usize, timeout: Duration) -> Outcome {
        let caller = &members[self.from].client;
        let callee = &members[self.to].client;
        let svc = if self.protected { PROTECTED } else { PUBLIC };
        let addr = format!("{}/{}", callee.workspace(), callee.client_id());
        let must_refuse = self.cross && self.protected;
        let result = if self.resolve {
            let sid = format!("{addr}:{svc}");
            caller
                .call(
                    &caller.manager(),
                    "services.default.get_service",
                    vec![sid.into()],
                    timeout,
                )
                .await
                .map(|svc| {
                    let target = get(&svc, "echo").and_then(|m| get_str(m, "_rtarget"));
                    (
                        target == Some(addr.as_str()),
                        format!("resolved to {target:?}"),
                    )
                })
        } else {
            let data: Vec<u8> = (0..payload).map(|_| rand::random()).collect();
            let arg = Value::Binary(data);
            caller
                .call(
                    &addr,
                    &format!("services.{svc}.echo"),
                    vec![arg.clone()],
                    timeout,
                )
                .await
                .map(|v| (v == arg, "a different value came back".to_owned()))
        };
        match (result, must_refuse) {
            (Ok(_), true) => {
                Outcome::Leaked(format!("{} from {}", self.category(), caller.workspace()))
            }
            (Ok((true, _)), false) => Outcome::Ok,
            (Ok((false, why)), false) => {
                Outcome::Error("wrong reply", format!("{}: {why}", self.category()))
            }
            (Err(ClientError::Remote(_)), true) => Outcome::Refused,
            (Err(ClientError::Remote(e)), false) => {
                Outcome::Error("refused unexpectedly", format!("{}: {e}", self.category()))
            }
            (Err(ClientError::Timeout(_)), _) => Outcome::Error(
                "timeout",
                format!("{} unanswered after {timeout:?}", self.category()),
            ),
            (Err(e), _) => Outcome::Error("call failed", format!("{}: {e}", self.category())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_workspace_is_uniform_and_never_the_own() {
        let mut rng = rand::thread_rng();
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            let w = other_workspace(&mut rng, 2, 4);
            assert_ne!(w, 2);
            seen[w] += 1;
        }
        assert_eq!(seen[2], 0);
        for w in [0, 1, 3] {
            assert!(seen[w] > 1000, "{seen:?}");
        }
        assert_eq!(other_workspace(&mut rng, 0, 2), 1);
        assert_eq!(other_workspace(&mut rng, 1, 2), 0);
    }

    #[test]
    fn categories_name_the_expected_outcome() {
        let op = Op {
            from: 0,
            to: 1,
            cross: true,
            protected: true,
            resolve: false,
        };
        assert_eq!(op.category(), "cross/protected/call");
    }
}
