//! The records of running app instances ("sessions", apps-workers.md §1.3): what `start`
//! returns, what `list_running` lists and what `stop`, `get_logs` and `execute` look up.
//!
//! They sit behind [`SessionStore`] so that the whole cluster can read them once they are
//! kept in Redis (the reference's `sessions:{ws}/{client_id}` hashes, §0); on one node
//! [`MemorySessions`] keeps them in this process.

use dashmap::DashMap;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Where session records live. A record is a JSON map whose `id` is the session id
/// (`ws/_rapp_…__rlb`, the full client id of the app's own connection).
pub trait SessionStore: Send + Sync + 'static {
    /// Stores (or replaces) `record` under its `id`; `ttl` makes it expire (the
    /// python-eval record kept for its logs after its client left, §1.8).
    fn put(&self, record: Value, ttl: Option<Duration>);
    /// The record `id`, if stored and not expired.
    fn get(&self, id: &str) -> Option<Value>;
    /// Removes and returns the record `id`.
    fn remove(&self, id: &str) -> Option<Value>;
    /// Every live record, in no particular order.
    fn list(&self) -> Vec<Value>;
}

/// Session records in this process: a concurrent map with optional expiry, read lazily.
#[derive(Debug, Default)]
pub struct MemorySessions {
    records: DashMap<String, (Value, Option<Instant>)>,
}

fn live(entry: &(Value, Option<Instant>)) -> bool {
    entry.1.is_none_or(|t| Instant::now() < t)
}

impl SessionStore for MemorySessions {
    fn put(&self, record: Value, ttl: Option<Duration>) {
        let Some(id) = record.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return;
        };
        self.records
            .insert(id, (record, ttl.map(|t| Instant::now() + t)));
    }

    fn get(&self, id: &str) -> Option<Value> {
        let e = self.records.get(id)?;
        live(&e).then(|| e.0.clone())
    }

    fn remove(&self, id: &str) -> Option<Value> {
        self.records
            .remove(id)
            .filter(|(_, e)| live(e))
            .map(|(_, e)| e.0)
    }

    fn list(&self) -> Vec<Value> {
        self.records.retain(|_, e| live(e));
        self.records.iter().map(|e| e.value().0.clone()).collect()
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
    fn records_are_kept_replaced_removed_and_expire() {
        let s = MemorySessions::default();
        s.put(json!({"id": "w/a", "app_id": "x"}), None);
        s.put(json!({"id": "w/a", "app_id": "y"}), None);
        s.put(json!({"no": "id"}), None);
        assert_eq!(app_of(&s.get("w/a").unwrap()), "y");
        assert_eq!(s.list().len(), 1);
        s.put(json!({"id": "w/b"}), Some(Duration::ZERO));
        assert!(s.get("w/b").is_none(), "expired at once");
        assert_eq!(s.list().len(), 1);
        assert!(s.remove("w/a").is_some());
        assert!(s.remove("w/a").is_none());
    }

    #[test]
    fn the_public_view_hides_internal_fields() {
        let v = public_view(&json!({"id": "w/a", "_token": "secret"}));
        assert_eq!(v, json!({"id": "w/a"}));
    }
}
