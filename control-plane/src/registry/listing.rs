//! Listing and searching the registry (workspace-api.md §5.1): `list_services` with its
//! query forms, `list_clients` and the service part of `get_summary` (`search_services`
//! is in [`super::search`]).

use super::resolve::{presented, visible};
use super::{Pattern, Registry, Visibility};
use crate::error::{ManagerError, ManagerResult};
use crate::manager::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{get, map};
use rmpv::Value;

/// The `query` of `list_services`: a string `ws`, `ws/name`, `ws/cid:name`, `cid:name`
/// (each with an optional `@app`), or a map of `workspace`, `client_id`, `service_id` /
/// `id`, `type`, `visibility`, `app_id`. `None` parts match anything; others may hold `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceQuery {
    /// Workspace; `None` is the caller's, `*` every workspace.
    pub ws: Option<String>,
    /// Client id.
    pub cid: Option<String>,
    /// Service name.
    pub name: Option<String>,
    /// Service type.
    pub kind: Option<String>,
    /// App id.
    pub app: Option<String>,
    /// Exact visibility.
    pub visibility: Option<String>,
}

// === impl ServiceQuery ===

impl ServiceQuery {
    /// Parses the wire `query` (nil: the caller's workspace).
    ///
    /// Errors: [`ManagerError::InvalidArgument`] for unknown map keys or another type.
    pub fn parse(query: &Value) -> ManagerResult<Self> {
        let mut q = ServiceQuery::default();
        match query {
            Value::Nil => {}
            Value::String(s) => {
                let s = s.as_str().unwrap_or_default();
                let (text, app) = match s.split_once('@') {
                    Some((t, a)) => (t, Some(a.to_owned())),
                    None => (s, None),
                };
                q.app = app;
                match (text.split_once('/'), text.split_once(':')) {
                    (Some((w, rest)), _) => {
                        q.ws = Some(w.to_owned());
                        match rest.split_once(':') {
                            Some((c, n)) => {
                                q.cid = Some(c.to_owned());
                                q.name = Some(n.to_owned());
                            }
                            None => q.name = Some(rest.to_owned()),
                        }
                    }
                    (None, Some((c, n))) => {
                        q.cid = Some(c.to_owned());
                        q.name = Some(n.to_owned());
                    }
                    (None, None) => q.ws = Some(text.to_owned()),
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
                        "workspace" => q.ws = v.or(q.ws),
                        "client_id" => q.cid = v,
                        "service_id" | "id" => {
                            if let Some(v) = v {
                                match v.split_once('@') {
                                    Some((n, a)) => {
                                        q.name = Some(n.to_owned());
                                        q.app = Some(a.to_owned());
                                    }
                                    None => q.name = Some(v),
                                }
                            }
                        }
                        "type" => q.kind = v,
                        "visibility" => q.visibility = v,
                        _ => q.app = v,
                    }
                }
            }
            _ => {
                return Err(ManagerError::InvalidArgument(
                    "query must be a string or a map".into(),
                ))
            }
        }
        Ok(q)
    }
}

// === impl Registry (listing) ===

impl Registry {
    /// The records matching `query` the caller may see (§5.1): public ones, unlisted ones
    /// of its own workspace when `include_unlisted`, protected ones it may read (in a
    /// listing over every workspace, only its own workspace's protected ones). Other
    /// workspaces' `built-in` services appear only when asked for by name.
    ///
    /// Errors: [`ManagerError::Permission`] for `include_unlisted` outside the caller's
    /// workspace.
    pub fn list(
        &self,
        ctx: &Ctx,
        query: &ServiceQuery,
        include_unlisted: bool,
    ) -> ManagerResult<Vec<Value>> {
        let ws = query.ws.clone().unwrap_or_else(|| ctx.ws.clone());
        // The reference's wording (clients and test suites match on it).
        if include_unlisted && ws == "*" {
            return Err(ManagerError::Permission(
                "Cannot include unlisted services when searching all workspaces.".into(),
            ));
        }
        if include_unlisted && ws != ctx.ws {
            return Err(ManagerError::Permission(format!(
                "Cannot include unlisted services from workspace {ws}. Only services from \
                 your current workspace ({}) can include unlisted services.",
                ctx.ws
            )));
        }
        let all_ws = ws == "*";
        let pattern = Pattern {
            ws: if all_ws { None } else { Some(&ws) },
            cid: query.cid.as_deref(),
            name: query.name.as_deref(),
            app_id: query.app.as_deref(),
            kind: query.kind.as_deref(),
        };
        let mut out = Vec::new();
        for r in self.find_all(&pattern) {
            if r.is_built_in() && query.name.is_none() && r.ws != ctx.ws {
                continue;
            }
            if query
                .visibility
                .as_deref()
                .is_some_and(|v| v != r.visibility.as_str())
            {
                continue;
            }
            let own = r.ws == ctx.ws;
            let shown = match r.visibility {
                Visibility::Public => Some(false),
                Visibility::Unlisted => (own && include_unlisted).then_some(false),
                Visibility::Protected if all_ws && !own => None,
                Visibility::Protected => visible(ctx, &r),
            };
            if let Some(hide) = shown {
                out.push(presented(&r, hide));
            }
        }
        Ok(out)
    }

    /// `list_clients(workspace)`: `{id: "ws/cid", user}` per live client of `ws` (the
    /// caller's by default). Errors: [`ManagerError::Permission`] without read permission.
    pub fn list_clients(&self, ctx: &Ctx, workspace: Option<&str>) -> ManagerResult<Vec<Value>> {
        let ws = workspace.unwrap_or(&ctx.ws);
        ctx.require(ws, Permission::Read)?;
        Ok(self
            .clients_all(ws)
            .into_iter()
            .map(|r| {
                let user = get(&r.record, "config")
                    .and_then(|c| get(c, "created_by"))
                    .cloned()
                    .unwrap_or(Value::Nil);
                map([("id", format!("{}/{}", r.ws, r.cid).into()), ("user", user)])
            })
            .collect())
    }

    /// The clients (`"ws/cid"`) and services (`{id, name, type, description, config}`,
    /// `built-in` left out) of `ws`, for `get_summary`.
    pub fn summary(&self, ws: &str) -> (Vec<Value>, Vec<Value>) {
        let clients = self
            .clients_all(ws)
            .iter()
            .map(|r| format!("{}/{}", r.ws, r.cid).into())
            .collect();
        let services = self
            .find_all(&Pattern {
                ws: Some(ws),
                ..Default::default()
            })
            .into_iter()
            .filter(|r| !r.is_built_in())
            .map(|r| {
                let rec = &r.record;
                map([
                    ("id", r.id().into()),
                    ("name", get(rec, "name").cloned().unwrap_or(Value::Nil)),
                    ("type", r.kind.as_str().into()),
                    (
                        "description",
                        get(rec, "description").cloned().unwrap_or(Value::Nil),
                    ),
                    ("config", get(rec, "config").cloned().unwrap_or(Value::Nil)),
                ])
            })
            .collect();
        (clients, services)
    }
}
