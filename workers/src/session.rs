//! A worker's own bookkeeping of a session (apps-workers.md §3.4): what
//! `get_session_info` returns and `list_sessions` lists.

use crate::config::WorkerConfig;
use rhizo_protocol::value::{map, set};
use rmpv::Value;

/// A session's state: `starting → running → stopping → stopped`, `starting → failed`,
/// `running → failed`; `completed` for an app process that exited by itself (python-eval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionStatus {
    /// Being set up (files fetched, process spawned).
    Starting,
    /// The process runs.
    Running,
    /// The process exited with code 0.
    Completed,
    /// Setup failed, the process exited non-zero or was killed on a timeout.
    Failed,
    /// `stop` is under way.
    Stopping,
    /// Stopped (the record is about to go).
    Stopped,
}

impl SessionStatus {
    /// The wire form: `"starting"`, `"running"`, ….
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Running => "running",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Stopping => "stopping",
            SessionStatus::Stopped => "stopped",
        }
    }
}

/// SessionInfo (§3.4).
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    /// `ws/client_id`.
    pub(crate) session_id: String,
    pub(crate) app_id: String,
    pub(crate) workspace: String,
    pub(crate) client_id: String,
    pub(crate) status: SessionStatus,
    /// The worker type that runs it (`python-eval`, `terminal`).
    pub(crate) app_type: &'static str,
    /// ISO 8601, UTC.
    pub(crate) created_at: String,
    pub(crate) entry_point: Option<String>,
    /// The app manifest.
    pub(crate) metadata: Value,
    /// Why the session failed, when it did.
    pub(crate) error: Option<String>,
}

impl SessionInfo {
    /// A new record in state `starting` for `config`.
    pub(crate) fn new(config: &WorkerConfig, app_type: &'static str) -> Self {
        SessionInfo {
            session_id: config.id.clone(),
            app_id: config.app_id.clone(),
            workspace: config.workspace.clone(),
            client_id: config.client_id.clone(),
            status: SessionStatus::Starting,
            app_type,
            created_at: now_iso(),
            entry_point: config.entry_point.clone(),
            metadata: config.manifest.clone(),
            error: None,
        }
    }

    /// `{session_id, app_id, workspace, client_id, status, app_type, created_at,
    /// entry_point?, metadata?, error?}`.
    pub(crate) fn to_value(&self) -> Value {
        let mut v = map([
            ("session_id", self.session_id.as_str().into()),
            ("app_id", self.app_id.as_str().into()),
            ("workspace", self.workspace.as_str().into()),
            ("client_id", self.client_id.as_str().into()),
            ("status", self.status.as_str().into()),
            ("app_type", self.app_type.into()),
            ("created_at", self.created_at.as_str().into()),
        ]);
        if let Some(e) = &self.entry_point {
            set(&mut v, "entry_point", e.as_str().into());
        }
        if !self.metadata.is_nil() {
            set(&mut v, "metadata", self.metadata.clone());
        }
        if let Some(e) = &self.error {
            set(&mut v, "error", e.as_str().into());
        }
        v
    }
}

/// Now as ISO 8601 in UTC, e.g. `2026-01-01T00:00:00.123Z`.
pub(crate) fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_iso();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
    }
}
