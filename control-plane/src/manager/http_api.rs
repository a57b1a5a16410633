//! What the HTTP routes ask of the manager (workspace-api.md §8.2): list, describe and call
//! services on behalf of an HTTP caller, with the same visibility rules as RPC callers.

use super::{Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::names::random_string;
use rhizo_protocol::message::{Call, Promise};
use rhizo_protocol::user::UserInfo;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long an HTTP call waits for the service function (the hypha-rpc default).
pub const HTTP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

// === impl Manager (HTTP) ===

impl Manager {
    /// The context an HTTP caller acts in: the token's workspace when it names one, the
    /// URL workspace when the caller may read it (or it is `public`), `ws-anonymous` for
    /// anonymous callers, else the caller's own workspace.
    pub fn http_ctx(&self, user: UserInfo, url_ws: &str) -> Ctx {
        let ws = match user.scope.current_workspace.as_deref() {
            Some(w) if w != "*" && user.id != "root" => w.to_owned(),
            _ if user.is_anonymous => "ws-anonymous".to_owned(),
            _ if url_ws == "public" || user.can(url_ws, rhizo_protocol::user::Permission::Read) => {
                url_ws.to_owned()
            }
            _ => user.personal_workspace(),
        };
        let cid = format!("http-{}", random_string(12));
        Ctx {
            from: format!("{ws}/{cid}"),
            ws,
            cid,
            user,
        }
    }

    /// Services of `ws` visible to the caller, ids as `client:service` (§8.1).
    pub fn http_list_services(&self, ctx: &Ctx, ws: &str) -> ManagerResult<Value> {
        let list = self.list_services(ctx, &Value::from(ws), false)?;
        let Value::Array(items) = list else {
            return Ok(list);
        };
        let items = items
            .into_iter()
            .map(|mut r| {
                if let Some(id) = get_str(&r, "id")
                    .and_then(|i| i.split_once('/'))
                    .map(|(_, rest)| rest.to_owned())
                {
                    value::set(&mut r, "id", id.into());
                }
                r
            })
            .collect();
        Ok(Value::Array(items))
    }

    /// The stored record of `service_id` (relative to `ws`), if the caller may see it.
    pub fn http_service_info(
        &self,
        ctx: &Ctx,
        ws: &str,
        service_id: &str,
        mode: Option<&str>,
    ) -> ManagerResult<Value> {
        let config = mode_config(mode);
        self.get_service_info(ctx, &Value::from(absolute_id(ws, service_id)), &config)
    }

    /// Calls `function_key` (dotted for nested members) of `service_id` (relative to `ws`;
    /// `ws` itself means the workspace manager) with keyword arguments `kwargs`. A member
    /// that is not a function is returned as its value.
    ///
    /// Errors: resolution and permission errors, [`ManagerError::NotFound`]
    /// (`<key> not found.`), the callee's error ([`ManagerError::Remote`]), or a
    /// [`ManagerError::Timeout`].
    pub async fn http_call(
        self: &Arc<Self>,
        ctx: &Ctx,
        ws: &str,
        service_id: &str,
        function_key: &str,
        kwargs: Value,
        mode: Option<&str>,
    ) -> ManagerResult<Value> {
        self.http_call_with(ctx, ws, service_id, function_key, Vec::new(), kwargs, mode)
            .await
    }

    /// [`Manager::http_call`] with positional `args` too (a stateless `POST /rpc`).
    #[allow(clippy::too_many_arguments)]
    pub async fn http_call_with(
        self: &Arc<Self>,
        ctx: &Ctx,
        ws: &str,
        service_id: &str,
        function_key: &str,
        args: Vec<Value>,
        kwargs: Value,
        mode: Option<&str>,
    ) -> ManagerResult<Value> {
        // `ws` (rhizo's name) and `~` (the reference's id of the default service) both
        // name the manager's own functions, run here.
        if service_id == "ws" || service_id == "~" {
            let call = Call {
                method: format!("services.default.{function_key}"),
                from: ctx.from.clone(),
                ws: ctx.ws.clone(),
                user: user_value(&ctx.user),
                session: None,
                args,
                kwargs: kwargs.as_map().cloned().unwrap_or_default(),
                promise: Promise::None,
            };
            return self.call_default(ctx, function_key, &call).await;
        }
        let svc = self.http_service_object(ctx, ws, service_id, mode).await?;
        let mut member = &svc;
        for key in function_key.split('.').filter(|k| !k.is_empty()) {
            member = get(member, key)
                .ok_or_else(|| ManagerError::NotFound(format!("{function_key} not found.")))?;
        }
        if get_str(member, "_rtype") != Some("method") {
            return Ok(member.clone());
        }
        self.http_invoke_member(ctx, member, args, kwargs).await
    }

    /// Calls the encoded method `member` of a service object (`{_rtype: "method",
    /// _rtarget, _rmethod, …}`) with positional `args` and keyword arguments `kwargs` (a
    /// map; empty or nil for none) on behalf of the HTTP caller `ctx`, waiting at most
    /// [`HTTP_CALL_TIMEOUT`]. Methods of control-plane services run in this manager.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] when `member` is not an encoded method,
    /// the callee's error ([`ManagerError::Remote`]), or a [`ManagerError::Timeout`].
    pub async fn http_invoke_member(
        self: &Arc<Self>,
        ctx: &Ctx,
        member: &Value,
        args: Vec<Value>,
        kwargs: Value,
    ) -> ManagerResult<Value> {
        let (target, method) = method_route(member)?;
        let user = user_value(&ctx.user);
        // A control-plane service (e.g. `public/artifact-manager`): its methods target this
        // manager, which runs them here instead of calling itself over the router.
        if target.rsplit('/').next() == Some(self.manager_id()) {
            let call = Call {
                method: method.to_owned(),
                from: ctx.from.clone(),
                ws: ctx.ws.clone(),
                user: user.clone(),
                session: None,
                args: args.clone(),
                kwargs: kwargs.as_map().cloned().unwrap_or_default(),
                promise: Promise::None,
            };
            let ran = match self.services().dispatch(ctx, method, &call) {
                Some(run) => Some(run.await),
                None => None,
            };
            if let Some(result) = ran {
                return result;
            }
        }
        let kwargs = kwargs
            .as_map()
            .is_some_and(|m| !m.is_empty())
            .then_some(kwargs);
        self.call_client_as(
            target,
            method,
            args,
            kwargs,
            (&ctx.ws, &user),
            HTTP_CALL_TIMEOUT,
        )
        .await
    }

    /// A `POST /rpc` without an open stream (workspace-api.md §8.5 "stateless call"):
    /// `body` is one msgpack map `{type: "method", to: "<client>:<svc>" (or a full
    /// service id), method, args?, kwargs?}`, run for the caller of `token` in `ws` (the
    /// query's workspace, else the token's or the caller's own), which needs `rw` there.
    /// Answers the HTTP status and `{success: true, result}` or `{success: false, detail}`.
    pub async fn stateless_call(
        self: &Arc<Self>,
        token: Option<&str>,
        ws: Option<&str>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let fail = |status: u16, detail: String| {
            (
                status,
                serde_json::json!({"success": false, "detail": detail}),
            )
        };
        let user = match token {
            None => crate::http::anonymous_http_user(),
            Some(t) => match self.tokens.verify(t) {
                Ok(u) => u,
                Err(e) => {
                    let detail = e.to_string();
                    return fail(crate::error::ApiError::from(e).status.as_u16(), detail);
                }
            },
        };
        let ctx = self.http_ctx(user, ws.unwrap_or(""));
        let ws = ws.map(str::to_owned).unwrap_or_else(|| ctx.ws.clone());
        if !ctx
            .user
            .can(&ws, rhizo_protocol::user::Permission::ReadWrite)
        {
            return fail(403, format!("Permission denied for workspace {ws}"));
        }
        let ctx = Ctx {
            from: format!("{ws}/{}", ctx.cid),
            ws: ws.clone(),
            ..ctx
        };
        let Ok(message) = rmpv::decode::read_value(&mut &body[..]) else {
            return fail(400, "The body is not one msgpack value".into());
        };
        if get_str(&message, "type") != Some("method") {
            return fail(400, "Stateless calls require type='method'".into());
        }
        let Some(to) = get_str(&message, "to").filter(|t| t.contains(':')) else {
            return fail(
                400,
                "Invalid target format, expected 'client_id:service_id'".into(),
            );
        };
        let Some(method) = get_str(&message, "method").filter(|m| !m.is_empty()) else {
            return fail(400, "method must be a non-empty string".into());
        };
        let args = match get(&message, "args") {
            None | Some(Value::Nil) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return fail(400, "args must be a list".into()),
        };
        let kwargs = match get(&message, "kwargs") {
            None | Some(Value::Nil) => Value::Map(Vec::new()),
            Some(m @ Value::Map(_)) => m.clone(),
            Some(_) => return fail(400, "kwargs must be a map".into()),
        };
        match self
            .http_call_with(&ctx, &ws, to, method, args, kwargs, None)
            .await
        {
            Ok(result) => (
                200,
                serde_json::json!({"success": true, "result": value::to_json(&result)}),
            ),
            Err(ManagerError::NotFound(d)) if d.ends_with(" not found.") => {
                fail(404, format!("Method '{method}' not found"))
            }
            Err(e) => fail(e.status().as_u16(), e.wire()),
        }
    }
}

// === impl Manager (HTTP apps) ===

impl Manager {
    /// The live service object of `service_id` (relative to `ws`) for an HTTP caller.
    pub async fn http_service_object(
        &self,
        ctx: &Ctx,
        ws: &str,
        service_id: &str,
        mode: Option<&str>,
    ) -> ManagerResult<Value> {
        let config = mode_config(mode);
        self.get_service(ctx, &Value::from(absolute_id(ws, service_id)), &config)
            .await
    }

    /// Calls an encoded method `member` of a service object with positional `args` on
    /// behalf of the HTTP caller `ctx`.
    pub async fn http_invoke(
        &self,
        ctx: &Ctx,
        member: &Value,
        args: Vec<Value>,
        timeout: Duration,
    ) -> ManagerResult<Value> {
        let (target, method) = method_route(member)?;
        let user = user_value(&ctx.user);
        self.call_client_as(target, method, args, None, (&ctx.ws, &user), timeout)
            .await
    }
}

/// A `get_service` config carrying only a selection mode.
fn mode_config(mode: Option<&str>) -> Value {
    mode.map(|m| map([("mode", m.into())]))
        .unwrap_or(Value::Nil)
}

fn absolute_id(ws: &str, service_id: &str) -> String {
    if service_id.contains('/') {
        service_id.to_owned()
    } else {
        format!("{ws}/{service_id}")
    }
}

fn user_value(user: &UserInfo) -> Value {
    value::from_json(&serde_json::to_value(user).unwrap_or_default())
}

/// The `_rtarget` and `_rmethod` of an encoded method.
fn method_route(member: &Value) -> ManagerResult<(&str, &str)> {
    let missing = |what: &str| ManagerError::InvalidArgument(format!("method without a {what}"));
    let target = get_str(member, "_rtarget").ok_or_else(|| missing("target"))?;
    let method = get_str(member, "_rmethod").ok_or_else(|| missing("path"))?;
    Ok((target, method))
}
