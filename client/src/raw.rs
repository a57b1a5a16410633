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
//! The set-up calls drive a [`rhizo_protocol::peer::RpcPeer`] (pending call, timeout,
//! heartbeats, `built-in` answers) in lock-step; [`Responder`] answers with the same
//! [`LocalServices`] without any state of its own.
//!
//! Frames are pipelined: feed many with `SinkExt::feed`, then flush once.

use crate::{client_peer, now, random_id, ws_url, ClientError, ConnectOptions};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizo_protocol::message::{Incoming, Message};
use rhizo_protocol::msgpack::{read_map_len, read_str, skip, write_map_len, write_str};
use rhizo_protocol::peer::{
    built_in_record, service_record, CallRequest, LocalServices, PeerEvent, RpcPeer,
};
use rhizo_protocol::value::{self, get_str};
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

/// An authenticated connection without background tasks. See the module docs.
pub struct RawConnection {
    ws: WsStream,
    info: serde_json::Value,
    /// Bookkeeping of the lock-step calls and the registered services.
    peer: RpcPeer,
    events: VecDeque<Message>,
}

/// The identity of a [`RawConnection`] and the services it registered: enough to answer
/// the calls the manager and peers make into `built-in` (see [`Responder::answer`]) after
/// the socket has been taken with [`RawConnection::into_parts`].
pub struct Responder {
    info: serde_json::Value,
    me: String,
    services: LocalServices,
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
        let peer = client_peer(&info, format!("r{}x", &random_id()[..8]));
        let mut conn = RawConnection {
            ws,
            info,
            peer,
            events: VecDeque::new(),
        };
        let record = built_in_record(conn.address());
        conn.manager_call("register_service", vec![record]).await?;
        Ok(conn)
    }

    /// The `connection_info` the server sent.
    pub fn info(&self) -> &serde_json::Value {
        &self.info
    }

    /// The workspace this connection is in.
    pub fn workspace(&self) -> &str {
        self.info["workspace"].as_str().unwrap_or_default()
    }

    /// This connection's client id.
    pub fn client_id(&self) -> &str {
        self.info["client_id"].as_str().unwrap_or_default()
    }

    /// `"<ws>/<cid>"`: the address peers call.
    pub fn address(&self) -> &str {
        self.peer.addr()
    }

    /// `"*/<manager_id>"`.
    pub fn manager(&self) -> String {
        format!("*/{}", self.info["manager_id"].as_str().unwrap_or_default())
    }

    /// The socket, for the owner's own read/write loop.
    pub fn socket(&mut self) -> &mut WsStream {
        &mut self.ws
    }

    /// Splits the connection into its socket and the [`Responder`] that answers
    /// `built-in` calls, for an owner loop that reads and writes the socket itself.
    pub fn into_parts(self) -> (WsStream, Responder) {
        let responder = Responder {
            me: self.peer.addr().to_owned(),
            services: self.peer.services().clone(),
            info: self.info,
        };
        (self.ws, responder)
    }

    /// Answers a call the owner's loop does not handle itself; see [`Responder::answer`].
    pub fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        answer(self.peer.services(), frame)
    }

    /// Frames that arrived during lock-step calls and were neither replies nor calls
    /// (events, broadcasts), oldest first.
    pub fn take_events(&mut self) -> Vec<Message> {
        self.events.drain(..).collect()
    }

    /// Calls `method` on `to` with a compact promise and waits for the reply, answering
    /// calls into `built-in` meanwhile (§4.6 needs that during `get_service`).
    ///
    /// Every heartbeat of the callee restarts the `timeout`. Frames that are neither the
    /// reply nor a call are kept for [`RawConnection::take_events`].
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
        let req = CallRequest::new(to, method, args, timeout).with_kwargs(kwargs);
        let session = self.peer.call(now(), req, ());
        let result = self.wait_for(&session).await;
        if result.is_err() {
            self.peer.cancel(&session);
        }
        result
    }

    /// Drives the peer until the call `session` completes: sends what it queues, feeds it
    /// every frame and due timer.
    async fn wait_for(&mut self, session: &str) -> Result<Value, ClientError> {
        loop {
            let mut done = None;
            while let Some(ev) = self.peer.poll_event() {
                match ev {
                    PeerEvent::CallCompleted {
                        session: s, result, ..
                    } if s == session => done = Some(result),
                    // An earlier call whose future was dropped.
                    PeerEvent::CallCompleted { .. } => {}
                    // A member of a registered service: the owner's loop runs those, not
                    // this set-up call.
                    PeerEvent::IncomingCall { id, call } => {
                        let e = format!("Method not found: {}", call.method);
                        self.peer.respond(id, Err(e));
                    }
                    PeerEvent::Refused { .. } => {}
                    PeerEvent::Other(m) => self.events.push_back(m),
                }
            }
            self.send_queued().await?;
            if let Some(result) = done {
                return result.map_err(ClientError::from);
            }
            let next = match self.peer.poll_timeout() {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    match tokio::time::timeout_at(at, self.ws.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.peer.handle_timeout(now());
                            continue;
                        }
                    }
                }
                None => self.ws.next().await,
            };
            match next {
                None | Some(Ok(WsMessage::Close(_))) => return Err(ClientError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Binary(b))) => {
                    // Frames that are not msgpack are skipped, as clients do.
                    let _ = self.peer.handle_frame(now(), &b);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Writes every frame the peer queued, then flushes once.
    async fn send_queued(&mut self) -> Result<(), ClientError> {
        let mut any = false;
        while let Some(t) = self.peer.poll_transmit() {
            self.ws
                .feed(WsMessage::Binary(Bytes::from(t.frame)))
                .await?;
            any = true;
        }
        if any {
            self.ws.flush().await?;
        }
        Ok(())
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
        let full = format!("{}:{id}", self.address());
        let record = service_record(self.address(), id, config);
        let members = members.iter().map(|m| (*m).to_owned()).collect();
        self.peer
            .services_mut()
            .register(id, record.clone(), members);
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
    /// `built-in.get_service` (with the visibility rule of §3.7; `"built-in"` describes
    /// the built-in service itself), and a reject `Method not found` for any other call
    /// that expects a reply. Returns `None` for replies, events, fire-and-forget calls and
    /// calls whose explicit promise targets anyone but the caller
    /// ([`rhizo_protocol::peer::check_promise`]).
    pub fn answer(&self, frame: &[u8]) -> Option<Bytes> {
        answer(&self.services, frame)
    }
}

/// [`Responder::answer`] with `services`: decodes the frame and lets
/// [`LocalServices::answer`] build the reply.
fn answer(services: &LocalServices, frame: &[u8]) -> Option<Bytes> {
    let m = Message::decode(frame).ok()?;
    let Incoming::Call(call) = m.classify() else {
        return None;
    };
    services.answer(&call).map(|t| Bytes::from(t.frame))
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
