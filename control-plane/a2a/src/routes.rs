//! The A2A route handlers (workspace-api.md §8.1, A2A line): resolving the service for the
//! caller, the agent card, the info page and the JSON-RPC methods. See the crate docs for
//! the route table.

use crate::card;
use crate::jsonrpc::{self, Request, RpcError};
use crate::tasks::{Cancel, Running, TaskStore};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Json;
use rhizo_control_plane::http::caller;
use rhizo_control_plane::manager::{Ctx, Manager};
use rhizo_control_plane::ManagerError;
use rhizo_protocol::value::{from_json, get as member, get_str, to_json};
use rmpv::Value as Mp;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// The largest JSON-RPC body read (10 MiB); larger ones get 413.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// How much of an oversized body is read and dropped before answering 413 (4 × [`MAX_BODY`]).
const DRAIN_LIMIT: usize = 4 * MAX_BODY;

/// How long one call of the service's `run` (or one item of its generator) may take.
/// Longer than the 30 s of plain HTTP calls: agents often wait on a model.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a card function may take.
const CARD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct A2a {
    manager: Arc<Manager>,
    tasks: Arc<TaskStore>,
}

/// The routes with their state: a fresh task store.
pub(crate) fn router(manager: Arc<Manager>) -> axum::Router {
    let state = A2a {
        manager,
        tasks: Arc::new(TaskStore::default()),
    };
    axum::Router::new()
        .route("/{ws}/a2a-info/{service_id}", get(info))
        .route("/{ws}/a2a", any(no_service))
        .route("/{ws}/a2a/", any(no_service))
        .route("/{ws}/a2a/{service_id}", get(info).post(rpc))
        .route("/{ws}/a2a/{service_id}/", get(info).post(rpc))
        .route("/{ws}/a2a/{service_id}/{*rest}", get(sub_resource))
        .with_state(state)
}

fn json_error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_error(status, json!({"error": message.into()}))
}

// === resolving the agent ===

/// Why a request's service cannot be served.
enum Refusal {
    /// The token does not verify (its status, e.g. 401).
    Token(StatusCode, String),
    /// No such service, or the caller may not see it.
    NotFound,
    /// The service's type is not `a2a` (the type it has).
    NotA2a(String),
    /// Anything else (a status and the error's wire text).
    Other(StatusCode, String),
}

/// The service of a request, resolved for its caller.
struct Agent {
    ctx: Ctx,
    ws: String,
    sid: String,
    /// The service's full id; tasks belong to it.
    full_id: String,
    info: Mp,
    service: Mp,
}

async fn resolve(
    m: &Arc<Manager>,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    ws: &str,
    sid: &str,
) -> Result<Agent, Refusal> {
    let ctx = caller(m, headers, query, ws).map_err(|e| Refusal::Token(e.status, e.detail))?;
    let mode = query.get("_mode").map(String::as_str);
    let refuse = |e: ManagerError| match e {
        ManagerError::NotFound(_) | ManagerError::Permission(_) => Refusal::NotFound,
        e => Refusal::Other(e.status(), e.wire()),
    };
    let info = m.http_service_info(&ctx, ws, sid, mode).map_err(refuse)?;
    let kind = get_str(&info, "type").unwrap_or("").to_owned();
    if kind != "a2a" {
        return Err(Refusal::NotA2a(kind));
    }
    let service = m
        .http_service_object(&ctx, ws, sid, mode)
        .await
        .map_err(refuse)?;
    let full_id = get_str(&info, "id")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{ws}/{sid}"));
    Ok(Agent {
        ctx,
        ws: ws.to_owned(),
        sid: sid.to_owned(),
        full_id,
        info,
        service,
    })
}

/// The answer of the card and JSON-RPC routes to a refusal (the reference's texts).
fn refusal_response(r: Refusal, sid: &str) -> Response {
    match r {
        Refusal::Token(status, detail) => error(status, detail),
        Refusal::NotFound => error(
            StatusCode::NOT_FOUND,
            format!("Service {sid} not found or not accessible"),
        ),
        Refusal::NotA2a(_) => error(
            StatusCode::BAD_REQUEST,
            format!("Service {sid} is not an A2A service"),
        ),
        Refusal::Other(status, detail) => error(status, format!("Internal Server Error: {detail}")),
    }
}

fn is_method(v: &Mp) -> bool {
    get_str(v, "_rtype") == Some("method")
}

// === impl Agent ===

impl Agent {
    /// This agent's JSON-RPC URL on this server.
    fn url(&self, m: &Manager) -> String {
        format!(
            "{}/{}/a2a/{}/",
            m.config.public_base_url.trim_end_matches('/'),
            self.ws,
            self.sid
        )
    }

    /// The member `key` of the service as JSON: called when it is a function.
    async fn member_value(&self, m: &Manager, key: &str) -> Result<Option<Value>, ManagerError> {
        match member(&self.service, key) {
            None | Some(Mp::Nil) => Ok(None),
            Some(f) if is_method(f) => {
                let v = m
                    .http_invoke(&self.ctx, f, Vec::new(), CARD_TIMEOUT)
                    .await?;
                Ok(Some(to_json(&v)))
            }
            Some(v) => Ok(Some(to_json(v))),
        }
    }

    /// The served agent card: `agent_card`, else `extended_agent_card`, else a default.
    async fn card(&self, m: &Manager) -> Result<Value, ManagerError> {
        let raw = match self.member_value(m, "agent_card").await? {
            Some(c) => Some(c),
            None => self.member_value(m, "extended_agent_card").await?,
        };
        let url = self.url(m);
        Ok(match raw {
            Some(c) => card::normalize(&c, &self.sid, &url),
            None => card::default_card(&self.sid, &url),
        })
    }
}

// === cards and info ===

/// `GET /{ws}/a2a/{service_id}/{*rest}`: the agent card at `.well-known/agent-card.json`
/// (or `agent.json`), the extended card at `agent/authenticatedExtendedCard`; 404 else.
async fn sub_resource(
    State(st): State<A2a>,
    Path((ws, sid, rest)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let rest = rest.trim_end_matches('/');
    let extended = rest == "agent/authenticatedExtendedCard";
    if !extended && rest != ".well-known/agent-card.json" && rest != ".well-known/agent.json" {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let agent = match resolve(&st.manager, &headers, &q, &ws, &sid).await {
        Ok(a) => a,
        Err(r) => return refusal_response(r, &sid),
    };
    let card = if extended {
        extended_card(&st.manager, &agent).await
    } else {
        agent.card(&st.manager).await.map_err(|e| e.wire())
    };
    match card {
        Ok(c) => Json(c).into_response(),
        Err(e) if extended => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal server error: {e}"),
        ),
    }
}

/// The authenticated extended card, when the service has `extended_agent_card` and its
/// card says it supports one. Errors: the text for a 404 / `-32007`.
async fn extended_card(m: &Manager, agent: &Agent) -> Result<Value, String> {
    let not_configured = || "Authenticated extended agent card is not configured.".to_owned();
    let public = agent.card(m).await.map_err(|e| e.wire())?;
    if public["supportsAuthenticatedExtendedCard"] != json!(true) {
        return Err("Extended agent card not supported or not enabled.".into());
    }
    let raw = agent
        .member_value(m, "extended_agent_card")
        .await
        .map_err(|e| e.wire())?
        .ok_or_else(not_configured)?;
    Ok(card::normalize(&raw, &agent.sid, &agent.url(m)))
}

/// `GET /{ws}/a2a-info/{service_id}` (and `GET /{ws}/a2a/{service_id}[/]`): the service,
/// its card, endpoints and functions; 404 / 400 JSON with `error`, `message` and `help`.
async fn info(
    State(st): State<A2a>,
    Path((ws, sid)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let agent = match resolve(&st.manager, &headers, &q, &ws, &sid).await {
        Ok(a) => a,
        Err(Refusal::NotFound) => {
            return json_error(
                StatusCode::NOT_FOUND,
                json!({
                    "error": "Service not found or not accessible",
                    "message": format!("The service '{sid}' was not found in workspace '{ws}' or you don't have permission to access it."),
                    "help": "Ensure the service exists and you have permission to access it.",
                }),
            )
        }
        Err(Refusal::NotA2a(kind)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "Not an A2A service",
                    "message": format!("Service '{sid}' is not an A2A service (type: '{kind}')"),
                    "help": "This endpoint is for A2A services only.",
                }),
            )
        }
        Err(r) => return refusal_response(r, &sid),
    };
    let card = match agent.card(&st.manager).await {
        Ok(c) => c,
        Err(e) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "Failed to retrieve service information", "message": e.wire()}),
            )
        }
    };
    let functions: Vec<&str> = ["run", "agent_card", "extended_agent_card"]
        .into_iter()
        .filter(|k| member(&agent.service, k).is_some())
        .collect();
    let info = &agent.info;
    Json(json!({
        "service": {
            "id": agent.full_id,
            "name": get_str(info, "name").unwrap_or(&agent.full_id),
            "type": "a2a",
            "description": get_str(info, "description").unwrap_or("A2A agent service"),
        },
        "endpoints": {
            "a2a": format!("/{ws}/a2a/{sid}"),
            "info": format!("/{ws}/a2a-info/{sid}"),
            "agent_card": format!("/{ws}/a2a/{sid}/.well-known/agent-card.json"),
        },
        "agent_card": card,
        "service_functions": functions,
        "help": "Use the A2A endpoint for agent communication following the A2A protocol.",
    }))
    .into_response()
}

/// `/{ws}/a2a[/]` without a service id: 404 with help.
async fn no_service(Path(ws): Path<String>) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        json!({
            "error": "A2A service ID required",
            "message": "No service ID was provided in the URL.",
            "help": "Please specify a service ID. URL format: /{workspace}/a2a/{service_id}",
            "example": format!("/{ws}/a2a/your-service-id"),
        }),
    )
}

// === JSON-RPC ===

/// `POST /{ws}/a2a/{service_id}[/]`: one JSON-RPC request. Transport errors are HTTP
/// errors (413, 404, 400, 401); JSON-RPC errors travel with 200.
async fn rpc(
    State(st): State<A2a>,
    Path((ws, sid)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let hopeless = declared.is_some_and(|n| n > DRAIN_LIMIT);
    let read = if hopeless {
        None
    } else {
        read_body(body).await
    };
    let Some(bytes) = read else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    };
    let agent = match resolve(&st.manager, &headers, &q, &ws, &sid).await {
        Ok(a) => a,
        Err(r) => return refusal_response(r, &sid),
    };
    let req = match jsonrpc::parse_request(&bytes) {
        Ok(r) => r,
        Err((id, e)) => return reply(&id, Err(e)),
    };
    let params = &req.params;
    match req.method.as_str() {
        "message/send" => message_send(&st, agent, &req).await,
        "message/stream" => message_stream(&st, agent, &req),
        "tasks/get" => reply(
            &req.id,
            jsonrpc::task_id_param(params).and_then(|id| {
                let n = params.get("historyLength").and_then(Value::as_u64);
                st.tasks
                    .get(&agent.full_id, &id)
                    .map(|t| jsonrpc::with_history_length(&t, n))
                    .ok_or_else(|| RpcError::task_not_found("Task not found"))
            }),
        ),
        "tasks/cancel" => reply(
            &req.id,
            jsonrpc::task_id_param(params).and_then(|id| {
                match st.tasks.cancel(&agent.full_id, &id) {
                    Cancel::Canceled(t) => Ok(t),
                    Cancel::Terminal(state) => Err(RpcError::task_not_cancelable(&state)),
                    Cancel::NotFound => Err(RpcError::task_not_found("Task not found")),
                }
            }),
        ),
        "tasks/resubscribe" => resubscribe(&st, &agent, &req),
        "agent/getAuthenticatedExtendedCard" => {
            let card = extended_card(&st.manager, &agent)
                .await
                .map_err(|_| RpcError::extended_card_not_configured());
            reply(&req.id, card)
        }
        m if m.starts_with("tasks/pushNotificationConfig/") => {
            reply(&req.id, Err(RpcError::push_not_supported()))
        }
        m => reply(&req.id, Err(RpcError::method_not_found(m))),
    }
}

/// The body, if it is at most [`MAX_BODY`] bytes. A larger one is read on (and dropped)
/// up to [`DRAIN_LIMIT`] bytes, so that a client still sending it reads the 413 instead
/// of a reset connection.
async fn read_body(body: Body) -> Option<axum::body::Bytes> {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = data.next().await {
        let Ok(chunk) = chunk else {
            return None;
        };
        seen += chunk.len();
        if seen <= MAX_BODY {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            return None;
        }
    }
    (seen <= MAX_BODY).then(|| buf.into())
}

/// A JSON-RPC response with status 200.
fn reply(id: &Value, result: Result<Value, RpcError>) -> Response {
    Json(match result {
        Ok(r) => jsonrpc::success(id, r),
        Err(e) => jsonrpc::failure(id, &e),
    })
    .into_response()
}

/// An SSE response of JSON-RPC responses (`data: <json>` each), ending when `events` ends.
fn sse<S>(events: S) -> Response
where
    S: futures_util::Stream<Item = Value> + Send + 'static,
{
    use futures_util::StreamExt;
    let events = events.map(|v| Ok::<_, Infallible>(Event::default().data(v.to_string())));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// An SSE response of one JSON-RPC error.
fn sse_error(id: &Value, e: RpcError) -> Response {
    sse(futures_util::stream::iter([jsonrpc::failure(id, &e)]))
}

/// The checks and setup shared by `message/send` and `message/stream`: the user message,
/// the task it refers to (only new tasks are accepted: every task of rhizo's ends with
/// its one `run`), a new task stored for the agent. Errors: `-32602` for bad params or a
/// task that already ended, `-32001` for an unknown `taskId`, `-32603` when the service
/// has no `run`.
fn start(st: &A2a, agent: &Agent, params: &Value) -> Result<Exec, RpcError> {
    let user = jsonrpc::message_param(params)?;
    let Some(run) = member(&agent.service, "run")
        .filter(|r| is_method(r))
        .cloned()
    else {
        return Err(RpcError::internal("Service does not have a 'run' function"));
    };
    if let Some(tid) = user.get("taskId").and_then(Value::as_str) {
        return Err(match st.tasks.get(&agent.full_id, tid) {
            Some(t) => RpcError::invalid_params(format!(
                "Task {tid} is in state {} and takes no further messages",
                t["status"]["state"].as_str().unwrap_or("unknown")
            )),
            None => {
                RpcError::task_not_found(format!("Task {tid} was specified but does not exist"))
            }
        });
    }
    let context_id = user
        .get("contextId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(jsonrpc::new_id);
    let task = jsonrpc::new_task(&jsonrpc::new_id(), &context_id, &user);
    let running = st.tasks.insert(&agent.full_id, task.clone());
    Ok(Exec {
        manager: st.manager.clone(),
        tasks: st.tasks.clone(),
        ctx: agent.ctx.clone(),
        run,
        user,
        task,
        running,
    })
}

/// `message/send`: runs the agent and answers its reply as a `Message` (as the reference
/// does; it carries `taskId`, whose task `tasks/get` then finds completed or failed). A
/// failing `run` answers a message `Error: …` (as the reference) and the task is
/// `failed`; a canceled run answers the canceled `Task`. With
/// `configuration.blocking: false` the new `Task` is answered at once and runs on.
async fn message_send(st: &A2a, agent: Agent, req: &Request) -> Response {
    let exec = match start(st, &agent, &req.params) {
        Ok(e) => e,
        Err(e) => return reply(&req.id, Err(e)),
    };
    let blocking = req.params["configuration"]["blocking"] != json!(false);
    let submitted = exec.task.clone();
    // Spawned: the run finishes and is recorded even if the caller goes away.
    let run = tokio::spawn(exec.execute(None));
    if !blocking {
        return reply(&req.id, Ok(submitted));
    }
    match run.await {
        Ok((_, Some(message))) => reply(&req.id, Ok(message)),
        Ok((task, None)) => reply(&req.id, Ok(task)),
        Err(e) => reply(&req.id, Err(RpcError::internal(e.to_string()))),
    }
}

/// `message/stream`: SSE of the new `Task`, `status-update` working, `artifact-update`
/// chunk(s), and a final `status-update` (completed, failed or canceled, with the agent's
/// message). Param errors are answered as plain JSON, like the reference.
fn message_stream(st: &A2a, agent: Agent, req: &Request) -> Response {
    if let Err(e) = jsonrpc::message_param(&req.params) {
        return reply(&req.id, Err(e));
    }
    let exec = match start(st, &agent, &req.params) {
        Ok(e) => e,
        Err(e) => return sse_error(&req.id, e),
    };
    let (tx, rx) = mpsc::channel::<Value>(16);
    tokio::spawn(exec.execute(Some(tx)));
    let id = req.id.clone();
    let events =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) });
    use futures_util::StreamExt;
    sse(events.map(move |ev| jsonrpc::success(&id, ev)))
}

/// `tasks/resubscribe`: SSE of the running task's current state, then its further events
/// up to the final one. A task that already ended answers `-32602` (as the a2a-sdk
/// server the reference uses), an unknown one `-32001`, both in the stream.
fn resubscribe(st: &A2a, agent: &Agent, req: &Request) -> Response {
    let id = match jsonrpc::task_id_param(&req.params) {
        Ok(id) => id,
        Err(e) => return reply(&req.id, Err(e)),
    };
    let Some((task, events)) = st.tasks.subscribe(&agent.full_id, &id) else {
        return sse_error(&req.id, RpcError::task_not_found("Task not found"));
    };
    let Some(rx) = events else {
        let state = task["status"]["state"].as_str().unwrap_or("unknown");
        return sse_error(
            &req.id,
            RpcError::invalid_params(format!("Task {id} is in terminal state: {state}")),
        );
    };
    let rid = req.id.clone();
    let first = futures_util::stream::iter([task]);
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    sse(first.chain(rest).map(move |ev| jsonrpc::success(&rid, ev)))
}

// === running the agent ===

/// One run of an agent's `run` for a new task.
struct Exec {
    manager: Arc<Manager>,
    tasks: Arc<TaskStore>,
    ctx: Ctx,
    run: Mp,
    user: Value,
    task: Value,
    running: Running,
}

/// How a run ended.
enum Outcome {
    Done(Result<String, ManagerError>),
    Canceled,
}

// === impl Exec ===

impl Exec {
    /// Sends `event` to the stream (if any; a gone client is ignored) and to resubscribers.
    async fn emit(&self, tx: &Option<mpsc::Sender<Value>>, event: Value) {
        let _ = self.running.events.send(event.clone());
        if let Some(tx) = tx {
            let _ = tx.send(event).await;
        }
    }

    /// Runs the task to its end, emitting its events; returns the final task and, unless
    /// it was canceled, the agent's message.
    async fn execute(mut self, tx: Option<mpsc::Sender<Value>>) -> (Value, Option<Value>) {
        let task_id = self.task["id"].as_str().unwrap_or_default().to_owned();
        let context_id = self.task["contextId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.emit(&tx, self.task.clone()).await;
        self.task["status"] = json!({"state": "working", "timestamp": jsonrpc::now()});
        self.tasks.update(&task_id, &self.task);
        self.emit(&tx, jsonrpc::status_event(&self.task, false))
            .await;
        let message = from_json(&jsonrpc::run_message(&self.user, &task_id, &context_id));
        let artifact_id = jsonrpc::new_id();
        let cancel = self.running.cancel.clone();
        let outcome = tokio::select! {
            r = self.run_agent(&tx, message, &artifact_id) => Outcome::Done(r),
            () = cancel.notified() => Outcome::Canceled,
        };
        let (state, text) = match outcome {
            Outcome::Done(Ok(text)) => ("completed", text),
            Outcome::Done(Err(e)) => {
                tracing::debug!(task = %task_id, error = %e, "a2a run failed");
                ("failed", format!("Error: {}", e.wire()))
            }
            Outcome::Canceled => {
                let task = self.tasks.finish(&task_id, &self.task);
                self.emit(&tx, jsonrpc::status_event(&task, true)).await;
                return (task, None);
            }
        };
        let reply = jsonrpc::agent_message(&text, &task_id, &context_id);
        self.task["status"] =
            json!({"state": state, "message": reply, "timestamp": jsonrpc::now()});
        if state == "completed" {
            self.task["artifacts"] = json!([{
                "artifactId": artifact_id,
                "name": "response",
                "parts": [{"kind": "text", "text": text}],
            }]);
        }
        if let Some(h) = self.task["history"].as_array_mut() {
            h.push(reply.clone());
        }
        let task = self.tasks.finish(&task_id, &self.task);
        self.emit(&tx, jsonrpc::status_event(&task, true)).await;
        let canceled = task["status"]["state"] == "canceled";
        (task, (!canceled).then_some(reply))
    }

    /// Calls `run(message, None)` and returns its answer as text, emitting it as
    /// artifact chunk(s): one for a value, one per item for a generator.
    async fn run_agent(
        &self,
        tx: &Option<mpsc::Sender<Value>>,
        message: Mp,
        artifact_id: &str,
    ) -> Result<String, ManagerError> {
        let m = &self.manager;
        let result = m
            .http_invoke(&self.ctx, &self.run, vec![message, Mp::Nil], RUN_TIMEOUT)
            .await?;
        if get_str(&result, "_rtype") != Some("generator") {
            let text = text_of(&result);
            let ev = jsonrpc::artifact_event(&self.task, artifact_id, &text, false, true);
            self.emit(tx, ev).await;
            return Ok(text);
        }
        let mut all = String::new();
        let mut first = true;
        loop {
            let item = m
                .http_invoke(&self.ctx, &result, Vec::new(), RUN_TIMEOUT)
                .await?;
            if get_str(&item, "_rtype") == Some("stop_iteration") {
                return Ok(all);
            }
            let text = text_of(&item);
            let ev = jsonrpc::artifact_event(&self.task, artifact_id, &text, !first, false);
            self.emit(tx, ev).await;
            all.push_str(&text);
            first = false;
        }
    }
}

/// The text of a `run` result, as the reference's `str(result)` gives it for strings,
/// `None` and booleans; other values as JSON (the reference prints Python reprs).
fn text_of(v: &Mp) -> String {
    match v {
        Mp::String(s) => s.as_str().unwrap_or_default().to_owned(),
        Mp::Nil => "None".into(),
        Mp::Boolean(true) => "True".into(),
        Mp::Boolean(false) => "False".into(),
        other => to_json(other).to_string(),
    }
}
