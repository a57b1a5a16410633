//! The control plane's HTTP routes (workspace-api.md §8.1): the landing page `/`, health
//! probes and diagnostics, `/assets/config.json`, `/metrics`, `/{ws}/services/…` and
//! `/{ws}/apps/…`. One function per area returns a `Router`; [`routes`] merges them. The
//! data plane's routes (`/ws`, `/rpc`) are the router's: the binary merges both and
//! applies the base path.

use crate::error::ApiError;
use crate::manager::Manager;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use serde_json::json;
use std::sync::Arc;
use tower_http::cors::CorsLayer;

mod apps;
mod health;
mod landing;
mod metrics;
mod services;

pub use services::caller;

/// The control plane's routes, with their state.
pub fn routes(manager: Arc<Manager>) -> axum::Router {
    let own: Vec<axum::Router> = manager
        .services()
        .iter()
        .filter_map(|s| s.routes())
        .collect();
    let mut app = axum::Router::new()
        .merge(health())
        .merge(health::routes())
        .merge(landing::routes())
        .merge(assets())
        .merge(metrics::routes())
        .merge(services::routes())
        .merge(apps::routes())
        .with_state(manager);
    // Each control-plane service's own routes (e.g. the artifact manager's downloads).
    for r in own {
        app = app.merge(r);
    }
    app
}

/// Wraps the whole HTTP app (both planes' routes): every request is counted by route
/// template and status for `/metrics`, and CORS is open as in the reference.
/// A request from a blocked address is refused before any route runs
/// ([`crate::blocklist::refuse_blocked_ips`]; counted too).
pub fn layers(manager: Arc<Manager>, app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::from_fn_with_state(
        manager.clone(),
        crate::blocklist::refuse_blocked_ips,
    ))
    .layer(axum::middleware::from_fn_with_state(
        manager,
        metrics::count_requests,
    ))
    .layer(CorsLayer::very_permissive())
}

fn health() -> axum::Router<Arc<Manager>> {
    axum::Router::new()
        .route("/health/liveness", get(liveness))
        .route("/health/readiness", get(readiness))
}

async fn liveness(State(m): State<Arc<Manager>>) -> Json<serde_json::Value> {
    let connections = m.router.counters().connections;
    Json(json!({"status": "OK", "detail": {"store": "ready", "connections": connections}}))
}

/// How long readiness waits for the store's answer.
const READINESS_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `/health/readiness`: 200 when the store answers a query within 3 s (the in-memory
/// store always does), else 503 with the store's error, so that a balancer stops sending
/// clients to an instance whose database is gone; 503 also while something started
/// with the instance has not finished ([`Manager::set_pending`]: the startup functions).
async fn readiness(State(m): State<Arc<Manager>>) -> Response {
    if let Some(what) = m.pending() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "DOWN", "detail": {"startup": format!("waiting for {what}")}})),
        )
            .into_response();
    }
    let store = match tokio::time::timeout(READINESS_STORE_TIMEOUT, m.store().ping()).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 3 s".to_owned()),
    };
    match store {
        Ok(()) => Json(json!({"status": "OK", "detail": {"store": "ready", "event_bus": "ready"}}))
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "DOWN", "detail": {"store": format!("error: {e}"), "event_bus": "ready"}})),
        )
            .into_response(),
    }
}

fn assets() -> axum::Router<Arc<Manager>> {
    axum::Router::new().route("/assets/config.json", get(config_json))
}

/// The token of an HTTP request: `Authorization: Bearer …` or the `access_token` cookie
/// (workspace-api.md §1.7).
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| v.to_owned())
}

/// The fixed identity of anonymous HTTP callers (workspace-api.md §1.6).
pub fn anonymous_http_user() -> UserInfo {
    let mut scope = ScopeInfo {
        current_workspace: Some("ws-anonymous".into()),
        ..Default::default()
    };
    scope
        .workspaces
        .insert("ws-anonymous".into(), Permission::Read);
    UserInfo {
        id: "anonymouz-http".into(),
        roles: vec!["anonymous".into()],
        is_anonymous: true,
        scope,
        email: None,
        parent: None,
        expires_at: None,
        current_workspace: Some("ws-anonymous".into()),
    }
}

async fn config_json(
    State(m): State<Arc<Manager>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = match request_token(&headers) {
        None => anonymous_http_user(),
        Some(t) => m.tokens.verify(&t)?,
    };
    let c = &m.config;
    Ok(Json(json!({
        "user": user,
        "server_id": c.server_id,
        "hypha_version": c.version,
        "public_base_url": c.public_base_url,
        "local_base_url": c.local_base_url,
        "auth0_client_id": null,
        "auth0_domain": null,
        "auth0_audience": c.claims.audience,
        "auth0_issuer": c.claims.issuer,
        "login_service_url": format!("{}/public/services/hypha-login", c.public_base_url),
    })))
}
