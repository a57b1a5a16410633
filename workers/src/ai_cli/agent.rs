//! One agent session: a coding CLI driven turn by turn ([`Agent`]). It owns the CLI's
//! process (one for the session, or one per turn — [`Mode`]) in a process group of its own,
//! reads what the CLI writes (stdout lines, or its transcript file in file-watch mode,
//! `watch.rs`), keeps every event as a timestamped log entry, broadcasts it to attached
//! listeners, and tells the end of each turn to whoever waits for it (`execute`).
//!
//! Log entry types: `input` (a message sent), `output` (a parsed CLI event), `stderr`,
//! `info` (lifecycle) and `error`. Lines the adapter cannot read are skipped and counted
//! (`malformed_lines`). Every logged text has the worker's API keys masked.
//!
//! The CLI's processes, their readers and the transcript tailer are in `process.rs`.

mod process;

use process::{group_alive, signal_group, tail_transcript};

use super::adapter::{find_program, Adapter, AdapterSettings, Launch, Mode, OutputMode, Parsed};
use super::watch::Tail;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How long `stop` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Entries kept per session; older ones are dropped (and counted in `dropped_entries`).
pub const MAX_ENTRIES: usize = 20_000;

/// How long a timed-out `execute` waits for its interrupted turn to end.
const INTERRUPT_WAIT: Duration = Duration::from_secs(10);

/// Listener queue; a listener that falls further behind misses entries.
const LISTENER_QUEUE: usize = 1024;

/// What a session is made from (all of it decided by the worker, never by a caller's
/// settings: the adapter and its binary come from the worker's registry).
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Session id (`ws/client_id` under Hypha; a UUID for the REST API).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Working directory of the CLI (the project).
    pub dir: PathBuf,
    /// Whether `dir` belongs to the session (created for it, removed at stop).
    pub owns_dir: bool,
    /// Model (manifest), else the adapter settings'.
    pub model: Option<String>,
    /// Extra CLI arguments (manifest `args`).
    pub args: Vec<String>,
    /// Extra, non-secret environment (manifest `env`, already filtered).
    pub env: Vec<(String, String)>,
    /// Output mode; the adapter's default when `None`.
    pub output_mode: Option<OutputMode>,
    /// Transcript file override (file-watch mode).
    pub log_file: Option<PathBuf>,
    /// The app's workspace, when run as a Hypha app.
    pub workspace: Option<String>,
    /// The app id, when run as a Hypha app.
    pub app_id: Option<String>,
}

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// The CLI is ready for a message (or, per-turn, no turn runs).
    Running,
    /// A turn is in progress.
    Busy,
    /// The CLI failed (crashed, could not start); no further messages are taken.
    Error,
    /// Stopped.
    Stopped,
}

impl AgentStatus {
    /// `"running"`, `"busy"`, `"error"` or `"stopped"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Running => "running",
            AgentStatus::Busy => "busy",
            AgentStatus::Error => "error",
            AgentStatus::Stopped => "stopped",
        }
    }
}

/// One log entry: `{seq, type, content, timestamp}` (ISO 8601 UTC with `Z`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the session's log, from 0.
    pub seq: u64,
    /// `input`, `output`, `stderr`, `info` or `error`.
    pub kind: String,
    /// The event (a JSON object for `output`, a string otherwise).
    pub content: Value,
    /// When it was logged.
    pub timestamp: String,
}

impl Entry {
    /// `{type, content, timestamp}` as `get_logs` lists it.
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "content": self.content, "timestamp": self.timestamp})
    }
}

/// Turn bookkeeping shared with waiters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turns {
    /// Turns ended so far.
    pub done: u64,
    /// Why the last turn ended badly (`None` after a clean end).
    pub last_error: Option<String>,
}

struct Inner {
    status: AgentStatus,
    error: Option<String>,
    logs: std::collections::VecDeque<Arc<Entry>>,
    next_seq: u64,
    dropped: u64,
    stdin: Option<ChildStdin>,
    pgid: Option<i32>,
    busy: bool,
    /// Messages for a per-turn CLI that arrived during a turn, run one after another.
    queued: std::collections::VecDeque<String>,
}

/// A running agent session. See the module docs.
pub struct Agent {
    /// What it was made from.
    pub spec: AgentSpec,
    adapter: Arc<dyn Adapter>,
    settings: AdapterSettings,
    output_mode: OutputMode,
    cli_session: String,
    created_at: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Entry>>,
    turns: watch::Sender<Turns>,
    turn_lock: tokio::sync::Mutex<()>,
    malformed: AtomicU64,
    interrupted: AtomicBool,
    stopping: AtomicBool,
    /// Asks the transcript tailer to read to the end now (file-watch mode).
    flush: Mutex<Option<mpsc::Sender<oneshot::Sender<()>>>>,
    secrets: Vec<String>,
    last_activity: Mutex<std::time::Instant>,
    /// The CLI's own conversation id, once its output named one.
    cli_ref: Mutex<Option<String>>,
    /// The current turn already ended with an error the CLI reported.
    turn_failed: AtomicBool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.spec.id)
            .field("cli", &self.adapter.name())
            .finish_non_exhaustive()
    }
}

// === impl Agent ===

impl Agent {
    /// Starts a session of `adapter`: for a persistent CLI, its process now; in file-watch
    /// mode, the tailer of its transcript.
    ///
    /// Errors: the binary is not installed, or the process cannot be spawned.
    pub fn launch(
        spec: AgentSpec,
        adapter: Arc<dyn Adapter>,
        settings: AdapterSettings,
    ) -> Result<Arc<Agent>, String> {
        if find_program(&settings.binary).is_none() {
            return Err(format!(
                "the {} CLI is not installed: {:?} not found on PATH",
                adapter.name(),
                settings.binary
            ));
        }
        let output_mode = spec.output_mode.unwrap_or(if adapter.needs_file_watcher() {
            OutputMode::FileWatch
        } else {
            OutputMode::Stdout
        });
        let secrets = [settings.api_key.clone()]
            .into_iter()
            .flatten()
            .filter(|k| k.len() >= 4)
            .collect();
        let agent = Arc::new(Agent {
            adapter,
            settings,
            output_mode,
            cli_session: uuid::Uuid::new_v4().to_string(),
            created_at: crate::session::now_iso(),
            inner: Mutex::new(Inner {
                status: AgentStatus::Running,
                error: None,
                logs: Default::default(),
                next_seq: 0,
                dropped: 0,
                stdin: None,
                pgid: None,
                busy: false,
                queued: Default::default(),
            }),
            events: broadcast::channel(LISTENER_QUEUE).0,
            turns: watch::channel(Turns::default()).0,
            turn_lock: tokio::sync::Mutex::new(()),
            malformed: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            flush: Mutex::new(None),
            secrets,
            last_activity: Mutex::new(std::time::Instant::now()),
            cli_ref: Mutex::new(None),
            turn_failed: AtomicBool::new(false),
            spec,
        });
        if agent.output_mode == OutputMode::FileWatch {
            let path = agent
                .spec
                .log_file
                .clone()
                .or_else(|| agent.adapter.log_file_path(&agent.launch_args(0, None)));
            match path {
                Some(p) => {
                    let (tx, rx) = mpsc::channel(4);
                    *agent.flush.lock().expect("flush lock") = Some(tx);
                    tokio::spawn(tail_transcript(Arc::downgrade(&agent), p, rx));
                }
                None => agent.log(
                    "error",
                    json!("file-watch mode, but the adapter names no transcript file"),
                ),
            }
        }
        if agent.adapter.mode() == Mode::Persistent {
            agent.spawn(None)?;
        }
        agent.log(
            "info",
            json!(format!(
                "{} session started in {} ({} mode)",
                agent.adapter.name(),
                agent.spec.dir.display(),
                agent.output_mode.as_str()
            )),
        );
        Ok(agent)
    }

    fn launch_args<'a>(&'a self, turns_done: u64, resume: Option<&'a str>) -> Launch<'a> {
        Launch {
            resume,
            dir: &self.spec.dir,
            cli_session: &self.cli_session,
            model: self
                .spec
                .model
                .as_deref()
                .or(self.settings.model.as_deref()),
            extra_args: &self.spec.args,
            turns_done,
            settings: &self.settings,
        }
    }

    /// The adapter's name.
    pub fn cli(&self) -> &'static str {
        self.adapter.name()
    }

    /// ISO 8601 creation time.
    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The current state.
    pub fn status(&self) -> AgentStatus {
        self.inner.lock().expect("agent lock").status
    }

    /// Why the session failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.inner.lock().expect("agent lock").error.clone()
    }

    /// How long since the last logged entry.
    pub fn idle_for(&self) -> Duration {
        self.last_activity.lock().expect("activity lock").elapsed()
    }

    /// Whether a turn is in progress.
    pub fn is_busy(&self) -> bool {
        self.inner.lock().expect("agent lock").busy
    }

    /// Listens to every entry logged from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.events.subscribe()
    }

    /// The entries from `offset` (a log position), at most `limit`, of `kind` when given:
    /// `{items: [{type, content, timestamp}], total, offset, limit}` — `total` counts the
    /// matching entries still kept.
    pub fn history(&self, kind: Option<&str>, offset: u64, limit: Option<usize>) -> Value {
        let st = self.inner.lock().expect("agent lock");
        let matching: Vec<&Arc<Entry>> = st
            .logs
            .iter()
            .filter(|e| kind.is_none_or(|k| k == e.kind))
            .collect();
        let total = matching.len();
        let items: Vec<Value> = matching
            .into_iter()
            .skip(offset as usize)
            .take(limit.unwrap_or(usize::MAX))
            .map(|e| e.to_json())
            .collect();
        json!({"items": items, "total": total, "offset": offset, "limit": limit})
    }

    /// Every kept entry (for history replay).
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let st = self.inner.lock().expect("agent lock");
        st.logs.iter().cloned().collect()
    }

    /// `{session_id, name, cli, status, busy, created_at, working_dir, turns, malformed_lines,
    /// error?}`.
    pub fn info(&self) -> Value {
        let st = self.inner.lock().expect("agent lock");
        let mut v = json!({
            "session_id": self.spec.id,
            "name": self.spec.name,
            "cli": self.adapter.name(),
            "ai_cli_type": self.adapter.name(),
            "status": st.status.as_str(),
            "busy": st.busy,
            "created_at": self.created_at,
            "working_dir": self.spec.dir.display().to_string(),
            "output_mode": self.output_mode.as_str(),
            "turns": self.turns.borrow().done,
            "malformed_lines": self.malformed.load(Relaxed),
            "dropped_entries": st.dropped,
        });
        if let Some(e) = &st.error {
            v["error"] = json!(e);
        }
        v
    }

    /// Masks the worker's API keys in `s`.
    fn redact(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for k in &self.secrets {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), "***");
            }
        }
        out
    }

    /// Logs an entry and tells the listeners.
    pub(crate) fn log(&self, kind: &str, content: Value) {
        let content = if self.secrets.is_empty() {
            content
        } else {
            let text = content.to_string();
            let masked = self.redact(&text);
            if masked == text {
                content
            } else {
                serde_json::from_str(&masked).unwrap_or(Value::String(masked))
            }
        };
        let entry = {
            let mut st = self.inner.lock().expect("agent lock");
            let entry = Arc::new(Entry {
                seq: st.next_seq,
                kind: kind.to_owned(),
                content,
                timestamp: crate::session::now_iso(),
            });
            st.next_seq += 1;
            *self.last_activity.lock().expect("activity lock") = std::time::Instant::now();
            st.logs.push_back(entry.clone());
            if st.logs.len() > MAX_ENTRIES {
                st.logs.pop_front();
                st.dropped += 1;
            }
            entry
        };
        let _ = self.events.send(entry);
    }

    /// Sends `message` to the CLI: on stdin (persistent), or as a new turn process — after
    /// the running turn when one runs (messages queue). Returns the log position of the
    /// input entry.
    ///
    /// Errors: the session failed or stopped; the process cannot be written to or
    /// spawned.
    pub fn send(self: &Arc<Self>, message: &str) -> Result<u64, String> {
        let turns_done = self.turns.borrow().done;
        let seq = {
            let mut st = self.inner.lock().expect("agent lock");
            match st.status {
                AgentStatus::Error => {
                    return Err(format!(
                        "the session failed: {}",
                        st.error.clone().unwrap_or_default()
                    ))
                }
                AgentStatus::Stopped => return Err("the session is stopped".into()),
                _ => {}
            }
            if st.busy && self.adapter.mode() == Mode::PerTurn {
                st.queued.push_back(message.to_owned());
                let seq = st.next_seq;
                drop(st);
                self.log("input", json!(message));
                return Ok(seq);
            }
            st.busy = true;
            st.status = AgentStatus::Busy;
            st.next_seq
        };
        self.interrupted.store(false, Relaxed);
        self.turn_failed.store(false, Relaxed);
        self.log("input", json!(message));
        let sent = match self.adapter.mode() {
            Mode::PerTurn => self.spawn(Some(message)),
            Mode::Persistent => {
                let has_process = self.inner.lock().expect("agent lock").stdin.is_some();
                let respawned = if has_process {
                    Ok(())
                } else {
                    // The process ended after an interrupt: a new one resumes the session.
                    self.spawn_resumed(turns_done)
                };
                respawned.and_then(|_| self.write_stdin(self.adapter.format_input(message)))
            }
        };
        if let Err(e) = &sent {
            self.log("error", json!(e));
            self.end_turn(Some(e.clone()));
        }
        sent.map(|_| seq)
    }

    fn write_stdin(self: &Arc<Self>, data: String) -> Result<(), String> {
        let stdin = self.inner.lock().expect("agent lock").stdin.take();
        let Some(mut stdin) = stdin else {
            return Err("the CLI's input is closed".into());
        };
        let me = self.clone();
        // Written on a task (a full pipe must not block the caller); the handle goes back.
        tokio::spawn(async move {
            let ok = stdin.write_all(data.as_bytes()).await.is_ok() && stdin.flush().await.is_ok();
            if ok {
                me.inner.lock().expect("agent lock").stdin = Some(stdin);
            } else {
                me.log("error", json!("cannot write to the CLI's input"));
            }
        });
        Ok(())
    }

    /// Sends `message` and waits for the end of its turn (up to `timeout`): the Jupyter-
    /// like result `{status: "ok", outputs: [{type: "stream", name: "stdout", text},
    /// {type: "agent_event", data}…]}`; a failed turn or a timeout gives `status: "error"`
    /// with `error: {ename, evalue, traceback}` and the outputs so far. With `wait` false it
    /// returns `{status: "ok", outputs: [], seq}` at once. Turns of one session run one at a
    /// time.
    ///
    /// Errors: those of [`Agent::send`].
    pub async fn execute(
        self: &Arc<Self>,
        message: &str,
        wait: bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        if !wait {
            let seq = self.send(message)?;
            return Ok(json!({"status": "ok", "outputs": [], "seq": seq}));
        }
        let _turn = tokio::time::timeout(timeout, self.turn_lock.lock())
            .await
            .map_err(|_| "another turn of this session is still running".to_owned())?;
        let mut rx = self.turns.subscribe();
        let before = rx.borrow_and_update().done;
        let seq = self.send(message)?;
        let (timed_out, outcome) = {
            let ended = tokio::time::timeout(timeout, rx.wait_for(|t| t.done > before)).await;
            match ended {
                Ok(Ok(t)) => (false, t.last_error.clone()),
                Ok(Err(_)) => (false, Some("the session ended".to_owned())),
                Err(_) => (true, None),
            }
        };
        let outputs = self.outputs_since(seq);
        if timed_out {
            // Leave the session usable: the turn that overran is interrupted, and its end
            // awaited, so that it cannot end the next turn.
            if self.interrupt() {
                let _ =
                    tokio::time::timeout(INTERRUPT_WAIT, rx.wait_for(|t| t.done > before)).await;
            }
            return Ok(error_result(
                "TimeoutError",
                &format!(
                    "the {} CLI did not finish the turn within {} s",
                    self.cli(),
                    timeout.as_secs_f64()
                ),
                outputs,
            ));
        }
        Ok(match outcome {
            None => json!({"status": "ok", "outputs": outputs}),
            Some(e) => error_result("AgentError", &e, outputs),
        })
    }

    /// The outputs logged from log position `seq` on, as `execute` returns them.
    fn outputs_since(&self, seq: u64) -> Vec<Value> {
        let entries: Vec<Arc<Entry>> = {
            let st = self.inner.lock().expect("agent lock");
            st.logs.iter().filter(|e| e.seq >= seq).cloned().collect()
        };
        let text: String = entries
            .iter()
            .filter(|e| e.kind == "output")
            .filter_map(|e| self.adapter.text_of(&e.content))
            .collect::<Vec<_>>()
            .join("");
        let mut outputs = vec![json!({"type": "stream", "name": "stdout", "text": text})];
        outputs.extend(
            entries
                .iter()
                .filter(|e| e.kind == "output")
                .map(|e| json!({"type": "agent_event", "data": e.content})),
        );
        outputs
    }

    /// Interrupts the current turn: SIGINT to the CLI's process group. A per-turn CLI's
    /// turn ends; a persistent CLI that exits on it is started again (resuming its
    /// conversation) with the next message. Returns whether a turn was running.
    pub fn interrupt(self: &Arc<Self>) -> bool {
        let (busy, pgid) = {
            let st = self.inner.lock().expect("agent lock");
            (st.busy, st.pgid)
        };
        if !busy {
            return false;
        }
        self.interrupted.store(true, Relaxed);
        let control = match self.adapter.mode() {
            Mode::Persistent => self.adapter.interrupt_input(),
            Mode::PerTurn => None,
        };
        let stdin = control
            .as_ref()
            .and_then(|_| self.inner.lock().expect("agent lock").stdin.take());
        match (control, stdin) {
            (Some(line), Some(mut stdin)) => {
                let me = Arc::downgrade(self);
                tokio::spawn(async move {
                    let _ = stdin.write_all(line.as_bytes()).await;
                    let _ = stdin.flush().await;
                    if let Some(me) = me.upgrade() {
                        me.inner
                            .lock()
                            .expect("agent lock")
                            .stdin
                            .get_or_insert(stdin);
                    }
                });
            }
            _ => {
                if let Some(pg) = pgid {
                    signal_group(pg, rustix::process::Signal::INT);
                }
            }
        }
        self.log("info", json!("interrupted"));
        true
    }

    /// Stops the session: SIGTERM to the process group, SIGKILL after [`STOP_GRACE`]; the
    /// session directory is removed when it belongs to the session.
    pub async fn stop(&self) {
        if self.stopping.swap(true, Relaxed) {
            return;
        }
        let pgid = {
            let mut st = self.inner.lock().expect("agent lock");
            st.stdin = None;
            st.pgid
        };
        if let Some(pg) = pgid {
            signal_group(pg, rustix::process::Signal::TERM);
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while tokio::time::Instant::now() < deadline && group_alive(pg) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if group_alive(pg) {
                signal_group(pg, rustix::process::Signal::KILL);
            }
        }
        self.log("info", json!("session stopped"));
        {
            let mut st = self.inner.lock().expect("agent lock");
            st.status = AgentStatus::Stopped;
            st.busy = false;
        }
        self.turns.send_modify(|t| {
            t.done += 1;
            t.last_error = Some("the session was stopped".into());
        });
        *self.flush.lock().expect("flush lock") = None;
        if self.spec.owns_dir {
            let _ = tokio::fs::remove_dir_all(&self.spec.dir).await;
        }
    }

    /// Kills the process group at once (worker shutdown without grace).
    pub fn kill_now(&self) {
        self.stopping.store(true, Relaxed);
        if let Some(pg) = self.inner.lock().expect("agent lock").pgid {
            signal_group(pg, rustix::process::Signal::KILL);
        }
    }
}

fn error_result(ename: &str, evalue: &str, outputs: Vec<Value>) -> Value {
    json!({
        "status": "error",
        "outputs": outputs,
        "error": {"ename": ename, "evalue": evalue, "traceback": []},
    })
}
