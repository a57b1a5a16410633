//! Resolution of a service id to one record (protocol.md §4.6, workspace-api.md §2.2,
//! §2.3): the id grammar `ws/cid:name@app` (any part possibly `*`), the visibility rules,
//! and the selection modes when several providers match.

use super::{Pattern, Registry, ServiceRecord, Visibility};
use crate::error::{ManagerError, ManagerResult};
use crate::manager::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value;
use rmpv::Value;

/// A parsed service id (workspace-api.md §2.2): `ws/cid:name@app`, any part possibly `*`.
struct ServiceId {
    ws: String,
    cid: String,
    name: String,
    app: Option<String>,
}

/// Parses `id` relative to the caller's workspace. Errors: [`ManagerError::InvalidArgument`]
/// (`Invalid service id: …`) for more than one `/` or an empty name.
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

/// Whether the caller may see `r`, and whether it was admitted through
/// `authorized_workspaces` (then the list is hidden from it): `None` when it may not.
pub(super) fn visible(ctx: &Ctx, r: &ServiceRecord) -> Option<bool> {
    match r.visibility {
        Visibility::Public | Visibility::Unlisted => Some(false),
        Visibility::Protected if ctx.user.can(&r.ws, Permission::Read) => Some(false),
        Visibility::Protected if r.authorized.contains(&ctx.ws) => Some(true),
        Visibility::Protected => None,
    }
}

/// The record as the caller sees it: without `config.authorized_workspaces` when
/// `hide_authorized`.
pub(super) fn presented(r: &ServiceRecord, hide_authorized: bool) -> Value {
    let mut rec = r.record.clone();
    if hide_authorized {
        if let Some(mut c) = value::get(&rec, "config").cloned() {
            value::remove(&mut c, "authorized_workspaces");
            value::set(&mut rec, "config", c);
        }
    }
    rec
}

// === impl Registry (resolution) ===

impl Registry {
    /// Finds the one record `service_id` names for the caller, by `mode` (`exact` —
    /// the default outside `public` —, `first`, `last`, `random` — the default in
    /// `public` —, `min_load`, `select:…`), and whether `authorized_workspaces` must be
    /// hidden from the caller.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] (bad id, workspace `*`, several matches
    /// in `exact` mode, unknown mode), [`ManagerError::NotFound`]
    /// (`Service not found: ws/cid:name@app`), [`ManagerError::Permission`] when no match
    /// is visible to the caller.
    pub fn resolve(
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
        let found = self.find_all(&pattern);
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
            .filter_map(|r| visible(ctx, &r).map(|h| (r, h)))
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

    /// The stored record `service_id` resolves to ([`Registry::resolve`]), as the caller
    /// may see it (`get_service_info`, workspace-api.md §5.1).
    pub fn info(&self, ctx: &Ctx, service_id: &str, mode: Option<&str>) -> ManagerResult<Value> {
        let (r, hide) = self.resolve(ctx, service_id, mode)?;
        Ok(presented(&r, hide))
    }
}
