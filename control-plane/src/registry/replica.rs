//! The other nodes' service records (issue 10 stage B): what each peer announced on the
//! cluster channel, kept by node beside this node's own [`super::table::ServiceTable`].
//!
//! Bookkeeping rules (pure, tested without Redis):
//! * `added(node, records)` stores each record under `node`, replacing records of the
//!   same full id (any app id) that `node` held, as a local registration does; a key that
//!   another node held moves to `node` (the client reconnected there: newest wins);
//! * `removed(node, keys)` and `client_gone(node, ws, cid)` touch only `node`'s records,
//!   so a late message from a client's old node never erases its new location;
//! * `replace(node, records)` (a snapshot) sets `node`'s records to exactly those;
//! * `drop_node(node)` (the node left) removes and returns all of them.
//!
//! A `std::sync::Mutex` guards the map; it is never held across an `.await`.

use super::table::{Pattern, ServiceRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Records by node id, then by registry key (`ws/cid:name@app`).
#[derive(Debug, Default)]
pub(crate) struct Replica {
    nodes: Mutex<HashMap<String, BTreeMap<String, ServiceRecord>>>,
}

/// The keys of `map` for the full id `id` (any app id).
fn keys_of_id(map: &BTreeMap<String, ServiceRecord>, id: &str) -> Vec<String> {
    let prefix = format!("{id}@");
    map.range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect()
}

// === impl Replica ===

impl Replica {
    /// `node` registered (or replaced) `records`.
    pub(crate) fn added(&self, node: &str, records: Vec<ServiceRecord>) {
        let mut nodes = self.nodes.lock().expect("replica lock");
        for r in records {
            let key = r.key();
            for (other, map) in nodes.iter_mut() {
                if other != node {
                    map.remove(&key);
                }
            }
            let map = nodes.entry(node.to_owned()).or_default();
            for k in keys_of_id(map, &r.id()) {
                map.remove(&k);
            }
            map.insert(key, r);
        }
        nodes.retain(|_, m| !m.is_empty());
    }

    /// `node` removed the records with these registry keys.
    pub(crate) fn removed(&self, node: &str, keys: &[String]) {
        let mut nodes = self.nodes.lock().expect("replica lock");
        if let Some(map) = nodes.get_mut(node) {
            for k in keys {
                map.remove(k);
            }
            if map.is_empty() {
                nodes.remove(node);
            }
        }
    }

    /// The client `ws/cid` of `node` left: its records go; returns them.
    pub(crate) fn client_gone(&self, node: &str, ws: &str, cid: &str) -> Vec<ServiceRecord> {
        let mut nodes = self.nodes.lock().expect("replica lock");
        let Some(map) = nodes.get_mut(node) else {
            return Vec::new();
        };
        let prefix = format!("{ws}/{cid}:");
        let keys: Vec<String> = map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let gone = keys.iter().filter_map(|k| map.remove(k)).collect();
        if map.is_empty() {
            nodes.remove(node);
        }
        gone
    }

    /// `node`'s full list (a snapshot): replaces whatever was known of it.
    pub(crate) fn replace(&self, node: &str, records: Vec<ServiceRecord>) {
        self.nodes.lock().expect("replica lock").remove(node);
        self.added(node, records);
    }

    /// `node` left the cluster: removes and returns its records, in key order.
    pub(crate) fn drop_node(&self, node: &str) -> Vec<ServiceRecord> {
        let mut nodes = self.nodes.lock().expect("replica lock");
        nodes
            .remove(node)
            .map(|m| m.into_values().collect())
            .unwrap_or_default()
    }

    /// Records of every node matching `pattern`, each with its registry key and node.
    pub(crate) fn find(&self, pattern: &Pattern<'_>) -> Vec<(String, String, ServiceRecord)> {
        let nodes = self.nodes.lock().expect("replica lock");
        let mut out = Vec::new();
        for (node, map) in nodes.iter() {
            for (k, r) in map.iter() {
                if pattern.accepts(r) {
                    out.push((k.clone(), node.clone(), r.clone()));
                }
            }
        }
        out
    }

    /// The node holding the record with registry key `key`.
    pub(crate) fn node_of(&self, key: &str) -> Option<String> {
        let nodes = self.nodes.lock().expect("replica lock");
        nodes
            .iter()
            .find(|(_, m)| m.contains_key(key))
            .map(|(n, _)| n.clone())
    }

    /// Records known per node (for tests and `/metrics`).
    pub(crate) fn len(&self) -> usize {
        let nodes = self.nodes.lock().expect("replica lock");
        nodes.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::map;

    fn rec(id: &str, app: &str) -> ServiceRecord {
        ServiceRecord::from_value(map([
            ("id", id.into()),
            ("app_id", app.into()),
            ("config", map([("visibility", "public".into())])),
        ]))
        .unwrap()
    }

    fn ids(r: &Replica) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = r
            .find(&Pattern::default())
            .into_iter()
            .map(|(k, n, _)| (n, k))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn adds_replace_same_id_and_removes_touch_only_their_node() {
        let r = Replica::default();
        r.added("a", vec![rec("w/c:s", "*"), rec("w/c:built-in", "*")]);
        r.added("a", vec![rec("w/c:s", "app")]); // same id, other app: replaces
        assert_eq!(
            ids(&r),
            [
                ("a".into(), "w/c:built-in@*".into()),
                ("a".into(), "w/c:s@app".into())
            ]
        );
        r.removed("b", &["w/c:s@app".into()]); // not b's
        assert_eq!(r.len(), 2);
        r.removed("a", &["w/c:s@app".into()]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.node_of("w/c:built-in@*").as_deref(), Some("a"));
    }

    #[test]
    fn a_client_that_moved_is_not_erased_by_its_old_node() {
        let r = Replica::default();
        r.added("a", vec![rec("w/c:s", "*"), rec("w/d:s", "*")]);
        r.added("b", vec![rec("w/c:s", "*")]); // c reconnected to b
        assert_eq!(r.node_of("w/c:s@*").as_deref(), Some("b"));
        assert!(r.client_gone("a", "w", "c").is_empty());
        assert_eq!(r.node_of("w/c:s@*").as_deref(), Some("b"));
        let gone = r.client_gone("b", "w", "c");
        assert_eq!(gone.len(), 1);
        assert_eq!(ids(&r), [("a".into(), "w/d:s@*".into())]);
    }

    #[test]
    fn snapshots_replace_and_departures_drop_a_node() {
        let r = Replica::default();
        r.added("a", vec![rec("w/c:s", "*"), rec("w/c:t", "*")]);
        r.added("b", vec![rec("x/e:s", "*")]);
        r.replace("a", vec![rec("w/c:u", "*")]);
        assert_eq!(
            ids(&r),
            [
                ("a".into(), "w/c:u@*".into()),
                ("b".into(), "x/e:s@*".into())
            ]
        );
        let gone = r.drop_node("b");
        assert_eq!(gone.len(), 1);
        assert!(r.drop_node("b").is_empty());
        let found = r.find(&Pattern {
            ws: Some("w"),
            name: Some("u"),
            ..Default::default()
        });
        assert_eq!(found.len(), 1);
        assert!(r
            .find(&Pattern {
                ws: Some("x"),
                ..Default::default()
            })
            .is_empty());
    }
}
