//! Control-plane settings, filled from the command line by the binary.

use rhizo_protocol::token::ClaimFormat;

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
        }
    }
}
