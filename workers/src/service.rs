//! The `server-app-worker` service record a worker registers (apps-workers.md §3.1) and
//! the glue from a worker's methods to client handlers.

use crate::args::Args;
use crate::error::WorkerError;
use rhizo_client::{handler, Handler};
use rhizo_protocol::message::Call;
use rhizo_protocol::value::map;
use rmpv::Value;
use std::future::Future;
use std::sync::Arc;

/// The record fields besides the functions: `name`, `description`, `type:
/// "server-app-worker"`, `config {visibility, require_context: true}`, `supported_types`
/// and `use_local_url: true` (the controller then hands out its local base URL, which a
/// worker on the server's host reaches best).
pub(crate) fn record(
    name: &str,
    description: &str,
    supported_types: &[&str],
    visibility: &str,
) -> Value {
    map([
        ("name", name.into()),
        ("description", description.into()),
        ("type", "server-app-worker".into()),
        (
            "config",
            map([
                ("visibility", visibility.into()),
                ("require_context", true.into()),
            ]),
        ),
        (
            "supported_types",
            Value::Array(supported_types.iter().map(|t| (*t).into()).collect()),
        ),
        ("use_local_url", true.into()),
    ])
}

/// A handler that runs `f(worker, call)`.
pub(crate) fn bind<W, F, Fut>(worker: &Arc<W>, f: F) -> Handler
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    let worker = worker.clone();
    handler(move |call| f(worker.clone(), call))
}

/// `compile(manifest, files, config=None)` that changes nothing: returns `[manifest,
/// files]` (§3.2; the reference's BaseWorker default).
///
/// Errors: a missing manifest.
pub(crate) async fn compile_identity(call: Call) -> Result<Value, String> {
    let args = Args::new("compile", &call);
    let manifest = args.get(0, "manifest").cloned().ok_or_else(|| {
        WorkerError::Argument("compile() missing required argument: 'manifest'".into())
    })?;
    let files = args
        .get(1, "files")
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    Ok(Value::Array(vec![manifest, files]))
}
