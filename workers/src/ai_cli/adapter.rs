//! The CLI adapters of the ai-cli worker (apps-workers.md §6.1–§6.2): one [`Adapter`] per
//! coding CLI, found by name in a [`Registry`]. An adapter says how to run its CLI (the
//! command line, whether the process lives for the whole session or for one turn, whether
//! its output is read from stdout or from a transcript file it writes), how to hand it a
//! message, and how to read what it prints: each line becomes a [`Parsed`] — an event for
//! the logs and listeners, the end of a turn, or nothing.
//!
//! Adding a third CLI is one new file implementing [`Adapter`] and one line in
//! [`Registry::builtin`].

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long the CLI's process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process for the whole session, fed messages on stdin ([`Adapter::format_input`]).
    Persistent,
    /// One process per turn, given the message on its command line; it exits at the end
    /// of the turn.
    PerTurn,
}

/// Where the session's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Lines on the process's stdout.
    Stdout,
    /// Lines appended to a transcript file ([`Adapter::log_file_path`]); stdout still
    /// tells the end of a turn.
    FileWatch,
}

impl OutputMode {
    /// `"stdout"` or `"file-watch"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::Stdout => "stdout",
            OutputMode::FileWatch => "file-watch",
        }
    }

    /// Reads a manifest's `output_mode`.
    pub fn parse(s: &str) -> Option<OutputMode> {
        match s {
            "stdout" => Some(OutputMode::Stdout),
            "file-watch" | "file_watch" | "file" => Some(OutputMode::FileWatch),
            _ => None,
        }
    }
}

/// Worker-side settings of one adapter (environment / `.env`, never a manifest or a
/// request): the binary, the default model, the API key and base URL.
#[derive(Clone, Default)]
pub struct AdapterSettings {
    /// The program to run (a name looked up on `PATH`, or a path).
    pub binary: String,
    /// The model when the manifest names none.
    pub model: Option<String>,
    /// The API key handed to the CLI through its environment.
    pub api_key: Option<String>,
    /// The API base URL handed to the CLI, when configured.
    pub api_base: Option<String>,
}

impl std::fmt::Debug for AdapterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterSettings")
            .field("binary", &self.binary)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// What a command line is built from.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The session's working directory (the project).
    pub dir: &'a Path,
    /// A UUID naming the CLI's own session (its transcript file, `--session-id`).
    pub cli_session: &'a str,
    /// The model: the manifest's, else the settings'.
    pub model: Option<&'a str>,
    /// Extra arguments from the manifest (`args`), appended.
    pub extra_args: &'a [String],
    /// Turns completed so far (a per-turn CLI continues its conversation after the first).
    pub turns_done: u64,
    /// The CLI's own conversation id, once its output named one ([`Adapter::session_ref`]).
    pub resume: Option<&'a str>,
    /// The worker-side settings.
    pub settings: &'a AdapterSettings,
}

/// A process to start: program, arguments and the variables to set on top of the
/// worker's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables the adapter sets (API key, base URL, switches).
    pub env: Vec<(String, String)>,
}

/// One line of a CLI's output, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An event for the logs (`output`) and listeners.
    Event(Value),
    /// The turn ended; the line itself is logged too when it carries something.
    EndOfTurn(Option<Value>),
    /// The CLI reported an error for the turn (logged as `error`; the turn ends).
    TurnError(String),
    /// Nothing to log (blank lines, keep-alives, echoes of our own input).
    Skip,
}

/// A coding CLI the worker can drive. Implementations are stateless: everything about a
/// session comes in through [`Launch`].
pub trait Adapter: Send + Sync + 'static {
    /// Registry name, e.g. `"claude"`.
    fn name(&self) -> &'static str;
    /// A line for `list_adapters` / `GET /api/ai-clis`.
    fn description(&self) -> &'static str;
    /// The settings when the worker's configuration names nothing (binary name, model).
    fn default_settings(&self) -> AdapterSettings;
    /// Persistent or per-turn process.
    fn mode(&self) -> Mode;
    /// The command for the session (`Persistent`, `message` is `None`) or for one turn
    /// (`PerTurn`, `message` is the turn's input).
    fn command(&self, launch: &Launch<'_>, message: Option<&str>) -> CommandSpec;
    /// Whether events are read from a transcript file by default.
    fn needs_file_watcher(&self) -> bool {
        false
    }
    /// The transcript file the CLI writes for this session (file-watch mode).
    fn log_file_path(&self, _launch: &Launch<'_>) -> Option<PathBuf> {
        None
    }
    /// Reads one stdout line. Errors: a line that is not what the CLI writes (counted
    /// and skipped by the caller, never fatal).
    fn parse_output(&self, line: &str) -> Result<Parsed, String>;
    /// Reads one transcript line (file-watch mode). Default: as a stdout line.
    fn parse_log_line(&self, line: &str) -> Result<Parsed, String> {
        self.parse_output(line)
    }
    /// What to write on stdin for `message` (persistent mode), newline included.
    fn format_input(&self, message: &str) -> String {
        format!("{message}\n")
    }
    /// Per-turn mode: whether the message goes on stdin (then closed) rather than on the
    /// command line.
    fn message_on_stdin(&self) -> bool {
        false
    }
    /// Persistent mode: a stdin line that interrupts the turn and keeps the process;
    /// `None`: interrupt with SIGINT.
    fn interrupt_input(&self) -> Option<String> {
        None
    }
    /// The CLI's own conversation id an event names (kept for [`Launch::resume`]).
    fn session_ref(&self, _event: &Value) -> Option<String> {
        None
    }
    /// The assistant's text in an event, for the `stdout` stream of `execute`'s result.
    fn text_of(&self, event: &Value) -> Option<String>;
}

/// The adapters this worker knows, by name, with their settings.
#[derive(Clone, Default)]
pub struct Registry {
    adapters: BTreeMap<String, (Arc<dyn Adapter>, AdapterSettings)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.adapters.iter().map(|(k, (_, s))| (k, s)))
            .finish()
    }
}

impl Registry {
    /// Every adapter rhizo ships, with default settings.
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        r.register(Arc::new(super::claude::Claude), None);
        r.register(Arc::new(super::opencode::OpenCode), None);
        r
    }

    /// Adds (or replaces) `adapter` under its name, with `settings` (its defaults when
    /// `None`).
    pub fn register(&mut self, adapter: Arc<dyn Adapter>, settings: Option<AdapterSettings>) {
        let settings = settings.unwrap_or_else(|| adapter.default_settings());
        self.adapters
            .insert(adapter.name().to_owned(), (adapter, settings));
    }

    /// Keeps only the adapters named in `enabled`.
    pub fn retain(&mut self, enabled: &[String]) {
        self.adapters.retain(|k, _| enabled.iter().any(|e| e == k));
    }

    /// The settings of adapter `name`, to change.
    pub fn settings_mut(&mut self, name: &str) -> Option<&mut AdapterSettings> {
        self.adapters.get_mut(name).map(|(_, s)| s)
    }

    /// Adapter `name` and its settings.
    pub fn get(&self, name: &str) -> Option<(Arc<dyn Adapter>, AdapterSettings)> {
        self.adapters.get(name).cloned()
    }

    /// The adapter names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.adapters.keys().cloned().collect()
    }

    /// What `list_adapters` / `GET /api/ai-clis` shows: `[{name, description, binary,
    /// model, mode, output_mode, available, api_key_configured}]` — whether a key is set,
    /// never the key.
    pub fn describe(&self) -> Vec<Value> {
        self.adapters
            .values()
            .map(|(a, s)| {
                serde_json::json!({
                    "name": a.name(),
                    "description": a.description(),
                    "binary": s.binary,
                    "model": s.model,
                    "mode": match a.mode() { Mode::Persistent => "persistent", Mode::PerTurn => "per-turn" },
                    "output_mode": if a.needs_file_watcher() { "file-watch" } else { "stdout" },
                    "available": find_program(&s.binary).is_some(),
                    "api_key_configured": s.api_key.is_some(),
                    "enabled": true,
                })
            })
            .collect()
    }
}

/// `program` as a runnable path: a bare name looked up on `PATH`, a path if it is a file.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}
