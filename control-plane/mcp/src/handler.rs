//! The MCP server behind both transports: answers `initialize`, `tools/*`, `resources/*`
//! and `prompts/*` for the Hypha service of the request ([`Target`]), calling its functions
//! as the HTTP caller (workspace-api.md §8.1).

use crate::adapter::{Adapter, Kind, ResourceSource};
use crate::results;
use rhizo_control_plane::error::ManagerError;
use rhizo_control_plane::manager::{Ctx, Manager};
use rhizo_protocol::value;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use rmpv::Value;
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// The service an MCP request is about and who asks: the caller's context, the URL's
/// workspace, the service id as the URL gives it (`svc`, `client:svc`, `ws/client:svc`,
/// with an optional `@app_id`), and the `_mode` query.
#[derive(Debug, Clone)]
pub struct Target {
    /// The HTTP caller.
    pub ctx: Ctx,
    /// The workspace of the URL.
    pub ws: String,
    /// The service id of the URL.
    pub service_id: String,
    /// `_mode` (`random`, `first`, …) when several services match.
    pub mode: Option<String>,
}

/// A [`Target`] with its service read: what a streamable-HTTP request carries in its
/// extensions once the route has checked the service exists and is visible.
#[derive(Debug)]
pub struct Resolved {
    /// Who asks and for what.
    pub target: Target,
    /// The service's MCP view.
    pub adapter: Adapter,
}

/// Why a [`Target`] could not be served.
#[derive(Debug)]
pub enum ResolveError {
    /// Unknown, or not visible to the caller.
    NotFound(String),
    /// A `type: "mcp"` service that breaks the MCP structure.
    NotCompatible(String),
    /// Anything else (store, timeout).
    Other(String),
}

/// Reads the service of `t` as its caller sees it.
///
/// Errors: [`ResolveError::NotFound`] for unknown or invisible services (the manager's
/// not-found and permission errors), [`ResolveError::NotCompatible`] from
/// [`Adapter::new`].
pub async fn resolve(m: &Arc<Manager>, t: &Target) -> Result<Adapter, ResolveError> {
    let sort = |e: ManagerError| match e {
        ManagerError::NotFound(d) | ManagerError::Permission(d) => ResolveError::NotFound(d),
        other => ResolveError::Other(other.wire()),
    };
    let info = m
        .http_service_info(&t.ctx, &t.ws, &t.service_id, t.mode.as_deref())
        .map_err(sort)?;
    let service = m
        .http_service_object(&t.ctx, &t.ws, &t.service_id, t.mode.as_deref())
        .await
        .map_err(sort)?;
    Adapter::new(&info, &service).map_err(ResolveError::NotCompatible)
}

/// One MCP server instance: per request (streamable HTTP, where the route put a
/// [`Resolved`] into the request's extensions) or per SSE session (`fixed`, re-read on
/// every request so a re-registered service is picked up).
#[derive(Clone)]
pub struct Handler {
    manager: Arc<Manager>,
    fixed: Option<Target>,
}

impl Handler {
    /// A handler that serves what each request's extensions name.
    pub fn per_request(manager: Arc<Manager>) -> Self {
        Handler {
            manager,
            fixed: None,
        }
    }

    /// A handler bound to one target (an SSE session).
    pub fn fixed(manager: Arc<Manager>, target: Target) -> Self {
        Handler {
            manager,
            fixed: Some(target),
        }
    }

    async fn resolved(&self, cx: &RequestContext<RoleServer>) -> Result<Arc<Resolved>, McpError> {
        if let Some(r) = cx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Arc<Resolved>>())
        {
            return Ok(r.clone());
        }
        let target = self
            .fixed
            .clone()
            .ok_or_else(|| McpError::internal_error("request without a target service", None))?;
        match resolve(&self.manager, &target).await {
            Ok(adapter) => Ok(Arc::new(Resolved { target, adapter })),
            Err(ResolveError::NotFound(d)) => Err(McpError::invalid_request(
                format!(
                    "Service {} not found or not accessible: {d}",
                    target.service_id
                ),
                None,
            )),
            Err(ResolveError::NotCompatible(d)) | Err(ResolveError::Other(d)) => {
                Err(McpError::internal_error(d, None))
            }
        }
    }

    /// Calls `member` with keyword arguments `kwargs` as the request's caller.
    async fn call(&self, r: &Resolved, member: &Value, kwargs: &Json) -> Result<Json, String> {
        let kwargs = match kwargs {
            Json::Object(_) => value::from_json(kwargs),
            _ => Value::Map(Vec::new()),
        };
        self.manager
            .http_invoke_member(&r.target.ctx, member, Vec::new(), kwargs)
            .await
            .map(|v| value::to_json(&v))
            .map_err(|e| e.wire())
    }

    /// Calls the native protocol function `name`; `None` when the service lacks it.
    async fn native(
        &self,
        r: &Resolved,
        name: &str,
        kwargs: Json,
    ) -> Option<Result<Json, McpError>> {
        let f = r.adapter.native_function(name)?;
        Some(
            self.call(r, f, &kwargs)
                .await
                .map_err(|e| McpError::internal_error(e, None)),
        )
    }
}

/// Deserialises an MCP result built as JSON.
fn parse<T: serde::de::DeserializeOwned>(v: Json) -> Result<T, McpError> {
    serde_json::from_value(v)
        .map_err(|e| McpError::internal_error(format!("invalid MCP result: {e}"), None))
}

/// A list a native function returned (anything else counts as empty).
fn list_of(v: Json) -> Vec<Json> {
    match v {
        Json::Array(items) => items,
        _ => Vec::new(),
    }
}

fn tool_error(text: String) -> CallToolResponse {
    CallToolResponse::from(CallToolResult::error(vec![
        rmcp::model::ContentBlock::text(text),
    ]))
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        let caps: ServerCapabilities =
            serde_json::from_value(json!({"tools": {}, "resources": {}, "prompts": {}}))
                .unwrap_or_default();
        InitializeResult::new(caps)
            .with_server_info(Implementation::new("rhizo-mcp", env!("CARGO_PKG_VERSION")))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        cx.peer.set_peer_info(request.clone());
        let mut info = self.negotiate_initialize(&request)?;
        let r = self.resolved(&cx).await?;
        let a = &r.adapter;
        // Capabilities of what the service has, as the reference's SDK derives them from
        // the handlers it registers.
        let (tools, resources, prompts) = match a.kind {
            Kind::Native => (
                a.native_function("list_tools").is_some()
                    || a.native_function("call_tool").is_some(),
                ["list_resources", "list_resource_templates", "read_resource"]
                    .iter()
                    .any(|f| a.native_function(f).is_some()),
                a.native_function("list_prompts").is_some()
                    || a.native_function("get_prompt").is_some(),
            ),
            _ => (
                !a.tools.is_empty(),
                !a.resources.is_empty(),
                !a.prompts.is_empty(),
            ),
        };
        let mut caps = serde_json::Map::new();
        for (on, key) in [
            (tools, "tools"),
            (resources, "resources"),
            (prompts, "prompts"),
        ] {
            if on {
                caps.insert(key.into(), json!({"listChanged": false}));
            }
        }
        info.capabilities = parse(Json::Object(caps))?;
        info.server_info = Implementation::new(a.service_id.clone(), env!("CARGO_PKG_VERSION"));
        if !a.description.is_empty() {
            info.instructions = Some(a.description.clone());
        }
        Ok(info)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let r = self.resolved(&cx).await?;
        let tools = match r.adapter.kind {
            Kind::Native => match self.native(&r, "list_tools", json!({})).await {
                Some(listed) => list_of(listed?)
                    .into_iter()
                    .map(|mut t| {
                        if t.get("inputSchema").is_none() {
                            let schema = t
                                .get("input_schema")
                                .cloned()
                                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                            t["inputSchema"] = schema;
                        }
                        t
                    })
                    .collect(),
                None => Vec::new(),
            },
            _ => r.adapter.tool_list(),
        };
        parse(json!({ "tools": tools }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let r = self.resolved(&cx).await?;
        let arguments = Json::Object(request.arguments.unwrap_or_default());
        let name = request.name.to_string();
        let result = match r.adapter.kind {
            Kind::Native => {
                match self
                    .native(
                        &r,
                        "call_tool",
                        json!({"name": name, "arguments": arguments}),
                    )
                    .await
                {
                    Some(Ok(v)) => Ok(v),
                    Some(Err(e)) => Err(e.message.to_string()),
                    None => Err(format!("Tool '{name}' not found")),
                }
            }
            _ => match r.adapter.tool(&name) {
                Some(tool) => self.call(&r, &tool.member, &arguments).await,
                None => Err(format!("Tool '{name}' not found")),
            },
        };
        Ok(match result {
            Ok(v) => {
                let content = results::content_blocks(&v);
                CallToolResponse::from(parse::<CallToolResult>(json!({"content": content}))?)
            }
            Err(e) => tool_error(e),
        })
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let r = self.resolved(&cx).await?;
        let resources = match r.adapter.kind {
            Kind::Native => match self.native(&r, "list_resources", json!({})).await {
                Some(listed) => list_of(listed?),
                None => Vec::new(),
            },
            _ => r.adapter.resource_list(),
        };
        parse(json!({ "resources": resources }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let r = self.resolved(&cx).await?;
        let templates = match self.native(&r, "list_resource_templates", json!({})).await {
            Some(listed) => list_of(listed?),
            None => Vec::new(),
        };
        parse(json!({ "resourceTemplates": templates }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let r = self.resolved(&cx).await?;
        let uri = request.uri;
        let not_found =
            || McpError::resource_not_found(format!("Resource '{uri}' not found"), None);
        let contents = match r.adapter.kind {
            Kind::Native => {
                let got = self
                    .native(&r, "read_resource", json!({"uri": uri}))
                    .await
                    .ok_or_else(not_found)??;
                results::resource_contents(&uri, "text/plain", &got)
            }
            _ => {
                let entry = r.adapter.resource(&uri).ok_or_else(not_found)?;
                let text = match &entry.source {
                    ResourceSource::Text(t) => t.clone(),
                    ResourceSource::Read(f) => results::text_of(
                        &self
                            .call(&r, f, &json!({}))
                            .await
                            .map_err(|e| McpError::internal_error(e, None))?,
                    ),
                };
                vec![json!({"uri": uri, "mimeType": entry.mime_type, "text": text})]
            }
        };
        Ok(ReadResourceResponse::from(parse::<ReadResourceResult>(
            json!({ "contents": contents }),
        )?))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let r = self.resolved(&cx).await?;
        let prompts = match r.adapter.kind {
            Kind::Native => match self.native(&r, "list_prompts", json!({})).await {
                Some(listed) => list_of(listed?),
                None => Vec::new(),
            },
            _ => r.adapter.prompt_list(),
        };
        parse(json!({ "prompts": prompts }))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let r = self.resolved(&cx).await?;
        let arguments = Json::Object(request.arguments.unwrap_or_default());
        let name = request.name;
        let not_found = || McpError::invalid_params(format!("Prompt '{name}' not found"), None);
        let result = match r.adapter.kind {
            Kind::Native => self
                .native(
                    &r,
                    "get_prompt",
                    json!({"name": name, "arguments": arguments}),
                )
                .await
                .ok_or_else(not_found)??,
            _ => {
                let prompt = r.adapter.prompt(&name).ok_or_else(not_found)?;
                self.call(&r, &prompt.read, &arguments)
                    .await
                    .map_err(|e| McpError::internal_error(e, None))?
            }
        };
        Ok(GetPromptResponse::from(parse::<GetPromptResult>(
            results::prompt_result(&name, &result),
        )?))
    }
}
