//! The records of running app instances ("sessions", apps-workers.md §1.3): what `start`
//! returns, what `list_running` lists and what `stop`, `get_logs` and `execute` look up —
//! plus the two other things every node of a cluster must agree on (§0): which workers are
//! disabled, and who holds a session's stop lock or an app's start lock.
//!
//! They sit behind [`SessionStore`] so that the whole cluster reads one set:
//! * [`MemorySessions`] — one node: a map in this process.
//! * [`RedisSessions`] — nodes sharing a Redis (`--redis-uri`): a key per record, a set per
//!   workspace of disabled workers, `SET NX PX` locks, a key per instance load figure.
//!
//! They also carry the autoscaler's load figures (requests per minute per instance), which
//! the node holding an instance's connection publishes with a TTL and the leader reads.
//!
//! Both run through one contract test suite (`control-plane/apps/tests/sessions.rs`).

mod redis;

pub use self::redis::RedisSessions;

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The session store could not be reached or answered nonsense (Redis down, a record
/// that is not JSON). Callers report it; nothing is changed by a failed call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the session store failed: {0}")]
pub struct StoreError(pub String);

/// A result of the session store.
pub type StoreResult<T> = Result<T, StoreError>;

/// A lock taken with [`SessionStore::try_lock`]: its name and the holder's random token,
/// which [`SessionStore::unlock`] must show (so a holder whose lock expired cannot
/// release the next holder's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGuard {
    /// The lock's name, e.g. `app-stop-lock:ws/_rapp_x__rlb`.
    pub name: String,
    /// The holder's token.
    pub token: String,
}

/// Where session records, disabled workers and the cluster's locks live.
///
/// A record is a JSON map whose `id` is the session id (`ws/_rapp_…__rlb`, the full
/// client id of the app's own connection). Records round-trip exactly (the reference's
/// Redis hashes read scalars back as strings; rhizo's do not, §0).
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores (or replaces) `record` under its `id`; `ttl` makes it expire (the
    /// python-eval record kept for its logs after its client left, §1.8). A record without
    /// a string `id` is refused (`StoreError`).
    async fn put(&self, record: Value, ttl: Option<Duration>) -> StoreResult<()>;
    /// The record `id`, if stored and not expired.
    async fn get(&self, id: &str) -> StoreResult<Option<Value>>;
    /// Removes and returns the record `id`, atomically: of two callers removing the same
    /// record at once, exactly one gets it.
    async fn remove(&self, id: &str) -> StoreResult<Option<Value>>;
    /// Every live record, in no particular order.
    async fn list(&self) -> StoreResult<Vec<Value>>;
    /// Takes lock `name` for `ttl` unless someone holds it (`SET NX PX`); `None` when
    /// held. The lock expires by itself after `ttl`.
    async fn try_lock(&self, name: &str, ttl: Duration) -> StoreResult<Option<LockGuard>>;
    /// Releases `lock` if it is still the one taken (a lock that expired and was taken
    /// again by another holder is left alone).
    async fn unlock(&self, lock: &LockGuard) -> StoreResult<()>;
    /// Extends `lock` to expire `ttl` from now if it is still the one taken (compare and
    /// extend: the autoscaler's leader lease, apps-workers.md §5.4); false when it expired
    /// or another holder has it (the caller is no longer the holder).
    async fn extend(&self, lock: &LockGuard, ttl: Duration) -> StoreResult<bool>;
    /// The disabled worker ids of workspace `ws` (`disabled_workers:{ws}`, §0).
    async fn disabled_workers(&self, ws: &str) -> StoreResult<HashSet<String>>;
    /// Marks worker `worker_id` of workspace `ws` disabled or enabled again.
    async fn set_worker_disabled(
        &self,
        ws: &str,
        worker_id: &str,
        disabled: bool,
    ) -> StoreResult<()>;
    /// Publishes the [`Load`] of each session in `loads`, each figure expiring `ttl` from
    /// now (the autoscaler: a node publishes what it sampled of the instances whose
    /// connection it holds). A figure replaces the session's previous one.
    async fn put_loads(&self, loads: &[(String, Load)], ttl: Duration) -> StoreResult<()>;
    /// The published, unexpired load figures of those `ids` that have one.
    async fn loads(&self, ids: &[String]) -> StoreResult<HashMap<String, Load>>;
}

/// One app instance's load as the node holding its connection sampled it (the
/// autoscaler's published figures, apps-workers.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Frames the instance's client sent per minute over the sampling window.
    pub requests_per_minute: f64,
    /// Calls delivered to the instance and not answered yet, at the sample.
    pub in_flight: f64,
}

impl Load {
    /// The figure as stored in Redis: `"<requests_per_minute> <in_flight>"`.
    pub fn encode(&self) -> String {
        format!("{} {}", self.requests_per_minute, self.in_flight)
    }

    /// Parses [`Load::encode`]'s text (a bare number, an older node's, is requests per
    /// minute with nothing in flight); `None` for anything else.
    pub fn decode(text: &str) -> Option<Load> {
        let mut parts = text.split(' ');
        let requests_per_minute = parts.next()?.parse().ok()?;
        let in_flight = match parts.next() {
            Some(v) => v.parse().ok()?,
            None => 0.0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Load {
            requests_per_minute,
            in_flight,
        })
    }
}

/// The `id` of a record, or the error [`SessionStore::put`] gives for one without.
pub(crate) fn record_id(record: &Value) -> StoreResult<&str> {
    record
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError("a session record needs a string `id`".into()))
}

/// A random lock token.
fn lock_token() -> String {
    rhizo_control_plane::names::random_string(20)
}

/// Session records in this process: concurrent maps with optional expiry, read lazily.
#[derive(Debug, Default)]
pub struct MemorySessions {
    records: DashMap<String, (Value, Option<Instant>)>,
    locks: DashMap<String, (String, Instant)>,
    disabled: DashMap<String, HashSet<String>>,
    loads: DashMap<String, (Load, Instant)>,
}

fn live<T>(entry: &(T, Option<Instant>)) -> bool {
    entry.1.is_none_or(|t| Instant::now() < t)
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn put(&self, record: Value, ttl: Option<Duration>) -> StoreResult<()> {
        let id = record_id(&record)?.to_owned();
        self.records
            .insert(id, (record, ttl.map(|t| Instant::now() + t)));
        Ok(())
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Value>> {
        Ok(self
            .records
            .get(id)
            .filter(|e| live(e))
            .map(|e| e.0.clone()))
    }

    async fn remove(&self, id: &str) -> StoreResult<Option<Value>> {
        Ok(self
            .records
            .remove(id)
            .filter(|(_, e)| live(e))
            .map(|(_, e)| e.0))
    }

    async fn list(&self) -> StoreResult<Vec<Value>> {
        self.records.retain(|_, e| live(e));
        Ok(self.records.iter().map(|e| e.value().0.clone()).collect())
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> StoreResult<Option<LockGuard>> {
        let now = Instant::now();
        let token = lock_token();
        let mut taken = false;
        self.locks
            .entry(name.to_owned())
            .and_modify(|held| {
                if held.1 <= now {
                    *held = (token.clone(), now + ttl);
                    taken = true;
                }
            })
            .or_insert_with(|| {
                taken = true;
                (token.clone(), now + ttl)
            });
        Ok(taken.then(|| LockGuard {
            name: name.to_owned(),
            token,
        }))
    }

    async fn unlock(&self, lock: &LockGuard) -> StoreResult<()> {
        self.locks
            .remove_if(&lock.name, |_, held| held.0 == lock.token);
        Ok(())
    }

    async fn extend(&self, lock: &LockGuard, ttl: Duration) -> StoreResult<bool> {
        let now = Instant::now();
        Ok(self.locks.get_mut(&lock.name).is_some_and(|mut held| {
            let ours = held.0 == lock.token && held.1 > now;
            if ours {
                held.1 = now + ttl;
            }
            ours
        }))
    }

    async fn disabled_workers(&self, ws: &str) -> StoreResult<HashSet<String>> {
        Ok(self.disabled.get(ws).map(|s| s.clone()).unwrap_or_default())
    }

    async fn set_worker_disabled(
        &self,
        ws: &str,
        worker_id: &str,
        disabled: bool,
    ) -> StoreResult<()> {
        if disabled {
            self.disabled
                .entry(ws.to_owned())
                .or_default()
                .insert(worker_id.to_owned());
        } else if let Some(mut set) = self.disabled.get_mut(ws) {
            set.remove(worker_id);
        }
        Ok(())
    }

    async fn put_loads(&self, loads: &[(String, Load)], ttl: Duration) -> StoreResult<()> {
        let now = Instant::now();
        self.loads.retain(|_, e| e.1 > now);
        let until = now + ttl;
        for (id, load) in loads {
            self.loads.insert(id.clone(), (*load, until));
        }
        Ok(())
    }

    async fn loads(&self, ids: &[String]) -> StoreResult<HashMap<String, Load>> {
        let now = Instant::now();
        Ok(ids
            .iter()
            .filter_map(|id| {
                self.loads
                    .get(id)
                    .filter(|e| e.1 > now)
                    .map(|e| (id.clone(), e.0))
            })
            .collect())
    }
}

/// The app id (alias) of a record.
pub fn app_of(record: &Value) -> &str {
    record.get("app_id").and_then(Value::as_str).unwrap_or("")
}

/// The workspace of a record.
pub fn ws_of(record: &Value) -> &str {
    record
        .get("workspace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A record as clients see it: fields starting with `_` are internal (§0).
pub fn public_view(record: &Value) -> Value {
    match record {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_public_view_hides_internal_fields() {
        let v = public_view(&json!({"id": "w/a", "_token": "secret"}));
        assert_eq!(v, json!({"id": "w/a"}));
    }
}
