//! [`TaskQueue`]: the control-plane service `public/queue` ("Task Queue Service",
//! workspace-api.md §9.2). Every queue belongs to the caller's workspace (`ctx.ws`, set
//! by the router, never by an argument), so no caller can reach another workspace's
//! queue. Tasks are maps; they are kept as their msgpack encoding, so they come back
//! with the types they went in with.

use crate::store::{QueueError, QueueKey, QueueStore};
use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec};
use rhizo_control_plane::{ManagerError, ManagerResult};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

/// The bounds of the queues (each refused with a clear error when reached).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueLimits {
    /// Largest task, bytes of its msgpack encoding (default 1 MiB).
    pub max_task_bytes: usize,
    /// Most tasks one queue holds (default 10,000); a push beyond is refused.
    pub max_queue_len: usize,
    /// Longest `pop` wait, seconds (300 as in the reference).
    pub max_pop_timeout: f64,
    /// Most tasks one `peek` answers (100 as in the reference).
    pub max_peek: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_task_bytes: 1024 * 1024,
            max_queue_len: 10_000,
            max_pop_timeout: 300.0,
            max_peek: 100,
        }
    }
}

/// The default `pop` timeout, seconds.
pub const DEFAULT_POP_TIMEOUT: f64 = 30.0;

/// `public/queue`.
pub struct TaskQueue {
    store: Arc<dyn QueueStore>,
    limits: QueueLimits,
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "push",
        params: &[("queue_name", false), ("task", false)],
        doc: "Push a task (a dict) to the end of a queue of your workspace; returns the \
              queue's new length. Errors: bad queue name, task too large, queue full.",
    },
    FunctionSpec {
        name: "pop",
        params: &[("queue_name", false), ("timeout", true)],
        doc: "Remove and return the oldest task of a queue of your workspace, waiting up \
              to `timeout` seconds (default 30, 0 to 300; 0 does not wait); returns None \
              when no task came in time.",
    },
    FunctionSpec {
        name: "get_length",
        params: &[("queue_name", false)],
        doc: "The number of tasks in a queue of your workspace.",
    },
    FunctionSpec {
        name: "peek",
        params: &[("queue_name", false), ("n", true)],
        doc: "The next `n` tasks (default 1, 1 to 100) of a queue of your workspace, in \
              the order pop returns them, without removing them.",
    },
];

impl From<QueueError> for ManagerError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::InvalidName(_) | QueueError::TooLarge { .. } => {
                ManagerError::InvalidArgument(e.to_string())
            }
            QueueError::Full { .. } => ManagerError::Quota(e.to_string()),
            QueueError::Store(_) => ManagerError::Store(e.to_string()),
        }
    }
}

// === impl TaskQueue ===

impl TaskQueue {
    /// The service over `store` with `limits`.
    pub fn new(store: Arc<dyn QueueStore>, limits: QueueLimits) -> Arc<TaskQueue> {
        Arc::new(TaskQueue { store, limits })
    }

    async fn run(&self, ctx: &Ctx, function: &str, args: Vec<Value>) -> ManagerResult<Value> {
        let name = args
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| ManagerError::BadCall("queue_name must be a string".into()))?;
        let key = QueueKey::new(&ctx.ws, name)?;
        let arg = args.get(1).cloned().unwrap_or(Value::Nil);
        match function {
            "push" => {
                if !arg.is_map() {
                    return Err(ManagerError::BadCall("task must be a dict".into()));
                }
                let mut buf = Vec::new();
                rmpv::encode::write_value(&mut buf, &arg)
                    .map_err(|e| ManagerError::Internal(format!("encoding the task: {e}")))?;
                if buf.len() > self.limits.max_task_bytes {
                    return Err(QueueError::TooLarge {
                        size: buf.len(),
                        max: self.limits.max_task_bytes,
                    }
                    .into());
                }
                let n = self
                    .store
                    .push(&key, buf, self.limits.max_queue_len)
                    .await?;
                Ok(Value::from(n as u64))
            }
            "pop" => {
                let timeout = if arg.is_nil() {
                    DEFAULT_POP_TIMEOUT
                } else {
                    arg.as_f64().ok_or_else(|| {
                        ManagerError::BadCall("timeout must be a number of seconds".into())
                    })?
                };
                if !(0.0..=self.limits.max_pop_timeout).contains(&timeout) {
                    return Err(ManagerError::InvalidArgument(format!(
                        "timeout must be between 0 and {} seconds, got {timeout}",
                        self.limits.max_pop_timeout
                    )));
                }
                let task = self
                    .store
                    .pop(&key, Duration::from_secs_f64(timeout))
                    .await?;
                Ok(task.map(|t| decode(&t)).transpose()?.unwrap_or(Value::Nil))
            }
            "get_length" => Ok(Value::from(self.store.len(&key).await? as u64)),
            "peek" => {
                let n = if arg.is_nil() {
                    1
                } else {
                    arg.as_i64()
                        .ok_or_else(|| ManagerError::BadCall("n must be an integer".into()))?
                };
                if n < 1 || n as u64 > self.limits.max_peek as u64 {
                    return Err(ManagerError::InvalidArgument(format!(
                        "n must be between 1 and {}, got {n}",
                        self.limits.max_peek
                    )));
                }
                let tasks = self.store.peek(&key, n as usize).await?;
                Ok(Value::Array(
                    tasks.iter().map(|t| decode(t)).collect::<Result<_, _>>()?,
                ))
            }
            other => Err(ManagerError::MethodNotFound(format!("queue.{other}"))),
        }
    }
}

fn decode(bytes: &[u8]) -> ManagerResult<Value> {
    rmpv::decode::read_value(&mut &bytes[..])
        .map_err(|e| ManagerError::Store(format!("a stored task does not decode: {e}")))
}

impl ControlService for TaskQueue {
    fn id(&self) -> &'static str {
        "queue"
    }

    fn name(&self) -> &str {
        "Task Queue Service"
    }

    fn description(&self) -> &str {
        "FIFO task queues scoped to the caller's workspace: push tasks (dicts), pop them \
         with a timeout, check the length and peek at the next ones."
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        FUNCTIONS
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(self.run(ctx, function, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryQueues;
    use rhizo_control_plane::service::call_by_name;
    use rhizo_protocol::user::UserInfo;

    fn ctx(ws: &str) -> Ctx {
        Ctx {
            ws: ws.into(),
            from: format!("{ws}/c"),
            cid: "c".into(),
            user: UserInfo::root(),
        }
    }

    fn task(i: i64) -> Value {
        Value::Map(vec![("i".into(), i.into())])
    }

    fn small() -> Arc<TaskQueue> {
        let limits = QueueLimits {
            max_task_bytes: 64,
            max_queue_len: 2,
            ..QueueLimits::default()
        };
        TaskQueue::new(Arc::new(MemoryQueues::new()), limits)
    }

    #[tokio::test]
    async fn queues_are_per_workspace_and_bounded() {
        let q = small();
        let (a, b) = (ctx("ws-a"), ctx("ws-b"));
        let push = |c, t| {
            let q = q.clone();
            async move {
                call_by_name(
                    &*q,
                    c,
                    "push",
                    vec![("queue_name", "jobs".into()), ("task", t)],
                )
                .await
            }
        };
        assert_eq!(push(&a, task(1)).await, Ok(Value::from(1)));
        let len = call_by_name(&*q, &b, "get_length", vec![("queue_name", "jobs".into())]);
        assert_eq!(len.await, Ok(Value::from(0)), "another workspace's queue");
        assert_eq!(push(&a, task(2)).await, Ok(Value::from(2)));
        assert!(
            matches!(push(&a, task(3)).await, Err(ManagerError::Quota(m)) if m.contains("full"))
        );
        let big = Value::Map(vec![("x".into(), "y".repeat(100).into())]);
        assert!(
            matches!(push(&b, big).await, Err(ManagerError::InvalidArgument(m)) if m.contains("too large"))
        );
        assert!(matches!(
            push(&b, Value::from(1)).await,
            Err(ManagerError::BadCall(_))
        ));
        let bad = call_by_name(
            &*q,
            &a,
            "push",
            vec![("queue_name", "a b".into()), ("task", task(1))],
        );
        assert!(
            matches!(bad.await, Err(ManagerError::InvalidArgument(m)) if m.contains("Invalid queue name"))
        );

        let peek = call_by_name(
            &*q,
            &a,
            "peek",
            vec![("queue_name", "jobs".into()), ("n", 5.into())],
        );
        assert_eq!(peek.await, Ok(Value::Array(vec![task(1), task(2)])));
        let peek0 = call_by_name(
            &*q,
            &a,
            "peek",
            vec![("queue_name", "jobs".into()), ("n", 0.into())],
        );
        assert!(matches!(peek0.await, Err(ManagerError::InvalidArgument(_))));
        let pop = |c, t: f64| {
            let q = q.clone();
            async move {
                call_by_name(
                    &*q,
                    c,
                    "pop",
                    vec![("queue_name", "jobs".into()), ("timeout", t.into())],
                )
                .await
            }
        };
        assert_eq!(pop(&a, 0.0).await, Ok(task(1)), "FIFO");
        assert_eq!(pop(&b, 0.0).await, Ok(Value::Nil));
        assert!(matches!(
            pop(&a, 301.0).await,
            Err(ManagerError::InvalidArgument(_))
        ));
        assert!(matches!(
            pop(&a, -1.0).await,
            Err(ManagerError::InvalidArgument(_))
        ));
        assert_eq!(pop(&a, 0.0).await, Ok(task(2)));
        assert_eq!(pop(&a, 0.05).await, Ok(Value::Nil), "times out empty");
    }
}
