//! The `default` service of the manager: the workspace-manager methods
//! (protocol.md §4.3–4.7, workspace-api.md §5.1, §5.2, §5.4, §5.5).
//!
//! Errors are [`ManagerError`]s of the variant whose Python exception class the reference
//! raises (`PermissionError: …`, `KeyError: …`, `ValueError: …` on the wire), because
//! clients and test suites match on those words.

use super::{bind, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::events::{self, check_subscription};
use crate::names::readable_id;
use crate::registry::{Inserted, Pattern, ServiceRecord, Visibility};
use crate::tokens::TokenError;
use rhizo_protocol::message::{Call, Param};
use rhizo_protocol::token::{self};
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// Name, parameters (name, optional) and doc line of every method the `default` service
/// exposes.
pub(super) const METHODS: &[(&str, &[Param], &str)] = &[
    (
        "register_service",
        &[("service", false), ("config", true)],
        "Register a service.",
    ),
    (
        "unregister_service",
        &[("service_id", false)],
        "Unregister one of the caller's services.",
    ),
    (
        "get_service",
        &[("service_id", false), ("config", true)],
        "Get a service by id.",
    ),
    (
        "get_service_info",
        &[("service_id", false), ("config", true)],
        "Get a service record by id.",
    ),
    (
        "list_services",
        &[
            ("query", true),
            ("include_unlisted", true),
            ("include_app_services", true),
            ("prioritize_running_services", true),
        ],
        "List services.",
    ),
    (
        "list_clients",
        &[("workspace", true)],
        "List the clients of a workspace.",
    ),
    (
        "subscribe",
        &[("event_type", false)],
        "Subscribe the calling client to events.",
    ),
    (
        "unsubscribe",
        &[("event_type", false)],
        "Unsubscribe the calling client from events.",
    ),
    (
        "ping",
        &[("client_id", false), ("timeout", true)],
        "Ping a client.",
    ),
    ("echo", &[("data", false)], "Return the argument."),
    ("log", &[("msg", false)], "Log a message on the server."),
    (
        "generate_token",
        &[("config", true)],
        "Generate a token for a workspace.",
    ),
    (
        "parse_token",
        &[("token", false)],
        "Parse a token into a user record.",
    ),
    (
        "get_workspace_info",
        &[("workspace", true)],
        "Get a workspace record.",
    ),
    ("revoke_token", &[("token", false)], "Revoke a token."),
    (
        "cleanup",
        &[("workspace", true), ("timeout", true)],
        "Remove unresponsive clients, or an empty temporary workspace.",
    ),
    (
        "create_workspace",
        &[("config", false), ("overwrite", true)],
        "Create a workspace.",
    ),
    (
        "delete_workspace",
        &[("workspace", false)],
        "Delete a workspace.",
    ),
    (
        "list_workspaces",
        &[("match", true), ("offset", true), ("limit", true)],
        "List the workspaces the caller can read.",
    ),
    (
        "set_env",
        &[("key", false), ("value", true)],
        "Set (or, with null, remove) an environment variable.",
    ),
    (
        "get_env",
        &[("key", true)],
        "Get one environment variable or all.",
    ),
    ("check_status", &[], "Status of the caller's workspace."),
    (
        "get_summary",
        &[],
        "Clients and services of the caller's workspace.",
    ),
    (
        "bookmark",
        &[("item", false)],
        "Bookmark a workspace or service.",
    ),
    ("unbookmark", &[("item", false)], "Remove a bookmark."),
    (
        "register_service_type",
        &[("type_info", false)],
        "Register a service type.",
    ),
    (
        "get_service_type",
        &[("type_id", false)],
        "Get a service type.",
    ),
    (
        "list_service_types",
        &[("workspace", true)],
        "List service types.",
    ),
    (
        "search_services",
        &[
            ("query", true),
            ("filters", true),
            ("limit", true),
            ("offset", true),
            ("return_fields", true),
            ("order_by", true),
            ("pagination", true),
            ("include_unlisted", true),
        ],
        "Search services by text.",
    ),
    (
        "log_event",
        &[("event_type", false), ("data", true)],
        "Log an event.",
    ),
    (
        "get_events",
        &[
            ("event_type", true),
            ("start_time", true),
            ("end_time", true),
        ],
        "The caller's logged events.",
    ),
    (
        "get_event_stats",
        &[
            ("event_type", true),
            ("start_time", true),
            ("end_time", true),
        ],
        "Counts of the caller's logged events.",
    ),
];

/// Default time the manager waits for a provider's service object (GetServiceConfig).
const GET_SERVICE_TIMEOUT: f64 = 10.0;

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(|t| t.as_f64().or(t.as_i64().map(|i| i as f64)))
}

/// Renames map keys recursively to `camel` or `snake` case; keys starting with `_` and the
/// inside of encoded values (`_rtype` maps) are left alone.
fn convert_case(v: &Value, camel: bool) -> Value {
    match v {
        Value::Map(m) if value::get(v, "_rtype").is_none() => Value::Map(
            m.iter()
                .map(|(k, val)| {
                    let key = match k.as_str() {
                        Some(s) if !s.starts_with('_') => {
                            Value::from(if camel { to_camel(s) } else { to_snake(s) })
                        }
                        _ => k.clone(),
                    };
                    (key, convert_case(val, camel))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_uppercase() {
            out.push('_');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A parsed service id (workspace-api.md §2.2): `ws/cid:name@app`, any part possibly `*`.
struct ServiceId {
    ws: String,
    cid: String,
    name: String,
    app: Option<String>,
}

fn parse_service_id(ctx: &Ctx, id: &str) -> ManagerResult<ServiceId> {
    let (id, app) = match id.split_once('@') {
        Some((i, a)) => (i, Some(a.to_owned())),
        None => (id, None),
    };
    let (ws, rest) = match id.split_once('/') {
        Some((w, r)) => (w.to_owned(), r),
        None => (ctx.ws.clone(), id),
    };
    if rest.contains('/') {
        return Err(ManagerError::InvalidArgument(format!(
            "Invalid service id: {id}"
        )));
    }
    let (cid, name) = match rest.split_once(':') {
        Some((c, n)) => (c.to_owned(), n.to_owned()),
        None => ("*".to_owned(), rest.to_owned()),
    };
    if name.is_empty() {
        return Err(ManagerError::InvalidArgument(format!(
            "Invalid service id: {id}"
        )));
    }
    Ok(ServiceId { ws, cid, name, app })
}

// === impl Manager (default service) ===

impl Manager {
    pub(super) async fn call_default(
        self: &Arc<Self>,
        ctx: &Ctx,
        name: &str,
        call: &Call,
    ) -> ManagerResult<Value> {
        let (_, params, _) = METHODS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| ManagerError::MethodNotFound(format!("services.default.{name}")))?;
        let a = bind(name, params, call)?;
        match name {
            "register_service" => self.register_service(ctx, a[0].clone()),
            "unregister_service" => self.unregister_service(ctx, &a[0]),
            "get_service" => self.get_service(ctx, &a[0], &a[1]).await,
            "get_service_info" => self.get_service_info(ctx, &a[0], &a[1]),
            "list_services" => self.list_services(ctx, &a[0], a[1].as_bool().unwrap_or(false)),
            "list_clients" => self.list_clients(ctx, opt_str(&a[0])),
            "subscribe" | "unsubscribe" => self.subscribe(ctx, &a[0], name == "subscribe"),
            "ping" => Ok(self.ping(ctx, &a[0], num(Some(&a[1]))).await),
            "echo" => {
                ctx.require(&ctx.ws, Permission::ReadWrite)?;
                Ok(a[0].clone())
            }
            "log" => {
                ctx.require(&ctx.ws, Permission::ReadWrite)?;
                tracing::info!(client = %ctx.from, "{}", a[0].as_str().map(str::to_owned).unwrap_or_else(|| a[0].to_string()));
                Ok(Value::Nil)
            }
            "generate_token" => self.generate_token(ctx, &a[0]),
            "parse_token" => self.parse_token(ctx, &a[0]),
            "get_workspace_info" => self.get_workspace_info(ctx, opt_str(&a[0])),
            "revoke_token" => self.revoke_token(ctx, &a[0]).await,
            "cleanup" => self.cleanup(ctx, opt_str(&a[0]), num(Some(&a[1]))).await,
            "create_workspace" => {
                let info = self.create_workspace(ctx, &a[0], a[1].as_bool().unwrap_or(false))?;
                self.persist_workspace(get_str(&info, "id").unwrap_or_default())
                    .await?;
                self.persist_workspace(&ctx.user.personal_workspace())
                    .await?;
                Ok(info)
            }
            "delete_workspace" => {
                let ws = a[0].as_str().unwrap_or_default();
                let r = self.delete_workspace(ctx, ws)?;
                self.persist_workspace(ws).await?;
                self.persist_workspace(&ctx.user.personal_workspace())
                    .await?;
                Ok(r)
            }
            "list_workspaces" => self.list_workspaces(ctx, &a[0], &a[1], &a[2]),
            "set_env" => {
                let r = self.set_env(ctx, &a[0], &a[1])?;
                self.persist_workspace(&ctx.ws).await?;
                self.workspace_changed(&ctx.ws);
                let kind = if a[1].is_nil() {
                    "env_removed"
                } else {
                    "env_set"
                };
                let key = a[0].as_str().unwrap_or_default();
                self.record_event(ctx, kind, serde_json::json!({ "key": key }))
                    .await?;
                Ok(r)
            }
            "get_env" => self.get_env(ctx, &a[0]),
            "check_status" => self.check_status(ctx),
            "get_summary" => self.get_summary(ctx),
            "bookmark" | "unbookmark" => {
                let r = self.bookmark(ctx, &a[0], name == "bookmark")?;
                let personal = ctx.user.personal_workspace();
                self.persist_workspace(&personal).await?;
                self.workspace_changed(&personal);
                Ok(r)
            }
            "register_service_type" => {
                let r = self.register_service_type(ctx, &a[0])?;
                self.persist_workspace(&ctx.ws).await?;
                self.workspace_changed(&ctx.ws);
                Ok(r)
            }
            "get_service_type" => self.get_service_type(ctx, &a[0]),
            "list_service_types" => self.list_service_types(ctx, opt_str(&a[0])),
            "search_services" => self.search_services(ctx, &a[0], &a[2], &a[3]),
            "log_event" => self.log_event(ctx, &a[0], &a[1]).await,
            "get_events" => self.get_events(ctx, &a[0], &a[1], &a[2]).await,
            "get_event_stats" => self.get_event_stats(ctx, &a[0], &a[1], &a[2]).await,
            _ => Err(ManagerError::MethodNotFound(format!(
                "services.default.{name}"
            ))),
        }
    }

    fn register_service(&self, ctx: &Ctx, mut svc: Value) -> ManagerResult<Value> {
        if !svc.is_map() {
            return Err(ManagerError::InvalidArgument(
                "service must be a map".into(),
            ));
        }
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let mut id = get_str(&svc, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("Service id is required".into()))?
            .to_owned();
        if !id.contains('/') {
            id = format!("{}/{id}", ctx.ws);
        }
        let (ws, rest) = id.split_once('/').expect("has /");
        let (cid, name) = rest.split_once(':').ok_or_else(|| {
            ManagerError::InvalidArgument("Service id info must contain ':'".into())
        })?;
        if ws != ctx.ws {
            return Err(ManagerError::Permission(
                "Cannot register services in other workspaces".into(),
            ));
        }
        if cid != ctx.cid {
            return Err(ManagerError::Permission(format!(
                "Cannot register services for another client ({cid})"
            )));
        }
        let mut config = get(&svc, "config").cloned().unwrap_or(Value::Nil);
        if name.starts_with("_rintf_")
            || get(&config, "_local_only").and_then(Value::as_bool) == Some(true)
        {
            return Ok(Value::Nil);
        }
        let visibility = Visibility::parse(get_str(&config, "visibility"));
        let authorized = get(&config, "authorized_workspaces").filter(|v| !v.is_nil());
        if authorized.is_some() && visibility != Visibility::Protected {
            return Err(ManagerError::InvalidArgument(
                "authorized_workspaces can only be set when visibility is 'protected'".into(),
            ));
        }
        let app_id = get_str(&svc, "app_id").unwrap_or("*").to_owned();
        if app_id.contains('/') {
            return Err(ManagerError::InvalidArgument(
                "app_id must not contain '/'".into(),
            ));
        }
        let built_in = name == "built-in";
        let created_by = if built_in {
            value::from_json(&serde_json::to_value(&ctx.user).unwrap_or_default())
        } else {
            map([("id", ctx.user.id.as_str().into())])
        };
        value::set(&mut config, "workspace", ctx.ws.as_str().into());
        value::set(&mut config, "visibility", visibility.as_str().into());
        value::set(&mut config, "created_by", created_by);
        value::remove(&mut config, "service_embedding");
        value::set(&mut svc, "id", id.as_str().into());
        value::set(&mut svc, "app_id", app_id.as_str().into());
        value::set(&mut svc, "config", config);
        if get_str(&svc, "name").is_none() {
            value::set(&mut svc, "name", name.into());
        }
        if get_str(&svc, "type").is_none() {
            value::set(&mut svc, "type", "generic".into());
        }
        // Keep only the fields the reference persists (workspace-api.md §2.2).
        if let Value::Map(entries) = &mut svc {
            const KEEP: [&str; 8] = [
                "id",
                "name",
                "type",
                "description",
                "docs",
                "app_id",
                "config",
                "service_schema",
            ];
            entries.retain(|(k, _)| k.as_str().is_some_and(|k| KEEP.contains(&k)));
        }
        let record = ServiceRecord::from_value(svc)?;
        if !built_in {
            self.check_service_quota(ctx, &record.name)?;
        }
        let data = record.record.clone();
        let client = map([
            ("id", format!("{}/{}", ctx.ws, ctx.cid).into()),
            ("workspace", ctx.ws.as_str().into()),
        ]);
        match self.registry.insert(record)? {
            Inserted::New if built_in => {
                events::emit(&*self.router, &ctx.ws, "client_connected", client)
            }
            Inserted::Replaced(_) if built_in => {
                events::emit(&*self.router, &ctx.ws, "client_updated", client)
            }
            Inserted::New => events::emit(&*self.router, &ctx.ws, "service_added", data),
            Inserted::Replaced(old) => {
                for o in old {
                    events::emit(&*self.router, &ctx.ws, "service_removed", o.record);
                }
                events::emit(&*self.router, &ctx.ws, "service_added", data);
            }
        }
        Ok(Value::Nil)
    }

    /// `HYPHA_MAX_SERVICES_PER_CLIENT`: a client may hold that many services besides
    /// `built-in`; re-registering a name it holds does not count (workspace-api.md §5.1).
    fn check_service_quota(&self, ctx: &Ctx, name: &str) -> ManagerResult<()> {
        let limit = self.config.limits.services_per_client;
        if limit == 0 {
            return Ok(());
        }
        let held = self
            .registry
            .find(&Pattern {
                ws: Some(&ctx.ws),
                cid: Some(&ctx.cid),
                ..Default::default()
            })
            .iter()
            .filter(|r| !r.is_built_in() && r.name != name)
            .count();
        if crate::config::reached(held, limit) {
            return Err(ManagerError::Quota(format!(
                "Service quota exceeded: client {} already has {held} services (limit {limit})",
                ctx.from
            )));
        }
        Ok(())
    }

    /// Resolves the caller's own service (§4.7); admins of the workspace may name any
    /// service of their workspace by full id. Safer than the reference (QUIRK in
    /// workspace-api.md §5.1: no ownership check there).
    fn unregister_service(&self, ctx: &Ctx, service_id: &Value) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let raw = service_id
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("service_id must be a string".into()))?;
        let raw = raw.split_once('@').map(|(i, _)| i).unwrap_or(raw);
        let id = if raw.contains('/') {
            raw.to_owned()
        } else if raw.contains(':') {
            format!("{}/{raw}", ctx.ws)
        } else {
            format!("{}/{}:{raw}", ctx.ws, ctx.cid)
        };
        let (ws, rest) = id.split_once('/').expect("has /");
        let cid = rest.split_once(':').map(|(c, _)| c).unwrap_or_default();
        let allowed = ws == ctx.ws && (cid == ctx.cid || ctx.user.can(ws, Permission::Admin));
        if !allowed {
            return Err(ManagerError::Permission(format!(
                "Permission denied: cannot unregister service {id} of another client"
            )));
        }
        let removed = self.registry.remove_id(&id);
        if removed.is_empty() {
            return Err(ManagerError::NotFound(format!("Service not found: {id}")));
        }
        for r in removed {
            if r.is_built_in() {
                let data = map([
                    ("id", r.cid.as_str().into()),
                    ("workspace", r.ws.as_str().into()),
                ]);
                events::emit(&*self.router, &r.ws, "client_disconnected", data);
            } else {
                events::emit(&*self.router, &r.ws, "service_removed", r.record);
            }
        }
        Ok(Value::Nil)
    }

    /// Whether the caller may see `r`, and whether it was admitted through
    /// `authorized_workspaces` (then the list is hidden).
    fn visible(&self, ctx: &Ctx, r: &ServiceRecord) -> Option<bool> {
        match r.visibility {
            Visibility::Public | Visibility::Unlisted => Some(false),
            Visibility::Protected if ctx.user.can(&r.ws, Permission::Read) => Some(false),
            Visibility::Protected if r.authorized.contains(&ctx.ws) => Some(true),
            Visibility::Protected => None,
        }
    }

    fn presented(&self, r: &ServiceRecord, hide_authorized: bool) -> Value {
        let mut rec = r.record.clone();
        if hide_authorized {
            if let Some(c) = rhizo_protocol::value::get(&rec, "config").cloned() {
                let mut c = c;
                value::remove(&mut c, "authorized_workspaces");
                value::set(&mut rec, "config", c);
            }
        }
        rec
    }

    /// Finds the one record `service_id` names, by `mode` (§4.6).
    fn resolve(
        &self,
        ctx: &Ctx,
        service_id: &str,
        mode: Option<&str>,
    ) -> ManagerResult<(ServiceRecord, bool)> {
        let sid = parse_service_id(ctx, service_id)?;
        if sid.ws == "*" {
            return Err(ManagerError::InvalidArgument(
                "Workspace '*' is not allowed here; call list_services instead".into(),
            ));
        }
        let pattern = Pattern {
            ws: Some(&sid.ws),
            cid: Some(&sid.cid).filter(|c| *c != "*").map(|c| c.as_str()),
            name: Some(&sid.name),
            app_id: sid.app.as_deref(),
            kind: None,
        };
        let found = self.registry.find(&pattern);
        let full = format!(
            "{}/{}:{}@{}",
            sid.ws,
            sid.cid,
            sid.name,
            sid.app.as_deref().unwrap_or("*")
        );
        if found.is_empty() {
            return Err(ManagerError::NotFound(format!("Service not found: {full}")));
        }
        let visible: Vec<(ServiceRecord, bool)> = found
            .into_iter()
            .filter_map(|r| self.visible(ctx, &r).map(|h| (r, h)))
            .collect();
        if visible.is_empty() {
            return Err(ManagerError::Permission(format!(
                "Permission denied for non-public service in workspace {}",
                sid.ws
            )));
        }
        let default_mode = if sid.ws == "public" {
            "random"
        } else {
            "exact"
        };
        let mode = mode.unwrap_or(default_mode);
        let pick = match mode {
            "exact" => {
                if visible.len() > 1 {
                    let ids: Vec<String> = visible.iter().map(|(r, _)| r.id()).collect();
                    return Err(ManagerError::InvalidArgument(format!(
                        "Multiple services found for {full}: {}; pass a client id or config.mode",
                        ids.join(", ")
                    )));
                }
                0
            }
            "first" | "min_load" => 0,
            "last" => visible.len() - 1,
            "random" | "native:random" => rand::random::<usize>() % visible.len(),
            m if m.starts_with("select:") => rand::random::<usize>() % visible.len(),
            m => {
                return Err(ManagerError::InvalidArgument(format!(
                    "Invalid service selection mode: {m}"
                )))
            }
        };
        Ok(visible.into_iter().nth(pick).expect("index in range"))
    }

    pub(super) fn get_service_info(
        &self,
        ctx: &Ctx,
        service_id: &Value,
        config: &Value,
    ) -> ManagerResult<Value> {
        let id = service_id
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("service_id must be a string".into()))?;
        if id == "~" || id.ends_with("/~") {
            let mut rec = self.default_service();
            value::set(&mut rec, "id", "~".into());
            return Ok(rec);
        }
        let (r, hide) = self.resolve(ctx, id, get_str(config, "mode"))?;
        Ok(self.presented(&r, hide))
    }

    pub(super) async fn get_service(
        &self,
        ctx: &Ctx,
        service_id: &Value,
        config: &Value,
    ) -> ManagerResult<Value> {
        let id = service_id
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("service_id must be a string".into()))?;
        if id == "*" {
            return Err(ManagerError::InvalidArgument(
                "Service id '*' is not allowed".into(),
            ));
        }
        let mut svc = if id == "~" || id.ends_with("/~") {
            self.default_service()
        } else {
            let (r, hide) = self.resolve(ctx, id, get_str(config, "mode"))?;
            let timeout = num(get(config, "timeout"))
                .filter(|t| *t > 0.0)
                .unwrap_or(GET_SERVICE_TIMEOUT);
            let addr = format!("{}/{}", r.ws, r.cid);
            // Sent as `call_client` does; a provider that is not connected fails here as
            // such, one that leaves while answering fails in the wait below.
            let sent = self
                .send_call(
                    &addr,
                    "services.built-in.get_service",
                    vec![r.name.as_str().into()],
                    None,
                    (&r.ws, &self.root_user),
                    Duration::from_secs_f64(timeout),
                )
                .await?;
            let mut svc = self.wait_reply(sent).await.map_err(|e| match e {
                ManagerError::Disconnected(_) => ManagerError::Disconnected(format!(
                    "Client disconnected while retrieving service: {}",
                    r.id()
                )),
                e => e,
            })?;
            if !svc.is_map() {
                return Err(ManagerError::InvalidArgument(format!(
                    "Provider returned no service object for {}",
                    r.id()
                )));
            }
            // The object now reaches the caller from the manager, not from the provider:
            // bare targets (JavaScript providers send their cid alone) must carry the
            // provider's workspace, or the caller would resolve them against `*`.
            absolutize_targets(&mut svc, &r.ws, 0);
            let mut cfg = get(&svc, "config").cloned().unwrap_or(Value::Nil);
            value::set(&mut cfg, "workspace", r.ws.as_str().into());
            value::set(
                &mut cfg,
                "url",
                format!(
                    "{}/{}/services/{}:{}",
                    self.config.public_base_url, r.ws, r.cid, r.name
                )
                .into(),
            );
            if hide {
                value::remove(&mut cfg, "authorized_workspaces");
            }
            value::set(&mut svc, "config", cfg);
            value::set(&mut svc, "id", r.id().into());
            if r.app_id != "*" {
                value::set(&mut svc, "app_id", r.app_id.as_str().into());
            }
            svc
        };
        match get_str(config, "case_conversion") {
            Some("camel") => svc = convert_case(&svc, true),
            Some("snake") => svc = convert_case(&svc, false),
            _ => {}
        }
        Ok(svc)
    }

    pub(super) fn list_services(
        &self,
        ctx: &Ctx,
        query: &Value,
        include_unlisted: bool,
    ) -> ManagerResult<Value> {
        let mut ws = ctx.ws.clone();
        let (mut cid, mut name, mut kind, mut app, mut vis): (
            Option<String>,
            Option<String>,
            _,
            _,
            _,
        ) = (None, None, None, None, None);
        match query {
            Value::Nil => {}
            Value::String(s) => {
                let s = s.as_str().unwrap_or_default();
                let (q, a) = match s.split_once('@') {
                    Some((q, a)) => (q, Some(a.to_owned())),
                    None => (s, None),
                };
                app = a;
                match (q.split_once('/'), q.split_once(':')) {
                    (Some((w, rest)), _) => {
                        ws = w.to_owned();
                        match rest.split_once(':') {
                            Some((c, n)) => {
                                cid = Some(c.to_owned());
                                name = Some(n.to_owned());
                            }
                            None => name = Some(rest.to_owned()),
                        }
                    }
                    (None, Some((c, n))) => {
                        cid = Some(c.to_owned());
                        name = Some(n.to_owned());
                    }
                    (None, None) => ws = q.to_owned(),
                }
            }
            Value::Map(entries) => {
                const KEYS: [&str; 7] = [
                    "workspace",
                    "client_id",
                    "service_id",
                    "id",
                    "type",
                    "visibility",
                    "app_id",
                ];
                for (k, v) in entries {
                    let k = k.as_str().unwrap_or_default();
                    if !KEYS.contains(&k) {
                        return Err(ManagerError::InvalidArgument(format!(
                            "Invalid query keys: {k}"
                        )));
                    }
                    let v = v.as_str().map(str::to_owned);
                    match k {
                        "workspace" => ws = v.unwrap_or(ws),
                        "client_id" => cid = v,
                        "service_id" | "id" => {
                            if let Some(v) = v {
                                match v.split_once('@') {
                                    Some((n, a)) => {
                                        name = Some(n.to_owned());
                                        app = Some(a.to_owned());
                                    }
                                    None => name = Some(v),
                                }
                            }
                        }
                        "type" => kind = v,
                        "visibility" => vis = v,
                        _ => app = v,
                    }
                }
            }
            _ => {
                return Err(ManagerError::InvalidArgument(
                    "query must be a string or a map".into(),
                ))
            }
        }
        if include_unlisted && ws != ctx.ws {
            return Err(ManagerError::Permission(format!(
                "include_unlisted is only allowed for your own workspace {}",
                ctx.ws
            )));
        }
        let all_ws = ws == "*";
        let pattern = Pattern {
            ws: if all_ws { None } else { Some(&ws) },
            cid: cid.as_deref(),
            name: name.as_deref(),
            app_id: app.as_deref(),
            kind: kind.as_deref(),
        };
        let mut out = Vec::new();
        for r in self.registry.find(&pattern) {
            if r.is_built_in() && name.is_none() && r.ws != ctx.ws {
                continue;
            }
            if vis.as_deref().is_some_and(|v| v != r.visibility.as_str()) {
                continue;
            }
            let own = r.ws == ctx.ws;
            let shown = match r.visibility {
                Visibility::Public => Some(false),
                Visibility::Unlisted => (own && include_unlisted).then_some(false),
                Visibility::Protected if all_ws && !own => None,
                Visibility::Protected => self.visible(ctx, &r),
            };
            if let Some(hide) = shown {
                out.push(self.presented(&r, hide));
            }
        }
        Ok(Value::Array(out))
    }

    fn list_clients(&self, ctx: &Ctx, workspace: Option<&str>) -> ManagerResult<Value> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        let clients = self
            .registry
            .clients(ws)
            .into_iter()
            .map(|r| {
                let user = get(&r.record, "config")
                    .and_then(|c| get(c, "created_by"))
                    .cloned()
                    .unwrap_or(Value::Nil);
                map([("id", format!("{}/{}", r.ws, r.cid).into()), ("user", user)])
            })
            .collect();
        Ok(Value::Array(clients))
    }

    fn subscribe(&self, ctx: &Ctx, names: &Value, on: bool) -> ManagerResult<Value> {
        let names: Vec<String> = match names {
            Value::String(s) => vec![s.as_str().unwrap_or_default().to_owned()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                return Err(ManagerError::InvalidArgument(
                    "event_type must be a string or a list of strings".into(),
                ))
            }
        };
        if on {
            for n in &names {
                check_subscription(&ctx.ws, n)?;
            }
        }
        let live = if on {
            self.router.subscribe(&ctx.from, &names)
        } else {
            self.router.unsubscribe(&ctx.from, &names)
        };
        if !live {
            return Err(ManagerError::Internal(format!(
                "Connection not found for client {}",
                ctx.from
            )));
        }
        Ok(Value::Boolean(true))
    }

    pub(super) async fn ping(&self, ctx: &Ctx, client_id: &Value, timeout: Option<f64>) -> Value {
        let raw = client_id.as_str().unwrap_or_default();
        let target = if raw.contains('/') {
            raw.to_owned()
        } else {
            format!("{}/{raw}", ctx.ws)
        };
        let ws = target.split_once('/').map(|(w, _)| w).unwrap_or_default();
        if let Err(e) = ctx.require(ws, Permission::Read) {
            return format!("Failed to ping client {target}: {e}").into();
        }
        let t = Duration::from_secs_f64(timeout.filter(|t| *t > 0.0).unwrap_or(5.0));
        match self
            .call_client(&target, "services.built-in.ping", vec!["ping".into()], t)
            .await
        {
            Ok(v) if v.as_str() == Some("pong") => "pong".into(),
            Ok(v) => format!("Failed to ping client {target}: unexpected answer {v}").into(),
            Err(e) => format!("Failed to ping client {target}: {e}").into(),
        }
    }

    /// Mints a token for a child identity (workspace-api.md §5.4).
    fn generate_token(&self, ctx: &Ctx, config: &Value) -> ManagerResult<Value> {
        let target = get_str(config, "workspace").unwrap_or(&ctx.ws).to_owned();
        // Ownership counts only for the owner itself and only where its token grants nothing
        // explicit: a read or read-write child token cannot mint admin tokens through its
        // parent (the reference upgrades owners to admin; docs/compat.md).
        let owner = !ctx.user.scope.workspaces.contains_key(&target)
            && self.workspaces.owned_by(&target, &ctx.user.id);
        match ctx.user.permission(&target) {
            Some(Permission::Admin) => {}
            _ if owner => {}
            None => {
                return Err(ManagerError::Permission(format!(
                    "You do not have any permission for workspace: {target}"
                )))
            }
            Some(_) => {
                return Err(ManagerError::Permission(
                    "Only admin can generate token.".into(),
                ))
            }
        }
        let permission = match get_str(config, "permission") {
            None => Permission::ReadWrite,
            Some(p) => Permission::parse(p)
                .ok_or_else(|| ManagerError::InvalidArgument(format!("Invalid permission: {p}")))?,
        };
        let expires_in = num(get(config, "expires_in"))
            .filter(|e| *e > 0.0)
            .unwrap_or(3600.0) as u64;
        let extra_scopes = value::get_strs(config, "extra_scopes");
        if extra_scopes
            .iter()
            .any(|s| s.starts_with("ws:") || s.starts_with("cid:") || s.starts_with("wid:"))
        {
            return Err(ManagerError::InvalidArgument(
                "extra_scopes must not contain ws:, cid: or wid: scopes".into(),
            ));
        }
        let mut scope = ScopeInfo {
            current_workspace: Some(target.clone()),
            client_id: get_str(config, "client_id").map(str::to_owned),
            extra_scopes,
            ..Default::default()
        };
        scope.workspaces.insert(target.clone(), permission);
        let email = match get_str(config, "email") {
            Some(e) if ctx.user.roles.iter().any(|r| r == "admin") => Some(e.to_owned()),
            Some(_) => {
                return Err(ManagerError::Permission(
                    "Only admin users can set the email of a token".into(),
                ))
            }
            None => ctx.user.email.clone(),
        };
        let child = UserInfo {
            id: readable_id(),
            // Not the `admin` role: it would grant admin on every workspace and void the
            // permission the token is scoped to (the reference copies it; docs/compat.md).
            roles: ctx
                .user
                .roles
                .iter()
                .filter(|r| *r != "admin")
                .cloned()
                .collect(),
            is_anonymous: ctx.user.is_anonymous,
            scope,
            email,
            parent: Some(
                ctx.user
                    .parent
                    .clone()
                    .unwrap_or_else(|| ctx.user.id.clone()),
            ),
            expires_at: None,
            current_workspace: Some(target),
        };
        Ok(self.tokens.sign(&child, expires_in).into())
    }

    fn parse_token(&self, ctx: &Ctx, token: &Value) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let token = token
            .as_str()
            .ok_or_else(|| ManagerError::InvalidArgument("token must be a string".into()))?;
        let user = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired | TokenError::Revoked => ManagerError::Permission(e.to_string()),
            TokenError::Invalid(_) => ManagerError::InvalidArgument(e.to_string()),
        })?;
        if let Some(w) = &user.scope.current_workspace {
            if *w != ctx.ws {
                return Err(ManagerError::Permission(format!(
                    "Token is not authorized for workspace {}",
                    ctx.ws
                )));
            }
        }
        let _ = token::is_specialized(&user.scope);
        Ok(value::from_json(
            &serde_json::to_value(&user).unwrap_or_default(),
        ))
    }

    /// Needs read permission on the target workspace (safer than the reference, which
    /// only checks the caller's own: workspace-api.md §5.3 QUIRK).
    pub(super) fn get_workspace_info(
        &self,
        ctx: &Ctx,
        workspace: Option<&str>,
    ) -> ManagerResult<Value> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        let info = self.workspaces.get(ws).ok_or_else(|| {
            ManagerError::NotFound(format!(
                "Workspace {ws} does not exist or is not accessible"
            ))
        })?;
        Ok(value::from_json(
            &serde_json::to_value(info).unwrap_or_default(),
        ))
    }
}

/// Prefixes `ws/` to every `_rtarget` without a `/` in `v` (protocol.md §3.1: a bare
/// target means the message sender's workspace). Stops below 32 levels of nesting.
fn absolutize_targets(v: &mut Value, ws: &str, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::Map(entries) => {
            for (k, val) in entries.iter_mut() {
                if k.as_str() == Some("_rtarget") {
                    if let Some(t) = val.as_str().filter(|t| !t.contains('/')) {
                        *val = format!("{ws}/{t}").into();
                    }
                } else {
                    absolutize_targets(val, ws, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                absolutize_targets(item, ws, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_targets_get_the_provider_workspace() {
        let method = |t: &str| map([("_rtype", "method".into()), ("_rtarget", t.into())]);
        let mut svc = map([
            ("hi", method("cid-1")),
            ("nested", map([("deep", method("ws-b/cid-2"))])),
            ("list", Value::Array(vec![method("cid-3")])),
        ]);
        absolutize_targets(&mut svc, "ws-a", 0);
        assert_eq!(
            get_str(get(&svc, "hi").unwrap(), "_rtarget"),
            Some("ws-a/cid-1")
        );
        let deep = get(get(&svc, "nested").unwrap(), "deep").unwrap();
        assert_eq!(get_str(deep, "_rtarget"), Some("ws-b/cid-2"));
        let listed = &get(&svc, "list").unwrap().as_array().unwrap()[0];
        assert_eq!(get_str(listed, "_rtarget"), Some("ws-a/cid-3"));
    }

    #[test]
    fn case_conversion_skips_encoded_values() {
        let v = map([
            (
                "my_fn",
                map([("_rtype", "method".into()), ("_rtarget", "a".into())]),
            ),
            ("config", map([("api_version", 3.into())])),
        ]);
        let c = convert_case(&v, true);
        assert!(get(&c, "myFn").is_some());
        assert!(get(get(&c, "config").unwrap(), "apiVersion").is_some());
        assert_eq!(get_str(get(&c, "myFn").unwrap(), "_rtarget"), Some("a"));
        assert_eq!(to_snake("apiVersion"), "api_version");
    }
}
