//! HTTP routes of the log-in service: the page at `/public/apps/hypha-login/` (and
//! `/login`), and the small JSON API it calls under `/public/apps/hypha-login/api/`:
//!
//! - `GET  config` → `{local_auth, service_id}`
//! - `POST signup` `{email, password, name?}` → `{success, user_id, email}`
//! - `POST login` `{email, password, key?, workspace?, expires_in?}` →
//!   `{success, token, user_id, email, workspace}` (reports the token for `key`)
//! - `POST report` `{key, token, workspace?, expires_in?, …profile}` → `{success}`
//!
//! Errors are `{"success": false, "detail": …}` with the status of the error
//! (400 bad input, 403 wrong password or bad token, 404 unknown key).

use crate::service::{LoginService, ReportExtras, PAGE_PATH, SERVICE_ID};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Json;
use rhizo_control_plane::ApiError;
use std::sync::Arc;

/// The page, embedded at compile time (no CDN, no client library).
const PAGE: &str = include_str!("page.html");

/// The routes, with `svc` as state.
pub fn routes(svc: Arc<LoginService>) -> axum::Router {
    let api = |p: &str| format!("{PAGE_PATH}api/{p}");
    axum::Router::new()
        .route(PAGE_PATH, get(page))
        .route(PAGE_PATH.trim_end_matches('/'), get(page))
        .route("/login", get(page))
        .route(&format!("{PAGE_PATH}profile"), get(profile))
        .route(&api("config"), get(config))
        .route(&api("signup"), post(signup))
        .route(&api("login"), post(login))
        .route(&api("report"), post(report))
        .with_state(svc)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

async fn profile() -> Redirect {
    Redirect::to(&format!("{PAGE_PATH}?profile=1"))
}

async fn config(State(svc): State<Arc<LoginService>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "local_auth": svc.local_auth(),
        "service_id": format!("public/{SERVICE_ID}"),
    }))
}

/// Body of `POST signup`.
#[derive(serde::Deserialize)]
struct Signup {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    name: Option<String>,
}

async fn signup(
    State(svc): State<Arc<LoginService>>,
    Json(b): Json<Signup>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user_id, email) = svc.signup(&b.email, &b.password, b.name.as_deref()).await?;
    Ok(Json(
        serde_json::json!({"success": true, "user_id": user_id, "email": email}),
    ))
}

/// Body of `POST login`.
#[derive(serde::Deserialize)]
struct Login {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    key: Option<String>,
    workspace: Option<String>,
    expires_in: Option<u64>,
}

async fn login(
    State(svc): State<Arc<LoginService>>,
    Json(b): Json<Login>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = svc
        .local_login(
            &b.email,
            &b.password,
            b.workspace.as_deref(),
            b.key.as_deref().filter(|k| !k.is_empty()),
            b.expires_in,
        )
        .await?;
    Ok(Json(
        serde_json::to_value(r).expect("a log-in result serialises"),
    ))
}

/// Body of `POST report`.
#[derive(serde::Deserialize)]
struct Report {
    #[serde(default)]
    key: String,
    #[serde(default)]
    token: String,
    #[serde(flatten)]
    extras: ReportExtras,
}

async fn report(
    State(svc): State<Arc<LoginService>>,
    Json(b): Json<Report>,
) -> Result<Json<serde_json::Value>, ApiError> {
    svc.report(&b.key, &b.token, b.extras).await?;
    Ok(Json(serde_json::json!({"success": true})))
}
