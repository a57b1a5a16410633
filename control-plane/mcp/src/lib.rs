//! rhizo's MCP endpoints (workspace-api.md §8.1, `--enable-mcp`): every Hypha service is a
//! Model Context Protocol server, its schema functions tools, its string fields resources
//! (or, for `type: "mcp"` services, the tools, resources and prompts it declares; see
//! [`adapter`]).
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/{ws}/mcp` | 301 to `/{ws}/mcp/` |
//! | any | `/{ws}/mcp/` | 404 JSON: a service id is needed |
//! | POST, GET, DELETE | `/{ws}/mcp/{service_id}/mcp` | streamable HTTP (stateless, JSON responses) |
//! | GET | `/{ws}/mcp/{service_id}/sse` | legacy SSE event stream ([`sse`]) |
//! | POST | `/{ws}/mcp/{service_id}/sse/messages/?session_id=…` | a message into an SSE session |
//! | any | `/{ws}/mcp/{service_id}` | JSON: the service, its endpoints, tools, resources, prompts |
//!
//! Every request is made by the caller of its token (`Authorization: Bearer`, the
//! `access_token` cookie or `?token=`; none: anonymous): a service the caller may not see
//! answers 404 `{"error": "Service … not found or not accessible"}`, and its functions run
//! with the caller's identity. Where the reference differs, and why rhizo does not follow:
//! - the reference caches one MCP app per `ws/service` built with the *first* caller's
//!   workspace interface, so later callers act through it; rhizo resolves the service for
//!   each request's own caller (SSE: the caller who opened the stream);
//! - the reference's middleware sits outside the HTTP rate limiter (workspace-api.md
//!   quirk 14); these routes are merged into the app before the control plane's layers,
//!   so limits apply to them as to any route;
//! - the info route uses the caller's token (the reference reads it anonymously).

pub mod adapter;
pub mod handler;
pub mod results;
pub mod sse;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use handler::{resolve, Handler, ResolveError, Resolved, Target};
use rhizo_control_plane::http::caller;
use rhizo_control_plane::manager::Manager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest JSON-RPC body accepted, in bytes (larger: 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
struct Mcp {
    manager: Arc<Manager>,
    streamable: StreamableHttpService<Handler, LocalSessionManager>,
    sse: Arc<sse::Sessions>,
}

/// The MCP routes under `/{ws}/mcp/…` (module docs), served for `manager`'s services.
pub fn routes(manager: Arc<Manager>) -> axum::Router {
    let factory_manager = manager.clone();
    // Stateless and JSON-answering, as the reference serves it: no session to keep or
    // bound, every POST stands alone. Host checks are off because this is a public server
    // behind its own host name, not a local tool guarding against DNS rebinding.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let streamable = StreamableHttpService::new(
        move || Ok(Handler::per_request(factory_manager.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let state = Mcp {
        manager,
        streamable,
        sse: Arc::new(sse::Sessions::default()),
    };
    axum::Router::new()
        .route("/{ws}/mcp", get(redirect))
        .route("/{ws}/mcp/", any(no_service))
        .route("/{ws}/mcp/{*rest}", any(dispatch))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn redirect(OriginalUri(uri): OriginalUri) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        Redirect::permanent(&format!("{}/", uri.path())),
    )
        .into_response()
}

async fn no_service(Path(ws): Path<String>) -> Response {
    let body = json!({
        "error": "MCP service ID required",
        "message": "No service ID was provided in the URL.",
        "help": "Please specify a service ID. URL format: /{workspace}/mcp/{service_id}/mcp",
        "example": format!("/{ws}/mcp/your-service-id/mcp"),
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Which endpoint a path under `/{ws}/mcp/` names, and the service id before it.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    Streamable(&'a str),
    Sse(&'a str),
    SseMessages(&'a str),
    Info(&'a str),
}

fn endpoint(rest: &str) -> Endpoint<'_> {
    if let Some(sid) = rest
        .strip_suffix("/sse/messages/")
        .or_else(|| rest.strip_suffix("/sse/messages"))
    {
        Endpoint::SseMessages(sid)
    } else if let Some(sid) = rest.strip_suffix("/sse") {
        Endpoint::Sse(sid)
    } else if let Some(sid) = rest.strip_suffix("/mcp") {
        Endpoint::Streamable(sid)
    } else {
        Endpoint::Info(rest.trim_end_matches('/'))
    }
}

fn resolve_failure(service_id: &str, e: ResolveError) -> Response {
    match e {
        ResolveError::NotFound(_) => error_response(
            404,
            format!("Service {service_id} not found or not accessible"),
        ),
        ResolveError::NotCompatible(d) => error_response(
            400,
            format!("Service {service_id} is not MCP compatible: {d}"),
        ),
        ResolveError::Other(d) => error_response(500, format!("Internal Server Error: {d}")),
    }
}

async fn dispatch(
    State(s): State<Mcp>,
    Path((ws, rest)): Path<(String, String)>,
    OriginalUri(original): OriginalUri,
    Query(query): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let ep = endpoint(&rest);
    let (Endpoint::Streamable(sid)
    | Endpoint::Sse(sid)
    | Endpoint::SseMessages(sid)
    | Endpoint::Info(sid)) = ep;
    if sid.is_empty() {
        return no_service(Path(ws)).await;
    }
    let sid = sid.to_owned();
    // The body is read before any answer: an early answer that leaves it unread would make
    // the server drop the connection under the client's next pooled request.
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            // The rest of the body is left unread, so the connection cannot carry another
            // request: say so, or a pooling client would send its next one into it.
            let mut r = error_response(413, format!("The request exceeds {MAX_BODY_BYTES} bytes"));
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    // Posting into an SSE session needs only its (unguessable) session id: the stream's
    // opener was checked when it opened.
    if let Endpoint::SseMessages(_) = ep {
        if parts.method != Method::POST {
            return error_response(405, "POST a JSON-RPC message here".into());
        }
        return s
            .sse
            .post(query.get("session_id").map(String::as_str), &body)
            .await;
    }
    let ctx = match caller(&s.manager, &parts.headers, &query, &ws) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let target = Target {
        ctx,
        ws: ws.clone(),
        service_id: sid.clone(),
        mode: query.get("_mode").cloned(),
    };
    match ep {
        Endpoint::Streamable(_) => {
            let adapter = match resolve(&s.manager, &target).await {
                Ok(a) => a,
                Err(e) => return resolve_failure(&sid, e),
            };
            // rmcp answers an unparsable body 415 with plain text; a JSON-RPC client
            // expects a parse error (-32700).
            if parts.method == Method::POST {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let error = json!({
                        "jsonrpc": "2.0",
                        "id": null,
                        "error": {"code": -32700, "message": format!("Parse error: {e}")},
                    });
                    return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
                }
            }
            parts
                .extensions
                .insert(Arc::new(Resolved { target, adapter }));
            let req = Request::from_parts(parts, Body::from(body));
            s.streamable
                .handle(req)
                .await
                .map(Body::new)
                .into_response()
        }
        Endpoint::Sse(_) => {
            if parts.method != Method::GET {
                return error_response(405, "Open the SSE stream with GET".into());
            }
            if let Err(e) = resolve(&s.manager, &target).await {
                return resolve_failure(&sid, e);
            }
            let messages = format!("{}/messages/", original.path().trim_end_matches('/'));
            s.sse
                .open(Handler::fixed(s.manager.clone(), target), &messages)
        }
        _ => info(&s.manager, &target, &ws, &sid).await,
    }
}

/// The info route: the service, its endpoints and what it offers over MCP.
async fn info(m: &Arc<Manager>, target: &Target, ws: &str, sid: &str) -> Response {
    let endpoints = json!({
        "streamable_http": format!("/{ws}/mcp/{sid}/mcp"),
        "sse": format!("/{ws}/mcp/{sid}/sse"),
    });
    match resolve(m, target).await {
        Ok(a) => {
            let body = json!({
                "service": {
                    "id": a.service_id,
                    "name": a.name,
                    "type": a.service_type.as_deref().unwrap_or("auto-wrapped"),
                    "description": a.description,
                },
                "endpoints": endpoints,
                "capabilities": {
                    "tools": a.tool_list(),
                    "resources": a.resource_list(),
                    "prompts": a.prompt_list(),
                },
                "summary": a.summary(),
                "help": "Use the streamable HTTP endpoint for MCP communication or SSE for server-sent events.",
            });
            axum::Json(body).into_response()
        }
        Err(ResolveError::NotFound(e)) => {
            let body = json!({
                "error": format!("Service not found or not accessible: {e}"),
                "message": format!("The service '{sid}' was not found in workspace '{ws}' or you don't have permission to access it."),
                "help": "Ensure the service exists and you have permission to access it.",
                "endpoints": endpoints,
            });
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
        Err(e) => resolve_failure(sid, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_off_the_service_id() {
        assert_eq!(endpoint("svc/mcp"), Endpoint::Streamable("svc"));
        assert_eq!(endpoint("c:svc@app/sse"), Endpoint::Sse("c:svc@app"));
        assert_eq!(endpoint("svc/sse/messages/"), Endpoint::SseMessages("svc"));
        assert_eq!(endpoint("svc"), Endpoint::Info("svc"));
        assert_eq!(endpoint("svc/"), Endpoint::Info("svc"));
        // A service called `mcp`.
        assert_eq!(endpoint("mcp/mcp"), Endpoint::Streamable("mcp"));
        assert_eq!(endpoint("mcp"), Endpoint::Info("mcp"));
        assert_eq!(
            endpoint("ws-x/c:svc/mcp"),
            Endpoint::Streamable("ws-x/c:svc")
        );
    }
}
