//! The HTTP streaming transport at `/rpc` (protocol.md §7, workspace-api.md §8.5).
//!
//! `GET /rpc` opens the downstream: the request is admitted through the same
//! [`ControlHooks::admit`](crate::hooks::ControlHooks::admit) as a WebSocket handshake, the
//! connection is registered in the client table (superseding any earlier one for the same
//! `<ws>/<cid>`), and the response body is an endless sequence of records — a 4-byte
//! big-endian length followed by that many bytes of msgpack: `connection_info` first, then
//! every frame queued for the client, control messages as single msgpack maps, and a
//! `{"type":"ping"}` keepalive every [`RouterConfig::stream_keepalive`](crate::RouterConfig).
//!
//! `POST /rpc` carries one client frame upstream; it is routed exactly like a WebSocket
//! binary frame from the stream's connection. Dropping the response body (the client went
//! away) tears the connection down like a closed WebSocket.

use crate::close::CloseReason;
use crate::egress::{Egress, Outbound};
use crate::hooks::ConnRef;
use crate::table::{Conn, Transport};
use crate::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use rhizo_protocol::handshake::{self, AuthRequest, Control};
use rhizo_protocol::value;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Default interval of the stream keepalive record: well below the Python client's read
/// timeout (its method timeout, 30 s by default).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Content type of the downstream body.
pub const STREAM_CONTENT_TYPE: &str = "application/x-msgpack-stream";

/// Upstream bodies longer than this are never control messages.
const MAX_CONTROL_BODY: usize = 1000;

/// The `/rpc` routes, to be merged into the HTTP app. A POST body is limited to
/// [`RouterConfig::max_frame_bytes`](crate::RouterConfig) (413 in the reference's JSON
/// shape beyond it).
pub fn routes(router: Router) -> axum::Router {
    let max = router.config().max_frame_bytes;
    axum::Router::new()
        .route("/rpc", get(open_stream).post(post_message))
        .layer(DefaultBodyLimit::max(max))
        .with_state(router)
}

/// The status a POST body that could not be read is answered with: 413 when it exceeded
/// the limit (axum's `LengthLimitError`, by type), 400 for any other failure (the client
/// went away mid-body).
fn body_error_status(err: &BytesRejection) -> StatusCode {
    match err {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Appends one record (length prefix and payload) to `out`.
pub fn push_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The msgpack map of a JSON control text (`pong`, `reconnection_token`, `error`), or
/// `None` if the text is not a JSON object.
pub fn text_to_msgpack(text: &str) -> Option<Vec<u8>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Some(value::encode(&value::from_json(&v))),
        _ => None,
    }
}

/// Classifies an upstream body: a control message is a single msgpack map with a `type`
/// and no `to`; anything else is a frame to route.
pub fn control_body(body: &[u8]) -> Option<Control> {
    if body.len() > MAX_CONTROL_BODY {
        return None;
    }
    let mut rest = body;
    let v = rmpv::decode::read_value(&mut rest).ok()?;
    if !rest.is_empty() || !v.is_map() || value::get(&v, "to").is_some() {
        return None;
    }
    match value::get_str(&v, "type")? {
        "ping" => Some(Control::Ping),
        "refresh_token" => Some(Control::RefreshToken),
        _ => None,
    }
}

/// The token of a request: `Authorization: Bearer …` or the `access_token` cookie.
fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let t = v.strip_prefix("Bearer ").unwrap_or(v).trim();
        return (!t.is_empty()).then(|| t.to_owned());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "access_token")
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// An error answer in the reference's JSON shape.
fn fail(status: StatusCode, detail: impl std::fmt::Display) -> Response {
    let body = json!({"success": false, "detail": detail.to_string()});
    (status, Json(body)).into_response()
}

/// A non-empty query value.
fn param(q: &HashMap<String, String>, key: &str) -> Option<String> {
    q.get(key)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A random client id for a GET without one (workspace-api.md §8.5).
fn random_client_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    format!("http-{:016x}", h.finish())
}

async fn open_stream(
    State(router): State<Router>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let client_id = param(&q, "client_id").unwrap_or_else(random_client_id);
    if client_id.contains('/') {
        return fail(StatusCode::BAD_REQUEST, "client_id must not contain '/'");
    }
    let token = request_token(&headers);
    let req = AuthRequest {
        client_id: Some(client_id),
        workspace: param(&q, "workspace"),
        token: token.clone(),
        reconnection_token: param(&q, "reconnection_token"),
    };
    router.open_stream(req, token).await
}

async fn post_message(
    State(router): State<Router>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let Some(cid) = param(&q, "client_id") else {
        return fail(StatusCode::BAD_REQUEST, "client_id is required");
    };
    let Some(ws) = param(&q, "workspace") else {
        return fail(StatusCode::BAD_REQUEST, "workspace is required");
    };
    let token = request_token(request.headers());
    let Some(conn) = router
        .table()
        .get(&ws, &cid)
        .filter(|c| matches!(c.transport, Transport::HttpStream { .. }))
    else {
        return fail(
            StatusCode::NOT_FOUND,
            format!("No active stream for {ws}/{cid}"),
        );
    };
    if conn.transport != (Transport::HttpStream { token }) {
        return fail(
            StatusCode::FORBIDDEN,
            format!("Credentials do not match the stream of {ws}/{cid}"),
        );
    }
    let body = match Bytes::from_request(request, &()).await {
        Ok(b) => b,
        Err(e) => {
            let status = body_error_status(&e);
            let max = router.config().max_frame_bytes;
            let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("Message larger than {max} bytes")
            } else {
                format!("Could not read the message: {e}")
            };
            return fail(status, detail);
        }
    };
    match control_body(&body) {
        Some(Control::Ping) => {
            let _ = router.push(&conn, Outbound::Text(handshake::pong()));
        }
        Some(Control::RefreshToken) => {
            let r = ConnRef {
                id: conn.id,
                ws: &conn.ws,
                cid: &conn.cid,
            };
            match router.hooks().refresh_token(r) {
                Ok(t) => {
                    let _ = router.push(&conn, Outbound::Text(handshake::reconnection_token(&t)));
                }
                Err(refusal) => conn.egress.close(CloseReason::Policy(refusal.message)),
            }
        }
        _ => {
            // Errors are reported to the sender on its stream, as for a WebSocket frame.
            let _ = router.route_from(&conn, body);
        }
    }
    StatusCode::OK.into_response()
}

// === impl Router (HTTP streaming) ===

impl Router {
    /// Admits an HTTP stream and returns its response: the record stream on success, a
    /// JSON error (401 for authentication failures, 403 otherwise) on refusal. `token` is
    /// the bearer token of the request, which later POSTs must repeat.
    pub async fn open_stream(&self, req: AuthRequest, token: Option<String>) -> Response {
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let admission = match self.hooks().admit(id, req).await {
            Ok(a) => a,
            Err(r) => {
                tracing::debug!(message = %r.message, "stream refused");
                let status = match r.code {
                    1008 => StatusCode::UNAUTHORIZED,
                    1013 => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::FORBIDDEN,
                };
                return fail(status, r.message);
            }
        };
        let cfg = self.config();
        let (egress, rx) = Egress::new(cfg.egress_limit_bytes, cfg.slow_consumer_grace);
        let info = value::encode(&value::from_json(&admission.connection_info));
        egress.push_control(Outbound::Binary(Bytes::from(info)));
        let conn = Conn::new(
            id,
            &admission.workspace,
            &admission.client_id,
            admission.user.clone(),
            admission.can_write,
            egress,
        )
        .with_transport(Transport::HttpStream { token });
        let conn = Arc::new(conn);
        if let Some(old) = self.inner.table.insert(conn.clone()) {
            old.egress.close(CloseReason::Superseded);
        }
        self.counters().connections.fetch_add(1, Relaxed);
        tracing::debug!(client = %conn.addr, reconnecting = admission.reconnecting, "stream connected");

        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + cfg.stream_keepalive,
            cfg.stream_keepalive,
        );
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let downstream = Downstream {
            router: self.clone(),
            conn,
            rx,
            keepalive,
            shutdown: self.shutdown_signal(),
            batch: Vec::with_capacity(cfg.write_batch),
            done: false,
        };
        let body = futures_util::stream::unfold(downstream, |mut d| async move {
            let chunk = d.next_chunk().await?;
            Some((Ok::<_, std::convert::Infallible>(chunk), d))
        });
        let mut response = Body::from_stream(body).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(STREAM_CONTENT_TYPE),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// The state behind one stream's response body. Dropping it — the stream ended or the
/// client went away — ends the connection.
struct Downstream {
    router: Router,
    conn: Arc<Conn>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    keepalive: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
    batch: Vec<Outbound>,
    done: bool,
}

// === impl Downstream ===

impl Downstream {
    /// The next body chunk (one or more records), or `None` to end the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let limit = self.router.config().write_batch;
        loop {
            if self.done || *self.shutdown.borrow() {
                return None;
            }
            if let Some(reason) = self.conn.egress.closing() {
                return self.finish(&reason);
            }
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut self.batch, limit) => {
                    if n == 0 {
                        return None;
                    }
                    if let Some(reason) = self.conn.egress.closing() {
                        return self.finish(&reason);
                    }
                    let (mut out, mut bytes) = (Vec::new(), 0);
                    for item in self.batch.drain(..) {
                        bytes += item.len();
                        match item {
                            Outbound::Binary(b) => push_record(&mut out, &b),
                            Outbound::Text(t) => {
                                if let Some(m) = text_to_msgpack(&t) {
                                    push_record(&mut out, &m);
                                }
                            }
                            Outbound::Close(_) => {
                                self.done = true;
                                break;
                            }
                        }
                    }
                    self.conn.egress.sent(bytes);
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                _ = self.conn.egress.close_decided() => {}
                _ = self.keepalive.tick() => {
                    let mut out = Vec::with_capacity(16);
                    push_record(&mut out, &value::encode(&value::map([("type", "ping".into())])));
                    return Some(Bytes::from(out));
                }
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Ends the stream for a decided close, with a last `error` record if the reason
    /// wants one (clients only log it).
    fn finish(&mut self, reason: &CloseReason) -> Option<Bytes> {
        if self.done {
            return None;
        }
        self.done = true;
        tracing::debug!(client = %self.conn.addr, reason = reason.label(), "closing stream");
        if !reason.sends_error() {
            return None;
        }
        let m = text_to_msgpack(&handshake::error(&reason.message()))?;
        let mut out = Vec::new();
        push_record(&mut out, &m);
        Some(Bytes::from(out))
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        let router = &self.router;
        router.counters().connections.fetch_sub(1, Relaxed);
        if router.inner.table.remove(&self.conn) {
            tracing::debug!(client = %self.conn.addr, "stream disconnected");
            let r = ConnRef {
                id: self.conn.id,
                ws: &self.conn.ws,
                cid: &self.conn.cid,
            };
            router.hooks().disconnected(r, self.conn.foreign_callers());
        }
    }
}

#[cfg(test)]
mod tests;
