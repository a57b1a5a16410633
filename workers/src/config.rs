//! The WorkerConfig map `start` receives (apps-workers.md §3.3) and the remote callbacks
//! (`progress_callback`, `output_callback`, `on_screen_update`) that arrive inside calls
//! as encoded methods (§3.5, protocol.md §3.1).

use crate::args::number;
use crate::error::{WorkerError, WorkerResult};
use rhizo_client::Client;
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::sync::Weak;
use std::time::Duration;

/// How long a callback may take to answer before the worker gives up on it (best effort:
/// a slow or gone callback never fails the call that uses it).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The parsed WorkerConfig of `start` (§3.3). Unknown keys are ignored, as the reference's
/// pydantic model does.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// The session id, `ws/client_id`.
    pub(crate) id: String,
    /// The app's alias.
    pub(crate) app_id: String,
    /// The app's workspace (`config.workspace`, else the part of `id` before `/`).
    pub(crate) workspace: String,
    /// The app's client id (`config.client_id`, else the part of `id` after `/`).
    pub(crate) client_id: String,
    /// The server URL the app connects to (nil → the worker's own).
    pub(crate) server_url: Option<String>,
    /// The token bound to `client_id`, also used to fetch app files.
    pub(crate) token: Option<String>,
    /// `config.entry_point`, else `manifest.entry_point`.
    pub(crate) entry_point: Option<String>,
    /// The full manifest (nil when absent).
    pub(crate) manifest: Value,
    /// `{server}/{ws}/artifacts/{app_id}/files`.
    pub(crate) app_files_base_url: Option<String>,
    /// Start timeout, seconds.
    pub(crate) timeout: Option<f64>,
    /// Where start's progress messages go.
    pub(crate) progress: Option<Callback>,
}

impl WorkerConfig {
    /// Reads the config map; `caller_ws` qualifies a bare callback target.
    ///
    /// Errors: [`WorkerError::Argument`] when it is not a map or `id` is missing or not
    /// `ws/client_id`; [`WorkerError::Invalid`] when `workspace` or `client_id` contradict
    /// `id`.
    pub(crate) fn parse(v: &Value, caller_ws: &str) -> WorkerResult<Self> {
        if !v.is_map() {
            return Err(WorkerError::Argument(
                "start(): 'config' must be a WorkerConfig map with at least 'id'".into(),
            ));
        }
        let id = get_str(v, "id").ok_or_else(|| {
            WorkerError::Argument(
                "start(): config is missing 'id' (the session id ws/client_id)".into(),
            )
        })?;
        let (id_ws, id_cid) = id
            .split_once('/')
            .filter(|(w, c)| !w.is_empty() && !c.is_empty() && !c.contains('/'))
            .ok_or_else(|| {
                WorkerError::Argument(format!(
                    "start(): config id {id:?} must be '<workspace>/<client_id>'"
                ))
            })?;
        let workspace = get_str(v, "workspace").unwrap_or(id_ws);
        let client_id = get_str(v, "client_id").unwrap_or(id_cid);
        if workspace != id_ws || client_id != id_cid {
            return Err(WorkerError::Invalid(format!(
                "config id {id:?} does not match workspace {workspace:?} and client_id {client_id:?}"
            )));
        }
        let manifest = get(v, "manifest").cloned().unwrap_or(Value::Nil);
        let owned = |k: &str| get_str(v, k).map(str::to_owned);
        Ok(WorkerConfig {
            id: id.to_owned(),
            app_id: owned("app_id").unwrap_or_default(),
            workspace: workspace.to_owned(),
            client_id: client_id.to_owned(),
            server_url: owned("server_url"),
            token: owned("token"),
            entry_point: owned("entry_point")
                .or_else(|| get_str(&manifest, "entry_point").map(str::to_owned)),
            app_files_base_url: owned("app_files_base_url"),
            timeout: get(v, "timeout").and_then(number).filter(|t| *t > 0.0),
            progress: get(v, "progress_callback").and_then(|c| Callback::parse(c, caller_ws)),
            manifest,
        })
    }

    /// The base URL of the app's files: `app_files_base_url`, else derived from
    /// `server_url` (or `fallback_server`), workspace and app id.
    pub(crate) fn files_base(&self, fallback_server: &str) -> String {
        match &self.app_files_base_url {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => format!(
                "{}/{}/artifacts/{}/files",
                self.server_url
                    .as_deref()
                    .unwrap_or(fallback_server)
                    .trim_end_matches('/'),
                self.workspace,
                self.app_id
            ),
        }
    }
}

/// A remote function passed inside a call: an encoded method `{_rtype: "method",
/// _rtarget, _rmethod, _rpromise}` of the caller (or of whoever it forwarded).
#[derive(Debug, Clone)]
pub(crate) struct Callback {
    /// `ws/client_id` (or `*/manager`) owning the function.
    target: String,
    /// The method path at the target.
    method: String,
    /// `_rpromise: false`: the target will not answer, so the worker does not wait.
    forget: bool,
}

impl Callback {
    /// Reads an encoded method; `None` for anything else. A target without `/` is in the
    /// caller's workspace `caller_ws`, as hypha-rpc resolves it.
    pub(crate) fn parse(v: &Value, caller_ws: &str) -> Option<Callback> {
        if get_str(v, "_rtype") != Some("method") {
            return None;
        }
        let target = get_str(v, "_rtarget")?;
        let method = get_str(v, "_rmethod")?;
        let target = if target.contains('/') {
            target.to_owned()
        } else {
            format!("{caller_ws}/{target}")
        };
        Some(Callback {
            target,
            method: method.to_owned(),
            forget: get(v, "_rpromise").and_then(Value::as_bool) == Some(false),
        })
    }

    /// Calls the function with one argument; waits for its answer at most
    /// [`CALLBACK_TIMEOUT`] (not at all for `_rpromise: false`).
    ///
    /// Errors: the callee's error, a timeout, or the worker's connection gone — callers
    /// treat callbacks as best effort and mostly ignore them.
    pub(crate) async fn send(&self, client: &Weak<Client>, arg: Value) -> Result<(), String> {
        let client = client.upgrade().ok_or("the worker is shutting down")?;
        if self.forget {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = client
                    .call(&me.target, &me.method, vec![arg], CALLBACK_TIMEOUT)
                    .await;
            });
            return Ok(());
        }
        client
            .call(&self.target, &self.method, vec![arg], CALLBACK_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Sends `{type, message}` to `callback` if there is one; errors are logged at debug
/// level and otherwise ignored (§3.5).
pub(crate) async fn progress(
    callback: Option<&Callback>,
    client: &Weak<Client>,
    kind: &str,
    message: &str,
) {
    if let Some(cb) = callback {
        let msg = map([("type", kind.into()), ("message", message.into())]);
        if let Err(e) = cb.send(client, msg).await {
            tracing::debug!(target = %cb.target, error = %e, "progress callback failed");
        }
    }
}

/// Output-callback messages waiting to be delivered before new ones are dropped.
const STREAM_QUEUE: usize = 256;

/// How long `finish` waits for an output callback to catch up.
const STREAM_DRAIN: Duration = Duration::from_secs(5);

/// Delivers messages to a callback (e.g. `execute`'s `output_callback`) in order, on a task
/// of its own, so that a slow callback never holds up the producer; drops messages while
/// [`STREAM_QUEUE`] are waiting and stops at the callback's first failure.
pub(crate) struct CallbackStream {
    tx: tokio::sync::mpsc::Sender<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackStream {
    /// Starts delivering to `cb` through `client`.
    pub(crate) fn start(cb: Callback, client: Weak<Client>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(STREAM_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if cb.send(&client, v).await.is_err() {
                    break;
                }
            }
        });
        CallbackStream { tx, task }
    }

    /// Queues `msg` (dropped when the queue is full).
    pub(crate) fn push(&self, msg: Value) {
        let _ = self.tx.try_send(msg);
    }

    /// Waits (at most [`STREAM_DRAIN`]) for what is queued to be delivered: a callback
    /// passed with a call stops working once that call has returned.
    pub(crate) async fn finish(self) {
        drop(self.tx);
        let _ = tokio::time::timeout(STREAM_DRAIN, self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::from_json;
    use serde_json::json;

    #[test]
    fn config_fills_workspace_client_and_entry_point() {
        let v = from_json(&json!({
            "id": "ws-a/_rapp_x__rlb",
            "app_id": "hello",
            "timeout": 3,
            "manifest": {"entry_point": "main.py"},
            "progress_callback": {"_rtype": "method", "_rtarget": "ctl", "_rmethod": "s1.cb"},
        }));
        let c = WorkerConfig::parse(&v, "ws-a").unwrap();
        assert_eq!(
            (c.workspace.as_str(), c.client_id.as_str()),
            ("ws-a", "_rapp_x__rlb")
        );
        assert_eq!(c.entry_point.as_deref(), Some("main.py"));
        assert_eq!(c.timeout, Some(3.0));
        assert_eq!(
            c.files_base("http://h:1/"),
            "http://h:1/ws-a/artifacts/hello/files"
        );
        let cb = c.progress.unwrap();
        assert_eq!(cb.target, "ws-a/ctl");
        assert_eq!(cb.method, "s1.cb");
    }

    #[test]
    fn config_errors_name_the_problem() {
        let e = WorkerConfig::parse(&from_json(&json!({"app_id": "x"})), "w").unwrap_err();
        assert!(e.to_string().contains("missing 'id'"), "{e}");
        let e = WorkerConfig::parse(&from_json(&json!({"id": "nows"})), "w").unwrap_err();
        assert!(e.to_string().contains("<workspace>/<client_id>"), "{e}");
        let e = WorkerConfig::parse(&from_json(&json!({"id": "a/b", "workspace": "c"})), "w")
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(WorkerConfig::parse(&Value::from("x"), "w").is_err());
    }
}
