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
//!
//! Who may POST for a stream (protocol.md §7.2, "Recommended: verify the POST's
//! credentials match the stream owner"; the reference checks nothing): the POST must
//! repeat the GET's bearer token, and each stream has a secret that only its GET's
//! response carried, as the cookie [`stream_cookie_name`] (`HttpOnly; SameSite=Strict`).
//! The unmodified clients send nothing else that could serve as a secret — their POSTs
//! carry `client_id`, `workspace` and the user's own token, if any — but the Python
//! client's `httpx` session keeps cookies, and so does a browser for same-origin requests.
//! See [`StreamCredentials::check`] for the rules, and what stays open for clients that
//! keep no cookies (the npm client on Node.js).

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
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{self, Relaxed};
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

/// Bytes of randomness in a stream secret (hex-encoded in the cookie: 64 characters).
const SECRET_BYTES: usize = 32;

/// The name of the cookie carrying the secret of the stream of `addr` (`"<ws>/<cid>"`):
/// `rhizo_stream_` and 16 hex digits of a fixed hash (FNV-1a, 64 bit) of the address, so
/// that several streams of one browser origin keep apart cookies, and the name is a valid
/// cookie token whatever characters the address holds.
pub fn stream_cookie_name(addr: &str) -> String {
    let h = addr.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("rhizo_stream_{h:016x}")
}

/// What a `POST /rpc` must prove to act for an HTTP stream (protocol.md §7.2): the bearer
/// token the stream was opened with, and the stream's secret, given only to its `GET` as
/// a cookie. `Debug` does not show either.
pub struct StreamCredentials {
    /// The opening request's token (`None` for an anonymous stream).
    token: Option<String>,
    /// 64 hex digits from the thread-local CSPRNG, new for every stream.
    secret: String,
    /// Set once a POST carried the secret: from then on an anonymous stream accepts only
    /// POSTs that carry it.
    bound: AtomicBool,
}

/// Why a POST may not act for a stream; each is answered 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PostRefusal {
    /// The bearer token differs from the stream's.
    #[error("Credentials do not match the stream")]
    Token,
    /// The stream cookie is present but holds another secret (an older stream's, or a
    /// guess).
    #[error("The stream secret does not match the stream")]
    WrongSecret,
    /// An anonymous stream whose client has shown the secret before got a POST without it.
    #[error("The stream secret is missing")]
    MissingSecret,
}

// === impl StreamCredentials ===

impl StreamCredentials {
    /// Credentials for a new stream opened with `token`, with a fresh random secret.
    pub fn new(token: Option<String>) -> Self {
        use rand::RngCore;
        let mut raw = [0u8; SECRET_BYTES];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = raw.iter().map(|b| format!("{b:02x}")).collect();
        StreamCredentials {
            token,
            secret,
            bound: AtomicBool::new(false),
        }
    }

    /// The stream's secret, for its GET's `Set-Cookie`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether a POST with bearer `token` and stream cookie `cookie` may act for the
    /// stream. The token must equal the GET's. A cookie, when present, must hold the
    /// stream's secret; the first POST that shows it binds the stream. Without a cookie:
    /// a token stream is accepted on its token; an anonymous stream only while unbound.
    ///
    /// What stays open: an anonymous stream whose client never sends the cookie (the npm
    /// client on Node.js, whose `fetch` keeps no cookies; browsers on another origin)
    /// stays unbound, so anyone who knows its `<ws>/<cid>` can POST for it, as with the
    /// reference; so can anyone for any anonymous stream before its client's first POST
    /// (milliseconds after connecting, for the Python client). A token stream accepts
    /// anyone holding the same token.
    pub fn check(&self, token: Option<&str>, cookie: Option<&str>) -> Result<(), PostRefusal> {
        if self.token.as_deref() != token {
            return Err(PostRefusal::Token);
        }
        match cookie {
            Some(c) if constant_time_eq(c.as_bytes(), self.secret.as_bytes()) => {
                self.bound.store(true, Ordering::Release);
                Ok(())
            }
            Some(_) => Err(PostRefusal::WrongSecret),
            None if self.token.is_none() && self.bound.load(Ordering::Acquire) => {
                Err(PostRefusal::MissingSecret)
            }
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for StreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCredentials")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("bound", &self.bound.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers, if any.
fn request_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The `Set-Cookie` value that hands a stream its secret: a session cookie, host-only,
/// path defaulting to the `/rpc` route's directory, hidden from page scripts and never
/// sent on cross-site requests.
fn secret_cookie(addr: &str, secret: &str) -> Option<HeaderValue> {
    let name = stream_cookie_name(addr);
    HeaderValue::from_str(&format!("{name}={secret}; HttpOnly; SameSite=Strict")).ok()
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

/// A POST from a client without an open stream: a stateless call, answered by the
/// control plane ([`rhizo_interface::ControlHooks::stateless_call`]) as JSON.
async fn stateless_call(router: &Router, ws: Option<String>, request: Request) -> Response {
    let token = request_token(request.headers());
    let body = match Bytes::from_request(request, &()).await {
        Ok(b) => b,
        Err(e) => {
            return fail(
                body_error_status(&e),
                format!("Could not read the message: {e}"),
            )
        }
    };
    let (status, json) = router.hooks().stateless_call(token, ws, body).await;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json)).into_response()
}

async fn post_message(
    State(router): State<Router>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let Some(cid) = param(&q, "client_id") else {
        return fail(StatusCode::BAD_REQUEST, "client_id is required");
    };
    let ws = param(&q, "workspace");
    let Some(conn) = ws.as_deref().and_then(|ws| router.table().get(ws, &cid)) else {
        return stateless_call(&router, ws, request).await;
    };
    let ws = conn.ws.clone();
    let Transport::HttpStream(creds) = &conn.transport else {
        return fail(
            StatusCode::NOT_FOUND,
            format!("No active stream for {ws}/{cid}"),
        );
    };
    // Decided before the body is read: a refused POST costs no buffering.
    let token = request_token(request.headers());
    let cookie = request_cookie(request.headers(), &stream_cookie_name(&conn.addr));
    if let Err(refusal) = creds.check(token.as_deref(), cookie) {
        tracing::debug!(client = %conn.addr, %refusal, "POST refused");
        return fail(StatusCode::FORBIDDEN, format!("{refusal}: {ws}/{cid}"));
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
    /// the bearer token of the request, which later POSTs must repeat; the response sets
    /// the stream's secret cookie ([`stream_cookie_name`], [`StreamCredentials`]).
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
        let creds = StreamCredentials::new(token);
        let conn = Conn::new(
            id,
            &admission.workspace,
            &admission.client_id,
            admission.user.clone(),
            admission.can_write,
            egress,
        );
        let cookie = secret_cookie(&conn.addr, creds.secret());
        let conn = Arc::new(conn.with_transport(Transport::HttpStream(creds)));
        if let Some(old) = self.inner.table.insert(conn.clone()) {
            old.egress.close(CloseReason::Superseded);
        }
        self.counters().opened(false);
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
        if let Some(cookie) = cookie {
            h.insert(header::SET_COOKIE, cookie);
        }
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
        router.counters().closed(false);
        router.forget(&self.conn);
    }
}

#[cfg(test)]
mod tests;
