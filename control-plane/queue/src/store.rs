//! Where the queues live: [`QueueStore`], a FIFO list of encoded tasks per [`QueueKey`]
//! (workspace + queue name), with [`MemoryQueues`] and [`RedisQueues`] behind it.
//!
//! The store knows nothing of tasks' shape: a task is the bytes the service encoded. It
//! enforces the length bound itself (atomically with the push), since only it can see a
//! concurrent push from another node.

mod memory;
mod redis;

pub use self::memory::MemoryQueues;
pub use self::redis::RedisQueues;

use async_trait::async_trait;
use std::time::Duration;

/// The longest queue name, characters (workspace-api.md §9.2).
pub const MAX_NAME_LEN: usize = 128;

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue name breaks the rule of §9.2 (1–128 characters, `[A-Za-z0-9]` first,
    /// then `[A-Za-z0-9_.-]`).
    #[error("Invalid queue name: {0:?}. Queue names must be 1-128 characters, start with a letter or digit, and contain only letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    /// The encoded task is larger than the bound.
    #[error("task too large: {size} bytes encoded, at most {max} allowed")]
    TooLarge {
        /// Its encoded size, bytes.
        size: usize,
        /// The bound, bytes.
        max: usize,
    },
    /// The queue holds as many tasks as it may.
    #[error("queue {name:?} is full ({max} tasks); pop some before pushing more")]
    Full {
        /// The queue name.
        name: String,
        /// The bound, tasks.
        max: usize,
    },
    /// The backing store failed (Redis unreachable, timed out).
    #[error("queue store failed: {0}")]
    Store(String),
}

/// Shorthand for queue results.
pub type QueueResult<T> = Result<T, QueueError>;

/// A queue's identity: the caller's workspace and a checked name. The workspace comes
/// from the trusted call context only, so one workspace cannot name another's queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    ws: String,
    name: String,
}

// === impl QueueKey ===

impl QueueKey {
    /// The queue `name` of workspace `ws`.
    ///
    /// Errors: [`QueueError::InvalidName`] when `name` breaks the rule of §9.2.
    pub fn new(ws: &str, name: &str) -> QueueResult<QueueKey> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
            return Err(QueueError::InvalidName(name.to_owned()));
        }
        Ok(QueueKey {
            ws: ws.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The workspace.
    pub fn ws(&self) -> &str {
        &self.ws
    }

    /// The queue name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// FIFO queues of encoded tasks.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Appends `task` to the queue `key` unless it already holds `max_len` tasks; answers
    /// the new length.
    ///
    /// Errors: [`QueueError::Full`], [`QueueError::Store`].
    async fn push(&self, key: &QueueKey, task: Vec<u8>, max_len: usize) -> QueueResult<usize>;

    /// Removes and answers the oldest task of `key`, waiting up to `timeout` for one
    /// (`Duration::ZERO`: do not wait); `None` when none came in time. Each task goes to
    /// exactly one pop, also when several wait (on any node).
    ///
    /// Not cancel-safe with Redis: a pop dropped while Redis hands it a task may lose that
    /// task. The service always runs pops to completion.
    ///
    /// Errors: [`QueueError::Store`].
    async fn pop(&self, key: &QueueKey, timeout: Duration) -> QueueResult<Option<Vec<u8>>>;

    /// The number of tasks in `key` (0 for a queue never pushed to).
    ///
    /// Errors: [`QueueError::Store`].
    async fn len(&self, key: &QueueKey) -> QueueResult<usize>;

    /// The next `n` tasks of `key` in the order pops would answer them, left in place.
    ///
    /// Errors: [`QueueError::Store`].
    async fn peek(&self, key: &QueueKey, n: usize) -> QueueResult<Vec<Vec<u8>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["a", "jobs", "image-processing", "v1.2_x", &"a".repeat(128)] {
            assert!(QueueKey::new("ws", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "a:b",
            "ü",
            &"a".repeat(129),
        ] {
            assert_eq!(
                QueueKey::new("ws", bad),
                Err(QueueError::InvalidName(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
