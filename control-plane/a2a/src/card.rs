//! The agent card a service's `agent_card` describes, as an A2A 0.3.0 client reads it
//! (workspace-api.md §8.1, A2A line): keys in camelCase (services may write them in
//! snake_case, as the reference's examples do, since its pydantic model accepts both), and
//! the fields the reference fills when missing.

use serde_json::{json, Map, Value};

/// Members whose keys are names chosen by the service (security scheme names, free-form
/// metadata, extension params): their keys are kept as written.
const OPAQUE: [&str; 4] = ["securitySchemes", "security", "metadata", "params"];

/// `card` ready to serve: keys camelCased, and the defaults the reference adds
/// (`capabilities` with streaming, text input/output modes, a `chat` skill, skill `tags`)
/// plus the pydantic model's (`protocolVersion` 0.3.0, `preferredTransport` JSONRPC). The
/// `url` a service gives is kept as given (as the reference does); a card without one gets
/// `default_url`, as do `name`/`description`/`version` the service left out (the reference
/// fails such cards with a 500 instead).
pub fn normalize(card: &Value, service_id: &str, default_url: &str) -> Value {
    let mut card = match camel_keys(card) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut put = |key: &str, v: Value| {
        if card.get(key).is_none_or(Value::is_null) {
            card.insert(key.to_owned(), v);
        }
    };
    put("name", json!(service_id));
    put(
        "description",
        json!(format!("A2A agent for Hypha service {service_id}")),
    );
    put("url", json!(default_url));
    put("version", json!("1.0.0"));
    put("protocolVersion", json!("0.3.0"));
    put("preferredTransport", json!("JSONRPC"));
    put(
        "capabilities",
        json!({"streaming": true, "pushNotifications": false, "stateTransitionHistory": false}),
    );
    put("defaultInputModes", json!(["text"]));
    put("defaultOutputModes", json!(["text"]));
    put(
        "skills",
        json!([{
            "id": "chat",
            "name": "Chat",
            "description": "Chat with the agent",
            "tags": ["chat"],
            "examples": ["hello", "help"],
        }]),
    );
    if let Some(skills) = card.get_mut("skills").and_then(Value::as_array_mut) {
        for s in skills.iter_mut().filter_map(Value::as_object_mut) {
            s.entry("tags").or_insert_with(|| json!(["chat"]));
        }
    }
    Value::Object(card)
}

/// The card a service without `agent_card` gets (the reference's default).
pub fn default_card(service_id: &str, default_url: &str) -> Value {
    normalize(&Value::Object(Map::new()), service_id, default_url)
}

/// `v` with every object key in camelCase, except below the [`OPAQUE`] members.
fn camel_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let k = camel(k);
                    let v = if OPAQUE.contains(&k.as_str()) {
                        v.clone()
                    } else {
                        camel_keys(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel_keys).collect()),
        other => other.clone(),
    }
}

/// `snake_case` → `snakeCase`; other keys unchanged.
fn camel(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for (i, c) in k.chars().enumerate() {
        if c == '_' && i > 0 {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_cards_are_camel_cased_and_completed() {
        let card = json!({
            "protocol_version": "0.3.0",
            "name": "A",
            "capabilities": {"streaming": true, "push_notifications": false},
            "default_input_modes": ["text/plain"],
            "skills": [{"id": "s", "name": "S", "description": "d"}],
            "security_schemes": {"my_scheme": {"type": "http"}},
        });
        let c = normalize(&card, "svc", "http://h/ws/a2a/svc/");
        assert_eq!(c["protocolVersion"], "0.3.0");
        assert_eq!(c["capabilities"]["pushNotifications"], false);
        assert_eq!(c["defaultInputModes"], json!(["text/plain"]));
        assert_eq!(c["defaultOutputModes"], json!(["text"]));
        assert_eq!(c["skills"][0]["tags"], json!(["chat"]));
        assert_eq!(c["url"], "http://h/ws/a2a/svc/");
        assert!(c["securitySchemes"].get("my_scheme").is_some());
    }

    #[test]
    fn a_given_url_is_kept() {
        let c = normalize(&json!({"url": "http://x/"}), "svc", "http://h/");
        assert_eq!(c["url"], "http://x/");
        assert_eq!(c["name"], "svc");
    }
}
