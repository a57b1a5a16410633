//! The ai-cli worker (apps-workers.md §6; seed 003 "py-worker"): coding CLIs — Claude Code
//! and OpenCode — run as agent sessions, driven turn by turn.
//!
//! * [`adapter`] — the [`adapter::Adapter`] trait and registry; [`claude`], [`opencode`].
//! * [`agent`] — one session: the CLI's process group, its events, turns, listeners.
//! * `watch.rs` — tailing a CLI's JSONL transcript (file-watch mode).
//! * [`AgentManager`] — the sessions of one worker process: the cap (`MAX_WORKERS`), the
//!   session directories, the checks on what a caller may choose.
//! * `hypha.rs` — the `server-app-worker` service (types `ai-cli`, `code-agent`) and the
//!   per-session `default` / `agent` services an app's client registers.
//! * `http.rs` — py-worker's REST/WebSocket API and web UI (`rhizo worker ai-cli
//!   --http-port 7788`).
//!
//! Everything that picks a program or a key comes from the worker's own configuration
//! ([`AiCliOptions::from_env`]: the environment, then a `.env` file); a manifest or a
//! request chooses only among the enabled adapters, a model, a project directory inside
//! the allowed base, and non-secret environment variables.

pub mod adapter;
pub mod agent;
pub mod claude;
pub mod http;
pub mod hypha;
pub mod opencode;
mod watch;

use adapter::{OutputMode, Registry};
use agent::{Agent, AgentSpec};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the ai-cli worker may use, from its own configuration.
#[derive(Debug, Clone)]
pub struct AiCliOptions {
    /// The enabled adapters with their settings (`ENABLED_AI_CLIS`, `CLAUDE_*`, `OPENCODE_*`).
    pub registry: Registry,
    /// The adapter used when none is named (`DEFAULT_AI_CLI`, default `claude`).
    pub default_cli: String,
    /// Where session directories go (`WORKERS_BASE_DIR`, default `./data/workers`).
    pub base_dir: PathBuf,
    /// The directory every `project_path` must be inside (`AI_CLI_PROJECTS_BASE`); `None`:
    /// no `project_path` is accepted, sessions work in their own directory.
    pub projects_base: Option<PathBuf>,
    /// The Hypha workspaces whose apps may name a `project_path`
    /// (`AI_CLI_PROJECT_WORKSPACES`, comma-separated, `*` for all; default none: apps get a
    /// session directory of their own). The REST API is governed by the base alone.
    pub project_workspaces: Vec<String>,
    /// The most sessions at once (`MAX_WORKERS`, default 10).
    pub max_workers: usize,
    /// How long a turn may take before `execute` gives up (`WORKER_TIMEOUT`, default 300 s).
    pub worker_timeout: Duration,
}

impl Default for AiCliOptions {
    fn default() -> Self {
        AiCliOptions {
            registry: Registry::builtin(),
            default_cli: "claude".into(),
            base_dir: PathBuf::from("./data/workers"),
            projects_base: None,
            project_workspaces: Vec::new(),
            max_workers: 10,
            worker_timeout: Duration::from_secs(300),
        }
    }
}

impl AiCliOptions {
    /// Reads the configuration: the process environment first, then a `.env` file
    /// (`dotenv`, default `./.env` when it exists) for what the environment does not set.
    /// Keys: `DEFAULT_AI_CLI`, `ENABLED_AI_CLIS` (comma-separated), `CLAUDE_BINARY`,
    /// `CLAUDE_API_KEY` (else `ANTHROPIC_API_KEY`), `CLAUDE_MODEL`, `CLAUDE_API_BASE` (else
    /// `ANTHROPIC_BASE_URL`), `OPENCODE_BINARY`, `OPENCODE_API_KEY`, `OPENCODE_API_BASE`,
    /// `OPENCODE_MODEL`, `WORKERS_BASE_DIR`, `AI_CLI_PROJECTS_BASE`, `MAX_WORKERS`,
    /// `WORKER_TIMEOUT` (seconds).
    ///
    /// Errors: an unreadable `.env`, a malformed number.
    pub fn from_env(dotenv: Option<&Path>) -> anyhow::Result<AiCliOptions> {
        let file: BTreeMap<String, String> = match dotenv {
            Some(p) => dotenvy::from_path_iter(p)?.collect::<Result<_, _>>()?,
            None if Path::new(".env").is_file() => {
                dotenvy::from_path_iter(".env")?.collect::<Result<_, _>>()?
            }
            None => BTreeMap::new(),
        };
        Self::from_lookup(|k| std::env::var(k).ok().or_else(|| file.get(k).cloned()))
    }

    /// [`AiCliOptions::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<AiCliOptions> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut o = AiCliOptions::default();
        if let Some(d) = get("DEFAULT_AI_CLI") {
            o.default_cli = d;
        }
        let enabled: Vec<String> = get("ENABLED_AI_CLIS")
            .unwrap_or_else(|| "claude,opencode".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        o.registry.retain(&enabled);
        if let Some(s) = o.registry.settings_mut("claude") {
            if let Some(b) = get("CLAUDE_BINARY") {
                s.binary = b;
            }
            s.api_key = get("CLAUDE_API_KEY").or_else(|| get("ANTHROPIC_API_KEY"));
            s.model = get("CLAUDE_MODEL");
            s.api_base = get("CLAUDE_API_BASE").or_else(|| get("ANTHROPIC_BASE_URL"));
        }
        if let Some(s) = o.registry.settings_mut("opencode") {
            if let Some(b) = get("OPENCODE_BINARY") {
                s.binary = b;
            }
            s.api_key = get("OPENCODE_API_KEY");
            s.model = get("OPENCODE_MODEL");
            s.api_base = get("OPENCODE_API_BASE");
        }
        if let Some(d) = get("WORKERS_BASE_DIR") {
            o.base_dir = PathBuf::from(d);
        }
        o.projects_base = get("AI_CLI_PROJECTS_BASE").map(PathBuf::from);
        o.project_workspaces = get("AI_CLI_PROJECT_WORKSPACES")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(n) = get("MAX_WORKERS") {
            o.max_workers = n
                .parse()
                .map_err(|_| anyhow::anyhow!("MAX_WORKERS={n}: not a number"))?;
        }
        if let Some(t) = get("WORKER_TIMEOUT") {
            let secs: f64 = t
                .parse()
                .map_err(|_| anyhow::anyhow!("WORKER_TIMEOUT={t}: not a number of seconds"))?;
            o.worker_timeout = Duration::from_secs_f64(secs.max(1.0));
        }
        Ok(o)
    }
}

/// Why a session could not be made or found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AiCliError {
    /// The cap of sessions is reached (py-worker's wording).
    #[error("Maximum number of workers ({0}) reached")]
    TooMany(usize),
    /// No enabled adapter of that name.
    #[error("Unknown AI CLI type: {0}")]
    UnknownCli(String),
    /// No session of that id.
    #[error("Worker not found: {0}")]
    NotFound(String),
    /// A request asked for something it may not choose.
    #[error("{0}")]
    Refused(String),
    /// The CLI could not be started.
    #[error("Failed to create worker: {0}")]
    Start(String),
}

/// What a caller asks for when it creates a session (manifest fields, or a REST body).
#[derive(Debug, Clone, Default)]
pub struct NewAgent {
    /// Session id; a UUID when `None`.
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Adapter name; the default adapter when `None`.
    pub cli: Option<String>,
    /// A project directory (must be inside [`AiCliOptions::projects_base`]).
    pub project_path: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Extra CLI arguments (manifests only).
    pub args: Vec<String>,
    /// Extra environment (checked by [`check_env`]).
    pub env: BTreeMap<String, String>,
    /// `stdout` / `file-watch`.
    pub output_mode: Option<String>,
    /// Transcript override, relative to the session directory.
    pub log_file: Option<String>,
    /// Hypha workspace and app, when run as an app.
    pub workspace: Option<String>,
    /// App id.
    pub app_id: Option<String>,
    /// Stop after this long without activity.
    pub idle_timeout: Option<Duration>,
}

/// The sessions of one worker process.
pub struct AgentManager {
    opts: AiCliOptions,
    sessions: Mutex<BTreeMap<String, Arc<Agent>>>,
    idle: Mutex<BTreeMap<String, Duration>>,
}

impl std::fmt::Debug for AgentManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentManager")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl AgentManager {
    /// A manager with `opts`; starts the idle sweep on the current runtime.
    pub fn new(opts: AiCliOptions) -> Arc<AgentManager> {
        let m = Arc::new(AgentManager {
            opts,
            sessions: Mutex::default(),
            idle: Mutex::default(),
        });
        tokio::spawn(idle_sweep(Arc::downgrade(&m)));
        m
    }

    /// The configuration.
    pub fn options(&self) -> &AiCliOptions {
        &self.opts
    }

    /// Whether apps of Hypha workspace `ws` may name a `project_path`.
    pub fn project_path_allowed(&self, ws: &str) -> bool {
        self.opts
            .project_workspaces
            .iter()
            .any(|w| w == "*" || w == ws)
    }

    /// The enabled adapters as `list_adapters` shows them.
    pub fn adapters(&self) -> Vec<serde_json::Value> {
        self.opts.registry.describe()
    }

    /// The working directory a request's `project_path` names, checked to be inside the
    /// allowed base (after resolving `..` and symlinks of what exists).
    ///
    /// Errors: [`AiCliError::Refused`] when no base is configured or the path leaves it.
    pub fn project_dir(&self, project_path: &str) -> Result<PathBuf, AiCliError> {
        let Some(base) = &self.opts.projects_base else {
            return Err(AiCliError::Refused(
                "this worker accepts no project_path (AI_CLI_PROJECTS_BASE is not set)".into(),
            ));
        };
        let base = std::fs::canonicalize(base).map_err(|e| {
            AiCliError::Refused(format!(
                "the projects base {} is unusable: {e}",
                base.display()
            ))
        })?;
        let p = Path::new(project_path);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        let normal = normalize(&joined);
        // Resolve symlinks of the part that exists.
        let mut existing = normal.clone();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (
                existing.file_name().map(|n| n.to_owned()),
                existing.parent(),
            ) {
                (Some(n), Some(parent)) => {
                    rest.push(n);
                    existing = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
        for n in rest.into_iter().rev() {
            resolved.push(n);
        }
        if !resolved.starts_with(&base) {
            return Err(AiCliError::Refused(format!(
                "project_path {project_path:?} is outside the allowed base {}",
                base.display()
            )));
        }
        Ok(resolved)
    }

    /// Creates and starts a session.
    ///
    /// Errors: the cap, an unknown or disabled CLI, a refused `project_path`, `env`,
    /// `output_mode` or `log_file`, a session id in use, or the CLI failing to start.
    pub fn create(&self, req: NewAgent) -> Result<Arc<Agent>, AiCliError> {
        let cli = req
            .cli
            .clone()
            .unwrap_or_else(|| self.opts.default_cli.clone());
        let (adapter, settings) = self
            .opts
            .registry
            .get(&cli)
            .ok_or_else(|| AiCliError::UnknownCli(cli.clone()))?;
        let env = check_env(&req.env)?;
        let output_mode = req
            .output_mode
            .as_deref()
            .map(|m| {
                OutputMode::parse(m).ok_or_else(|| {
                    AiCliError::Refused(format!("output_mode {m:?}: use stdout or file-watch"))
                })
            })
            .transpose()?;
        let id = req
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        {
            let sessions = self.sessions.lock().expect("sessions lock");
            if sessions.len() >= self.opts.max_workers {
                return Err(AiCliError::TooMany(self.opts.max_workers));
            }
            if sessions.contains_key(&id) {
                return Err(AiCliError::Refused(format!("session {id} already exists")));
            }
        }
        let (dir, owns_dir) = match &req.project_path {
            Some(p) => (self.project_dir(p)?, false),
            None => (
                self.opts
                    .base_dir
                    .join(crate::terminal::session_dir_name(&id)),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| AiCliError::Start(format!("cannot create {}: {e}", dir.display())))?;
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let log_file = match &req.log_file {
            Some(f) => {
                let rel = Path::new(f);
                if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(AiCliError::Refused(format!(
                        "log_file {f:?} must be a relative path inside the session directory"
                    )));
                }
                Some(dir.join(rel))
            }
            None => None,
        };
        let spec = AgentSpec {
            id: id.clone(),
            name: if req.name.is_empty() {
                id.clone()
            } else {
                req.name.clone()
            },
            dir,
            owns_dir,
            model: req.model.clone(),
            args: req.args.clone(),
            env,
            output_mode,
            log_file,
            workspace: req.workspace.clone(),
            app_id: req.app_id.clone(),
        };
        let agent = Agent::launch(spec, adapter, settings).map_err(AiCliError::Start)?;
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(id.clone(), agent.clone());
        if let Some(t) = req.idle_timeout {
            self.idle.lock().expect("idle lock").insert(id, t);
        }
        Ok(agent)
    }

    /// Session `id`.
    pub fn get(&self, id: &str) -> Result<Arc<Agent>, AiCliError> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
            .ok_or_else(|| AiCliError::NotFound(id.to_owned()))
    }

    /// Every session, oldest first by id order.
    pub fn list(&self) -> Vec<Arc<Agent>> {
        let mut all: Vec<Arc<Agent>> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.created_at().cmp(b.created_at()));
        all
    }

    /// Stops and forgets session `id`.
    ///
    /// Errors: [`AiCliError::NotFound`].
    pub async fn remove(&self, id: &str) -> Result<Arc<Agent>, AiCliError> {
        let agent = self
            .sessions
            .lock()
            .expect("sessions lock")
            .remove(id)
            .ok_or_else(|| AiCliError::NotFound(id.to_owned()))?;
        self.idle.lock().expect("idle lock").remove(id);
        agent.stop().await;
        Ok(agent)
    }

    /// Stops every session.
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let _ = self.remove(&id).await;
        }
    }

    /// Kills every session's processes at once.
    pub fn kill_all_now(&self) {
        for a in self.sessions.lock().expect("sessions lock").values() {
            a.kill_now();
        }
    }
}

/// Stops sessions idle for longer than their `idle_timeout`.
async fn idle_sweep(m: std::sync::Weak<AgentManager>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let Some(m) = m.upgrade() else { return };
        let due: Vec<String> = {
            let idle = m.idle.lock().expect("idle lock");
            let sessions = m.sessions.lock().expect("sessions lock");
            idle.iter()
                .filter(|(id, limit)| {
                    sessions
                        .get(*id)
                        .is_some_and(|a| a.idle_for() >= **limit && !a.is_busy())
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in due {
            tracing::info!(session = %id, "ai-cli session idle; stopping");
            let _ = m.remove(&id).await;
        }
    }
}

/// `p` with `.` and `..` resolved lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The manifest's `env`, refused when it names a variable that carries a secret or
/// decides what runs or where it connects: anything with `KEY`, `TOKEN`, `SECRET`,
/// `PASSWORD`, `AUTH`, `URL`, `PROXY` or `API` in its name, the CLIs' own prefixes
/// (`ANTHROPIC_`, `CLAUDE_`, `OPENCODE_`, `OPENAI_`, `HYPHA_`, `RHIZO_`), and `PATH`,
/// `HOME`, `SHELL`, `NODE_*`, `LD_*`, `DYLD_*`.
///
/// Errors: [`AiCliError::Refused`] naming the variable.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, AiCliError> {
    const WORDS: &[&str] = &[
        "KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH", "URL", "PROXY", "API",
    ];
    const PREFIXES: &[&str] = &[
        "ANTHROPIC_",
        "CLAUDE_",
        "OPENCODE_",
        "OPENAI_",
        "HYPHA_",
        "RHIZO_",
        "NODE_",
        "LD_",
        "DYLD_",
        "XDG_",
    ];
    const NAMES: &[&str] = &["PATH", "HOME", "SHELL", "USER", "LOGNAME", "TMPDIR"];
    let mut out = Vec::new();
    for (k, v) in env {
        let upper = k.to_ascii_uppercase();
        let valid = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        let denied = WORDS.iter().any(|w| upper.contains(w))
            || PREFIXES.iter().any(|p| upper.starts_with(p))
            || NAMES.contains(&upper.as_str());
        if !valid || denied {
            return Err(AiCliError::Refused(format!(
                "env variable {k:?} cannot be set by a manifest (secrets and the CLI's own settings come from the worker's configuration)"
            )));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_from_the_environment_and_dotenv_names() {
        let vars = BTreeMap::from([
            ("ENABLED_AI_CLIS", "opencode"),
            ("OPENCODE_API_KEY", "oc-secret"),
            ("OPENCODE_MODEL", "local/m"),
            ("MAX_WORKERS", "3"),
            ("WORKER_TIMEOUT", "20"),
        ]);
        let o = AiCliOptions::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(o.registry.names(), vec!["opencode"]);
        assert_eq!(o.max_workers, 3);
        assert_eq!(o.worker_timeout, Duration::from_secs(20));
        let (_, s) = o.registry.get("opencode").unwrap();
        assert_eq!(s.api_key.as_deref(), Some("oc-secret"));
        let shown = serde_json::to_string(&o.registry.describe()).unwrap();
        assert!(!shown.contains("oc-secret") && shown.contains("api_key_configured"));
        assert!(AiCliOptions::from_lookup(|k| (k == "MAX_WORKERS").then(|| "x".into())).is_err());
    }

    #[test]
    fn a_dotenv_file_fills_what_the_environment_does_not_set() {
        let dir = std::env::temp_dir().join(format!("rhizo-dotenv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(".env");
        std::fs::write(
            &file,
            "# py-worker style\nRHIZO_TEST_UNSET_X=1\nMAX_WORKERS=4\nOPENCODE_MODEL=\"local/from-file\"\n",
        )
        .unwrap();
        let o = AiCliOptions::from_env(Some(&file)).unwrap();
        if std::env::var_os("MAX_WORKERS").is_none() {
            assert_eq!(o.max_workers, 4);
        }
        if std::env::var_os("OPENCODE_MODEL").is_none() {
            let (_, s) = o.registry.get("opencode").unwrap();
            assert_eq!(s.model.as_deref(), Some("local/from-file"));
        }
        std::fs::write(&file, "NOT A LINE WITHOUT EQUALS\n").unwrap();
        assert!(
            AiCliOptions::from_env(Some(&file)).is_err(),
            "a malformed .env is an error"
        );
        assert!(AiCliOptions::from_env(Some(&dir.join("missing"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests_cannot_set_secrets_or_redirect_the_cli() {
        for bad in [
            "ANTHROPIC_BASE_URL",
            "MY_API_KEY",
            "PATH",
            "LD_PRELOAD",
            "github_token",
            "1X",
            "A-B",
        ] {
            let env = BTreeMap::from([(bad.to_owned(), "x".to_owned())]);
            assert!(check_env(&env).is_err(), "{bad}");
        }
        let env = BTreeMap::from([("PROJECT_MODE".to_owned(), "ci".to_owned())]);
        assert_eq!(
            check_env(&env).unwrap(),
            vec![("PROJECT_MODE".into(), "ci".into())]
        );
    }

    #[tokio::test]
    async fn project_paths_stay_inside_the_base() {
        let base = std::env::temp_dir().join(format!("rhizo-proj-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(base.join("a")).unwrap();
        let m = AgentManager::new(AiCliOptions {
            projects_base: Some(base.clone()),
            ..Default::default()
        });
        let base_c = std::fs::canonicalize(&base).unwrap();
        assert_eq!(m.project_dir("a").unwrap(), base_c.join("a"));
        assert_eq!(
            m.project_dir("new/deeper").unwrap(),
            base_c.join("new/deeper")
        );
        assert!(m.project_dir("../escape").is_err());
        assert!(m.project_dir("/etc").is_err());
        assert!(m.project_dir("a/../../x").is_err());
        std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
        assert!(
            m.project_dir("link/passwd").is_err(),
            "symlinks are followed"
        );
        let none = AgentManager::new(AiCliOptions::default());
        assert!(none.project_dir("a").is_err());
        assert!(
            !none.project_path_allowed("ws-a"),
            "no workspace by default"
        );
        let some = AgentManager::new(AiCliOptions {
            project_workspaces: vec!["ws-a".into()],
            ..Default::default()
        });
        assert!(some.project_path_allowed("ws-a") && !some.project_path_allowed("ws-b"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
