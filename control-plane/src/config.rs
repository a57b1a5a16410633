//! Control-plane settings, filled from the command line by the binary.

use rhizo_protocol::token::ClaimFormat;
use std::time::Duration;

/// Settings of one server instance.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Server id; the manager's client id is `manager-<server_id>`.
    pub server_id: String,
    /// URL clients use to reach this server, e.g. `http://127.0.0.1:9527` (with base path).
    pub public_base_url: String,
    /// URL of this server on its own host (same as public unless set apart).
    pub local_base_url: String,
    /// HS256 secret for tokens.
    pub jwt_secret: String,
    /// Token claim names (issuer, audience, namespace).
    pub claims: ClaimFormat,
    /// Opaque root token, if configured.
    pub root_token: Option<String>,
    /// Lifetime of reconnection tokens, seconds (reference default 172800).
    pub reconnection_token_life_time: u64,
    /// Version string reported as `hypha_version`.
    pub version: String,
    /// Per-user, per-client and per-workspace quotas.
    pub limits: Limits,
    /// How long a temporary workspace outlives its last client
    /// (`HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD`, workspace-api.md §4.5); zero unloads at once.
    pub workspace_unload_grace: Duration,
}

/// Quotas (workspace-api.md §5.1, §5.3, §7 step 6; reference defaults). Zero disables one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Workspaces a user may own (`HYPHA_MAX_WORKSPACES_PER_USER`, 100); root is exempt.
    pub workspaces_per_user: usize,
    /// Services other than `built-in` a client may register
    /// (`HYPHA_MAX_SERVICES_PER_CLIENT`, 1000).
    pub services_per_client: usize,
    /// Connections a user may hold on this instance (`HYPHA_MAX_CONNECTIONS_PER_USER`,
    /// 200); root is exempt.
    pub connections_per_user: usize,
    /// Connections a workspace may hold on this instance
    /// (`HYPHA_MAX_CLIENTS_PER_WORKSPACE`, 1000).
    pub clients_per_workspace: usize,
    /// Handshakes admitted at once (`HYPHA_MAX_CONCURRENT_CONNECTIONS`, 10); others wait.
    pub concurrent_handshakes: usize,
    /// How long a handshake waits for its turn before it is refused with 1013
    /// "Server busy, please retry" (30 s, workspace-api.md §7 step 3).
    pub handshake_wait: Duration,
    /// Large messages one client may be uploading to the manager's `message_cache` at
    /// once (64; hypha-rpc opens one per large message in flight, protocol.md §5.1).
    pub cache_entries_per_client: usize,
    /// Bytes one client may hold in `message_cache` uploads, all together (256 MiB, the
    /// largest message the reference accepts). Freed when the message is processed or
    /// removed, or the client disconnects.
    pub cache_bytes_per_client: usize,
    /// Calls one client may have running in the manager at once (64); more are refused
    /// at once with a reject, never queued.
    pub manager_calls_per_client: usize,
    /// Calls all clients together may have running in the manager at once (4096).
    pub manager_calls_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workspaces_per_user: 100,
            services_per_client: 1000,
            connections_per_user: 200,
            clients_per_workspace: 1000,
            concurrent_handshakes: 10,
            handshake_wait: Duration::from_secs(30),
            cache_entries_per_client: 64,
            cache_bytes_per_client: 256 * 1024 * 1024,
            manager_calls_per_client: 64,
            manager_calls_total: 4096,
        }
    }
}

/// Whether `count` already reached `limit` (zero means no limit).
pub fn reached(count: usize, limit: usize) -> bool {
    limit != 0 && count >= limit
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            server_id: "rhizo".into(),
            public_base_url: "http://127.0.0.1:9527".into(),
            local_base_url: "http://127.0.0.1:9527".into(),
            jwt_secret: "change-me".into(),
            claims: ClaimFormat::default(),
            root_token: None,
            reconnection_token_life_time: 172_800,
            version: format!("rhizo-{}", env!("CARGO_PKG_VERSION")),
            limits: Limits::default(),
            workspace_unload_grace: Duration::ZERO,
        }
    }
}
