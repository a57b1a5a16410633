//! What the two proxy workers (mcp-proxy, [`crate::a2a_proxy`]) share: a session is a
//! *new* Hypha client connected as the app's client (`config.client_id` with
//! `config.token`), which registers one service per remote server plus `default`; `stop`
//! unregisters them and disconnects. Also the services' records, whose nested members
//! (`tools.add`, `resources[uri].read`) rhizo-client's flat member list cannot describe.

use crate::args::Args;
use crate::config::{progress, WorkerConfig};
use crate::error::{WorkerError, WorkerResult};
use crate::logs::Logs;
use crate::session::{SessionInfo, SessionStatus};
use rhizo_client::{handler, Client, ConnectOptions, Handler};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::{self, map, RPromise};
use rmpv::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

/// A session's logs, shared with the callables it registered (they log their calls).
pub(crate) type SharedLogs = Arc<Mutex<Logs>>;

/// Appends `msg` to `logs` under `kind` (`info`, `error`, `debug`), keeping the last 1000
/// entries of each type.
pub(crate) fn log(logs: &SharedLogs, kind: &str, msg: impl Into<String>) {
    logs.lock()
        .expect("logs lock")
        .push_capped(kind, msg.into(), 1000);
}

/// One service a proxy session registers: its id, the record fields besides the functions,
/// and the handlers the record's encoded methods point at.
pub(crate) struct ServiceSpec {
    id: String,
    addr: String,
    server: String,
    record: Value,
    handlers: Vec<(String, Handler)>,
}

impl ServiceSpec {
    /// A service `id` of `client` with the record fields `fields` (`name`, `type`,
    /// `config`, …).
    pub(crate) fn new(client: &Client, id: &str, fields: Value) -> Self {
        ServiceSpec {
            id: id.to_owned(),
            addr: format!("{}/{}", client.workspace(), client.client_id()),
            server: client.info()["public_base_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            record: fields,
            handlers: Vec::new(),
        }
    }

    /// The service id (without the client part).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Sets a top-level record field (data or a [`ServiceSpec::method`]).
    pub(crate) fn set(&mut self, key: &str, v: Value) {
        value::set(&mut self.record, key, v);
    }

    /// An encoded method served by `h` under member path `member` (dot-separated, safe
    /// characters only), named `name`, with the JSON schema `schema` (`{name, description,
    /// parameters}`, hypha-rpc's `__schema__`) when given. Put the result anywhere in the
    /// record: callers call it by its `_rmethod`, whatever key holds it.
    pub(crate) fn method(
        &mut self,
        member: String,
        name: &str,
        doc: &str,
        schema: Option<Value>,
        h: Handler,
    ) -> Value {
        let mut m = value::method(
            &self.addr,
            &format!("services.{}.{member}", self.id),
            RPromise::Compact,
            name,
            doc,
            &self.server,
        );
        if let Some(s) = schema {
            value::set(&mut m, "_rschema", s);
        }
        self.handlers.push((member, h));
        m
    }

    /// Registers the service through `client`; returns its full id.
    ///
    /// Errors: the manager refuses it.
    pub(crate) async fn register(self, client: &Client) -> anyhow::Result<String> {
        let functions = self
            .handlers
            .iter()
            .map(|(n, h)| (n.as_str(), h.clone()))
            .collect();
        Ok(client
            .register_service_record(&self.id, self.record.clone(), functions)
            .await?)
    }
}

/// A member path segment for `key`: itself when made of `[A-Za-z0-9_-]`, else `i<index>`
/// (resource URIs hold `:` and `/`, tool names may hold dots).
pub(crate) fn segment(key: &str, index: usize) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("i{index}")
    }
}

/// What a proxy needs to connect one remote server: the app's client (to build records),
/// its logs and the start config.
pub(crate) struct Connect<'a> {
    pub(crate) client: &'a Arc<Client>,
    pub(crate) logs: &'a SharedLogs,
    pub(crate) config: &'a WorkerConfig,
}

/// Connects one remote server named `name` with its manifest entry `entry` (JSON) and
/// returns the service to register for it.
pub(crate) type ConnectFn =
    for<'a> fn(
        Connect<'a>,
        String,
        serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<ServiceSpec>> + Send + 'a>>;

struct Session {
    info: SessionInfo,
    logs: SharedLogs,
    client: Option<Arc<Client>>,
    services: Vec<String>,
}

/// A proxy worker's sessions and how it connects its remote servers.
pub(crate) struct ProxyHost {
    /// `mcp-server` or `a2a-agent`.
    app_type: &'static str,
    /// The manifest key listing the remote servers: `mcpServers` or `a2aAgents`.
    key: &'static str,
    /// What the remote servers are called in messages: `MCP server`, `A2A agent`.
    noun: &'static str,
    server_url: String,
    /// The worker's own client (progress callbacks).
    worker: Weak<Client>,
    connect: ConnectFn,
    sessions: Mutex<HashMap<String, Session>>,
}

impl ProxyHost {
    pub(crate) fn new(
        app_type: &'static str,
        key: &'static str,
        noun: &'static str,
        server_url: String,
        worker: Weak<Client>,
        connect: ConnectFn,
    ) -> Self {
        ProxyHost {
            app_type,
            key,
            noun,
            server_url,
            worker,
            connect,
            sessions: Mutex::default(),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().expect("sessions lock")
    }

    /// `start(config)`: connects the app's client, then each remote server of the
    /// manifest's `key` map, registering a service for each and then `default` (no-op
    /// `setup`). With one server its failure fails the start; with several, failures are
    /// logged and the start fails only when none connected.
    pub(crate) async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let config = args.start_config()?;
        let servers = match value::to_json(&config.manifest).get(self.key) {
            Some(serde_json::Value::Object(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(WorkerError::Invalid(format!(
                    "No {} configured: a {} app needs a non-empty '{}' map in its manifest",
                    self.noun, self.app_type, self.key
                ))
                .into())
            }
        };
        let logs: SharedLogs = Arc::default();
        {
            let mut sessions = self.sessions();
            if sessions.contains_key(&config.id) {
                return Err(WorkerError::SessionExists(config.id.clone()).into());
            }
            sessions.insert(
                config.id.clone(),
                Session {
                    info: SessionInfo::new(&config, self.app_type),
                    logs: logs.clone(),
                    client: None,
                    services: Vec::new(),
                },
            );
        }
        match self.run_start(&config, servers, &logs).await {
            Ok((client, services)) => {
                let mut sessions = self.sessions();
                let Some(s) = sessions.get_mut(&config.id) else {
                    client.disconnect();
                    return Err(format!("Session {} was stopped while starting", config.id));
                };
                s.info.status = SessionStatus::Running;
                s.client = Some(client);
                s.services = services;
                Ok(config.id.clone().into())
            }
            Err(e) => {
                let msg = e.to_string();
                log(&logs, "error", msg.clone());
                if let Some(s) = self.sessions().get_mut(&config.id) {
                    s.info.status = SessionStatus::Failed;
                    s.info.error = Some(msg.clone());
                }
                progress(config.progress.as_ref(), &self.worker, "error", &msg).await;
                Err(msg)
            }
        }
    }

    async fn run_start(
        &self,
        config: &WorkerConfig,
        servers: serde_json::Map<String, serde_json::Value>,
        logs: &SharedLogs,
    ) -> anyhow::Result<(Arc<Client>, Vec<String>)> {
        let cb = config.progress.as_ref();
        progress(cb, &self.worker, "info", "Connecting to Hypha server...").await;
        let url = config.server_url.clone().unwrap_or(self.server_url.clone());
        let opts = ConnectOptions {
            client_id: Some(config.client_id.clone()),
            workspace: Some(config.workspace.clone()),
            token: config.token.clone(),
            reconnection_token: None,
        };
        let mut client = Client::connect(&url, opts)
            .await
            .map_err(|e| anyhow::anyhow!("Failed to connect to the Hypha server {url}: {e}"))?;
        drop(client.take_events());
        let client = Arc::new(client);
        log(logs, "info", format!("Connected to {url} as {}", config.id));
        let total = servers.len();
        let mut services = Vec::new();
        let mut failures = Vec::new();
        for (name, entry) in servers {
            let msg = format!("Connecting to {} {name}...", self.noun);
            progress(cb, &self.worker, "info", &msg).await;
            log(logs, "info", msg);
            let ctx = Connect {
                client: &client,
                logs,
                config,
            };
            let result = match (self.connect)(ctx, name.clone(), entry).await {
                Ok(spec) => {
                    let id = spec.id().to_owned();
                    spec.register(&client).await.map_err(|e| {
                        anyhow::anyhow!("Failed to register the service for {name} ({id}): {e}")
                    })
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(sid) => {
                    log(logs, "info", format!("Registered service {sid}"));
                    services.push(sid);
                }
                Err(e) => {
                    let msg = format!("Failed to connect to {} {name}: {e:#}", self.noun);
                    log(logs, "error", msg.clone());
                    if total == 1 {
                        client.disconnect();
                        anyhow::bail!(msg);
                    }
                    failures.push(msg);
                }
            }
        }
        if services.is_empty() {
            client.disconnect();
            anyhow::bail!(
                "Failed to connect to any {}: {}",
                self.noun,
                failures.join("; ")
            );
        }
        progress(cb, &self.worker, "info", "Registering default service...").await;
        // As the reference's: protected (the default visibility), with the app's id.
        let default = map([
            ("name", "default".into()),
            ("description", "Default service".into()),
            ("app_id", config.app_id.as_str().into()),
        ]);
        let setup = handler(|_| async { Ok(Value::Nil) });
        let sid = client
            .register_service_record("default", default, vec![("setup", setup)])
            .await
            .map_err(|e| anyhow::anyhow!("Failed to register the default service: {e}"))?;
        services.push(sid);
        let msg = format!(
            "{} session started: {} of {total} {}(s) connected",
            self.app_type,
            services.len() - 1,
            self.noun
        );
        log(logs, "info", msg.clone());
        progress(cb, &self.worker, "success", &msg).await;
        Ok((client, services))
    }

    /// `stop(session_id)`: unregisters the session's services and disconnects its client;
    /// an unknown id is not an error.
    pub(crate) async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        let session = {
            let mut sessions = self.sessions();
            match sessions.get(id) {
                Some(s) => {
                    args.caller().check(id, &s.info.workspace)?;
                    sessions.remove(id)
                }
                None => None,
            }
        };
        if let Some(s) = session {
            if let Some(client) = s.client {
                for sid in &s.services {
                    let r = client
                        .manager_call("unregister_service", vec![sid.as_str().into()])
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(%sid, error = %e, "unregistering a proxy service failed");
                    }
                }
                client.disconnect();
            }
        }
        Ok(Value::Nil)
    }

    fn with_session<T>(&self, args: &Args<'_>, f: impl FnOnce(&Session) -> T) -> WorkerResult<T> {
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions();
        let s = sessions
            .get(id)
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
        args.caller().check(id, &s.info.workspace)?;
        Ok(f(s))
    }

    /// `get_logs(session_id, type=None, offset=0, limit=None)` (§3.2).
    pub(crate) async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let kind = args.opt_str(1, "type")?;
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0);
        let limit = args.opt_usize(3, "limit")?;
        Ok(self.with_session(&args, |s| {
            s.logs.lock().expect("logs lock").page(kind, offset, limit)
        })?)
    }

    /// `get_session_info(session_id)` → SessionInfo (§3.4).
    pub(crate) async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        Ok(self.with_session(&args, |s| s.info.to_value())?)
    }

    /// `list_sessions(workspace=None)`.
    pub(crate) async fn list_sessions(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("list_sessions", &call);
        let ws = args.listed_workspace()?;
        let list = self
            .sessions()
            .values()
            .filter(|s| s.info.workspace == ws)
            .map(|s| s.info.to_value())
            .collect();
        Ok(Value::Array(list))
    }

    /// `compile(manifest, files, config=None)`: merges the `key` map of a JSON `source`
    /// file under the manifest's (the manifest wins), fills `name`/`description`/
    /// `version`, rewrites `source` as the final manifest and sets `wait_for_service:
    /// "default"`. Other app types pass unchanged.
    ///
    /// Errors: no servers in either place.
    pub(crate) async fn compile(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("compile", &call);
        let manifest = args.get(0, "manifest").ok_or_else(|| {
            WorkerError::Argument("compile() missing required argument: 'manifest'".into())
        })?;
        let files = args
            .get(1, "files")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        let (m, f) = compile_json(
            self.app_type,
            self.key,
            value::to_json(manifest),
            value::to_json(&files),
        )?;
        Ok(Value::Array(vec![
            value::from_json(&m),
            value::from_json(&f),
        ]))
    }

    /// Stops every session (worker shutdown): disconnects their clients.
    pub(crate) fn stop_all(&self) {
        for (_, s) in self.sessions().drain() {
            if let Some(c) = s.client {
                c.disconnect();
            }
        }
    }
}

/// [`ProxyHost::compile`] on JSON.
fn compile_json(
    app_type: &str,
    key: &str,
    manifest: serde_json::Value,
    files: serde_json::Value,
) -> WorkerResult<(serde_json::Value, serde_json::Value)> {
    use serde_json::{json, Value as J};
    if manifest.get("type").and_then(J::as_str) != Some(app_type) {
        return Ok((manifest, files));
    }
    let files = files.as_array().cloned().unwrap_or_default();
    let is_source = |f: &J| {
        f.get("name").and_then(J::as_str) == Some("source")
            || f.get("path").and_then(J::as_str) == Some("source")
    };
    let mut servers = serde_json::Map::new();
    if let Some(src) = files.iter().find(|f| is_source(f)) {
        let text = src.get("content").and_then(J::as_str).unwrap_or("");
        if let Ok(J::Object(parsed)) = serde_json::from_str::<J>(text) {
            if let Some(J::Object(s)) = parsed.get(key) {
                servers.extend(s.clone());
            }
        }
    }
    if let Some(J::Object(s)) = manifest.get(key) {
        servers.extend(s.clone());
    }
    if servers.is_empty() {
        return Err(WorkerError::Invalid(format!(
            "{key} configuration is required for type '{app_type}'"
        )));
    }
    let mut out = serde_json::Map::new();
    out.insert("type".into(), json!(app_type));
    out.insert(key.into(), J::Object(servers));
    let defaults = [
        (
            "name",
            if app_type == "mcp-server" {
                "MCP Server"
            } else {
                "A2A Agent"
            },
        ),
        (
            "description",
            if app_type == "mcp-server" {
                "MCP server application"
            } else {
                "A2A agent application"
            },
        ),
        ("version", "1.0.0"),
    ];
    for (k, d) in defaults {
        out.insert(k.into(), manifest.get(k).cloned().unwrap_or(json!(d)));
    }
    if let J::Object(m) = &manifest {
        for (k, v) in m {
            out.entry(k.clone()).or_insert(v.clone());
        }
    }
    let source = serde_json::to_string_pretty(&out).unwrap_or_default();
    let mut new_files: Vec<J> = files.into_iter().filter(|f| !is_source(f)).collect();
    new_files.push(json!({"path": "source", "content": source, "format": "text"}));
    out.insert("wait_for_service".into(), json!("default"));
    Ok((J::Object(out), J::Array(new_files)))
}

/// The functions of a proxy worker's service, in registration order.
pub(crate) fn functions(w: &Arc<ProxyHost>) -> Vec<(&'static str, Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, ProxyHost::start)),
        ("stop", bind(w, ProxyHost::stop)),
        ("get_logs", bind(w, ProxyHost::get_logs)),
        ("get_session_info", bind(w, ProxyHost::get_session_info)),
        ("list_sessions", bind(w, ProxyHost::list_sessions)),
        ("compile", bind(w, ProxyHost::compile)),
    ]
}

/// A call's arguments as JSON: `(positional, keyword)`, the trailing `context` keyword
/// dropped.
pub(crate) fn json_args(
    call: &Call,
) -> (
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let args = call.args.iter().map(value::to_json).collect();
    let kwargs = call
        .kwargs
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), value::to_json(v))))
        .filter(|(k, _)| k != "context")
        .collect();
    (args, kwargs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compile_merges_source_under_manifest_and_rewrites_source() {
        let manifest = json!({"type": "mcp-server", "name": "x",
            "mcpServers": {"a": {"url": "http://m/a"}}});
        let files = json!([{"name": "source", "content":
            "{\"mcpServers\": {\"a\": {\"url\": \"http://s/a\"}, \"b\": {\"url\": \"http://s/b\"}}}"}]);
        let (m, f) = compile_json("mcp-server", "mcpServers", manifest, files).unwrap();
        assert_eq!(m["mcpServers"]["a"]["url"], "http://m/a");
        assert_eq!(m["mcpServers"]["b"]["url"], "http://s/b");
        assert_eq!(m["wait_for_service"], "default");
        assert_eq!(m["version"], "1.0.0");
        let src: serde_json::Value =
            serde_json::from_str(f[0]["content"].as_str().unwrap()).unwrap();
        assert_eq!(src["name"], "x");
        assert!(src.get("wait_for_service").is_none());
        let e = compile_json(
            "a2a-agent",
            "a2aAgents",
            json!({"type": "a2a-agent"}),
            json!([]),
        );
        assert!(e.unwrap_err().to_string().contains("a2aAgents"));
        let other = json!({"type": "window"});
        assert_eq!(
            compile_json("mcp-server", "mcpServers", other.clone(), json!([]))
                .unwrap()
                .0,
            other
        );
    }

    #[test]
    fn segments_are_safe_member_names() {
        assert_eq!(segment("add_1", 3), "add_1");
        assert_eq!(segment("res://x.txt", 3), "i3");
        assert_eq!(segment("", 0), "i0");
    }
}
