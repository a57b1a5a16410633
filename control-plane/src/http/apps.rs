//! `/{ws}/apps/{service_id}/{path}`: HTTP apps served by clients (workspace-api.md §8.4).
//!
//! * `functions` services: the path picks a function (nested keys, `index`, `default`),
//!   called with the request as an "event"; it returns `{status, headers, body}`.
//! * `asgi` services: the service's `serve({scope, receive, send})` runs the ASGI app on
//!   the client; `receive` and `send` are callbacks on the manager, so the request body is
//!   handed over in chunks and the response streams back as the app sends it — neither is
//!   buffered whole.
//!
//! The app's own answers pass through as it made them, error statuses included. Where
//! the server fails the request (unknown workspace or service, no such function, the call
//! to the app failed) the answer is an [`ApiError`] sent as plain text, as the reference
//! does on these routes (§8.4: e.g. 404 `Function not found: <path>`).

use super::services::caller;
use crate::error::{ApiError, ManagerError, ManagerResult};
use crate::manager::{Callback, Ctx, Manager};
use crate::names::random_string;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Redirect, Response};
use axum::routing::{any, get as get_route};
use futures_util::StreamExt;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Largest request-body chunk handed to an ASGI app per `receive` (stays well below the
/// 512 KiB a Python client decodes in one frame).
const BODY_CHUNK: usize = 128 * 1024;
/// How long an app may take to answer (heartbeats from the client extend it).
const APP_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn routes() -> axum::Router<Arc<Manager>> {
    axum::Router::new()
        .route(
            "/{ws}/apps/{service_id}",
            get_route(|Path((_, id)): Path<(String, String)>| async move {
                Redirect::temporary(&format!("{id}/"))
            }),
        )
        .route("/{ws}/apps/{service_id}/", any(serve_root))
        .route("/{ws}/apps/{service_id}/{*path}", any(serve_path))
}

/// A failed request served by an app: a 500 with `detail` (the app's own answers, errors
/// included, pass through as it made them).
fn server_error(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
}

async fn serve_root(
    State(m): State<Arc<Manager>>,
    Path((ws, service_id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    serve(m, ws, service_id, String::new(), q, req)
        .await
        .map_err(ApiError::into_plain)
}

async fn serve_path(
    State(m): State<Arc<Manager>>,
    Path((ws, service_id, path)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    serve(m, ws, service_id, path, q, req)
        .await
        .map_err(ApiError::into_plain)
}

async fn serve(
    m: Arc<Manager>,
    ws: String,
    service_id: String,
    path: String,
    q: BTreeMap<String, String>,
    req: Request,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, req.headers(), &q, &ws)?;
    // The reference answers an unknown workspace (one it would not create for the caller,
    // i.e. not the caller's own) with a 404 in these words, without the error class.
    if m.workspaces.get(&ws).is_none() && ws != ctx.user.personal_workspace() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Workspace {ws} does not exist or is not accessible"),
        ));
    }
    let svc = m
        .http_service_object(&ctx, &ws, &service_id, q.get("_mode").map(String::as_str))
        .await?;
    match get_str(&svc, "type").unwrap_or_default() {
        "functions" => functions(&m, &ctx, &svc, &path, req).await,
        "asgi" | "ASGI" => asgi(m.clone(), ctx, &svc, &ws, &service_id, &path, req).await,
        other => Err(server_error(format!("Invalid service type: {other}"))),
    }
}

/// Header list as ASGI has it: `[[name, value], …]` as bytes, names lower-case.
fn asgi_headers(headers: &HeaderMap) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(k, v)| {
                Value::Array(vec![
                    Value::Binary(k.as_str().as_bytes().to_vec()),
                    Value::Binary(v.as_bytes().to_vec()),
                ])
            })
            .collect(),
    )
}

fn query_string(req: &Request) -> String {
    req.uri().query().unwrap_or_default().to_owned()
}

fn cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    let origin = origin.cloned().unwrap_or(HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization,Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Disposition"),
    );
}

/// The function a `functions` service serves `path` with, and the `function_path` to pass
/// when it is the `default` one (§8.4).
fn pick_function<'a>(svc: &'a Value, path: &str) -> Option<(&'a Value, Option<String>)> {
    let trimmed = path.trim_matches('/');
    let key = if trimmed.is_empty() { "index" } else { trimmed };
    let lookup = |k: &str| {
        let mut v = svc;
        for part in k.split('/') {
            v = get(v, part)?;
        }
        (get_str(v, "_rtype") == Some("method")).then_some(v)
    };
    if let Some(f) = lookup(key) {
        return Some((f, None));
    }
    if key.contains('/') {
        if let Some(f) = lookup(&format!("{key}/index")) {
            return Some((f, None));
        }
    }
    let default = get(svc, "default").filter(|d| get_str(d, "_rtype") == Some("method"))?;
    Some((default, Some(format!("/{trimmed}"))))
}

async fn functions(
    m: &Manager,
    ctx: &Ctx,
    svc: &Value,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let Some((f, function_path)) = pick_function(svc, path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Function not found: {path}"),
        ));
    };
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;
    let headers = Value::Map(
        parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    Value::from(k.as_str()),
                    Value::from(v.to_str().unwrap_or_default()),
                )
            })
            .collect(),
    );
    let mut event = map([
        ("type", "http".into()),
        ("method", parts.method.as_str().into()),
        ("path", format!("/{}", path.trim_start_matches('/')).into()),
        (
            "raw_path",
            format!("/{}", path.trim_start_matches('/')).into(),
        ),
        ("query_string", parts.uri.query().unwrap_or_default().into()),
        ("headers", headers),
        (
            "body",
            if body.is_empty() {
                Value::Nil
            } else {
                Value::Binary(body.to_vec())
            },
        ),
        (
            "user",
            value::from_json(&serde_json::to_value(&ctx.user).unwrap_or_default()),
        ),
    ]);
    if let Some(fp) = function_path {
        value::set(&mut event, "function_path", fp.into());
    }
    let result = m
        .http_invoke(ctx, f, vec![event], APP_TIMEOUT)
        .await
        .map_err(|e| server_error(format!("Internal Server Error: {e}")))?;
    let status = get(&result, "status")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    let mut response = match get(&result, "body") {
        Some(Value::Binary(b)) => Response::new(Body::from(b.clone())),
        Some(Value::String(s)) => {
            Response::new(Body::from(s.as_str().unwrap_or_default().to_owned()))
        }
        Some(Value::Nil) | None => Response::new(Body::empty()),
        Some(other) => Response::new(Body::from(value::to_json(other).to_string())),
    };
    *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    if let Some(Value::Map(h)) = get(&result, "headers") {
        for (k, v) in h {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                continue;
            };
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
                response.headers_mut().insert(k, v);
            }
        }
    }
    cors(response.headers_mut(), origin.as_ref());
    Ok(response)
}

/// One ASGI request: the scope goes out with `serve`, the body goes out through
/// `receive`, and whatever the app `send`s comes back through `out` — followed by the
/// error of `serve`, if it fails.
async fn asgi(
    m: Arc<Manager>,
    ctx: Ctx,
    svc: &Value,
    ws: &str,
    service_id: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(serve) = get(svc, "serve")
        .filter(|s| get_str(s, "_rtype") == Some("method"))
        .cloned()
    else {
        return Err(server_error("ASGI service has no serve function"));
    };
    let owner = get_str(&serve, "_rtarget").unwrap_or_default().to_owned();
    let sub_path = format!("/{}", path.trim_start_matches('/'));
    let method: Method = req.method().clone();
    let scope = map([
        ("type", "http".into()),
        (
            "asgi",
            map([("version", "3.0".into()), ("spec_version", "2.3".into())]),
        ),
        ("http_version", "1.1".into()),
        ("method", method.as_str().into()),
        ("scheme", "http".into()),
        ("path", sub_path.as_str().into()),
        ("raw_path", Value::Binary(sub_path.as_bytes().to_vec())),
        (
            "query_string",
            Value::Binary(query_string(&req).into_bytes()),
        ),
        ("root_path", "".into()),
        ("headers", asgi_headers(req.headers())),
        ("client", Value::Array(vec!["127.0.0.1".into(), 0.into()])),
        ("server", Value::Array(vec!["127.0.0.1".into(), 80.into()])),
        ("workspace", ws.into()),
        ("service_id", service_id.into()),
    ]);

    // Request body: read from the socket only as the app asks for it.
    let body = Arc::new(Mutex::new((
        req.into_body().into_data_stream(),
        Bytes::new(),
        false,
    )));
    let session = format!("asgi{}", random_string(16));
    // Dropped with the response body: until then, a `receive` after the whole request body
    // waits, as ASGI servers do (Starlette treats `http.disconnect` as the client leaving).
    let (response_alive, response_gone) = tokio::sync::watch::channel(());
    let receive: Callback = Arc::new(move |_call| {
        let body = body.clone();
        let mut gone = response_gone.clone();
        Box::pin(async move {
            let mut guard = body.lock().await;
            let (stream, pending, done) = &mut *guard;
            if *done {
                drop(guard);
                while gone.changed().await.is_ok() {}
                return Ok(map([("type", "http.disconnect".into())]));
            }
            if pending.is_empty() {
                match stream.next().await {
                    Some(Ok(chunk)) => *pending = chunk,
                    Some(Err(e)) => {
                        return Err(ManagerError::Internal(format!(
                            "reading the request body: {e}"
                        )))
                    }
                    None => {}
                }
            }
            let take = pending.len().min(BODY_CHUNK);
            let chunk = pending.split_to(take);
            let more = !pending.is_empty() || {
                // Peek whether the stream has more by reading ahead once.
                match stream.next().await {
                    Some(Ok(next)) => {
                        *pending = next;
                        true
                    }
                    _ => false,
                }
            };
            if !more {
                *done = true;
            }
            Ok(map([
                ("type", "http.request".into()),
                ("body", Value::Binary(chunk.to_vec())),
                ("more_body", more.into()),
            ]))
        })
    });
    let (out_tx, mut out_rx) = mpsc::channel::<ManagerResult<Value>>(16);
    let failed_tx = out_tx.clone();
    let send: Callback = Arc::new(move |call| {
        let out = out_tx.clone();
        Box::pin(async move {
            let message = call.args.into_iter().next().unwrap_or(Value::Nil);
            // Backpressure: the app's `send` waits while the HTTP client is slow.
            out.send(Ok(message))
                .await
                .map_err(|_| ManagerError::Internal("the HTTP client went away".into()))?;
            Ok(Value::Nil)
        })
    });
    let args = map([
        ("scope", scope),
        ("receive", m.callback(&session, "receive", &owner, receive)),
        ("send", m.callback(&session, "send", &owner, send)),
    ]);
    {
        let m = m.clone();
        let session = session.clone();
        tokio::spawn(async move {
            if let Err(e) = m.http_invoke(&ctx, &serve, vec![args], APP_TIMEOUT).await {
                let _ = failed_tx.send(Err(e)).await;
            }
            // Dropping the callbacks drops the last senders: the response stream ends.
            m.drop_callbacks(&session);
        });
    }

    // The app's first message must be http.response.start.
    let start = match out_rx.recv().await {
        None => {
            return Err(server_error(
                "Internal Server Error: the app returned without a response",
            ))
        }
        Some(Err(e)) => {
            return Err(ApiError::new(
                e.status(),
                format!("Internal Server Error: {e}"),
            ))
        }
        Some(Ok(msg)) => msg,
    };
    if get_str(&start, "type") != Some("http.response.start") {
        return Err(server_error(
            "Internal Server Error: expected http.response.start",
        ));
    }
    let status = get(&start, "status").and_then(Value::as_u64).unwrap_or(200);
    let mut builder =
        Response::builder().status(StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK));
    if let Some(Value::Array(hs)) = get(&start, "headers") {
        for h in hs {
            let Some(pair) = h.as_array() else { continue };
            let bytes = |v: &Value| match v {
                Value::Binary(b) => b.clone(),
                Value::String(s) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            };
            if let [k, v] = pair.as_slice() {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(&bytes(k)),
                    HeaderValue::from_bytes(&bytes(v)),
                ) {
                    builder = builder.header(k, v);
                }
            }
        }
    }
    // Stream the body as the app sends it; stop after `more_body: false`.
    let stream = body_stream(out_rx, response_alive);
    builder
        .body(Body::from_stream(stream))
        .map_err(|e| server_error(e.to_string()))
}

/// The response body: the `body` of each `http.response.body` the app sends, until one has
/// `more_body: false` or the app finishes; the error of a failed `serve` ends it as an I/O
/// error.
///
/// `alive` is held by the stream and dropped with it (the response is done or the client
/// left), which releases a pending `receive`.
fn body_stream(
    out_rx: mpsc::Receiver<ManagerResult<Value>>,
    alive: tokio::sync::watch::Sender<()>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(
        (out_rx, false, alive),
        |(mut rx, finished, alive)| async move {
            if finished {
                return None;
            }
            loop {
                let msg = match rx.recv().await? {
                    Ok(msg) => msg,
                    Err(e) => {
                        return Some((Err(std::io::Error::other(e.wire())), (rx, true, alive)));
                    }
                };
                if get_str(&msg, "type") != Some("http.response.body") {
                    continue;
                }
                let chunk = match get(&msg, "body") {
                    Some(Value::Binary(b)) => Bytes::from(b.clone()),
                    Some(Value::String(s)) => {
                        Bytes::from(s.as_str().unwrap_or_default().to_owned())
                    }
                    _ => Bytes::new(),
                };
                let more = get(&msg, "more_body")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                return Some((Ok(chunk), (rx, !more, alive)));
            }
        },
    )
}
