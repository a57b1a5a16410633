//! The pages of an agent skill, generated from a [`Catalog`] (what the caller may see of
//! one workspace, described by the live services' schemas). Pure: no I/O, so every page
//! is unit-tested from a hand-made catalog.
//!
//! Pages (paths relative to `/{ws}/agent-skills/`):
//!
//! | path                  | content                                                     |
//! |-----------------------|-------------------------------------------------------------|
//! | `SKILL.md`            | the index: YAML front matter (`name`, `description`), how to connect and call, the services table |
//! | `AUTH.md`             | tokens, the login flow, how to pass a token                  |
//! | `services/<key>.md`   | one service: its functions with parameters and docs, examples in Python, JavaScript and curl |
//!
//! plus the JSON listing at the root ([`index_json`]) and `skills.zip` ([`zip`]).

use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::io::Write as _;

/// The pinned hypha-rpc version the examples name.
pub const HYPHA_RPC_VERSION: &str = "0.21.47";

/// What one caller may see of one workspace, and where the server is.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// The server's public base URL, no trailing `/`.
    pub base_url: String,
    /// The documented workspace.
    pub workspace: String,
    /// Whether the caller may read the workspace; without, only its public services
    /// are listed and the pages say how to get a token.
    pub can_read: bool,
    /// The services the caller may see there, in page-key order.
    pub services: Vec<ServiceDoc>,
}

/// One service as the pages describe it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceDoc {
    /// Page key: `services/<key>.md` (the service name, made file-safe).
    pub key: String,
    /// Full id, `ws/cid:name`.
    pub id: String,
    /// The id `get_service` takes (e.g. `public/queue`, `ws-x/cid:calc`).
    pub rpc_id: String,
    /// The id in the HTTP route `/{ws}/services/{http_id}/{function}`.
    pub http_id: String,
    /// Display name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// The `docs` field of the record, if any.
    pub docs: String,
    /// The service `type`.
    pub kind: String,
    /// `public`, `protected` or `unlisted`.
    pub visibility: String,
    /// Its functions, dotted paths for nested ones.
    pub functions: Vec<FunctionDoc>,
}

/// One function of a service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FunctionDoc {
    /// Member path, e.g. `add` or `math.add`.
    pub path: String,
    /// Its doc text (the docstring's summary, or the control service's doc).
    pub description: String,
    /// Its parameters in declared order.
    pub params: Vec<ParamDoc>,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamDoc {
    /// Name.
    pub name: String,
    /// JSON-schema type (`string`, `integer`, …; `any` when unknown).
    pub kind: String,
    /// Whether a call must pass it.
    pub required: bool,
    /// Its description.
    pub description: String,
}

// === impl FunctionDoc ===

impl FunctionDoc {
    /// Reads a function from its hypha-rpc schema (`{"type": "function", "function":
    /// {name, description, parameters: {properties, required}}}`); `None` if `schema` is
    /// not a function's.
    pub fn from_schema(path: &str, schema: &Json) -> Option<FunctionDoc> {
        if schema.get("type").and_then(Json::as_str) != Some("function") {
            return None;
        }
        let f = schema.get("function").unwrap_or(&Json::Null);
        let params = f.get("parameters").unwrap_or(&Json::Null);
        let required: Vec<&str> = params
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let params = params
            .get("properties")
            .and_then(Json::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, p)| ParamDoc {
                        name: name.clone(),
                        kind: p
                            .get("type")
                            .and_then(Json::as_str)
                            .unwrap_or("any")
                            .to_owned(),
                        required: required.contains(&name.as_str()),
                        description: p
                            .get("description")
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(FunctionDoc {
            path: path.to_owned(),
            description: f
                .get("description")
                .and_then(Json::as_str)
                .unwrap_or("")
                .trim()
                .to_owned(),
            params,
        })
    }

    /// Keyword arguments for an example call: a placeholder of its type per required
    /// parameter.
    pub fn example_kwargs(&self) -> Json {
        let mut m = serde_json::Map::new();
        for p in self.params.iter().filter(|p| p.required) {
            let v = match p.kind.as_str() {
                "integer" => json!(1),
                "number" => json!(1.0),
                "boolean" => json!(true),
                "object" => json!({}),
                "array" => json!([]),
                "null" => Json::Null,
                _ => json!("text"),
            };
            m.insert(p.name.clone(), v);
        }
        Json::Object(m)
    }
}

/// The functions of a hypha-rpc `service_schema` (a map of member → schema, nested maps
/// for nested members), in key order with dotted paths. At most `limit` are read.
pub fn functions_from_schema(schema: &Json, limit: usize) -> Vec<FunctionDoc> {
    fn walk(prefix: &str, v: &Json, out: &mut Vec<FunctionDoc>, limit: usize, depth: usize) {
        let Some(map) = v.as_object() else { return };
        for (k, s) in map {
            if out.len() >= limit || k.starts_with('_') {
                continue;
            }
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let Some(f) = FunctionDoc::from_schema(&path, s) {
                out.push(f);
            } else if s.get("type").is_none() && depth < 4 {
                walk(&path, s, out, limit, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    walk("", schema, &mut out, limit, 0);
    out
}

/// A file-safe page key for a service name: `[A-Za-z0-9_.-]`, other characters `-`.
pub fn page_key(name: &str) -> String {
    let k: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let k = k.trim_start_matches('.').to_owned();
    if k.is_empty() {
        "service".to_owned()
    } else {
        k
    }
}

/// The skill name of the front matter: `hypha-<workspace>` in lower case, characters
/// outside `[a-z0-9-]` as `-`, at most 64 characters (the Agent Skills rule).
pub fn skill_name(ws: &str) -> String {
    let mut n: String = format!("hypha-{ws}")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    n.truncate(64);
    n.trim_end_matches('-').to_owned()
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn summary(s: &str) -> String {
    let first = s.split("\n\n").next().unwrap_or("");
    let line = one_line(first);
    if line.chars().count() > 160 {
        let cut: String = line.chars().take(157).collect();
        format!("{cut}...")
    } else {
        line
    }
}

/// The root listing: `{name, description, workspace, files, services, download}`.
pub fn index_json(c: &Catalog) -> Json {
    json!({
        "name": skill_name(&c.workspace),
        "description": description(c),
        "workspace": c.workspace,
        "files": file_names(c),
        "services": c.services.iter().map(|s| json!({
            "id": s.id,
            "name": s.name,
            "page": format!("services/{}.md", s.key),
        })).collect::<Vec<_>>(),
        "download": "skills.zip",
    })
}

fn description(c: &Catalog) -> String {
    format!(
        "Use the Hypha server at {} (workspace {}): connect with hypha-rpc, authenticate, \
         and call its {} services from Python, JavaScript or plain HTTP.",
        c.base_url,
        c.workspace,
        c.services.len()
    )
}

/// The names of every page, in archive order.
pub fn file_names(c: &Catalog) -> Vec<String> {
    let mut names = vec!["SKILL.md".to_owned(), "AUTH.md".to_owned()];
    names.extend(c.services.iter().map(|s| format!("services/{}.md", s.key)));
    names
}

/// The page at `path`, if there is one.
pub fn page(c: &Catalog, path: &str) -> Option<String> {
    match path {
        "SKILL.md" => Some(skill_md(c)),
        "AUTH.md" => Some(auth_md(c)),
        _ => {
            let key = path.strip_prefix("services/")?.strip_suffix(".md")?;
            c.services
                .iter()
                .find(|s| s.key == key)
                .map(|s| service_md(c, s))
        }
    }
}

/// `SKILL.md`: the index an agent reads first.
pub fn skill_md(c: &Catalog) -> String {
    let (base, ws) = (&c.base_url, &c.workspace);
    let mut s = String::new();
    let desc = serde_json::to_string(&description(c)).expect("a string serialises");
    let _ = write!(
        s,
        "---\nname: {}\ndescription: {desc}\n---\n\n# Hypha workspace `{ws}`\n\n\
         This server speaks the Hypha RPC protocol (hypha-rpc {HYPHA_RPC_VERSION} clients) at \
         `{base}`. Services are registered by connected clients; you call their functions \
         over a WebSocket client or plain HTTP.\n\n",
        skill_name(ws)
    );
    if !c.can_read {
        let _ = write!(
            s,
            "You may not read workspace `{ws}` (no token, or one for another workspace): \
             only public services are listed. With a token you see what it may read; see \
             [AUTH.md](AUTH.md).\n\n"
        );
    }
    let _ = write!(
        s,
        "## Call a function over HTTP\n\n\
         `POST {base}/{ws}/services/<service>/<function>` with a JSON object of keyword \
         arguments as the body (or `GET` with query parameters); the answer is the \
         function's result as JSON. Pass a token as `Authorization: Bearer <token>` (see \
         [AUTH.md](AUTH.md)). Errors come back as `{{\"success\": false, \"detail\": ...}}` \
         with 400 (bad arguments), 403 (no permission), 404 (unknown service or function), \
         504 (timed out).\n\n\
         ```bash\ncurl -X POST \"{base}/{ws}/services/<service>/<function>\" \\\n  \
         -H \"Authorization: Bearer $HYPHA_TOKEN\" -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"arg\": \"value\"}}'\n```\n\n\
         List the services: `GET {base}/{ws}/services/`; one service's record: \
         `GET {base}/{ws}/services/<service>`.\n\n\
         ## Connect with hypha-rpc\n\n\
         ```python\n# pip install hypha-rpc=={HYPHA_RPC_VERSION}\nfrom hypha_rpc import connect_to_server\n\n\
         server = await connect_to_server({{\"server_url\": \"{base}\", \"workspace\": \"{ws}\", \"token\": TOKEN}})\n\
         svc = await server.get_service(\"<service id>\")\nresult = await svc.some_function(arg=\"value\")\n```\n\n\
         ```javascript\nimport {{ hyphaWebsocketClient }} from \"{base}/assets/hypha-rpc-websocket.mjs\";\n\n\
         const server = await hyphaWebsocketClient.connectToServer({{server_url: \"{base}\", workspace: \"{ws}\", token: TOKEN}});\n\
         const svc = await server.getService(\"<service id>\");\n\
         const result = await svc.some_function({{arg: \"value\", _rkwargs: true}});\n```\n\n\
         ## Services\n\n"
    );
    if c.services.is_empty() {
        s.push_str("No services you may see are registered here right now.\n");
    } else {
        s.push_str("| service | id | functions | description |\n|---|---|---|---|\n");
        for svc in &c.services {
            let fns: Vec<String> = svc
                .functions
                .iter()
                .map(|f| format!("`{}`", f.path))
                .collect();
            let _ = writeln!(
                s,
                "| [{}](services/{}.md) | `{}` | {} | {} |",
                one_line(&svc.name),
                svc.key,
                svc.rpc_id,
                fns.join(", "),
                summary(&svc.description)
            );
        }
    }
    let _ = write!(
        s,
        "\n## Files\n\n- [AUTH.md](AUTH.md): tokens and login\n- `services/<service>.md`: one \
         page per service, with examples\n- [skills.zip](skills.zip): every page in one \
         archive\n\nThese pages are generated from the live services: fetch them again when \
         services change.\n"
    );
    s
}

/// `AUTH.md`: how to get and pass a token.
pub fn auth_md(c: &Catalog) -> String {
    let (base, ws) = (&c.base_url, &c.workspace);
    format!(
        "# Authenticating to {base}\n\n\
         Without a token you are anonymous: you may call public services and read public \
         pages, nothing else. A token (a JWT signed by this server) carries a user, the \
         workspaces it may use and with which permission (`r` read, `rw` read-write, `a` \
         admin), and an expiry.\n\n\
         ## Getting a token\n\n\
         - **Log in** (interactive): `POST {base}/public/services/hypha-login/start` answers \
         `{{login_url, key}}`; open `login_url` in a browser, then \
         `GET {base}/public/services/hypha-login/check?key=<key>&timeout=180` answers the \
         token once the login is done. From Python: `from hypha_rpc import login; token = \
         await login({{\"server_url\": \"{base}\"}})`.\n\
         - **From a connected client** (needs admin on the workspace): \
         `token = await server.generate_token({{\"workspace\": \"{ws}\", \"permission\": \
         \"read_write\", \"expires_in\": 3600}})`.\n\
         - **Over HTTP with a token you already have**: `POST {base}/{ws}/services/ws/generate_token` \
         with the body `{{\"config\": {{\"workspace\": \"{ws}\", \"expires_in\": 3600}}}}`.\n\n\
         Keep the token out of code: read it from an environment variable such as \
         `HYPHA_TOKEN`.\n\n\
         ## Passing a token\n\n\
         - HTTP: the header `Authorization: Bearer <token>` (preferred), the cookie \
         `access_token=<token>`, or the query parameter `?token=<token>`.\n\
         - hypha-rpc: `connect_to_server({{\"server_url\": \"{base}\", \"token\": token, \
         \"workspace\": \"{ws}\"}})` (JavaScript: `connectToServer({{server_url, token, \
         workspace}})`).\n\n\
         A token that is expired, revoked or not signed by this server is refused (HTTP \
         403); it never falls back to anonymous. These skill pages list only the services \
         the token may see.\n"
    )
}

/// `services/<key>.md`: one service's reference with examples.
pub fn service_md(c: &Catalog, svc: &ServiceDoc) -> String {
    let (base, ws) = (&c.base_url, &c.workspace);
    let mut s = String::new();
    let _ = write!(
        s,
        "# {}\n\n- id: `{}`\n- get_service: `{}`\n- HTTP: `{base}/{ws}/services/{}/<function>`\n\
         - type: `{}`\n- visibility: `{}`\n\n",
        one_line(&svc.name),
        svc.id,
        svc.rpc_id,
        svc.http_id,
        svc.kind,
        svc.visibility
    );
    if !svc.description.is_empty() {
        let _ = write!(s, "{}\n\n", svc.description.trim());
    }
    if !svc.docs.is_empty() {
        let _ = write!(s, "## Docs\n\n{}\n\n", svc.docs.trim());
    }
    s.push_str("## Functions\n\n");
    if svc.functions.is_empty() {
        s.push_str("This service declares no functions.\n");
    }
    for f in &svc.functions {
        let sig: Vec<String> = f
            .params
            .iter()
            .map(|p| {
                if p.required {
                    p.name.clone()
                } else {
                    format!("{}=None", p.name)
                }
            })
            .collect();
        let _ = write!(s, "### `{}({})`\n\n", f.path, sig.join(", "));
        if !f.description.is_empty() {
            let _ = write!(s, "{}\n\n", f.description);
        }
        if !f.params.is_empty() {
            s.push_str("Parameters:\n\n");
            for p in &f.params {
                let req = if p.required { "required" } else { "optional" };
                let _ = writeln!(
                    s,
                    "- `{}` ({}, {req}){}{}",
                    p.name,
                    p.kind,
                    if p.description.is_empty() { "" } else { ": " },
                    one_line(&p.description)
                );
            }
            s.push('\n');
        }
        let body = f.example_kwargs();
        let _ = write!(
            s,
            "```bash\ncurl -X POST \"{base}/{ws}/services/{}/{}\" -H \"Authorization: Bearer $HYPHA_TOKEN\" -H \"Content-Type: application/json\" -d '{}'\n```\n\n",
            svc.http_id, f.path, body
        );
    }
    if let Some(f) = svc.functions.first() {
        let kwargs = f.example_kwargs();
        let py_args: Vec<String> = kwargs
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={}", py(v))).collect())
            .unwrap_or_default();
        let mut js_args = kwargs.clone();
        if let Some(m) = js_args.as_object_mut() {
            m.insert("_rkwargs".into(), json!(true));
        }
        let _ = write!(
            s,
            "## Examples\n\n### Python\n\n```python\nimport asyncio, os\nfrom hypha_rpc import connect_to_server\n\n\
             async def main():\n    server = await connect_to_server({{\"server_url\": \"{base}\", \"workspace\": \"{ws}\", \"token\": os.environ.get(\"HYPHA_TOKEN\")}})\n\
             \x20   svc = await server.get_service(\"{}\")\n    print(await svc.{}({}))\n\nasyncio.run(main())\n```\n\n\
             ### JavaScript\n\n```javascript\nimport {{ hyphaWebsocketClient }} from \"{base}/assets/hypha-rpc-websocket.mjs\";\n\n\
             const server = await hyphaWebsocketClient.connectToServer({{server_url: \"{base}\", workspace: \"{ws}\", token: process.env.HYPHA_TOKEN}});\n\
             const svc = await server.getService(\"{}\");\nconsole.log(await svc.{}({}));\n```\n\n\
             ### curl\n\n```bash\ncurl -X POST \"{base}/{ws}/services/{}/{}\" -H \"Authorization: Bearer $HYPHA_TOKEN\" -H \"Content-Type: application/json\" -d '{}'\n```\n",
            svc.rpc_id,
            f.path,
            py_args.join(", "),
            svc.rpc_id,
            f.path,
            js_args,
            svc.http_id,
            f.path,
            kwargs
        );
    }
    s
}

/// A JSON value as a Python literal.
fn py(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// `skills.zip`: every page (and `index.json`) under the folder `skill_name(ws)/`,
/// deflate-free (stored) entries.
///
/// Errors: the archive writer failed (it writes to memory, so only on a bug).
pub fn zip(c: &Catalog) -> std::io::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let dir = skill_name(&c.workspace);
    let mut files: Vec<(String, String)> = file_names(c)
        .into_iter()
        .filter_map(|n| page(c, &n).map(|p| (n, p)))
        .collect();
    files.push((
        "index.json".into(),
        serde_json::to_string_pretty(&index_json(c)).expect("json serialises"),
    ));
    for (name, text) in files {
        w.start_file(format!("{dir}/{name}"), opts)
            .map_err(std::io::Error::other)?;
        w.write_all(text.as_bytes())?;
    }
    Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let schema = json!({
            "add": {"type": "function", "function": {
                "name": "add", "description": "Add two numbers.",
                "parameters": {"type": "object", "properties": {
                    "a": {"type": "integer", "description": "first"},
                    "b": {"type": "integer", "description": "second"},
                    "scale": {"type": "number", "description": ""}},
                    "required": ["a", "b"]}}},
            "math": {"pow": {"type": "function", "function": {"name": "pow", "parameters": {}}}},
            "version": {"type": "string"},
        });
        Catalog {
            base_url: "http://h:1".into(),
            workspace: "ws-user-x".into(),
            can_read: true,
            services: vec![ServiceDoc {
                key: "calc".into(),
                id: "ws-user-x/c1:calc".into(),
                rpc_id: "ws-user-x/c1:calc".into(),
                http_id: "c1:calc".into(),
                name: "Calculator".into(),
                description: "Adds | things".into(),
                kind: "generic".into(),
                visibility: "protected".into(),
                functions: functions_from_schema(&schema, 100),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn schemas_become_functions_with_dotted_paths() {
        let c = catalog();
        let f = &c.services[0].functions;
        assert_eq!(
            f.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["add", "math.pow"]
        );
        assert_eq!(f[0].description, "Add two numbers.");
        assert_eq!(f[0].params.len(), 3);
        assert!(f[0].params[0].required && !f[0].params[2].required);
        assert_eq!(f[0].example_kwargs(), json!({"a": 1, "b": 1}));
    }

    #[test]
    fn the_index_has_front_matter_and_links_every_service() {
        let c = catalog();
        let md = skill_md(&c);
        let front = md
            .strip_prefix("---\n")
            .unwrap()
            .split("\n---\n")
            .next()
            .unwrap();
        assert!(front.contains("name: hypha-ws-user-x\n"), "{front}");
        let desc = front.split("description: ").nth(1).unwrap();
        let desc: String = serde_json::from_str(desc).unwrap();
        assert!(desc.contains("http://h:1"), "{desc}");
        assert!(md.contains("[Calculator](services/calc.md)"));
        assert!(md.contains("Adds \\| things"), "pipes escaped in the table");
        assert!(page(&c, "services/calc.md").is_some());
        assert!(page(&c, "services/nope.md").is_none());
        assert!(page(&c, "../etc/passwd").is_none());
        assert_eq!(skill_name("Ws.Üser"), "hypha-ws--ser");
        assert!(skill_name(&"x".repeat(100)).len() <= 64);
    }

    #[test]
    fn service_pages_carry_docs_and_runnable_examples() {
        let c = catalog();
        let md = page(&c, "services/calc.md").unwrap();
        assert!(md.contains("### `add(a, b, scale=None)`"), "{md}");
        assert!(md.contains("Add two numbers."));
        assert!(md.contains("- `a` (integer, required): first"));
        assert!(md.contains(
            "curl -X POST \"http://h:1/ws-user-x/services/c1:calc/add\" -H \"Authorization: Bearer $HYPHA_TOKEN\" -H \"Content-Type: application/json\" -d '{\"a\":1,\"b\":1}'"
        ));
        assert!(md.contains("print(await svc.add(a=1, b=1))"));
        assert!(
            md.contains("svc.add({\"_rkwargs\":true,\"a\":1,\"b\":1})")
                || md.contains("svc.add({\"a\":1,\"b\":1,\"_rkwargs\":true})"),
            "{md}"
        );
    }

    #[test]
    fn the_zip_holds_every_page() {
        let c = catalog();
        let bytes = zip(&c).unwrap();
        let mut r = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = (0..r.len())
            .map(|i| r.by_index(i).unwrap().name().to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "hypha-ws-user-x/AUTH.md",
                "hypha-ws-user-x/SKILL.md",
                "hypha-ws-user-x/index.json",
                "hypha-ws-user-x/services/calc.md"
            ]
        );
        let mut skill = String::new();
        std::io::Read::read_to_string(
            &mut r.by_name("hypha-ws-user-x/SKILL.md").unwrap(),
            &mut skill,
        )
        .unwrap();
        assert_eq!(skill, skill_md(&c));
    }
}
