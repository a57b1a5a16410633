//! The HTTP routes of the artifact manager (spec artifacts.md §4.1–4.3) and the object
//! URLs rhizo signs itself ([`crate::signing`]):
//!
//! | route | what |
//! |---|---|
//! | `GET /{ws}/artifacts/` | root artifacts of the workspace (`list`) |
//! | `GET /{ws}/artifacts/-/search` | workspace-wide `search` |
//! | `GET /{ws}/artifacts/{alias}` | `read` |
//! | `GET /{ws}/artifacts/{alias}/children` | `list(parent_id=…)` |
//! | `GET\|HEAD /{ws}/artifacts/{alias}/files/{path}` | a directory listing (empty path or trailing `/`), the file streamed (`use_proxy=true`, Range → 206) or a 307 to its URL |
//! | `PUT /{ws}/artifacts/{alias}/files/{path}` | a server-side upload into the staged version, streamed |
//! | `GET /{ws}/artifacts/{alias}/create-zip-file` | a streamed stored ZIP of all or the `file=` files |
//! | `POST /{ws}/artifacts/{alias}/create-multipart-upload`, `…/complete-multipart-upload` | the multipart RPC methods |
//! | `GET /{ws}/view/{alias}/{path}` | the artifact's files as a static site (§4.4, without templates): `index.html` by default, `config.view_config.root_directory`, `"disabled"` → 404 |
//! | `GET\|HEAD\|PUT /s3/{key}` | a signed object URL (403 when tampered or expired) |
//!
//! The caller is identified as on the service routes: `Authorization: Bearer`, the
//! `access_token` cookie or `?token=`; no token is the anonymous HTTP user; a bad token
//! is 401, never anonymous. Errors are `{"success": false, "detail": "<Class>: …"}` with
//! 404 (not found), 403 (permission), 400 (bad input), 409 (alias taken), 500.
//! rhizo: listings are never cached (§4.1: the reference's cache ignores the caller).
//!
//! Here: the router, the caller and query helpers, and the metadata and listing routes;
//! [`files`] has the file, ZIP, multipart and view routes; [`bodies`] streams objects in
//! and out and serves the signed `/s3/` URLs.

use crate::error::{ArtifactError, ArtifactResult};
use crate::objects::{self, ObjectStore, PresignOp};
use crate::permissions::Operation;
use crate::service::args::Args;
use crate::service::ArtifactManager;
use crate::signing::SignatureError;
use crate::zip::{self, ZipEntry};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json as AxumJson;
use futures_util::StreamExt;
use rhizo_control_plane::manager::Ctx;
use serde_json::{json, Value as Json};
use std::ops::Range;
use std::sync::Arc;

mod bodies;
mod files;

use bodies::{object_get, object_put};
use files::*;

type Am = Arc<ArtifactManager>;
type Params = Query<Vec<(String, String)>>;

/// The routes, with the manager as their state.
pub fn routes(am: Am) -> axum::Router {
    axum::Router::new()
        .route("/{ws}/artifacts/", get(list_root))
        .route("/{ws}/artifacts/-/search", get(search))
        .route("/{ws}/artifacts/{alias}", get(read))
        .route("/{ws}/artifacts/{alias}/children", get(children))
        .route("/{ws}/artifacts/{alias}/files", get(file_root))
        .route("/{ws}/artifacts/{alias}/files/", get(file_root))
        .route(
            "/{ws}/artifacts/{alias}/files/{*path}",
            get(file_get).put(file_put),
        )
        .route("/{ws}/artifacts/{alias}/create-zip-file", get(zip_files))
        .route(
            "/{ws}/artifacts/{alias}/create-multipart-upload",
            post(multipart_start),
        )
        .route(
            "/{ws}/artifacts/{alias}/complete-multipart-upload",
            post(multipart_complete),
        )
        .route("/{ws}/view/{alias}", get(view_root))
        .route("/{ws}/view/{alias}/", get(view_root))
        .route("/{ws}/view/{alias}/{*path}", get(view_file))
        .route("/s3/{*key}", get(object_get).put(object_put))
        .layer(DefaultBodyLimit::disable())
        .with_state(am)
}

/// An error response: status from the error, `{success: false, detail}`.
struct HttpError(StatusCode, String);

impl From<ArtifactError> for HttpError {
    fn from(e: ArtifactError) -> Self {
        if let ArtifactError::ObjectStore(m) = &e {
            tracing::warn!("artifact object store: {m}");
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError(status, e.wire())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.0,
            AxumJson(json!({"success": false, "detail": self.1})),
        )
            .into_response()
    }
}

type HttpResult = Result<Response, HttpError>;

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn flag(q: &[(String, String)], name: &str) -> Option<bool> {
    param(q, name).map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

fn int(q: &[(String, String)], name: &str, default: i64) -> Result<i64, HttpError> {
    match param(q, name) {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            HttpError(
                StatusCode::BAD_REQUEST,
                format!("ValueError: query parameter {name} must be an integer"),
            )
        }),
    }
}

/// The caller of a request to workspace `ws` (module docs).
fn ctx(
    am: &ArtifactManager,
    headers: &HeaderMap,
    q: &[(String, String)],
    ws: &str,
) -> Result<Ctx, HttpError> {
    let token = rhizo_control_plane::http::request_token(headers)
        .or_else(|| param(q, "token").map(str::to_owned));
    let host = am.host()?;
    host.caller(token.as_deref(), ws)
        .map_err(|e| HttpError(StatusCode::UNAUTHORIZED, e.wire()))
}

/// The JSON form of a query value for `version` (a name, or an index).
fn version_arg(q: &[(String, String)]) -> Option<Json> {
    param(q, "version")
        .filter(|v| !v.is_empty())
        .map(|v| Json::String(v.to_owned()))
}

/// The list/search arguments of the query string (§4.1).
fn listing_args(
    function: &str,
    q: &[(String, String)],
    parent: Option<String>,
) -> Result<Args, HttpError> {
    let filters = match param(q, "filters") {
        None | Some("") => None,
        Some(f) => Some(serde_json::from_str::<Json>(f).map_err(|e| {
            HttpError(
                StatusCode::BAD_REQUEST,
                format!("ValueError: filters is not valid JSON: {e}"),
            )
        })?),
    };
    let stage = match param(q, "stage") {
        Some("true") => Json::Bool(true),
        Some("all") => Json::String("all".into()),
        _ => Json::Bool(false),
    };
    Ok(Args::from_pairs(
        function,
        &[
            ("parent_id", parent.map(Json::String)),
            (
                "keywords",
                param(q, "keywords").map(|k| Json::String(k.to_owned())),
            ),
            ("filters", filters),
            ("mode", param(q, "mode").map(|m| Json::String(m.to_owned()))),
            ("offset", Some(int(q, "offset", 0)?.into())),
            ("limit", Some(int(q, "limit", 100)?.into())),
            (
                "order_by",
                param(q, "order_by").map(|o| Json::String(o.to_owned())),
            ),
            ("silent", flag(q, "silent").map(Json::Bool)),
            ("pagination", flag(q, "pagination").map(Json::Bool)),
            ("stage", Some(stage)),
        ],
    ))
}

async fn list_root(
    State(am): State<Am>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    // The listing is of the URL's workspace; the caller keeps its own.
    let args = listing_args("list", &q, None)?;
    Ok(AxumJson(am.list_in(&ctx, &ws, &args).await?).into_response())
}

async fn search(
    State(am): State<Am>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let args = listing_args("search", &q, None)?;
    Ok(AxumJson(am.search_in(&ctx, &ws, &args).await?).into_response())
}

async fn read(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let version = version_arg(&q);
    let stage = flag(&q, "stage").unwrap_or(false);
    let v = am
        .read_artifact(
            &caller,
            &format!("{ws}/{alias}"),
            version.as_ref(),
            stage,
            flag(&q, "silent").unwrap_or(false),
        )
        .await?;
    Ok(AxumJson(v).into_response())
}

async fn children(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let args = listing_args("list", &q, Some(format!("{ws}/{alias}")))?;
    Ok(AxumJson(am.list_in(&ctx, &ws, &args).await?).into_response())
}

/// The artifact id of a URL: a UUID as it is, otherwise `ws/alias` (§1.2 "HTTP routes").
fn url_id(ws: &str, alias: &str) -> String {
    if crate::ids::is_lowercase_uuid(alias) {
        alias.to_owned()
    } else {
        format!("{ws}/{alias}")
    }
}
