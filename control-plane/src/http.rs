//! The HTTP routes beside `/ws` (workspace-api.md §8.1): health probes and
//! `/assets/config.json`. One function per area returns a `Router`; [`app`] merges them.

use crate::manager::Manager;
use crate::tokens::TokenError;
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
mod metrics;
mod services;

/// The whole HTTP app: `/ws` (from the router) plus the control-plane routes, served under
/// `base_path` (`"/"` or e.g. `"/hypha"`).
pub fn app(manager: Arc<Manager>, base_path: &str) -> axum::Router {
    let ws = rhizo_router::ws::routes(manager.router.clone());
    let inner = axum::Router::new()
        .merge(health())
        .merge(assets())
        .merge(metrics::routes())
        .merge(services::routes())
        .merge(apps::routes())
        .with_state(manager.clone())
        .merge(ws)
        .merge(rhizo_router::http_stream::routes(manager.router.clone()))
        .layer(axum::middleware::from_fn_with_state(
            manager,
            metrics::count_requests,
        ))
        .layer(CorsLayer::very_permissive());
    let base = base_path.trim_end_matches('/');
    if base.is_empty() {
        inner
    } else {
        axum::Router::new().nest(base, inner)
    }
}

fn health() -> axum::Router<Arc<Manager>> {
    axum::Router::new()
        .route("/health/liveness", get(liveness))
        .route("/health/readiness", get(readiness))
}

async fn liveness(State(m): State<Arc<Manager>>) -> Json<serde_json::Value> {
    Json(
        json!({"status": "OK", "detail": {"store": "ready", "connections": m.router.table().len()}}),
    )
}

async fn readiness() -> Json<serde_json::Value> {
    Json(json!({"status": "OK", "detail": {"store": "ready", "event_bus": "ready"}}))
}

fn assets() -> axum::Router<Arc<Manager>> {
    axum::Router::new().route("/assets/config.json", get(config_json))
}

/// An error answer in the reference's JSON shape.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"success": false, "detail": self.1}))).into_response()
    }
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
        Some(t) => m.tokens.verify(&t).map_err(|e| match e {
            TokenError::Expired | TokenError::Invalid(_) | TokenError::Revoked => {
                ApiError(StatusCode::UNAUTHORIZED, e.to_string())
            }
        })?,
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
