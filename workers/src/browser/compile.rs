//! `compile` of the browser worker (apps-workers.md §4.7, §2.2–2.3): turns an app's
//! manifest and files, as `install` hands them over, into a page the worker can open.
//! Pure functions: no I/O.
//!
//! * `web-app`: needs `entry_point` (the external `http(s)://` URL); no files are kept.
//! * The entry file (`manifest.entry_point`) is raw HTML (`<!doctype html` / `<html`):
//!   kept as it is, at `index.html`.
//! * It is a plugin source (starts with `<`): its `<config>` (JSON or YAML), first
//!   `<script>`, `<window>`, `<style>` and `<link>` tags feed the template.
//! * Anything else is the app's script. A plugin source that `install` split up beforehand
//!   (it keeps the whole text as the file `source`) still gives its `<window>`, `<style>`
//!   and `<link>` tags.
//! * No entry file: the first `.html` file becomes `index.html`.
//!
//! Templates ([`TEMPLATES`], rendered with minijinja): `window` (also for `hypha` and
//! `iframe` apps, whose entry is not HTML — the reference has no iframe template),
//! `web-worker` and `web-python`. Variables: `config` (the manifest fields of
//! [`CONFIG_FIELDS`] plus `server_url`), `script` (and `script_inline`, the same with
//! `</script` escaped, for templates that inline it), `requirements`, `window`, `styles`,
//! `links`, `bootstrap` (rhizo's connection code), `state_script` (the start-up state
//! `start` waits for: `globalThis.__rhizoAppState`), `worker_js` (a web worker's console
//! relay and its host in the page), `hypha_rpc_websocket_mjs`,
//! `local_base_url` and `source_hash`. The result replaces the entry file with
//! `index.html`, and the manifest's `entry_point` becomes `index.html`.

use minijinja::{AutoEscape, Environment};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The app types this worker runs (§4.7).
pub(crate) const BROWSER_TYPES: [&str; 6] = [
    "web-python",
    "web-worker",
    "window",
    "iframe",
    "hypha",
    "web-app",
];

/// Manifest fields handed to templates as `config` (§2.2's PLUGIN_CONFIG_FIELDS, plus
/// `description` for the service record).
const CONFIG_FIELDS: [&str; 17] = [
    "name",
    "description",
    "source_hash",
    "version",
    "format_version",
    "type",
    "tags",
    "icon",
    "requirements",
    "env",
    "defaults",
    "flags",
    "inputs",
    "outputs",
    "dependencies",
    "app_id",
    "required_artifact_files",
];

/// The templates, by name (`<template>.index.html`).
const TEMPLATES: [(&str, &str); 3] = [
    ("window", include_str!("../../templates/window.index.html")),
    (
        "web-worker",
        include_str!("../../templates/web-worker.index.html"),
    ),
    (
        "web-python",
        include_str!("../../templates/web-python.index.html"),
    ),
];

/// The connection code every template embeds.
const BOOTSTRAP: &str = include_str!("../../templates/bootstrap.js");

/// The halves of an app in a module web worker (web-worker, web-python templates).
const WORKER_SCRIPT: &str = include_str!("../../templates/worker.js");

/// The start-up state every template keeps (`globalThis.__rhizoAppState`), which `start`
/// waits for.
const STATE_SCRIPT: &str = include_str!("../../templates/state.js");

/// One app file as `compile` receives and returns it (`{path, content, format}`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct File {
    pub(crate) path: String,
    pub(crate) content: String,
    pub(crate) format: String,
}

/// Why an app cannot be compiled; the message says what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum CompileError {
    /// A `web-app` without an external URL.
    #[error("a web-app needs `entry_point`: the http(s):// URL of the page to open")]
    WebAppUrl,
    /// A type this worker does not run.
    #[error("the browser worker cannot run apps of type {0:?}")]
    Type(String),
    /// No entry file and no HTML file.
    #[error("the app has no entry file {0:?} and no .html file to open")]
    NoEntry(String),
    /// A plugin source's `<config>` block does not parse.
    #[error("the <config> block does not parse: {0}")]
    Config(String),
    /// A template failed to render (a bug, or a value the template cannot take).
    #[error("rendering the {template} template failed: {reason}")]
    Render {
        /// The template's name.
        template: &'static str,
        /// minijinja's message.
        reason: String,
    },
}

/// `compile(manifest, files, config)` (§4.7): the manifest patch and the new file list.
/// `server_url` is the base URL the page will be served from (the install's
/// `config.server_url`).
pub(crate) fn compile(
    manifest: &Value,
    files: &[File],
    server_url: &str,
) -> Result<(Value, Vec<File>), CompileError> {
    let app_type = manifest
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("hypha")
        .to_owned();
    if !BROWSER_TYPES.contains(&app_type.as_str()) {
        return Err(CompileError::Type(app_type));
    }
    let entry = manifest
        .get("entry_point")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if app_type == "web-app" {
        if !(entry.starts_with("http://") || entry.starts_with("https://")) {
            return Err(CompileError::WebAppUrl);
        }
        return Ok((json!({"entry_point": entry}), Vec::new()));
    }
    let Some(entry_file) = files.iter().find(|f| f.path == entry) else {
        let Some(html) = files.iter().find(|f| f.path.ends_with(".html")) else {
            return Err(CompileError::NoEntry(entry));
        };
        let mut out: Vec<File> = files.iter().filter(|f| *f != html).cloned().collect();
        out.push(File {
            path: "index.html".into(),
            ..html.clone()
        });
        return Ok((json!({"entry_point": "index.html"}), out));
    };
    let mut rest: Vec<File> = files.iter().filter(|f| f.path != entry).cloned().collect();
    if is_raw_html(&entry_file.content) {
        rest.retain(|f| f.path != "index.html");
        rest.push(File {
            path: "index.html".into(),
            ..entry_file.clone()
        });
        return Ok((json!({"entry_point": "index.html"}), rest));
    }
    let mut plugin = if entry_file.content.trim_start().starts_with('<') {
        Plugin::parse(&entry_file.content)?
    } else {
        Plugin {
            script: entry_file.content.clone(),
            ..Default::default()
        }
    };
    // The whole plugin source install kept: its template tags (its script is the entry).
    if let Some(src) = files.iter().find(|f| f.path == "source" && f.path != entry) {
        if src.content.trim_start().starts_with('<') {
            let whole = Plugin::parse(&src.content)?;
            plugin.window = plugin.window.or(whole.window);
            plugin.styles.extend(whole.styles);
            plugin.links.extend(whole.links);
        }
    }
    let mut config = Map::new();
    for (k, v) in plugin.config.iter().chain(
        manifest
            .as_object()
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| !plugin.config.contains_key(*k)),
    ) {
        if CONFIG_FIELDS.contains(&k.as_str()) {
            config.insert(k.clone(), v.clone());
        }
    }
    let server_url = server_url.trim_end_matches('/');
    config.insert("server_url".into(), json!(server_url));
    let requirements = config
        .get("requirements")
        .cloned()
        .filter(Value::is_array)
        .unwrap_or_else(|| json!([]));
    let template = match app_type.as_str() {
        "web-worker" => "web-worker",
        "web-python" => "web-python",
        _ => "window",
    };
    let html = render(
        template,
        &json!({
            "config": config,
            "script": plugin.script.clone(),
            "script_inline": script_safe(&plugin.script),
            "requirements": requirements,
            "window": plugin.window.unwrap_or_default(),
            "styles": plugin.styles,
            "links": plugin.links,
            "bootstrap": BOOTSTRAP,
            "state_script": STATE_SCRIPT,
            "worker_js": WORKER_SCRIPT,
            "hypha_rpc_websocket_mjs": format!("{server_url}/assets/hypha-rpc-websocket.mjs"),
            "local_base_url": server_url,
            "source_hash": manifest.get("source_hash").cloned().unwrap_or(Value::Null),
        }),
    )?;
    rest.retain(|f| f.path != "index.html");
    rest.push(File {
        path: "index.html".into(),
        content: html,
        format: "text".into(),
    });
    let mut patch = json!({"entry_point": "index.html"});
    for (k, v) in &plugin.config {
        if k != "type" {
            patch[k] = v.clone();
        }
    }
    Ok((patch, rest))
}

/// `<!doctype html …` or `<html …` (trimmed, any case): a page that needs no template.
pub(crate) fn is_raw_html(s: &str) -> bool {
    let t = s.trim_start();
    let head: String = t.chars().take(15).collect::<String>().to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// `</script` written so that it cannot end the `<script>` element it is inlined in
/// (valid inside JS strings, template literals and regexes; never needed in code).
fn script_safe(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let lower = script.to_ascii_lowercase();
    let mut last = 0;
    for (i, _) in lower.match_indices("</script") {
        out.push_str(&script[last..i]);
        out.push_str("<\\/");
        last = i + 2;
    }
    out.push_str(&script[last..]);
    out
}

/// Renders the template `name` with `vars`; nothing is HTML-escaped unless the template
/// says so (`| e`); `tojson` output is safe inside `<script>`.
fn render(name: &'static str, vars: &Value) -> Result<String, CompileError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    let source = TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_default();
    let err = |e: minijinja::Error| CompileError::Render {
        template: name,
        reason: e.to_string(),
    };
    env.add_template(name, source).map_err(err)?;
    env.get_template(name)
        .map_err(err)?
        .render(vars)
        .map_err(err)
}

/// What the templates take from a plugin ("ImJoy/Hypha XML") source (§2.2).
#[derive(Debug, Default)]
struct Plugin {
    config: Map<String, Value>,
    script: String,
    window: Option<String>,
    styles: Vec<String>,
    links: Vec<BTreeMap<String, String>>,
}

impl Plugin {
    /// Scans the tags `config`, `script` (the first), `window` (the first), `style` and
    /// `link`; other text is ignored. A tag without its closing tag runs to the end.
    fn parse(source: &str) -> Result<Plugin, CompileError> {
        let mut p = Plugin::default();
        let lower = source.to_ascii_lowercase();
        let mut pos = 0;
        while let Some(i) = lower[pos..].find('<') {
            let lt = pos + i;
            let Some(gt) = lower[lt..].find('>').map(|g| lt + g) else {
                break;
            };
            let head = &source[lt + 1..gt];
            let name: String = head
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            if !["config", "script", "window", "style", "link"].contains(&name.as_str()) {
                pos = lt + 1;
                continue;
            }
            let attrs = attributes(&head[name.len()..]);
            if name == "link" {
                p.links.push(attrs);
                pos = gt + 1;
                continue;
            }
            let close = format!("</{name}");
            let (body, next) = match lower[gt + 1..].find(&close) {
                Some(c) => {
                    let end = gt + 1 + c;
                    let after = lower[end..].find('>').map_or(source.len(), |g| end + g + 1);
                    (&source[gt + 1..end], after)
                }
                None => (&source[gt + 1..], source.len()),
            };
            let body = body.trim();
            match name.as_str() {
                "config" => {
                    let lang = attrs.get("lang").map(String::as_str).unwrap_or("json");
                    let v: Value = if lang.starts_with("yaml") || lang == "yml" {
                        serde_yaml_ng::from_str(body)
                            .map_err(|e| CompileError::Config(e.to_string()))?
                    } else {
                        serde_json::from_str(body)
                            .map_err(|e| CompileError::Config(e.to_string()))?
                    };
                    if let Value::Object(m) = v {
                        p.config.extend(m);
                    }
                }
                "script" if p.script.is_empty() => p.script = body.to_owned(),
                "window" if p.window.is_none() => p.window = Some(body.to_owned()),
                "style" => p.styles.push(body.to_owned()),
                _ => {}
            }
            pos = next;
        }
        Ok(p)
    }
}

/// `k="v"`, `k='v'`, `k=v` and bare `k` attributes, names lower-cased.
fn attributes(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim().trim_end_matches('/');
    while !rest.is_empty() {
        rest = rest.trim_start();
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            let (v, after) = match r.chars().next() {
                Some(q @ ('"' | '\'')) => match r[1..].find(q) {
                    Some(e) => (&r[1..1 + e], &r[2 + e..]),
                    None => (&r[1..], ""),
                },
                _ => {
                    let e = r.find(char::is_whitespace).unwrap_or(r.len());
                    (&r[..e], &r[e..])
                }
            };
            rest = after;
            v.to_owned()
        } else {
            String::new()
        };
        if !name.is_empty() {
            out.insert(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests;
