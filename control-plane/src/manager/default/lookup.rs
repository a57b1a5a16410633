//! `get_service(service_id, config)` and `get_service_info(service_id, config)`
//! (protocol.md §4.6, workspace-api.md §5.1): resolution by the
//! [`crate::registry::Registry`], then, for `get_service`, the provider's live service
//! object fetched by the manager peer and fitted for the caller.

use super::{args, num, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::registry::{parse_select, Candidates, Criterion};
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// Default time the manager waits for a provider's service object (GetServiceConfig).
const GET_SERVICE_TIMEOUT: f64 = 10.0;
/// Default time a `select:` mode waits for each candidate's answer (the reference's).
const SELECT_TIMEOUT: f64 = 2.0;

/// The `config` of `get_service` / `get_service_info` (GetServiceConfig).
#[derive(Debug, Clone, Default)]
pub(crate) struct LookupConfig {
    /// Selection mode among several providers ([`crate::registry::Registry::resolve`]).
    mode: Option<String>,
    /// Seconds to wait for the provider's service object (positive; default 10).
    timeout: f64,
    /// `camel` or `snake`: rename the object's keys.
    case_conversion: Option<String>,
    /// Seconds a `select:` mode waits for each candidate (positive; default 2).
    select_timeout: f64,
}

// === impl LookupConfig ===

impl LookupConfig {
    fn parse(config: &Value) -> Self {
        LookupConfig {
            mode: get_str(config, "mode").map(str::to_owned),
            timeout: num(get(config, "timeout"))
                .filter(|t| *t > 0.0)
                .unwrap_or(GET_SERVICE_TIMEOUT),
            case_conversion: get_str(config, "case_conversion").map(str::to_owned),
            select_timeout: num(get(config, "select_timeout"))
                .filter(|t| *t > 0.0)
                .unwrap_or(SELECT_TIMEOUT),
        }
    }
}

/// The `service_id` argument, which must be a string.
fn service_id(v: &Value) -> ManagerResult<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ManagerError::InvalidArgument("service_id must be a string".into()))
}

/// Whether `id` names the workspace manager itself (`~` or `<ws>/~`).
fn is_manager(id: &str) -> bool {
    id == "~" || id.ends_with("/~")
}

/// `get_service`: a service id and how to look it up.
#[derive(Debug)]
pub(crate) struct GetService {
    service_id: String,
    config: LookupConfig,
}

// === impl GetService ===

impl GetService {
    /// Errors: [`ManagerError::InvalidArgument`] when `service_id` is not a string or is
    /// `*`.
    pub(crate) fn parse(a: Vec<Value>) -> ManagerResult<Self> {
        let [id, config] = args(a);
        let service_id = service_id(&id)?;
        if service_id == "*" {
            return Err(ManagerError::InvalidArgument(
                "Service id '*' is not allowed".into(),
            ));
        }
        Ok(GetService {
            service_id,
            config: LookupConfig::parse(&config),
        })
    }

    pub(crate) async fn apply(self, m: &Arc<Manager>, ctx: &Ctx) -> ManagerResult<Value> {
        m.fetch_service(ctx, &self).await
    }
}

/// `get_service_info`: a service id and how to look it up.
#[derive(Debug)]
pub(crate) struct GetServiceInfo {
    service_id: String,
    config: LookupConfig,
}

// === impl GetServiceInfo ===

impl GetServiceInfo {
    /// Errors: [`ManagerError::InvalidArgument`] when `service_id` is not a string.
    pub(crate) fn parse(a: Vec<Value>) -> ManagerResult<Self> {
        let [id, config] = args(a);
        Ok(GetServiceInfo {
            service_id: service_id(&id)?,
            config: LookupConfig::parse(&config),
        })
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        if is_manager(&self.service_id) {
            let mut rec = m.default_service();
            value::set(&mut rec, "id", "~".into());
            return Ok(rec);
        }
        m.registry
            .info(ctx, &self.service_id, self.config.mode.as_deref())
    }
}

/// How [`crate::registry::Registry::resolve`]'s error for several matches in `exact`
/// mode starts.
const MULTIPLE_FOUND: &str = "Multiple services found for ";

// === impl Manager (service lookup) ===

impl Manager {
    /// `get_service_info(service_id, config)` with wire arguments (also for HTTP callers).
    pub(in crate::manager) fn get_service_info(
        &self,
        ctx: &Ctx,
        service_id: &Value,
        config: &Value,
    ) -> ManagerResult<Value> {
        GetServiceInfo::parse(vec![service_id.clone(), config.clone()])?.apply(self, ctx)
    }

    /// `get_service(service_id, config)` with wire arguments (also for HTTP callers).
    pub(in crate::manager) async fn get_service(
        &self,
        ctx: &Ctx,
        service_id: &Value,
        config: &Value,
    ) -> ManagerResult<Value> {
        let cmd = GetService::parse(vec![service_id.clone(), config.clone()])?;
        self.fetch_service(ctx, &cmd).await
    }

    /// `get_service(service_id, config)` for an in-process caller (a control-plane
    /// service acting for `ctx`), with wire-shaped `config`.
    pub(crate) async fn get_service_for(
        &self,
        ctx: &Ctx,
        service_id: &str,
        config: &Value,
    ) -> ManagerResult<Value> {
        self.get_service(ctx, &Value::from(service_id), config)
            .await
    }

    /// Resolves `cmd.service_id`; when no live service matches an id naming an app
    /// (`svc@app_id`), a control-plane service that can bring it up (the server-apps
    /// controller's lazy start, apps-workers.md §1.7) does, and the id it answers is
    /// resolved instead. When several match an id naming an app and the caller gave no
    /// mode, the app's own `service_selection_mode` picks (as the reference does), if a
    /// control-plane service knows it.
    async fn resolve_or_start(
        &self,
        ctx: &Ctx,
        cmd: &GetService,
    ) -> ManagerResult<(crate::registry::ServiceRecord, bool)> {
        let mode = cmd.config.mode.as_deref();
        if let Some((criterion, function)) = mode.map(parse_select).transpose()?.flatten() {
            match self.registry.candidates(ctx, &cmd.service_id) {
                // Not running: an app may bring it up below.
                Err(ManagerError::NotFound(_)) if cmd.service_id.contains('@') => {}
                found => {
                    let timeout = Duration::from_secs_f64(cmd.config.select_timeout);
                    return Ok(self
                        .select_by_call(found?, criterion, &function, timeout)
                        .await);
                }
            }
        }
        match self.registry.resolve(ctx, &cmd.service_id, mode) {
            Err(ManagerError::NotFound(missing)) if cmd.service_id.contains('@') => {
                for s in self.services().iter() {
                    if let Some(start) = s.resolve_missing(ctx, &cmd.service_id) {
                        let id = start.await?;
                        return self.registry.resolve(ctx, &id, None);
                    }
                }
                Err(ManagerError::NotFound(missing))
            }
            Err(ManagerError::InvalidArgument(several))
                if mode.is_none()
                    && cmd.service_id.contains('@')
                    && several.starts_with(MULTIPLE_FOUND) =>
            {
                for s in self.services().iter() {
                    if let Some(ask) = s.selection_mode(ctx, &cmd.service_id) {
                        if let Some(app_mode) = ask.await {
                            return self.registry.resolve(ctx, &cmd.service_id, Some(&app_mode));
                        }
                    }
                }
                Err(ManagerError::InvalidArgument(several))
            }
            other => other,
        }
    }

    /// Resolves `cmd.service_id` and asks its provider for the service object
    /// (`services.built-in.get_service`), waiting `cmd.config.timeout`; then makes bare
    /// targets absolute, sets `config.workspace`, `config.url` and the full `id` (and
    /// `app_id`), hides `authorized_workspaces` from callers admitted through it, and
    /// converts key case if asked.
    ///
    /// Errors: resolution errors; [`ManagerError::Disconnected`] (the provider is not
    /// connected, or leaves while answering), [`ManagerError::Timeout`], the provider's
    /// reject, [`ManagerError::InvalidArgument`] when it returns no map.
    async fn fetch_service(&self, ctx: &Ctx, cmd: &GetService) -> ManagerResult<Value> {
        let mut svc = if is_manager(&cmd.service_id) {
            self.default_service()
        } else if let Some(svc) = self.control_service_object_for(ctx, &cmd.service_id)? {
            svc
        } else {
            let (r, hide) = self.resolve_or_start(ctx, cmd).await?;
            let timeout = Duration::from_secs_f64(cmd.config.timeout);
            // A provider on another node is asked by that node's manager (the provider's
            // reply could not reach this one), see `crate::cluster`.
            let mut svc = match self.registry.remote_node(&r) {
                Some(node) => self.fetch_remote(&node, &r, timeout).await?,
                None => self.ask_provider(&r.ws, &r.cid, &r.name, timeout).await?,
            };
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
        match cmd.config.case_conversion.as_deref() {
            Some("camel") => svc = convert_case(&svc, true),
            Some("snake") => svc = convert_case(&svc, false),
            _ => {}
        }
        Ok(svc)
    }
}

// === impl Manager (asking a local provider) ===

impl Manager {
    /// `select:<criterion>:<function>` (workspace-api.md §5.1): calls `function()` on
    /// every candidate at once, each waiting at most `timeout`, and picks the smallest or
    /// largest numeric answer, or the first candidate (in key order) that answered;
    /// candidates that fail, time out or (for min/max) answer no number are skipped. When
    /// none is left, one is picked at random, as the reference does.
    async fn select_by_call(
        &self,
        c: Candidates,
        criterion: Criterion,
        function: &str,
        timeout: Duration,
    ) -> (crate::registry::ServiceRecord, bool) {
        let mut found = c.found;
        if found.len() == 1 {
            return found.remove(0);
        }
        let asks = found.iter().map(|(r, _)| {
            let to = format!("{}/{}", r.ws, r.cid);
            let method = format!("services.{}.{function}", r.name);
            async move {
                let call = self.call_client(&to, &method, Vec::new(), timeout);
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(v)) => Some(v),
                    _ => None,
                }
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let numbers = || {
            answers
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.as_ref().and_then(|v| num(Some(v))).map(|n| (i, n)))
        };
        let by = |a: &(usize, f64), b: &(usize, f64)| a.1.total_cmp(&b.1);
        let pick = match criterion {
            // Of equal answers the first wins (`min_by` keeps the first, `max_by` would
            // keep the last).
            Criterion::Min => numbers().min_by(by).map(|(i, _)| i),
            Criterion::Max => numbers()
                .fold(None::<(usize, f64)>, |best, x| match best {
                    Some(b) if b.1 >= x.1 => Some(b),
                    _ => Some(x),
                })
                .map(|(i, _)| i),
            Criterion::FirstSuccess => answers.iter().position(Option::is_some),
        };
        let i = pick.unwrap_or_else(|| rand::random::<usize>() % found.len());
        found.swap_remove(i)
    }

    /// The raw service object of `ws/cid`'s service `name`, from the provider itself
    /// (`services.built-in.get_service`), waiting `timeout` (heartbeats restart it).
    ///
    /// Errors: [`ManagerError::Disconnected`] (`Client disconnected while retrieving
    /// service: …`) when the provider is not connected or leaves while answering,
    /// [`ManagerError::Timeout`], the provider's reject.
    pub(crate) async fn ask_provider(
        &self,
        ws: &str,
        cid: &str,
        name: &str,
        timeout: Duration,
    ) -> ManagerResult<Value> {
        let addr = format!("{ws}/{cid}");
        let lost = || {
            ManagerError::Disconnected(format!(
                "Client disconnected while retrieving service: {ws}/{cid}:{name}"
            ))
        };
        // Sent as `call_client` does; a provider that is not connected fails here as such,
        // one that leaves while answering fails in the wait below.
        let sent = self
            .send_call(
                &addr,
                "services.built-in.get_service",
                vec![name.into()],
                None,
                (ws, &self.root_user),
                timeout,
            )
            .await?;
        self.wait_reply(sent).await.map_err(|e| match e {
            ManagerError::Disconnected(_) => lost(),
            e => e,
        })
    }
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
    use rhizo_protocol::value::map;

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
