//! rhizo's bundled load generator. It speaks the hypha-rpc wire protocol natively (through
//! `rhizo-client`), so it measures rhizo or any Hypha-compatible server, the reference
//! Python server included, and a bare WebSocket relay as the ceiling of the machine.
//!
//! * [`echo`] — caller/provider pairs, a window of calls in flight, payloads up to the
//!   server's frame limit; the hot path builds frames from templates and matches replies by
//!   header only.
//! * [`connect`] — N clients connect and register a service at once.
//! * [`fanout`] — one publisher broadcasts, N subscribers in its workspace receive.
//! * [`mixed`] — W workspaces × C clients, public and protected services, calls within
//!   and across workspaces at a given rate.
//! * [`idle`] — hold N connections and measure the server's memory per connection.
//! * [`relay`] — the bare relay the echo scenario can target.
//! * [`compare`] — one scenario against several targets, rounds interleaved.
//! * [`stats`], [`progress`], [`report`], [`chart`], [`units`], [`proc`] — measuring and
//!   reporting.
//! * [`cli`] — the command line.
//!
//! Every scenario verifies what comes back; a wrong, missing or unexpected reply is an
//! error, counted by kind in the [`report::RunResult`].

pub mod chart;
pub mod cli;
pub mod compare;
pub mod connect;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod mixed;
pub mod proc;
pub mod progress;
pub mod relay;
pub mod report;
pub mod stats;
pub mod units;

use std::time::Duration;

/// Where a run sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Short name used in summaries and comparisons.
    pub name: String,
    /// The URL as given (`ws://…/ws`, `http://…`, or `relay://host:port`).
    pub url: String,
    /// A bare relay: no handshake, no manager, frames piped to the paired connection.
    pub relay: bool,
    /// Further nodes of the same cluster (URLs as given), for cross-node runs: echo puts
    /// its callers there, fan-out its subscribers, spread by [`Target::node_url`]. Empty:
    /// everything connects to `url`.
    pub nodes: Vec<String>,
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A relay target with further nodes: a relay has no cluster.
    #[error("a relay target cannot have further nodes")]
    RelayNodes,
    /// The URL scheme is not `ws`, `wss`, `http`, `https` or `relay`.
    #[error("unsupported URL {0:?}: use ws://host:port/ws, http://host:port or relay://host:port")]
    Scheme(String),
    /// The host is not a loopback address and `--allow-remote` was not given.
    #[error(
        "{0} is not a loopback address; load runs target this machine only \
         (pass --allow-remote to override)"
    )]
    NotLoopback(String),
}

// === impl Target ===

impl Target {
    /// Parses `NAME=URL` or a bare `URL` (then the name is `host:port`, or `relay`).
    /// `NAME=URL,NODE_URL,…` names further nodes of the same cluster (see
    /// [`Target::nodes`]): `cross=ws://127.0.0.1:9601/ws,ws://127.0.0.1:9602/ws` keeps
    /// providers (or the publisher) on the first node and the other side on the second.
    ///
    /// Errors: [`TargetError::Scheme`] for any of the URLs, [`TargetError::RelayNodes`].
    pub fn parse(spec: &str) -> Result<Self, TargetError> {
        let (name, urls) = match spec.split_once('=') {
            Some((n, u)) if !n.contains("://") => (Some(n.to_owned()), u),
            _ => (None, spec),
        };
        let mut urls = urls.split(',').map(str::trim);
        let url = urls.next().unwrap_or_default();
        let nodes: Vec<String> = urls.map(str::to_owned).collect();
        let known = ["ws://", "wss://", "http://", "https://", "relay://"];
        for u in std::iter::once(url).chain(nodes.iter().map(String::as_str)) {
            if !known.iter().any(|s| u.starts_with(s)) {
                return Err(TargetError::Scheme(u.to_owned()));
            }
        }
        let relay = url.starts_with("relay://");
        if (relay || nodes.iter().any(|n| n.starts_with("relay://"))) && !nodes.is_empty() {
            return Err(TargetError::RelayNodes);
        }
        let name = name.unwrap_or_else(|| {
            if relay {
                "relay".to_owned()
            } else {
                authority_of(url).to_owned()
            }
        });
        Ok(Target {
            name,
            url: url.to_owned(),
            relay,
            nodes,
        })
    }

    /// The same target with further cluster nodes (the `--node-url` flags).
    ///
    /// Errors: [`TargetError::Scheme`] for a node URL, [`TargetError::RelayNodes`].
    pub fn with_nodes(mut self, nodes: &[String]) -> Result<Self, TargetError> {
        for n in nodes {
            if !["ws://", "wss://", "http://", "https://"]
                .iter()
                .any(|s| n.starts_with(s))
            {
                return Err(if n.starts_with("relay://") {
                    TargetError::RelayNodes
                } else {
                    TargetError::Scheme(n.clone())
                });
            }
        }
        if self.relay && !nodes.is_empty() {
            return Err(TargetError::RelayNodes);
        }
        self.nodes.extend(nodes.iter().cloned());
        Ok(self)
    }

    /// The URL the `i`-th client of the far side (echo caller, fan-out subscriber)
    /// connects to: `nodes[i % nodes.len()]`, round robin, or `url` without nodes.
    pub fn node_url(&self, i: usize) -> String {
        if self.nodes.is_empty() {
            self.ws_url()
        } else {
            self.nodes[i % self.nodes.len()].clone()
        }
    }

    /// Whether the far side connects to other nodes than `url`.
    pub fn is_cluster(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// `url` and the nodes, comma-separated, as [`Target::parse`] reads them.
    pub fn urls(&self) -> String {
        std::iter::once(self.url.as_str())
            .chain(self.nodes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same target, treated as a relay (the `--relay` flag).
    pub fn as_relay(mut self) -> Self {
        self.relay = true;
        self
    }

    /// The WebSocket URL to open: `relay://h:p` becomes `ws://h:p/`; hypha URLs are passed
    /// to the client as given (`http://h:p` becomes `ws://h:p/ws` there).
    pub fn ws_url(&self) -> String {
        match self.url.strip_prefix("relay://") {
            Some(rest) => format!("ws://{}/", rest.trim_end_matches('/')),
            None => self.url.clone(),
        }
    }

    /// Refuses hosts other than `localhost`, `127.0.0.0/8` and `[::1]`.
    ///
    /// Errors: [`TargetError::NotLoopback`].
    pub fn check_loopback(&self) -> Result<(), TargetError> {
        for u in std::iter::once(&self.url).chain(&self.nodes) {
            if !is_loopback(host_of(u)) {
                return Err(TargetError::NotLoopback(host_of(u).to_owned()));
            }
        }
        Ok(())
    }
}

/// `host[:port]` of a URL.
fn authority_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority)
}

/// The host part of a URL (without port, brackets kept for IPv6).
fn host_of(url: &str) -> &str {
    let authority = authority_of(url);
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Settings every scenario shares.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Draw a progress bar (it is hidden anyway when stdout is not a terminal).
    pub progress: bool,
    /// The server's process id, to sample its CPU and memory.
    pub server_pid: Option<u32>,
    /// Prefix of the progress bar, e.g. `[round 2/3] rhizo`.
    pub label: String,
}

/// One scenario with its settings; [`Scenario::run`] runs it against a target.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// See [`echo`].
    Echo(echo::EchoConfig),
    /// See [`connect`].
    Connect(connect::ConnectConfig),
    /// See [`fanout`].
    Fanout(fanout::FanoutConfig),
    /// See [`mixed`].
    Mixed(mixed::MixedConfig),
    /// See [`idle`].
    Idle(idle::IdleConfig),
}

// === impl Scenario ===

impl Scenario {
    /// The scenario's name as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Echo(_) => "echo",
            Scenario::Connect(_) => "connect",
            Scenario::Fanout(_) => "fanout",
            Scenario::Mixed(_) => "mixed",
            Scenario::Idle(_) => "idle",
        }
    }

    /// Runs the scenario against `target`.
    ///
    /// Errors: setting up failed (the server refused the connection, the service could not
    /// be registered or resolved), or a relay target for a scenario other than echo.
    /// Errors during the measured part are counted in the result instead.
    pub async fn run(
        &self,
        target: &Target,
        ctx: &RunContext,
    ) -> anyhow::Result<report::RunResult> {
        if target.relay && !matches!(self, Scenario::Echo(_)) {
            anyhow::bail!("a relay target only supports the echo scenario");
        }
        if target.is_cluster() && !matches!(self, Scenario::Echo(_) | Scenario::Fanout(_)) {
            anyhow::bail!("further nodes (--node-url) are for the echo and fanout scenarios");
        }
        match self {
            Scenario::Echo(c) => echo::run(c, target, ctx).await,
            Scenario::Connect(c) => connect::run(c, target, ctx).await,
            Scenario::Fanout(c) => fanout::run(c, target, ctx).await,
            Scenario::Mixed(c) => mixed::run(c, target, ctx).await,
            Scenario::Idle(c) => idle::run(c, target, ctx).await,
        }
    }
}

/// Default time allowed for one operation (a call, a connection) before it counts as an
/// error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A random suffix for client ids, so that runs do not collide with each other.
pub(crate) fn run_tag() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// Runs `f` over `items` with at most `limit` at a time, returning the outputs in order.
pub(crate) async fn bounded<T, F, Fut, O>(items: Vec<T>, limit: usize, f: F) -> Vec<O>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = O>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items.into_iter().map(f))
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("rhizo=ws://127.0.0.1:9527/ws").unwrap();
        assert_eq!(t.name, "rhizo");
        assert!(!t.relay);
        assert_eq!(t.ws_url(), "ws://127.0.0.1:9527/ws");
        let t = Target::parse("relay://127.0.0.1:9600").unwrap();
        assert_eq!(t.name, "relay");
        assert!(t.relay);
        assert_eq!(t.ws_url(), "ws://127.0.0.1:9600/");
        let t = Target::parse("http://localhost:9527").unwrap();
        assert_eq!(t.name, "localhost:9527");
        assert!(Target::parse("ftp://x").is_err());
        let t = Target::parse("ws://127.0.0.1:1/ws").unwrap().as_relay();
        assert!(t.relay);
    }

    #[test]
    fn parses_cluster_targets() {
        let t = Target::parse("cross=ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws, ws://127.0.0.1:3/ws")
            .unwrap();
        assert_eq!(t.name, "cross");
        assert_eq!(t.url, "ws://127.0.0.1:1/ws");
        assert_eq!(t.nodes, vec!["ws://127.0.0.1:2/ws", "ws://127.0.0.1:3/ws"]);
        assert!(t.is_cluster());
        assert_eq!(
            t.urls(),
            "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws,ws://127.0.0.1:3/ws"
        );
        assert_eq!(Target::parse(&format!("cross={}", t.urls())).unwrap(), t);
        // A bare list is named after its first node.
        let t = Target::parse("ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws").unwrap();
        assert_eq!(t.name, "127.0.0.1:1");
        assert!(Target::parse("x=ws://127.0.0.1:1/ws,ftp://y").is_err());
        assert_eq!(
            Target::parse("relay://127.0.0.1:1,ws://127.0.0.1:2/ws"),
            Err(TargetError::RelayNodes)
        );
        assert_eq!(
            Target::parse("ws://127.0.0.1:1/ws,relay://127.0.0.1:2"),
            Err(TargetError::RelayNodes)
        );
        let t = Target::parse("ws://127.0.0.1:1/ws")
            .unwrap()
            .with_nodes(&["ws://127.0.0.1:2/ws".into()])
            .unwrap();
        assert_eq!(t.nodes, vec!["ws://127.0.0.1:2/ws"]);
        assert!(Target::parse("relay://127.0.0.1:1")
            .unwrap()
            .with_nodes(&["ws://127.0.0.1:2/ws".into()])
            .is_err());
        assert!(Target::parse("ws://127.0.0.1:1/ws")
            .unwrap()
            .with_nodes(&["relay://127.0.0.1:2".into()])
            .is_err());
        // A remote node is refused like a remote first URL.
        let t = Target::parse("ws://127.0.0.1:1/ws,ws://10.0.0.1:2/ws").unwrap();
        assert_eq!(
            t.check_loopback(),
            Err(TargetError::NotLoopback("10.0.0.1".into()))
        );
    }

    #[test]
    fn spreads_the_far_side_round_robin() {
        let single = Target::parse("ws://127.0.0.1:1/ws").unwrap();
        assert!(!single.is_cluster());
        assert!((0..4).all(|i| single.node_url(i) == "ws://127.0.0.1:1/ws"));
        let t =
            Target::parse("c=ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws,ws://127.0.0.1:3/ws").unwrap();
        let spread: Vec<String> = (0..5).map(|i| t.node_url(i)).collect();
        assert_eq!(
            spread,
            [2, 3, 2, 3, 2].map(|p| format!("ws://127.0.0.1:{p}/ws"))
        );
        // Listing the first node among the nodes keeps some of the far side there.
        let t =
            Target::parse("c=ws://127.0.0.1:1/ws,ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws").unwrap();
        assert_eq!(t.node_url(0), "ws://127.0.0.1:1/ws");
        assert_eq!(t.node_url(1), "ws://127.0.0.1:2/ws");
    }

    #[test]
    fn only_loopback_unless_allowed() {
        for ok in [
            "ws://127.0.0.1:9527/ws",
            "ws://127.1.2.3:1/ws",
            "http://localhost:9527",
            "ws://[::1]:9527/ws",
            "relay://127.0.0.1:9600",
        ] {
            assert!(Target::parse(ok).unwrap().check_loopback().is_ok(), "{ok}");
        }
        for bad in [
            "ws://10.0.0.1:9527/ws",
            "http://example.com",
            "ws://[::2]:1/ws",
        ] {
            assert!(
                Target::parse(bad).unwrap().check_loopback().is_err(),
                "{bad}"
            );
        }
    }
}
