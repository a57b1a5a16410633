//! The JSON-RPC 2.0 envelope of A2A 0.3.0 and the A2A objects rhizo builds (workspace-api.md
//! §8.1, A2A line): requests, success and error responses, `Message`, `Task` and the two
//! streaming events. Pure functions over `serde_json::Value`; no I/O.
//!
//! Error codes are the JSON-RPC ones plus A2A's: `-32700` parse error, `-32600` invalid
//! request, `-32601` method not found, `-32602` invalid params, `-32603` internal error,
//! `-32001` task not found, `-32002` task not cancelable, `-32003` push notifications not
//! supported, `-32004` unsupported operation, `-32007` authenticated extended card not
//! configured. JSON-RPC errors travel with HTTP status 200, as in the reference.

use serde_json::{json, Map, Value};

/// A JSON-RPC error: `code`, `message` and optional `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The JSON-RPC / A2A error code.
    pub code: i64,
    /// Human-readable text.
    pub message: String,
    /// Extra detail, if any.
    pub data: Option<Value>,
}

// === impl RpcError ===

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// `-32700`: the body is not JSON.
    pub fn parse(detail: impl std::fmt::Display) -> Self {
        Self::new(-32700, format!("Invalid JSON payload: {detail}"))
    }

    /// `-32600`: the body is JSON but not a JSON-RPC 2.0 request.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(-32600, detail)
    }

    /// `-32601`: no such method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(-32601, format!("Method not found: {method}"))
    }

    /// `-32602`: the params do not fit the method.
    pub fn invalid_params(detail: impl Into<String>) -> Self {
        Self::new(-32602, detail)
    }

    /// `-32603`: the server failed.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(-32603, detail)
    }

    /// `-32001`: no task with that id (for this agent).
    pub fn task_not_found(detail: impl Into<String>) -> Self {
        Self::new(-32001, detail)
    }

    /// `-32002`: the task already reached a terminal state.
    pub fn task_not_cancelable(state: &str) -> Self {
        Self::new(-32002, format!("Task cannot be canceled (state: {state})"))
    }

    /// `-32003`: push notification configs are not supported.
    pub fn push_not_supported() -> Self {
        Self::new(-32003, "Push Notification is not supported")
    }

    /// `-32007`: no authenticated extended card is configured.
    pub fn extended_card_not_configured() -> Self {
        Self::new(-32007, "Authenticated Extended Card is not configured")
    }

    /// The `error` member of a response.
    pub fn to_json(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// A JSON-RPC request that passed the envelope checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request id (string, number or null), echoed in the response.
    pub id: Value,
    /// The method name, e.g. `message/send`.
    pub method: String,
    /// The params (`{}` when absent).
    pub params: Value,
}

/// Parses and checks a request body. Errors: `-32700` when it is not JSON, `-32600` when
/// it is not an object with `jsonrpc: "2.0"`, a string `method` and an id that is a
/// string, a number or null (the error then carries the id when one could be read).
pub fn parse_request(body: &[u8]) -> Result<Request, (Value, RpcError)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| (Value::Null, RpcError::parse(e)))?;
    let Value::Object(obj) = v else {
        return Err((
            Value::Null,
            RpcError::invalid_request("Request payload validation error: not an object"),
        ));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::String(_) | Value::Number(_) | Value::Null);
    let id_echo = if id_ok { id.clone() } else { Value::Null };
    let bad = |what: &str| {
        Err((
            id_echo.clone(),
            RpcError::invalid_request(format!("Request payload validation error: {what}")),
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return bad("`jsonrpc` must be \"2.0\"");
    }
    if !id_ok {
        return bad("`id` must be a string, a number or null");
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return bad("`method` must be a string");
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return bad("`params` must be an object"),
    };
    Ok(Request {
        id,
        method: method.to_owned(),
        params,
    })
}

/// A success response `{jsonrpc, id, result}`.
pub fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response `{jsonrpc, id, error}`.
pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

// === A2A objects ===

/// States after which a task never changes.
pub const TERMINAL_STATES: [&str; 4] = ["completed", "canceled", "failed", "rejected"];

/// Whether `state` is terminal.
pub fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// A fresh random id (UUID v4 text), for messages, tasks, contexts and artifacts.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now as RFC 3339 in UTC, the `timestamp` of a task status.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The user message of `message/send` / `message/stream` params, checked: an object with
/// `role` `user` or `agent`, a list of `parts` (each an object with a `kind`) and a string
/// `messageId`. Errors: `-32602` naming the bad field.
pub fn message_param(params: &Value) -> Result<Value, RpcError> {
    let Some(m) = params.get("message").filter(|m| m.is_object()) else {
        return Err(RpcError::invalid_params(
            "params.message is required and must be an object",
        ));
    };
    if !matches!(
        m.get("role").and_then(Value::as_str),
        Some("user" | "agent")
    ) {
        return Err(RpcError::invalid_params(
            "params.message.role must be \"user\" or \"agent\"",
        ));
    }
    let Some(parts) = m.get("parts").and_then(Value::as_array) else {
        return Err(RpcError::invalid_params(
            "params.message.parts must be a list",
        ));
    };
    if parts
        .iter()
        .any(|p| p.get("kind").and_then(Value::as_str).is_none())
    {
        return Err(RpcError::invalid_params(
            "every part of params.message.parts needs a string `kind`",
        ));
    }
    if m.get("messageId").and_then(Value::as_str).is_none() {
        return Err(RpcError::invalid_params(
            "params.message.messageId must be a string",
        ));
    }
    for key in ["taskId", "contextId"] {
        if m.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(RpcError::invalid_params(format!(
                "params.message.{key} must be a string"
            )));
        }
    }
    let mut m = m.clone();
    m["kind"] = json!("message");
    Ok(m)
}

/// The `id` of `tasks/get` / `tasks/cancel` / `tasks/resubscribe` params. Errors: `-32602`.
pub fn task_id_param(params: &Value) -> Result<String, RpcError> {
    params
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RpcError::invalid_params("params.id must be a string"))
}

/// The message handed to the service's `run`, shaped as the reference does: `parts` with
/// text parts as `{kind: "text", text}` and data parts as `{kind: "data", data}` (file
/// parts are passed whole), `role` and `messageId`; rhizo adds `contextId` and `taskId`.
pub fn run_message(message: &Value, task_id: &str, context_id: &str) -> Value {
    let parts: Vec<Value> = message
        .get("parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| match p.get("kind").and_then(Value::as_str) {
                    Some("text") => json!({"kind": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                    Some("data") => json!({"kind": "data", "data": p.get("data").cloned().unwrap_or(Value::Null)}),
                    _ => p.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "parts": parts,
        "role": message.get("role").cloned().unwrap_or(json!("user")),
        "messageId": message.get("messageId").cloned().unwrap_or(Value::Null),
        "contextId": context_id,
        "taskId": task_id,
    })
}

/// An agent `Message` with one text part, linked to its task and context.
pub fn agent_message(text: &str, task_id: &str, context_id: &str) -> Value {
    json!({
        "kind": "message",
        "role": "agent",
        "messageId": new_id(),
        "parts": [{"kind": "text", "text": text}],
        "taskId": task_id,
        "contextId": context_id,
    })
}

/// A new `Task` in state `submitted` whose history is the user's message.
pub fn new_task(task_id: &str, context_id: &str, user_message: &Value) -> Value {
    let mut m = user_message.clone();
    m["taskId"] = json!(task_id);
    m["contextId"] = json!(context_id);
    json!({
        "kind": "task",
        "id": task_id,
        "contextId": context_id,
        "status": {"state": "submitted", "timestamp": now()},
        "history": [m],
    })
}

/// A `status-update` event for `task` (its current status), `final` when it ends the stream.
pub fn status_event(task: &Value, is_final: bool) -> Value {
    json!({
        "kind": "status-update",
        "taskId": task["id"],
        "contextId": task["contextId"],
        "status": task["status"],
        "final": is_final,
    })
}

/// An `artifact-update` event: one text chunk of artifact `artifact_id`.
pub fn artifact_event(
    task: &Value,
    artifact_id: &str,
    text: &str,
    append: bool,
    last_chunk: bool,
) -> Value {
    json!({
        "kind": "artifact-update",
        "taskId": task["id"],
        "contextId": task["contextId"],
        "artifact": {
            "artifactId": artifact_id,
            "name": "response",
            "parts": [{"kind": "text", "text": text}],
        },
        "append": append,
        "lastChunk": last_chunk,
    })
}

/// `task` with its history cut to the last `n` messages (all when `n` is `None`).
pub fn with_history_length(task: &Value, n: Option<u64>) -> Value {
    let mut t = task.clone();
    if let (Some(n), Some(h)) = (n, t.get_mut("history").and_then(Value::as_array_mut)) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let skip = h.len().saturating_sub(n);
        h.drain(..skip);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_have_their_codes() {
        assert_eq!(parse_request(b"{nope").unwrap_err().1.code, -32700);
        assert_eq!(parse_request(b"[1]").unwrap_err().1.code, -32600);
        let (id, e) = parse_request(br#"{"jsonrpc":"2.0","id":7}"#).unwrap_err();
        assert_eq!((id, e.code), (json!(7), -32600));
        let r = parse_request(br#"{"jsonrpc":"2.0","id":"a","method":"x"}"#).unwrap();
        assert_eq!(
            (r.id, r.method, r.params),
            (json!("a"), "x".into(), json!({}))
        );
    }

    #[test]
    fn message_params_are_checked() {
        let ok = json!({"message": {"role": "user", "parts": [{"kind": "text", "text": "hi"}], "messageId": "m"}});
        assert_eq!(message_param(&ok).unwrap()["kind"], "message");
        let bad = json!({"message": {"role": "user", "parts": "hi", "messageId": "m"}});
        assert_eq!(message_param(&bad).unwrap_err().code, -32602);
        assert_eq!(message_param(&json!({})).unwrap_err().code, -32602);
    }

    #[test]
    fn history_is_cut_from_the_front() {
        let t = json!({"history": [1, 2, 3]});
        assert_eq!(with_history_length(&t, Some(2))["history"], json!([2, 3]));
        assert_eq!(with_history_length(&t, None)["history"], json!([1, 2, 3]));
    }
}
