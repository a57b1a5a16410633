//! One session's Jupyter kernel, driven through the bundled bridge (`bridge.py`, run with
//! the environment's Python): the worker writes one JSON request per line to the bridge's
//! stdin and reads JSON lines back (the protocol is described at the top of `bridge.py`).
//!
//! [`Kernel::start`] returns once the kernel answers. [`Kernel::execute`] runs code (one
//! request at a time per kernel; callers queue), hands each iopub message to a callback
//! as it arrives and returns the execute reply with the outputs of §3.2 built from the
//! messages ([`Outputs`]). The kernel and the bridge are watched: when either goes away
//! (the kernel killed, the bridge crashed, or a reply overdue by [`REPLY_GRACE`] — then
//! both are killed), [`Kernel::dead`] says why, [`Kernel::died`] resolves, and any
//! pending or later `execute` fails at once with that reason; nothing waits forever.
//!
//! The bridge leads its own process group; jupyter_client starts the kernel in a session
//! of its own, so [`Kernel::kill_now`] signals both groups.

use crate::error::{WorkerError, WorkerResult};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};

/// The bridge's source, written next to the session and run with the env's Python.
pub(crate) const BRIDGE: &str = include_str!("bridge.py");

/// How long past an execute's own timeout the worker waits for the bridge's reply
/// before it declares the bridge hung and kills it (the bridge interrupts the kernel at
/// the timeout and waits up to 5 s for it to settle).
pub(crate) const REPLY_GRACE: Duration = Duration::from_secs(15);

/// How long `shutdown` waits for the bridge to shut the kernel down before killing both.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The last bridge stderr lines kept for error messages.
const STDERR_TAIL: usize = 20;

/// How to start a kernel.
pub(crate) struct Launch {
    /// The environment's `bin/python`.
    pub(crate) python: PathBuf,
    /// Where the bridge's source is written.
    pub(crate) bridge: PathBuf,
    /// The kernel's working directory.
    pub(crate) cwd: PathBuf,
    /// The whole environment of the bridge and the kernel.
    pub(crate) env: Vec<(String, String)>,
    /// Seconds to wait for the kernel to answer.
    pub(crate) startup_timeout: f64,
}

/// What the bridge tells about one request.
enum Event {
    Msg(Json),
    Reply(Json),
}

/// A finished execute: the execute_reply content and the outputs.
pub(crate) struct Executed {
    /// `{status, execution_count?, ename?, evalue?, traceback?}`.
    pub(crate) reply: Json,
    /// §3.2 output items.
    pub(crate) outputs: Vec<Json>,
}

/// A running kernel and its bridge.
pub(crate) struct Kernel {
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
    pending: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Event>>>>,
    next_id: AtomicU64,
    /// One execute at a time.
    turn: tokio::sync::Mutex<()>,
    dead: watch::Sender<Option<String>>,
    /// The bridge's pid (its process group's id).
    pub(crate) bridge_pid: u32,
    /// The kernel's pid (its process group's id), as the bridge reported it.
    pub(crate) kernel_pid: Option<u32>,
}

impl Kernel {
    /// Writes the bridge, starts it and waits for the kernel to answer; the bridge's
    /// stderr lines (jupyter_client's and the kernel's own low-level output) go to
    /// `stderr`.
    ///
    /// Errors: [`WorkerError::Io`] when the bridge cannot be written or started, or the
    /// kernel does not come up (with the bridge's reason and last stderr lines).
    pub(crate) async fn start(
        l: Launch,
        stderr: mpsc::UnboundedSender<String>,
    ) -> WorkerResult<Arc<Kernel>> {
        tokio::fs::write(&l.bridge, BRIDGE)
            .await
            .map_err(|e| WorkerError::Io(format!("writing {}: {e}", l.bridge.display())))?;
        let mut cmd = tokio::process::Command::new(&l.python);
        cmd.arg(&l.bridge)
            .arg(&l.cwd)
            .arg(l.startup_timeout.to_string())
            .current_dir(&l.cwd)
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| WorkerError::Io(format!("cannot start {}: {e}", l.python.display())))?;
        let bridge_pid = child.id().unwrap_or(0);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    {
                        let mut t = tail.lock().expect("tail lock");
                        t.push_back(line.clone());
                        if t.len() > STDERR_TAIL {
                            t.pop_front();
                        }
                    }
                    let _ = stderr.send(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let wait = Duration::from_secs_f64(l.startup_timeout.clamp(1.0, 3600.0) + 10.0);
        let first = tokio::time::timeout(wait, lines.next_line()).await;
        let fail = |why: String| {
            kill_group(bridge_pid);
            let t: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
            WorkerError::Io(format!(
                "the Jupyter kernel did not start: {why}{}",
                if t.is_empty() {
                    String::new()
                } else {
                    format!("\n{}", t.join("\n"))
                }
            ))
        };
        let first: Json = match first {
            Err(_) => return Err(fail(format!("no answer within {} s", wait.as_secs()))),
            Ok(Ok(Some(line))) => serde_json::from_str(&line)
                .map_err(|_| fail(format!("unexpected output {line:?}")))?,
            Ok(_) => {
                // Let the stderr reader catch up with the bridge's last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(fail("the bridge exited".into()));
            }
        };
        if let Some(why) = first.get("fatal").and_then(Json::as_str) {
            return Err(fail(why.to_owned()));
        }
        let kernel_pid = first
            .get("kernel_pid")
            .and_then(Json::as_u64)
            .map(|p| p as u32);
        let (dead, _) = watch::channel(None);
        let kernel = Arc::new(Kernel {
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            child: Mutex::new(Some(child)),
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            turn: tokio::sync::Mutex::new(()),
            dead,
            bridge_pid,
            kernel_pid,
        });
        let k = Arc::downgrade(&kernel);
        let pending = kernel.pending.clone();
        tokio::spawn(async move {
            let mut reason = None;
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Json>(&line) else {
                    continue;
                };
                if v.get("event").and_then(Json::as_str) == Some("kernel_died") {
                    let code = v.get("exit_code").cloned().unwrap_or(Json::Null);
                    reason = Some(format!("the kernel process exited (exit code {code})"));
                    continue;
                }
                let Some(id) = v.get("id").and_then(Json::as_u64) else {
                    continue;
                };
                let event = if let Some(m) = v.get("msg") {
                    Event::Msg(m.clone())
                } else if let Some(r) = v.get("reply") {
                    Event::Reply(r.clone())
                } else {
                    continue;
                };
                let tx = pending.lock().expect("pending lock").get(&id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(event);
                }
            }
            let reason = reason.unwrap_or_else(|| "the kernel bridge exited".to_owned());
            if let Some(k) = k.upgrade() {
                k.mark_dead(reason);
            }
            pending.lock().expect("pending lock").clear();
        });
        Ok(kernel)
    }

    /// Why the kernel is gone, if it is.
    pub(crate) fn dead(&self) -> Option<String> {
        self.dead.borrow().clone()
    }

    /// Resolves once the kernel is gone. Cancel-safe.
    pub(crate) async fn died(&self) {
        let mut rx = self.dead.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    fn mark_dead(&self, reason: String) {
        self.dead.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(reason);
                true
            } else {
                false
            }
        });
        // The bridge exits after a kernel death; make sure nothing is left.
        self.kill_now();
    }

    /// Runs `code` with a `timeout` in seconds; `on_msg` gets each iopub message of the
    /// request as it arrives (in order).
    ///
    /// Errors: the reason the kernel is gone (before or during the request), also when
    /// the bridge did not reply within `timeout` + [`REPLY_GRACE`] (then it is killed).
    pub(crate) async fn execute(
        &self,
        code: &str,
        timeout: f64,
        mut on_msg: impl FnMut(&Json),
    ) -> Result<Executed, String> {
        let _turn = self.turn.lock().await;
        if let Some(why) = self.dead() {
            return Err(why);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let line = json!({"id": id, "code": code, "timeout": timeout}).to_string() + "\n";
        let written = self.write(&line).await;
        let mut outputs = Outputs::default();
        let limit = Duration::from_secs_f64(timeout) + REPLY_GRACE;
        let received = tokio::time::timeout(limit, async {
            written?;
            while let Some(ev) = rx.recv().await {
                match ev {
                    Event::Msg(m) => {
                        outputs.push(&m);
                        on_msg(&m);
                    }
                    Event::Reply(r) => return Ok(r),
                }
            }
            Err(self
                .dead()
                .unwrap_or_else(|| "the kernel bridge exited".into()))
        })
        .await;
        self.pending.lock().expect("pending lock").remove(&id);
        match received {
            Ok(Ok(reply)) => {
                if reply["ename"] == "KernelDied" {
                    // The bridge's death notice follows the reply; do not wait for it.
                    let why = reply["evalue"].as_str().unwrap_or("the kernel died");
                    self.mark_dead(why.to_owned());
                }
                Ok(Executed {
                    reply,
                    outputs: outputs.items,
                })
            }
            Ok(Err(why)) => {
                // A reply may have raced the death notice: prefer the death's reason.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(self.dead().unwrap_or(why))
            }
            Err(_) => {
                let why = format!(
                    "the kernel bridge did not answer within {:.0} s and was killed",
                    limit.as_secs_f64()
                );
                self.mark_dead(why.clone());
                Err(why)
            }
        }
    }

    async fn write(&self, line: &str) -> Result<(), String> {
        let mut stdin = self.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return Err("the kernel is shutting down".into());
        };
        let res = async {
            w.write_all(line.as_bytes()).await?;
            w.flush().await
        }
        .await;
        res.map_err(|e| format!("cannot write to the kernel bridge: {e}"))
    }

    /// Shuts the kernel down (through the bridge, then by force after
    /// [`SHUTDOWN_GRACE`]); idempotent.
    pub(crate) async fn shutdown(&self) {
        let _ = self.write("{\"id\": 0, \"shutdown\": true}\n").await;
        self.stdin.lock().await.take();
        let child = self.child.lock().expect("child lock").take();
        if let Some(mut child) = child {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await;
        }
        self.mark_dead("the kernel was shut down".into());
    }

    /// SIGKILLs the bridge's and the kernel's process groups, without waiting.
    pub(crate) fn kill_now(&self) {
        kill_group(self.bridge_pid);
        if let Some(pid) = self.kernel_pid {
            kill_group(pid);
        }
    }
}

impl Drop for Kernel {
    /// Whatever still runs is killed (a session dropped without `shutdown`).
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// SIGKILLs the process group led by `pid`, if `pid` still leads one: the process we
/// started, not one that got its number since.
fn kill_group(pid: u32) {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    if rustix::process::getpgid(Some(p)).is_ok_and(|g| g == p) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
}

// === impl Outputs ===

/// The outputs of one execute (§3.2), built from its iopub messages: `stream` (runs of
/// one stream merged into one item), `display_data` (also from `update_display_data`),
/// `execute_result` and `error` items; `clear_output` empties the list.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    items: Vec<Json>,
}

impl Outputs {
    /// Adds what message `msg` (`{msg_type, content, …}`) contributes.
    pub(crate) fn push(&mut self, msg: &Json) {
        let c = &msg["content"];
        let field = |k: &str| c.get(k).cloned().unwrap_or(Json::Null);
        let item = match msg["msg_type"].as_str().unwrap_or_default() {
            "stream" => {
                let name = c["name"].as_str().unwrap_or("stdout");
                let text = c["text"].as_str().unwrap_or_default();
                if let Some(last) = self.items.last_mut() {
                    if last["type"] == "stream" && last["name"] == name {
                        let joined = format!("{}{text}", last["text"].as_str().unwrap_or(""));
                        last["text"] = Json::String(joined);
                        return;
                    }
                }
                json!({"type": "stream", "name": name, "text": text})
            }
            "display_data" | "update_display_data" => {
                json!({"type": "display_data", "data": field("data"), "metadata": field("metadata")})
            }
            "execute_result" => json!({
                "type": "execute_result",
                "data": field("data"),
                "metadata": field("metadata"),
                "execution_count": field("execution_count"),
            }),
            "error" => json!({
                "type": "error",
                "ename": field("ename"),
                "evalue": field("evalue"),
                "traceback": field("traceback"),
            }),
            "clear_output" => {
                self.items.clear();
                return;
            }
            _ => return,
        };
        self.items.push(item);
    }
}

/// The result `execute` returns (§3.2): `{status: "ok", outputs}` or `{status: "error",
/// outputs, error: {ename, evalue, traceback}}` from an execute_reply content (`aborted`
/// counts as an error).
pub(crate) fn result(reply: &Json, outputs: Vec<Json>) -> Json {
    if reply["status"] == "ok" {
        return json!({"status": "ok", "outputs": outputs});
    }
    let aborted = reply["status"] == "aborted";
    let ename =
        reply["ename"]
            .as_str()
            .unwrap_or(if aborted { "ExecutionAborted" } else { "Error" });
    let evalue = reply["evalue"].as_str().unwrap_or_default();
    let traceback = reply
        .get("traceback")
        .filter(|t| t.is_array())
        .cloned()
        .unwrap_or(json!([]));
    json!({
        "status": "error",
        "outputs": outputs,
        "error": {"ename": ename, "evalue": evalue, "traceback": traceback},
    })
}

/// An error result for a failure outside the kernel (`ename` e.g. `KernelDied`).
pub(crate) fn error_result(ename: &str, evalue: &str) -> Json {
    result(
        &json!({"status": "error", "ename": ename, "evalue": evalue}),
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str, content: Json) -> Json {
        json!({"msg_type": t, "content": content, "header": {"msg_type": t}})
    }

    #[test]
    fn outputs_follow_the_jupyter_messages() {
        let mut o = Outputs::default();
        o.push(&msg("status", json!({"execution_state": "busy"})));
        o.push(&msg("execute_input", json!({"code": "x"})));
        o.push(&msg("stream", json!({"name": "stdout", "text": "4"})));
        o.push(&msg("stream", json!({"name": "stdout", "text": "2\n"})));
        o.push(&msg("stream", json!({"name": "stderr", "text": "w\n"})));
        o.push(&msg(
            "display_data",
            json!({"data": {"text/plain": "d"}, "metadata": {}}),
        ));
        o.push(&msg(
            "execute_result",
            json!({"data": {"text/plain": "41"}, "metadata": {}, "execution_count": 3}),
        ));
        assert_eq!(
            Json::Array(o.items.clone()),
            json!([
                {"type": "stream", "name": "stdout", "text": "42\n"},
                {"type": "stream", "name": "stderr", "text": "w\n"},
                {"type": "display_data", "data": {"text/plain": "d"}, "metadata": {}},
                {"type": "execute_result", "data": {"text/plain": "41"}, "metadata": {}, "execution_count": 3},
            ])
        );
        o.push(&msg("clear_output", json!({"wait": false})));
        o.push(&msg(
            "error",
            json!({"ename": "E", "evalue": "v", "traceback": ["t"]}),
        ));
        assert_eq!(
            Json::Array(o.items),
            json!([{"type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]}])
        );
    }

    #[test]
    fn results_carry_the_status_and_the_error() {
        let ok = result(
            &json!({"status": "ok", "execution_count": 1}),
            vec![json!(1)],
        );
        assert_eq!(ok, json!({"status": "ok", "outputs": [1]}));
        let err = result(
            &json!({"status": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["a", "b"]}),
            vec![],
        );
        assert_eq!(
            err["error"],
            json!({"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["a", "b"]})
        );
        assert_eq!(err["status"], "error");
        let aborted = result(&json!({"status": "aborted"}), vec![]);
        assert_eq!(aborted["error"]["ename"], "ExecutionAborted");
        let died = error_result("KernelDied", "gone");
        assert_eq!(died["error"]["traceback"], json!([]));
        assert_eq!(died["outputs"], json!([]));
    }
}
