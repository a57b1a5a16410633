//! `execute(session_id, script, config={timeout: 30}, progress_callback=None,
//! output_callback=None)` of the conda-jupyter-kernel worker (apps-workers.md §3.2,
//! §4.3): runs code in the session's kernel and returns `{status, outputs, error?}`;
//! the raw iopub messages go to `output_callback` as they arrive ([`Stream`]). A kernel
//! that is gone (or dies meanwhile) gives a `KernelDied` error result and fails the
//! session; an unknown session or a stranger's call raises.

use super::kernel;
use super::{Conda, DEFAULT_EXECUTE_TIMEOUT};
use crate::args::{number, Args};
use crate::config::{progress, CallbackStream};
use crate::error::WorkerError;
use crate::session::SessionStatus;
use rhizo_protocol::message::Call;
use rhizo_protocol::value::from_json;
use rmpv::Value;
use std::sync::Arc;

impl Conda {
    /// `execute(session_id, script, config=None, progress_callback=None,
    /// output_callback=None)`. See the module docs.
    pub(crate) async fn execute(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("execute", &call);
        let s = self.session(&args)?;
        let id = args.str(0, "session_id")?.to_owned();
        let script = args.str(1, "script")?.to_owned();
        let timeout = args
            .get(2, "config")
            .and_then(|c| rhizo_protocol::value::get(c, "timeout"))
            .and_then(number)
            .filter(|t| *t > 0.0)
            .unwrap_or(DEFAULT_EXECUTE_TIMEOUT)
            .min(86_400.0);
        let (progress_cb, output_cb) = args.execute_callbacks();
        let dead = |why: &str| {
            from_json(&kernel::error_result(
                "KernelDied",
                &format!(
                    "the kernel of session {id} is gone ({why}); the session has failed: \
                     stop it and start the app again"
                ),
            ))
        };
        let kernel = match (s.status(), s.kernel()) {
            (SessionStatus::Running, Some(k)) => k,
            (SessionStatus::Failed, _) => {
                let why = s.info.lock().expect("info lock").error.clone();
                return Ok(dead(why.as_deref().unwrap_or("failed")));
            }
            (status, _) => {
                return Err(WorkerError::Invalid(format!(
                    "session {id} is {}, not running",
                    status.as_str()
                ))
                .into())
            }
        };
        progress(
            progress_cb.as_ref(),
            &self.client,
            "info",
            "Executing code…",
        )
        .await;
        let stream = output_cb.map(|cb| CallbackStream::start(cb, self.client.clone()));
        let ran = kernel
            .execute(&script, timeout, |m| {
                if let Some(st) = &stream {
                    st.push(from_json(m));
                }
            })
            .await;
        if let Some(st) = stream {
            st.finish().await;
        }
        let result = match ran {
            Ok(done) => {
                s.log_outputs(&done.outputs);
                if let Some(why) = kernel.dead() {
                    s.fail(&format!("Kernel died: {why}"));
                }
                from_json(&kernel::result(&done.reply, done.outputs))
            }
            Err(why) => {
                s.fail(&format!("Kernel died: {why}"));
                dead(&why)
            }
        };
        progress(
            progress_cb.as_ref(),
            &self.client,
            "info",
            "Execution finished",
        )
        .await;
        Ok(result)
    }
}
