//! A session's logs and the `get_logs` page over them (apps-workers.md §3.2).
//!
//! Logs are kept per type (`stdout`, `stderr`, `info`, `error`, …) in the order the types
//! first appeared, each type's entries in insertion order. A page is the concatenation of
//! the types' entries, filtered by `type` first, then sliced: `items =
//! filtered[offset:offset+limit]` (to the end without a limit); `total` counts the filtered
//! entries before slicing.

use rhizo_protocol::value::map;
use rmpv::Value;

/// The logs of one session.
#[derive(Debug, Default, Clone)]
pub(crate) struct Logs {
    /// (type, entries), types in order of first appearance.
    kinds: Vec<(String, Vec<String>)>,
}

impl Logs {
    /// Appends `content` to the entries of `kind`.
    pub(crate) fn push(&mut self, kind: &str, content: impl Into<String>) {
        self.entries_mut(kind).push(content.into());
    }

    /// Appends `content` to `kind`, keeping only the last `cap` entries of that type.
    pub(crate) fn push_capped(&mut self, kind: &str, content: impl Into<String>, cap: usize) {
        let entries = self.entries_mut(kind);
        entries.push(content.into());
        if entries.len() > cap {
            let excess = entries.len() - cap;
            entries.drain(..excess);
        }
    }

    fn entries_mut(&mut self, kind: &str) -> &mut Vec<String> {
        let i = match self.kinds.iter().position(|(k, _)| k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push((kind.to_owned(), Vec::new()));
                self.kinds.len() - 1
            }
        };
        &mut self.kinds[i].1
    }

    /// The entries of `kind` (empty if none).
    #[cfg(test)]
    pub(crate) fn entries(&self, kind: &str) -> &[String] {
        self.kinds
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, e)| e.as_slice())
            .unwrap_or_default()
    }

    /// The `get_logs` page: `{items: [{type, content}], total, offset, limit}` (`limit` nil
    /// when not given).
    pub(crate) fn page(&self, kind: Option<&str>, offset: usize, limit: Option<usize>) -> Value {
        let filtered: Vec<(&str, &str)> = self
            .kinds
            .iter()
            .filter(|(k, _)| kind.is_none_or(|want| want == k))
            .flat_map(|(k, entries)| entries.iter().map(move |e| (k.as_str(), e.as_str())))
            .collect();
        let total = filtered.len();
        let end = limit.map_or(total, |l| offset.saturating_add(l).min(total));
        let items = filtered
            .get(offset.min(total)..end.max(offset.min(total)))
            .unwrap_or_default()
            .iter()
            .map(|(k, c)| map([("type", (*k).into()), ("content", (*c).into())]))
            .collect();
        map([
            ("items", Value::Array(items)),
            ("total", total.into()),
            ("offset", offset.into()),
            ("limit", limit.map_or(Value::Nil, Value::from)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::to_json;
    use serde_json::json;

    fn logs() -> Logs {
        let mut l = Logs::default();
        l.push("stdout", "a");
        l.push("info", "i1");
        l.push("stdout", "b");
        l.push("stderr", "e");
        l.push("stdout", "c");
        l
    }

    fn contents(v: &Value) -> Vec<String> {
        to_json(v)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}:{}",
                    i["type"].as_str().unwrap(),
                    i["content"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn types_in_first_appearance_order_entries_in_insertion_order() {
        let p = logs().page(None, 0, None);
        assert_eq!(
            contents(&p),
            ["stdout:a", "stdout:b", "stdout:c", "info:i1", "stderr:e"]
        );
        let j = to_json(&p);
        assert_eq!(j["total"], json!(5));
        assert_eq!(j["offset"], json!(0));
        assert_eq!(j["limit"], json!(null));
    }

    #[test]
    fn filter_first_then_slice() {
        let l = logs();
        let p = l.page(Some("stdout"), 1, Some(1));
        assert_eq!(contents(&p), ["stdout:b"]);
        assert_eq!(to_json(&p)["total"], json!(3));
        assert_eq!(
            contents(&l.page(None, 3, Some(10))),
            ["info:i1", "stderr:e"]
        );
        assert!(contents(&l.page(None, 9, Some(2))).is_empty());
        assert!(contents(&l.page(Some("nope"), 0, None)).is_empty());
        assert_eq!(contents(&l.page(None, 4, Some(0))), Vec::<String>::new());
    }

    #[test]
    fn capped_types_keep_their_last_entries() {
        let mut l = Logs::default();
        for i in 0..5 {
            l.push_capped("stdout", i.to_string(), 3);
        }
        assert_eq!(l.entries("stdout"), ["2", "3", "4"]);
    }
}
