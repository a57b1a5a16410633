//! `search_services` over the registry (workspace-api.md §5.1). The reference ranks by
//! vector similarity of a text embedding; rhizo has no vector index, so a text `query` is
//! matched word by word (case-insensitive substrings) over name, description, docs and id,
//! and ranked by how many of its words a service matches. `filters`, `order_by`,
//! `return_fields`, `offset`/`limit`, `pagination` and `include_unlisted` follow the
//! reference's parameters.

use super::{Pattern, Registry, ServiceRecord, Visibility};
use crate::manager::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, get, get_str, map};
use rmpv::Value;
use std::cmp::Ordering;

/// The arguments of `search_services`.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Text to match; `None` (or a precomputed vector, which rhizo cannot use) lists every
    /// service the filters admit.
    pub text: Option<String>,
    /// Field → wanted value ([`matches_filter`]).
    pub filters: Vec<(String, Value)>,
    /// At most this many items.
    pub limit: usize,
    /// Items skipped first.
    pub offset: usize,
    /// Only these keys of each item (`None`: the whole record).
    pub return_fields: Option<Vec<String>>,
    /// Sort field and whether descending ([`parse_order`]); `None`: relevance with a text
    /// query, else the service id.
    pub order_by: Option<(String, bool)>,
    /// Answer `{items, total, offset, limit}` instead of the items alone.
    pub pagination: bool,
    /// Include unlisted services of the caller's workspace.
    pub include_unlisted: bool,
}

/// Parses `order_by`: a field name, ascending as the reference sorts, or descending with
/// a `-` prefix or a ` desc` suffix (rhizo's extension; ` asc` is accepted too).
pub fn parse_order(order: &str) -> Option<(String, bool)> {
    let order = order.trim();
    if order.is_empty() {
        return None;
    }
    if let Some(f) = order.strip_prefix('-') {
        return Some((f.trim().to_owned(), true));
    }
    let lower = order.to_ascii_lowercase();
    if let Some(f) = lower.strip_suffix(" desc") {
        return Some((order[..f.len()].trim().to_owned(), true));
    }
    if let Some(f) = lower.strip_suffix(" asc") {
        return Some((order[..f.len()].trim().to_owned(), false));
    }
    Some((order.to_owned(), false))
}

/// The reference's index fields that hold free text (matched as phrases there).
const TEXT_FIELDS: [&str; 5] = [
    "name",
    "description",
    "docs",
    "service_schema",
    "created_by",
];

/// The value of `field` for `r`: the reference's index fields (`id`, `name`, `type`,
/// `description`, `docs`, `app_id`, `service_schema`, `visibility`, `require_context`,
/// `workspace`, `flags`, `singleton`, `created_by`; the last six come from `config`), else
/// a dotted path into the record (`config.visibility`, `config.foo.bar`).
fn field_value(r: &ServiceRecord, field: &str) -> Option<Value> {
    let rec = &r.record;
    let config = get(rec, "config");
    match field {
        "id" => Some(r.id().into()),
        "type" => Some(r.kind.as_str().into()),
        "app_id" => Some(r.app_id.as_str().into()),
        "workspace" => Some(r.ws.as_str().into()),
        "visibility" => Some(r.visibility.as_str().into()),
        "singleton" => Some(r.singleton.into()),
        "require_context" | "flags" | "created_by" => config.and_then(|c| get(c, field)).cloned(),
        _ => {
            let mut v = rec;
            for part in field.split('.') {
                v = get(v, part)?;
            }
            Some(v.clone())
        }
    }
}

/// A value as text to match on (maps and lists as JSON).
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().unwrap_or_default().to_owned(),
        Value::Nil => String::new(),
        other => value::to_json(other).to_string(),
    }
}

/// A number, if `v` is one.
fn as_num(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_i64().map(|i| i as f64))
}

/// Whether a stored scalar matches a wanted string: case-insensitively equal, or, for a
/// wanted value ending in `*`, starting with the rest (tag semantics); text fields match a
/// substring, or a word prefix for `word*`.
fn matches_str(have: &str, want: &str, text: bool) -> bool {
    let have = have.to_lowercase();
    let want = want.to_lowercase();
    match (want.strip_suffix('*'), text) {
        (Some(prefix), true) => have
            .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-')
            .any(|w| w.starts_with(prefix)),
        (Some(prefix), false) => super::glob(&format!("{prefix}*"), &have),
        (None, true) => have.contains(&want),
        (None, false) => have == want,
    }
}

/// Whether `r` passes the filter `field` = `want`: a string as in [`matches_str`] (any
/// element of a list field, e.g. `flags`, may match), a `[min, max]` pair as an inclusive
/// numeric range, anything else by equality. A field the service lacks never matches.
pub(super) fn matches_filter(r: &ServiceRecord, field: &str, want: &Value) -> bool {
    let Some(have) = field_value(r, field) else {
        return false;
    };
    let text = TEXT_FIELDS.contains(&field);
    match want {
        Value::String(w) => {
            let w = w.as_str().unwrap_or_default();
            match &have {
                Value::Array(items) => items.iter().any(|i| matches_str(&as_text(i), w, text)),
                Value::String(_) if field == "flags" => as_text(&have)
                    .split(',')
                    .any(|f| matches_str(f.trim(), w, false)),
                Value::Map(_) => matches_str(&as_text(&have), w, true),
                other => matches_str(&as_text(other), w, text),
            }
        }
        Value::Array(range) if range.len() == 2 && range.iter().all(|v| as_num(v).is_some()) => {
            let (lo, hi) = (as_num(&range[0]), as_num(&range[1]));
            as_num(&have).is_some_and(|h| Some(h) >= lo && Some(h) <= hi)
        }
        Value::Boolean(b) => have.as_bool() == Some(*b) || as_text(&have) == b.to_string(),
        other => have == *other || as_num(&have).is_some_and(|h| Some(h) == as_num(other)),
    }
}

/// How many of `words` (lower-case) appear in the searchable text of `r`: name,
/// description, docs and id.
fn relevance(r: &ServiceRecord, words: &[String]) -> usize {
    let rec = &r.record;
    let text = [
        get_str(rec, "name"),
        get_str(rec, "description"),
        get_str(rec, "docs"),
        Some(r.id().as_str()),
    ]
    .iter()
    .flatten()
    .map(|s| s.to_lowercase())
    .collect::<Vec<_>>()
    .join(" ");
    words.iter().filter(|w| text.contains(w.as_str())).count()
}

/// Orders two values of a sort field: missing ones last, numbers numerically, booleans
/// false first, the rest as text.
fn compare(a: &Option<Value>, b: &Option<Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => match (as_num(x), as_num(y), x.as_bool(), y.as_bool()) {
            (Some(m), Some(n), _, _) => m.partial_cmp(&n).unwrap_or(Ordering::Equal),
            (_, _, Some(p), Some(q)) => p.cmp(&q),
            _ => as_text(x).cmp(&as_text(y)),
        },
    }
}

/// Only `fields` of `record`.
fn project(record: &Value, fields: &[String]) -> Value {
    Value::Map(
        fields
            .iter()
            .filter_map(|f| get(record, f).map(|v| (Value::from(f.as_str()), v.clone())))
            .collect(),
    )
}

// === impl Registry (search) ===

impl Registry {
    /// `search_services`: the services the caller may find — public ones anywhere, and
    /// those of its own workspace when it may read it (unlisted ones only with
    /// `include_unlisted`; `built-in` ones never) — that pass every filter and, with a
    /// text query, match at least one of its words; sorted, then `offset` skipped and at
    /// most `limit` kept. Items are the stored records (or only `return_fields` of them);
    /// with `pagination`, `{items, total, offset, limit}` where `total` counts every hit.
    pub fn search(&self, ctx: &Ctx, s: &Search) -> Value {
        let words: Vec<String> = s
            .text
            .as_deref()
            .unwrap_or_default()
            .to_lowercase()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let own = |r: &ServiceRecord| r.ws == ctx.ws && ctx.user.can(&r.ws, Permission::Read);
        let mut hits: Vec<(usize, ServiceRecord)> = self
            .find_all(&Pattern::default())
            .into_iter()
            .filter(|r| !r.is_built_in())
            .filter(|r| match r.visibility {
                Visibility::Public => true,
                Visibility::Unlisted => s.include_unlisted && own(r),
                Visibility::Protected => own(r),
            })
            .filter(|r| s.filters.iter().all(|(f, v)| matches_filter(r, f, v)))
            .map(|r| (relevance(&r, &words), r))
            .filter(|(score, _)| words.is_empty() || *score > 0)
            .collect();
        match &s.order_by {
            Some((f, desc)) if f != "score" => {
                hits.sort_by(|(_, a), (_, b)| {
                    let o = compare(&field_value(a, f), &field_value(b, f));
                    let o = if *desc { o.reverse() } else { o };
                    o.then_with(|| a.id().cmp(&b.id()))
                });
            }
            // Relevance: best first (the reference sorts its distance ascending).
            Some((_, desc)) => hits.sort_by(|(x, a), (y, b)| {
                let o = y.cmp(x);
                let o = if *desc { o.reverse() } else { o };
                o.then_with(|| a.id().cmp(&b.id()))
            }),
            None if !words.is_empty() => {
                hits.sort_by(|(x, a), (y, b)| y.cmp(x).then_with(|| a.id().cmp(&b.id())))
            }
            None => hits.sort_by_key(|(_, r)| r.id()),
        }
        let total = hits.len();
        let items: Vec<Value> = hits
            .into_iter()
            .skip(s.offset)
            .take(s.limit)
            .map(|(_, r)| match &s.return_fields {
                Some(fields) => project(&r.record, fields),
                None => r.record,
            })
            .collect();
        if s.pagination {
            map([
                ("items", Value::Array(items)),
                ("total", total.into()),
                ("offset", s.offset.into()),
                ("limit", s.limit.into()),
            ])
        } else {
            Value::Array(items)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: &str, config: Value) -> ServiceRecord {
        ServiceRecord::from_value(map([
            ("id", id.into()),
            ("type", kind.into()),
            ("name", "Zebra Finder".into()),
            ("config", config),
        ]))
        .unwrap()
    }

    #[test]
    fn order_by_accepts_a_field_and_both_descending_forms() {
        assert_eq!(parse_order("name"), Some(("name".into(), false)));
        assert_eq!(parse_order("-name"), Some(("name".into(), true)));
        assert_eq!(parse_order("name DESC"), Some(("name".into(), true)));
        assert_eq!(parse_order("name asc"), Some(("name".into(), false)));
        assert_eq!(parse_order(" "), None);
    }

    #[test]
    fn filters_match_tags_text_paths_lists_and_ranges() {
        let r = record(
            "w/c:zeb",
            "my-type",
            map([
                ("visibility", "public".into()),
                ("flags", Value::Array(vec!["single-instance".into()])),
                ("weight", 7.into()),
            ]),
        );
        assert!(matches_filter(&r, "type", &"my-type".into()));
        assert!(matches_filter(&r, "type", &"MY-*".into()));
        assert!(!matches_filter(&r, "type", &"my".into()));
        assert!(matches_filter(&r, "name", &"finder".into()));
        assert!(matches_filter(&r, "name", &"fin*".into()));
        assert!(matches_filter(&r, "visibility", &"public".into()));
        assert!(matches_filter(&r, "config.visibility", &"public".into()));
        assert!(matches_filter(&r, "flags", &"single-instance".into()));
        assert!(matches_filter(&r, "workspace", &"w".into()));
        assert!(matches_filter(
            &r,
            "config.weight",
            &Value::Array(vec![5.into(), 10.into()])
        ));
        assert!(matches_filter(&r, "config.weight", &7.into()));
        assert!(!matches_filter(&r, "config.missing", &"x".into()));
        assert!(matches_filter(&r, "singleton", &false.into()));
    }

    #[test]
    fn missing_sort_values_go_last() {
        assert_eq!(compare(&Some(1.into()), &None), Ordering::Less);
        assert_eq!(compare(&Some(2.into()), &Some(10.into())), Ordering::Less);
        assert_eq!(
            compare(&Some("b".into()), &Some("a".into())),
            Ordering::Greater
        );
    }
}
