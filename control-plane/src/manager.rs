//! The manager peer at `*/<manager_id>` (protocol.md §4, workspace-api.md §3, §5).
//!
//! Frames addressed to the manager arrive already stamped by the router
//! ([`Manager::handle_frame`]). Calls into `services.built-in.*` and `services.default.*`
//! are dispatched on their own task; replies go back through the router. The manager also
//! makes calls of its own (fetching a provider's service object for `get_service`, pinging
//! clients) and waits for their replies, with heartbeats resetting the timeout (§3.4).

mod built_in;
mod cache;
mod calls;
mod chunks;
mod default;
mod driver;
mod http_api;

pub use http_api::HTTP_CALL_TIMEOUT;

use crate::config::ServerConfig;
use crate::error::{ManagerError, ManagerResult};
use crate::event_log::EventLogs;
use crate::names::random_string;
use crate::registry::Registry;
use crate::service::ServiceSet;
use crate::sessions::Sessions;
use crate::storage::Store;
use crate::tokens::TokenService;
use crate::workspaces::Workspaces;
use bytes::Bytes;
use dashmap::DashMap;
use rhizo_interface::RouterControl;
use rhizo_protocol::frame::HeaderView;
use rhizo_protocol::message::{encode_frame, Call, Message, Param};
use rhizo_protocol::peer::CallRequest;
use rhizo_protocol::user::{Permission, UserInfo};
use rhizo_protocol::value::{self, map, method, RPromise};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// The trusted context of a call: taken from the router-stamped header (§3.7).
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Caller's workspace (`ws`).
    pub ws: String,
    /// Caller's `"<ws>/<cid>"` (`from`).
    pub from: String,
    /// Caller's client id.
    pub cid: String,
    /// Caller's user record.
    pub user: UserInfo,
}

// === impl Ctx ===

impl Ctx {
    /// The context of `call`, from its router-stamped `from`, `ws` and `user`.
    ///
    /// Errors: the stamped user record does not parse, or `from`/`ws` are missing. Such a
    /// call is refused: it never runs with a made-up identity.
    fn from_call(call: &Call) -> ManagerResult<Self> {
        let user: UserInfo = serde_json::from_value(value::to_json(&call.user)).map_err(|e| {
            ManagerError::Permission(format!("the caller's identity could not be read ({e})"))
        })?;
        if call.from.is_empty() || call.ws.is_empty() {
            return Err(ManagerError::Permission(
                "the call carries no caller address".into(),
            ));
        }
        let cid = call
            .from
            .split_once('/')
            .map(|(_, c)| c)
            .unwrap_or(&call.from)
            .to_owned();
        Ok(Ctx {
            ws: call.ws.clone(),
            from: call.from.clone(),
            cid,
            user,
        })
    }

    /// Fails with [`ManagerError::Permission`] (`Permission denied for workspace <ws>`,
    /// as the reference) unless the caller has `needed` on `ws`.
    pub fn require(&self, ws: &str, needed: Permission) -> ManagerResult<()> {
        if self.user.can(ws, needed) {
            Ok(())
        } else {
            Err(ManagerError::Permission(format!(
                "Permission denied for workspace {ws}"
            )))
        }
    }
}

/// Binds the arguments of `call` to `params` (`rhizo_protocol::message::bind`); arguments
/// that do not fit are a [`ManagerError::BadCall`].
pub(crate) fn bind(name: &str, params: &[Param], call: &Call) -> ManagerResult<Vec<Value>> {
    rhizo_protocol::message::bind(name, params, call).map_err(ManagerError::bad_call)
}

/// A call the manager sent and is waiting on ([`Manager::wait_reply`]); dropping it
/// forgets the call.
pub(crate) struct SentCall {
    guard: driver::CallGuard,
}

/// The manager peer and the state it serves from.
pub struct Manager {
    /// Settings.
    pub config: ServerConfig,
    /// The router, through which every frame leaves (DESIGN.md "Two planes"): the control
    /// plane sees only this interface, never the router's tables.
    pub router: Arc<dyn RouterControl>,
    /// The service registry: records, resolution, service events.
    pub registry: Registry,
    /// Workspaces: records, lifecycle, settings, their persistence and events.
    pub workspaces: Arc<Workspaces>,
    /// Token minting, verification and (persisted) revocation.
    pub tokens: TokenService,
    /// Live sessions of this instance (limits, refresh, revocation).
    pub sessions: Arc<Sessions>,
    /// The event log (`log_event`, `get_events`), kept in the store.
    pub event_logs: EventLogs,
    /// The store the domains write through (and `/health/readiness` pings).
    store: Arc<dyn Store>,
    manager_id: String,
    addr: String,
    /// The sans-IO RPC peer: the manager's outgoing calls (replies, heartbeats,
    /// timeouts) and the heartbeats and replies of the calls it answers.
    driver: Arc<driver::Driver>,
    cache: cache::MessageCache,
    /// Slots of the calls running in the manager, per caller and in all.
    calls: calls::CallLimits,
    root_user: Value,
    /// HTTP requests served, by route template and status (for `/metrics`).
    pub http_requests: DashMap<(String, u16), u64>,
    /// Callbacks the manager handed out (method path → owner allowed to call it, handler).
    callbacks: DashMap<String, (String, Callback)>,
    /// Turns for handshakes (`HYPHA_MAX_CONCURRENT_CONNECTIONS`); `None` when unlimited.
    pub(crate) handshakes: Option<tokio::sync::Semaphore>,
    /// The control-plane services in crates of their own (artifacts, server apps, …),
    /// exposed as `public/<id>` with methods on the manager ([`crate::service`]).
    services: ServiceSet,
    /// The cluster channel's queue and the fetches waiting on other nodes
    /// ([`crate::cluster`]).
    pub(crate) cluster: crate::cluster::Cluster,
    /// What `/health/readiness` reports as not done yet (e.g. the startup functions of
    /// `--startup-functions`, workspace-api.md §9.4); `None` once ready.
    pending: std::sync::Mutex<Option<String>>,
}

/// A callback the manager hands to a client as an encoded method (`<session>.<name>` on
/// `*/<manager_id>`), e.g. the ASGI `receive`/`send` of an HTTP request.
pub type Callback = Arc<
    dyn Fn(
            Call,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = ManagerResult<Value>> + Send>>
        + Send
        + Sync,
>;

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

// === impl Manager ===

impl Manager {
    /// A manager whose id is `manager-<server_id>` (the router must already use that id),
    /// its domains writing through `store`. Nothing is loaded from the store yet: see
    /// [`crate::start`].
    pub fn new(
        config: ServerConfig,
        router: Arc<dyn RouterControl>,
        store: Arc<dyn Store>,
        services: ServiceSet,
    ) -> Arc<Self> {
        let addr = router.manager_addr().to_owned();
        let manager_id = addr.trim_start_matches("*/").to_owned();
        let tokens = TokenService::new(
            &config.jwt_secret,
            config.claims.clone(),
            config.root_token.clone(),
            store.clone(),
        );
        let sessions = Arc::new(Sessions::default());
        let event_logs = EventLogs::new(store.clone());
        let workspaces = Arc::new(Workspaces::new(
            &config,
            store.clone(),
            router.clone(),
            sessions.clone(),
            event_logs.clone(),
        ));
        let registry = Registry::new(router.clone(), config.limits.services_per_client);
        let root = serde_json::to_value(UserInfo::root()).expect("user record serialises");
        let handshakes = Some(config.limits.concurrent_handshakes)
            .filter(|n| *n > 0)
            .map(tokio::sync::Semaphore::new);
        let driver = driver::Driver::new(
            &addr,
            &config.public_base_url,
            format!("mgr{}", random_string(16)),
        );
        driver.spawn_timer(router.clone());
        let l = &config.limits;
        let calls = calls::CallLimits::new(l.manager_calls_per_client, l.manager_calls_total);
        let cache = cache::MessageCache::new(l.cache_entries_per_client, l.cache_bytes_per_client);
        Arc::new(Manager {
            config,
            router,
            registry,
            workspaces,
            tokens,
            sessions,
            event_logs,
            store,
            manager_id,
            addr,
            driver: driver.clone(),
            calls,
            cache,
            http_requests: DashMap::new(),
            callbacks: DashMap::new(),
            handshakes,
            root_user: value::from_json(&root),
            services,
            cluster: crate::cluster::Cluster::new(),
            pending: std::sync::Mutex::new(None),
        })
    }

    /// Marks the instance as not ready while `what` (e.g. `"startup functions"`) runs:
    /// `/health/readiness` answers 503 with it until `set_pending(None)`.
    pub fn set_pending(&self, what: Option<String>) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }

    /// What keeps the instance from being ready, if anything ([`Manager::set_pending`]).
    pub fn pending(&self) -> Option<String> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The manager's client id, `manager-<server_id>`.
    pub fn manager_id(&self) -> &str {
        &self.manager_id
    }

    /// `"*/<manager_id>"`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Calls running in the manager now (bounded by `Limits::manager_calls_total`).
    pub fn calls_running(&self) -> usize {
        self.calls.running()
    }

    /// `(uploads open, bytes held)` in the `message_cache` by the client at `addr`.
    pub fn cache_usage(&self, addr: &str) -> (usize, usize) {
        self.cache.usage_of(addr)
    }

    /// The store the domains write through.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Handles one stamped frame addressed to the manager. Never blocks, and runs on the
    /// sender's reader task, so it reads the header only (`from`, `session`, `method`):
    ///
    /// * a reply (`<session>.resolve|reject|heartbeat`) to a call the manager is not
    ///   waiting on is dropped undecoded;
    /// * a call takes one of the sender's `manager_calls_per_client` slots and one of the
    ///   `manager_calls_total` ones, or is refused at once with a reject naming the limit
    ///   (backpressure, never an unbounded queue);
    /// * the whole frame is decoded and the call run on its own task, holding its slots
    ///   until its reply is sent.
    pub fn handle_frame(self: &Arc<Self>, frame: Bytes) {
        let Ok(view) = HeaderView::parse(&frame) else {
            tracing::debug!("undecodable frame for the manager");
            return;
        };
        let method = view.method(&frame).unwrap_or_default();
        if let Some((session, name)) = method.rsplit_once('.') {
            let reply = matches!(name, "resolve" | "reject" | "heartbeat");
            if reply && !method.starts_with("services.") && !self.driver.is_pending(session) {
                return;
            }
        }
        let header = rmpv::decode::read_value(&mut &frame[..view.header_len()]).ok();
        let from = header
            .as_ref()
            .and_then(|h| value::get_str(h, "from"))
            .unwrap_or_default()
            .to_owned();
        let slot = match self.calls.acquire(&from) {
            Ok(slot) => slot,
            Err(limit) => {
                let session = view.session(&frame).unwrap_or_default();
                self.refuse_call(&from, method, session, &limit);
                return;
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            match Message::decode(&frame) {
                Ok(m) => me.handle_message(m, slot).await,
                Err(e) => tracing::debug!(error = %e, "undecodable frame for the manager"),
            }
        });
    }

    /// Tells `from` that its call `method` was refused by the manager's call limits.
    fn refuse_call(&self, from: &str, method: &str, session: &str, limit: &ManagerError) {
        tracing::debug!(caller = %from, %method, "manager call refused: {limit}");
        if session.is_empty() || from.is_empty() {
            return;
        }
        let header = map([
            ("type", "method".into()),
            ("from", self.addr.as_str().into()),
            ("to", from.into()),
            ("method", format!("{session}.reject").into()),
        ]);
        let message = format!("{}; retry when earlier calls have finished", limit.wire());
        let extra = map([("args", Value::Array(vec![value::error(&message)]))]);
        self.router
            .deliver(from, Bytes::from(encode_frame(&header, Some(&extra))));
    }

    /// Runs a decoded message holding `slot` (one of its sender's call slots) until done.
    fn handle_message(
        self: &Arc<Self>,
        m: Message,
        slot: calls::CallSlot,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Replies and heartbeats of the manager's own calls are settled inside the
            // peer; calls into the manager come back to be run here, holding the slot.
            let (transmits, incoming) = self.driver.handle_message(m);
            for t in transmits {
                self.router.deliver(&t.to, Bytes::from(t.frame));
            }
            for inc in incoming {
                self.clone().answer(inc).await;
            }
            drop(slot);
        })
    }

    /// Runs an incoming call and sends its reply. While it runs, the peer heartbeats the
    /// caller at the interval the caller asked for (§3.4).
    async fn answer(self: Arc<Self>, inc: driver::Incoming) {
        let call = &inc.call;
        let started = std::time::Instant::now();
        let result = match Ctx::from_call(call) {
            Ok(ctx) => self.dispatch(&ctx, call).await,
            Err(e) => {
                tracing::warn!(method = %call.method, caller = %call.from, error = %e, "manager call refused");
                Err(e)
            }
        };
        match &result {
            Err(e) => {
                tracing::debug!(method = %call.method, caller = %call.from, error = %e, "manager call failed");
            }
            Ok(_) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::trace!(method = %call.method, caller = %call.from, ms, "manager call answered");
            }
        }
        for t in self.driver.respond(inc.id, result.map_err(|e| e.wire())) {
            self.send_reply(call, t).await;
        }
    }

    /// Sends the reply frame `t` of `call`: whole, or through the caller's
    /// `message_cache` when it is large.
    async fn send_reply(&self, call: &Call, t: rhizo_protocol::peer::Transmit) {
        let (to, frame) = (t.to, t.frame);
        if frame.len() <= chunks::WHOLE_FRAME_LIMIT {
            self.router.deliver(&to, Bytes::from(frame));
            return;
        }
        // A large result goes through the caller's message_cache, keyed by the session
        // the caller waits on (its timer restarts per chunk); nested sessions ("a.b") are
        // not top-level entries on the client, so they get a fresh key (§5.1).
        let (key, heartbeat) = match call.session.as_deref() {
            Some(s) if !s.is_empty() && !s.contains('.') => (s.to_owned(), true),
            _ => (format!("mgr{}", random_string(16)), false),
        };
        tracing::debug!(method = %call.method, to = %to, bytes = frame.len(), "large result: sending in chunks");
        let ws = to.split_once('/').map(|(w, _)| w).unwrap_or_default();
        let caller = (ws, &self.root_user);
        if let Err(e) = self
            .deliver_large(&to, frame, &key, heartbeat, caller)
            .await
        {
            let failed =
                ManagerError::Internal(format!("the result could not be delivered in chunks: {e}"));
            if let Some(t) = rhizo_protocol::peer::reply(call, &self.addr, Err(failed.wire())) {
                self.router.deliver(&t.to, Bytes::from(t.frame));
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, ctx: &Ctx, call: &Call) -> ManagerResult<Value> {
        let m = call.method.as_str();
        if let Some(name) = m.strip_prefix("services.built-in.message_cache.") {
            return self.cache.call(self, ctx, name, call);
        }
        if let Some(name) = m.strip_prefix("services.built-in.") {
            return self.call_built_in(name, call);
        }
        if let Some(name) = m.strip_prefix("services.default.") {
            return self.call_default(ctx, name, call).await;
        }
        if let Some(call_service) = self.services.dispatch(ctx, m, call) {
            return call_service.await;
        }
        let callback = self.callbacks.get(m).map(|c| c.value().clone());
        if let Some((owner, f)) = callback {
            // Only the peer the callback was handed to may call it (like session
            // callbacks in hypha-rpc, §3.7).
            if owner != ctx.from {
                return Err(ManagerError::Permission(format!(
                    "{} may not call {m}",
                    ctx.from
                )));
            }
            return f(call.clone()).await;
        }
        Err(ManagerError::MethodNotFound(m.to_owned()))
    }

    /// The service object of a control-plane service named by `service_id`:
    /// `<workspace>/<id>` or `<workspace>/<manager_id>:<id>` (what the object's own `id`
    /// says) where `<workspace>` is the service's ([`ControlService::workspace`]), if one
    /// is registered there.
    pub(crate) fn control_service_object(&self, service_id: &str) -> Option<Value> {
        let (ws, rest) = service_id.split_once('/')?;
        let id = match rest.split_once(':') {
            Some((cid, id)) if cid == self.manager_id || cid == "*" => id,
            Some(_) => return None,
            None => rest,
        };
        if self.services.get(id)?.workspace() != ws {
            return None;
        }
        self.services
            .service_object(id, &self.addr, &self.config.public_base_url)
    }

    /// [`Manager::control_service_object`] for the caller `ctx`: a protected service
    /// ([`ControlService::visibility`]) only for callers who may read its workspace.
    ///
    /// Errors: [`ManagerError::Permission`] (`Permission denied for service: …`).
    pub(crate) fn control_service_object_for(
        &self,
        ctx: &Ctx,
        service_id: &str,
    ) -> ManagerResult<Option<Value>> {
        let Some(svc) = self.control_service_object(service_id) else {
            return Ok(None);
        };
        let cfg = value::get(&svc, "config");
        let protected = cfg.and_then(|c| value::get_str(c, "visibility")) == Some("protected");
        let ws = cfg
            .and_then(|c| value::get_str(c, "workspace"))
            .unwrap_or("public");
        if protected && !ctx.user.can(ws, Permission::Read) {
            return Err(ManagerError::Permission(format!(
                "Permission denied for service: {service_id}"
            )));
        }
        Ok(Some(svc))
    }

    /// The control-plane services this manager exposes.
    pub fn services(&self) -> &ServiceSet {
        &self.services
    }

    /// Calls `method` on client `to` (`"<ws>/<cid>"`) with a compact promise and waits for
    /// the reply; every heartbeat restarts the `timeout`. The call carries `ws` = the
    /// target's workspace and the root user, as the reference's manager does (§2.3).
    ///
    /// Errors: [`ManagerError::Remote`] with the callee's reject text;
    /// [`ManagerError::Disconnected`] when the peer is not connected (`Peer … is not
    /// connected`) or leaves meanwhile (`Client disconnected: …`);
    /// [`ManagerError::Timeout`] (`Method call timed out: …`).
    pub async fn call_client(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> ManagerResult<Value> {
        let ws = to.split_once('/').map(|(w, _)| w).unwrap_or_default();
        self.call_client_as(to, method, args, None, (ws, &self.root_user), timeout)
            .await
    }

    /// [`Manager::call_client`] on behalf of a caller: the callee sees `caller.0` as the
    /// calling workspace and `caller.1` (an encoded user record) as the user, so its
    /// visibility checks and `context` apply to that caller (HTTP calls, §8.2).
    ///
    /// A client connected to another node of the cluster is called by that node's manager
    /// ([`Manager::call_remote`]): hypha-rpc accepts protected calls only from its own
    /// node's manager.
    pub async fn call_client_as(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        caller: (&str, &Value),
        timeout: Duration,
    ) -> ManagerResult<Value> {
        if let Some(node) = self.node_of_client(to) {
            return self
                .call_remote(&node, to, method, args, kwargs, caller, timeout)
                .await;
        }
        self.call_client_here(to, method, args, kwargs, caller, timeout)
            .await
    }

    /// The other node client `to` (`ws/cid`) is connected to; `None` when it is
    /// connected here, unknown, or this server is not clustered.
    fn node_of_client(&self, to: &str) -> Option<String> {
        if self.router.node_id().is_empty() || self.router.client(to).is_some() {
            return None;
        }
        let (ws, cid) = to.split_once('/')?;
        let pattern = crate::registry::Pattern {
            ws: Some(ws),
            cid: Some(cid),
            name: Some("built-in"),
            ..Default::default()
        };
        let record = self.registry.find_all(&pattern).into_iter().next()?;
        self.registry.remote_node(&record)
    }

    /// [`Manager::call_client_as`] from this node's manager, wherever the client is.
    pub(crate) async fn call_client_here(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        caller: (&str, &Value),
        timeout: Duration,
    ) -> ManagerResult<Value> {
        let sent = self
            .send_call(to, method, args, kwargs, caller, timeout)
            .await?;
        self.wait_reply(sent).await
    }

    /// The first half of [`Manager::call_client_as`]: sends the call and registers it as
    /// pending. Errors: the call could not be delivered (the peer is not connected, or an
    /// upload into its `message_cache` failed).
    async fn send_call(
        &self,
        to: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        caller: (&str, &Value),
        timeout: Duration,
    ) -> ManagerResult<SentCall> {
        let req = CallRequest::new(to, method, args, timeout)
            .with_kwargs(kwargs)
            .on_behalf_of(caller.0, caller.1.clone());
        let (guard, t) = self.driver.call(req);
        let frame = t.frame;
        if frame.len() <= chunks::WHOLE_FRAME_LIMIT {
            self.deliver_whole(to, frame)?;
        } else {
            // Large arguments (e.g. an HTTP body) go through the callee's message_cache.
            let key = format!("mgr{}", random_string(16));
            Box::pin(self.deliver_large(to, frame, &key, false, caller)).await?;
        }
        // On an error above, dropping the guard forgot the call.
        Ok(SentCall { guard })
    }

    /// The second half of [`Manager::call_client_as`]: waits for the reply to `sent`; every
    /// heartbeat restarts the timeout. Errors: the callee's reject, the callee leaving
    /// meanwhile, or the timeout.
    async fn wait_reply(&self, sent: SentCall) -> ManagerResult<Value> {
        sent.guard.wait().await
    }

    /// Hands out a callback: returns the encoded method (`_rpromise: "*"`) that `owner`
    /// (`"<ws>/<cid>"`) may call as `<session>.<name>` on the manager, until
    /// [`Manager::drop_callbacks`] removes the session.
    pub fn callback(&self, session: &str, name: &str, owner: &str, f: Callback) -> Value {
        let path = format!("{session}.{name}");
        self.callbacks.insert(path.clone(), (owner.to_owned(), f));
        method(
            &self.addr,
            &path,
            RPromise::Compact,
            name,
            "",
            &self.config.public_base_url,
        )
    }

    /// Removes every callback of `session`.
    pub fn drop_callbacks(&self, session: &str) {
        let prefix = format!("{session}.");
        self.callbacks.retain(|k, _| !k.starts_with(&prefix));
    }

    /// A client left: fail the manager's calls waiting on it, drop its cached messages.
    pub fn fail_calls_to(&self, addr: &str) {
        self.driver.fail_calls_to(addr);
        self.cache.drop_owner(addr);
        self.callbacks.retain(|_, (owner, _)| owner != addr);
    }

    /// The encoded method `services.<service>.<name>` of the manager, described by `doc`.
    fn encoded(&self, service: &str, name: &str, doc: &str) -> Value {
        method(
            &self.addr,
            &format!("services.{service}.{name}"),
            RPromise::Compact,
            name,
            doc,
            &self.config.public_base_url,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::message::Promise;

    fn call_with_user(user: Value) -> Call {
        Call {
            method: "services.default.echo".into(),
            from: "ws-a/c1".into(),
            ws: "ws-a".into(),
            user,
            session: Some("s1".into()),
            args: vec![],
            kwargs: vec![],
            promise: Promise::Compact { interval: None },
        }
    }

    #[test]
    fn a_call_whose_user_record_does_not_parse_is_refused() {
        for bad in [Value::Nil, Value::from("root"), map([("id", 5.into())])] {
            let err = Ctx::from_call(&call_with_user(bad.clone())).unwrap_err();
            assert!(matches!(err, ManagerError::Permission(_)), "{bad}: {err}");
        }
        let mut anon = UserInfo::root();
        anon.id = "anonymouz-x".into();
        anon.roles = vec!["anonymous".into()];
        let json = serde_json::to_value(&anon).unwrap();
        let ctx = Ctx::from_call(&call_with_user(value::from_json(&json))).unwrap();
        assert_eq!(ctx.user.id, "anonymouz-x");
        assert_eq!(ctx.cid, "c1");
        let mut no_from = call_with_user(value::from_json(&json));
        no_from.from.clear();
        assert!(Ctx::from_call(&no_from).is_err());
    }
}
