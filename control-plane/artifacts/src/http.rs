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

async fn file_root(
    State(am): State<Am>,
    method: Method,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    files(am, method, ws, alias, String::new(), headers, q).await
}

async fn file_get(
    State(am): State<Am>,
    method: Method,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    files(am, method, ws, alias, path, headers, q).await
}

/// `GET|HEAD …/files/{path}` (§4.2).
async fn files(
    am: Am,
    method: Method,
    ws: String,
    alias: String,
    path: String,
    headers: HeaderMap,
    q: Vec<(String, String)>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let loaded = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?;
    let artifact = loaded.artifact;
    let version = version_arg(&q);
    let stage = flag(&q, "stage").unwrap_or(false);
    if path.is_empty() || path.ends_with('/') {
        let limit = int(&q, "limit", 1000)?.clamp(1, 10_000) as u64;
        let offset = int(&q, "offset", 0)?.max(0) as u64;
        let items = am
            .list_dir(
                &artifact,
                path.trim_matches('/'),
                version.as_ref(),
                stage,
                offset,
                limit,
                false,
            )
            .await?;
        if items.as_array().is_some_and(Vec::is_empty) {
            return Err(HttpError(
                StatusCode::NOT_FOUND,
                "KeyError: File or directory not found".into(),
            ));
        }
        return Ok(AxumJson(items).into_response());
    }
    let index = ArtifactManager::read_index(&artifact, version.as_ref(), stage)?;
    if index < 0 {
        return Err(ArtifactError::file_not_found(&path).into());
    }
    let key = objects::file_key(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
        &path,
    )?;
    if !flag(&q, "silent").unwrap_or(false) && method != Method::HEAD {
        let w = ArtifactManager::weights(&artifact, std::slice::from_ref(&path));
        if w > 0.0 {
            am.store.add_downloads(&artifact.id, w).await?;
        }
    }
    let use_proxy = flag(&q, "use_proxy");
    let own = use_proxy.unwrap_or(am.options.proxy);
    if !own && method != Method::HEAD {
        // As the reference: a redirect to the file's URL (presigned S3, or rhizo's own).
        let expires = int(&q, "expires_in", 3600)?.clamp(60, 604_800);
        let local = match param(&q, "use_local_url") {
            Some("true") => Json::Bool(true),
            Some(s) if s.starts_with("http") => Json::String(s.to_owned()),
            _ => Json::Null,
        };
        let url = am
            .object_url(PresignOp::Get, &key, expires, Some(false), &local)
            .await?;
        return Ok(redirect(&url));
    }
    serve_object(
        am.objects.as_ref(),
        &key,
        &path,
        &headers,
        method == Method::HEAD,
    )
    .await
}

fn redirect(url: &str) -> Response {
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A requested byte range (`Range: bytes=…`), resolved against `size`.
enum Wanted {
    All,
    Part(Range<u64>),
    Unsatisfiable,
}

fn parse_range(headers: &HeaderMap, size: u64) -> Wanted {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::All;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Wanted::All;
    };
    // One range only; a list of ranges is answered whole.
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Ok(start), Err(_)) if b.is_empty() => start..size,
        (Err(_), Ok(n)) if a.is_empty() => size.saturating_sub(n)..size,
        _ => return Wanted::All,
    };
    if range.start >= size || range.is_empty() {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(range)
    }
}

/// Streams the object at `key` (200, or 206 for a Range; 416 past its end; 404 when
/// missing); headers only for HEAD.
async fn serve_object(
    objects: &dyn ObjectStore,
    key: &str,
    name: &str,
    headers: &HeaderMap,
    head: bool,
) -> HttpResult {
    let Some(info) = objects.head(key).await? else {
        return Err(ArtifactError::file_not_found(name).into());
    };
    let wanted = parse_range(headers, info.size);
    let (status, range) = match wanted {
        Wanted::All => (StatusCode::OK, 0..info.size),
        Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        Wanted::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, range.end - range.start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, content_type(name))
        .header(
            header::ETAG,
            format!("\"{:x}-{:x}\"", info.size, info.last_modified.to_bits()),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", range.start, range.end - 1, info.size),
        );
    }
    let body = if head {
        Body::empty()
    } else {
        let Some((_, stream)) = objects.get_stream(key, Some(range)).await? else {
            return Err(ArtifactError::file_not_found(name).into());
        };
        Body::from_stream(stream)
    };
    builder.body(body).map_err(|e| {
        HttpError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("RuntimeError: {e}"),
        )
    })
}

/// A content type from the file name's extension.
fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" | "py" | "csv" | "yaml" | "yml" => "text/plain; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A request body as the object store's stream.
fn body_stream(body: Body) -> objects::ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
}

/// Stores an upload's body at `key`, streamed: with its `Content-Length` as one sized put
/// (S3: one streamed PutObject), without it in parts.
async fn store_body(
    objects: &dyn ObjectStore,
    key: &str,
    headers: &HeaderMap,
    body: Body,
) -> ArtifactResult<u64> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(len) => objects.put_stream_len(key, body_stream(body), len).await,
        None => objects.put_stream(key, body_stream(body)).await,
    }
}

/// `PUT …/files/{path}`: a server-side upload into the staged version (§4.2).
async fn file_put(
    State(am): State<Am>,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
    body: Body,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let mut artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::PutFile)
        .await?
        .artifact;
    let weight = param(&q, "download_weight")
        .and_then(|w| w.parse::<f64>().ok())
        .unwrap_or(0.0);
    let key = am.stage_upload(&mut artifact, &path, weight).await?;
    let n = store_body(am.objects.as_ref(), &key, &headers, body).await?;
    am.store.update(&artifact, crate::model::now_unix()).await?;
    Ok(AxumJson(json!({"success": true, "message": format!("File {path} uploaded ({n} bytes)."), "size": n})).into_response())
}

/// `GET …/create-zip-file` (§4.3).
async fn zip_files(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?
        .artifact;
    let index = ArtifactManager::read_index(&artifact, version_arg(&q).as_ref(), false)?;
    if index < 0 {
        return Err(ArtifactError::invalid("The artifact has no files to zip.").into());
    }
    let dir = objects::version_dir(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
    );
    let selected: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "file")
        .map(|(_, v)| v.clone())
        .collect();
    let mut entries = Vec::new();
    if selected.is_empty() {
        walk(am.objects.as_ref(), &dir, &mut entries).await?;
    } else {
        for path in &selected {
            let key = objects::file_key(
                &ArtifactManager::prefix(&artifact),
                &artifact.id,
                index as u64,
                path,
            )?;
            let info = am
                .objects
                .head(&key)
                .await?
                .ok_or_else(|| ArtifactError::file_not_found(path))?;
            entries.push(ZipEntry {
                name: path.clone(),
                key,
                size: info.size,
            });
        }
    }
    let length = zip::content_length(&entries)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("ValueError: {e}")))?;
    if !flag(&q, "silent").unwrap_or(false) {
        let special = artifact
            .config
            .as_ref()
            .and_then(|c| c.get("download_weights"))
            .and_then(|w| w.get("create-zip-file"))
            .and_then(Json::as_f64);
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let w = special.unwrap_or_else(|| ArtifactManager::weights(&artifact, &names));
        if w > 0.0 {
            am.store.add_downloads(&artifact.id, w).await?;
        }
    }
    let stream = zip::archive(am.objects.clone(), entries)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("ValueError: {e}")))?;
    let name = artifact
        .alias
        .clone()
        .unwrap_or_else(|| artifact.id.clone());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/zip")
        .header(header::CONTENT_LENGTH, length)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.zip\"", name.replace('"', "")),
        )
        .body(Body::from_stream(stream))
        .map_err(|e| {
            HttpError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("RuntimeError: {e}"),
            )
        })
}

/// Every file under `dir`, recursively, named relative to it.
pub(crate) async fn walk(
    objects: &dyn ObjectStore,
    dir: &str,
    out: &mut Vec<ZipEntry>,
) -> ArtifactResult<()> {
    const PAGE: u64 = 1000;
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let here = crate::ids::safe_join(dir, &rel)?;
        let mut offset = 0;
        loop {
            let items = objects.list(&here, offset, PAGE).await?;
            let n = items.len() as u64;
            for item in items {
                let join = |name: &str| {
                    if rel.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{rel}/{name}")
                    }
                };
                match item {
                    objects::Entry::File { name, size, .. } => {
                        let name = join(&name);
                        out.push(ZipEntry {
                            key: crate::ids::safe_join(dir, &name)?,
                            name,
                            size,
                        });
                    }
                    objects::Entry::Directory { name } => pending.push(join(&name)),
                }
            }
            if n < PAGE {
                break;
            }
            offset += n;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

async fn multipart_start(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let use_local_url = match param(&q, "use_local_url") {
        Some("true") => Some(Json::Bool(true)),
        Some(s) if s.starts_with("http") => Some(Json::String(s.to_owned())),
        _ => None,
    };
    let args = Args::from_pairs(
        "put_file_start_multipart",
        &[
            ("artifact_id", Some(Json::String(url_id(&ws, &alias)))),
            (
                "file_path",
                param(&q, "path").map(|p| Json::String(p.to_owned())),
            ),
            ("part_count", Some(int(&q, "part_count", 0)?.into())),
            (
                "download_weight",
                param(&q, "download_weight")
                    .and_then(|w| w.parse::<f64>().ok())
                    .map(Json::from),
            ),
            ("expires_in", Some(int(&q, "expires_in", 3600)?.into())),
            ("use_proxy", flag(&q, "use_proxy").map(Json::Bool)),
            ("use_local_url", use_local_url),
        ],
    );
    Ok(AxumJson(am.put_file_start_multipart(&ctx, &args).await?).into_response())
}

async fn multipart_complete(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
    AxumJson(body): AxumJson<Json>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let args = Args::from_pairs(
        "put_file_complete_multipart",
        &[
            ("artifact_id", Some(Json::String(url_id(&ws, &alias)))),
            ("upload_id", body.get("upload_id").cloned()),
            ("parts", body.get("parts").cloned()),
        ],
    );
    Ok(AxumJson(am.put_file_complete_multipart(&ctx, &args).await?).into_response())
}

async fn view_root(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    view(am, ws, alias, String::new(), headers, q).await
}

async fn view_file(
    State(am): State<Am>,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    view(am, ws, alias, path, headers, q).await
}

/// `GET /{ws}/view/{alias}/{path}` (§4.4): a file of the artifact served as a page
/// (needs `get_file`, counts a view). Templates are not rendered (rhizo).
async fn view(
    am: Am,
    ws: String,
    alias: String,
    path: String,
    headers: HeaderMap,
    q: Vec<(String, String)>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?
        .artifact;
    let view_config = artifact.config.as_ref().and_then(|c| c.get("view_config"));
    if view_config.and_then(Json::as_str) == Some("disabled") {
        return Err(HttpError(
            StatusCode::NOT_FOUND,
            "KeyError: The view of this artifact is disabled.".into(),
        ));
    }
    let root = view_config
        .and_then(|v| v.get("root_directory"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .trim_matches('/');
    let page = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.clone()
    };
    let file = if root.is_empty() {
        page
    } else {
        format!("{root}/{page}")
    };
    let index = ArtifactManager::read_index(
        &artifact,
        version_arg(&q).as_ref(),
        flag(&q, "stage").unwrap_or(false),
    )?;
    if index < 0 {
        return Err(ArtifactError::file_not_found(&file).into());
    }
    let key = objects::file_key(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
        &file,
    )?;
    am.store.add_views(&artifact.id, 1.0).await?;
    serve_object(am.objects.as_ref(), &key, &file, &headers, false).await
}

/// Checks the signature of a request to `/s3/{key}` for `op`.
fn check_signature(
    am: &ArtifactManager,
    q: &[(String, String)],
    key: &str,
    op: PresignOp,
) -> Result<(), HttpError> {
    let forbidden = |why: &str| HttpError(StatusCode::FORBIDDEN, format!("PermissionError: {why}"));
    let method = param(q, "method").unwrap_or_default();
    if method != crate::signing::method_name(op) {
        return Err(forbidden("the URL does not allow this method"));
    }
    let expires: i64 = param(q, "expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| forbidden("the URL has no valid expiry"))?;
    let signature = param(q, "signature").unwrap_or_default();
    am.signer()?
        .verify(op, key, expires, signature, crate::model::now_unix())
        .map_err(|e| match e {
            SignatureError::Invalid => forbidden("the URL signature is not valid"),
            SignatureError::Expired => forbidden("the URL has expired"),
        })
}

async fn object_get(
    State(am): State<Am>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    check_signature(&am, &q, &key, PresignOp::Get)?;
    let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
    serve_object(
        am.objects.as_ref(),
        &key,
        &name,
        &headers,
        method == Method::HEAD,
    )
    .await
}

async fn object_put(
    State(am): State<Am>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
    body: Body,
) -> HttpResult {
    check_signature(&am, &q, &key, PresignOp::Put)?;
    let n = store_body(am.objects.as_ref(), &key, &headers, body).await?;
    let etag = am.signer()?.etag(&key, n);
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Option<Range<u64>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        match parse_range(&h, size) {
            Wanted::Part(r) => Some(r),
            Wanted::All => None,
            Wanted::Unsatisfiable => Some(0..0),
        }
    }

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(range("bytes=0-4", 10), Some(0..5));
        assert_eq!(range("bytes=5-", 10), Some(5..10));
        assert_eq!(range("bytes=-3", 10), Some(7..10));
        assert_eq!(range("bytes=8-100", 10), Some(8..10));
        assert_eq!(range("bytes=10-", 10), Some(0..0));
        assert_eq!(range("bytes=0-1,3-4", 10), None);
        assert_eq!(range("items=0-1", 10), None);
    }
}
