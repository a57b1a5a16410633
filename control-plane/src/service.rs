//! The interface every further control-plane service implements (DESIGN.md "Layout":
//! `control-plane/artifacts/`, `control-plane/apps/`, … one crate each), so that it is
//! exposed by the manager peer like the reference's server services
//! (`public/artifact-manager`, `public/server-apps`) and can add HTTP routes of its own.
//!
//! A [`ControlService`] declares its functions ([`FunctionSpec`]: name, parameters,
//! doc) and answers calls to them. The manager registers it in the `public` workspace as
//! provided by the manager itself; `get_service("public/<id>")` then returns a service
//! object whose functions are methods `services.<id>.<function>` of `*/<manager_id>`, and
//! calls to them arrive in [`ControlService::call`] with the caller's trusted [`Ctx`] and
//! arguments already bound by name (protocol.md §3.5). Errors are [`ManagerError`]s,
//! mapped to reject texts and HTTP statuses in one place (`error.rs`).

use crate::error::ManagerResult;
use crate::manager::{Callback, Ctx, Manager};
use crate::registry::{Pattern, RegistryEvent, ServiceRecord};
use crate::workspaces::WorkspaceInfo;
use crate::ManagerError;
use rhizo_protocol::message::{bind, Call, Param};
use rhizo_protocol::user::UserInfo;
use rhizo_protocol::value::{self, method, RPromise};
use rmpv::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as [`ControlService::call`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One function of a control-plane service.
#[derive(Debug, Clone, Copy)]
pub struct FunctionSpec {
    /// Name as clients call it, e.g. `"create"`.
    pub name: &'static str,
    /// Parameters in declared order; `(name, has_default)` (missing optional ones arrive
    /// as nil).
    pub params: &'static [Param],
    /// One-line description, shown in the service object.
    pub doc: &'static str,
}

/// A service the control plane exposes through the manager peer.
pub trait ControlService: Send + Sync + 'static {
    /// Service id inside `public`, e.g. `"artifact-manager"`. Must not contain `:` or `/`.
    fn id(&self) -> &'static str;

    /// Display name, e.g. `"Artifact Manager"`.
    fn name(&self) -> &str;

    /// Free text description.
    fn description(&self) -> &str {
        ""
    }

    /// The service `type` field (default `"generic"`).
    fn service_type(&self) -> &str {
        "generic"
    }

    /// The workspace it is listed in (default `"public"`; admin utilities:
    /// `"ws-user-root"`). `get_service("<workspace>/<id>")` finds it there only.
    fn workspace(&self) -> &'static str {
        "public"
    }

    /// `config.visibility`: `"public"` (default) or `"protected"` — then only callers
    /// who may read [`ControlService::workspace`] get the service object; the service
    /// still checks every call itself.
    fn visibility(&self) -> &'static str {
        "public"
    }

    /// Its functions.
    fn functions(&self) -> &'static [FunctionSpec];

    /// Runs `function` with `args` bound to its [`FunctionSpec::params`] (one value per
    /// parameter) for the caller `ctx`.
    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>>;

    /// HTTP routes this service adds (merged into the control plane's routes), if any.
    /// Called once, after [`ControlService::attach`].
    fn routes(&self) -> Option<axum::Router> {
        None
    }

    /// Hands the service what it needs of the running control plane (the caller of an
    /// HTTP request, workspaces, URLs, key material): called once when the manager is
    /// built, before [`ControlService::routes`] and before any call arrives.
    fn attach(&self, _host: Arc<dyn ServiceHost>) {}

    /// Prometheus text lines (`# HELP`, `# TYPE` and samples) this service adds to
    /// `GET /metrics`; none by default.
    fn metrics(&self) -> String {
        String::new()
    }

    /// A `get_service(service_id)` found no live service: if this service can bring one
    /// up (the server-apps controller lazily starts the app of `svc@app_id`,
    /// apps-workers.md §1.7), the future does so for `ctx` and answers the full id
    /// (`ws/cid:svc`) of the service to fetch instead. `None` (the default): not ours.
    fn resolve_missing<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _service_id: &'a str,
    ) -> Option<BoxFuture<'a, ManagerResult<String>>> {
        None
    }

    /// The server is shutting down (called once, before its connections close; bounded
    /// by the caller): give up what other nodes should take over at once rather than
    /// when it expires (the autoscaler's leader lease). Nothing by default.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// A `get_service(service_id)` without `config.mode` matched several live services:
    /// if `service_id` names something this service knows a default selection mode for
    /// (the server-apps controller: the app's manifest `service_selection_mode` of
    /// `svc@app_id`, apps-workers.md §5), the future answers that mode (`"random"`,
    /// `"first"`, …), or `None` when the app sets none. `None` (the default): not ours.
    fn selection_mode<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _service_id: &'a str,
    ) -> Option<BoxFuture<'a, Option<String>>> {
        None
    }
}

/// Calls `function` of `service` with arguments given by name (missing optional ones are
/// nil), as another control-plane service does in-process (the server-apps controller
/// keeps its apps through the artifact manager this way).
///
/// Errors: an unknown function or argument name ([`ManagerError::MethodNotFound`],
/// [`ManagerError::BadCall`]), a required argument missing, or the service's own error.
pub async fn call_by_name(
    service: &dyn ControlService,
    ctx: &Ctx,
    function: &str,
    kwargs: Vec<(&str, Value)>,
) -> ManagerResult<Value> {
    let spec = service
        .functions()
        .iter()
        .find(|f| f.name == function)
        .ok_or_else(|| ManagerError::MethodNotFound(format!("{}.{function}", service.id())))?;
    let mut args = vec![Value::Nil; spec.params.len()];
    for (name, v) in kwargs {
        let i = spec
            .params
            .iter()
            .position(|(p, _)| *p == name)
            .ok_or_else(|| {
                ManagerError::BadCall(format!("{function}() got an unexpected argument {name}"))
            })?;
        args[i] = v;
    }
    for ((name, optional), v) in spec.params.iter().zip(&args) {
        if !optional && v.is_nil() {
            return Err(ManagerError::BadCall(format!(
                "{function}() missing required argument {name}"
            )));
        }
    }
    service.call(ctx, function, args).await
}

/// What the running control plane offers a [`ControlService`] (see
/// [`ControlService::attach`]). It holds the manager weakly: after the manager is
/// dropped, [`ServiceHost::caller`] fails and [`ServiceHost::workspace`] answers `None`.
pub trait ServiceHost: Send + Sync + 'static {
    /// The caller of an HTTP request to a route under workspace `url_ws`, as the
    /// service routes identify it (workspace-api.md §1.6–1.7, §8.1): `token` (from
    /// `Authorization: Bearer`, the `access_token` cookie or `?token=`, see
    /// [`crate::http::request_token`]) verified, or the anonymous HTTP user
    /// `anonymouz-http` of `ws-anonymous` when there is none.
    ///
    /// Errors: a token that does not verify (expired, forged, revoked) is a
    /// [`ManagerError::Permission`]; it never falls back to anonymous.
    fn caller(&self, token: Option<&str>, url_ws: &str) -> ManagerResult<Ctx>;

    /// The loaded workspace `id` (every persistent one is loaded), if any.
    fn workspace(&self, id: &str) -> Option<WorkspaceInfo>;

    /// The server's public base URL (`--public-base-url`, or the local one), no
    /// trailing `/`; URLs handed to clients start with it.
    fn public_base_url(&self) -> String;

    /// The base URL on which this instance is reachable locally, no trailing `/`.
    fn local_base_url(&self) -> String;

    /// 32 bytes of key material for `purpose` (e.g. `"artifact-url"`), derived from the
    /// server's JWT secret: every instance of a deployment derives the same key, and no
    /// two purposes share one.
    fn derive_key(&self, purpose: &str) -> [u8; 32];

    /// The manager's address, `"*/<manager_id>"`.
    fn manager_addr(&self) -> String {
        String::new()
    }

    /// The ids of the persistent workspaces (every one is loaded), e.g. to start their
    /// daemon apps.
    fn persistent_workspaces(&self) -> Vec<String> {
        Vec::new()
    }

    /// Another control-plane service of this server, by id (e.g. `"artifact-manager"`),
    /// to call in-process with [`call_by_name`].
    fn service(&self, _id: &str) -> Option<Arc<dyn ControlService>> {
        None
    }

    /// Service records of every node matching `pattern` (e.g. every
    /// `server-app-worker` of a workspace), in key order.
    fn find_services(&self, _pattern: &Pattern<'_>) -> Vec<ServiceRecord> {
        Vec::new()
    }

    /// This node's registry changes from now on (see [`crate::registry::Registry::watch`]);
    /// `None` once the server is shutting down.
    fn watch_registry(&self) -> Option<tokio::sync::broadcast::Receiver<RegistryEvent>> {
        None
    }

    /// The router's view of the live client `addr` (`"ws/cid"`) on this node, with its
    /// traffic counter, if connected here.
    fn client(&self, _addr: &str) -> Option<rhizo_interface::ClientPresence> {
        None
    }

    /// `get_service(service_id)` for the caller `ctx`, exactly as a client's call resolves
    /// it (visibility, selection among providers, the provider's live service object),
    /// waiting at most `timeout` for the provider.
    fn get_service<'a>(
        &'a self,
        ctx: &'a Ctx,
        service_id: &'a str,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        let _ = (ctx, timeout);
        Box::pin(async move {
            Err(ManagerError::NotFound(format!(
                "Service not found: {service_id}"
            )))
        })
    }

    /// Calls `method` (a member path such as `services.<sid>.start`, or a callback's
    /// `_rmethod`) on the client `to` on behalf of `ws`/`user` (what the callee's
    /// `context` and visibility checks see), waiting `timeout`, which every heartbeat
    /// restarts. Errors as [`Manager::call_client`].
    #[allow(clippy::too_many_arguments)]
    fn call_client<'a>(
        &'a self,
        to: &'a str,
        method: &'a str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        ws: &'a str,
        user: &'a UserInfo,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        let _ = (method, args, kwargs, ws, user, timeout);
        Box::pin(async move {
            Err(ManagerError::Disconnected(format!(
                "Peer {to} is not connected"
            )))
        })
    }

    /// Hands out a callback that `owner` (`"ws/cid"`) may call on the manager as
    /// `<session>.<name>`: the encoded method to pass in a call's arguments (see
    /// [`Manager::callback`]). Removed by [`ServiceHost::drop_callbacks`] or when the
    /// owner leaves.
    fn callback(&self, _session: &str, _name: &str, _owner: &str, _f: Callback) -> Value {
        Value::Nil
    }

    /// Removes every callback of `session`.
    fn drop_callbacks(&self, _session: &str) {}

    /// A token for `user`, valid `expires_in` seconds, signed with the server's key.
    fn sign_token(&self, _user: &UserInfo, _expires_in: u64) -> String {
        String::new()
    }

    /// The manager itself, for services that administer the server as a whole (the
    /// admin utilities, workspace-api.md §9.3); `None` once it is gone (or in hosts made
    /// for tests). Other services use the narrower methods above.
    fn manager(&self) -> Option<Arc<Manager>> {
        None
    }
}

/// The [`ServiceHost`] of a [`Manager`], holding it weakly (the manager owns the
/// services, which own their host).
pub(crate) struct ManagerHost(pub(crate) std::sync::Weak<Manager>);

impl ServiceHost for ManagerHost {
    fn manager(&self) -> Option<Arc<Manager>> {
        self.0.upgrade()
    }

    fn caller(&self, token: Option<&str>, url_ws: &str) -> ManagerResult<Ctx> {
        let m = self
            .0
            .upgrade()
            .ok_or_else(|| ManagerError::Internal("the server is shutting down".into()))?;
        let user = match token {
            None => crate::http::anonymous_http_user(),
            Some(t) => m
                .tokens
                .verify(t)
                .map_err(|e| ManagerError::Permission(e.to_string()))?,
        };
        Ok(m.http_ctx(user, url_ws))
    }

    fn workspace(&self, id: &str) -> Option<WorkspaceInfo> {
        self.0.upgrade()?.workspaces.get(id)
    }

    fn public_base_url(&self) -> String {
        self.0
            .upgrade()
            .map(|m| m.config.public_base_url.trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn local_base_url(&self) -> String {
        self.0
            .upgrade()
            .map(|m| m.config.local_base_url.trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let secret = self
            .0
            .upgrade()
            .map(|m| m.config.jwt_secret.clone())
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"rhizo-service-key\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    fn manager_addr(&self) -> String {
        self.0
            .upgrade()
            .map(|m| m.addr().to_owned())
            .unwrap_or_default()
    }

    fn service(&self, id: &str) -> Option<Arc<dyn ControlService>> {
        self.0.upgrade()?.services().get(id).cloned()
    }

    fn persistent_workspaces(&self) -> Vec<String> {
        let Some(m) = self.0.upgrade() else {
            return Vec::new();
        };
        m.workspaces
            .all()
            .into_iter()
            .filter(|w| w.persistent)
            .map(|w| w.id)
            .collect()
    }

    fn find_services(&self, pattern: &Pattern<'_>) -> Vec<ServiceRecord> {
        self.0
            .upgrade()
            .map(|m| m.registry.find_all(pattern))
            .unwrap_or_default()
    }

    fn watch_registry(&self) -> Option<tokio::sync::broadcast::Receiver<RegistryEvent>> {
        Some(self.0.upgrade()?.registry.watch())
    }

    fn client(&self, addr: &str) -> Option<rhizo_interface::ClientPresence> {
        self.0.upgrade()?.router.client(addr)
    }

    fn get_service<'a>(
        &'a self,
        ctx: &'a Ctx,
        service_id: &'a str,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            let m = self
                .0
                .upgrade()
                .ok_or_else(|| ManagerError::Internal("the server is shutting down".into()))?;
            let config = value::map([("timeout", timeout.as_secs_f64().into())]);
            m.get_service_for(ctx, service_id, &config).await
        })
    }

    fn call_client<'a>(
        &'a self,
        to: &'a str,
        method: &'a str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        ws: &'a str,
        user: &'a UserInfo,
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            let m = self
                .0
                .upgrade()
                .ok_or_else(|| ManagerError::Internal("the server is shutting down".into()))?;
            let user =
                value::from_json(&serde_json::to_value(user).expect("user record serialises"));
            m.call_client_as(to, method, args, kwargs, (ws, &user), timeout)
                .await
        })
    }

    fn callback(&self, session: &str, name: &str, owner: &str, f: Callback) -> Value {
        match self.0.upgrade() {
            Some(m) => m.callback(session, name, owner, f),
            None => Value::Nil,
        }
    }

    fn drop_callbacks(&self, session: &str) {
        if let Some(m) = self.0.upgrade() {
            m.drop_callbacks(session);
        }
    }

    fn sign_token(&self, user: &UserInfo, expires_in: u64) -> String {
        self.0
            .upgrade()
            .map(|m| m.tokens.sign(user, expires_in))
            .unwrap_or_default()
    }
}

/// The control-plane services a manager exposes, by id.
#[derive(Clone, Default)]
pub struct ServiceSet {
    by_id: BTreeMap<&'static str, Arc<dyn ControlService>>,
}

impl std::fmt::Debug for ServiceSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_id.keys()).finish()
    }
}

// === impl ServiceSet ===

impl ServiceSet {
    /// Adds `service`.
    ///
    /// Errors: its id is empty, contains `:` or `/`, or is taken.
    pub fn add(&mut self, service: Arc<dyn ControlService>) -> Result<(), String> {
        let id = service.id();
        if id.is_empty() || id.contains([':', '/']) {
            return Err(format!("invalid control-plane service id {id:?}"));
        }
        if self.by_id.contains_key(id) {
            return Err(format!("control-plane service {id} added twice"));
        }
        self.by_id.insert(id, service);
        Ok(())
    }

    /// The service `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn ControlService>> {
        self.by_id.get(id)
    }

    /// Every service, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ControlService>> {
        self.by_id.values()
    }

    /// The service object of `id` as `get_service` returns it: the record's fields plus
    /// one encoded method per function, targeting `manager_addr` (`"*/<manager_id>"`).
    pub fn service_object(&self, id: &str, manager_addr: &str, public_url: &str) -> Option<Value> {
        let s = self.get(id)?;
        let manager_id = manager_addr.trim_start_matches("*/");
        let ws = s.workspace();
        let mut entries = vec![
            (
                Value::from("id"),
                Value::from(format!("{ws}/{manager_id}:{id}")),
            ),
            (Value::from("name"), Value::from(s.name())),
            (Value::from("description"), Value::from(s.description())),
            (Value::from("type"), Value::from(s.service_type())),
            (
                Value::from("config"),
                value::map([
                    ("visibility", s.visibility().into()),
                    ("require_context", true.into()),
                    ("workspace", ws.into()),
                ]),
            ),
        ];
        for f in s.functions() {
            let m = method(
                manager_addr,
                &format!("services.{id}.{}", f.name),
                RPromise::Compact,
                f.name,
                f.doc,
                public_url,
            );
            entries.push((Value::from(f.name), m));
        }
        Some(Value::Map(entries))
    }

    /// Runs the call `services.<id>.<function>` if `method` names a function of one of
    /// these services; `None` if it does not name a service here.
    ///
    /// Errors (inside the future): an unknown function (`MethodNotFound`), arguments that
    /// do not bind (`BadCall`), or the service's own error.
    pub fn dispatch<'a>(
        &'a self,
        ctx: &'a Ctx,
        method: &'a str,
        call: &'a Call,
    ) -> Option<BoxFuture<'a, ManagerResult<Value>>> {
        let rest = method.strip_prefix("services.")?;
        let (id, function) = rest.split_once('.')?;
        let service = self.get(id)?;
        Some(Box::pin(async move {
            let spec = service
                .functions()
                .iter()
                .find(|f| f.name == function)
                .ok_or_else(|| ManagerError::MethodNotFound(method.to_owned()))?;
            let args = bind(function, spec.params, call).map_err(ManagerError::bad_call)?;
            service.call(ctx, function, args).await
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::message::Promise;
    use rhizo_protocol::user::UserInfo;

    struct Counter;

    impl ControlService for Counter {
        fn id(&self) -> &'static str {
            "counter"
        }
        fn name(&self) -> &str {
            "Counter"
        }
        fn functions(&self) -> &'static [FunctionSpec] {
            &[FunctionSpec {
                name: "add",
                params: &[("a", false), ("b", true)],
                doc: "Adds b (default 1) to a.",
            }]
        }
        fn call<'a>(
            &'a self,
            ctx: &'a Ctx,
            function: &'a str,
            args: Vec<Value>,
        ) -> BoxFuture<'a, ManagerResult<Value>> {
            Box::pin(async move {
                assert_eq!(function, "add");
                if ctx.user.is_anonymous {
                    return Err(ManagerError::Permission(
                        "anonymous callers may not add".into(),
                    ));
                }
                let a = args[0]
                    .as_i64()
                    .ok_or_else(|| ManagerError::InvalidArgument("a must be an integer".into()))?;
                Ok(Value::from(a + args[1].as_i64().unwrap_or(1)))
            })
        }
    }

    fn ctx(anonymous: bool) -> Ctx {
        let mut user = UserInfo::root();
        user.is_anonymous = anonymous;
        Ctx {
            ws: "ws-a".into(),
            from: "ws-a/c1".into(),
            cid: "c1".into(),
            user,
        }
    }

    fn call(method: &str, args: Vec<Value>) -> Call {
        Call {
            method: method.into(),
            from: "ws-a/c1".into(),
            ws: "ws-a".into(),
            user: Value::Nil,
            session: Some("s".into()),
            args,
            kwargs: vec![],
            promise: Promise::Compact { interval: None },
        }
    }

    fn set() -> ServiceSet {
        let mut s = ServiceSet::default();
        s.add(Arc::new(Counter)).unwrap();
        s
    }

    #[tokio::test]
    async fn in_process_calls_bind_arguments_by_name() {
        let c = ctx(false);
        let v = call_by_name(&Counter, &c, "add", vec![("a", 2.into()), ("b", 5.into())]).await;
        assert_eq!(v, Ok(Value::from(7)));
        let v = call_by_name(&Counter, &c, "add", vec![("a", 2.into())]).await;
        assert_eq!(v, Ok(Value::from(3)), "the optional one is nil");
        let missing = call_by_name(&Counter, &c, "add", vec![]).await;
        assert!(matches!(missing, Err(ManagerError::BadCall(m)) if m.contains("a")));
        let unknown = call_by_name(&Counter, &c, "add", vec![("z", 1.into())]).await;
        assert!(matches!(unknown, Err(ManagerError::BadCall(m)) if m.contains("z")));
        let nofn = call_by_name(&Counter, &c, "sub", vec![]).await;
        assert!(matches!(nofn, Err(ManagerError::MethodNotFound(_))));
    }

    #[test]
    fn ids_are_checked_once() {
        let mut s = set();
        assert!(s.add(Arc::new(Counter)).is_err(), "twice");
    }

    #[test]
    fn the_service_object_targets_the_manager() {
        let obj = set()
            .service_object("counter", "*/manager-x", "http://h")
            .unwrap();
        assert_eq!(value::get_str(&obj, "id"), Some("public/manager-x:counter"));
        let add = value::get(&obj, "add").unwrap();
        assert_eq!(value::get_str(add, "_rtarget"), Some("*/manager-x"));
        assert_eq!(
            value::get_str(add, "_rmethod"),
            Some("services.counter.add")
        );
        assert!(set().service_object("nope", "*/m", "http://h").is_none());
    }

    #[tokio::test]
    async fn calls_are_bound_and_dispatched() {
        let s = set();
        let c = ctx(false);
        let ok = call("services.counter.add", vec![2.into()]);
        assert_eq!(
            s.dispatch(&c, &ok.method, &ok).unwrap().await,
            Ok(Value::from(3))
        );
        let unknown = call("services.counter.sub", vec![]);
        assert!(matches!(
            s.dispatch(&c, &unknown.method, &unknown).unwrap().await,
            Err(ManagerError::MethodNotFound(_))
        ));
        let too_many = call("services.counter.add", vec![1.into(), 2.into(), 3.into()]);
        let err = s
            .dispatch(&c, &too_many.method, &too_many)
            .unwrap()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ManagerError::BadCall(m) if !m.starts_with("TypeError")),
            "{err:?}"
        );
        assert!(err.wire().starts_with("TypeError: add()"), "{}", err.wire());
        let anon = ctx(true);
        assert!(matches!(
            s.dispatch(&anon, &ok.method, &ok).unwrap().await,
            Err(ManagerError::Permission(_))
        ));
        assert!(s.dispatch(&c, "services.default.echo", &ok).is_none());
    }
}
