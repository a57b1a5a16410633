//! Shared set-up for the integration tests: an in-process server (router + control plane +
//! HTTP) on an ephemeral loopback port.

#![allow(dead_code)]

pub mod cluster;

use rhizo_control_plane::{Manager, ServerConfig};
use rhizo_router::{Router, RouterConfig};
use std::sync::Arc;
use std::time::Duration;

pub struct TestServer {
    pub url: String,
    pub manager: Arc<Manager>,
    pub router: Router,
    /// Kept so the server lives as long as the test.
    pub server: rhizo::Server,
}

/// Starts a server with `router_config` on 127.0.0.1:0.
pub async fn start_with(router_config: RouterConfig) -> TestServer {
    start_configured(router_config, |_| {}).await
}

/// Starts a server with `router_config` and the control-plane settings `adjust` makes,
/// through the same builder as `rhizo serve`, with its state in memory.
pub async fn start_configured(
    router_config: RouterConfig,
    adjust: impl FnOnce(&mut ServerConfig) + Send + 'static,
) -> TestServer {
    let settings = rhizo::Settings::parse_from([
        "rhizo",
        "--port",
        "0",
        "--server-id",
        "test",
        "--jwt-secret",
        "integration-test-secret",
    ])
    .unwrap();
    let server = rhizo::Server::builder(settings)
        .in_memory()
        .router_config(move |c| *c = router_config)
        .control_config(move |c| {
            // The public URL is the bound one; tests compare against it.
            c.public_base_url = c.local_base_url.clone();
            adjust(c)
        })
        .bind()
        .await
        .unwrap();
    TestServer {
        url: server.url().to_owned(),
        manager: server.manager().clone(),
        router: server.router().clone(),
        server,
    }
}

pub async fn start() -> TestServer {
    start_with(RouterConfig::default()).await
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, mut check: F) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Connects an anonymous client with client id `cid` (its own workspace).
pub async fn connect_as(url: &str, cid: &str) -> rhizo_client::Client {
    let opts = rhizo_client::ConnectOptions {
        client_id: Some(cid.into()),
        ..Default::default()
    };
    rhizo_client::Client::connect(url, opts).await.unwrap()
}

/// A read-write token for `owner`'s workspace, minted by `owner` with `generate_token`.
pub async fn mint(owner: &rhizo_client::Client) -> Result<String, rhizo_client::ClientError> {
    let config = rhizo_protocol::value::map([("permission", "read_write".into())]);
    let token = owner.manager_call("generate_token", vec![config]).await?;
    Ok(token.as_str().unwrap_or_default().to_owned())
}

/// Connects client `cid` into `owner`'s workspace with a read-write token `owner` mints.
pub async fn join(
    url: &str,
    owner: &rhizo_client::Client,
    cid: &str,
) -> Result<rhizo_client::Client, rhizo_client::ClientError> {
    let token = mint(owner).await?;
    let opts = rhizo_client::ConnectOptions {
        client_id: Some(cid.into()),
        workspace: Some(owner.workspace().into()),
        token: Some(token),
        ..Default::default()
    };
    rhizo_client::Client::connect(url, opts).await
}
