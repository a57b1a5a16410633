//! hypha-rpc value encoding on `rmpv::Value` (protocol.md §3.1–3.2).
//!
//! The manager is an RPC peer, so it builds encoded methods (`_rtype: "method"`) and error
//! maps (`_rtype: "error"`), and reads maps sent by clients. These helpers keep that code
//! short; they do not allocate more than the values they return.

use rmpv::Value;

/// Looks up `key` in a msgpack map with string keys; `None` if `map` is not a map.
pub fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// `get` then `as_str`, treating nil and non-strings as absent.
pub fn get_str<'a>(map: &'a Value, key: &str) -> Option<&'a str> {
    get(map, key)?.as_str()
}

/// The strings in the array at `key` of a map (other items skipped); empty when absent.
pub fn get_strs(map: &Value, key: &str) -> Vec<String> {
    get(map, key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `key` in a msgpack map (replacing an existing entry); turns nil into an empty map.
pub fn set(map: &mut Value, key: &str, value: Value) {
    if map.is_nil() {
        *map = Value::Map(Vec::new());
    }
    if let Value::Map(entries) = map {
        if let Some(slot) = entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            slot.1 = value;
        } else {
            entries.push((Value::from(key), value));
        }
    }
}

/// Removes `key` from a msgpack map; returns the old value.
pub fn remove(map: &mut Value, key: &str) -> Option<Value> {
    if let Value::Map(entries) = map {
        let i = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
        return Some(entries.remove(i).1);
    }
    None
}

/// Builds a map from string keys.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// The reply form a callee chooses for an encoded method (`_rpromise`, §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RPromise {
    /// `"*"`: the caller sends a compact promise with `t`.
    Compact,
    /// `true`: the caller sends an explicit promise map.
    Explicit,
    /// `false`: fire and forget.
    None,
}

/// An encoded remote method (§3.1): `{_rtype:"method", _rtarget, _rmethod, _rpromise, …}`.
///
/// `target` is the owner's address (`"<ws>/<cid>"` or `"*/<manager_id>"`), `method` the path
/// in the owner's object store, `server` the owner's `public_base_url` (`_rserver`).
pub fn method(
    target: &str,
    method: &str,
    promise: RPromise,
    name: &str,
    doc: &str,
    server: &str,
) -> Value {
    method_with_schema(target, method, promise, name, doc, None, server)
}

/// Like [`method`], with the method's `_rschema` (`{name, description, parameters}`, the
/// shape of hypha-rpc's `schema_function`); `None` gives the schema [`method`] sends (no
/// parameters).
pub fn method_with_schema(
    target: &str,
    method: &str,
    promise: RPromise,
    name: &str,
    doc: &str,
    schema: Option<&Value>,
    server: &str,
) -> Value {
    let schema = match schema {
        Some(s) => s.clone(),
        None => map([
            ("name", name.into()),
            ("description", doc.into()),
            (
                "parameters",
                map([
                    ("type", "object".into()),
                    ("properties", Value::Map(vec![])),
                ]),
            ),
        ]),
    };
    let promise = match promise {
        RPromise::Compact => Value::from("*"),
        RPromise::Explicit => Value::Boolean(true),
        RPromise::None => Value::Boolean(false),
    };
    map([
        ("_rtype", "method".into()),
        ("_rtarget", target.into()),
        ("_rmethod", method.into()),
        ("_rpromise", promise),
        ("_rname", name.into()),
        ("_rdoc", doc.into()),
        ("_rschema", schema),
        ("_rasync", Value::Boolean(true)),
        ("_rserver", server.into()),
    ])
}

/// An error value (§3.4): `{_rtype:"error", _rvalue:<message>, _rtrace:""}`.
///
/// Python callers need exactly this shape with a string `_rvalue`; anything else makes their
/// call hang.
pub fn error(message: &str) -> Value {
    map([
        ("_rtype", "error".into()),
        ("_rvalue", message.into()),
        ("_rtrace", "".into()),
    ])
}

/// Converts JSON to msgpack: numbers keep integer-ness, everything else maps one to one.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// Converts msgpack to JSON: binary becomes a list of numbers, non-string keys are
/// stringified, non-finite floats become null, extension types become null.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => {
            if let Some(x) = i.as_i64() {
                J::from(x)
            } else {
                J::from(i.as_u64().unwrap_or(0))
            }
        }
        Value::F32(f) => serde_json::Number::from_f64(*f as f64)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::F64(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(s.as_str().unwrap_or_default().to_owned()),
        Value::Binary(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k.as_str() {
                        Some(s) => s.to_owned(),
                        None => k.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(_, _) => J::Null,
    }
}

/// Encodes a value to msgpack bytes.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": "d"}});
        assert_eq!(to_json(&from_json(&j)), j);
    }

    #[test]
    fn set_get_remove() {
        let mut m = Value::Nil;
        set(&mut m, "a", 1.into());
        set(&mut m, "a", 2.into());
        assert_eq!(get(&m, "a").and_then(Value::as_i64), Some(2));
        assert_eq!(remove(&mut m, "a").and_then(|v| v.as_i64()), Some(2));
        assert!(get(&m, "a").is_none());
    }

    #[test]
    fn error_shape_is_what_python_needs() {
        let e = error("boom");
        assert_eq!(get_str(&e, "_rtype"), Some("error"));
        assert_eq!(get_str(&e, "_rvalue"), Some("boom"));
    }
}
