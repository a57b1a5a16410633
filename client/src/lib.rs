//! An async Rust client for the hypha-rpc protocol over WebSocket (protocol.md §1–§4).
//!
//! It connects and authenticates ([`Client::connect`]), calls the manager or any peer with
//! compact promises ([`Client::call`]), provides services whose functions are Rust
//! closures ([`Client::register_service`]), answers the `built-in` service the manager
//! and other peers ask for, and exposes every other frame ([`Client::next_event`]) and the
//! raw socket ([`Client::send_frame`]) for tests and the load generator.
//!
//! The RPC bookkeeping — pending calls, their timeouts and the heartbeats that extend them,
//! replies and heartbeats for calls into our services, the `built-in` answers and the
//! visibility checks — is the sans-IO [`rhizo_protocol::peer::RpcPeer`]. One task per
//! connection drives it: it feeds in every frame and every due timer and drains the frames
//! to send, the completed calls (to their waiting futures) and the calls to run (each
//! handler on its own task, whose result goes back into the peer).
//!
//! For many frames per second through one socket, [`raw::RawConnection`] does the same
//! handshake but leaves reading and writing to its owner, with allocation-free frame
//! writers and header scanners (the load generator uses it).
//!
//! A handler may also return a remote generator ([`Client::generator`], `generator.rs`).
//!
//! # Typed services and calls
//!
//! [`Client::service`] builds a service of typed async functions: each takes a serde +
//! `schemars` argument struct, so callers in any language pass keyword or positional
//! arguments and see its JSON schema (`_rschema`, `service_schema`: Python's
//! `__schema__`, the MCP endpoints, the agent-skills pages). [`Client::get_service`]
//! returns a [`ServiceProxy`] whose calls decode their replies into Rust types; both
//! fail with [`RpcError`]. Streams go both ways: [`ServiceBuilder::generator`] serves a
//! Rust `Stream` as a remote generator (an async iterator for Python callers) and
//! [`ServiceProxy::call_stream`] iterates any remote generator (a Python async generator's
//! included) as a `Stream`. `client/examples/` has a service, a caller, a stream service
//! (`stream`) and a stream caller (`stream_caller`).
//!
//! ```
//! use rhizo_client::{Client, ConnectOptions, RpcError};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct AddArgs {
//!     a: i64,
//!     b: i64,
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A rhizo server in-process, on a free port.
//! # let settings = rhizo::Settings::parse_from(["rhizo", "--port", "0", "--jwt-secret", "doc"])?;
//! # let server = rhizo::Server::builder(settings).in_memory().bind().await?;
//! let url = server.url(); // e.g. "http://127.0.0.1:9527"
//! let provider = Client::connect(url, ConnectOptions::default()).await?;
//! let id = provider
//!     .service("calc")
//!     .config(serde_json::json!({"visibility": "public"}))
//!     .function("add", "Add two numbers.", |args: AddArgs| async move {
//!         Ok::<_, RpcError>(args.a + args.b)
//!     })
//!     .register()
//!     .await?;
//!
//! let caller = Client::connect(url, ConnectOptions::default()).await?;
//! let sum: i64 = caller.get_service(&id).await?.call("add", (2, 3)).await?;
//! assert_eq!(sum, 5);
//! # Ok(())
//! # }
//! ```
//!
//! Not implemented: message_cache chunking of large calls, reconnection, encryption;
//! typed events and callbacks.

mod error;
mod generator;
mod proxy;
pub mod raw;
mod typed;

pub use error::RpcError;
pub use generator::GENERATOR_IDLE;
pub use proxy::{ServiceProxy, DEFAULT_CALL_TIMEOUT};
pub use typed::{function_schema, CallContext, ServiceBuilder};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rhizo_protocol::message::{Call, Message};
use rhizo_protocol::peer::{
    built_in_record, service_record, CallError, CallRequest, IncomingId, PeerConfig, PeerEvent,
    Role, RpcPeer,
};
use rmpv::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
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
    /// Neither a reply nor a heartbeat of the callee within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection is gone (or went down while the call waited).
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

/// What a call waits on: the peer hands it back with the call's outcome.
type Waiter = oneshot::Sender<Result<Value, CallError>>;

/// The handlers of the services registered with [`Client::register_service`]: service id →
/// member name → handler. Their records live in the peer ([`rhizo_protocol::peer::LocalServices`]).
type Handlers = HashMap<String, HashMap<String, Handler>>;

/// What the driver task and the [`Client`] handles share.
struct Shared {
    /// The RPC peer and whether the connection has ended. Never held across an `.await`.
    state: Mutex<State>,
    /// Wakes the driver when a call adds a deadline that may be earlier than the one it
    /// sleeps towards.
    wake: Notify,
    out: mpsc::UnboundedSender<WsMessage>,
    events: mpsc::UnboundedSender<Event>,
    handlers: Mutex<Handlers>,
    /// Handlers of methods handed out to one caller (generators): method path → handler.
    objects: Mutex<HashMap<String, Handler>>,
}

struct State {
    peer: RpcPeer<Waiter>,
    /// Set once the socket has ended; later calls fail at once.
    closed: bool,
}

/// A connected client. Dropping it closes the connection.
pub struct Client {
    info: serde_json::Value,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
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

/// The peer's clock: tokio's, so that paused test time applies.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A client peer for the connection described by `info` (`connection_info`, §1.4);
/// sessions are `<prefix><n>`.
fn client_peer<W>(info: &serde_json::Value, session_prefix: String) -> RpcPeer<W> {
    RpcPeer::new(PeerConfig {
        addr: format!(
            "{}/{}",
            info["workspace"].as_str().unwrap_or_default(),
            info["client_id"].as_str().unwrap_or_default()
        ),
        // `_rserver` of the methods we describe: a peer (the reference's manager
        // included) that sees another server URL there re-encodes the method as a proxy
        // through itself instead of passing it on (protocol.md §4.3).
        server_url: info["public_base_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        role: Role::Client,
        session_prefix,
    })
}

impl From<CallError> for ClientError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(m) => ClientError::Remote(m),
            CallError::Timeout { timeout, .. } => ClientError::Timeout(timeout),
            CallError::Failed(_) => ClientError::Closed,
        }
    }
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
        let (sink, stream) = ws.split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                peer: client_peer(&info, format!("s{}x", random_id())),
                closed: false,
            }),
            wake: Notify::new(),
            out,
            events: ev_tx,
            handlers: Mutex::default(),
            objects: Mutex::default(),
        });
        tokio::spawn(write_loop(sink, out_rx));
        let reader = tokio::spawn(drive(stream, shared.clone()));
        let client = Client {
            info,
            shared,
            events,
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
        self.shared
            .out
            .send(WsMessage::Binary(frame))
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a raw text frame.
    pub fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.shared
            .out
            .send(WsMessage::Text(text.to_owned().into()))
            .map_err(|_| ClientError::Closed)
    }

    /// The next frame that is not a reply to our calls, or `None` when the reader ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Calls `method` on `to` with positional `args` and a compact promise, waiting at most
    /// `timeout` for the reply; every heartbeat of the callee restarts that wait (§3.4).
    ///
    /// Errors: [`ClientError::Remote`] with the callee's reject text,
    /// [`ClientError::Timeout`], [`ClientError::Closed`] if the connection is or goes down.
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
    ///
    /// Cancel-safe: dropping the future forgets the call (a late reply is ignored).
    pub async fn call_with(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        if self.shared.out.is_closed() {
            return Err(ClientError::Closed);
        }
        let req = CallRequest::new(to, method, args, timeout).with_kwargs(kwargs);
        let (tx, rx) = oneshot::channel();
        let session = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(ClientError::Closed);
            }
            let session = st.peer.call(now(), req, tx);
            self.shared.flush(&mut st);
            session
        };
        self.shared.wake.notify_one();
        let _forget = Forget {
            shared: &self.shared,
            session,
        };
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Sends a call to `method` on `to` without waiting for its reply (which is ignored
    /// when it comes); for the `close` of a remote generator a stream stopped early.
    pub(crate) fn call_detached(&self, to: &str, method: &str, args: Vec<Value>) {
        let req = CallRequest::new(to, method, args, Duration::from_secs(30));
        let (tx, _rx) = oneshot::channel();
        let mut st = self.shared.lock();
        if st.closed {
            return;
        }
        st.peer.call(now(), req, tx);
        self.shared.flush(&mut st);
        drop(st);
        self.shared.wake.notify_one();
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
    ///
    /// Calls into it run each on their own task; while one runs longer than the caller's
    /// heartbeat interval, the caller is sent heartbeats (§3.4).
    pub async fn register_service(
        &self,
        id: &str,
        config: Value,
        functions: Vec<(&str, Handler)>,
    ) -> Result<String, ClientError> {
        let fields = rhizo_protocol::value::map([("config", config)]);
        self.register_service_record(id, fields, functions).await
    }

    /// Like [`Client::register_service`], with more of the record than the config: every
    /// key of the map `fields` (`name`, `type`, `description`, `docs`, or keys of the
    /// service's own such as a worker's `supported_types`) overrides the default record
    /// (`id` excepted: the full id is always `<ws>/<cid>:<id>`). The whole record is what
    /// `built-in.get_service` describes to callers; the manager keeps the keys it persists.
    /// Returns the full service id.
    ///
    /// Errors: those of the manager's `register_service` ([`ClientError::Remote`]).
    pub async fn register_service_record(
        &self,
        id: &str,
        fields: Value,
        functions: Vec<(&str, Handler)>,
    ) -> Result<String, ClientError> {
        self.register_described(id, fields, functions, Vec::new())
            .await
    }

    /// [`Client::register_service_record`], with the `_rdoc` and `_rschema` that members
    /// are described with: `(member, doc, schema)`. They are in place before the manager
    /// hears of the service, so that its first `get_service` sees them.
    async fn register_described(
        &self,
        id: &str,
        fields: Value,
        functions: Vec<(&str, Handler)>,
        docs: Vec<(String, String, Value)>,
    ) -> Result<String, ClientError> {
        let me = format!("{}/{}", self.workspace(), self.client_id());
        let config = rhizo_protocol::value::get(&fields, "config")
            .cloned()
            .unwrap_or(Value::Nil);
        let mut record = service_record(&me, id, config);
        if let Value::Map(entries) = fields {
            for (k, v) in entries {
                match k.as_str() {
                    Some("id") | Some("config") | None => {}
                    Some(key) => rhizo_protocol::value::set(&mut record, key, v),
                }
            }
        }
        let members = functions.iter().map(|(n, _)| (*n).to_owned()).collect();
        let functions = functions
            .into_iter()
            .map(|(n, h)| (n.to_owned(), h))
            .collect();
        self.shared
            .handlers
            .lock()
            .expect("handlers lock")
            .insert(id.to_owned(), functions);
        {
            let mut st = self.shared.lock();
            let services = st.peer.services_mut();
            services.register(id, record.clone(), members);
            for (member, doc, schema) in docs {
                services.describe_member(id, &member, &doc, schema);
            }
        }
        self.manager_call("register_service", vec![record]).await?;
        Ok(format!("{me}:{id}"))
    }

    /// Hands the stream of [`Event`]s to the caller, so that a long-lived client that has
    /// no other use for `&mut self` can drain it from a task of its own (events nobody
    /// reads pile up in memory). Afterwards [`Client::next_event`] returns `None`.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<Event> {
        let (_, closed) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.events, closed)
    }

    async fn register_built_in(&self) -> Result<(), ClientError> {
        let me = format!("{}/{}", self.workspace(), self.client_id());
        self.manager_call("register_service", vec![built_in_record(&me)])
            .await
            .map(|_| ())
    }

    /// Closes the connection.
    pub fn disconnect(&self) {
        let _ = self.shared.out.send(WsMessage::Close(None));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.shared.out.send(WsMessage::Close(None));
        self.reader.abort();
    }
}

/// Forgets a call in the peer when the future waiting for it is dropped (a no-op once the
/// call has completed).
struct Forget<'a> {
    shared: &'a Shared,
    session: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock().peer.cancel(&self.session);
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("peer lock")
    }

    /// Drains the peer after an input: frames go to the writer, completed calls to their
    /// waiters, incoming calls to their handlers, other frames to [`Client::next_event`].
    fn flush(self: &Arc<Self>, st: &mut State) {
        while let Some(t) = st.peer.poll_transmit() {
            let _ = self.out.send(WsMessage::Binary(Bytes::from(t.frame)));
        }
        while let Some(ev) = st.peer.poll_event() {
            match ev {
                PeerEvent::CallCompleted { waiter, result, .. } => {
                    let _ = waiter.send(result);
                }
                PeerEvent::IncomingCall { id, call } => self.serve(id, *call),
                PeerEvent::Refused {
                    from,
                    method,
                    reason,
                } => tracing::debug!(%from, %method, %reason, "refused a call"),
                PeerEvent::Other(m) => {
                    let _ = self.events.send(Event::Frame(m));
                }
            }
        }
    }

    /// Runs the handler of a call the peer routed to a registered member, on its own
    /// task, and hands the result back to the peer.
    fn serve(self: &Arc<Self>, id: IncomingId, call: Call) {
        let handler = match call.method.strip_prefix("services.") {
            Some(path) => path.split_once('.').and_then(|(svc, member)| {
                let handlers = self.handlers.lock().expect("handlers lock");
                handlers.get(svc)?.get(member).cloned()
            }),
            None => self
                .objects
                .lock()
                .expect("objects lock")
                .get(&call.method)
                .cloned(),
        };
        let me = self.clone();
        tokio::spawn(async move {
            let result = match handler {
                Some(h) => h(call).await,
                None => Err(format!("Method not found: {}", call.method)),
            };
            let mut st = me.lock();
            st.peer.respond(id, result);
            me.flush(&mut st);
        });
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

/// The driver: feeds every frame and every due timer into the peer and drains it, until
/// the socket ends; then fails the calls still waiting.
async fn drive<S>(mut stream: S, shared: Arc<Shared>)
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let deadline = shared.lock().peer.poll_timeout();
        let timer = async move {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(WsMessage::Binary(b))) => {
                    let mut st = shared.lock();
                    if st.peer.handle_frame(now(), &b).is_ok() {
                        shared.flush(&mut st);
                    }
                }
                Some(Ok(WsMessage::Text(t))) => {
                    let v = serde_json::from_str(t.as_str()).unwrap_or(serde_json::Value::Null);
                    let _ = shared.events.send(Event::Text(v));
                }
                Some(Ok(WsMessage::Close(f))) => {
                    let _ = shared.events.send(Event::Closed(
                        f.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    let _ = shared.events.send(Event::Closed(None));
                    break;
                }
                None => break,
            },
            _ = shared.wake.notified() => {}
            _ = timer => {
                let mut st = shared.lock();
                st.peer.handle_timeout(now());
                shared.flush(&mut st);
            }
        }
    }
    let mut st = shared.lock();
    st.closed = true;
    st.peer.fail_all("connection closed");
    shared.flush(&mut st);
}

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    Arc::new(move |c| Box::pin(f(c)))
}

#[cfg(test)]
mod tests;
