//! py-worker's REST and WebSocket API and its web UI (seed 003, apps-workers.md §6.1), so
//! that its clients work unchanged against `rhizo worker ai-cli --http-port 7788`:
//!
//! | route | answer |
//! |-------|--------|
//! | `GET /` | the web UI (`ui.html`: worker list, create/delete, chat view with live output) |
//! | `GET /health`, `GET /api/health` | `{status: "healthy", …}` |
//! | `GET /api/workers` | `{workers: [worker]}` |
//! | `POST /api/workers` `{name, project_path, ai_cli_type="claude", config={}}` | 201 and the worker; 400 `{detail}`; 422 `{detail: [..]}` for a bad body |
//! | `GET /api/workers/{id}` | the worker with `config` and `messages` (its last 50 history entries); 404 `{detail: "Worker not found: <id>"}` |
//! | `DELETE /api/workers/{id}` | `{status: "deleted", message}` |
//! | `GET /api/ai-clis` | `{available_clis: [{type, name, binary, version, enabled, description, config_options}], default}` — whether a key is configured, never the key |
//! | `GET /openapi.json`, `GET /docs` | the OpenAPI document, and a page showing it |
//! | `WS /ws/{id}` | see below |
//!
//! A worker is `{id, name, project_path, ai_cli_type, status, busy, created_at,
//! last_activity}`, times ISO 8601 UTC with `Z`. The WebSocket first sends `{type:
//! "connected", worker_id, worker_name, ai_cli_type}`, then `{type: "history", messages}`
//! (the last 20 entries) when there are any, then `{type: "output", timestamp, content}` for
//! every CLI event and `{type: "error", content}` for errors; it takes `{type: "message",
//! content}` (sent to the CLI, no wait) and `{type: "ping"}` (→ `{type: "pong"}`); anything
//! else gets `{type: "error", content}` and the socket stays open. An unknown worker gets
//! the error and a close.
//!
//! Differences from py-worker, on purpose: the body's `config` is accepted and ignored
//! (py-worker merged it over the adapter's settings, so any caller could pick the binary
//! and the API base); `project_path` must lie inside the worker's `AI_CLI_PROJECTS_BASE`;
//! with `--http-token` every route wants `Authorization: Bearer <token>` (or `?token=`).

use super::agent::{Agent, Entry};
use super::{AgentManager, AiCliError, NewAgent};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The web UI page.
const UI: &str = include_str!("ui.html");

#[derive(Clone)]
struct AppState {
    manager: Arc<AgentManager>,
    token: Option<Arc<str>>,
}

/// The REST/WebSocket router over `manager`; with `token`, every request must carry it.
pub fn router(manager: Arc<AgentManager>, token: Option<String>) -> Router {
    let state = AppState {
        manager,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/", get(|| async { Html(UI) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/health",
            get(|| async {
                Json(json!({"status": "healthy", "service": "AI Code Worker Manager"}))
            }),
        )
        .route("/api/health", get(health))
        .route("/api/workers", get(list_workers).post(create_worker))
        .route("/api/workers/{id}", get(get_worker).delete(delete_worker))
        .route("/api/ai-clis", get(ai_clis))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/docs", get(|| async { Html(DOCS) }))
        .route("/redoc", get(|| async { Html(DOCS) }))
        .route("/ws/{id}", get(ws_upgrade))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Serves [`router`] on `listener` until the future is dropped.
///
/// Errors: the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Arc<AgentManager>,
    token: Option<String>,
) -> std::io::Result<()> {
    axum::serve(listener, router(manager, token)).await
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(want) = &s.token else {
        return next.run(req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    if bearer.or(query).as_deref() == Some(&**want) {
        next.run(req).await
    } else {
        detail(StatusCode::UNAUTHORIZED, "Not authenticated")
    }
}

fn detail(code: StatusCode, msg: &str) -> Response {
    (code, Json(json!({"detail": msg}))).into_response()
}

/// The worker object of the REST API.
fn worker_json(a: &Agent) -> Value {
    let status = match a.status().as_str() {
        "busy" => "running",
        s => s,
    };
    json!({
        "id": a.spec.id,
        "name": a.spec.name,
        "project_path": a.spec.dir.display().to_string(),
        "ai_cli_type": a.cli(),
        "status": status,
        "busy": a.is_busy(),
        "created_at": a.created_at(),
        "last_activity": a.entries().last().map(|e| e.timestamp.clone()).unwrap_or_else(|| a.created_at().to_owned()),
        "error": a.error(),
    })
}

/// A history entry as py-worker lists it: a user message `{type: "user", content,
/// timestamp}`, a CLI event as the event with `timestamp` added, others `{type, content,
/// timestamp}`.
fn history_json(e: &Entry) -> Value {
    match e.kind.as_str() {
        "input" => json!({"type": "user", "content": e.content, "timestamp": e.timestamp}),
        "output" => match &e.content {
            Value::Object(m) => {
                let mut m = m.clone();
                m.insert("timestamp".into(), json!(e.timestamp));
                Value::Object(m)
            }
            other => json!({"type": "output", "content": other, "timestamp": e.timestamp}),
        },
        kind => json!({"type": kind, "content": e.content, "timestamp": e.timestamp}),
    }
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "total_workers": s.manager.list().len(),
        "max_workers": s.manager.options().max_workers,
        "enabled_ai_clis": s.manager.options().registry.names(),
    }))
}

async fn list_workers(State(s): State<AppState>) -> Json<Value> {
    let workers: Vec<Value> = s.manager.list().iter().map(|a| worker_json(a)).collect();
    Json(json!({"workers": workers}))
}

fn unprocessable(loc: &str, msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": [{"type": "value_error", "loc": ["body", loc], "msg": msg}]})),
    )
        .into_response()
}

async fn create_worker(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("body", "the body must be a JSON object");
    };
    let Some(obj) = body.as_object() else {
        return unprocessable("body", "the body must be a JSON object");
    };
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n.chars().count() <= 100 => n.to_owned(),
        _ => return unprocessable("name", "name: a string of 1 to 100 characters is required"),
    };
    let project_path = match obj.get("project_path").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => {
            return unprocessable(
                "project_path",
                "project_path: a non-empty string is required",
            )
        }
    };
    let cli = match obj.get("ai_cli_type") {
        None | Some(Value::Null) => "claude".to_owned(),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return unprocessable("ai_cli_type", "ai_cli_type must be a string"),
    };
    if obj
        .get("config")
        .is_some_and(|c| !c.is_object() && !c.is_null())
    {
        return unprocessable("config", "config must be an object");
    }
    let req = NewAgent {
        name,
        cli: Some(cli),
        project_path: Some(project_path),
        ..Default::default()
    };
    let manager = s.manager.clone();
    match tokio::task::spawn_blocking(move || {
        // create() touches the file system; keep it off the async threads.
        let rt = tokio::runtime::Handle::current();
        let _g = rt.enter();
        manager.create(req)
    })
    .await
    {
        Ok(Ok(a)) => (StatusCode::CREATED, Json(worker_json(&a))).into_response(),
        Ok(Err(e)) => detail(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn not_found(e: AiCliError) -> Response {
    detail(StatusCode::NOT_FOUND, &e.to_string())
}

async fn get_worker(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.manager.get(&id) {
        Ok(a) => {
            let mut w = worker_json(&a);
            let entries = a.entries();
            let from = entries.len().saturating_sub(50);
            w["messages"] = Value::Array(entries[from..].iter().map(|e| history_json(e)).collect());
            w["config"] = json!({});
            w["info"] = a.info();
            Json(w).into_response()
        }
        Err(e) => not_found(e),
    }
}

async fn delete_worker(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.manager.remove(&id).await {
        Ok(_) => Json(
            json!({"status": "deleted", "message": format!("Worker {id} deleted successfully")}),
        )
        .into_response(),
        Err(e) => not_found(e),
    }
}

async fn ai_clis(State(s): State<AppState>) -> Json<Value> {
    let names = HashMap::from([("claude", "Claude Code"), ("opencode", "OpenCode")]);
    let list: Vec<Value> = s
        .manager
        .adapters()
        .into_iter()
        .map(|a| {
            let t = a["name"].as_str().unwrap_or_default().to_owned();
            json!({
                "type": t,
                "name": names.get(t.as_str()).copied().unwrap_or(t.as_str()),
                "binary": a["binary"],
                "version": Value::Null,
                "enabled": true,
                "available": a["available"],
                "description": a["description"],
                "config_options": {
                    "model": s.manager.options().registry.get(&t).and_then(|(_, st)| st.model),
                    "api_key_configured": a["api_key_configured"],
                    "mode": a["mode"],
                    "output_mode": a["output_mode"],
                },
            })
        })
        .collect();
    Json(json!({"available_clis": list, "default": s.manager.options().default_cli}))
}

async fn ws_upgrade(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(_q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| ws_session(socket, s.manager, id))
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn ws_session(mut socket: WebSocket, manager: Arc<AgentManager>, id: String) {
    let agent = match manager.get(&id) {
        Ok(a) => a,
        Err(e) => {
            let _ = send(
                &mut socket,
                json!({"type": "error", "content": e.to_string()}),
            )
            .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let mut rx = agent.subscribe();
    let hello = json!({"type": "connected", "worker_id": id, "worker_name": agent.spec.name, "ai_cli_type": agent.cli()});
    if !send(&mut socket, hello).await {
        return;
    }
    let entries = agent.entries();
    if !entries.is_empty() {
        let from = entries.len().saturating_sub(20);
        let messages: Vec<Value> = entries[from..].iter().map(|e| history_json(e)).collect();
        if !send(
            &mut socket,
            json!({"type": "history", "messages": messages}),
        )
        .await
        {
            return;
        }
    }
    loop {
        tokio::select! {
            inbound = socket.recv() => {
                let Some(Ok(msg)) = inbound else { return };
                let reply = match msg {
                    Message::Text(t) => on_client_message(&agent, t.as_str()),
                    Message::Binary(_) => Some(json!({"type": "error", "content": "Error processing message: binary frames are not accepted"})),
                    Message::Close(_) => return,
                    _ => None,
                };
                if let Some(r) = reply {
                    if !send(&mut socket, r).await {
                        return;
                    }
                }
            }
            ev = rx.recv() => match ev {
                Ok(e) => {
                    let out = match e.kind.as_str() {
                        "output" => Some(json!({"type": "output", "timestamp": e.timestamp, "content": e.content})),
                        "error" => Some(json!({"type": "error", "content": e.content, "timestamp": e.timestamp})),
                        _ => None,
                    };
                    if let Some(o) = out {
                        if !send(&mut socket, o).await {
                            return;
                        }
                    }
                    if e.kind == "info" && e.content == "session stopped" {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let _ = send(&mut socket, json!({"type": "error", "content": format!("{n} events were dropped (the connection was too slow)")})).await;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// The reply to one client message, if any.
fn on_client_message(agent: &Arc<Agent>, text: &str) -> Option<Value> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some(json!({"type": "error", "content": "Invalid JSON message"}));
    };
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Some(
            json!({"type": "error", "content": "Error processing message: a message needs a string 'type'"}),
        );
    };
    match kind {
        "message" => match v.get("content").and_then(Value::as_str) {
            Some(content) => match agent.send(content) {
                Ok(_) => None,
                Err(e) => Some(
                    json!({"type": "error", "content": format!("Failed to send message to worker: {e}")}),
                ),
            },
            None => Some(
                json!({"type": "error", "content": "Error processing message: 'content' must be a string"}),
            ),
        },
        "ping" => Some(json!({"type": "pong"})),
        "interrupt" => {
            agent.interrupt();
            None
        }
        other => {
            Some(json!({"type": "error", "content": format!("Unknown message type: {other}")}))
        }
    }
}

const DOCS: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>AI Code Worker Manager — API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}code,pre{background:#f4f4f4;padding:2px 4px}h2{margin-top:1.5em}</style></head>
<body><h1>AI Code Worker Manager — API</h1><p>OpenAPI document: <a href="/openapi.json">/openapi.json</a></p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json'+location.search).then(r=>r.json()).then(doc=>{
  const ops=document.getElementById('ops'); ops.textContent='';
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    const h=document.createElement('h2'); h.textContent=method.toUpperCase()+' '+path; ops.appendChild(h);
    const p=document.createElement('p'); p.textContent=op.summary||''; ops.appendChild(p);
  }
});
</script></body></html>"#;

fn openapi() -> Value {
    let worker = json!({"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "project_path": {"type": "string"},
        "ai_cli_type": {"type": "string"}, "status": {"type": "string", "enum": ["running", "error", "stopped"]},
        "busy": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"},
        "last_activity": {"type": "string", "format": "date-time"}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "AI Code Worker Manager", "version": "1.0.0", "description": "rhizo's ai-cli worker: py-worker's REST API"},
        "paths": {
            "/api/health": {"get": {"summary": "Health and capacity"}},
            "/api/workers": {
                "get": {"summary": "List workers", "responses": {"200": {"description": "{workers: [Worker]}"}}},
                "post": {"summary": "Create a worker and start its CLI",
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["name", "project_path"], "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 100}, "project_path": {"type": "string", "minLength": 1},
                        "ai_cli_type": {"type": "string", "default": "claude"}, "config": {"type": "object", "description": "accepted and ignored"}}}}}},
                    "responses": {"201": {"description": "the Worker", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Worker"}}}}, "400": {"description": "{detail}"}, "422": {"description": "{detail: [..]}"}}}
            },
            "/api/workers/{worker_id}": {
                "get": {"summary": "A worker with its last 50 messages"},
                "delete": {"summary": "Stop and remove a worker"}
            },
            "/api/ai-clis": {"get": {"summary": "The enabled AI CLIs"}},
            "/ws/{worker_id}": {"get": {"summary": "WebSocket: {type: message, content} in; connected, history, output, error, pong out"}}
        },
        "components": {"schemas": {"Worker": worker}}
    })
}
