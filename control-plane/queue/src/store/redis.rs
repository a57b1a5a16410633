//! [`RedisQueues`]: the queues of a cluster, in the Redis its nodes share
//! (`--redis-uri`), so a task pushed on one node can be popped on any.
//!
//! Layout under the prefix `P` (`--redis-prefix`): one list `P:queue:<ws>:<name>` per
//! queue (the reference's `<ws>:q:<name>`, workspace-api.md §11.1), pushed on the left
//! (`LPUSH`, through a script that checks the length bound in the same step) and popped
//! on the right (`RPOP`, or `BRPOP` with the remaining timeout when the queue is empty).
//!
//! Short commands share one multiplexed connection ([`ConnectionManager`]). A blocking
//! `BRPOP` would stall every command behind it on that connection, so each waiting pop
//! takes a connection of its own: at most [`MAX_BLOCKING`] at once (later pops wait for
//! one within their own timeout), and up to [`IDLE_BLOCKING`] are kept for reuse.

use super::{QueueError, QueueKey, QueueResult, QueueStore};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::AsyncConnectionConfig;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};

/// How long one short Redis command may take before the call fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a connection may take before the call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocking pops waiting in Redis at once, each on its own connection.
pub const MAX_BLOCKING: usize = 256;

/// Idle blocking-pop connections kept for the next pops.
pub const IDLE_BLOCKING: usize = 16;

/// `LPUSH` unless the list already holds `ARGV[2]` entries (then -1).
const PUSH: &str = "local n = redis.call('LLEN', KEYS[1]) \
     if n >= tonumber(ARGV[2]) then return -1 end \
     return redis.call('LPUSH', KEYS[1], ARGV[1])";

/// Queues in a Redis shared by the cluster's nodes.
pub struct RedisQueues {
    client: redis::Client,
    shared: OnceCell<ConnectionManager>,
    idle: Mutex<Vec<MultiplexedConnection>>,
    blocking: Semaphore,
    prefix: String,
}

impl std::fmt::Debug for RedisQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueues")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError::Store(e.to_string())
}

// === impl RedisQueues ===

impl RedisQueues {
    /// Queues on the Redis at `uri` (`redis://host:port/db`) with keys under `prefix`.
    /// Nothing is connected yet (the first call connects, so a server starts while Redis
    /// is down). Errors: `uri` is not a Redis URL.
    pub fn new(uri: &str, prefix: &str) -> QueueResult<RedisQueues> {
        Ok(RedisQueues {
            client: redis::Client::open(uri).map_err(err)?,
            shared: OnceCell::new(),
            idle: Mutex::new(Vec::new()),
            blocking: Semaphore::new(MAX_BLOCKING),
            prefix: prefix.to_owned(),
        })
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &QueueKey) -> String {
        format!("{}:queue:{}:{}", self.prefix, key.ws(), key.name())
    }

    async fn conn(&self) -> QueueResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(1);
        let open = || async {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            .map_err(|_| QueueError::Store("cannot connect to Redis (timed out)".into()))?
            .map_err(err)
        };
        self.shared.get_or_try_init(open).await.cloned()
    }

    async fn blocking_conn(&self) -> QueueResult<MultiplexedConnection> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(c) = reused {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)
    }

    fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_BLOCKING {
            idle.push(conn);
        }
    }

    async fn rpop(&self, key: &str) -> QueueResult<Option<Vec<u8>>> {
        let mut c = self.conn().await?;
        redis::cmd("RPOP")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl QueueStore for RedisQueues {
    async fn push(&self, key: &QueueKey, task: Vec<u8>, max_len: usize) -> QueueResult<usize> {
        let mut c = self.conn().await?;
        let n: i64 = redis::cmd("EVAL")
            .arg(PUSH)
            .arg(1)
            .arg(self.redis_key(key))
            .arg(task)
            .arg(max_len)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        usize::try_from(n).map_err(|_| QueueError::Full {
            name: key.name().to_owned(),
            max: max_len,
        })
    }

    async fn pop(&self, key: &QueueKey, timeout: Duration) -> QueueResult<Option<Vec<u8>>> {
        let rkey = self.redis_key(key);
        if let Some(task) = self.rpop(&rkey).await? {
            return Ok(Some(task));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(permit) = tokio::time::timeout_at(deadline, self.blocking.acquire()).await else {
            return self.rpop(&rkey).await;
        };
        let _permit = permit.map_err(err)?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return self.rpop(&rkey).await;
        }
        let mut c = self.blocking_conn().await?;
        // Redis answers nil when its own timeout passes; ours only guards a dead server.
        c.set_response_timeout(left + RESPONSE_TIMEOUT);
        let got: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
            .arg(&rkey)
            .arg(left.as_secs_f64())
            .query_async(&mut c)
            .await
            .map_err(err)?;
        self.give_back(c);
        Ok(got.map(|(_, task)| task))
    }

    async fn len(&self, key: &QueueKey) -> QueueResult<usize> {
        let mut c = self.conn().await?;
        redis::cmd("LLEN")
            .arg(self.redis_key(key))
            .query_async(&mut c)
            .await
            .map_err(err)
    }

    async fn peek(&self, key: &QueueKey, n: usize) -> QueueResult<Vec<Vec<u8>>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        // The right end is popped first: the last `n` entries, read from the right.
        let mut tasks: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.redis_key(key))
            .arg(-(n as i64))
            .arg(-1)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        tasks.reverse();
        Ok(tasks)
    }
}
