//! [`MemoryQueues`]: the queues of a single node, in process memory.
//!
//! One `std::sync::Mutex` guards the map, never held across an `.await`. A pop that finds
//! its queue empty waits on the queue's [`Notify`]; a push wakes one waiter (a waiter
//! dropped after being woken passes the wake-up on, so no task is left waiting while a
//! pop sleeps). Entries of empty queues nobody waits on are removed.

use super::{QueueError, QueueKey, QueueResult, QueueStore};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Vec<u8>>,
    /// Cloned by every waiting pop, so its count tells whether anyone waits.
    ready: Arc<Notify>,
}

/// Queues in this process; nothing survives it, and other nodes do not see them.
#[derive(Default)]
pub struct MemoryQueues {
    queues: Mutex<HashMap<QueueKey, Queue>>,
}

impl std::fmt::Debug for MemoryQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueues").finish_non_exhaustive()
    }
}

// === impl MemoryQueues ===

impl MemoryQueues {
    /// No queues.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<QueueKey, Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the oldest task of `key`, or hands out the queue's wake-up to wait on; drops
    /// the entry of an empty queue nobody else waits on when `wait` is false.
    fn take(&self, key: &QueueKey, wait: bool) -> Result<Vec<u8>, Option<Arc<Notify>>> {
        let mut queues = self.lock();
        let Some(q) = queues.get_mut(key) else {
            if !wait {
                return Err(None);
            }
            let q = queues.entry(key.clone()).or_default();
            return Err(Some(q.ready.clone()));
        };
        if let Some(task) = q.tasks.pop_front() {
            if q.tasks.is_empty() && Arc::strong_count(&q.ready) == 1 {
                queues.remove(key);
            }
            return Ok(task);
        }
        if wait {
            return Err(Some(q.ready.clone()));
        }
        if Arc::strong_count(&q.ready) == 1 {
            queues.remove(key);
        }
        Err(None)
    }
}

#[async_trait]
impl QueueStore for MemoryQueues {
    async fn push(&self, key: &QueueKey, task: Vec<u8>, max_len: usize) -> QueueResult<usize> {
        let mut queues = self.lock();
        let q = queues.entry(key.clone()).or_default();
        if q.tasks.len() >= max_len {
            return Err(QueueError::Full {
                name: key.name().to_owned(),
                max: max_len,
            });
        }
        q.tasks.push_back(task);
        q.ready.notify_one();
        Ok(q.tasks.len())
    }

    async fn pop(&self, key: &QueueKey, timeout: Duration) -> QueueResult<Option<Vec<u8>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wait = tokio::time::Instant::now() < deadline;
            let ready = match self.take(key, wait) {
                Ok(task) => return Ok(Some(task)),
                Err(None) => return Ok(None),
                Err(Some(ready)) => ready,
            };
            // A push between `take` and here left a permit in `notify_one`, so this
            // wakes at once rather than missing it.
            let woke = tokio::time::timeout_at(deadline, ready.notified()).await;
            drop(ready);
            if woke.is_err() {
                // Out of time: one last look (which also tidies the entry).
                return Ok(self.take(key, false).ok());
            }
        }
    }

    async fn len(&self, key: &QueueKey) -> QueueResult<usize> {
        Ok(self.lock().get(key).map_or(0, |q| q.tasks.len()))
    }

    async fn peek(&self, key: &QueueKey, n: usize) -> QueueResult<Vec<Vec<u8>>> {
        Ok(self
            .lock()
            .get(key)
            .map(|q| q.tasks.iter().take(n).cloned().collect())
            .unwrap_or_default())
    }
}
