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

/// The records a service id names that the caller may see ([`Registry::candidates`]).
#[derive(Debug)]
pub struct Candidates {
    /// The id as looked up, `ws/cid:name@app` (parts the caller left out are `*`).
    pub full: String,
    /// The workspace the id names.
    pub ws: String,
    /// The visible records, in key order, each with whether `authorized_workspaces` must
    /// be hidden from the caller. Never empty.
    pub found: Vec<(ServiceRecord, bool)>,
}

/// How a `select:` mode picks among the candidates' answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// The smallest number.
    Min,
    /// The largest number.
    Max,
    /// The first candidate (in key order) that answered at all.
    FirstSuccess,
}

/// Parses `select:<criterion>:<function>` into the criterion and the function to call on
/// every candidate; `None` for another mode.
///
/// Errors: [`ManagerError::InvalidArgument`] for a `select:` mode of another shape or an
/// unknown criterion (the reference's wording).
pub fn parse_select(mode: &str) -> ManagerResult<Option<(Criterion, String)>> {
    if !mode.starts_with("select:") {
        return Ok(None);
    }
    let parts: Vec<&str> = mode.split(':').collect();
    let [_, criterion, function] = parts[..] else {
        return Err(ManagerError::InvalidArgument(format!(
            "Invalid select mode format: {mode}. Expected 'select:criteria:function'"
        )));
    };
    let criterion = match criterion {
        "min" => Criterion::Min,
        "max" => Criterion::Max,
        "first_success" => Criterion::FirstSuccess,
        other => {
            return Err(ManagerError::InvalidArgument(format!(
                "Unknown selection criteria: {other}"
            )))
        }
    };
    if function.is_empty() {
        return Err(ManagerError::InvalidArgument(format!(
            "Invalid select mode format: {mode}. Expected 'select:criteria:function'"
        )));
    }
    Ok(Some((criterion, function.to_owned())))
}

// === impl Registry (resolution) ===

impl Registry {
    /// Every record `service_id` names that the caller may see, in key order, each with
    /// whether `authorized_workspaces` must be hidden from the caller; and the workspace
    /// the id names.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] (bad id, workspace `*`),
    /// [`ManagerError::NotFound`] (`Service not found: ws/cid:name@app`),
    /// [`ManagerError::Permission`] when no match is visible to the caller.
    pub fn candidates(&self, ctx: &Ctx, service_id: &str) -> ManagerResult<Candidates> {
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
        Ok(Candidates {
            full,
            ws: sid.ws,
            found: visible,
        })
    }

    /// Finds the one record `service_id` names for the caller, by `mode` (`exact` —
    /// the default outside `public` —, `first`, `last`, `random` — the default in
    /// `public` —, `native:random`, `min_load`, `select:<min|max|first_success>:<fn>`),
    /// and whether `authorized_workspaces` must be hidden from the caller.
    ///
    /// `min_load` picks the provider with the fewest calls in flight (ties at random);
    /// `select:…` needs to call every candidate, which this synchronous lookup cannot:
    /// here it picks at random, as the reference does when no candidate answers (the
    /// manager's `get_service` calls them, `crate::manager`'s lookup).
    ///
    /// Errors: those of [`Registry::candidates`]; [`ManagerError::InvalidArgument`] for
    /// several matches in `exact` mode or an unknown mode.
    pub fn resolve(
        &self,
        ctx: &Ctx,
        service_id: &str,
        mode: Option<&str>,
    ) -> ManagerResult<(ServiceRecord, bool)> {
        let c = self.candidates(ctx, service_id)?;
        let default_mode = if c.ws == "public" { "random" } else { "exact" };
        let mode = mode.unwrap_or(default_mode);
        let n = c.found.len();
        let pick = match mode {
            "exact" => {
                if n > 1 {
                    let ids: Vec<String> = c.found.iter().map(|(r, _)| r.id()).collect();
                    return Err(ManagerError::InvalidArgument(format!(
                        "Multiple services found for {}: {}; pass a client id or config.mode",
                        c.full,
                        ids.join(", ")
                    )));
                }
                0
            }
            "first" => 0,
            "last" => n - 1,
            "random" | "native:random" => rand::random::<usize>() % n,
            "min_load" => self.least_loaded(&c.found),
            m if m.starts_with("select:") => {
                parse_select(m)?;
                rand::random::<usize>() % n
            }
            m => {
                return Err(ManagerError::InvalidArgument(format!(
                    "Invalid mode: {m}. Mode must be 'random', 'first', 'last', 'exact', \
                     'min_load', 'native:random', or 'select:criteria:function' format \
                     (e.g., 'select:min:get_load')"
                )))
            }
        };
        Ok(c.found.into_iter().nth(pick).expect("index in range"))
    }

    /// The index of the candidate whose client has the fewest calls in flight (calls
    /// delivered and not yet answered, as the router counts them); a client this node
    /// does not hold counts 0, as the reference counts every client that does not report
    /// its load. Ties are broken at random.
    fn least_loaded(&self, found: &[(ServiceRecord, bool)]) -> usize {
        let loads: Vec<u64> = found
            .iter()
            .map(|(r, _)| {
                self.router
                    .client(&format!("{}/{}", r.ws, r.cid))
                    .map_or(0, |p| p.calls_in_flight)
            })
            .collect();
        let min = loads.iter().copied().min().unwrap_or(0);
        let tied: Vec<usize> = (0..loads.len()).filter(|i| loads[*i] == min).collect();
        tied[rand::random::<usize>() % tied.len()]
    }

    /// The stored record `service_id` resolves to ([`Registry::resolve`]), as the caller
    /// may see it (`get_service_info`, workspace-api.md §5.1).
    pub fn info(&self, ctx: &Ctx, service_id: &str, mode: Option<&str>) -> ManagerResult<Value> {
        let (r, hide) = self.resolve(ctx, service_id, mode)?;
        Ok(presented(&r, hide))
    }
}
