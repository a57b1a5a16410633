//! [`RedisSessions`]: the session store of a cluster (apps-workers.md §0, §7 "Redis as the
//! source of truth for sessions"). Layout under the prefix `P` (`--redis-prefix`):
//!
//! | key                          | type   | content                                        |
//! |------------------------------|--------|------------------------------------------------|
//! | `P:apps:session:<id>`        | string | the record as JSON; `PX` when it has a TTL     |
//! | `P:apps:sessions`            | set    | the ids stored (an index; members whose record expired are pruned by `list`) |
//! | `P:apps:disabled:<ws>`       | set    | disabled worker ids of `<ws>`                  |
//! | `P:apps:lock:<name>`         | string | the holder's token, `SET NX PX`                |
//! | `P:apps:load:<id>`           | string | the instance's requests/min (a float), `PX`: the autoscaler's load figure published by the node holding its connection |
//!
//! The reference keeps a record as a hash whose scalars read back as strings; rhizo stores
//! the JSON so that `daemon` stays a boolean on every node. Only rhizo nodes read these keys.
//!
//! One multiplexed connection ([`ConnectionManager`], reconnecting by itself), opened at
//! the first call so that a server starts while Redis is still down; a call gives up
//! after [`CONNECT_TIMEOUT`] when it cannot connect and after [`RESPONSE_TIMEOUT`] when
//! Redis does not answer, with a [`StoreError`].

use super::{lock_token, record_id, Load, LockGuard, SessionStore, StoreError, StoreResult};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long one Redis command may take before the call fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening the connection may take (all attempts) before the call fails; the
/// next call tries again.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Releases a lock only if it still holds the caller's token.
const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Compare and extend: `PEXPIRE` the lock only while it holds the caller's token.
const EXTEND: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Session records, disabled workers and locks in a Redis shared by the cluster's nodes.
pub struct RedisSessions {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedisSessions {
    /// A store on the Redis at `uri` (`redis://host:port/db`) with keys under `prefix`.
    /// Nothing is connected yet. Errors: `uri` is not a Redis URL.
    pub fn new(uri: &str, prefix: &str) -> StoreResult<RedisSessions> {
        Ok(RedisSessions {
            client: redis::Client::open(uri).map_err(err)?,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
        })
    }

    async fn conn(&self) -> StoreResult<ConnectionManager> {
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
            .map_err(|_| StoreError("cannot connect to Redis (timed out)".into()))?
            .map_err(err)
        };
        self.conn.get_or_try_init(open).await.cloned()
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:apps:session:{id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:apps:sessions", self.prefix)
    }

    fn disabled_key(&self, ws: &str) -> String {
        format!("{}:apps:disabled:{ws}", self.prefix)
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}:apps:lock:{name}", self.prefix)
    }

    fn load_key(&self, id: &str) -> String {
        format!("{}:apps:load:{id}", self.prefix)
    }
}

fn parse(raw: Option<String>) -> StoreResult<Option<Value>> {
    raw.map(|s| serde_json::from_str(&s).map_err(err))
        .transpose()
}

fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn put(&self, record: Value, ttl: Option<Duration>) -> StoreResult<()> {
        let id = record_id(&record)?;
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(id)).arg(record.to_string());
        if let Some(t) = ttl {
            set.arg("PX").arg(millis(t));
        }
        let mut conn = self.conn().await?;
        redis::pipe()
            .atomic()
            .add_command(set)
            .ignore()
            .sadd(self.index_key(), id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Value>> {
        let mut conn = self.conn().await?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.session_key(id))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        parse(raw)
    }

    async fn remove(&self, id: &str) -> StoreResult<Option<Value>> {
        let mut conn = self.conn().await?;
        let (raw,): (Option<String>,) = redis::pipe()
            .atomic()
            .cmd("GETDEL")
            .arg(self.session_key(id))
            .srem(self.index_key(), id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        parse(raw)
    }

    async fn list(&self) -> StoreResult<Vec<Value>> {
        let mut conn = self.conn().await?;
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.index_key())
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.session_key(id)).collect();
        let raws: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(raws.len());
        let mut expired = Vec::new();
        for (id, raw) in ids.into_iter().zip(raws) {
            match raw {
                Some(s) => match serde_json::from_str(&s) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "unreadable session record")
                    }
                },
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            // Records that expired (or were removed between the two reads; `remove`
            // takes the member out itself, so pruning it again is harmless).
            let _: Result<(), _> = redis::cmd("SREM")
                .arg(self.index_key())
                .arg(&expired)
                .query_async(&mut conn)
                .await;
        }
        Ok(out)
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> StoreResult<Option<LockGuard>> {
        let token = lock_token();
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(name))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(set.map(|_| LockGuard {
            name: name.to_owned(),
            token,
        }))
    }

    async fn unlock(&self, lock: &LockGuard) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("EVAL")
            .arg(UNLOCK)
            .arg(1)
            .arg(self.lock_key(&lock.name))
            .arg(&lock.token)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn extend(&self, lock: &LockGuard, ttl: Duration) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        redis::cmd("EVAL")
            .arg(EXTEND)
            .arg(1)
            .arg(self.lock_key(&lock.name))
            .arg(&lock.token)
            .arg(millis(ttl))
            .query_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(err)
    }

    async fn disabled_workers(&self, ws: &str) -> StoreResult<HashSet<String>> {
        let mut conn = self.conn().await?;
        redis::cmd("SMEMBERS")
            .arg(self.disabled_key(ws))
            .query_async(&mut conn)
            .await
            .map_err(err)
    }

    async fn set_worker_disabled(
        &self,
        ws: &str,
        worker_id: &str,
        disabled: bool,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd(if disabled { "SADD" } else { "SREM" })
            .arg(self.disabled_key(ws))
            .arg(worker_id)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn put_loads(&self, loads: &[(String, Load)], ttl: Duration) -> StoreResult<()> {
        if loads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, load) in loads {
            pipe.cmd("SET")
                .arg(self.load_key(id))
                .arg(load.encode())
                .arg("PX")
                .arg(millis(ttl))
                .ignore();
        }
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn loads(&self, ids: &[String]) -> StoreResult<HashMap<String, Load>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.load_key(id)).collect();
        let mut conn = self.conn().await?;
        let raws: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(ids
            .iter()
            .zip(raws)
            .filter_map(|(id, raw)| Some((id.clone(), Load::decode(&raw?)?)))
            .collect())
    }
}
