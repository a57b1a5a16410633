//! `list` and `search` (spec artifacts.md §3.7–3.8): the children of a collection, or
//! the artifacts of the caller's workspace, filtered by keywords and filters combined
//! with AND or OR, ordered, and paged.
//!
//! The rows of the scope are read from the store and filtered here (JSON kept as text,
//! as §1.1 allows for a first version): the cost grows with the size of the collection
//! or workspace, not with the page.
//!
//! rhizo differs from the reference where §9.3 asks: a workspace-wide search returns
//! only the rows the caller may list — all of them with read permission on the
//! workspace, otherwise those whose own (or parent's) permissions grant `list`.

use super::args::Args;
use super::ArtifactManager;
use crate::error::{ArtifactError, ArtifactResult};
use crate::model::Artifact;
use crate::permissions::{self, Caller, Operation, Subject};
use rhizo_control_plane::manager::Ctx;
use rhizo_protocol::user::Permission;
use serde_json::{json, Map, Value as Json};
use std::cmp::Ordering;

/// How many rows are read from the store per page while scanning a scope.
const SCAN_PAGE: u64 = 1000;

/// Which rows by staging state (§3.8 `stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageFilter {
    /// Committed rows only (at least one version; the default).
    Committed,
    /// Rows with an open staging session only.
    Staged,
    /// Both.
    All,
}

/// A parsed `list`/`search` query.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub keywords: Vec<String>,
    pub filters: Map<String, Json>,
    pub any: bool,
    pub offset: u64,
    pub limit: u64,
    pub order_by: Option<String>,
    pub pagination: bool,
    pub stage: StageFilter,
}

impl Query {
    /// The query of a call's arguments (`keywords` a list or a comma-separated string,
    /// `filters` a dict or its JSON text).
    pub fn from_args(a: &Args) -> ArtifactResult<Self> {
        let keywords = match a.opt("keywords") {
            None => Vec::new(),
            Some(Json::String(s)) => split_keywords(s),
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .filter(|k| !k.is_empty())
                .collect(),
            Some(_) => {
                return Err(ArtifactError::invalid(
                    "keywords must be a list of strings.",
                ))
            }
        };
        let filters = match a.opt("filters") {
            None => Map::new(),
            Some(Json::Object(m)) => m.clone(),
            Some(Json::String(s)) => match serde_json::from_str(s) {
                Ok(Json::Object(m)) => m,
                _ => return Err(ArtifactError::invalid("filters must be a dictionary.")),
            },
            Some(_) => return Err(ArtifactError::invalid("filters must be a dictionary.")),
        };
        let any = match a
            .str("mode")?
            .unwrap_or("AND")
            .to_ascii_uppercase()
            .as_str()
        {
            "AND" => false,
            "OR" => true,
            other => {
                return Err(ArtifactError::invalid(format!(
                    "Invalid mode '{other}': expected AND or OR."
                )))
            }
        };
        let limit = a.int("limit", 100)?;
        if !(1..=1000).contains(&limit) {
            return Err(ArtifactError::invalid("limit must be between 1 and 1000."));
        }
        let stage = match a.opt("stage") {
            None | Some(Json::Bool(false)) => StageFilter::Committed,
            Some(Json::Bool(true)) => StageFilter::Staged,
            Some(Json::String(s)) if s == "all" => StageFilter::All,
            Some(Json::String(s)) if s == "true" => StageFilter::Staged,
            Some(Json::String(s)) if s == "false" => StageFilter::Committed,
            Some(other) => {
                return Err(ArtifactError::invalid(format!(
                    "Invalid stage {other}: expected true, false or 'all'."
                )))
            }
        };
        Ok(Query {
            keywords,
            filters,
            any,
            offset: a.int("offset", 0)?.max(0) as u64,
            limit: limit as u64,
            order_by: a.str("order_by")?.map(str::to_owned),
            pagination: a.bool("pagination", false)?,
            stage,
        })
    }
}

/// Keywords from a comma-separated string.
pub(crate) fn split_keywords(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ArtifactManager {
    /// `list` (§3.7): `search` with the root artifacts of the workspace when no parent
    /// is given; counts a view of the parent unless `silent`.
    pub(crate) async fn list(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        self.list_in(ctx, &ctx.ws, a).await
    }

    /// [`ArtifactManager::list`] with the root artifacts of workspace `ws` (the HTTP
    /// routes list the URL's workspace; the caller keeps its own current workspace, which
    /// workspace-scoped principals are matched against).
    pub(crate) async fn list_in(&self, ctx: &Ctx, ws: &str, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let mut q = Query::from_args(a)?;
        let parent_id = a.str("parent_id")?;
        if parent_id.is_none() {
            q.filters.insert("parent_id".into(), Json::Null);
        }
        let (out, parent) = self.run_query(&caller, ws, parent_id, q).await?;
        if let (Some(p), false) = (parent, a.bool("silent", false)?) {
            self.store.add_views(&p.id, 1.0).await?;
        }
        Ok(out)
    }

    /// `search` (§3.8).
    pub(crate) async fn search(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        self.search_in(ctx, &ctx.ws, a).await
    }

    /// [`ArtifactManager::search`] over workspace `ws` (see [`ArtifactManager::list_in`]).
    pub(crate) async fn search_in(&self, ctx: &Ctx, ws: &str, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let q = Query::from_args(a)?;
        Ok(self.run_query(&caller, ws, a.str("parent_id")?, q).await?.0)
    }

    /// Runs `q` in the scope of `parent_id` (resolved in `ws`), or of workspace `ws`;
    /// returns the result (a list, or a page) and the parent row.
    pub(crate) async fn run_query(
        &self,
        caller: &Caller,
        ws: &str,
        parent_id: Option<&str>,
        mut q: Query,
    ) -> ArtifactResult<(Json, Option<Artifact>)> {
        let (rows, parent) = match parent_id {
            Some(pid) => {
                let loaded = self.load(pid, ws).await?;
                permissions::authorize(&loaded.subject(), caller, Operation::List)?;
                (
                    self.all_children(&loaded.artifact.id).await?,
                    Some(loaded.artifact),
                )
            }
            None => (self.workspace_rows(caller, ws).await?, None),
        };
        // A `version` filter is the stage switch in another form.
        if let Some(v) = q.filters.remove("version") {
            q.stage = match v.as_str() {
                Some("stage") => StageFilter::Staged,
                Some("latest") | Some("committed") => StageFilter::Committed,
                _ => {
                    return Err(ArtifactError::invalid(format!(
                        "Invalid version filter {v}."
                    )))
                }
            };
        }
        let parent_filter = match q.filters.remove("parent_id") {
            None => None,
            Some(Json::Null) => Some(None),
            Some(Json::String(p)) => Some(Some(self.find(&p, ws).await?.id)),
            Some(other) => {
                return Err(ArtifactError::invalid(format!(
                    "Invalid parent_id filter {other}."
                )))
            }
        };
        for key in q.filters.keys() {
            if !matches!(
                key.as_str(),
                "type"
                    | "alias"
                    | "workspace"
                    | "created_by"
                    | "created_at"
                    | "last_modified"
                    | "download_count"
                    | "view_count"
                    | "manifest"
                    | "config"
            ) {
                return Err(ArtifactError::invalid(format!("Invalid filter key: {key}")));
            }
        }
        let recipients = parent
            .as_ref()
            .and_then(|p| permissions::recipient_filter(p.config.as_ref(), &p.workspace, caller));
        let mut hits: Vec<Artifact> = Vec::new();
        for row in rows {
            let staged = row.is_staged();
            let keep = match q.stage {
                StageFilter::Committed => !row.versions.is_empty(),
                StageFilter::Staged => staged,
                StageFilter::All => true,
            };
            if !keep {
                continue;
            }
            if let Some(p) = &parent_filter {
                if row.parent_id != *p {
                    continue;
                }
            }
            if let Some(r) = &recipients {
                if !r.admits(row.manifest.as_ref()) {
                    continue;
                }
            }
            if matches_query(&row, &q)? {
                hits.push(row);
            }
        }
        sort_rows(&mut hits, q.order_by.as_deref());
        let total = hits.len();
        let page: Vec<Artifact> = hits
            .into_iter()
            .skip(q.offset as usize)
            .take(q.limit as usize)
            .collect();
        let mut items = Vec::with_capacity(page.len());
        for row in &page {
            let mut v = row.public_view(parent.as_ref().map(Artifact::public_id).as_deref());
            v.insert(
                "_permissions".into(),
                Json::Object(permissions::permissions_view(
                    permissions::config_permissions(row.config.as_ref()),
                )),
            );
            items.push(Json::Object(v));
        }
        let out = if q.pagination {
            json!({"items": items, "total": total, "offset": q.offset, "limit": q.limit})
        } else {
            Json::Array(items)
        };
        Ok((out, parent))
    }

    /// The rows of workspace `ws` the caller may list (module docs).
    async fn workspace_rows(&self, caller: &Caller, ws: &str) -> ArtifactResult<Vec<Artifact>> {
        let mut rows = Vec::new();
        loop {
            let page = self
                .store
                .list_workspace(ws, rows.len() as u64, SCAN_PAGE)
                .await?;
            let n = page.len() as u64;
            rows.extend(page);
            if n < SCAN_PAGE {
                break;
            }
        }
        if caller.can(ws, Permission::Read) {
            return Ok(rows);
        }
        let by_id: std::collections::HashMap<String, Option<Json>> = rows
            .iter()
            .map(|r| (r.id.clone(), r.config.clone()))
            .collect();
        Ok(rows
            .into_iter()
            .filter(|r| {
                let parent_config = r
                    .parent_id
                    .as_ref()
                    .map(|p| by_id.get(p).and_then(Option::as_ref).unwrap_or(&Json::Null));
                let subject = Subject {
                    config: r.config.as_ref(),
                    parent_config,
                    workspace: &r.workspace,
                };
                permissions::authorize(&subject, caller, Operation::List).is_ok()
            })
            .collect())
    }
}

/// Whether `row` passes the keywords and filters of `q`, combined with AND or OR.
fn matches_query(row: &Artifact, q: &Query) -> ArtifactResult<bool> {
    let mut results: Vec<bool> = Vec::new();
    if !q.keywords.is_empty() {
        let text = row
            .manifest
            .as_ref()
            .map(|m| m.to_string().to_lowercase())
            .unwrap_or_default();
        for k in &q.keywords {
            results.push(text.contains(&k.to_lowercase()));
        }
    }
    for (key, value) in &q.filters {
        let ok = match key.as_str() {
            "type" => eq_str(row.kind.as_deref(), value),
            "alias" => eq_str(row.alias.as_deref(), value),
            "workspace" => eq_str(Some(&row.workspace), value),
            "created_by" => eq_str(row.created_by.as_deref(), value),
            "created_at" => in_range(row.created_at as f64, value)?,
            "last_modified" => in_range(row.last_modified as f64, value)?,
            "download_count" => in_range(row.download_count, value)?,
            "view_count" => in_range(row.view_count, value)?,
            "manifest" => manifest_matches(row.manifest.as_ref().unwrap_or(&Json::Null), value)?,
            "config" => config_matches(row.config.as_ref(), value)?,
            _ => false,
        };
        results.push(ok);
    }
    Ok(if results.is_empty() {
        true
    } else if q.any {
        results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    })
}

fn eq_str(field: Option<&str>, value: &Json) -> bool {
    match value {
        Json::String(s) => field == Some(s.as_str()),
        Json::Null => field.is_none(),
        _ => false,
    }
}

/// A scalar means ≥ value; `[min, max]` is inclusive, either end may be null.
fn in_range(x: f64, value: &Json) -> ArtifactResult<bool> {
    match value {
        Json::Number(n) => Ok(x >= n.as_f64().unwrap_or(f64::MIN)),
        Json::Array(b) if b.len() == 2 => {
            let lo = b[0].as_f64();
            let hi = b[1].as_f64();
            Ok(lo.is_none_or(|lo| x >= lo) && hi.is_none_or(|hi| x <= hi))
        }
        other => Err(ArtifactError::invalid(format!(
            "Invalid range filter {other}: expected a number or [min, max]."
        ))),
    }
}

/// `{"permissions": {principal: code}}`: each given entry equal.
fn config_matches(config: Option<&Json>, filter: &Json) -> ArtifactResult<bool> {
    let Json::Object(f) = filter else {
        return Err(ArtifactError::invalid(
            "The config filter must be a dictionary.",
        ));
    };
    for (key, value) in f {
        if key != "permissions" {
            return Err(ArtifactError::invalid(format!(
                "Invalid config filter key: {key} (only 'permissions' is supported)"
            )));
        }
        let Json::Object(wanted) = value else {
            return Err(ArtifactError::invalid(
                "The permissions filter must be a dictionary.",
            ));
        };
        let have = config.and_then(|c| c.get("permissions"));
        for (principal, code) in wanted {
            if have.and_then(|h| h.get(principal)) != Some(code) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The manifest filter of §3.8 on `manifest`.
fn manifest_matches(manifest: &Json, filter: &Json) -> ArtifactResult<bool> {
    let Json::Object(f) = filter else {
        return Err(ArtifactError::invalid(
            "The manifest filter must be a dictionary.",
        ));
    };
    for (key, cond) in f {
        let ok = match key.as_str() {
            "$and" | "$or" => {
                let Json::Array(subs) = cond else {
                    return Err(ArtifactError::invalid(format!(
                        "{key} takes a list of filters."
                    )));
                };
                let mut rs = Vec::with_capacity(subs.len());
                for s in subs {
                    rs.push(manifest_matches(manifest, s)?);
                }
                if key == "$and" {
                    rs.iter().all(|r| *r)
                } else {
                    rs.iter().any(|r| *r)
                }
            }
            _ => field_matches(manifest.get(key), cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One manifest key's condition.
fn field_matches(field: Option<&Json>, cond: &Json) -> ArtifactResult<bool> {
    match cond {
        Json::String(s) if s.contains('*') => {
            Ok(field.and_then(Json::as_str).is_some_and(|v| wildcard(s, v)))
        }
        Json::Array(all) => Ok(contains_all(field, all)),
        Json::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
            for (op, arg) in ops {
                let ok = match op.as_str() {
                    "$like" => {
                        let p = arg.as_str().unwrap_or_default();
                        field
                            .and_then(Json::as_str)
                            .is_some_and(|v| wildcard(&p.replace('%', "*"), v))
                    }
                    "$in" => {
                        let Json::Array(any) = arg else {
                            return Err(ArtifactError::invalid("$in takes a list."));
                        };
                        match field {
                            Some(Json::Array(have)) => any.iter().any(|x| have.contains(x)),
                            Some(v) => any.contains(v),
                            None => false,
                        }
                    }
                    "$all" => {
                        let Json::Array(all) = arg else {
                            return Err(ArtifactError::invalid("$all takes a list."));
                        };
                        contains_all(field, all)
                    }
                    other => {
                        return Err(ArtifactError::invalid(format!(
                            "Unsupported filter operator {other}."
                        )))
                    }
                };
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Json::Object(_) => match field {
            Some(sub) => manifest_matches(sub, cond),
            None => Ok(false),
        },
        _ => Ok(field.is_some_and(|v| json_text(v) == json_text(cond))),
    }
}

fn contains_all(field: Option<&Json>, all: &[Json]) -> bool {
    match field {
        Some(Json::Array(have)) => all.iter().all(|x| have.contains(x)),
        _ => false,
    }
}

/// A value as SQL's `->>` would give it: strings without quotes.
fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Case-insensitive match of `text` against `pattern`, where `*` is any run.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Orders rows by `order_by` (§3.8): a field with an optional `<` (ascending) or `>`
/// (descending) suffix; ascending by id by default and for unknown fields.
fn sort_rows(rows: &mut [Artifact], order_by: Option<&str>) {
    let spec = order_by.unwrap_or("id").trim();
    let (field, desc) = if let Some(f) = spec.strip_suffix('>') {
        (f, true)
    } else if let Some(f) = spec.strip_suffix('<') {
        (f, false)
    } else {
        (spec, false)
    };
    let key = |a: &Artifact| -> SortKey {
        match field {
            "view_count" => SortKey::Num(a.view_count),
            "download_count" => SortKey::Num(a.download_count),
            "last_modified" => SortKey::Num(a.last_modified as f64),
            "created_at" => SortKey::Num(a.created_at as f64),
            f if f.starts_with("manifest.") || f.starts_with("config.") => {
                let (col, path) = f.split_once('.').unwrap_or((f, ""));
                let root = if col == "manifest" {
                    a.manifest.as_ref()
                } else {
                    a.config.as_ref()
                };
                let v = path
                    .split('.')
                    .try_fold(root, |cur, k| cur.map(|c| c.get(k)))
                    .flatten();
                match v {
                    Some(Json::Number(n)) => SortKey::Num(n.as_f64().unwrap_or(0.0)),
                    Some(Json::String(s)) => SortKey::Text(s.clone()),
                    Some(other) => SortKey::Text(other.to_string()),
                    None => SortKey::Missing,
                }
            }
            _ => SortKey::Text(a.id.clone()),
        }
    };
    rows.sort_by(|x, y| {
        let o = key(x).cmp(&key(y)).then_with(|| x.id.cmp(&y.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
}

/// Numbers first, then text, then rows without the value.
#[derive(Debug, PartialEq)]
enum SortKey {
    Num(f64),
    Text(String),
    Missing,
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        use SortKey::*;
        match (self, other) {
            (Num(a), Num(b)) => a.total_cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Missing, Missing) => Ordering::Equal,
            (Num(_), _) | (Text(_), Missing) => Ordering::Less,
            _ => Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_case_insensitively() {
        assert!(wildcard("data*", "Dataset-1"));
        assert!(wildcard("*set*", "my-dataset"));
        assert!(!wildcard("data*", "my-data"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
    }

    #[test]
    fn manifest_filters_follow_the_operators() {
        let m = json!({"name": "Cells", "tags": ["a", "b"], "n": 3, "sub": {"k": "v"}});
        let ok = |f: Json| manifest_matches(&m, &f).unwrap();
        assert!(ok(json!({"name": "Cells"})));
        assert!(!ok(json!({"name": "cells"})));
        assert!(ok(json!({"name": "cel*"})));
        assert!(ok(json!({"tags": ["a"]})));
        assert!(!ok(json!({"tags": ["a", "z"]})));
        assert!(ok(json!({"tags": {"$in": ["z", "b"]}})));
        assert!(ok(json!({"tags": {"$all": ["a", "b"]}})));
        assert!(ok(json!({"name": {"$like": "C%"}})));
        assert!(ok(json!({"n": 3})));
        assert!(ok(json!({"sub": {"k": "v"}})));
        assert!(ok(json!({"$or": [{"name": "x"}, {"n": 3}]})));
        assert!(!ok(json!({"$and": [{"name": "x"}, {"n": 3}]})));
        assert!(manifest_matches(&m, &json!({"tags": {"$nope": 1}})).is_err());
    }

    #[test]
    fn ranges_and_order() {
        assert!(in_range(5.0, &json!(3)).unwrap());
        assert!(!in_range(2.0, &json!(3)).unwrap());
        assert!(in_range(5.0, &json!([null, 5])).unwrap());
        assert!(!in_range(6.0, &json!([1, 5])).unwrap());
        let mut rows: Vec<Artifact> = (0..3)
            .map(|i| {
                let mut a = Artifact::new("ws", &format!("a{i}"));
                a.view_count = f64::from(i);
                a.manifest = Some(json!({"rank": 2 - i}));
                a
            })
            .collect();
        sort_rows(&mut rows, Some("view_count>"));
        assert_eq!(rows[0].alias.as_deref(), Some("a2"));
        sort_rows(&mut rows, Some("manifest.rank<"));
        assert_eq!(rows[0].alias.as_deref(), Some("a2"));
        sort_rows(&mut rows, None);
        assert!(rows[0].id < rows[1].id && rows[1].id < rows[2].id);
    }
}
