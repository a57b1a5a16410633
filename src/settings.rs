//! The settings of `rhizo serve`: one clap-derived struct whose fields carry their flag, their
//! `HYPHA_*` environment name and their default, each defined here once (STYLE.md practice
//! 17), shown by `--help` in groups (Network, Auth, …). [`Settings::validate`] checks them
//! before anything is bound; a bad value is an error with the flag's name, never silently
//! clamped. [`TokenArgs`] are the flags of `rhizo token`, which signs as the server would.
//!
//! Flags follow the reference server's names where they mean the same thing; every flag
//! can also be given as `HYPHA_<FLAG>` in the environment, as with the reference's
//! `--from-env`.

use clap::{Args, Parser};
use rhizo_control_plane::config::Limits;
use rhizo_control_plane::ServerConfig;
use rhizo_protocol::token::ClaimFormat;
use rhizo_protocol::user::Permission;
use rhizo_router::rate::MsgRate;
use rhizo_router::RouterConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// The groups of `rhizo serve --help`.
const NETWORK: &str = "Network";
const AUTH: &str = "Auth";
const STORAGE: &str = "Storage";
const CLUSTER: &str = "Cluster (Redis)";
const S3: &str = "S3";
const APPS: &str = "Server apps & workers";
const FEATURES: &str = "Features";
const LIMITS: &str = "Limits";

/// Settings of one server instance (router and control plane in one process).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "HYPHA_HOST", default_value = "127.0.0.1", help_heading = NETWORK)]
    pub host: String,
    /// Port to listen on (0 picks a free port; the chosen one is logged).
    #[arg(long, env = "HYPHA_PORT", default_value_t = 9527, help_heading = NETWORK)]
    pub port: u16,
    /// Serve everything under this path prefix, e.g. `/hypha`.
    #[arg(long, env = "HYPHA_BASE_PATH", default_value = "/", help_heading = NETWORK)]
    pub base_path: String,
    /// URL clients use to reach this server; default `http://<host>:<port><base-path>`.
    #[arg(long, env = "HYPHA_PUBLIC_BASE_URL", help_heading = NETWORK)]
    pub public_base_url: Option<String>,
    /// Server id; the manager is `manager-<server-id>`. Random when not given.
    #[arg(long, env = "HYPHA_SERVER_ID", help_heading = NETWORK)]
    pub server_id: Option<String>,
    /// Opaque root token (at least 32 characters) that authenticates as the root user.
    #[arg(long, env = "HYPHA_ROOT_TOKEN", hide_env_values = true, help_heading = AUTH)]
    pub root_token: Option<String>,
    /// HS256 secret of tokens; else `JWT_SECRET`, else one generated once and kept in
    /// `<data-dir>/jwt-secret`.
    #[arg(long, env = "HYPHA_JWT_SECRET", hide_env_values = true, help_heading = AUTH)]
    pub jwt_secret: Option<String>,
    /// Lifetime of reconnection tokens, seconds.
    #[arg(long, env = "RECONNECTION_TOKEN_LIFE_TIME", default_value_t = ServerConfig::default().reconnection_token_life_time, help_heading = AUTH)]
    pub reconnection_token_life_time: u64,
    /// Token issuer claim.
    #[arg(long, env = "AUTH0_ISSUER", default_value = rhizo_protocol::token::DEFAULT_ISSUER, help_heading = AUTH)]
    pub jwt_issuer: String,
    /// Token audience claim.
    #[arg(long, env = "AUTH0_AUDIENCE", default_value = rhizo_protocol::token::DEFAULT_AUDIENCE, help_heading = AUTH)]
    pub jwt_audience: String,
    /// Namespace of the roles/email/parent claims.
    #[arg(long, env = "AUTH0_NAMESPACE", default_value = rhizo_protocol::token::DEFAULT_NAMESPACE, help_heading = AUTH)]
    pub jwt_namespace: String,
    /// Directory for local state (the generated token secret, the default database).
    #[arg(long, env = "RHIZO_DATA_DIR", default_value = "./data", help_heading = STORAGE)]
    pub data_dir: PathBuf,
    /// Database for persistent workspaces and token revocations: `sqlite://PATH`
    /// (default `<data-dir>/rhizo.db`), `postgres://user@host/db`, or `memory` (nothing
    /// survives a restart).
    #[arg(long, env = "HYPHA_DATABASE_URI", help_heading = STORAGE)]
    pub database_uri: Option<String>,
    /// Redis shared by the nodes of a cluster, e.g. `redis://127.0.0.1:6379/0`: frames for
    /// clients on other nodes and broadcasts go through it, and it holds the directory of
    /// which node has which client. The node id is the server id. Without it the server
    /// is a single node and nothing leaves the process. An unreachable Redis does not
    /// stop the server: it serves its own clients and reconnects with backoff.
    #[arg(long, env = "HYPHA_REDIS_URI", help_heading = CLUSTER)]
    pub redis_uri: Option<String>,
    /// Prefix of every Redis key and channel of the cluster, so that clusters (or tests)
    /// can share one Redis.
    #[arg(long, env = "RHIZO_REDIS_PREFIX", default_value = "rhizo", help_heading = CLUSTER)]
    pub redis_prefix: String,
    /// Keep artifact files in S3 (artifacts.md §5) instead of under `--data-dir`
    /// (`<data-dir>/artifacts`, the default). Needs `--endpoint-url`,
    /// `--access-key-id` and `--secret-access-key`.
    #[arg(long, env = "HYPHA_ENABLE_S3", help_heading = S3)]
    pub enable_s3: bool,
    /// The S3 endpoint, e.g. `http://127.0.0.1:9000` (path-style addressing).
    #[arg(long, env = "HYPHA_ENDPOINT_URL", help_heading = S3)]
    pub endpoint_url: Option<String>,
    /// The S3 access key id.
    #[arg(long, env = "HYPHA_ACCESS_KEY_ID", hide_env_values = true, help_heading = S3)]
    pub access_key_id: Option<String>,
    /// The S3 secret access key.
    #[arg(long, env = "HYPHA_SECRET_ACCESS_KEY", hide_env_values = true, help_heading = S3)]
    pub secret_access_key: Option<String>,
    /// The S3 region.
    #[arg(long, env = "HYPHA_REGION_NAME", default_value = "us-east-1", help_heading = S3)]
    pub region_name: String,
    /// The bucket holding every workspace's artifact files (created at start-up).
    #[arg(
        long,
        env = "HYPHA_WORKSPACE_BUCKET",
        default_value = "hypha-workspaces",
        help_heading = S3
    )]
    pub workspace_bucket: String,
    /// Hand out URLs served by rhizo (which streams from S3) instead of presigned S3
    /// URLs, for clients that cannot reach the S3 endpoint (artifacts.md §5.3). Without
    /// S3, rhizo always serves the URLs itself.
    #[arg(long, env = "HYPHA_ENABLE_S3_PROXY", help_heading = S3)]
    pub enable_s3_proxy: bool,
    /// Accepted for the reference's command lines: server apps (`public/server-apps`,
    /// apps-workers.md §1) are on by default in rhizo.
    #[arg(long, env = "HYPHA_ENABLE_SERVER_APPS", help_heading = APPS)]
    pub enable_server_apps: bool,
    /// Turn server apps off (no `public/server-apps`, no built-in workers).
    #[arg(long, env = "RHIZO_DISABLE_SERVER_APPS", help_heading = APPS)]
    pub disable_server_apps: bool,
    /// Local accounts on the log-in page (`public/hypha-login`, `/login`): people sign up
    /// and log in with e-mail + password (argon2 hashes in the `--database-uri` database)
    /// instead of an external identity provider. Off: the page only accepts a token.
    #[arg(long, env = "HYPHA_ENABLE_LOCAL_AUTH", help_heading = AUTH)]
    pub enable_local_auth: bool,
    /// Where the front-end packages the server serves live (the hypha-rpc JS client at
    /// `/assets/hypha-rpc-websocket.mjs`, Pyodide at `/assets/pyodide/`): the `node_modules`
    /// of `assets/package.json`, installed by `bash assets/setup.sh` (tests/run.sh does).
    /// Default `$HOME/.cache/rhizo-assets`.
    #[arg(long, env = "RHIZO_ASSETS_DIR", help_heading = FEATURES)]
    pub assets_dir: Option<PathBuf>,
    /// The Chromium of the built-in browser worker (apps-workers.md §4.7); a bare name is
    /// looked up on `PATH`. Not found: no browser worker (browser apps cannot start).
    #[arg(long, env = "RHIZO_CHROMIUM", default_value = "chromium", help_heading = APPS)]
    pub chromium: PathBuf,
    /// Do not start the built-in `python-eval` and `terminal` workers in-process (apps
    /// then run only on workers that clients register).
    #[arg(long, env = "RHIZO_DISABLE_BUILTIN_WORKERS", help_heading = APPS)]
    pub disable_builtin_workers: bool,
    /// The Python interpreter of the built-in `python-eval` worker (apps-workers.md
    /// §4.1); resolved through `PATH` at start-up, since the scripts get no `PATH`.
    #[arg(long, env = "RHIZO_PYTHON_EVAL_PYTHON", default_value = "python3", help_heading = APPS)]
    pub python_eval_python: std::path::PathBuf,
    /// The `uv` binary of the built-in `conda-jupyter-kernel` worker (apps-workers.md
    /// §4.3), which builds its Python environments with uv from PyPI (rhizo has no conda)
    /// from the `--python-eval-python` interpreter; a bare name is looked up on `PATH`.
    /// Not found: no built-in conda worker (such apps then need one registered by a client).
    #[arg(long, env = "RHIZO_UV", default_value = "uv", help_heading = APPS)]
    pub uv: PathBuf,
    /// The environment cache of the built-in conda worker (default
    /// `~/.cache/rhizo-conda-envs`; at most 10 environments, 30 days each).
    #[arg(long, env = "CONDA_CACHE_DIR", help_heading = APPS)]
    pub conda_cache_dir: Option<PathBuf>,
    /// Turn the agent-skills documents off (`/{ws}/agent-skills/…`, `/ws/agent-skills/…`
    /// and `public/agent-skills` then answer 404 / are absent).
    #[arg(long, env = "HYPHA_DISABLE_AGENT_SKILLS", help_heading = FEATURES)]
    pub disable_agent_skills: bool,
    /// Serve every service as an MCP server (streamable HTTP at
    /// `/{ws}/mcp/{service_id}/mcp`, SSE at `…/sse`, info at `/{ws}/mcp/{service_id}`).
    #[arg(long, env = "HYPHA_ENABLE_MCP", help_heading = FEATURES)]
    pub enable_mcp: bool,
    /// Serve services of type `a2a` as A2A agents (`/{ws}/a2a/{service_id}/`, agent card
    /// at its `.well-known/agent-card.json`, info at `/{ws}/a2a-info/{service_id}`).
    #[arg(long, env = "HYPHA_ENABLE_A2A", help_heading = FEATURES)]
    pub enable_a2a: bool,
    /// Python functions to run once the server is bound, each `module_or_file.py:function`
    /// (repeatable; space-separated in the environment). Each is awaited with a root
    /// connection to `public` and keeps it (with the services it registered) until the
    /// server stops; readiness answers 503 until all have returned, and one that fails
    /// stops the server. Run with the `--python-eval-python` interpreter (needs hypha-rpc).
    #[arg(
        long,
        env = "HYPHA_STARTUP_FUNCTIONS",
        value_delimiter = ' ',
        num_args = 1..,
        value_name = "MODULE_OR_FILE.py:FUNCTION",
        help_heading = FEATURES
    )]
    pub startup_functions: Vec<String>,
    /// Close WebSocket connections idle for this many seconds (at least 1).
    #[arg(long, env = "HYPHA_WS_IDLE_TIMEOUT", default_value_t = 600, help_heading = LIMITS)]
    pub ws_idle_timeout: u64,
    /// Messages per second one WebSocket connection may send before it is closed with 1008
    /// "Rate limit exceeded" (0: no limit; the reference enforces 200 by default).
    #[arg(long, env = "HYPHA_WS_MSG_RATE_LIMIT", default_value_t = 0, help_heading = LIMITS)]
    pub ws_msg_rate_limit: u32,
    /// Messages a connection may send at once above that rate (with the rate limit only;
    /// at least 1).
    #[arg(long, env = "HYPHA_WS_MSG_BURST_LIMIT", default_value_t = 2000, help_heading = LIMITS)]
    pub ws_msg_burst_limit: u32,
    /// Largest accepted frame, bytes.
    #[arg(long, env = "RHIZO_MAX_FRAME_BYTES", default_value_t = RouterConfig::default().max_frame_bytes, help_heading = LIMITS)]
    pub max_frame_bytes: usize,
    /// Per-connection read buffer, bytes (the memory floor of a connection; at least 1024).
    #[arg(long, env = "RHIZO_READ_BUFFER_BYTES", default_value_t = RouterConfig::default().read_buffer_bytes, help_heading = LIMITS)]
    pub read_buffer_bytes: usize,
    /// Per-connection egress queue limit, bytes.
    #[arg(long, env = "RHIZO_EGRESS_LIMIT_BYTES", default_value_t = RouterConfig::default().egress_limit_bytes, help_heading = LIMITS)]
    pub egress_limit_bytes: usize,
    /// Seconds a temporary workspace outlives its last client (0: removed at once; at most
    /// one year).
    #[arg(
        long,
        env = "HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD",
        default_value_t = 0.0,
        help_heading = LIMITS
    )]
    pub workspace_unload_grace_period: f64,
    /// Workspaces a user may own (0: no limit; root is exempt).
    #[arg(long, env = "HYPHA_MAX_WORKSPACES_PER_USER", default_value_t = Limits::default().workspaces_per_user, help_heading = LIMITS)]
    pub max_workspaces_per_user: usize,
    /// Services besides `built-in` one client may register (0: no limit).
    #[arg(long, env = "HYPHA_MAX_SERVICES_PER_CLIENT", default_value_t = Limits::default().services_per_client, help_heading = LIMITS)]
    pub max_services_per_client: usize,
    /// Connections one user may hold on this server (0: no limit; root is exempt).
    #[arg(long, env = "HYPHA_MAX_CONNECTIONS_PER_USER", default_value_t = Limits::default().connections_per_user, help_heading = LIMITS)]
    pub max_connections_per_user: usize,
    /// Connections one workspace may hold on this server (0: no limit).
    #[arg(long, env = "HYPHA_MAX_CLIENTS_PER_WORKSPACE", default_value_t = Limits::default().clients_per_workspace, help_heading = LIMITS)]
    pub max_clients_per_workspace: usize,
    /// Handshakes handled at once; others wait up to 30 s, then get 1013 (0: no limit).
    #[arg(long, env = "HYPHA_MAX_CONCURRENT_CONNECTIONS", default_value_t = Limits::default().concurrent_handshakes, help_heading = LIMITS)]
    pub max_concurrent_connections: usize,
}

/// A setting that cannot be used, found before anything is bound. `rhizo serve` exits
/// with code 64 (EX_USAGE) and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    /// The flag, e.g. `--read-buffer-bytes`.
    pub flag: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        problem: problem.into(),
    }
}

/// The longest unload grace period accepted, seconds (one year).
const MAX_GRACE_SECS: f64 = 365.0 * 86_400.0;

#[derive(Parser)]
#[command(name = "rhizo serve")]
struct Standalone {
    #[command(flatten)]
    settings: Settings,
}

// === impl Settings ===

impl Settings {
    /// Parses settings from command-line words (the first is the program name), falling
    /// back to the environment and the defaults as `rhizo serve` does. Tests use this with
    /// `["rhizo", "--port", "0", …]`.
    ///
    /// Errors: a clap usage error (unknown flag, unparsable value).
    pub fn parse_from<I, T>(args: I) -> Result<Settings, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Standalone::try_parse_from(args).map(|s| s.settings)
    }

    /// Checks every value that clap's types do not: each problem names its flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.root_token {
            check_root_token(t).map_err(|p| bad("--root-token", p))?;
        }
        if self.read_buffer_bytes < 1024 {
            return Err(bad("--read-buffer-bytes", "must be at least 1024"));
        }
        if self.max_frame_bytes == 0 {
            return Err(bad("--max-frame-bytes", "must be greater than 0"));
        }
        if self.egress_limit_bytes == 0 {
            return Err(bad("--egress-limit-bytes", "must be greater than 0"));
        }
        if self.ws_idle_timeout == 0 {
            return Err(bad("--ws-idle-timeout", "must be at least 1 second"));
        }
        if self.ws_msg_rate_limit > 0 && self.ws_msg_burst_limit == 0 {
            return Err(bad(
                "--ws-msg-burst-limit",
                "must be at least 1 when --ws-msg-rate-limit is set",
            ));
        }
        let g = self.workspace_unload_grace_period;
        if !g.is_finite() || !(0.0..=MAX_GRACE_SECS).contains(&g) {
            return Err(bad(
                "--workspace-unload-grace-period",
                format!("must be between 0 and {MAX_GRACE_SECS} seconds, got {g}"),
            ));
        }
        if !(self.base_path.is_empty() || self.base_path.starts_with('/')) {
            return Err(bad("--base-path", "must start with '/'"));
        }
        if self.enable_s3 {
            for (flag, v) in [
                ("--endpoint-url", &self.endpoint_url),
                ("--access-key-id", &self.access_key_id),
                ("--secret-access-key", &self.secret_access_key),
            ] {
                if v.as_deref().is_none_or(str::is_empty) {
                    return Err(bad(flag, "is required with --enable-s3"));
                }
            }
            if self.workspace_bucket.is_empty() {
                return Err(bad("--workspace-bucket", "must not be empty"));
            }
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err(bad(
                "--redis-prefix",
                "must be non-empty and without whitespace",
            ));
        }
        if let Some(u) = &self.redis_uri {
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://"))
            {
                return Err(bad(
                    "--redis-uri",
                    "must be a redis://, rediss:// or unix:// URI",
                ));
            }
        }
        if let Some(u) = &self.public_base_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(
                    "--public-base-url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        for f in self.startup_functions.iter().filter(|f| !f.is_empty()) {
            if !f
                .rsplit_once(':')
                .is_some_and(|(m, func)| !m.is_empty() && !func.is_empty())
            {
                return Err(bad(
                    "--startup-functions",
                    format!("{f:?}: expected module_or_file.py:function"),
                ));
            }
        }
        Ok(())
    }

    /// `--base-path` without its trailing slash: `""` for the root, else `"/hypha"`.
    pub fn base(&self) -> String {
        self.base_path.trim_end_matches('/').to_owned()
    }

    /// The router's tunables from these settings (the rest keep `RouterConfig`'s defaults).
    pub fn router_config(&self) -> RouterConfig {
        RouterConfig {
            max_frame_bytes: self.max_frame_bytes,
            egress_limit_bytes: self.egress_limit_bytes,
            read_buffer_bytes: self.read_buffer_bytes,
            idle_timeout: Duration::from_secs(self.ws_idle_timeout),
            msg_rate: (self.ws_msg_rate_limit > 0).then_some(MsgRate {
                per_second: self.ws_msg_rate_limit,
                burst: self.ws_msg_burst_limit,
            }),
            ..RouterConfig::default()
        }
    }

    /// The control plane's settings, given the resolved URLs, server id and token secret.
    pub fn server_config(
        &self,
        server_id: String,
        public_url: &str,
        local_url: String,
        jwt_secret: String,
    ) -> ServerConfig {
        ServerConfig {
            server_id,
            public_base_url: public_url.trim_end_matches('/').to_owned(),
            local_base_url: local_url,
            jwt_secret,
            claims: ClaimFormat {
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                namespace: self.jwt_namespace.clone(),
            },
            root_token: self.root_token.clone(),
            reconnection_token_life_time: self.reconnection_token_life_time,
            limits: Limits {
                workspaces_per_user: self.max_workspaces_per_user,
                services_per_client: self.max_services_per_client,
                connections_per_user: self.max_connections_per_user,
                clients_per_workspace: self.max_clients_per_workspace,
                concurrent_handshakes: self.max_concurrent_connections,
                ..Limits::default()
            },
            workspace_unload_grace: Duration::from_secs_f64(self.workspace_unload_grace_period),
            ..ServerConfig::default()
        }
    }
}

/// The flags of `rhizo token`: a token for one workspace, signed with the secret and in
/// the claim format that `rhizo serve` with the same flags and environment uses, so that
/// it accepts the token.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The workspace the token is for (scope `ws:<workspace>#<permission>`, bound to it).
    #[arg(long)]
    pub workspace: String,
    /// The permission in it: `r` (read), `rw` (read-write) or `a` (admin).
    #[arg(long, default_value = "rw", value_parser = parse_permission)]
    pub permission: Permission,
    /// Lifetime of the token, seconds (at least 1).
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
    /// The user the token identifies (its `sub`).
    #[arg(long, default_value = "rhizo-cli")]
    pub user_id: String,
    /// As `rhizo serve --jwt-secret`: else `JWT_SECRET`, else `<data-dir>/jwt-secret`
    /// (created if missing, as the server would).
    #[arg(long, env = "HYPHA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// As `rhizo serve --data-dir`.
    #[arg(long, env = "RHIZO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// As `rhizo serve --jwt-issuer`.
    #[arg(long, env = "AUTH0_ISSUER", default_value = rhizo_protocol::token::DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// As `rhizo serve --jwt-audience`.
    #[arg(long, env = "AUTH0_AUDIENCE", default_value = rhizo_protocol::token::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// As `rhizo serve --jwt-namespace`.
    #[arg(long, env = "AUTH0_NAMESPACE", default_value = rhizo_protocol::token::DEFAULT_NAMESPACE)]
    pub jwt_namespace: String,
}

fn parse_permission(s: &str) -> Result<Permission, String> {
    Permission::parse(s).ok_or_else(|| "use r (read), rw (read-write) or a (admin)".to_owned())
}

// === impl TokenArgs ===

impl TokenArgs {
    /// Signs the token (reading or creating the secret as `rhizo serve` does).
    ///
    /// Errors: an unusable workspace, user id or lifetime (naming the flag), or the
    /// secret file cannot be read or written.
    pub fn mint(&self) -> anyhow::Result<String> {
        use rhizo_control_plane::storage::MemoryStore;
        use rhizo_control_plane::tokens::TokenService;
        use rhizo_protocol::user::{ScopeInfo, UserInfo};
        // Scopes are space-separated words of the form `ws:<id>#<permission>`.
        let word = |flag: &'static str, v: &str| {
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '#') {
                Err(bad(flag, "must be non-empty, without whitespace or '#'"))
            } else {
                Ok(())
            }
        };
        word("--workspace", &self.workspace)?;
        word("--user-id", &self.user_id)?;
        if self.expires_in == 0 {
            return Err(bad("--expires-in", "must be at least 1 second").into());
        }
        let secret = crate::server::jwt_secret(self.jwt_secret.as_deref(), &self.data_dir)?;
        let format = ClaimFormat {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            namespace: self.jwt_namespace.clone(),
        };
        let tokens = TokenService::new(&secret, format, None, Arc::new(MemoryStore::new()));
        let mut scope = ScopeInfo {
            current_workspace: Some(self.workspace.clone()),
            ..Default::default()
        };
        scope
            .workspaces
            .insert(self.workspace.clone(), self.permission);
        let user = UserInfo {
            id: self.user_id.clone(),
            roles: Vec::new(),
            is_anonymous: false,
            scope,
            email: None,
            parent: None,
            expires_at: None,
            current_workspace: Some(self.workspace.clone()),
        };
        Ok(tokens.sign(&user, self.expires_in))
    }
}

/// Refuses weak root tokens as the reference does (workspace-api.md §1.5).
pub fn check_root_token(token: &str) -> Result<(), String> {
    if token.len() < 32 {
        return Err("must be at least 32 characters".into());
    }
    const WEAK: [&str; 10] = [
        "test", "root", "admin", "password", "token", "secret", "123", "abc", "hypha", "default",
    ];
    let lower = token.to_lowercase();
    if token.len() < 64 {
        if let Some(w) = WEAK.iter().find(|w| lower.contains(*w)) {
            return Err(format!(
                "a token shorter than 64 characters must not contain '{w}'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Settings {
        let mut args = vec!["rhizo"];
        args.extend_from_slice(extra);
        Settings::parse_from(args).unwrap()
    }

    #[test]
    fn weak_root_tokens_are_refused() {
        assert!(check_root_token("short").is_err());
        assert!(check_root_token(&format!("{}admin", "x".repeat(40))).is_err());
        assert!(check_root_token(&"x".repeat(40)).is_ok());
        assert!(check_root_token(&format!("{}admin", "x".repeat(70))).is_ok());
    }

    #[test]
    fn flags_parse_with_reference_names() {
        let s = parse(&["--host", "0.0.0.0", "--port", "0", "--base-path", "/hypha"]);
        assert_eq!(s.host, "0.0.0.0");
        assert_eq!(s.port, 0);
        assert_eq!(s.base(), "/hypha");
        assert_eq!(s.validate(), Ok(()));
        assert!(s.redis_uri.is_none(), "single node unless --redis-uri");
        assert_eq!(s.redis_prefix, "rhizo");
        let s = parse(&[
            "--redis-uri",
            "redis://127.0.0.1:6379/0",
            "--redis-prefix",
            "t1",
        ]);
        assert_eq!(s.redis_uri.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(s.redis_prefix, "t1");
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn defaults_come_from_the_planes_own_defaults() {
        let s = parse(&[]);
        let r = s.router_config();
        let d = RouterConfig::default();
        assert_eq!(r.max_frame_bytes, d.max_frame_bytes);
        assert_eq!(r.egress_limit_bytes, d.egress_limit_bytes);
        assert_eq!(r.read_buffer_bytes, d.read_buffer_bytes);
        assert_eq!(r.idle_timeout, d.idle_timeout);
        assert!(r.msg_rate.is_none());
        let c = s.server_config("x".into(), "http://h/", "http://h".into(), "k".into());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.public_base_url, "http://h");
        assert_eq!(
            c.reconnection_token_life_time,
            ServerConfig::default().reconnection_token_life_time
        );
    }

    #[test]
    fn startup_functions_repeat_or_split_on_spaces() {
        // One word with spaces is what HYPHA_STARTUP_FUNCTIONS gives (same delimiter).
        let s = parse(&[
            "--startup-functions",
            "a.py:f b:g",
            "--startup-functions",
            "c:h",
        ]);
        assert_eq!(s.startup_functions, ["a.py:f", "b:g", "c:h"]);
        assert_eq!(s.validate(), Ok(()));
        assert!(parse(&[]).startup_functions.is_empty());
    }

    #[test]
    fn minted_tokens_verify_with_the_same_secret() {
        use clap::Parser as _;
        use rhizo_control_plane::storage::MemoryStore;
        use rhizo_control_plane::tokens::TokenService;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            t: TokenArgs,
        }
        let args = |extra: &[&str]| {
            let mut a = vec!["rhizo", "--jwt-secret", "s3cret", "--workspace", "w1"];
            a.extend_from_slice(extra);
            T::try_parse_from(a).map(|t| t.t)
        };
        let token = args(&["--permission", "r", "--user-id", "u1"])
            .unwrap()
            .mint()
            .unwrap();
        let d = args(&[]).unwrap();
        let format = ClaimFormat {
            issuer: d.jwt_issuer,
            audience: d.jwt_audience,
            namespace: d.jwt_namespace,
        };
        let tokens = TokenService::new("s3cret", format, None, Arc::new(MemoryStore::new()));
        let user = tokens.verify(&token).unwrap();
        assert_eq!(user.id, "u1");
        assert_eq!(user.permission("w1"), Some(Permission::Read));
        assert_eq!(user.scope.current_workspace.as_deref(), Some("w1"));
        assert!(args(&["--permission", "x"]).is_err());
        let err = args(&["--expires-in", "0"]).unwrap().mint().unwrap_err();
        assert!(err.to_string().contains("--expires-in"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_not_clamped() {
        for (args, flag) in [
            (&["--read-buffer-bytes", "10"][..], "--read-buffer-bytes"),
            (&["--ws-idle-timeout", "0"][..], "--ws-idle-timeout"),
            (&["--max-frame-bytes", "0"][..], "--max-frame-bytes"),
            (
                &["--ws-msg-rate-limit", "5", "--ws-msg-burst-limit", "0"][..],
                "--ws-msg-burst-limit",
            ),
            (
                &["--workspace-unload-grace-period=-1"][..],
                "--workspace-unload-grace-period",
            ),
            (
                &["--workspace-unload-grace-period", "NaN"][..],
                "--workspace-unload-grace-period",
            ),
            (&["--base-path", "hypha"][..], "--base-path"),
            (&["--public-base-url", "ftp://x"][..], "--public-base-url"),
            (&["--root-token", "short"][..], "--root-token"),
            (&["--redis-uri", "http://x"][..], "--redis-uri"),
            (&["--redis-prefix", ""][..], "--redis-prefix"),
            (
                &["--startup-functions", "nofunction"][..],
                "--startup-functions",
            ),
            (&["--startup-functions", "mod:"][..], "--startup-functions"),
        ] {
            let err = parse(args).validate().unwrap_err();
            assert_eq!(err.flag, flag, "{args:?}");
        }
    }
}
