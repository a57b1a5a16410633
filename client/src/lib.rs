//! An async Rust client for the hypha-rpc protocol over WebSocket (protocol.md §1–§4).
//!
//! It connects and authenticates ([`Client::connect`]), calls the manager or any peer with
//! compact promises ([`Client::call`]), provides services whose functions are Rust
//! closures ([`Client::register_service`]), answers the `built-in` service the manager
//! and other peers ask for, and exposes every other frame ([`Client::next_event`]) and the
//! raw socket ([`Client::send_frame`]) for tests and the load generator.
//!
//! For many frames per second through one socket, [`raw::RawConnection`] does the same
//! handshake but leaves reading and writing to its owner, with allocation-free frame
//! writers and header scanners (the load generator uses it).
//!
//! Not implemented: message_cache chunking of large calls, reconnection, encryption.

pub mod raw;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizo_protocol::message::{encode_frame, Call, Incoming, Message, ReplyKind};
use rhizo_protocol::value::{self, get_str, map, method, RPromise};
use rmpv::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server refused the handshake with this message.
    #[error("connection refused by the server: {0}")]
    Refused(String),
    /// The server sent something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The callee rejected the call with this message.
    #[error("remote error: {0}")]
    Remote(String),
    /// No reply within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Credentials and identity for [`Client::connect`] (protocol.md §1.2).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Client id; random when `None`.
    pub client_id: Option<String>,
    /// Workspace to join; the server picks when `None`.
    pub workspace: Option<String>,
    /// A token from `generate_token` or the root token.
    pub token: Option<String>,
    /// A reconnection token from an earlier `connection_info`.
    pub reconnection_token: Option<String>,
}

/// Something the server or a peer sent that is not a reply to one of our calls.
#[derive(Debug, Clone)]
pub enum Event {
    /// A binary frame (event, broadcast, call we do not serve), decoded.
    Frame(Message),
    /// A JSON text frame (pong, reconnection_token, error).
    Text(serde_json::Value),
    /// The server closed the connection: code and reason.
    Closed(Option<(u16, String)>),
}

/// A service function: receives the call (args, kwargs, trusted context) and returns the
/// encoded result or an error message.
pub type Handler =
    Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> + Send + Sync>;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, String>>>>>;

struct Service {
    record: Value,
    functions: HashMap<String, Handler>,
}

type Services = Arc<Mutex<HashMap<String, Service>>>;

/// A connected client. Dropping it closes the connection.
pub struct Client {
    info: serde_json::Value,
    out: mpsc::UnboundedSender<WsMessage>,
    pending: Pending,
    services: Services,
    events: mpsc::UnboundedReceiver<Event>,
    next_session: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

fn ws_url(server_url: &str) -> String {
    let u = server_url.trim_end_matches('/');
    if u.starts_with("ws://") || u.starts_with("wss://") {
        u.to_owned()
    } else if let Some(rest) = u.strip_prefix("https://") {
        format!("wss://{rest}/ws")
    } else {
        format!("ws://{}/ws", u.trim_start_matches("http://"))
    }
}

fn random_id() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(22)
        .map(char::from)
        .collect()
}

// === impl Client ===

impl Client {
    /// Opens `<server_url>/ws` (or a `ws://` URL as is), authenticates, waits for
    /// `connection_info` and registers the `built-in` service.
    ///
    /// Errors: [`ClientError::Refused`] with the server's message when it sends
    /// `{"type":"error"}`; [`ClientError::Ws`] for transport failures.
    pub async fn connect(server_url: &str, opts: ConnectOptions) -> Result<Client, ClientError> {
        let (ws, info) = raw::handshake(server_url, opts).await?;
        let cid = info["client_id"].as_str().unwrap_or_default().to_owned();
        let (sink, stream) = ws.split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let services: Services = Arc::default();
        tokio::spawn(write_loop(sink, out_rx));
        let reader = tokio::spawn(read_loop(
            stream,
            ReaderState {
                out: out.clone(),
                pending: pending.clone(),
                services: services.clone(),
                events: ev_tx,
                me: format!("{}/{}", info["workspace"].as_str().unwrap_or_default(), cid),
                server: info["public_base_url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
        ));
        let client = Client {
            info,
            out,
            pending,
            services,
            events,
            next_session: AtomicU64::new(1),
            reader,
        };
        client.register_built_in().await?;
        Ok(client)
    }

    /// The `connection_info` the server sent.
    pub fn info(&self) -> &serde_json::Value {
        &self.info
    }

    /// The workspace this client is in.
    pub fn workspace(&self) -> &str {
        self.info["workspace"].as_str().unwrap_or_default()
    }

    /// This client's id.
    pub fn client_id(&self) -> &str {
        self.info["client_id"].as_str().unwrap_or_default()
    }

    /// `"*/<manager_id>"`.
    pub fn manager(&self) -> String {
        format!("*/{}", self.info["manager_id"].as_str().unwrap_or_default())
    }

    /// Sends a raw binary frame.
    pub fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        self.out
            .send(WsMessage::Binary(frame))
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a raw text frame.
    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.out
            .send(WsMessage::Text(text.to_owned().into()))
            .map_err(|_| ClientError::Closed)
    }

    /// The next frame that is not a reply to our calls, or `None` when the reader ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Calls `method` on `to` with positional `args` and a compact promise, waiting at most
    /// `timeout` for the reply.
    pub async fn call(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.call_with(to, method, args, None, timeout).await
    }

    /// Like [`Client::call`], with keyword arguments (`with_kwargs`, §3.5).
    pub async fn call_with(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let session = format!(
            "s{}x{}",
            self.next_session.fetch_add(1, Ordering::Relaxed),
            random_id()
        );
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(session.clone(), tx);
        self.send_frame(call_frame(to, method, &session, args, kwargs, timeout))?;
        let result = tokio::time::timeout(timeout, rx).await;
        self.pending.lock().expect("pending lock").remove(&session);
        match result {
            Err(_) => Err(ClientError::Timeout(timeout)),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(ClientError::Remote(e)),
        }
    }

    /// Calls a method of the manager's `default` service, e.g. `list_services`.
    pub async fn manager_call(&self, name: &str, args: Vec<Value>) -> Result<Value, ClientError> {
        self.call(
            &self.manager(),
            &format!("services.default.{name}"),
            args,
            Duration::from_secs(30),
        )
        .await
    }

    /// Registers a service `id` whose functions are `functions`; `config` is the service
    /// config map (e.g. `{"visibility": "public"}`). Returns the full service id.
    pub async fn register_service(
        &self,
        id: &str,
        config: Value,
        functions: Vec<(&str, Handler)>,
    ) -> Result<String, ClientError> {
        let me = format!("{}/{}", self.workspace(), self.client_id());
        let full = format!("{me}:{id}");
        let mut record = map([
            ("id", full.as_str().into()),
            ("name", id.into()),
            ("type", "generic".into()),
            ("description", "".into()),
            ("app_id", "*".into()),
            ("config", config),
        ]);
        if value::get(&record, "config").is_some_and(Value::is_nil) {
            value::set(&mut record, "config", Value::Map(vec![]));
        }
        let svc = Service {
            record: record.clone(),
            functions: functions
                .into_iter()
                .map(|(n, h)| (n.to_owned(), h))
                .collect(),
        };
        self.services
            .lock()
            .expect("services lock")
            .insert(id.to_owned(), svc);
        self.manager_call("register_service", vec![record]).await?;
        Ok(full)
    }

    async fn register_built_in(&self) -> Result<(), ClientError> {
        let me = format!("{}/{}", self.workspace(), self.client_id());
        let record = map([
            ("id", format!("{me}:built-in").into()),
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
        self.manager_call("register_service", vec![record])
            .await
            .map(|_| ())
    }

    /// Closes the connection.
    pub fn disconnect(&self) {
        let _ = self.out.send(WsMessage::Close(None));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.out.send(WsMessage::Close(None));
        self.reader.abort();
    }
}

async fn write_loop<S>(mut sink: S, mut rx: mpsc::UnboundedReceiver<WsMessage>)
where
    S: futures_util::Sink<WsMessage> + Unpin,
{
    let mut buf = Vec::with_capacity(64);
    while rx.recv_many(&mut buf, 64).await > 0 {
        for m in buf.drain(..) {
            let close = matches!(m, WsMessage::Close(_));
            if sink.feed(m).await.is_err() {
                return;
            }
            if close {
                let _ = sink.flush().await;
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

struct ReaderState {
    out: mpsc::UnboundedSender<WsMessage>,
    pending: Pending,
    services: Services,
    events: mpsc::UnboundedSender<Event>,
    me: String,
    /// The server's `public_base_url`, the `_rserver` of the methods we describe: a peer
    /// (the reference's manager included) that sees another server URL there re-encodes
    /// the method as a proxy through itself instead of passing it on (protocol.md §4.3).
    server: String,
}

async fn read_loop<S>(mut stream: S, st: ReaderState)
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(WsMessage::Binary(b)) => {
                let Ok(m) = Message::decode(&b) else { continue };
                match m.clone().classify() {
                    Incoming::Reply { session, kind } => {
                        let tx = match &kind {
                            ReplyKind::Heartbeat => None,
                            _ => st.pending.lock().expect("pending lock").remove(&session),
                        };
                        match (tx, kind) {
                            (Some(tx), ReplyKind::Resolve(v)) => {
                                let _ = tx.send(Ok(v));
                            }
                            (Some(tx), ReplyKind::Reject(e)) => {
                                let _ = tx.send(Err(e));
                            }
                            _ => {}
                        }
                    }
                    Incoming::Call(call) => serve_call(&st, *call, m),
                    Incoming::Other => {
                        let _ = st.events.send(Event::Frame(m));
                    }
                }
            }
            Ok(WsMessage::Text(t)) => {
                let v = serde_json::from_str(t.as_str()).unwrap_or(serde_json::Value::Null);
                let _ = st.events.send(Event::Text(v));
            }
            Ok(WsMessage::Close(f)) => {
                let _ = st.events.send(Event::Closed(
                    f.map(|f| (u16::from(f.code), f.reason.to_string())),
                ));
                break;
            }
            Ok(_) => {}
            Err(_) => {
                let _ = st.events.send(Event::Closed(None));
                break;
            }
        }
    }
    // Fail every call still waiting.
    for (_, tx) in st.pending.lock().expect("pending lock").drain() {
        let _ = tx.send(Err("connection closed".into()));
    }
}

/// Answers a call into our services: `built-in.ping`, `built-in.get_service` and the
/// registered functions. Anything else goes out as an event.
fn serve_call(st: &ReaderState, call: Call, m: Message) {
    let Some(path) = call.method.strip_prefix("services.") else {
        let _ = st.events.send(Event::Frame(m));
        return;
    };
    let Some((svc, func)) = path.split_once('.') else {
        return;
    };
    let out = st.out.clone();
    let me = st.me.clone();
    let reply = move |call: &Call, r: Result<Value, String>| {
        if let Some((_, frame)) = call.reply(&me, r) {
            let _ = out.send(WsMessage::Binary(Bytes::from(frame)));
        }
    };
    match (svc, func) {
        ("built-in", "ping") => reply(&call, Ok("pong".into())),
        ("built-in", "get_service") => {
            let name = call
                .args
                .first()
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let services = st.services.lock().expect("services lock");
            let own_ws = st.me.split_once('/').map(|(w, _)| w).unwrap_or_default();
            let r = match services.get(&name) {
                Some(s) if !visible_to(&s.record, own_ws, &call.ws) => Err(format!(
                    "PermissionError: Permission denied for protected service: {name}"
                )),
                Some(s) => {
                    let mut obj = s.record.clone();
                    for f in s.functions.keys() {
                        let m = method(
                            &st.me,
                            &format!("services.{name}.{f}"),
                            RPromise::Compact,
                            f,
                            "",
                            &st.server,
                        );
                        value::set(&mut obj, f, m);
                    }
                    Ok(obj)
                }
                None => Err(format!("KeyError: Service not found: {name}")),
            };
            drop(services);
            reply(&call, r);
        }
        _ => {
            let own_ws = st.me.split_once('/').map(|(w, _)| w).unwrap_or_default();
            let caller_ws = call
                .from
                .split_once('/')
                .map(|(w, _)| w)
                .unwrap_or_default();
            let handler = st
                .services
                .lock()
                .expect("services lock")
                .get(svc)
                .and_then(|s| {
                    let allowed = caller_ws == "*" || visible_to(&s.record, own_ws, caller_ws);
                    let f = s.functions.get(func).cloned()?;
                    Some(if allowed { Ok(f) } else { Err(()) })
                });
            match handler {
                None => reply(&call, Err(format!("Method not found: {}", call.method))),
                Some(Err(())) => reply(
                    &call,
                    Err(format!(
                        "PermissionError: Permission denied for protected method {}, \
                         workspace mismatch: {caller_ws} != {own_ws}",
                        call.method
                    )),
                ),
                Some(Ok(h)) => {
                    tokio::spawn(async move {
                        let r = h(call.clone()).await;
                        reply(&call, r);
                    });
                }
            }
        }
    }
}

/// Whether a caller in `caller_ws` may use a service of ours (protocol.md §3.7).
fn visible_to(record: &Value, own_ws: &str, caller_ws: &str) -> bool {
    let config = value::get(record, "config");
    let visibility = config
        .and_then(|c| get_str(c, "visibility"))
        .unwrap_or("protected");
    if visibility != "protected" || caller_ws == own_ws {
        return true;
    }
    config
        .and_then(|c| value::get(c, "authorized_workspaces"))
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|w| w.as_str() == Some(caller_ws)))
}

/// A call frame with a compact promise (`promise: "*"`, `t` = half the timeout, §3.4);
/// `kwargs`, if any, goes last in `args` with `with_kwargs: true` (§3.5).
pub(crate) fn call_frame(
    to: &str,
    method: &str,
    session: &str,
    mut args: Vec<Value>,
    kwargs: Option<Value>,
    timeout: Duration,
) -> Bytes {
    let header = map([
        ("type", "method".into()),
        ("to", to.into()),
        ("method", method.into()),
        ("session", session.into()),
    ]);
    let with_kwargs = kwargs.is_some();
    if let Some(kw) = kwargs {
        args.push(kw);
    }
    let mut extra = map([
        ("args", Value::Array(args)),
        ("promise", "*".into()),
        ("t", Value::F64(timeout.as_secs_f64() / 2.0)),
    ]);
    if with_kwargs {
        value::set(&mut extra, "with_kwargs", true.into());
    }
    Bytes::from(encode_frame(&header, Some(&extra)))
}

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    Arc::new(move |c| Box::pin(f(c)))
}
