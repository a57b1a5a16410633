//! The table under the service registry: every registered service record, keyed by its
//! full id and app id (workspace-api.md §2.1–2.4), and the record types.
//!
//! Only [`super::Registry`] holds a [`ServiceTable`]: every change to it goes through the
//! registry, which emits the service events. A `std::sync::Mutex` guards the map; it is
//! never held across an `.await`.

use crate::error::{ManagerError, ManagerResult};
use rhizo_protocol::value::{get, get_str};
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Visibility of a service (workspace-api.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Anyone may resolve, call and list it.
    Public,
    /// Anyone who knows the id may resolve and call it; listed only on request in its own
    /// workspace.
    Unlisted,
    /// Only callers with read permission on its workspace, or from an authorized workspace.
    Protected,
}

// === impl Visibility ===

impl Visibility {
    /// Parses `config.visibility`; anything unknown or absent is `protected`.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("public") => Visibility::Public,
            Some("unlisted") => Visibility::Unlisted,
            _ => Visibility::Protected,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Unlisted => "unlisted",
            Visibility::Protected => "protected",
        }
    }
}

/// One registered service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// Workspace of the providing client.
    pub ws: String,
    /// Providing client id.
    pub cid: String,
    /// Service name (the part after `:`).
    pub name: String,
    /// App id, `*` when none.
    pub app_id: String,
    /// Parsed `config.visibility`.
    pub visibility: Visibility,
    /// `config.authorized_workspaces` (protected services only).
    pub authorized: Vec<String>,
    /// `type`, `generic` by default.
    pub kind: String,
    /// Whether `config.singleton` is set.
    pub singleton: bool,
    /// The stored record as sent to clients (`id`, `name`, `type`, `description`, `docs`,
    /// `app_id`, `config`, `service_schema`).
    pub record: Value,
}

// === impl ServiceRecord ===

impl ServiceRecord {
    /// Builds a record from the map a client registered; `id` must already be the full
    /// `"<ws>/<cid>:<name>"`. Errors: [`ManagerError::InvalidArgument`] when it is not.
    pub fn from_value(record: Value) -> ManagerResult<Self> {
        let id = get_str(&record, "id")
            .ok_or_else(|| ManagerError::InvalidArgument("service id is required".into()))?
            .to_owned();
        let (addr, name) = id
            .split_once(':')
            .ok_or_else(|| ManagerError::InvalidArgument("service id must contain ':'".into()))?;
        let (ws, cid) = addr
            .split_once('/')
            .ok_or_else(|| ManagerError::InvalidArgument("service id must contain '/'".into()))?;
        let config = get(&record, "config").cloned().unwrap_or(Value::Nil);
        let authorized = rhizo_protocol::value::get_strs(&config, "authorized_workspaces");
        Ok(ServiceRecord {
            ws: ws.to_owned(),
            cid: cid.to_owned(),
            name: name.to_owned(),
            app_id: get_str(&record, "app_id").unwrap_or("*").to_owned(),
            visibility: Visibility::parse(get_str(&config, "visibility")),
            authorized,
            kind: get_str(&record, "type").unwrap_or("generic").to_owned(),
            singleton: get(&config, "singleton")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            record,
        })
    }

    /// `"<ws>/<cid>:<name>"`.
    pub fn id(&self) -> String {
        format!("{}/{}:{}", self.ws, self.cid, self.name)
    }

    /// Registry key: `"<ws>/<cid>:<name>@<app_id>"`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id(), self.app_id)
    }

    /// Whether this is a client's `built-in` service (its presence marks the client live).
    pub fn is_built_in(&self) -> bool {
        self.name == "built-in"
    }
}

/// The refusal of `record` because the singleton rule (workspace-api.md §2.4) binds its
/// name in its workspace, in the reference's wording (clients match on "A singleton
/// service with the same name").
pub(crate) fn singleton_taken(record: &ServiceRecord) -> ManagerError {
    ManagerError::InvalidArgument(format!(
        "A singleton service with the same name ({}) already exists in the workspace ({}), \
         please remove it first or use a different name.",
        record.name, record.ws
    ))
}

/// A lookup pattern: `None` or `"*"` parts match anything; other parts may hold `*`
/// wildcards.
#[derive(Debug, Clone, Default)]
pub struct Pattern<'a> {
    /// Workspace pattern.
    pub ws: Option<&'a str>,
    /// Client id pattern.
    pub cid: Option<&'a str>,
    /// Service name pattern.
    pub name: Option<&'a str>,
    /// App id pattern.
    pub app_id: Option<&'a str>,
    /// Type pattern.
    pub kind: Option<&'a str>,
}

/// Glob match with `*` as the only wildcard.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

fn matches(p: Option<&str>, v: &str) -> bool {
    p.is_none_or(|p| glob(p, v))
}

// === impl Pattern ===

impl Pattern<'_> {
    /// Whether `r` matches every part.
    pub(crate) fn accepts(&self, r: &ServiceRecord) -> bool {
        matches(self.ws, &r.ws)
            && matches(self.cid, &r.cid)
            && matches(self.name, &r.name)
            && matches(self.app_id, &r.app_id)
            && matches(self.kind, &r.kind)
    }
}

/// The records whose key starts with `prefix` (keys are `ws/cid:name@app`).
fn with_prefix<'a>(
    map: &'a BTreeMap<String, ServiceRecord>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a ServiceRecord)> + 'a {
    map.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(move |(k, _)| k.starts_with(prefix))
}

/// `p` if it is a literal (no `*` wildcard).
fn literal(p: Option<&str>) -> Option<&str> {
    p.filter(|p| !p.contains('*'))
}

/// Removes and returns the records whose key starts with `prefix`.
fn remove_prefix(map: &mut BTreeMap<String, ServiceRecord>, prefix: &str) -> Vec<ServiceRecord> {
    let keys: Vec<String> = with_prefix(map, prefix).map(|(k, _)| k.clone()).collect();
    keys.iter().filter_map(|k| map.remove(k)).collect()
}

/// All registered services of this server.
#[derive(Debug, Default)]
pub struct ServiceTable {
    services: Mutex<BTreeMap<String, ServiceRecord>>,
}

/// What [`ServiceTable::insert`] did.
#[derive(Debug)]
pub enum Inserted {
    /// A new record.
    New,
    /// Replaced records with the same full id (any app id).
    Replaced(Vec<ServiceRecord>),
}

// === impl ServiceTable ===

impl ServiceTable {
    /// Stores `record`, replacing any record with the same full id. Enforces the singleton
    /// rule (workspace-api.md §2.4). Cost: the workspace's records, not the whole registry.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] when a singleton of that name exists.
    pub fn insert(&self, record: ServiceRecord) -> ManagerResult<Inserted> {
        let mut map = self.services.lock().expect("registry lock");
        let id = record.id();
        let ws_prefix = format!("{}/", record.ws);
        let same_name = with_prefix(&map, &ws_prefix)
            .filter(|(_, r)| r.name == record.name && r.cid != record.cid);
        for (_, other) in same_name {
            if other.singleton || record.singleton {
                return Err(singleton_taken(&record));
            }
        }
        let replaced = remove_prefix(&mut map, &format!("{id}@"));
        map.insert(record.key(), record);
        Ok(if replaced.is_empty() {
            Inserted::New
        } else {
            Inserted::Replaced(replaced)
        })
    }

    /// Removes the records with full id `id` (any app id).
    pub fn remove_id(&self, id: &str) -> Vec<ServiceRecord> {
        let mut map = self.services.lock().expect("registry lock");
        remove_prefix(&mut map, &format!("{id}@"))
    }

    /// Removes every record of client `ws/cid`.
    pub fn remove_client(&self, ws: &str, cid: &str) -> Vec<ServiceRecord> {
        let mut map = self.services.lock().expect("registry lock");
        remove_prefix(&mut map, &format!("{ws}/{cid}:"))
    }

    /// Records matching `pattern`, in key order. A literal workspace (and client id)
    /// narrows the scan to that key range.
    pub fn find(&self, pattern: &Pattern<'_>) -> Vec<ServiceRecord> {
        let map = self.services.lock().expect("registry lock");
        let prefix = match (literal(pattern.ws), literal(pattern.cid)) {
            (Some(ws), Some(cid)) => format!("{ws}/{cid}:"),
            (Some(ws), None) => format!("{ws}/"),
            _ => String::new(),
        };
        with_prefix(&map, &prefix)
            .filter(|(_, r)| pattern.accepts(r))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Client ids of `ws` that have a `built-in` service (the live clients, §4.5), with the
    /// built-in record.
    pub fn clients(&self, ws: &str) -> Vec<ServiceRecord> {
        self.find(&Pattern {
            ws: Some(ws),
            name: Some("built-in"),
            ..Default::default()
        })
    }

    /// Number of records per workspace.
    pub fn counts_by_workspace(&self) -> BTreeMap<String, usize> {
        let map = self.services.lock().expect("registry lock");
        let mut counts = BTreeMap::new();
        for r in map.values() {
            *counts.entry(r.ws.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.services.lock().expect("registry lock").len()
    }

    /// True if no service is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::map;

    fn rec(id: &str, vis: &str, singleton: bool) -> ServiceRecord {
        ServiceRecord::from_value(map([
            ("id", id.into()),
            (
                "config",
                map([("visibility", vis.into()), ("singleton", singleton.into())]),
            ),
        ]))
        .unwrap()
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("*", "x"));
        assert!(glob("a*c", "abbc"));
        assert!(glob("ws-*", "ws-1"));
        assert!(!glob("ws-*", "w"));
        assert!(glob("*:svc", "c:svc"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn insert_replace_and_purge() {
        let r = ServiceTable::default();
        assert!(matches!(
            r.insert(rec("w/c:s", "public", false)).unwrap(),
            Inserted::New
        ));
        assert!(
            matches!(r.insert(rec("w/c:s", "protected", false)).unwrap(), Inserted::Replaced(v) if v.len() == 1)
        );
        r.insert(rec("w/c:built-in", "public", false)).unwrap();
        r.insert(rec("w/d:s", "public", false)).unwrap();
        assert_eq!(
            r.find(&Pattern {
                ws: Some("w"),
                name: Some("s"),
                ..Default::default()
            })
            .len(),
            2
        );
        assert_eq!(r.clients("w").len(), 1);
        assert_eq!(r.remove_client("w", "c").len(), 2);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn prefix_lookups_do_not_mix_similar_ids() {
        let r = ServiceTable::default();
        for id in ["ws-1/c:s", "ws-10/c:s", "ws-1/c2:s", "ws-1/c:s2"] {
            r.insert(rec(id, "public", false)).unwrap();
        }
        let in_ws1 = r.find(&Pattern {
            ws: Some("ws-1"),
            ..Default::default()
        });
        assert_eq!(in_ws1.len(), 3);
        let of_c = r.find(&Pattern {
            ws: Some("ws-1"),
            cid: Some("c"),
            ..Default::default()
        });
        let mut ids: Vec<String> = of_c.iter().map(|x| x.id()).collect();
        ids.sort();
        assert_eq!(ids, vec!["ws-1/c:s", "ws-1/c:s2"]);
        assert_eq!(r.remove_id("ws-1/c:s").len(), 1);
        assert_eq!(r.remove_client("ws-1", "c").len(), 1);
        assert_eq!(r.len(), 2);
        let wild = r.find(&Pattern {
            ws: Some("ws-1*"),
            ..Default::default()
        });
        assert_eq!(wild.len(), 2);
    }

    #[test]
    fn singleton_is_unique_by_name() {
        let r = ServiceTable::default();
        r.insert(rec("w/c:s", "public", true)).unwrap();
        let err = r.insert(rec("w/d:s", "public", false)).unwrap_err();
        assert!(
            matches!(&err, ManagerError::InvalidArgument(m) if m.contains("singleton")),
            "{err}"
        );
        // Re-registering the same id is allowed.
        r.insert(rec("w/c:s", "public", true)).unwrap();
    }
}
