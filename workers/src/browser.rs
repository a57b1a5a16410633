//! The browser worker (apps-workers.md §4.7, types `web-python`, `web-worker`, `window`,
//! `iframe`, `hypha`, `web-app`): runs browser apps as pages of one shared headless
//! Chromium ([`chromium`]), each session in its own browser context.
//!
//! * `compile` renders the app's page from its source at install ([`compile`]).
//! * `start` opens `{server}/{ws}/artifacts/{app}/files/{entry}?server_url=…&client_id=…
//!   &workspace=…&app_id=…&token=…&use_proxy=true` (a `web-app`: its own URL, with those
//!   query parameters only when the manifest sets `inject_auth_params`), waits for the
//!   `load` event (timeout = config `timeout`, default 60 s), and fails when the page
//!   answers other than 200. The page's hypha-rpc client (served by the server at
//!   `/assets/`) registers the app's services; the controller waits for them.
//! * Logs: `info` (what the worker did), `console` (`[level] text`, a web worker's output
//!   included) and `error` (uncaught page errors, a crashed page, the browser's exit).
//! * `execute(session_id, script)` evaluates `script` in the page (promises awaited) and
//!   returns its value as data; a thrown error fails the call with its message.
//! * `take_screenshot(session_id, format="png"|"jpeg")` → the image bytes of the viewport.
//! * A crashed page or an exited browser makes its sessions `failed`, with the reason in
//!   `error` and in the logs; `execute` on them fails at once. The next `start` launches a
//!   new browser.
//!
//! Manifest keys read at start: `authorization_token` (sent as `Authorization: Bearer …`
//! with every request of the session), `cookies` (a list of CDP cookie objects, or name →
//! value, for the app's URL), `local_storage` / `session_storage` (name → value),
//! `inject_auth_params` (web-app), `startup_script` (an app file evaluated after load; a
//! failure is logged, not fatal).

mod chromium;
pub mod compile;
mod options;
mod page;

pub use options::{BrowserOptions, DEFAULT_MAX_BROWSER_SESSIONS};

use crate::args::{number, Args};
use crate::config::{progress, WorkerConfig};
use crate::error::{WorkerError, WorkerResult};
use crate::fetch::AppFiles;
use crate::logs::Logs;
use crate::session::{SessionInfo, SessionStatus};
use chromium::Chromium;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::network::{Headers, SetExtraHttpHeadersParams};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures_util::StreamExt;
use page::{evaluate, preload, redact, remote_text, CDP_FAILED};
use rhizo_client::Client;
use rhizo_protocol::message::Call;
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The start timeout when the config gives none, seconds (the reference's 60 s).
pub const DEFAULT_TIMEOUT: f64 = 60.0;

/// The most log entries kept per type and session (older ones are dropped).
const LOG_CAP: usize = 5_000;

/// How often `start` looks at a page's start-up state.
const START_POLL: Duration = Duration::from_millis(50);

/// The longest `execute` or `take_screenshot` may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The browser worker's state.
pub(crate) struct BrowserWorker {
    opts: BrowserOptions,
    chromium: Chromium,
    server_url: String,
    client: Weak<Client>,
    files: AppFiles,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    info: SessionInfo,
    /// Shared with the tasks that forward the page's console and errors.
    logs: Arc<Mutex<Logs>>,
    /// The page and its browser context, once opened.
    page: Option<(Page, BrowserContextId)>,
    /// The browser generation the page lives in.
    generation: u64,
}

impl BrowserWorker {
    /// A worker whose browser launches on the first `start`; watches for the browser's exit.
    pub(crate) fn new(
        opts: BrowserOptions,
        server_url: String,
        client: Weak<Client>,
        files: AppFiles,
    ) -> Arc<Self> {
        let (chromium, mut exited) = Chromium::new(opts.clone());
        let w = Arc::new(BrowserWorker {
            opts,
            chromium,
            server_url,
            client,
            files,
            sessions: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&w);
        tokio::spawn(async move {
            while let Some(generation) = exited.recv().await {
                let Some(w) = weak.upgrade() else { break };
                w.chromium.forget(generation).await;
                w.fail_generation(generation);
            }
        });
        w
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every session of a browser that exited becomes `failed`.
    fn fail_generation(&self, generation: u64) {
        for s in self.sessions().values_mut() {
            if s.generation == generation && s.page.is_some() {
                fail(
                    s,
                    "the browser process exited (crashed or was killed); start the app again",
                );
                s.page = None;
            }
        }
    }

    /// `start(config)` (§3.2, §4.7): opens the app's page; returns the session id.
    pub(crate) async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let config = args.start_config()?;
        let app_type = value::get_str(&config.manifest, "type").unwrap_or("window");
        let app_type: &'static str = compile::BROWSER_TYPES
            .iter()
            .find(|t| **t == app_type)
            .ok_or_else(|| {
                WorkerError::Invalid(format!("the browser worker cannot run {app_type:?} apps"))
            })?;
        let logs = Arc::new(Mutex::new(Logs::default()));
        {
            let mut sessions = self.sessions();
            if sessions.contains_key(&config.id) {
                return Err(WorkerError::SessionExists(config.id.clone()).into());
            }
            if sessions.len() >= self.opts.max_sessions {
                return Err(WorkerError::TooManyBrowserSessions(self.opts.max_sessions).into());
            }
            sessions.insert(
                config.id.clone(),
                Session {
                    info: SessionInfo::new(&config, app_type),
                    logs: logs.clone(),
                    page: None,
                    generation: 0,
                },
            );
        }
        match self.open(&config, app_type, &logs).await {
            Ok(()) => {
                progress(
                    config.progress.as_ref(),
                    &self.client,
                    "success",
                    "Browser page loaded",
                )
                .await;
                Ok(config.id.clone().into())
            }
            Err(e) => {
                let msg = e.to_string();
                if let Some(mut s) = self.sessions().remove(&config.id) {
                    if let Some((page, ctx)) = s.page.take() {
                        tokio::spawn(close_page(self.chromium_handle(), page, ctx));
                    }
                }
                progress(config.progress.as_ref(), &self.client, "error", &msg).await;
                Err(msg)
            }
        }
    }

    fn chromium_handle(self: &Arc<Self>) -> Weak<Self> {
        Arc::downgrade(self)
    }

    /// Opens the session's page and navigates it to the app.
    async fn open(
        self: &Arc<Self>,
        config: &WorkerConfig,
        app_type: &'static str,
        logs: &Arc<Mutex<Logs>>,
    ) -> WorkerResult<()> {
        let cb = config.progress.as_ref();
        progress(cb, &self.client, "info", "Opening a browser page…").await;
        let live = self.chromium.get().await.map_err(WorkerError::Io)?;
        let cdp = |what: &str, e: chromiumoxide::error::CdpError| {
            WorkerError::Io(format!("{what} failed: {e}"))
        };
        let ctx = live
            .browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(|e| cdp("creating a browser context", e))?;
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(ctx.clone())
            .build()
            .map_err(WorkerError::Io)?;
        let page = match live.browser.new_page(target).await {
            Ok(p) => p,
            Err(e) => {
                let _ = live.browser.dispose_browser_context(ctx).await;
                return Err(cdp("opening a page", e));
            }
        };
        {
            let mut sessions = self.sessions();
            let Some(s) = sessions.get_mut(&config.id) else {
                drop(sessions);
                tokio::spawn(close_page(self.chromium_handle(), page, ctx));
                return Err(WorkerError::Io(format!(
                    "session {} was stopped while it started",
                    config.id
                )));
            };
            s.page = Some((page.clone(), ctx));
            s.generation = live.generation;
        }
        self.forward_events(&page, &config.id, logs).await?;
        self.emulate(&live, &page, &config.manifest).await?;
        let url = self.app_url(config, app_type)?;
        preload(&page, &config.manifest, &url).await?;
        push(logs, "info", format!("Opening {}", redact(&url)));
        let timeout = config.timeout.unwrap_or(DEFAULT_TIMEOUT).max(1.0);
        match tokio::time::timeout(Duration::from_secs_f64(timeout), page.goto(url.as_str())).await
        {
            Err(_) => {
                return Err(WorkerError::Timeout(format!(
                    "the app page did not load within {timeout} s"
                )))
            }
            Ok(Err(e)) => return Err(cdp("loading the app page", e)),
            Ok(Ok(_)) => {}
        }
        let status = evaluate(
            &page,
            "(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0",
        )
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
        if status != 0 && status != 200 {
            return Err(WorkerError::Io(format!(
                "the app page {} answered HTTP {status}",
                redact(&url)
            )));
        }
        push(logs, "info", "Page loaded");
        self.await_app_start(&page, timeout).await?;
        if let Some(path) = value::get_str(&config.manifest, "startup_script") {
            self.run_startup_script(config, &page, path, logs).await;
        }
        self.set_status(&config.id, SessionStatus::Running);
        Ok(())
    }

    /// Waits (up to `timeout` seconds) for a templated page's app script to have run
    /// (`__rhizoAppState`, see `templates/state.js`), so that an app that fails while it
    /// starts fails `start` at once with its error instead of the controller waiting for
    /// its services. Pages without the state (ready HTML, web-app) return at once, as does
    /// a page still loading at the deadline (the controller's own wait decides then).
    async fn await_app_start(&self, page: &Page, timeout: f64) -> WorkerResult<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(timeout);
        loop {
            let state = evaluate(page, "globalThis.__rhizoAppState || null").await?;
            match state.get("state").and_then(|s| s.as_str()) {
                None | Some("started") => return Ok(()),
                Some("failed") => {
                    let error = state.get("error").and_then(|e| e.as_str()).unwrap_or("");
                    return Err(WorkerError::Invalid(format!(
                        "the app failed while it started: {error}"
                    )));
                }
                Some(_) if tokio::time::Instant::now() >= deadline => return Ok(()),
                Some(_) => tokio::time::sleep(START_POLL).await,
            }
        }
    }

    /// `startup_script`: an app file evaluated in the page after load (failures logged).
    async fn run_startup_script(
        &self,
        config: &WorkerConfig,
        page: &Page,
        path: &str,
        logs: &Arc<Mutex<Logs>>,
    ) {
        let base = config.files_base(&self.server_url);
        let script = match self.files.get(&base, path, config.token.as_deref()).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => {
                push(logs, "error", format!("startup_script {path}: {e}"));
                return;
            }
        };
        match evaluate(page, &script).await {
            Ok(_) => push(logs, "info", format!("startup_script {path} ran")),
            Err(e) => push(logs, "error", format!("startup_script {path}: {e}")),
        }
    }

    /// The URL the session's page opens (§4.7).
    fn app_url(&self, config: &WorkerConfig, app_type: &str) -> WorkerResult<String> {
        let server = config
            .server_url
            .clone()
            .unwrap_or_else(|| self.server_url.clone());
        let server = server.trim_end_matches('/');
        let mut query = vec![
            ("server_url", server.to_owned()),
            ("client_id", config.client_id.clone()),
            ("workspace", config.workspace.clone()),
            ("app_id", config.app_id.clone()),
        ];
        if let Some(p) = &self.opts.pyodide_url {
            query.push(("pyodide_url", p.clone()));
        }
        query.push(("use_proxy", "true".into()));
        if let Some(t) = &config.token {
            query.push(("token", t.clone()));
        }
        let entry = config
            .entry_point
            .clone()
            .unwrap_or_else(|| "index.html".into());
        let with_query = |url: &str| -> WorkerResult<String> {
            let mut u = reqwest::Url::parse(url)
                .map_err(|e| WorkerError::Invalid(format!("the app URL {url:?}: {e}")))?;
            u.query_pairs_mut().extend_pairs(&query);
            Ok(u.into())
        };
        if app_type == "web-app" {
            if !(entry.starts_with("http://") || entry.starts_with("https://")) {
                return Err(WorkerError::Invalid(
                    "a web-app needs entry_point: the http(s):// URL of its page".into(),
                ));
            }
            let inject = value::get(&config.manifest, "inject_auth_params")
                .and_then(Value::as_bool)
                == Some(true);
            return if inject {
                with_query(&entry)
            } else {
                Ok(entry)
            };
        }
        with_query(&format!(
            "{}/{}",
            config.files_base(server),
            entry.trim_start_matches('/')
        ))
    }

    /// Locale, time zone, user agent and extra headers of the options, and the manifest's
    /// `authorization_token`.
    async fn emulate(
        &self,
        live: &chromium::Live,
        page: &Page,
        manifest: &Value,
    ) -> WorkerResult<()> {
        let cdp = |e: chromiumoxide::error::CdpError| {
            WorkerError::Io(format!("setting up the browser page failed: {e}"))
        };
        if let Some(l) = &self.opts.locale {
            page.emulate_locale(
                chromiumoxide::cdp::browser_protocol::emulation::SetLocaleOverrideParams {
                    locale: Some(l.clone()),
                },
            )
            .await
            .map_err(cdp)?;
        }
        if let Some(tz) = &self.opts.timezone {
            page.emulate_timezone(tz.clone()).await.map_err(cdp)?;
        }
        if self.opts.user_agent.is_some() || self.opts.locale.is_some() {
            // `navigator.language` and `Accept-Language` follow the user-agent override.
            let ua = match &self.opts.user_agent {
                Some(ua) => ua.clone(),
                None => live.browser.user_agent().await.map_err(cdp)?,
            };
            let mut p =
                chromiumoxide::cdp::browser_protocol::emulation::SetUserAgentOverrideParams::new(
                    ua,
                );
            p.accept_language = self.opts.locale.clone();
            page.execute(p).await.map_err(cdp)?;
        }
        let mut headers: serde_json::Map<String, serde_json::Value> = self
            .opts
            .extra_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        if let Some(t) = value::get_str(manifest, "authorization_token") {
            headers.insert("Authorization".into(), format!("Bearer {t}").into());
        }
        if !headers.is_empty() {
            page.execute(SetExtraHttpHeadersParams::new(Headers::new(
                serde_json::Value::Object(headers),
            )))
            .await
            .map_err(cdp)?;
        }
        Ok(())
    }

    /// Forwards the page's console messages and uncaught errors into the session's logs,
    /// and turns a crash of the page into a failed session.
    async fn forward_events(
        self: &Arc<Self>,
        page: &Page,
        id: &str,
        logs: &Arc<Mutex<Logs>>,
    ) -> WorkerResult<()> {
        let cdp = |e: chromiumoxide::error::CdpError| {
            WorkerError::Io(format!("listening to the browser page failed: {e}"))
        };
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(cdp)?;
        let l = logs.clone();
        tokio::spawn(async move {
            while let Some(ev) = console.next().await {
                let text: Vec<String> = ev.args.iter().map(remote_text).collect();
                let level = serde_json::to_value(&ev.r#type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "log".into());
                push(&l, "console", format!("[{level}] {}", text.join(" ")));
            }
        });
        let mut errors = page
            .event_listener::<EventExceptionThrown>()
            .await
            .map_err(cdp)?;
        let l = logs.clone();
        tokio::spawn(async move {
            while let Some(ev) = errors.next().await {
                let d = &ev.exception_details;
                let text = d
                    .exception
                    .as_ref()
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| d.text.clone());
                push(&l, "error", text);
            }
        });
        let mut crashed = page
            .event_listener::<chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed>()
            .await
            .map_err(cdp)?;
        let (weak, id) = (Arc::downgrade(self), id.to_owned());
        tokio::spawn(async move {
            if crashed.next().await.is_some() {
                if let Some(w) = weak.upgrade() {
                    if let Some(s) = w.sessions().get_mut(&id) {
                        fail(s, "the app's browser page crashed");
                    }
                }
            }
        });
        Ok(())
    }

    fn set_status(&self, id: &str, status: SessionStatus) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.info.status = status;
        }
    }

    /// `err`, a failed CDP command on session `id`'s page — or, when the browser turns out
    /// to have died (the exit watch may not have seen it yet), the session's failure.
    async fn explain(&self, id: &str, err: WorkerError) -> WorkerError {
        let generation = self.sessions().get(id).map(|s| s.generation);
        let Some(generation) = generation else {
            return err;
        };
        if self.chromium.alive(generation).await {
            return err;
        }
        self.fail_generation(generation);
        WorkerError::Io(format!(
            "session {id} has failed: the browser process exited (crashed or was killed); \
             start the app again"
        ))
    }

    /// The page of a live session the caller may use.
    fn page_of(&self, args: &Args<'_>) -> WorkerResult<Page> {
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions();
        let s = sessions
            .get(id)
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
        args.caller().check(id, &s.info.workspace)?;
        if s.info.status == SessionStatus::Failed {
            return Err(WorkerError::Io(format!(
                "session {id} has failed: {}",
                s.info.error.as_deref().unwrap_or("unknown error")
            )));
        }
        match &s.page {
            Some((p, _)) => Ok(p.clone()),
            None => Err(WorkerError::Io(format!("session {id} is still starting"))),
        }
    }

    /// `stop(session_id)`: closes the page and its browser context; an unknown id is not
    /// an error.
    pub(crate) async fn stop(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("stop", &call);
        let id = args.str(0, "session_id")?;
        let page = {
            let mut sessions = self.sessions();
            match sessions.get(id) {
                Some(s) => {
                    args.caller().check(id, &s.info.workspace)?;
                    sessions.remove(id).and_then(|mut s| s.page.take())
                }
                None => None,
            }
        };
        if let Some((page, ctx)) = page {
            close_page(Arc::downgrade(&self), page, ctx).await;
        }
        Ok(Value::Nil)
    }

    /// `get_logs(session_id, type=None, offset=0, limit=None)` (§3.2).
    pub(crate) async fn get_logs(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_logs", &call);
        let id = args.str(0, "session_id")?;
        let kind = args.opt_str(1, "type")?;
        let offset = args.opt_usize(2, "offset")?.unwrap_or(0);
        let limit = args.opt_usize(3, "limit")?;
        let logs = {
            let sessions = self.sessions();
            let s = sessions
                .get(id)
                .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
            args.caller().check(id, &s.info.workspace)?;
            s.logs.clone()
        };
        let page = logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .page(kind, offset, limit);
        Ok(page)
    }

    /// `get_session_info(session_id)` → SessionInfo (§3.4).
    pub(crate) async fn get_session_info(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("get_session_info", &call);
        let id = args.str(0, "session_id")?;
        let sessions = self.sessions();
        let s = sessions
            .get(id)
            .ok_or_else(|| WorkerError::SessionNotFound(id.to_owned()))?;
        args.caller().check(id, &s.info.workspace)?;
        Ok(s.info.to_value())
    }

    /// `list_sessions(workspace=None)` → the SessionInfo of `workspace`'s sessions.
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

    /// `execute(session_id, script, config=None)`: evaluates `script` in the page and
    /// returns its (awaited) value as data.
    pub(crate) async fn execute(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("execute", &call);
        let page = self.page_of(&args)?;
        let script = args.str(1, "script")?;
        let timeout = args
            .get(2, "config")
            .and_then(|c| value::get(c, "timeout"))
            .and_then(number)
            .map_or(EVAL_TIMEOUT, |t| {
                Duration::from_secs_f64(t.clamp(0.1, 3600.0))
            });
        let out = tokio::time::timeout(timeout, evaluate(&page, script))
            .await
            .map_err(|_| {
                WorkerError::Timeout(format!("the script did not finish within {timeout:?}"))
            })?;
        match out {
            Ok(v) => Ok(value::from_json(&v)),
            Err(e @ WorkerError::Io(_)) if e.to_string().contains(CDP_FAILED) => {
                Err(self.explain(args.str(0, "session_id")?, e).await.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `take_screenshot(session_id, format="png")` → the viewport as PNG or JPEG bytes.
    pub(crate) async fn take_screenshot(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("take_screenshot", &call);
        let page = self.page_of(&args)?;
        let format = match args.opt_str(1, "format")?.unwrap_or("png") {
            "png" => CaptureScreenshotFormat::Png,
            "jpeg" | "jpg" => CaptureScreenshotFormat::Jpeg,
            other => {
                return Err(WorkerError::Invalid(format!(
                    "screenshot format {other:?}: expected \"png\" or \"jpeg\""
                ))
                .into())
            }
        };
        let shot = tokio::time::timeout(
            EVAL_TIMEOUT,
            page.screenshot(ScreenshotParams::builder().format(format).build()),
        )
        .await
        .map_err(|_| WorkerError::Timeout("the screenshot took too long".into()))?;
        match shot {
            Ok(shot) => Ok(Value::Binary(shot)),
            Err(e) => {
                let e = WorkerError::Io(format!("taking the screenshot failed: {e}"));
                Err(self.explain(args.str(0, "session_id")?, e).await.into())
            }
        }
    }

    /// `get_browser_pid()` → the browser's process id, or nil when none runs (tests and
    /// diagnostics; rhizo extension).
    pub(crate) async fn get_browser_pid(self: Arc<Self>, _call: Call) -> Result<Value, String> {
        Ok(self.chromium.pid().await.map_or(Value::Nil, Value::from))
    }

    /// `compile(manifest, files, config=None)` → `[manifest, files]` (§4.7).
    pub(crate) async fn compile(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("compile", &call);
        let manifest = args.get(0, "manifest").ok_or_else(|| {
            WorkerError::Argument("compile() missing required argument: 'manifest'".into())
        })?;
        let manifest = value::to_json(manifest);
        let files: Vec<compile::File> = match args.get(1, "files").map(value::to_json) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|f| compile::File {
                    path: f
                        .get("path")
                        .or_else(|| f.get("name"))
                        .and_then(|p| p.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    content: f
                        .get("content")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    format: f
                        .get("format")
                        .and_then(|c| c.as_str())
                        .unwrap_or("text")
                        .to_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let server_url = args
            .get(2, "config")
            .and_then(|c| value::get_str(c, "server_url"))
            .unwrap_or(&self.server_url)
            .to_owned();
        let (patch, files) = compile::compile(&manifest, &files, &server_url)
            .map_err(|e| WorkerError::Invalid(e.to_string()))?;
        let mut out = manifest;
        if let (Some(m), Some(p)) = (out.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                m.insert(k.clone(), v.clone());
            }
        }
        let files: Vec<serde_json::Value> = files
            .into_iter()
            .map(|f| serde_json::json!({"path": f.path, "content": f.content, "format": f.format}))
            .collect();
        Ok(Value::Array(vec![
            value::from_json(&out),
            value::from_json(&serde_json::Value::Array(files)),
        ]))
    }

    /// Closes every page and the browser (worker shutdown).
    pub(crate) async fn stop_all(&self) {
        let pages: Vec<_> = self
            .sessions()
            .drain()
            .filter_map(|(_, mut s)| s.page.take())
            .collect();
        for (page, _) in pages {
            let _ = tokio::time::timeout(Duration::from_secs(2), page.close()).await;
        }
        self.chromium.close().await;
    }
}

/// Closes a session's page and disposes of its browser context (best effort).
async fn close_page(worker: Weak<BrowserWorker>, page: Page, ctx: BrowserContextId) {
    let _ = tokio::time::timeout(Duration::from_secs(5), page.close()).await;
    let Some(w) = worker.upgrade() else { return };
    // A browser that has exited took the context with it: never launch one for this.
    if let Some(live) = w.chromium.current().await {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            live.browser.dispose_browser_context(ctx),
        )
        .await;
    }
}

/// Marks a session failed with `why` (logged as an error).
fn fail(s: &mut Session, why: &str) {
    if s.info.status != SessionStatus::Failed {
        s.info.status = SessionStatus::Failed;
        s.info.error = Some(why.to_owned());
        push(&s.logs, "error", why);
    }
}

fn push(logs: &Mutex<Logs>, kind: &str, text: impl Into<String>) {
    logs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_capped(kind, text, LOG_CAP);
}

/// The worker's service functions.
pub(crate) fn functions(w: &Arc<BrowserWorker>) -> Vec<(&'static str, rhizo_client::Handler)> {
    use crate::service::bind;
    vec![
        ("start", bind(w, BrowserWorker::start)),
        ("stop", bind(w, BrowserWorker::stop)),
        ("get_logs", bind(w, BrowserWorker::get_logs)),
        ("get_session_info", bind(w, BrowserWorker::get_session_info)),
        ("list_sessions", bind(w, BrowserWorker::list_sessions)),
        ("execute", bind(w, BrowserWorker::execute)),
        ("take_screenshot", bind(w, BrowserWorker::take_screenshot)),
        ("get_browser_pid", bind(w, BrowserWorker::get_browser_pid)),
        ("compile", bind(w, BrowserWorker::compile)),
    ]
}
