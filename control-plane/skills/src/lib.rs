//! rhizo's agent skills (workspace-api.md §8.1, §9.4 `agent-skills`): the documents an
//! LLM agent reads to use this server, generated per request from the live services the
//! caller may see, following the Agent Skills layout (a `SKILL.md` with YAML front
//! matter `name` and `description`, and pages beside it).
//!
//! Routes ([`AgentSkills`] is a `ControlService` that adds them; CORS comes from the
//! control plane's open CORS layer over every route):
//!
//! | route                                   | documents                                  |
//! |-----------------------------------------|--------------------------------------------|
//! | `GET /{ws}/agent-skills/`               | JSON listing of the pages of workspace `ws` |
//! | `GET /{ws}/agent-skills/{page}`         | `SKILL.md`, `AUTH.md`, `services/<name>.md`, `skills.zip` |
//! | `GET /ws/agent-skills/…`                | the same for the caller's own workspace (the token's; `public` without a token) |
//!
//! The caller comes from the token (`Authorization: Bearer`, the `access_token` cookie
//! or `?token=`) through [`ServiceHost::caller`]; the pages list only the services it may
//! see in that workspace: public ones for everyone; protected and unlisted ones when it
//! may read the workspace (protected ones also when its workspace is authorized). In
//! `public` the control-plane services (`queue`, `artifact-manager`, …) are listed too,
//! from their function specs. An unknown workspace is a 404; a bad token a 403.
//!
//! The RPC function `get_file(path, workspace)` of `public/agent-skills` answers the
//! same pages to connected clients.
//!
//! Off with `--disable-agent-skills` (the service and its routes are not added: 404).

pub mod docs;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use docs::{Catalog, FunctionDoc, ParamDoc, ServiceDoc};
use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::registry::{Pattern, ServiceRecord, Visibility};
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec, ServiceHost};
use rhizo_control_plane::{ManagerError, ManagerResult};
use rhizo_protocol::user::Permission;
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// Most services one workspace's pages describe (the rest are left out).
pub const MAX_SERVICES: usize = 200;

/// Most functions one service page describes.
pub const MAX_FUNCTIONS: usize = 200;

/// `public/agent-skills` and its routes.
pub struct AgentSkills {
    inner: Arc<Inner>,
}

struct Inner {
    host: OnceLock<Arc<dyn ServiceHost>>,
    /// Ids of the control-plane services to describe in `public`.
    control_ids: Vec<&'static str>,
}

impl std::fmt::Debug for AgentSkills {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSkills")
            .field("control_ids", &self.inner.control_ids)
            .finish_non_exhaustive()
    }
}

const FUNCTIONS: &[FunctionSpec] = &[FunctionSpec {
    name: "get_file",
    params: &[("path", true), ("workspace", true)],
    doc: "The agent-skills page `path` (default SKILL.md; AUTH.md, services/<name>.md) of \
          `workspace` (default: yours) as text, listing only the services you may see.",
}];

// === impl AgentSkills ===

impl AgentSkills {
    /// The service, describing in `public` also the control-plane services
    /// `control_ids` (looked up through the host at each request).
    pub fn new(control_ids: Vec<&'static str>) -> Arc<AgentSkills> {
        Arc::new(AgentSkills {
            inner: Arc::new(Inner {
                host: OnceLock::new(),
                control_ids,
            }),
        })
    }
}

// === impl Inner ===

impl Inner {
    fn host(&self) -> ManagerResult<&Arc<dyn ServiceHost>> {
        self.host
            .get()
            .ok_or_else(|| ManagerError::Internal("agent skills are not attached".into()))
    }

    /// What `ctx` may see of workspace `ws`.
    fn catalog(&self, ctx: &Ctx, ws: &str) -> ManagerResult<Catalog> {
        let host = self.host()?;
        if ws != "public" && host.workspace(ws).is_none() {
            return Err(ManagerError::NotFound(format!("Workspace {ws} not found")));
        }
        let records = host.find_services(&Pattern {
            ws: Some(ws),
            ..Default::default()
        });
        let mut by_key: BTreeMap<String, ServiceDoc> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| !r.is_built_in() && may_see(ctx, r))
        {
            let doc = record_doc(r);
            // Replicas of one service (same name, several clients) share a page.
            by_key.entry(doc.key.clone()).or_insert(doc);
        }
        if ws == "public" {
            for id in &self.control_ids {
                if let Some(s) = host.service(id) {
                    let doc = control_doc(s.as_ref());
                    by_key.entry(doc.key.clone()).or_insert(doc);
                }
            }
        }
        Ok(Catalog {
            base_url: host.public_base_url(),
            workspace: ws.to_owned(),
            can_read: ws == "public" || ctx.user.can(ws, Permission::Read),
            services: by_key.into_values().take(MAX_SERVICES).collect(),
        })
    }
}

/// Whether `ctx` may see `r` in a listing (see the crate docs).
fn may_see(ctx: &Ctx, r: &ServiceRecord) -> bool {
    let reader = ctx.user.can(&r.ws, Permission::Read);
    match r.visibility {
        Visibility::Public => true,
        Visibility::Unlisted => reader,
        Visibility::Protected => reader || r.authorized.contains(&ctx.ws),
    }
}

fn record_doc(r: &ServiceRecord) -> ServiceDoc {
    let rec = &r.record;
    let text = |k: &str| value::get_str(rec, k).unwrap_or("").to_owned();
    let schema = value::get(rec, "service_schema")
        .map(value::to_json)
        .unwrap_or_default();
    let public = r.ws == "public";
    ServiceDoc {
        key: docs::page_key(&r.name),
        id: r.id(),
        // `public` picks any live replica by name; elsewhere the exact client is named.
        rpc_id: if public {
            format!("public/{}", r.name)
        } else {
            r.id()
        },
        http_id: if public {
            r.name.clone()
        } else {
            format!("{}:{}", r.cid, r.name)
        },
        name: Some(text("name"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| r.name.clone()),
        description: text("description"),
        docs: text("docs"),
        kind: r.kind.clone(),
        visibility: r.visibility.as_str().to_owned(),
        functions: docs::functions_from_schema(&schema, MAX_FUNCTIONS),
    }
}

fn control_doc(s: &dyn ControlService) -> ServiceDoc {
    ServiceDoc {
        key: docs::page_key(s.id()),
        id: format!("public/{}", s.id()),
        rpc_id: format!("public/{}", s.id()),
        http_id: s.id().to_owned(),
        name: s.name().to_owned(),
        description: s.description().to_owned(),
        docs: String::new(),
        kind: s.service_type().to_owned(),
        visibility: "public".into(),
        functions: s
            .functions()
            .iter()
            .map(|f| FunctionDoc {
                path: f.name.to_owned(),
                description: f.doc.to_owned(),
                params: f
                    .params
                    .iter()
                    .map(|(name, optional)| ParamDoc {
                        name: (*name).to_owned(),
                        kind: "any".into(),
                        required: !optional,
                        description: String::new(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl ControlService for AgentSkills {
    fn id(&self) -> &'static str {
        "agent-skills"
    }

    fn name(&self) -> &str {
        "Agent Skills"
    }

    fn description(&self) -> &str {
        "Agent Skills documents (SKILL.md, AUTH.md, one page per service) for AI agents, \
         generated from the live services; also at /{workspace}/agent-skills/."
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        FUNCTIONS
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            if function != "get_file" {
                return Err(ManagerError::MethodNotFound(format!(
                    "agent-skills.{function}"
                )));
            }
            let path = args.first().and_then(Value::as_str).unwrap_or("SKILL.md");
            let ws = args.get(1).and_then(Value::as_str).unwrap_or(&ctx.ws);
            let catalog = self.inner.catalog(ctx, ws)?;
            docs::page(&catalog, path)
                .map(Value::from)
                .ok_or_else(|| ManagerError::NotFound(format!("File not found: {path}")))
        })
    }

    fn attach(&self, host: Arc<dyn ServiceHost>) {
        let _ = self.inner.host.set(host);
    }

    fn routes(&self) -> Option<axum::Router> {
        Some(
            axum::Router::new()
                .route("/ws/agent-skills/", get(own_index))
                .route("/ws/agent-skills/{*path}", get(own_page))
                .route("/{ws}/agent-skills", get(redirect))
                .route("/{ws}/agent-skills/", get(index))
                .route("/{ws}/agent-skills/{*path}", get(ws_page))
                .with_state(self.inner.clone()),
        )
    }
}

type Q = Query<HashMap<String, String>>;

/// The caller of a request to workspace `url_ws`, and the workspace documented
/// (`url_ws`, or for `/ws/…` the caller's own).
fn resolve(
    inner: &Inner,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    url_ws: Option<&str>,
) -> ManagerResult<(Ctx, String)> {
    let token =
        rhizo_control_plane::http::request_token(headers).or_else(|| q.get("token").cloned());
    let ctx = inner
        .host()?
        .caller(token.as_deref(), url_ws.unwrap_or("ws"))?;
    let ws = match url_ws {
        Some(w) => w.to_owned(),
        // Anonymous HTTP callers have no workspace of their own to document.
        None if ctx.ws == "ws-anonymous" => "public".to_owned(),
        None => ctx.ws.clone(),
    };
    Ok((ctx, ws))
}

fn failure(e: ManagerError) -> Response {
    let status = match &e {
        ManagerError::Permission(_) => StatusCode::FORBIDDEN,
        e => e.status(),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        e.to_string(),
    )
        .into_response()
}

fn listing(
    inner: &Inner,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    url_ws: Option<&str>,
) -> Response {
    match resolve(inner, headers, q, url_ws).and_then(|(ctx, ws)| inner.catalog(&ctx, &ws)) {
        Ok(c) => axum::Json(docs::index_json(&c)).into_response(),
        Err(e) => failure(e),
    }
}

fn serve(
    inner: &Inner,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    url_ws: Option<&str>,
    path: &str,
) -> Response {
    let catalog =
        match resolve(inner, headers, q, url_ws).and_then(|(ctx, ws)| inner.catalog(&ctx, &ws)) {
            Ok(c) => c,
            Err(e) => return failure(e),
        };
    let path = path.trim_matches('/');
    match path {
        "" | "index.json" => axum::Json(docs::index_json(&catalog)).into_response(),
        "skills.zip" | "download.zip" | "create-zip-file" => match docs::zip(&catalog) {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, "application/zip".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename={}.zip",
                            docs::skill_name(&catalog.workspace)
                        ),
                    ),
                ],
                bytes,
            )
                .into_response(),
            Err(e) => failure(ManagerError::Internal(format!("building the zip: {e}"))),
        },
        p => match docs::page(&catalog, p) {
            Some(text) => (
                [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                text,
            )
                .into_response(),
            None => failure(ManagerError::NotFound(format!("File not found: {p}"))),
        },
    }
}

async fn own_index(State(i): State<Arc<Inner>>, headers: HeaderMap, Query(q): Q) -> Response {
    listing(&i, &headers, &q, None)
}

async fn own_page(
    State(i): State<Arc<Inner>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    serve(&i, &headers, &q, None, &path)
}

async fn redirect() -> axum::response::Redirect {
    axum::response::Redirect::temporary("agent-skills/")
}

async fn index(
    State(i): State<Arc<Inner>>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    listing(&i, &headers, &q, Some(&ws))
}

async fn ws_page(
    State(i): State<Arc<Inner>>,
    Path((ws, path)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    serve(&i, &headers, &q, Some(&ws), &path)
}
