//! The `rhizo-loadtest` command line: one subcommand per scenario, `relay`, and `compare`.
//!
//! Bad usage exits with 64 (EX_USAGE) before any connection is made; a run whose
//! verification found errors exits with 1, so that scripts notice.

use crate::compare::{self, CompareConfig};
use crate::connect::ConnectConfig;
use crate::echo::EchoConfig;
use crate::fanout::FanoutConfig;
use crate::idle::IdleConfig;
use crate::mixed::MixedConfig;
use crate::report::Report;
use crate::units::{format_size, parse_duration, parse_size};
use crate::{chart, relay, RunContext, Scenario, Target};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code for bad usage (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Exit code when a run counted errors.
pub const EXIT_ERRORS: u8 = 1;

const ABOUT: &str = "Load generator for rhizo and any Hypha-compatible server (the reference \
Python server included): echo, connect, fan-out, mixed and idle scenarios, a bare WebSocket \
relay as the machine's ceiling, and side-by-side comparisons. Prints throughput and HDR latency \
percentiles; writes a JSON report (--report) and an SVG chart (--chart). Targets must be \
loopback addresses unless --allow-remote is given.";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "rhizo-loadtest", version, about = ABOUT)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Caller/provider pairs calling `echo` with a window of calls in flight.
    Echo {
        #[command(flatten)]
        /// Where to send the load.
        target: TargetArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: EchoArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// N clients connect and register a service at once.
    Connect {
        #[command(flatten)]
        /// Where to send the load.
        target: TargetArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: ConnectArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// One publisher broadcasts to N subscribers in its workspace.
    Fanout {
        #[command(flatten)]
        /// Where to send the load.
        target: TargetArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: FanoutArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// W workspaces × C clients calling public and protected services within and across
    /// workspaces at a fixed rate (cross-workspace protected calls must be refused).
    Mixed {
        #[command(flatten)]
        /// Where to send the load.
        target: TargetArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: MixedArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Hold N idle connections; with --server-pid, report server memory per connection.
    Idle {
        #[command(flatten)]
        /// Where to send the load.
        target: TargetArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: IdleArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Run a bare WebSocket relay (connections paired in arrival order, 1st<->2nd,
    /// 3rd<->4th, ...) for `echo --url relay://HOST:PORT`.
    Relay(RelayArgs),
    /// Run one scenario against several targets, rounds interleaved, and print medians and
    /// ratios.
    Compare {
        /// The scenario to compare.
        #[command(subcommand)]
        scenario: CompareScenario,
    },
}

/// Scenarios `compare` can run.
#[derive(Debug, Subcommand)]
pub enum CompareScenario {
    /// Compare the echo scenario.
    Echo {
        #[command(flatten)]
        /// Targets and rounds.
        cmp: CompareArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: EchoArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Compare the connect scenario.
    Connect {
        #[command(flatten)]
        /// Targets and rounds.
        cmp: CompareArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: ConnectArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Compare the fan-out scenario.
    Fanout {
        #[command(flatten)]
        /// Targets and rounds.
        cmp: CompareArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: FanoutArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Compare the mixed scenario.
    Mixed {
        #[command(flatten)]
        /// Targets and rounds.
        cmp: CompareArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: MixedArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
    /// Compare the idle scenario.
    Idle {
        #[command(flatten)]
        /// Targets and rounds.
        cmp: CompareArgs,
        #[command(flatten)]
        /// Scenario settings.
        args: IdleArgs,
        #[command(flatten)]
        /// Reports and display.
        out: OutputArgs,
    },
}

/// Where to send the load.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Server URL: ws://HOST:PORT/ws, http://HOST:PORT (becomes ws://HOST:PORT/ws), or
    /// relay://HOST:PORT for a bare relay (echo only).
    #[arg(long, default_value = "ws://127.0.0.1:9527/ws")]
    pub url: String,
    /// Treat --url as a bare relay: no handshake, no manager (echo only).
    #[arg(long)]
    pub relay: bool,
    /// Further nodes of the same cluster, for cross-node runs (repeat, or comma-separated;
    /// echo and fanout only). echo: the providers stay on --url and pair i's caller
    /// connects to node i mod N (alias --caller-url); fanout: the publisher stays on --url
    /// and subscriber i connects to node i mod N. List --url among them too to keep part
    /// of that side on the first node.
    #[arg(
        long = "node-url",
        visible_alias = "caller-url",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub node_urls: Vec<String>,
    /// Server process id: report its CPU time and resident memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Reports and display.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write an SVG chart here (latency percentiles, throughput over time).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Never draw a progress bar (it is hidden anyway when stdout is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Echo flags.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Caller/provider pairs (two connections each).
    #[arg(long, default_value_t = 4)]
    pub pairs: usize,
    /// Calls each caller keeps outstanding.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Payload per call: 128, 1KiB, 1MiB, 16MiB, … Sent as one frame (no message_cache
    /// chunking), so it is clamped to --max-frame minus 1 KiB for headers: 16MiB becomes
    /// 16 MiB - 1 KiB against the default 16 MiB frame limit of rhizo and the reference.
    #[arg(long, default_value = "128", value_parser = size_arg)]
    pub payload: u64,
    /// How long to keep calling (e.g. 20s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Stop after this many calls in total (whichever comes first with --duration).
    #[arg(long)]
    pub calls: Option<u64>,
    /// A call without a reply for this long is an error.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// The server's frame limit (rhizo --max-frame-bytes; the reference: 16 MiB).
    #[arg(long, default_value = "16MiB", value_parser = size_arg)]
    pub max_frame: u64,
}

/// Connect flags.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Clients to connect.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Most handshakes under way at once (0 = all at once).
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// All clients join one workspace with a token, instead of one anonymous workspace
    /// each.
    #[arg(long)]
    pub same_workspace: bool,
    /// Registered services to resolve afterwards as a check.
    #[arg(long, default_value_t = 10)]
    pub verify: usize,
    /// Time allowed for one client.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
}

/// Fan-out flags.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscribers in the publisher's workspace.
    #[arg(long, default_value_t = 50)]
    pub subscribers: usize,
    /// Messages per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Stop after this many messages.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Padding bytes per message.
    #[arg(long, default_value = "64", value_parser = size_arg)]
    pub payload: u64,
    /// Time a message may take to reach every subscriber.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// Extra subscribers that subscribe and then never read their socket (slow
    /// consumers); the report shows the healthy subscribers' latency beside them and,
    /// with `--server-pid`, how far server memory grew.
    #[arg(long, default_value_t = 0)]
    pub stuck: usize,
}

/// Mixed flags.
#[derive(Debug, Args)]
pub struct MixedArgs {
    /// Workspaces.
    #[arg(long, default_value_t = 4)]
    pub workspaces: usize,
    /// Clients per workspace.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Fraction of operations across workspaces.
    #[arg(long, default_value_t = 0.5)]
    pub cross: f64,
    /// Fraction of operations on the protected service.
    #[arg(long, default_value_t = 0.3)]
    pub protected: f64,
    /// Fraction of operations that resolve through the manager's get_service.
    #[arg(long, default_value_t = 0.05)]
    pub resolve: f64,
    /// Payload bytes per call.
    #[arg(long, default_value = "64", value_parser = size_arg)]
    pub payload: u64,
    /// Most operations outstanding at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Time allowed for one operation.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub timeout: Duration,
}

/// Idle flags.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// How long to hold them.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Most handshakes under way at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// All connections join one workspace with a token.
    #[arg(long)]
    pub same_workspace: bool,
    /// Time allowed for one connection.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
}

/// Relay flags.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 9600)]
    pub port: u16,
    /// Stop by itself after this long (default: run until interrupted).
    #[arg(long, value_parser = duration_arg)]
    pub lifetime: Option<Duration>,
    /// Allow a non-loopback listen address.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Compare flags.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A target as NAME=URL (repeat; the first is the baseline). Name one `relay`
    /// (relay://HOST:PORT) and one `reference` to get ratios against them too.
    /// NAME=URL,NODE_URL,… is a cluster target (echo, fanout): providers or the publisher
    /// on URL, callers or subscribers spread over the NODE_URLs as with --node-url.
    #[arg(long = "target", required = true, value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// Rounds; each runs every target once, interleaved.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Pause between runs.
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub pause: Duration,
    /// Server process id of a target, as NAME=PID (repeat), for CPU per operation.
    #[arg(long = "pid", value_name = "NAME=PID")]
    pub pids: Vec<String>,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

// === conversions ===

impl EchoArgs {
    /// The scenario settings.
    pub fn config(&self) -> EchoConfig {
        EchoConfig {
            pairs: self.pairs,
            in_flight: self.in_flight,
            payload: self.payload as usize,
            duration: self.duration,
            calls: self.calls,
            timeout: self.timeout,
            max_frame: self.max_frame as usize,
        }
    }
}

impl ConnectArgs {
    /// The scenario settings.
    pub fn config(&self) -> ConnectConfig {
        ConnectConfig {
            clients: self.clients,
            concurrency: if self.concurrency == 0 {
                self.clients.max(1)
            } else {
                self.concurrency
            },
            same_workspace: self.same_workspace,
            verify: self.verify,
            timeout: self.timeout,
        }
    }
}

impl FanoutArgs {
    /// The scenario settings.
    pub fn config(&self) -> FanoutConfig {
        FanoutConfig {
            subscribers: self.subscribers,
            rate: self.rate,
            duration: self.duration,
            messages: self.messages,
            payload: self.payload as usize,
            timeout: self.timeout,
            stuck: self.stuck,
        }
    }
}

impl MixedArgs {
    /// The scenario settings.
    pub fn config(&self) -> MixedConfig {
        MixedConfig {
            workspaces: self.workspaces,
            clients: self.clients,
            rate: self.rate,
            duration: self.duration,
            cross: self.cross,
            protected: self.protected,
            resolve: self.resolve,
            payload: self.payload as usize,
            in_flight: self.in_flight,
            timeout: self.timeout,
        }
    }
}

impl IdleArgs {
    /// The scenario settings; `server_pid` comes from the target flags.
    pub fn config(&self, server_pid: Option<u32>) -> IdleConfig {
        IdleConfig {
            clients: self.clients,
            duration: self.duration,
            concurrency: self.concurrency.max(1),
            same_workspace: self.same_workspace,
            server_pid,
            timeout: self.timeout,
        }
    }
}

/// A scenario's settings in words, for summaries and markdown rows.
pub fn describe(s: &Scenario) -> String {
    match s {
        Scenario::Echo(c) => format!(
            "{} pairs × {} in flight, {} payload",
            c.pairs,
            c.in_flight,
            format_size(c.effective_payload() as u64)
        ),
        Scenario::Connect(c) => format!(
            "{} clients{}",
            c.clients,
            if c.same_workspace {
                ", one workspace"
            } else {
                ", own workspaces"
            }
        ),
        Scenario::Fanout(c) => format!("{} subscribers, {} msg/s", c.subscribers, c.rate),
        Scenario::Mixed(c) => format!(
            "{} ws × {} clients, {} ops/s, {:.0}% cross, {:.0}% protected",
            c.workspaces,
            c.clients,
            c.rate,
            c.cross * 100.0,
            c.protected * 100.0
        ),
        Scenario::Idle(c) => format!("{} connections", c.clients),
    }
}

/// Parses `NAME=PID`.
fn parse_pid(spec: &str) -> Result<(String, u32), String> {
    let (n, p) = spec
        .split_once('=')
        .ok_or_else(|| format!("--pid {spec:?}: expected NAME=PID"))?;
    let pid = p
        .parse()
        .map_err(|_| format!("--pid {spec:?}: not a process id"))?;
    Ok((n.to_owned(), pid))
}

/// A validated plan: what `main` will run.
#[derive(Debug)]
pub enum Plan {
    /// One scenario against one target.
    Single {
        /// The scenario and its settings.
        scenario: Scenario,
        /// Where to send the load.
        target: Target,
        /// Progress bar and server pid.
        ctx: RunContext,
        /// Report and chart paths.
        out: Outputs,
    },
    /// One scenario against several targets.
    Compare {
        /// The scenario and its settings.
        scenario: Scenario,
        /// Targets, rounds, pids.
        cfg: CompareConfig,
        /// Progress bar.
        ctx: RunContext,
        /// Report and chart paths.
        out: Outputs,
    },
    /// The relay.
    Relay {
        /// Listen address.
        host: String,
        /// Listen port (0: any).
        port: u16,
        /// Stop by itself after this long.
        lifetime: Option<Duration>,
    },
}

/// Where results go.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// JSON report path.
    pub report: Option<PathBuf>,
    /// SVG chart path.
    pub chart: Option<PathBuf>,
}

/// Turns parsed arguments into a [`Plan`], checking targets.
///
/// Errors: a message for the user (bad URL, non-loopback target, relay with a scenario
/// other than echo, malformed `--pid`).
pub fn plan(cli: Cli) -> Result<Plan, String> {
    let single = |scenario: Scenario, t: TargetArgs, out: OutputArgs| -> Result<Plan, String> {
        let mut target = Target::parse(&t.url).map_err(|e| e.to_string())?;
        if t.relay {
            target = target.as_relay();
        }
        if target.relay && !matches!(scenario, Scenario::Echo(_)) {
            return Err("--relay / relay:// targets only support the echo scenario".into());
        }
        target = target.with_nodes(&t.node_urls).map_err(|e| e.to_string())?;
        check_nodes(&scenario, &target)?;
        if !out.allow_remote {
            target.check_loopback().map_err(|e| e.to_string())?;
        }
        Ok(Plan::Single {
            scenario,
            target,
            ctx: RunContext {
                progress: !out.no_progress,
                server_pid: t.server_pid,
                label: String::new(),
            },
            out: Outputs {
                report: out.report,
                chart: out.chart,
            },
        })
    };
    let compare = |scenario: Scenario, c: CompareArgs, out: OutputArgs| -> Result<Plan, String> {
        let mut targets = Vec::new();
        for spec in &c.targets {
            let t = Target::parse(spec).map_err(|e| e.to_string())?;
            if !out.allow_remote {
                t.check_loopback().map_err(|e| e.to_string())?;
            }
            check_nodes(&scenario, &t)?;
            if targets.iter().any(|x: &Target| x.name == t.name) {
                return Err(format!("two targets are named {:?}", t.name));
            }
            targets.push(t);
        }
        let pids = c
            .pids
            .iter()
            .map(|p| parse_pid(p))
            .collect::<Result<_, _>>()?;
        if c.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        Ok(Plan::Compare {
            scenario,
            cfg: CompareConfig {
                targets,
                pids,
                rounds: c.rounds,
                pause: c.pause,
            },
            ctx: RunContext {
                progress: !out.no_progress,
                server_pid: None,
                label: String::new(),
            },
            out: Outputs {
                report: out.report,
                chart: out.chart,
            },
        })
    };
    match cli.command {
        Command::Echo { target, args, out } => single(Scenario::Echo(args.config()), target, out),
        Command::Connect { target, args, out } => {
            single(Scenario::Connect(args.config()), target, out)
        }
        Command::Fanout { target, args, out } => {
            single(Scenario::Fanout(args.config()), target, out)
        }
        Command::Mixed { target, args, out } => single(Scenario::Mixed(args.config()), target, out),
        Command::Idle { target, args, out } => {
            let pid = target.server_pid;
            single(Scenario::Idle(args.config(pid)), target, out)
        }
        Command::Relay(r) => {
            let host_ok = r.host == "localhost"
                || r.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !host_ok && !r.allow_remote {
                return Err(format!("--host {} is not a loopback address", r.host));
            }
            Ok(Plan::Relay {
                host: r.host,
                port: r.port,
                lifetime: r.lifetime,
            })
        }
        Command::Compare { scenario } => match scenario {
            CompareScenario::Echo { cmp, args, out } => {
                compare(Scenario::Echo(args.config()), cmp, out)
            }
            CompareScenario::Connect { cmp, args, out } => {
                compare(Scenario::Connect(args.config()), cmp, out)
            }
            CompareScenario::Fanout { cmp, args, out } => {
                compare(Scenario::Fanout(args.config()), cmp, out)
            }
            CompareScenario::Mixed { cmp, args, out } => {
                compare(Scenario::Mixed(args.config()), cmp, out)
            }
            CompareScenario::Idle { cmp, args, out } => {
                compare(Scenario::Idle(args.config(None)), cmp, out)
            }
        },
    }
}

/// Refuses further nodes for scenarios other than echo and fanout.
fn check_nodes(scenario: &Scenario, target: &Target) -> Result<(), String> {
    if target.is_cluster() && !matches!(scenario, Scenario::Echo(_) | Scenario::Fanout(_)) {
        return Err(format!(
            "further nodes (--node-url, NAME=URL,URL…) are for echo and fanout, not {}",
            scenario.name()
        ));
    }
    Ok(())
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let plan = match plan(cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = crate::proc::raise_nofile() {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(plan)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a plan, prints the summary and writes the report and chart.
///
/// Errors: set-up of a single run failed, or an output file could not be written.
pub async fn execute(plan: Plan) -> anyhow::Result<ExitCode> {
    match plan {
        Plan::Relay {
            host,
            port,
            lifetime,
        } => {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
            println!(
                "relay listening on ws://{}/ (relay://{0})",
                listener.local_addr()?
            );
            let stats = Arc::new(relay::RelayStats::default());
            let serve = relay::serve(listener, stats.clone());
            let stop = async {
                match lifetime {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = serve => r?,
                _ = stop => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let s = &stats;
            println!(
                "relay done: {} connections, {} pairs, {} messages",
                s.accepted.load(std::sync::atomic::Ordering::Relaxed),
                s.pairs.load(std::sync::atomic::Ordering::Relaxed),
                s.messages.load(std::sync::atomic::Ordering::Relaxed)
            );
            Ok(ExitCode::SUCCESS)
        }
        Plan::Single {
            scenario,
            target,
            ctx,
            out,
        } => {
            println!(
                "{} -> {} ({}): {}",
                scenario.name(),
                target.name,
                target.urls(),
                describe(&scenario)
            );
            let r = scenario.run(&target, &ctx).await?;
            print!("{}", r.summary());
            if let Some(path) = &out.chart {
                chart::write_run(path, &r)?;
                println!("chart: {}", path.display());
            }
            let errors = r.errors;
            if let Some(path) = &out.report {
                let mut rep = Report::new(scenario.name());
                rep.result = Some(r);
                rep.write(path)?;
                println!("report: {}", path.display());
            }
            Ok(if errors > 0 {
                ExitCode::from(EXIT_ERRORS)
            } else {
                ExitCode::SUCCESS
            })
        }
        Plan::Compare {
            scenario,
            cfg,
            ctx,
            out,
        } => {
            let setup = describe(&scenario);
            println!(
                "compare {} ({setup}) over {} rounds: {}",
                scenario.name(),
                cfg.rounds,
                cfg.targets
                    .iter()
                    .map(|t| format!("{}={}", t.name, t.urls()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let c = compare::run(&scenario, &cfg, &ctx, &setup, |label, r| match r {
                Ok(r) => println!(
                    "{label}: {} {}/s, p50 {}, p99 {}, {} errors",
                    crate::units::format_count(r.throughput_per_s),
                    r.op.trim_end_matches('s'),
                    crate::units::format_us(r.latency.p50_us),
                    crate::units::format_us(r.latency.p99_us),
                    r.errors
                ),
                Err(e) => println!("{label}: failed: {e:#}"),
            })
            .await;
            print!("{}", compare::print_summary(&c));
            if let Some(path) = &out.chart {
                chart::write_compare(path, &c)?;
                println!("chart: {}", path.display());
            }
            let errors: u64 = c.targets.iter().map(|t| t.median.errors).sum();
            let failed = c.targets.iter().any(|t| !t.failures.is_empty());
            if let Some(path) = &out.report {
                let mut rep = Report::new(scenario.name());
                rep.compare = Some(c);
                rep.write(path)?;
                println!("report: {}", path.display());
            }
            Ok(if errors > 0 || failed {
                ExitCode::from(EXIT_ERRORS)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Plan, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("rhizo-loadtest").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        plan(cli)
    }

    #[test]
    fn echo_flags_from_the_issue() {
        let p = parse(&[
            "echo",
            "--url",
            "ws://127.0.0.1:9527/ws",
            "--pairs",
            "4",
            "--in-flight",
            "64",
            "--payload",
            "128",
            "--duration",
            "20s",
        ])
        .unwrap();
        let Plan::Single {
            scenario: Scenario::Echo(c),
            target,
            ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!((c.pairs, c.in_flight, c.payload), (4, 64, 128));
        assert_eq!(c.duration, Duration::from_secs(20));
        assert!(!target.relay);
        let p = parse(&["echo", "--payload", "16MiB"]).unwrap();
        let Plan::Single {
            scenario: Scenario::Echo(c),
            ..
        } = p
        else {
            panic!()
        };
        assert_eq!(c.payload, 16 << 20);
        assert_eq!(
            c.effective_payload(),
            (16 << 20) - crate::echo::FRAME_HEADROOM
        );
    }

    #[test]
    fn relay_targets() {
        let p = parse(&["echo", "--url", "relay://127.0.0.1:9600"]).unwrap();
        let Plan::Single { target, .. } = p else {
            panic!()
        };
        assert!(target.relay);
        let p = parse(&["echo", "--url", "ws://127.0.0.1:9600/", "--relay"]).unwrap();
        let Plan::Single { target, .. } = p else {
            panic!()
        };
        assert!(target.relay);
        assert!(parse(&["connect", "--url", "relay://127.0.0.1:9600"]).is_err());
    }

    #[test]
    fn refuses_remote_targets() {
        let e = parse(&["echo", "--url", "ws://192.168.1.5:9527/ws"]).unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        assert!(parse(&["relay", "--host", "0.0.0.0"]).is_err());
        assert!(parse(&["relay", "--port", "0"]).is_ok());
    }

    #[test]
    fn compare_flags() {
        let p = parse(&[
            "compare",
            "echo",
            "--target",
            "rhizo=ws://127.0.0.1:9527/ws",
            "--target",
            "reference=ws://127.0.0.1:9528/ws",
            "--target",
            "relay=relay://127.0.0.1:9600",
            "--rounds",
            "3",
            "--duration",
            "10s",
            "--pairs",
            "2",
            "--pid",
            "rhizo=123",
        ])
        .unwrap();
        let Plan::Compare {
            scenario: Scenario::Echo(c),
            cfg,
            ..
        } = p
        else {
            panic!()
        };
        assert_eq!(c.pairs, 2);
        assert_eq!(cfg.rounds, 3);
        assert_eq!(cfg.targets.len(), 3);
        assert!(cfg.targets[2].relay);
        assert_eq!(cfg.pids, vec![("rhizo".to_owned(), 123)]);
        assert!(parse(&["compare", "echo"]).is_err(), "a target is required");
        assert!(parse(&[
            "compare",
            "echo",
            "--target",
            "a=ws://127.0.0.1:1/ws",
            "--target",
            "a=ws://127.0.0.1:2/ws"
        ])
        .is_err());
        assert!(parse(&[
            "compare",
            "echo",
            "--target",
            "a=ws://127.0.0.1:1/ws",
            "--pid",
            "a"
        ])
        .is_err());
    }

    #[test]
    fn cross_node_flags() {
        // echo: providers on --url, callers on the other node(s).
        let p = parse(&[
            "echo",
            "--url",
            "ws://127.0.0.1:9601/ws",
            "--caller-url",
            "ws://127.0.0.1:9602/ws",
        ])
        .unwrap();
        let Plan::Single { target, .. } = p else {
            panic!()
        };
        assert_eq!(target.url, "ws://127.0.0.1:9601/ws");
        assert_eq!(target.nodes, vec!["ws://127.0.0.1:9602/ws"]);
        assert_eq!(target.node_url(0), "ws://127.0.0.1:9602/ws");
        // fanout: repeated and comma-separated --node-url add up, in order.
        let p = parse(&[
            "fanout",
            "--url",
            "ws://127.0.0.1:9601/ws",
            "--node-url",
            "ws://127.0.0.1:9602/ws,ws://127.0.0.1:9603/ws",
            "--node-url",
            "ws://127.0.0.1:9601/ws",
        ])
        .unwrap();
        let Plan::Single {
            scenario: Scenario::Fanout(_),
            target,
            ..
        } = p
        else {
            panic!()
        };
        let ports: Vec<String> = (0..4).map(|i| target.node_url(i)).collect();
        assert_eq!(
            ports,
            [9602, 9603, 9601, 9602].map(|p| format!("ws://127.0.0.1:{p}/ws"))
        );
        // Not for other scenarios, not with a relay, not to remote nodes.
        let e = parse(&["connect", "--node-url", "ws://127.0.0.1:2/ws"]).unwrap_err();
        assert!(e.contains("echo and fanout"), "{e}");
        assert!(parse(&[
            "echo",
            "--url",
            "relay://127.0.0.1:9600",
            "--node-url",
            "ws://127.0.0.1:2/ws"
        ])
        .is_err());
        let e = parse(&["echo", "--node-url", "ws://10.1.1.1:2/ws"]).unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        assert!(parse(&["echo", "--node-url", "ftp://127.0.0.1:2"]).is_err());
        // compare: a cluster target beside a single-node one.
        let p = parse(&[
            "compare",
            "echo",
            "--target",
            "single=ws://127.0.0.1:9600/ws",
            "--target",
            "cross=ws://127.0.0.1:9601/ws,ws://127.0.0.1:9602/ws",
        ])
        .unwrap();
        let Plan::Compare { cfg, .. } = p else {
            panic!()
        };
        assert!(!cfg.targets[0].is_cluster());
        assert_eq!(cfg.targets[1].nodes, vec!["ws://127.0.0.1:9602/ws"]);
        assert!(parse(&[
            "compare",
            "mixed",
            "--target",
            "cross=ws://127.0.0.1:9601/ws,ws://127.0.0.1:9602/ws",
        ])
        .is_err());
    }

    #[test]
    fn other_scenarios_parse() {
        let p = parse(&["connect", "--clients", "10"]).unwrap();
        let Plan::Single {
            scenario: Scenario::Connect(c),
            ..
        } = p
        else {
            panic!()
        };
        assert_eq!(c.concurrency, 10, "0 means all at once");
        let p = parse(&["idle", "--clients", "5", "--server-pid", "42"]).unwrap();
        let Plan::Single {
            scenario: Scenario::Idle(c),
            ..
        } = p
        else {
            panic!()
        };
        assert_eq!(c.server_pid, Some(42));
        assert!(parse(&["fanout", "--subscribers", "3", "--rate", "10"]).is_ok());
        assert!(parse(&["mixed", "--workspaces", "2", "--clients", "2"]).is_ok());
        assert!(parse(&["echo", "--payload", "lots"]).is_err());
    }
}
