//! rhizo's task queue (workspace-api.md §9.2): the control-plane service `public/queue`
//! ([`TaskQueue`]) with `push(queue_name, task)`, `pop(queue_name, timeout=30)`,
//! `get_length(queue_name)` and `peek(queue_name, n=1)`, every queue scoped to the
//! caller's workspace, over a [`QueueStore`].
//!
//! * [`service`] — [`TaskQueue`], the `ControlService`: argument checks, the bounds of
//!   [`QueueLimits`], and the mapping of [`QueueError`] to the errors clients see.
//! * [`store`] — [`QueueStore`] (FIFO lists of encoded tasks keyed by [`QueueKey`]), with
//!   [`MemoryQueues`] (one process, the default) and [`RedisQueues`] (the cluster's Redis,
//!   with `--redis-uri`: every node sees the same queues); one contract suite in
//!   `tests/store.rs` runs against both.
//!
//! ```python
//! q = await server.get_service("public/queue")
//! await q.push("jobs", {"image": "a.png"})
//! task = await q.pop("jobs", timeout=10)   # None after 10 s without a task
//! ```

pub mod service;
pub mod store;

pub use service::{QueueLimits, TaskQueue};
pub use store::{MemoryQueues, QueueError, QueueKey, QueueResult, QueueStore, RedisQueues};
