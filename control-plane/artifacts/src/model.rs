//! The artifact row (spec artifacts.md §1.1), its version entries (§1.6) and what
//! clients see of it (§1.2 ids, §1.5 staging in list form, §3 "Return shape").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `_intent` of a staging session that will append a version at commit (§1.5).
pub const INTENT_NEW_VERSION: &str = "new_version";
/// The `_intent` of a staging session that edits the latest version in place (§1.5).
pub const INTENT_EDIT_VERSION: &str = "edit_version";

/// One row of the `artifacts` table (§1.1). JSON columns are [`Value`]s, kept as the
/// client sent them; `versions` has a fixed shape (§1.6) and is typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Internal id: a lowercase hyphenated UUIDv7 made at create ([`new_artifact_id`]).
    /// Clients see it as `_id`.
    pub id: String,
    /// "generic" (the default at create), "collection", "vector-collection",
    /// "application", … or any custom string.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Id of the owning workspace.
    pub workspace: String,
    /// Internal id of the parent collection; `None` for a root artifact.
    pub parent_id: Option<String>,
    /// Human-readable name, unique within the workspace (§1.3). Always set by rhizo.
    pub alias: Option<String>,
    /// User metadata: the published view (also written for drafts so they list).
    pub manifest: Option<Value>,
    /// `None` when committed; the draft (§1.5) while a staging session is open.
    pub staging: Option<Value>,
    /// Sum of the download weights of the files fetched (§1.8).
    pub download_count: f64,
    /// Reads and child listings counted (§1.8).
    pub view_count: f64,
    /// Files of the latest version, recomputed at commit.
    pub file_count: i64,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Effective user id of the creator.
    pub created_by: Option<String>,
    /// Last change of the row, unix seconds; the store sets it on update.
    pub last_modified: i64,
    /// Committed versions, oldest first; empty for a never-committed draft.
    pub versions: Vec<Version>,
    /// Permissions and behaviour switches (§1.4).
    pub config: Option<Value>,
    /// String → string secrets (§1.4); never shown to clients.
    pub secrets: Option<Value>,
}

/// One committed version (§1.6). Its files live under `v{index}/`, the index of the
/// entry in [`Artifact::versions`] (§1.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Name: `v0`, `v1`, … by default, or one the client chose.
    pub version: String,
    /// Commit comment.
    pub comment: Option<String>,
    /// When it was committed, unix seconds (0 if a stored entry lacks it).
    #[serde(default)]
    pub created_at: i64,
}

// === impl Artifact ===

impl Artifact {
    /// A fresh row: a new UUIDv7 id, type "generic", counts zero, `created_at` and
    /// `last_modified` now, no versions, no staging.
    pub fn new(workspace: &str, alias: &str) -> Self {
        let now = now_unix();
        Artifact {
            id: new_artifact_id(),
            kind: Some("generic".into()),
            workspace: workspace.into(),
            parent_id: None,
            alias: Some(alias.into()),
            manifest: None,
            staging: None,
            download_count: 0.0,
            view_count: 0.0,
            file_count: 0,
            created_at: now,
            created_by: None,
            last_modified: now,
            versions: Vec::new(),
            config: None,
            secrets: None,
        }
    }

    /// The public id `"<workspace>/<alias>"` (§1.2); `"<workspace>/<id>"` for a row
    /// without an alias.
    pub fn public_id(&self) -> String {
        format!(
            "{}/{}",
            self.workspace,
            self.alias.as_deref().unwrap_or(&self.id)
        )
    }

    /// Whether a staging session is open.
    pub fn is_staged(&self) -> bool {
        self.staging.as_ref().is_some_and(|s| !s.is_null())
    }

    /// The artifact object clients receive (§1.2, §3 "Return shape"): every column but
    /// `secrets`, with `id` = [`Artifact::public_id`], `_id` = the internal id, `parent_id`
    /// = `parent_public_id` when the caller loaded the parent (otherwise the raw parent
    /// UUID, as upstream's workspace-wide search shows it), and `staging` flattened by
    /// [`client_staging`]. The caller adds `_permissions` and computed config keys.
    pub fn public_view(&self, parent_public_id: Option<&str>) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("id".into(), self.public_id().into());
        out.insert("_id".into(), self.id.clone().into());
        out.insert("type".into(), opt(self.kind.clone()));
        out.insert("workspace".into(), self.workspace.clone().into());
        let parent = parent_public_id
            .map(str::to_owned)
            .or_else(|| self.parent_id.clone());
        out.insert("parent_id".into(), opt(parent));
        out.insert("alias".into(), opt(self.alias.clone()));
        out.insert(
            "manifest".into(),
            self.manifest.clone().unwrap_or(Value::Null),
        );
        out.insert("staging".into(), client_staging(self.staging.as_ref()));
        out.insert("download_count".into(), self.download_count.into());
        out.insert("view_count".into(), self.view_count.into());
        out.insert("file_count".into(), self.file_count.into());
        out.insert("created_at".into(), self.created_at.into());
        out.insert("created_by".into(), opt(self.created_by.clone()));
        out.insert("last_modified".into(), self.last_modified.into());
        // Version entries are plain strings and integers: serialising cannot fail.
        out.insert(
            "versions".into(),
            serde_json::to_value(&self.versions).unwrap_or(Value::Null),
        );
        out.insert("config".into(), self.config.clone().unwrap_or(Value::Null));
        out
    }
}

fn opt(s: Option<String>) -> Value {
    s.map_or(Value::Null, Value::String)
}

/// `staging` as clients see it (§1.5): the file entries in list form, then
/// `{"_intent": …}` if an intent is set; `null` when there is no draft or the list would
/// be empty. Accepts the three stored forms:
///
/// * internal: `{manifest, config, secrets, type, files: [...], _intent}`;
/// * legacy: a list of file entries with an `{_intent}` element (returned as it is);
/// * git: `{_active_branch: b, b: {files, _intent, …}, …}` (the active branch's draft).
///
/// Staged manifest, config and secrets are never part of it.
pub fn client_staging(staging: Option<&Value>) -> Value {
    let draft = match staging {
        None | Some(Value::Null) => return Value::Null,
        Some(Value::Array(entries)) if entries.is_empty() => return Value::Null,
        Some(Value::Array(entries)) => return Value::Array(entries.clone()),
        Some(Value::Object(o)) => active_draft(o),
        Some(_) => return Value::Null,
    };
    let Some(draft) = draft else {
        return Value::Null;
    };
    let mut list: Vec<Value> = match draft.get("files") {
        Some(Value::Array(files)) => files.clone(),
        _ => Vec::new(),
    };
    if let Some(intent) = draft.get("_intent").filter(|i| !i.is_null()) {
        let mut marker = Map::new();
        marker.insert("_intent".into(), intent.clone());
        list.push(Value::Object(marker));
    }
    if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    }
}

/// The `_intent` of an open staging session in any stored form (§1.5), if set.
pub fn staging_intent(staging: Option<&Value>) -> Option<&str> {
    match staging? {
        Value::Array(entries) => entries
            .iter()
            .find_map(|e| e.get("_intent").and_then(Value::as_str)),
        Value::Object(o) => active_draft(o)?.get("_intent").and_then(Value::as_str),
        _ => None,
    }
}

/// The draft dict of the internal form, or of the active branch of the git form.
fn active_draft(o: &Map<String, Value>) -> Option<&Map<String, Value>> {
    match o.get("_active_branch").and_then(Value::as_str) {
        Some(branch) => o.get(branch).and_then(Value::as_object),
        None => Some(o),
    }
}

/// A new internal artifact id: a lowercase hyphenated UUIDv7 (time-ordered, so ids sort
/// by creation).
pub fn new_artifact_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time in unix seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fresh_draft_shows_only_its_intent() {
        let staging = json!({"manifest": {"name": "x"}, "config": {}, "secrets": {"K": "v"},
                             "type": "generic", "files": [], "_intent": "new_version"});
        assert_eq!(
            client_staging(Some(&staging)),
            json!([{"_intent": "new_version"}])
        );
        assert_eq!(staging_intent(Some(&staging)), Some(INTENT_NEW_VERSION));
    }

    #[test]
    fn staging_lists_files_then_intent_and_hides_the_draft_values() {
        let staging = json!({"manifest": {"secret": 1}, "files": [
            {"path": "a.txt", "download_weight": 1.0}, {"path": "b.txt", "_remove": true}],
            "_intent": "edit_version"});
        assert_eq!(
            client_staging(Some(&staging)),
            json!([{"path": "a.txt", "download_weight": 1.0},
                   {"path": "b.txt", "_remove": true},
                   {"_intent": "edit_version"}])
        );
    }

    #[test]
    fn committed_or_empty_staging_is_null() {
        assert_eq!(client_staging(None), Value::Null);
        assert_eq!(client_staging(Some(&Value::Null)), Value::Null);
        assert_eq!(client_staging(Some(&json!({"files": []}))), Value::Null);
        assert_eq!(client_staging(Some(&json!([]))), Value::Null);
        assert_eq!(staging_intent(None), None);
    }

    #[test]
    fn legacy_and_git_forms_flatten_too() {
        let legacy = json!([{"path": "a"}, {"_intent": "edit_version"}]);
        assert_eq!(client_staging(Some(&legacy)), legacy);
        assert_eq!(staging_intent(Some(&legacy)), Some(INTENT_EDIT_VERSION));
        let git = json!({"_active_branch": "main",
                         "main": {"files": [{"path": "x"}], "_intent": "new_version"},
                         "dev": {"files": [{"path": "y"}]}});
        assert_eq!(
            client_staging(Some(&git)),
            json!([{"path": "x"}, {"_intent": "new_version"}])
        );
        assert_eq!(staging_intent(Some(&git)), Some(INTENT_NEW_VERSION));
    }

    #[test]
    fn public_view_rewrites_ids_and_drops_secrets() {
        let mut a = Artifact::new("ws-alice", "my-data");
        a.parent_id = Some(new_artifact_id());
        a.secrets = Some(json!({"S3_SECRET_ACCESS_KEY": "hidden"}));
        a.staging = Some(json!({"files": [], "_intent": "new_version"}));
        a.manifest = Some(json!({"name": "My data"}));
        let view = a.public_view(Some("ws-alice/coll"));
        assert_eq!(view["id"], "ws-alice/my-data");
        assert_eq!(view["_id"], a.id.as_str());
        assert_eq!(view["parent_id"], "ws-alice/coll");
        assert_eq!(view["type"], "generic");
        assert_eq!(view["staging"], json!([{"_intent": "new_version"}]));
        assert_eq!(view["manifest"], json!({"name": "My data"}));
        assert_eq!(view["versions"], json!([]));
        assert!(!view.contains_key("secrets"));
        assert!(!Value::Object(view).to_string().contains("hidden"));
        // Parent not loaded: the raw UUID stays.
        let raw = a.public_view(None);
        assert_eq!(raw["parent_id"], a.parent_id.clone().unwrap().as_str());
    }

    #[test]
    fn rows_round_trip_through_serde_with_the_column_names() {
        let mut a = Artifact::new("ws", "x");
        a.versions = vec![Version {
            version: "v0".into(),
            comment: None,
            created_at: 5,
        }];
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["type"], "generic");
        assert_eq!(serde_json::from_value::<Artifact>(v).unwrap(), a);
        // Stored entries written without a comment or time still load.
        let old: Version = serde_json::from_value(json!({"version": "v3"})).unwrap();
        assert_eq!((old.comment, old.created_at), (None, 0));
    }

    #[test]
    fn ids_are_lowercase_time_ordered_uuid_v7() {
        let a = new_artifact_id();
        let b = new_artifact_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert_eq!(a, a.to_lowercase());
        assert!(a <= b);
    }
}
