//! A lean connection that the caller drives itself: no reader or writer task, no channel,
//! no value tree on the hot path. Used by the load generator and by anyone who needs many
//! frames per second through one socket.
//!
//! [`RawConnection::connect`] does the handshake (protocol.md §1) and registers the
//! `built-in` service; [`RawConnection::call`] and [`RawConnection::register_service`] are
//! lock-step manager calls for setting up. After that the owner reads and writes
//! [`RawConnection::socket`] directly, building frames with the allocation-free writers of
//! this module ([`CallTemplate`], [`write_reply`], [`write_bin_header`]), matching replies
//! with [`rhizo_protocol::HeaderView`] or [`CallView`], and slicing arguments out of the
//! payload with [`first_arg`]. Frames it does not recognise go to [`RawConnection::answer`],
//! which answers the `built-in` service the manager and peers ask for (§4.2, §4.6).
//!
//! Frames are pipelined: feed many with `SinkExt::feed`, then flush once.

use crate::{random_id, ws_url, ClientError, ConnectOptions};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizo_protocol::message::{Incoming, Message, ReplyKind};
use rhizo_protocol::msgpack::{read_map_len, read_str, skip, write_map_len, write_str};
use rhizo_protocol::value::{self, get_str, map, method, RPromise};
use rhizo_protocol::FrameError;
use rmpv::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The WebSocket this module hands out.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame this client accepts, bytes: room for a 16 MiB payload (the servers' default
/// frame limit) plus headers.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// WebSocket settings for every connection of this crate: messages and frames up to
/// [`MAX_FRAME_BYTES`] (tungstenite's default frame limit of 16 MiB would refuse a 16 MiB
/// payload plus its header).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// WebSocket settings for connections that mostly sit idle (idle and connect load runs):
/// like [`ws_config`] but with 4 KiB read and write buffers instead of 128 KiB, so that
/// thousands of connections stay cheap. Large frames still work, just with more reads.
pub fn ws_config_small() -> WebSocketConfig {
    ws_config()
        .read_buffer_size(4 << 10)
        .write_buffer_size(4 << 10)
}

/// Opens a WebSocket to `url` (`http(s)://…` becomes `ws(s)://…/ws`; `ws(s)://` is used as
/// is) with [`ws_config`] and Nagle's algorithm off, and does nothing else.
///
/// Errors: [`ClientError::Ws`] if the TCP connection or the upgrade fails.
pub async fn open(url: &str) -> Result<WsStream, ClientError> {
    open_with(url, ws_config()).await
}

/// Like [`open`], with the given WebSocket settings.
///
/// Errors: [`ClientError::Ws`] if the TCP connection or the upgrade fails.
pub async fn open_with(url: &str, config: WebSocketConfig) -> Result<WsStream, ClientError> {
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(ws_url(url), Some(config), true).await?;
    Ok(ws)
}

/// Opens the socket, sends the auth frame (§1.2) and waits for `connection_info` (§1.4).
///
/// Returns the socket and the `connection_info` object; its `client_id` is set to the id
/// that was sent if the server left it out. Errors: [`ClientError::Refused`] with the
/// server's message on `{"type":"error"}` or a close; [`ClientError::Protocol`] if the first
/// text frame is anything else.
pub async fn handshake(
    url: &str,
    opts: ConnectOptions,
) -> Result<(WsStream, serde_json::Value), ClientError> {
    handshake_with(url, opts, ws_config()).await
}

/// Like [`handshake`], with the given WebSocket settings (e.g. [`ws_config_small`]).
///
/// Errors: as [`handshake`].
pub async fn handshake_with(
    url: &str,
    opts: ConnectOptions,
    config: WebSocketConfig,
) -> Result<(WsStream, serde_json::Value), ClientError> {
    let mut ws = open_with(url, config).await?;
    let cid = opts.client_id.unwrap_or_else(random_id);
    let auth = serde_json::json!({
        "client_id": cid,
        "workspace": opts.workspace,
        "token": opts.token,
        "reconnection_token": opts.reconnection_token,
    });
    ws.send(WsMessage::Text(auth.to_string().into())).await?;
    let mut info = loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str())
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                match v["type"].as_str() {
                    Some("connection_info") => break v,
                    Some("error") => {
                        return Err(ClientError::Refused(
                            v["message"].as_str().unwrap_or_default().to_owned(),
                        ))
                    }
                    _ => {
                        return Err(ClientError::Protocol(format!(
                            "unexpected first text frame: {v}"
                        )))
                    }
                }
            }
            Some(Ok(WsMessage::Close(f))) => {
                return Err(ClientError::Refused(
                    f.map(|f| f.reason.to_string()).unwrap_or_default(),
                ))
            }
            // Binary frames before connection_info are ignored, as clients do (§1.4).
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ClientError::Closed),
        }
    };
    if info["client_id"].as_str().is_none() {
        info["client_id"] = cid.into();
    }
    Ok((ws, info))
}

/// A service registered through a [`RawConnection`]: what `built-in.get_service` returns.
struct RawService {
    name: String,
    record: Value,
    members: Vec<String>,
}

/// An authenticated connection without background tasks. See the module docs.
pub struct RawConnection {
    ws: WsStream,
    responder: Responder,
    next_session: u64,
    session_tag: String,
    events: VecDeque<Message>,
}

/// The identity of a [`RawConnection`] and the services it registered: enough to answer
/// the calls the manager and peers make into `built-in` (see [`Responder::answer`]) after
/// the socket has been taken with [`RawConnection::into_parts`].
pub struct Responder {
    info: serde_json::Value,
    me: String,
    services: Vec<RawService>,
}

// === impl RawConnection ===

impl RawConnection {
    /// Connects, authenticates and registers the `built-in` service (like
    /// [`crate::Client::connect`], but the caller owns the socket afterwards).
    ///
    /// Errors: those of [`handshake`], and of the `register_service` call.
    pub async fn connect(url: &str, opts: ConnectOptions) -> Result<Self, ClientError> {
        Self::connect_with(url, opts, ws_config()).await
    }

    /// Like [`RawConnection::connect`], with the given WebSocket settings (e.g.
    /// [`ws_config_small`] for connections that mostly sit idle).
    ///
    /// Errors: as [`RawConnection::connect`].
    pub async fn connect_with(
        url: &str,
        opts: ConnectOptions,
        config: WebSocketConfig,
    ) -> Result<Self, ClientError> {
        let (ws, info) = handshake_with(url, opts, config).await?;
        let me = format!(
            "{}/{}",
            info["workspace"].as_str().unwrap_or_default(),
            info["client_id"].as_str().unwrap_or_default()
        );
        let mut conn = RawConnection {
            ws,
            responder: Responder {
                info,
                me,
                services: Vec::new(),
            },
            next_session: 1,
            session_tag: random_id()[..8].to_owned(),
            events: VecDeque::new(),
        };
        let record = map([
            ("id", format!("{}:built-in", conn.responder.me).into()),
            ("name", "built-in".into()),
            ("type", "built-in".into()),
            ("description", "".into()),
            ("app_id", "*".into()),
            (
                "config",
                map([
                    ("visibility", "public".into()),
                    ("require_context", true.into()),
                    ("api_version", 3.into()),
                ]),
            ),
        ]);
        conn.manager_call("register_service", vec![record]).await?;
        Ok(conn)
    }

    /// The `connection_info` the server sent.
    pub fn info(&self) -> &serde_json::Value {
        self.responder.info()
    }

    /// The workspace this connection is in.
    pub fn workspace(&self) -> &str {
        self.responder.workspace()
    }

    /// This connection's client id.
    pub fn client_id(&self) -> &str {
        self.responder.client_id()
    }

    /// `"<ws>/<cid>"`: the address peers call.
    pub fn address(&self) -> &str {
        self.responder.address()
    }

    /// `"*/<manager_id>"`.
    pub fn manager(&self) -> String {
        self.responder.manager()
    }

    /// The socket, for the owner's own read/write loop.
    pub fn socket(&mut self) -> &mut WsStream {
        &mut self.ws
    }

    /// Splits the connection into its socket and the [`Responder`] that answers
    /// `built-in` calls, for an owner loop that reads and writes the socket itself.
    pub fn into_parts(self) -> (WsStream, Responder) {
        (self.ws, self.responder)
    }

    /// Answers a call the owner's loop does not handle itself; see [`Responder::answer`].
    pub fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        self.responder.answer(frame)
    }

    /// Frames that arrived during lock-step calls and were neither replies nor calls
    /// (events, broadcasts), oldest first.
    pub fn take_events(&mut self) -> Vec<Message> {
        self.events.drain(..).collect()
    }

    /// Calls `method` on `to` with a compact promise and waits for the reply, answering
    /// calls into `built-in` meanwhile (§4.6 needs that during `get_service`).
    ///
    /// Not for the hot path: it decodes every frame it reads. Errors:
    /// [`ClientError::Remote`] on a reject, [`ClientError::Timeout`],
    /// [`ClientError::Closed`], [`ClientError::Ws`].
    pub async fn call(
        &mut self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let session = format!("r{}x{}", self.next_session, self.session_tag);
        self.next_session += 1;
        let frame = crate::call_frame(to, method, &session, args, kwargs, timeout);
        self.ws.send(WsMessage::Binary(frame)).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(m)) => m?,
            };
            let frame = match msg {
                WsMessage::Binary(b) => b,
                WsMessage::Close(_) => return Err(ClientError::Closed),
                _ => continue,
            };
            let Ok(m) = Message::decode(&frame) else {
                continue;
            };
            match m.clone().classify() {
                Incoming::Reply { session: s, kind } if s == session => match kind {
                    ReplyKind::Resolve(v) => return Ok(v),
                    ReplyKind::Reject(e) => return Err(ClientError::Remote(e)),
                    ReplyKind::Heartbeat => {}
                },
                Incoming::Reply { .. } => {}
                Incoming::Call(_) => {
                    if let Some(reply) = self.answer(&frame) {
                        self.ws.send(WsMessage::Binary(reply)).await?;
                    }
                }
                Incoming::Other => self.events.push_back(m),
            }
        }
    }

    /// Calls a method of the manager's `default` service with a 30 s timeout.
    pub async fn manager_call(
        &mut self,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, ClientError> {
        let to = self.manager();
        self.call(
            &to,
            &format!("services.default.{name}"),
            args,
            None,
            Duration::from_secs(30),
        )
        .await
    }

    /// Registers service `id` with `config` (e.g. `{"visibility":"public"}`) whose functions
    /// are named `members`. Returns the full service id `"<ws>/<cid>:<id>"`.
    ///
    /// Calls to `services.<id>.<member>` are the owner's to answer in its own loop;
    /// [`RawConnection::answer`] only describes the service to `built-in.get_service`.
    pub async fn register_service(
        &mut self,
        id: &str,
        config: Value,
        members: &[&str],
    ) -> Result<String, ClientError> {
        let full = format!("{}:{id}", self.responder.me);
        let config = if config.is_nil() {
            Value::Map(vec![])
        } else {
            config
        };
        let record = map([
            ("id", full.as_str().into()),
            ("name", id.into()),
            ("type", "generic".into()),
            ("description", "".into()),
            ("app_id", "*".into()),
            ("config", config),
        ]);
        self.responder.services.retain(|s| s.name != id);
        self.responder.services.push(RawService {
            name: id.to_owned(),
            record: record.clone(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        });
        self.manager_call("register_service", vec![record]).await?;
        Ok(full)
    }

    /// Sends a close frame and waits briefly for the server's answer.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

// === impl Responder ===

impl Responder {
    /// The `connection_info` the server sent.
    pub fn info(&self) -> &serde_json::Value {
        &self.info
    }

    /// The workspace of the connection.
    pub fn workspace(&self) -> &str {
        self.info["workspace"].as_str().unwrap_or_default()
    }

    /// The connection's client id.
    pub fn client_id(&self) -> &str {
        self.info["client_id"].as_str().unwrap_or_default()
    }

    /// `"<ws>/<cid>"`.
    pub fn address(&self) -> &str {
        &self.me
    }

    /// `"*/<manager_id>"`.
    pub fn manager(&self) -> String {
        format!("*/{}", self.info["manager_id"].as_str().unwrap_or_default())
    }

    /// Answers a call frame the owner's loop does not handle itself: `built-in.ping`,
    /// `built-in.get_service` (with the visibility rule of §3.7), and a reject
    /// `Method not found` for any other call that expects a reply. Returns `None` for
    /// replies, events and fire-and-forget calls.
    pub fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        let m = Message::decode(frame).ok()?;
        let Incoming::Call(call) = m.classify() else {
            return None;
        };
        let result = match call.method.as_str() {
            "services.built-in.ping" => Ok("pong".into()),
            "services.built-in.get_service" => {
                let name = call
                    .args
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.describe(name, &call.ws)
            }
            other => Err(format!("Method not found: {other}")),
        };
        call.reply(&self.me, result).map(|(_, f)| Bytes::from(f))
    }

    /// The service object `built-in.get_service(name)` returns to a caller in `caller_ws`.
    fn describe(&self, name: &str, caller_ws: &str) -> Result<Value, String> {
        let s = self
            .services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("KeyError: Service not found: {name}"))?;
        if !crate::visible_to(&s.record, self.workspace(), caller_ws) {
            return Err(format!(
                "PermissionError: Permission denied for protected service: {name}"
            ));
        }
        let server = self.info["public_base_url"].as_str().unwrap_or_default();
        let mut obj = s.record.clone();
        for f in &s.members {
            let m = method(
                &self.me,
                &format!("services.{name}.{f}"),
                RPromise::Compact,
                f,
                "",
                server,
            );
            value::set(&mut obj, f, m);
        }
        Ok(obj)
    }
}

/// Pre-encoded parts of a compact-promise call (§3.4) to one `to`/`method` with exactly one
/// positional argument; only the session and the argument change per call.
///
/// A frame is `{type:"method", to, method, session}` + `{promise:"*", t, args:[<arg>]}`,
/// plus any extra header entries given to [`CallTemplate::with_header`].
#[derive(Debug, Clone)]
pub struct CallTemplate {
    /// Header map marker and every entry up to the `session` key.
    head: Vec<u8>,
    /// Extra map marker, `promise`, `t`, the `args` key and a one-element array marker.
    extra: Vec<u8>,
}

// === impl CallTemplate ===

impl CallTemplate {
    /// A template for calls to `to` (`"<ws>/<cid>"`) of `method`; `timeout` sets `t`
    /// (= timeout / 2 seconds, the callee's heartbeat interval).
    pub fn new(to: &str, method: &str, timeout: Duration) -> Self {
        Self::with_header(to, method, timeout, &[])
    }

    /// Like [`CallTemplate::new`], with extra string entries in the header (e.g. a `from`
    /// when no server stamps one, as over a bare relay).
    pub fn with_header(to: &str, method: &str, timeout: Duration, extra: &[(&str, &str)]) -> Self {
        let mut head = Vec::with_capacity(64 + to.len() + method.len());
        write_map_len(&mut head, 4 + extra.len());
        write_str(&mut head, "type");
        write_str(&mut head, "method");
        write_str(&mut head, "to");
        write_str(&mut head, to);
        write_str(&mut head, "method");
        write_str(&mut head, method);
        for (k, v) in extra {
            write_str(&mut head, k);
            write_str(&mut head, v);
        }
        write_str(&mut head, "session");
        let mut tail = Vec::with_capacity(32);
        write_map_len(&mut tail, 3);
        write_str(&mut tail, "promise");
        write_str(&mut tail, "*");
        write_str(&mut tail, "t");
        tail.push(0xcb);
        tail.extend_from_slice(&(timeout.as_secs_f64() / 2.0).to_bits().to_be_bytes());
        write_str(&mut tail, "args");
        tail.push(0x91);
        CallTemplate { head, extra: tail }
    }

    /// Upper bound of the bytes of a frame before its argument, for a session id of
    /// `session_len` bytes (exact to within the 4 bytes a string marker may vary by).
    pub fn overhead(&self, session_len: usize) -> usize {
        self.head.len() + 5 + session_len + self.extra.len()
    }

    /// Appends a call frame with `session` and the msgpack-encoded argument `arg` to `out`;
    /// returns the offset in `out` where the argument starts.
    pub fn write(&self, out: &mut Vec<u8>, session: &str, arg: &[u8]) -> usize {
        let at = self.write_head(out, session);
        out.extend_from_slice(arg);
        at
    }

    /// Appends everything up to the argument (for callers that write the argument
    /// themselves); returns the offset where the argument starts.
    pub fn write_head(&self, out: &mut Vec<u8>, session: &str) -> usize {
        out.extend_from_slice(&self.head);
        write_str(out, session);
        out.extend_from_slice(&self.extra);
        out.len()
    }
}

/// Appends a reply frame (§3.4) to `out`: header `{type:"method", to, method:
/// "<session>.resolve"}` (or `.reject` when `ok` is false) and extra `{args:[<arg>]}`, where
/// `arg` is already msgpack-encoded (for a reject: an `_rtype:"error"` map).
pub fn write_reply(out: &mut Vec<u8>, to: &str, session: &str, ok: bool, arg: &[u8]) {
    write_map_len(out, 3);
    write_str(out, "type");
    write_str(out, "method");
    write_str(out, "to");
    write_str(out, to);
    write_str(out, "method");
    let suffix = if ok { ".resolve" } else { ".reject" };
    let n = session.len() + suffix.len();
    // A string header for the concatenation, then both parts, without a temporary.
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.push(0xd9);
        out.push(n as u8);
    } else {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    }
    out.extend_from_slice(session.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    write_map_len(out, 1);
    write_str(out, "args");
    out.push(0x91);
    out.extend_from_slice(arg);
}

/// Appends a msgpack `bin` marker for `len` bytes; the caller appends the bytes.
pub fn write_bin_header(out: &mut Vec<u8>, len: usize) {
    if len < 256 {
        out.push(0xc4);
        out.push(len as u8);
    } else if len < 65536 {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// A byte range `start..end` inside a frame.
pub type Span = (usize, usize);

/// The fields of a call header a callee needs to answer it, found in one pass without
/// allocating. Offsets point into the frame given to [`CallView::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallView {
    /// Length of the header (first segment); the extra segment starts here.
    pub header_len: usize,
    /// The (server-stamped) `from`.
    pub from: Option<Span>,
    /// The caller's `session`.
    pub session: Option<Span>,
    /// The `method` path.
    pub method: Option<Span>,
}

// === impl CallView ===

impl CallView {
    /// Walks the header map of `frame`.
    ///
    /// Errors: [`FrameError::NotAMap`], [`FrameError::Truncated`],
    /// [`FrameError::Malformed`] for a non-string key.
    pub fn parse(frame: &[u8]) -> Result<Self, FrameError> {
        let (n, mut pos) = read_map_len(frame, 0)?;
        let mut view = CallView::default();
        for _ in 0..n {
            let (key, after_key) = read_str(frame, pos)?;
            let (ka, kb) = key.ok_or(FrameError::Malformed("header key is not a string"))?;
            let slot = match &frame[ka..kb] {
                b"from" => Some(&mut view.from),
                b"session" => Some(&mut view.session),
                b"method" => Some(&mut view.method),
                _ => None,
            };
            pos = match slot {
                Some(slot) => {
                    let (val, after) = read_str(frame, after_key)?;
                    *slot = val;
                    after
                }
                None => skip(frame, after_key)?,
            };
        }
        view.header_len = pos;
        Ok(view)
    }

    /// `from` as a string (empty if absent or not UTF-8).
    pub fn from<'a>(&self, frame: &'a [u8]) -> &'a str {
        span_str(frame, self.from)
    }

    /// `session` as a string (empty if absent).
    pub fn session<'a>(&self, frame: &'a [u8]) -> &'a str {
        span_str(frame, self.session)
    }

    /// `method` as bytes (empty if absent); compare with the expected path.
    pub fn method<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        self.method.map(|(a, b)| &frame[a..b]).unwrap_or_default()
    }
}

fn span_str(frame: &[u8], span: Option<Span>) -> &str {
    span.and_then(|(a, b)| std::str::from_utf8(&frame[a..b]).ok())
        .unwrap_or_default()
}

/// Finds the first element of `args` in the extra segment starting at `extra_start` (the
/// header length) and returns its byte range, without decoding it. `Ok(None)` when the
/// frame has no extra segment, no `args`, or an empty `args`.
///
/// Errors: [`FrameError`] if the extra segment is not a well-formed map.
pub fn first_arg(frame: &[u8], extra_start: usize) -> Result<Option<Span>, FrameError> {
    if extra_start >= frame.len() {
        return Ok(None);
    }
    let (n, mut pos) = read_map_len(frame, extra_start)?;
    for _ in 0..n {
        let (key, after_key) = read_str(frame, pos)?;
        let is_args = key.is_some_and(|(a, b)| &frame[a..b] == b"args");
        if !is_args {
            pos = skip(frame, after_key)?;
            continue;
        }
        let (len, first) = match frame.get(after_key) {
            Some(&m @ 0x90..=0x9f) => ((m & 0x0f) as usize, after_key + 1),
            Some(0xdc) if frame.len() >= after_key + 3 => (
                u16::from_be_bytes([frame[after_key + 1], frame[after_key + 2]]) as usize,
                after_key + 3,
            ),
            Some(0xdd) if frame.len() >= after_key + 5 => (
                u32::from_be_bytes([
                    frame[after_key + 1],
                    frame[after_key + 2],
                    frame[after_key + 3],
                    frame[after_key + 4],
                ]) as usize,
                after_key + 5,
            ),
            Some(_) => return Err(FrameError::Malformed("args is not an array")),
            None => return Err(FrameError::Truncated),
        };
        if len == 0 {
            return Ok(None);
        }
        return Ok(Some((first, skip(frame, first)?)));
    }
    Ok(None)
}

/// The message text of a reject frame's first argument (`_rvalue` of the error map), for
/// reports. Decodes the frame; not for the hot path.
pub fn reject_text(frame: &[u8]) -> String {
    match Message::decode(frame) {
        Ok(m) => {
            let arg = value::get(&m.merged, "args").and_then(|a| a.as_array()?.first().cloned());
            match arg {
                Some(v) => get_str(&v, "_rvalue")
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
                None => "reject without a message".to_owned(),
            }
        }
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
