//! The ai-cli worker as a Hypha `server-app-worker` (apps-workers.md §3, §6.2), types
//! `["ai-cli", "code-agent"]`.
//!
//! `start(config)` makes an [`Agent`] from the manifest (`cli`, `model`, `args`,
//! `project_path`, `files_to_stage`, `output_mode`, `log_file`, `env`, `initial_prompt`,
//! `idle_timeout`), then connects as the app's own client (`config.client_id` with the
//! app's token) and registers two protected services for it — `default` (`info`) and
//! `agent` (`send(message)`, `history(offset, limit)`, `attach(callback)`, `interrupt()`,
//! `execute(message, wait)`) — so `wait_for_service` works and any client of the workspace
//! drives the agent by service id, `agent@<app>` starting it lazily.
//!
//! Worker functions (positional, as the controller calls them): `start`, `stop`,
//! `list_sessions`, `get_session_info`, `get_logs(session_id, type, offset, limit)`,
//! `execute(session_id, script, config={timeout, wait: "turn"|"none"}, progress_callback,
//! output_callback)`, `execute_stream(session_id, script, config)` (a remote generator of
//! `{type: "output", data}` … `{type: "complete", status}`), `attach(session_id,
//! on_output)`, `interrupt(session_id)`, `list_adapters()`, `compile(manifest, files)`.
//! Only callers of the session's workspace (or admins of it) touch a session.

use super::agent::{Agent, Entry};
use super::{AgentManager, NewAgent};
use crate::args::{number, Args, Caller};
use crate::config::{progress, Callback, WorkerConfig};
use crate::error::WorkerError;
use crate::fetch::AppFiles;
use futures_util::StreamExt;
use rhizo_client::{handler, Client, ConnectOptions, Handler};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::{from_json, get, get_str, map, to_json};
use rmpv::Value;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long `stop` keeps the app's connection open after the session ended, so that the
/// replies of attached listeners' calls still go out.
const DETACH_GRACE: Duration = Duration::from_millis(300);

/// A session's Hypha side: its agent and the app client serving its services.
struct Hosted {
    agent: Arc<Agent>,
    workspace: String,
    app_id: String,
    app_client: Option<Arc<Client>>,
}

/// The ai-cli worker service.
pub struct AiCliWorker {
    pub(crate) manager: Arc<AgentManager>,
    pub(crate) client: Weak<Client>,
    server_url: String,
    files: AppFiles,
    sessions: Mutex<HashMap<String, Hosted>>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl AiCliWorker {
    /// A worker over `manager`, answering through `client`; `server_url` is the server
    /// apps connect to when their config names none.
    pub(crate) fn new(
        manager: Arc<AgentManager>,
        client: Weak<Client>,
        server_url: String,
        files: AppFiles,
    ) -> Self {
        AiCliWorker {
            manager,
            client,
            server_url,
            files,
            sessions: Mutex::default(),
        }
    }

    fn hosted(&self, args: &Args<'_>) -> Result<Arc<Agent>, String> {
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions.lock().expect("sessions lock");
        let h = sessions
            .get(id)
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()).to_string())?;
        args.caller().check(id, &h.workspace)?;
        Ok(h.agent.clone())
    }

    async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let raw = args
            .get(0, "config")
            .ok_or("start() missing required argument: 'config'")?;
        let caller = Caller::of(&call);
        let config = WorkerConfig::parse(raw, &caller.ws)?;
        caller.check(&config.id, &config.workspace)?;
        let manifest = to_json(&config.manifest);
        let m = |k: &str| manifest.get(k).filter(|v| !v.is_null());
        let strs = |k: &str| -> Result<Vec<String>, String> {
            match m(k) {
                None => Ok(Vec::new()),
                Some(Json::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or(format!("manifest {k} must be a list of strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("manifest {k} must be a list of strings")),
            }
        };
        let env: BTreeMap<String, String> = match m("env") {
            None => BTreeMap::new(),
            Some(Json::Object(o)) => o
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Some(_) => return Err("manifest env must be a map of strings".into()),
        };
        let req = NewAgent {
            id: Some(config.id.clone()),
            name: m("name")
                .and_then(Json::as_str)
                .unwrap_or(&config.app_id)
                .to_owned(),
            cli: m("cli").and_then(Json::as_str).map(str::to_owned),
            project_path: m("project_path").and_then(Json::as_str).map(str::to_owned),
            model: m("model").and_then(Json::as_str).map(str::to_owned),
            args: strs("args")?,
            env,
            output_mode: m("output_mode").and_then(Json::as_str).map(str::to_owned),
            log_file: m("log_file").and_then(Json::as_str).map(str::to_owned),
            workspace: Some(config.workspace.clone()),
            app_id: Some(config.app_id.clone()),
            idle_timeout: m("idle_timeout")
                .and_then(Json::as_f64)
                .filter(|t| *t > 0.0)
                .map(Duration::from_secs_f64),
        };
        if req.project_path.is_some() && !self.manager.project_path_allowed(&config.workspace) {
            return Err(format!(
                "project_path is not allowed for apps of workspace {} (AI_CLI_PROJECT_WORKSPACES)",
                config.workspace
            ));
        }
        let cb = config.progress.as_ref();
        progress(cb, &self.client, "info", "Starting the AI CLI session…").await;
        let agent = match self.manager.create(req) {
            Ok(a) => a,
            Err(e) => {
                progress(cb, &self.client, "error", &e.to_string()).await;
                return Err(e.to_string());
            }
        };
        let outcome = self.finish_start(&config, &agent).await;
        match outcome {
            Ok(app_client) => {
                self.sessions.lock().expect("sessions lock").insert(
                    config.id.clone(),
                    Hosted {
                        agent: agent.clone(),
                        workspace: config.workspace.clone(),
                        app_id: config.app_id.clone(),
                        app_client,
                    },
                );
                if let Some(p) = m("initial_prompt").and_then(Json::as_str) {
                    if let Err(e) = agent.send(p) {
                        tracing::info!(session = %config.id, error = %e, "initial prompt not sent");
                    }
                }
                progress(
                    cb,
                    &self.client,
                    "success",
                    &format!("{} session started", agent.cli()),
                )
                .await;
                Ok(config.id.as_str().into())
            }
            Err(e) => {
                let _ = self.manager.remove(&config.id).await;
                progress(cb, &self.client, "error", &e).await;
                Err(e)
            }
        }
    }

    /// Stages files, then connects as the app's client and registers its services.
    async fn finish_start(
        &self,
        config: &WorkerConfig,
        agent: &Arc<Agent>,
    ) -> Result<Option<Arc<Client>>, String> {
        let base = config.files_base(&self.server_url);
        crate::terminal::stage_files(
            &self.files,
            &config.manifest,
            &base,
            config.token.as_deref(),
            &agent.spec.dir,
        )
        .await
        .map_err(err)?;
        let Some(token) = config.token.clone() else {
            return Ok(None);
        };
        let server = config
            .server_url
            .clone()
            .unwrap_or_else(|| self.server_url.clone());
        let connect = ConnectOptions {
            client_id: Some(config.client_id.clone()),
            workspace: Some(config.workspace.clone()),
            token: Some(token),
            reconnection_token: None,
        };
        let mut app = Client::connect(&server, connect)
            .await
            .map_err(|e| format!("the session could not connect as {}: {e}", config.id))?;
        let mut events = app.take_events();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let app = Arc::new(app);
        let protected = map([("visibility", "protected".into())]);
        let a = agent.clone();
        let default_fns: Vec<(&str, Handler)> = vec![(
            "info",
            handler(move |_c| {
                let a = a.clone();
                async move { Ok(from_json(&a.info())) }
            }),
        )];
        let fields = map([
            ("name", format!("{} agent", agent.cli()).into()),
            (
                "description",
                "An AI coding CLI session (rhizo ai-cli worker)".into(),
            ),
            ("config", protected.clone()),
        ]);
        app.register_service_record("default", fields, default_fns)
            .await
            .map_err(err)?;
        let fields = map([
            ("name", "Agent".into()),
            (
                "description",
                "send, history, attach, interrupt, execute".into(),
            ),
            ("config", protected),
        ]);
        app.register_service_record(
            "agent",
            fields,
            agent_functions(agent, Arc::downgrade(&app)),
        )
        .await
        .map_err(err)?;
        Ok(Some(app))
    }

    async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        self.hosted(&args)?;
        let h = self.sessions.lock().expect("sessions lock").remove(id);
        let _ = self.manager.remove(id).await;
        if let Some(c) = h.and_then(|h| h.app_client) {
            // Attached listeners' calls end with the session; let their replies leave
            // through the app's connection before it closes.
            tokio::time::sleep(DETACH_GRACE).await;
            c.disconnect();
        }
        Ok(Value::Nil)
    }

    async fn list_sessions(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("list_sessions", &call);
        let caller = args.caller();
        let want = args.opt_str(0, "workspace")?.map(str::to_owned);
        let sessions = self.sessions.lock().expect("sessions lock");
        let list = sessions
            .iter()
            .filter(|(_, h)| caller.may_use(&h.workspace))
            .filter(|(_, h)| want.as_deref().is_none_or(|w| w == h.workspace))
            .map(|(_, h)| from_json(&session_info(h)))
            .collect();
        Ok(Value::Array(list))
    }

    async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        self.hosted(&args)?;
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions.lock().expect("sessions lock");
        let h = sessions.get(id).ok_or("session gone")?;
        Ok(from_json(&session_info(h)))
    }

    async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let agent = self.hosted(&args)?;
        let kind = args.opt_str(1, "type")?;
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0) as u64;
        let limit = args.opt_usize(3, "limit")?;
        Ok(from_json(&agent.history(kind, offset, limit)))
    }

    async fn execute(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("execute", &call);
        let agent = self.hosted(&args)?;
        let script = args.str(1, "script")?.to_owned();
        let config = args.get(2, "config");
        let timeout = config
            .and_then(|c| get(c, "timeout"))
            .and_then(number)
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(self.manager.options().worker_timeout);
        let wait = config.and_then(|c| get_str(c, "wait")) != Some("none");
        let (progress_cb, output_cb) = args.execute_callbacks();
        let relay = output_cb.map(|cb| {
            let rx = agent.subscribe();
            tokio::spawn(relay_outputs(rx, cb, self.client.clone()))
        });
        progress(
            progress_cb.as_ref(),
            &self.client,
            "info",
            "Sending the message…",
        )
        .await;
        let result = agent.execute(&script, wait, timeout).await;
        if let Some(r) = relay {
            r.abort();
        }
        progress(progress_cb.as_ref(), &self.client, "info", "Turn finished").await;
        result.map(|v| from_json(&v))
    }

    async fn execute_stream(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("execute_stream", &call);
        let agent = self.hosted(&args)?;
        let script = args.str(1, "script")?.to_owned();
        let timeout = args
            .get(2, "config")
            .and_then(|c| get(c, "timeout"))
            .and_then(number)
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(self.manager.options().worker_timeout);
        let client = self.client.upgrade().ok_or("the worker is shutting down")?;
        Ok(client.generator(&call.from, turn_stream(agent, script, timeout)))
    }

    async fn attach(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("attach", &call);
        let agent = self.hosted(&args)?;
        let Some(cb) = args
            .get(1, "on_output")
            .and_then(|v| Callback::parse(v, &call.ws))
        else {
            return Ok(from_json(&serde_json::json!({
                "success": true, "session_id": agent.spec.id, "history": agent.history(None, 0, None)["items"],
            })));
        };
        Ok(from_json(
            &attach_loop(&agent, cb, self.client.clone()).await,
        ))
    }

    async fn interrupt(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("interrupt", &call);
        let agent = self.hosted(&args)?;
        Ok(agent.interrupt().into())
    }

    async fn list_adapters(self: Arc<Self>, _call: Call) -> Result<Value, String> {
        Ok(from_json(&Json::Array(self.manager.adapters())))
    }

    async fn compile(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("compile", &call);
        let manifest = args
            .get(0, "manifest")
            .cloned()
            .ok_or("compile() missing required argument: 'manifest'")?;
        let cli = get_str(&manifest, "cli").unwrap_or(&self.manager.options().default_cli);
        if self.manager.options().registry.get(cli).is_none() {
            return Err(format!(
                "Unknown AI CLI type: {cli} (enabled: {})",
                self.manager.options().registry.names().join(", ")
            ));
        }
        let files = args
            .get(1, "files")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        Ok(Value::Array(vec![manifest, files]))
    }

    /// Stops every session (worker shutdown).
    pub(crate) async fn stop_all(&self) {
        let all: Vec<(String, Option<Arc<Client>>)> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(id, h)| (id, h.app_client))
            .collect();
        for (id, c) in all {
            let _ = self.manager.remove(&id).await;
            if let Some(c) = c {
                c.disconnect();
            }
        }
    }
}

fn session_info(h: &Hosted) -> Json {
    let mut v = h.agent.info();
    v["app_id"] = Json::from(h.app_id.clone());
    v["workspace"] = Json::from(h.workspace.clone());
    v["app_type"] = Json::from("ai-cli");
    v["client_id"] = Json::from(h.agent.spec.id.split_once('/').map_or("", |(_, c)| c));
    v
}

/// The functions of a session's `agent` service.
fn agent_functions(agent: &Arc<Agent>, app: Weak<Client>) -> Vec<(&'static str, Handler)> {
    let a = agent.clone();
    let send = handler(move |c: Call| {
        let a = a.clone();
        async move {
            let args = Args::new("send", &c);
            let message = args.str(0, "message")?;
            a.send(message).map(Value::from)
        }
    });
    let a = agent.clone();
    let history = handler(move |c: Call| {
        let a = a.clone();
        async move {
            let args = Args::new("history", &c);
            let offset = args.opt_usize(0, "offset")?.unwrap_or(0) as u64;
            let limit = args.opt_usize(1, "limit")?;
            Ok(from_json(&a.history(None, offset, limit)))
        }
    });
    let a = agent.clone();
    let attach = handler(move |c: Call| {
        let (a, app) = (a.clone(), app.clone());
        async move {
            let args = Args::new("attach", &c);
            let cb = args
                .get(0, "callback")
                .and_then(|v| Callback::parse(v, &c.ws))
                .ok_or("attach(callback): a callback is required")?;
            Ok(from_json(&attach_loop(&a, cb, app).await))
        }
    });
    let a = agent.clone();
    let interrupt = handler(move |_c: Call| {
        let a = a.clone();
        async move { Ok(a.interrupt().into()) }
    });
    let a = agent.clone();
    let execute = handler(move |c: Call| {
        let a = a.clone();
        async move {
            let args = Args::new("execute", &c);
            let message = args.str(0, "message")?.to_owned();
            let wait = args.get(1, "wait").and_then(Value::as_str) != Some("none");
            let timeout = args
                .get(2, "timeout")
                .and_then(number)
                .filter(|t| *t > 0.0)
                .map_or(Duration::from_secs(300), Duration::from_secs_f64);
            a.execute(&message, wait, timeout)
                .await
                .map(|v| from_json(&v))
        }
    });
    vec![
        ("send", send),
        ("history", history),
        ("attach", attach),
        ("interrupt", interrupt),
        ("execute", execute),
    ]
}

/// Sends the history, then every new entry, to `cb` until the session stops or the
/// callback fails: `{type: "history", messages}` first, then `{type: "output" | …,
/// timestamp, content}` per entry. Returns `{success, detached: true, detached_reason}`.
async fn attach_loop(agent: &Arc<Agent>, cb: Callback, client: Weak<Client>) -> Json {
    let mut rx = agent.subscribe();
    let history: Vec<Json> = agent.entries().iter().map(|e| e.to_json()).collect();
    let first = serde_json::json!({"type": "history", "messages": history});
    if let Err(e) = cb.send(&client, from_json(&first)).await {
        return serde_json::json!({"success": false, "error": format!("callback failed: {e}")});
    }
    let reason = loop {
        match rx.recv().await {
            Ok(entry) => {
                if cb.send(&client, from_json(&entry.to_json())).await.is_err() {
                    break "callback failed";
                }
                if entry.kind == "info" && entry.content == "session stopped" {
                    break "session stopped";
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break "session ended",
        }
    };
    serde_json::json!({"success": true, "detached": true, "detached_reason": reason})
}

async fn relay_outputs(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Entry>>,
    cb: Callback,
    client: Weak<Client>,
) {
    loop {
        match rx.recv().await {
            Ok(e) if e.kind == "output" => {
                let msg = serde_json::json!({"type": "agent_event", "data": e.content, "timestamp": e.timestamp});
                if cb.send(&client, from_json(&msg)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// One turn as a stream: `{type: "output", data}` per event, `{type: "error", message}`
/// when the turn fails, then `{type: "complete", status}`.
fn turn_stream(
    agent: Arc<Agent>,
    message: String,
    timeout: Duration,
) -> futures_util::stream::BoxStream<'static, Value> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Json>(64);
    tokio::spawn(async move {
        let mut events = agent.subscribe();
        let runner = {
            let agent = agent.clone();
            tokio::spawn(async move { agent.execute(&message, true, timeout).await })
        };
        tokio::pin!(runner);
        let result = loop {
            tokio::select! {
                r = &mut runner => break r.map_err(|e| e.to_string()).and_then(|r| r),
                e = events.recv() => match e {
                    Ok(e) if e.kind == "output" => {
                        if tx.send(serde_json::json!({"type": "output", "data": e.content})).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {}
                },
            }
        };
        let status = match result {
            Ok(v) if v["status"] == "ok" => "ok".to_owned(),
            Ok(v) => {
                let m = v["error"]["evalue"]
                    .as_str()
                    .unwrap_or("the turn failed")
                    .to_owned();
                let _ = tx
                    .send(serde_json::json!({"type": "error", "message": m}))
                    .await;
                v["error"]["ename"]
                    .as_str()
                    .map_or("error", |n| {
                        if n == "TimeoutError" {
                            "timeout"
                        } else {
                            "error"
                        }
                    })
                    .to_owned()
            }
            Err(e) => {
                let _ = tx
                    .send(serde_json::json!({"type": "error", "message": e}))
                    .await;
                "error".to_owned()
            }
        };
        let _ = tx
            .send(serde_json::json!({"type": "complete", "status": status}))
            .await;
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| (from_json(&v), rx))
    })
    .boxed()
}

/// The functions of the worker service, in registration order.
pub(crate) fn functions(w: &Arc<AiCliWorker>) -> Vec<(&'static str, Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, AiCliWorker::start)),
        ("stop", bind(w, AiCliWorker::stop)),
        ("list_sessions", bind(w, AiCliWorker::list_sessions)),
        ("get_session_info", bind(w, AiCliWorker::get_session_info)),
        ("get_logs", bind(w, AiCliWorker::get_logs)),
        ("execute", bind(w, AiCliWorker::execute)),
        ("execute_stream", bind(w, AiCliWorker::execute_stream)),
        ("attach", bind(w, AiCliWorker::attach)),
        ("interrupt", bind(w, AiCliWorker::interrupt)),
        ("list_adapters", bind(w, AiCliWorker::list_adapters)),
        ("compile", bind(w, AiCliWorker::compile)),
    ]
}
