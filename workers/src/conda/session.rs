//! A conda-jupyter-kernel session's state (apps-workers.md §3.4, §4.3): its SessionInfo,
//! its logs (capped at [`LOG_CAP`] entries per type), its directories, its kernel and the
//! lease on its environment; and `teardown`, which `stop` and a failed `start` use to
//! shut the kernel down and remove what the session made (idempotent).

use super::env::EnvLease;
use super::kernel::Kernel;
use crate::logs::Logs;
use crate::session::{SessionInfo, SessionStatus};
use rmpv::Value;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Entries kept per log type (the oldest go first).
pub(super) const LOG_CAP: usize = 1000;

/// One session, from `start` to `stop`.
pub(super) struct Session {
    pub(super) info: Mutex<SessionInfo>,
    pub(super) logs: Mutex<Logs>,
    /// The app's working directory.
    pub(super) dir: PathBuf,
    /// The bridge's source and Jupyter's runtime files.
    pub(super) private: PathBuf,
    pub(super) kernel: Mutex<Option<Arc<Kernel>>>,
    pub(super) lease: Mutex<Option<EnvLease>>,
    /// Set by `stop`: a start under way gives up.
    pub(super) cancel: watch::Sender<bool>,
}

impl Session {
    pub(super) fn workspace(&self) -> String {
        self.info.lock().expect("info lock").workspace.clone()
    }

    pub(super) fn status(&self) -> SessionStatus {
        self.info.lock().expect("info lock").status
    }

    pub(super) fn set_status(&self, status: SessionStatus) {
        self.info.lock().expect("info lock").status = status;
    }

    pub(super) fn log(&self, kind: &str, content: impl Into<String>) {
        self.logs
            .lock()
            .expect("logs lock")
            .push_capped(kind, content, LOG_CAP);
    }

    pub(super) fn fail(&self, error: &str) {
        {
            let mut info = self.info.lock().expect("info lock");
            info.status = SessionStatus::Failed;
            info.error = Some(error.to_owned());
        }
        self.log("error", error);
    }

    pub(super) fn kernel(&self) -> Option<Arc<Kernel>> {
        self.kernel.lock().expect("kernel lock").clone()
    }

    /// Shuts the kernel down, releases the environment and removes the directories.
    pub(super) async fn teardown(&self) {
        let kernel = self.kernel.lock().expect("kernel lock").take();
        if let Some(k) = kernel {
            k.shutdown().await;
        }
        self.lease.lock().expect("lease lock").take();
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
        let _ = tokio::fs::remove_dir_all(&self.private).await;
    }

    /// Records a script's outputs in the logs.
    pub(super) fn log_outputs(&self, outputs: &[Json]) {
        for o in outputs {
            match o["type"].as_str().unwrap_or_default() {
                "stream" => {
                    let name = if o["name"] == "stderr" {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    self.log(name, o["text"].as_str().unwrap_or_default());
                }
                "execute_result" | "display_data" => {
                    if let Some(t) = o["data"]["text/plain"].as_str() {
                        self.log("info", format!("Result: {t}"));
                    }
                }
                "error" => self.log("error", error_text(o)),
                _ => {}
            }
        }
    }
}

/// `ename: evalue` and the traceback, without ANSI colours.
pub(super) fn error_text(e: &Json) -> String {
    let mut text = format!(
        "{}: {}",
        e["ename"].as_str().unwrap_or("Error"),
        e["evalue"].as_str().unwrap_or_default()
    );
    for line in e["traceback"].as_array().into_iter().flatten() {
        text.push('\n');
        text.push_str(&crate::terminal::strip_ansi(
            line.as_str().unwrap_or_default(),
        ));
    }
    text
}

pub(super) fn describe(s: &Session) -> Value {
    let mut v = s.info.lock().expect("info lock").to_value();
    let set = rhizo_protocol::value::set;
    set(
        &mut v,
        "working_dir",
        s.dir.to_string_lossy().as_ref().into(),
    );
    if let Some(l) = s.lease.lock().expect("lease lock").as_ref() {
        set(&mut v, "env_path", l.dir.to_string_lossy().as_ref().into());
    }
    if let Some(pid) = s.kernel().and_then(|k| k.kernel_pid) {
        set(&mut v, "kernel_pid", pid.into());
    }
    v
}
