//! How a Hypha service looks to an MCP client (workspace-api.md §8.1, the reference's
//! `HyphaMCPAdapter`): its tools, resources and prompts, read from the service object as
//! `get_service` returns it (functions are encoded methods `{_rtype: "method", _rtarget,
//! _rmethod, _rschema?, _rdoc?}`).
//!
//! A service is served in one of three ways, chosen in this order:
//! - **native**: it has MCP protocol functions (`list_tools`, `call_tool`, `list_prompts`,
//!   `get_prompt`, `list_resources`, `list_resource_templates`, `read_resource`), which
//!   answer the MCP requests of the same names;
//! - **inline**: it has maps `tools` (name → schema function), `resources` (key →
//!   `{uri?, name?, description?, mime_type?, read}`) and/or `prompts` (key → `{name?,
//!   description?, read}`);
//! - **auto-wrapped**: every function with a JSON schema (`@schema_function` /
//!   `schemaFunction`) anywhere in the object is a tool, named by its path joined with `_`
//!   (`math.add` → `math_add`, as the reference names them), and every string field
//!   (other than the metadata fields) is a text resource `resource://<path with />`.
//!
//! A service registered with `type: "mcp"` must be native or inline and every tool must
//! carry a schema; otherwise it is refused as not MCP compatible ([`Adapter::new`]).

use rhizo_protocol::value::{self, get, get_str};
use rmpv::Value;
use serde_json::{json, Value as Json};

/// The MCP protocol functions that make a service native.
const NATIVE_FUNCTIONS: [&str; 7] = [
    "list_tools",
    "call_tool",
    "list_prompts",
    "get_prompt",
    "list_resources",
    "list_resource_templates",
    "read_resource",
];

/// Service fields that are metadata, never string resources (the reference's skip list,
/// plus the record fields rhizo adds: `app_id`, `service_schema`).
const METADATA_FIELDS: [&str; 8] = [
    "docs",
    "id",
    "name",
    "description",
    "type",
    "config",
    "app_id",
    "service_schema",
];

/// How deep the auto-wrapping walks nested maps and lists.
const MAX_DEPTH: usize = 16;

/// Which mapping a service gets (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// MCP protocol functions on the service.
    Native,
    /// `tools` / `resources` / `prompts` maps.
    Inline,
    /// Schema functions as tools, string fields as resources.
    Auto,
}

/// One tool: its MCP name, the encoded method that runs it, and its definition.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    /// MCP tool name (`_`-joined path for auto-wrapped services).
    pub name: String,
    /// The member's dotted path in the service (`math.add`), also accepted as its name.
    pub path: String,
    /// The encoded method.
    pub member: Value,
    /// `description` of the MCP tool.
    pub description: String,
    /// `inputSchema` of the MCP tool (a JSON Schema object).
    pub input_schema: Json,
}

/// One resource of an inline or auto-wrapped service.
#[derive(Debug, Clone)]
pub struct ResourceEntry {
    /// The resource URI (`resource://<path>` for auto-wrapped string fields).
    pub uri: String,
    /// Human-readable name.
    pub name: String,
    /// Description.
    pub description: String,
    /// MIME type (`text/plain` unless the inline entry says `mime_type`).
    pub mime_type: String,
    /// Where the text comes from.
    pub source: ResourceSource,
}

/// Where a resource's content comes from.
#[derive(Debug, Clone)]
pub enum ResourceSource {
    /// A string field of the service object.
    Text(String),
    /// An inline resource's `read` function, called without arguments.
    Read(Value),
}

/// One prompt of an inline service.
#[derive(Debug, Clone)]
pub struct PromptEntry {
    /// The key in `prompts` (what `prompts/get` names).
    pub key: String,
    /// `name` shown in `prompts/list` (the entry's `name`, else the key).
    pub name: String,
    /// Description.
    pub description: String,
    /// `[{name, description, required}]` from the `read` function's schema.
    pub arguments: Vec<Json>,
    /// The `read` function, called with the prompt arguments as keyword arguments.
    pub read: Value,
}

/// A function skipped by auto-wrapping and why.
#[derive(Debug, Clone)]
pub struct Excluded {
    /// The tool name it would have had.
    pub name: String,
    /// Why it is not a tool.
    pub reason: &'static str,
}

/// A service as MCP sees it (module docs).
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Full service id (`ws/client:svc`).
    pub service_id: String,
    /// The service's `name` (else its id).
    pub name: String,
    /// The service's `type`, if any.
    pub service_type: Option<String>,
    /// The service's `description`.
    pub description: String,
    /// Which mapping applies.
    pub kind: Kind,
    /// The service object itself (native services are called through it).
    pub service: Value,
    /// Tools of inline and auto-wrapped services, in service order.
    pub tools: Vec<ToolEntry>,
    /// Resources of inline and auto-wrapped services.
    pub resources: Vec<ResourceEntry>,
    /// Prompts of inline services.
    pub prompts: Vec<PromptEntry>,
    /// Functions auto-wrapping skipped.
    pub excluded: Vec<Excluded>,
}

impl Adapter {
    /// The MCP view of `service` (the object `get_service` returned) described by `info`
    /// (its `get_service_info` record).
    ///
    /// Errors: a text saying why a `type: "mcp"` service is not MCP compatible (no protocol
    /// functions and no inline maps; a tool without a schema; an inline resource or prompt
    /// without a `read` schema function).
    pub fn new(info: &Value, service: &Value) -> Result<Adapter, String> {
        let service_id = get_str(info, "id")
            .or_else(|| get_str(service, "id"))
            .unwrap_or_default()
            .to_owned();
        let service_type = get_str(info, "type")
            .or_else(|| get_str(service, "type"))
            .map(str::to_owned);
        let strict = service_type.as_deref() == Some("mcp");
        let native = NATIVE_FUNCTIONS
            .iter()
            .any(|f| get(service, f).is_some_and(is_method));
        let inline = ["tools", "resources", "prompts"]
            .iter()
            .any(|k| get(service, k).is_some_and(|v| v.as_map().is_some_and(|m| !m.is_empty())));
        if strict && !native && !inline {
            return Err(format!(
                "Service '{service_id}' has type='mcp' but does not follow valid MCP structure: \
                 it needs MCP protocol functions (list_tools, call_tool, ...) or inline \
                 'tools', 'resources' or 'prompts' maps"
            ));
        }
        let mut adapter = Adapter {
            name: get_str(info, "name")
                .or_else(|| get_str(service, "name"))
                .unwrap_or(&service_id)
                .to_owned(),
            description: get_str(info, "description")
                .or_else(|| get_str(service, "description"))
                .unwrap_or("Hypha service exposed via MCP")
                .to_owned(),
            service_id,
            service_type,
            kind: if native {
                Kind::Native
            } else if inline {
                Kind::Inline
            } else {
                Kind::Auto
            },
            service: service.clone(),
            tools: Vec::new(),
            resources: Vec::new(),
            prompts: Vec::new(),
            excluded: Vec::new(),
        };
        match adapter.kind {
            Kind::Native => {}
            Kind::Inline => adapter.read_inline(strict)?,
            Kind::Auto => adapter.read_auto(info, strict)?,
        }
        Ok(adapter)
    }

    /// The native protocol function `name`, if the service has it.
    pub fn native_function(&self, name: &str) -> Option<&Value> {
        get(&self.service, name).filter(|v| is_method(v))
    }

    /// The tool named `name` (or, for auto-wrapped services, at the dotted path `name`).
    pub fn tool(&self, name: &str) -> Option<&ToolEntry> {
        self.tools
            .iter()
            .find(|t| t.name == name)
            .or_else(|| match self.kind {
                Kind::Auto => self.tools.iter().find(|t| t.path == name),
                _ => None,
            })
    }

    /// The resource of `uri`; for auto-wrapped string fields also the `_` spelling of the
    /// path (`resource://a/b` finds `a_b`), as the reference does.
    pub fn resource(&self, uri: &str) -> Option<&ResourceEntry> {
        self.resources.iter().find(|r| r.uri == uri).or_else(|| {
            let key = uri.strip_prefix("resource://")?;
            let alt = format!("resource://{}", key.replace('/', "_"));
            self.resources.iter().find(|r| r.uri == alt)
        })
    }

    /// The prompt whose key is `name`.
    pub fn prompt(&self, name: &str) -> Option<&PromptEntry> {
        self.prompts.iter().find(|p| p.key == name)
    }

    /// The MCP `Tool` objects (`{name, description, inputSchema}`).
    pub fn tool_list(&self) -> Vec<Json> {
        self.tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
            .collect()
    }

    /// The MCP `Resource` objects (`{uri, name, description, mimeType}`).
    pub fn resource_list(&self) -> Vec<Json> {
        self.resources
            .iter()
            .map(|r| json!({"uri": r.uri, "name": r.name, "description": r.description, "mimeType": r.mime_type}))
            .collect()
    }

    /// The MCP `Prompt` objects (`{name, description, arguments}`).
    pub fn prompt_list(&self) -> Vec<Json> {
        self.prompts
            .iter()
            .map(
                |p| json!({"name": p.name, "description": p.description, "arguments": p.arguments}),
            )
            .collect()
    }

    /// `{service_id, service_type, tools_count, resources_count, prompts_count, warnings?,
    /// excluded_functions?}` (the reference's adapter summary).
    pub fn summary(&self) -> Json {
        let mut s = json!({
            "service_id": self.service_id,
            "service_type": self.service_type.as_deref().unwrap_or("unknown"),
            "mode": match self.kind { Kind::Native => "native", Kind::Inline => "inline", Kind::Auto => "auto-wrapped" },
            "tools_count": self.tools.len(),
            "resources_count": self.resources.len(),
            "prompts_count": self.prompts.len(),
        });
        if !self.excluded.is_empty() {
            s["warnings"] = json!([format!(
                "Excluded {} functions without proper schemas. Use @schema_function decorator to expose them via MCP.",
                self.excluded.len()
            )]);
            s["excluded_functions"] = self
                .excluded
                .iter()
                .map(|e| json!({"name": e.name, "reason": e.reason}))
                .collect();
        }
        s
    }

    fn read_inline(&mut self, strict: bool) -> Result<(), String> {
        if let Some(Value::Map(tools)) = get(&self.service, "tools") {
            for (k, f) in tools {
                let Some(key) = k.as_str() else { continue };
                match tool_definition(key, f, None) {
                    Some((description, input_schema)) => self.tools.push(ToolEntry {
                        name: key.to_owned(),
                        path: format!("tools.{key}"),
                        member: f.clone(),
                        description,
                        input_schema,
                    }),
                    None if strict || is_method(f) => {
                        return Err(format!(
                            "Tool function '{key}' must be a @schema_function decorated function"
                        ))
                    }
                    None => {}
                }
            }
        }
        if let Some(Value::Map(resources)) = get(&self.service, "resources") {
            for (k, r) in resources {
                let Some(key) = k.as_str() else { continue };
                let read = get(r, "read").filter(|f| has_schema(f)).ok_or_else(|| {
                    format!(
                        "Resource '{key}' must be a map with a 'read' @schema_function decorated function"
                    )
                })?;
                self.resources.push(ResourceEntry {
                    uri: get_str(r, "uri").unwrap_or(key).to_owned(),
                    name: get_str(r, "name").unwrap_or(key).to_owned(),
                    description: get_str(r, "description").unwrap_or_default().to_owned(),
                    mime_type: get_str(r, "mime_type")
                        .or_else(|| get_str(r, "mimeType"))
                        .unwrap_or("text/plain")
                        .to_owned(),
                    source: ResourceSource::Read(read.clone()),
                });
            }
        }
        if let Some(Value::Map(prompts)) = get(&self.service, "prompts") {
            for (k, p) in prompts {
                let Some(key) = k.as_str() else { continue };
                let read = get(p, "read").filter(|f| has_schema(f)).ok_or_else(|| {
                    format!(
                        "Prompt '{key}' must be a map with a 'read' @schema_function decorated function"
                    )
                })?;
                self.prompts.push(PromptEntry {
                    key: key.to_owned(),
                    name: get_str(p, "name").unwrap_or(key).to_owned(),
                    description: get_str(p, "description").unwrap_or_default().to_owned(),
                    arguments: prompt_arguments(read),
                    read: read.clone(),
                });
            }
        }
        Ok(())
    }

    fn read_auto(&mut self, info: &Value, strict: bool) -> Result<(), String> {
        let schemas = get(info, "service_schema").or_else(|| get(&self.service, "service_schema"));
        let mut functions = Vec::new();
        collect_functions(&self.service, "", &[], 0, &mut functions);
        for (name, path, member) in functions {
            let fallback = schemas.and_then(|s| schema_at(s, &path));
            match tool_definition(&name, &member, fallback) {
                Some((description, input_schema)) => {
                    if self.tools.iter().all(|t| t.name != name) {
                        self.tools.push(ToolEntry {
                            name,
                            path: path.join("."),
                            member,
                            description,
                            input_schema,
                        });
                    }
                }
                None if strict => {
                    return Err(format!(
                        "Tool function '{name}' must be a @schema_function decorated function"
                    ))
                }
                None => self.excluded.push(Excluded {
                    name,
                    reason: "No schema information available. Functions must be decorated with @schema_function or have schema in service_schema.",
                }),
            }
        }
        let mut strings = Vec::new();
        collect_strings(&self.service, "", 0, &mut strings);
        if let Some(docs) = get_str(&self.service, "docs").filter(|d| !d.is_empty()) {
            strings.push(("docs".to_owned(), docs.to_owned()));
        }
        for (key, text) in strings {
            let (name, description) = if key == "docs" {
                (
                    format!("Documentation for {}", self.name),
                    format!("Service documentation content for '{}'", self.name),
                )
            } else {
                (
                    key.split('/')
                        .map(|p| title_case(&p.replace('_', " ")))
                        .collect::<Vec<_>>()
                        .join(" "),
                    format!("String resource at path '{key}' in service '{}'", self.name),
                )
            };
            self.resources.push(ResourceEntry {
                uri: format!("resource://{key}"),
                name,
                description,
                mime_type: "text/plain".into(),
                source: ResourceSource::Text(text),
            });
        }
        Ok(())
    }
}

/// Whether `v` is an encoded method.
pub fn is_method(v: &Value) -> bool {
    get_str(v, "_rtype") == Some("method")
}

/// Whether `v` is an encoded method carrying a non-empty `_rschema`.
fn has_schema(v: &Value) -> bool {
    is_method(v) && get(v, "_rschema").is_some_and(|s| s.as_map().is_some_and(|m| !m.is_empty()))
}

/// `(description, inputSchema)` of a tool from the method's `_rschema` (`{name,
/// description, parameters}`), else from a `service_schema` entry (`{type: "function",
/// function: {description, parameters}}`); `None` without either.
fn tool_definition(name: &str, member: &Value, fallback: Option<&Value>) -> Option<(String, Json)> {
    if !is_method(member) {
        return None;
    }
    let doc = get_str(member, "_rdoc").filter(|d| !d.is_empty());
    let schema = if has_schema(member) {
        get(member, "_rschema")?
    } else {
        let f = fallback.filter(|s| get_str(s, "type") == Some("function"))?;
        get(f, "function").filter(|f| f.as_map().is_some())?
    };
    let description = get_str(schema, "description")
        .filter(|d| !d.is_empty())
        .or(doc)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Function {name}"));
    let input_schema = match get(schema, "parameters").map(value::to_json) {
        Some(p @ Json::Object(_)) => p,
        _ => json!({"type": "object", "properties": {}, "required": []}),
    };
    Some((description, input_schema))
}

/// `[{name, description, required}]` from a schema function's parameters.
fn prompt_arguments(read: &Value) -> Vec<Json> {
    let params = get(read, "_rschema").and_then(|s| get(s, "parameters"));
    let required: Vec<String> = params
        .map(|p| value::get_strs(p, "required"))
        .unwrap_or_default();
    let Some(Value::Map(props)) = params.and_then(|p| get(p, "properties")) else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str()?;
            Some(json!({
                "name": name,
                "description": get_str(v, "description").unwrap_or_default(),
                "required": required.iter().any(|r| r == name),
            }))
        })
        .collect()
}

/// The `service_schema` entry at a dotted-path list.
fn schema_at<'a>(schemas: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(schemas, |s, k| get(s, k))
}

/// Every encoded method in `obj` (skipping `_`-prefixed keys) as `(tool name, path,
/// method)`, depth first in key order.
fn collect_functions(
    obj: &Value,
    prefix: &str,
    path: &[String],
    depth: usize,
    out: &mut Vec<(String, Vec<String>, Value)>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut visit = |key: String, v: &Value| {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}_{key}")
        };
        let mut p = path.to_vec();
        p.push(key);
        if is_method(v) {
            out.push((name, p, v.clone()));
        } else if (v.is_map() && get(v, "_rtype").is_none()) || v.is_array() {
            collect_functions(v, &name, &p, depth + 1, out);
        }
    };
    match obj {
        Value::Map(m) => {
            for (k, v) in m {
                if let Some(k) = k.as_str().filter(|k| !k.starts_with('_')) {
                    visit(k.to_owned(), v);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                visit(i.to_string(), v);
            }
        }
        _ => {}
    }
}

/// Every string field of `obj` (not metadata, not `_`-prefixed) as `(path with /, text)`.
fn collect_strings(obj: &Value, prefix: &str, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut visit = |key: &str, v: &Value| {
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}/{key}")
        };
        match v {
            Value::String(s) => {
                if let Some(s) = s.as_str() {
                    out.push((path, s.to_owned()));
                }
            }
            Value::Map(_) if get(v, "_rtype").is_none() => {
                collect_strings(v, &path, depth + 1, out)
            }
            Value::Array(_) => collect_strings(v, &path, depth + 1, out),
            _ => {}
        }
    };
    match obj {
        Value::Map(m) => {
            for (k, v) in m {
                if let Some(k) = k
                    .as_str()
                    .filter(|k| !k.starts_with('_') && !METADATA_FIELDS.contains(k))
                {
                    visit(k, v);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                visit(&i.to_string(), v);
            }
        }
        _ => {}
    }
}

/// `"hello world"` → `"Hello World"` (Python's `str.title` for ASCII words).
fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(c.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::map;

    fn method(name: &str, schema: bool) -> Value {
        let mut m = map([
            ("_rtype", "method".into()),
            ("_rtarget", "ws/c".into()),
            ("_rmethod", format!("services.s.{name}").into()),
            ("_rdoc", "".into()),
        ]);
        if schema {
            value::set(
                &mut m,
                "_rschema",
                value::from_json(&json!({
                    "name": name,
                    "description": format!("does {name}"),
                    "parameters": {"type": "object", "properties": {"a": {"type": "integer", "description": "first"}}, "required": ["a"]},
                })),
            );
        }
        m
    }

    fn info(ty: Option<&str>) -> Value {
        let mut i = map([("id", "ws/c:s".into()), ("name", "S".into())]);
        if let Some(t) = ty {
            value::set(&mut i, "type", t.into());
        }
        i
    }

    #[test]
    fn auto_wraps_schema_functions_with_underscore_names_and_skips_others() {
        let svc = map([
            ("id", "ws/c:s".into()),
            ("name", "S".into()),
            ("add", method("add", true)),
            ("plain", method("plain", false)),
            ("_hidden", method("hidden", true)),
            ("math", map([("mul", method("mul", true))])),
            ("note", "hello".into()),
            ("docs", "the docs".into()),
            ("config", map([("visibility", "public".into())])),
        ]);
        let a = Adapter::new(&info(None), &svc).unwrap();
        assert_eq!(a.kind, Kind::Auto);
        let names: Vec<_> = a.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["add", "math_mul"]);
        assert_eq!(
            a.tool("math.mul").map(|t| t.name.as_str()),
            Some("math_mul")
        );
        assert!(a.tool("math").is_none());
        assert_eq!(a.tools[0].description, "does add");
        assert_eq!(a.tools[0].input_schema["required"], json!(["a"]));
        assert_eq!(a.excluded.len(), 1);
        assert_eq!(a.excluded[0].name, "plain");
        let uris: Vec<_> = a.resources.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(uris, ["resource://note", "resource://docs"]);
        assert_eq!(a.resources[1].name, "Documentation for S");
        assert!(a.resource("resource://note").is_some());
        assert!(a.summary()["warnings"].is_array());
    }

    #[test]
    fn type_mcp_needs_protocol_functions_or_inline_maps() {
        let svc = map([("add", method("add", true))]);
        let err = Adapter::new(&info(Some("mcp")), &svc).unwrap_err();
        assert!(err.contains("does not follow valid MCP structure"), "{err}");
    }

    #[test]
    fn inline_maps_need_schema_functions() {
        let svc = map([(
            "tools",
            map([("add", method("add", true)), ("bad", method("bad", false))]),
        )]);
        let err = Adapter::new(&info(Some("mcp")), &svc).unwrap_err();
        assert!(err.contains("'bad'"), "{err}");

        let svc = map([
            ("tools", map([("add", method("add", true))])),
            (
                "resources",
                map([(
                    "r1",
                    map([
                        ("uri", "resource://r1".into()),
                        ("read", method("read", true)),
                    ]),
                )]),
            ),
            (
                "prompts",
                map([(
                    "greet",
                    map([
                        ("description", "greets".into()),
                        ("read", method("greet", true)),
                    ]),
                )]),
            ),
        ]);
        let a = Adapter::new(&info(Some("mcp")), &svc).unwrap();
        assert_eq!(a.kind, Kind::Inline);
        assert_eq!(a.tool_list()[0]["name"], "add");
        assert_eq!(a.resource_list()[0]["uri"], "resource://r1");
        let p = &a.prompt_list()[0];
        assert_eq!(p["arguments"][0]["name"], "a");
        assert_eq!(p["arguments"][0]["required"], true);
    }

    #[test]
    fn native_services_are_recognised() {
        let svc = map([("list_tools", method("list_tools", false))]);
        let a = Adapter::new(&info(Some("mcp")), &svc).unwrap();
        assert_eq!(a.kind, Kind::Native);
        assert!(a.native_function("list_tools").is_some());
        assert!(a.native_function("call_tool").is_none());
    }
}
