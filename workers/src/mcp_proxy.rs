//! The mcp-proxy worker (apps-workers.md §4.5, types `["mcp-server"]`): an app whose
//! manifest lists MCP servers reachable over HTTP (`mcpServers: {name: {type:
//! "streamable-http" | "sse", url, headers?}}`) becomes Hypha services, one per server.
//!
//! `start` connects a new Hypha client as the app's client ([`proxy`]), and for each
//! server opens an MCP session (rmcp's client, over rmcp's streamable-HTTP transport or
//! the legacy SSE one of [`sse`]), lists its tools, resources and prompts, and registers
//! service `<server name>` (`type: "mcp"`, public, the app's `app_id`):
//!
//! - `tools`: tool name → callable. Positional arguments fill the tool's input-schema
//!   properties in order (the `required` ones first, as listed, then the rest by name: the
//!   schema's own property order is not kept by the JSON parser), keyword arguments pass
//!   as they are. The callable carries the tool's schema as its `__schema__`
//!   (`_rschema: {name, description, parameters: inputSchema}`). A result of one text
//!   content is JSON-parsed when it can be (else `true`/`false`/`null`/numbers, else the
//!   text), several contents give a list; an `isError` result raises its text.
//! - `resources`: URI → `{uri, name, description, mimeType, read()}`; `read()` returns the
//!   text (or base64 blob) of a single content, a list for several.
//! - `prompts`: name → `{name, description, read(**args)}` returning `{description,
//!   messages: [{role, content: {type: "text", text}}]}`.
//!
//! Then `default` (no-op `setup`) is registered, which the controller waits for. Like the
//! reference, every call opens a fresh MCP session (initialize, the call, close), so a
//! restarted MCP server keeps working and no session outlives a call. SSE operations time
//! out after 10 s, streamable-HTTP ones after [`DISCOVERY_TIMEOUT`] (start) or
//! [`HTTP_TIMEOUT`] (calls).
//!
//! Deviation from the reference: `headers` are sent on every request of both transports
//! (the reference ignores them for streamable HTTP and leaves them out of SSE discovery).

pub(crate) mod proxy;
mod sse;

use proxy::{json_args, log, segment, Connect, ServiceSpec, SharedLogs};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rhizo_client::handler;
use rhizo_protocol::value::{from_json, map};
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmpv::Value;
use serde_json::{json, Value as J};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The app type this worker runs.
pub const APP_TYPE: &str = "mcp-server";

/// How long one SSE operation (connect, initialize, the call) may take.
pub const SSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one streamable-HTTP call (tool, resource, prompt) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a streamable-HTTP server may take to answer the discovery at start.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The worker: a [`proxy::ProxyHost`] connecting MCP servers.
pub(crate) fn host(
    server_url: String,
    worker: std::sync::Weak<rhizo_client::Client>,
) -> proxy::ProxyHost {
    proxy::ProxyHost::new(
        APP_TYPE,
        "mcpServers",
        "MCP server",
        server_url,
        worker,
        connect,
    )
}

/// How to reach one MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StreamableHttp,
    Sse,
}

/// One MCP server of a session: how to open a session with it.
struct McpServer {
    name: String,
    kind: Kind,
    url: String,
    headers: HeaderMap,
    http: reqwest::Client,
    logs: SharedLogs,
}

type Session = RunningService<RoleClient, ()>;

impl McpServer {
    /// Reads a manifest entry.
    ///
    /// Errors: no `url`, an unknown `type`, a header that is not a valid HTTP header.
    fn parse(name: &str, entry: &J, logs: &SharedLogs) -> anyhow::Result<Self> {
        let kind = match entry.get("type").and_then(J::as_str) {
            None | Some("streamable-http") | Some("streamable_http") | Some("http") => {
                Kind::StreamableHttp
            }
            Some("sse") => Kind::Sse,
            Some(other) => anyhow::bail!(
                "unsupported MCP transport {other:?} (use \"streamable-http\" or \"sse\")"
            ),
        };
        let url = entry
            .get("url")
            .and_then(J::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow::anyhow!("Missing URL for MCP server: {name}"))?
            .to_owned();
        let mut headers = HeaderMap::new();
        if let Some(J::Object(h)) = entry.get("headers") {
            for (k, v) in h {
                let v = match v {
                    J::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| anyhow::anyhow!("bad header name {k:?}: {e}"))?,
                    HeaderValue::from_str(&v)
                        .map_err(|e| anyhow::anyhow!("bad value of header {k:?}: {e}"))?,
                );
            }
        }
        Ok(McpServer {
            name: name.to_owned(),
            kind,
            url,
            headers,
            http: reqwest::Client::new(),
            logs: logs.clone(),
        })
    }

    /// The time limit of an operation (`discovery` or a call).
    fn timeout(&self, discovery: bool) -> Duration {
        match self.kind {
            Kind::Sse => SSE_TIMEOUT,
            Kind::StreamableHttp if discovery => DISCOVERY_TIMEOUT,
            Kind::StreamableHttp => HTTP_TIMEOUT,
        }
    }

    /// Opens and initializes an MCP session.
    async fn open(&self) -> anyhow::Result<Session> {
        match self.kind {
            Kind::StreamableHttp => {
                let mut cfg = StreamableHttpClientTransportConfig::with_uri(self.url.as_str());
                cfg.custom_headers = self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let t = StreamableHttpClientTransport::with_client(self.http.clone(), cfg);
                Ok(().serve(t).await?)
            }
            Kind::Sse => {
                let t =
                    sse::SseTransport::connect(self.http.clone(), &self.url, self.headers.clone())
                        .await?;
                Ok(().serve(t).await?)
            }
        }
    }

    /// Runs `op` in a fresh session, closed afterwards, within the transport's timeout.
    async fn with_session<T, F, Fut>(&self, what: &str, op: F) -> anyhow::Result<T>
    where
        F: FnOnce(Arc<Session>) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let limit = self.timeout(what == "discovery");
        let run = async {
            let session = Arc::new(self.open().await?);
            let out = op(session.clone()).await;
            if let Ok(s) = Arc::try_unwrap(session) {
                let _ = s.cancel().await;
            }
            out
        };
        match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!(
                "{what} on MCP server {} timed out after {} s",
                self.name,
                limit.as_secs()
            ),
        }
    }
}

/// [`proxy::ConnectFn`] for MCP servers.
fn connect(
    ctx: Connect<'_>,
    name: String,
    entry: J,
) -> Pin<Box<dyn Future<Output = anyhow::Result<ServiceSpec>> + Send + '_>> {
    Box::pin(async move {
        let server = Arc::new(McpServer::parse(&name, &entry, ctx.logs)?);
        let (logs, server_name) = (ctx.logs.clone(), name.clone());
        let (tools, resources, prompts) = server
            .with_session("discovery", |s| async move {
                // A server lacking tools, resources or prompts answers "method not found":
                // that kind is empty (as in the reference, which logs and goes on).
                let none = |kind: &str, e: rmcp::ServiceError| {
                    log(
                        &logs,
                        "debug",
                        format!("MCP server {server_name}: no {kind}: {e}"),
                    );
                };
                let tools = s.list_all_tools().await.unwrap_or_else(|e| {
                    none("tools", e);
                    Vec::new()
                });
                let resources = s.list_all_resources().await.unwrap_or_else(|e| {
                    none("resources", e);
                    Vec::new()
                });
                let prompts = s.list_all_prompts().await.unwrap_or_else(|e| {
                    none("prompts", e);
                    Vec::new()
                });
                Ok((
                    to_json_list(&tools),
                    to_json_list(&resources),
                    to_json_list(&prompts),
                ))
            })
            .await?;
        log(
            ctx.logs,
            "info",
            format!(
                "MCP server {name}: {} tools, {} resources, {} prompts",
                tools.len(),
                resources.len(),
                prompts.len()
            ),
        );
        let fields = map([
            ("name", format!("MCP Server for {name}").into()),
            (
                "description",
                format!("Tools, resources, and prompts from MCP server {name}").into(),
            ),
            ("type", "mcp".into()),
            ("config", map([("visibility", "public".into())])),
            ("app_id", ctx.config.app_id.as_str().into()),
        ]);
        let mut spec = ServiceSpec::new(ctx.client, &name, fields);
        let mut tool_map = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let Some(tname) = t.get("name").and_then(J::as_str) else {
                continue;
            };
            let desc = t.get("description").and_then(J::as_str).unwrap_or("");
            let schema = t
                .get("inputSchema")
                .cloned()
                .unwrap_or(json!({"type": "object", "properties": {}}));
            let rschema =
                from_json(&json!({"name": tname, "description": desc, "parameters": schema}));
            let h = tool_handler(server.clone(), tname.to_owned(), param_order(&schema));
            let m = spec.method(
                format!("tools.{}", segment(tname, i)),
                tname,
                desc,
                Some(rschema),
                h,
            );
            tool_map.push((Value::from(tname), m));
        }
        spec.set("tools", Value::Map(tool_map));
        let mut res_map = Vec::new();
        for (i, r) in resources.iter().enumerate() {
            let Some(uri) = r.get("uri").and_then(J::as_str) else {
                continue;
            };
            let text = |k: &str| r.get(k).and_then(J::as_str).unwrap_or("").to_owned();
            let h = resource_handler(server.clone(), uri.to_owned());
            let read = spec.method(
                format!("resources.i{i}.read"),
                "read",
                &text("description"),
                None,
                h,
            );
            let entry = map([
                ("uri", uri.into()),
                ("name", text("name").into()),
                ("description", text("description").into()),
                ("mimeType", text("mimeType").into()),
                ("read", read),
            ]);
            res_map.push((Value::from(uri), entry));
        }
        spec.set("resources", Value::Map(res_map));
        let mut prompt_map = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let Some(pname) = p.get("name").and_then(J::as_str) else {
                continue;
            };
            let desc = p.get("description").and_then(J::as_str).unwrap_or("");
            let rschema = from_json(&json!({
                "name": pname,
                "description": desc,
                "parameters": prompt_schema(p.get("arguments")),
            }));
            let h = prompt_handler(server.clone(), pname.to_owned());
            let read = spec.method(format!("prompts.i{i}.read"), "read", desc, Some(rschema), h);
            let entry = map([
                ("name", pname.into()),
                ("description", desc.into()),
                ("read", read),
            ]);
            prompt_map.push((Value::from(pname), entry));
        }
        spec.set("prompts", Value::Map(prompt_map));
        Ok(spec)
    })
}

fn to_json_list<T: serde::Serialize>(items: &[T]) -> Vec<J> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// The order positional arguments fill a tool's parameters in: the `required` ones as
/// listed, then the other properties.
fn param_order(schema: &J) -> Vec<String> {
    let mut order: Vec<String> = schema
        .get("required")
        .and_then(J::as_array)
        .map(|r| r.iter().filter_map(J::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(J::Object(props)) = schema.get("properties") {
        for k in props.keys() {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
    }
    order
}

/// A JSON schema of a prompt's (string) arguments.
fn prompt_schema(args: Option<&J>) -> J {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for a in args.and_then(J::as_array).into_iter().flatten() {
        let Some(n) = a.get("name").and_then(J::as_str) else {
            continue;
        };
        let mut p = json!({"type": "string"});
        if let Some(d) = a.get("description") {
            p["description"] = d.clone();
        }
        props.insert(n.to_owned(), p);
        if a.get("required").and_then(J::as_bool) == Some(true) {
            required.push(json!(n));
        }
    }
    json!({"type": "object", "properties": props, "required": required})
}

/// A tool's text result turned back into a value: JSON when it parses, else
/// `true`/`false`, `null`/`None`, an integer or a float, else the text.
fn convert_text(text: &str) -> J {
    if let Ok(v) = serde_json::from_str::<J>(text) {
        return v;
    }
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "true" => return J::Bool(true),
        "false" => return J::Bool(false),
        "none" | "null" => return J::Null,
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    if let Some(f) = t.parse::<f64>().ok().filter(|f| f.is_finite()) {
        return json!(f);
    }
    J::String(text.to_owned())
}

/// One content block as a value: a text block's converted text, anything else as is.
fn content_value(block: &J) -> J {
    match block.get("text").and_then(J::as_str) {
        Some(t) => convert_text(t),
        None => block.clone(),
    }
}

fn tool_handler(server: Arc<McpServer>, tool: String, order: Vec<String>) -> rhizo_client::Handler {
    let (server, tool, order) = (server, Arc::new(tool), Arc::new(order));
    handler(move |call| {
        let (server, tool, order) = (server.clone(), tool.clone(), order.clone());
        async move {
            let (args, mut kwargs) = json_args(&call);
            for (name, v) in order.iter().zip(args) {
                kwargs.entry(name.clone()).or_insert(v);
            }
            log(
                &server.logs,
                "debug",
                format!(
                    "Calling MCP tool {}.{tool} with {}",
                    server.name,
                    J::Object(kwargs.clone())
                ),
            );
            let mut params = CallToolRequestParams::new(tool.to_string());
            params.arguments = Some(kwargs);
            let result = server
                .with_session("tool call", |s| async move {
                    s.call_tool(params)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await;
            let result = match result {
                Ok(r) => serde_json::to_value(&r).unwrap_or(J::Null),
                Err(e) => {
                    let msg = format!("Error calling MCP tool {}.{tool}: {e:#}", server.name);
                    log(&server.logs, "error", msg.clone());
                    return Err(msg);
                }
            };
            let content = result
                .get("content")
                .and_then(J::as_array)
                .cloned()
                .unwrap_or_default();
            if result.get("isError").and_then(J::as_bool) == Some(true) {
                let text: Vec<&str> = content
                    .iter()
                    .filter_map(|c| c.get("text")?.as_str())
                    .collect();
                return Err(format!("MCP tool {} failed: {}", tool, text.join("\n")));
            }
            let out = match content.as_slice() {
                [] => result.get("structuredContent").cloned().unwrap_or(J::Null),
                [one] => content_value(one),
                many => J::Array(many.iter().map(content_value).collect()),
            };
            Ok(from_json(&out))
        }
    })
}

fn resource_handler(server: Arc<McpServer>, uri: String) -> rhizo_client::Handler {
    let uri = Arc::new(uri);
    handler(move |_call| {
        let (server, uri) = (server.clone(), uri.clone());
        async move {
            log(
                &server.logs,
                "debug",
                format!("Reading MCP resource {}.{uri}", server.name),
            );
            let params = ReadResourceRequestParams::new(uri.as_str());
            let result = server
                .with_session("resource read", |s| async move {
                    s.read_resource(params)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await
                .map_err(|e| {
                    let msg = format!("Error reading MCP resource {}.{uri}: {e:#}", server.name);
                    log(&server.logs, "error", msg.clone());
                    msg
                })?;
            let result = serde_json::to_value(&result).unwrap_or(J::Null);
            let contents = result
                .get("contents")
                .and_then(J::as_array)
                .cloned()
                .unwrap_or_default();
            let body = |c: &J| {
                c.get("text")
                    .or_else(|| c.get("blob"))
                    .cloned()
                    .unwrap_or(J::Null)
            };
            let out = match contents.as_slice() {
                [] => J::String(String::new()),
                [one] => body(one),
                many => J::Array(many.iter().map(body).collect()),
            };
            Ok(from_json(&out))
        }
    })
}

fn prompt_handler(server: Arc<McpServer>, prompt: String) -> rhizo_client::Handler {
    let prompt = Arc::new(prompt);
    handler(move |call| {
        let (server, prompt) = (server.clone(), prompt.clone());
        async move {
            let (_, kwargs) = json_args(&call);
            // Prompt arguments are strings in MCP.
            let arguments: serde_json::Map<String, J> = kwargs
                .into_iter()
                .map(|(k, v)| match v {
                    J::String(s) => (k, J::String(s)),
                    other => (k, J::String(other.to_string())),
                })
                .collect();
            log(
                &server.logs,
                "debug",
                format!("Getting MCP prompt {}.{prompt}", server.name),
            );
            let mut params = GetPromptRequestParams::new(prompt.as_str());
            params.arguments = Some(arguments);
            let result = server
                .with_session("prompt read", |s| async move {
                    s.get_prompt(params)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await
                .map_err(|e| {
                    let msg = format!("Error getting MCP prompt {}.{prompt}: {e:#}", server.name);
                    log(&server.logs, "error", msg.clone());
                    msg
                })?;
            let result = serde_json::to_value(&result).unwrap_or(J::Null);
            Ok(from_json(&prompt_value(&result)))
        }
    })
}

/// `{description, messages: [{role, content: {type: "text", text}}]}` of a GetPromptResult.
fn prompt_value(result: &J) -> J {
    let messages: Vec<J> = result
        .get("messages")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let content = m.get("content").cloned().unwrap_or(J::Null);
            let text = match content.get("text").and_then(J::as_str) {
                Some(t) => t.to_owned(),
                None => content.to_string(),
            };
            json!({
                "role": m.get("role").cloned().unwrap_or(json!("user")),
                "content": {"type": "text", "text": text},
            })
        })
        .collect();
    json!({
        "description": result.get("description").and_then(J::as_str).unwrap_or(""),
        "messages": messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_results_convert_like_the_reference() {
        assert_eq!(convert_text("3"), json!(3));
        assert_eq!(convert_text("{\"a\": [1]}"), json!({"a": [1]}));
        assert_eq!(convert_text("True"), json!(true));
        assert_eq!(convert_text("None"), J::Null);
        assert_eq!(convert_text("hello"), json!("hello"));
        assert_eq!(convert_text("1.5"), json!(1.5));
    }

    #[test]
    fn positional_order_is_required_first_then_the_rest() {
        let s = json!({"properties": {"a": {}, "b": {}, "z": {}}, "required": ["z", "a"]});
        assert_eq!(param_order(&s), ["z", "a", "b"]);
        assert!(param_order(&json!({})).is_empty());
    }

    #[test]
    fn entries_need_a_url_and_a_known_transport() {
        let logs = SharedLogs::default();
        let e = McpServer::parse("x", &json!({"type": "sse"}), &logs)
            .err()
            .unwrap();
        assert!(e.to_string().contains("Missing URL"), "{e}");
        let e = McpServer::parse("x", &json!({"type": "stdio", "url": "u"}), &logs)
            .err()
            .unwrap();
        assert!(e.to_string().contains("stdio"), "{e}");
        let s = McpServer::parse(
            "x",
            &json!({"url": "http://h/mcp", "headers": {"X-K": "v"}}),
            &logs,
        )
        .unwrap();
        assert_eq!(s.kind, Kind::StreamableHttp);
        assert_eq!(s.headers["x-k"], "v");
    }

    #[test]
    fn prompts_flatten_to_text_messages() {
        let r = json!({"description": "d", "messages": [
            {"role": "user", "content": {"type": "text", "text": "hi"}}]});
        assert_eq!(
            prompt_value(&r),
            json!({"description": "d", "messages": [
                {"role": "user", "content": {"type": "text", "text": "hi"}}]})
        );
    }
}
