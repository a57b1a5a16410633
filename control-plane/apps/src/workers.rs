//! Finding the worker for an app and calling it (apps-workers.md §1.6, §3): workers are
//! services of type `server-app-worker` registered by any client, in the app's workspace
//! (which shadow the public ones for a type) or in `public`.
//!
//! A worker is called through the members of its live service object (`_rtarget`,
//! `_rmethod`), on behalf of the session's workspace, so a worker registered with
//! `visibility: "protected"` serves the apps of its own workspace (the reference calls
//! from `public` and refuses those; apps-workers.md issue notes).

use crate::error::{AppsError, AppsResult};
use rhizo_control_plane::registry::Pattern;
use rhizo_control_plane::service::ServiceHost;
use rhizo_control_plane::Ctx;
use rhizo_protocol::user::UserInfo;
use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use std::time::Duration;

/// How long a worker may take to hand over its service object.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker as the controller uses it.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Full service id, `ws/client_id:service_id` (§0).
    pub id: String,
    /// The workspace it is registered in.
    pub ws: String,
    /// `ws/client_id` of the client providing it.
    pub client: String,
    /// Display name and description.
    pub name: String,
    /// Description.
    pub description: String,
    /// App types it runs.
    pub supported_types: Vec<String>,
    /// Its live service object (encoded members).
    pub object: Value,
}

// === impl Worker ===

impl Worker {
    fn from_object(id: &str, object: Value) -> Worker {
        let (ws, rest) = id.split_once('/').unwrap_or(("", id));
        let cid = rest.split_once(':').map(|(c, _)| c).unwrap_or(rest);
        let name = get_str(&object, "name").unwrap_or(id).to_owned();
        Worker {
            id: id.to_owned(),
            ws: ws.to_owned(),
            client: format!("{ws}/{cid}"),
            description: get_str(&object, "description").unwrap_or("").to_owned(),
            supported_types: value::get_strs(&object, "supported_types"),
            name,
            object,
        }
    }

    /// Whether it has a member function `name` (e.g. `compile`, `execute`).
    pub fn has(&self, name: &str) -> bool {
        get(&self.object, name).is_some_and(|m| get_str(m, "_rtarget").is_some())
    }

    /// The base URL the worker should reach the server on (§1.5 step 9, `use_local_url`).
    pub fn server_url(&self, local: &str, public: &str) -> String {
        match get(&self.object, "use_local_url") {
            Some(Value::String(s)) if s.as_str().is_some_and(|s| !s.is_empty()) => s
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            Some(Value::Boolean(true)) => local.to_owned(),
            _ => public.to_owned(),
        }
    }

    /// Calls member `name` with `args` (and keyword arguments `kwargs`, a map) on behalf
    /// of `ws`/`user`, waiting `timeout` (restarted by the worker's heartbeats).
    ///
    /// Errors: [`AppsError::Worker`] when the worker lacks the function, rejects the call,
    /// times out or is gone.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        host: &dyn ServiceHost,
        name: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
        ws: &str,
        user: &UserInfo,
        timeout: Duration,
    ) -> AppsResult<Value> {
        let member = get(&self.object, name).ok_or_else(|| {
            AppsError::Worker(format!("Worker {} has no function {name}", self.id))
        })?;
        let (Some(target), Some(method)) =
            (get_str(member, "_rtarget"), get_str(member, "_rmethod"))
        else {
            return Err(AppsError::Worker(format!(
                "Worker {} member {name} is not a function",
                self.id
            )));
        };
        host.call_client(target, method, args, kwargs, ws, user, timeout)
            .await
            .map_err(|e| AppsError::Worker(e.to_string()))
    }
}

/// The root identity acting in `ws` on the controller's own behalf.
pub fn root_ctx(host: &dyn ServiceHost, ws: &str) -> Ctx {
    let addr = host.manager_addr();
    Ctx {
        ws: ws.to_owned(),
        cid: addr.trim_start_matches("*/").to_owned(),
        from: addr,
        user: UserInfo::root(),
    }
}

/// The live worker `id` (`ws/cid:sid`), fetched from its provider.
///
/// Errors: [`AppsError::NotFound`] (`Worker … not found`) when no such service is live.
pub async fn fetch(host: &dyn ServiceHost, id: &str) -> AppsResult<Worker> {
    let ws = id.split_once('/').map(|(w, _)| w).unwrap_or("public");
    let ctx = root_ctx(host, ws);
    let object = host
        .get_service(&ctx, id, FETCH_TIMEOUT)
        .await
        .map_err(|e| AppsError::NotFound(format!("Worker {id} not found: {e}")))?;
    Ok(Worker::from_object(id, object))
}

/// The live workers registered in `ws`, in registry order; those whose object cannot be
/// fetched (their client is leaving) are skipped.
pub async fn in_workspace(host: &dyn ServiceHost, ws: &str) -> Vec<Worker> {
    let records = host.find_services(&Pattern {
        ws: Some(ws),
        kind: Some("server-app-worker"),
        ..Default::default()
    });
    let mut out = Vec::new();
    for r in records {
        match fetch(host, &r.id()).await {
            Ok(w) => out.push(w),
            Err(e) => tracing::debug!(worker = %r.id(), error = %e, "worker skipped"),
        }
    }
    out
}

/// Selection among `candidates` by `mode` (§1.6 step 5): none/`random`, `first`, `last`,
/// `exact`, `min_load` (load figures of workers are not sampled yet: the first), or
/// `select:<min|max|first_success>:<function>` (calls `function()` on each worker).
///
/// Errors: [`AppsError::Invalid`] for an unknown or malformed mode, or several
/// candidates in `exact` mode.
pub async fn select(
    host: &dyn ServiceHost,
    mut candidates: Vec<Worker>,
    mode: Option<&str>,
    app_type: &str,
) -> AppsResult<Worker> {
    let n = candidates.len();
    debug_assert!(n > 0);
    let pick = match mode.unwrap_or("random") {
        "random" => rand::random::<usize>() % n,
        "first" | "min_load" => 0,
        "last" => n - 1,
        "exact" if n > 1 => {
            return Err(AppsError::Invalid(format!(
                "Multiple workers found for app type {app_type} but selection mode is 'exact'"
            )))
        }
        "exact" => 0,
        m if m.starts_with("select:") => select_by_call(host, &candidates, m).await?,
        m => {
            return Err(AppsError::Invalid(format!(
                "Invalid worker selection mode: {m}; valid modes: random, first, last, exact, \
                 min_load, select:<min|max|first_success>:<function>"
            )))
        }
    };
    Ok(candidates.swap_remove(pick))
}

/// `select:<criteria>:<function>`: each worker's `function()` within 2 s; workers lacking
/// it or failing are skipped; nobody answering → random.
async fn select_by_call(
    host: &dyn ServiceHost,
    workers: &[Worker],
    mode: &str,
) -> AppsResult<usize> {
    let mut parts = mode.splitn(3, ':').skip(1);
    let (Some(criteria), Some(function)) = (parts.next(), parts.next()) else {
        return Err(AppsError::Invalid(format!(
            "Malformed selection mode: {mode}"
        )));
    };
    if !matches!(criteria, "min" | "max" | "first_success") || function.is_empty() {
        return Err(AppsError::Invalid(format!(
            "Malformed selection mode: {mode}"
        )));
    }
    let root = UserInfo::root();
    let mut best: Option<(usize, f64)> = None;
    for (i, w) in workers.iter().enumerate() {
        if !w.has(function) {
            continue;
        }
        let got = w
            .call(
                host,
                function,
                vec![],
                None,
                &w.ws,
                &root,
                Duration::from_secs(2),
            )
            .await;
        let Ok(v) = got else { continue };
        if criteria == "first_success" {
            return Ok(i);
        }
        let Some(x) = v.as_f64().or_else(|| v.as_i64().map(|x| x as f64)) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((_, b)) => (criteria == "min" && x < b) || (criteria == "max" && x > b),
        };
        if better {
            best = Some((i, x));
        }
    }
    Ok(best
        .map(|(i, _)| i)
        .unwrap_or_else(|| rand::random::<usize>() % workers.len()))
}
