//! The shapes MCP results take (workspace-api.md §8.1): what a Hypha function returned, as
//! the content blocks of a tool result, the messages of a prompt, or the contents of a
//! resource.

use serde_json::{json, Value as Json};

/// A call result as text: strings as they are, anything else as compact JSON.
pub fn text_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A tool result as MCP content blocks: a list becomes one block per item (items that
/// already are content blocks, `{type: "text"|"image"|"audio"|"resource"|"resource_link",
/// …}`, pass through), anything else one text block.
pub fn content_blocks(result: &Json) -> Vec<Json> {
    let block = |v: &Json| {
        let kind = v.get("type").and_then(Json::as_str);
        if matches!(
            kind,
            Some("text" | "image" | "audio" | "resource" | "resource_link")
        ) && (kind != Some("text") || v.get("text").is_some_and(Json::is_string))
        {
            v.clone()
        } else {
            json!({"type": "text", "text": text_of(v)})
        }
    };
    match result {
        Json::Array(items) => items.iter().map(block).collect(),
        other => vec![json!({"type": "text", "text": text_of(other)})],
    }
}

/// A prompt function's result as an MCP `GetPromptResult`: a map with `messages` keeps its
/// messages (contents that are not text blocks become text), anything else is one user
/// message with its text.
pub fn prompt_result(name: &str, result: &Json) -> Json {
    let Some(messages) = result.get("messages").and_then(Json::as_array) else {
        return json!({
            "description": format!("Prompt for {name}"),
            "messages": [{"role": "user", "content": {"type": "text", "text": text_of(result)}}],
        });
    };
    let messages: Vec<Json> = messages
        .iter()
        .map(|m| {
            let role = m
                .get("role")
                .and_then(Json::as_str)
                .filter(|r| *r == "user" || *r == "assistant")
                .unwrap_or("user");
            let content = match m.get("content") {
                Some(c @ Json::Object(_))
                    if c.get("type").and_then(Json::as_str) == Some("text")
                        && c.get("text").is_some_and(Json::is_string) =>
                {
                    c.clone()
                }
                Some(c) => json!({"type": "text", "text": text_of(c)}),
                None => json!({"type": "text", "text": ""}),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut out = json!({"messages": messages});
    if let Some(d) = result.get("description").and_then(Json::as_str) {
        out["description"] = d.into();
    }
    out
}

/// A resource function's result as MCP `contents` for `uri`: `{contents: [...]}` keeps its
/// text or blob contents (defaults: this uri, `text/plain`), a string is one text content,
/// anything else its JSON text.
pub fn resource_contents(uri: &str, mime_type: &str, result: &Json) -> Vec<Json> {
    let one = |text: String| json!({"uri": uri, "mimeType": mime_type, "text": text});
    let listed = match result {
        Json::Object(_) => result.get("contents").and_then(Json::as_array),
        Json::Array(items) => items
            .first()
            .and_then(|f| f.get("contents"))
            .and_then(Json::as_array),
        _ => None,
    };
    let Some(contents) = listed else {
        return vec![one(text_of(result))];
    };
    contents
        .iter()
        .map(|c| {
            let uri = c.get("uri").and_then(Json::as_str).unwrap_or(uri);
            let mime = c
                .get("mimeType")
                .and_then(Json::as_str)
                .unwrap_or(mime_type);
            match (c.get("text"), c.get("blob")) {
                (_, Some(Json::String(b))) => json!({"uri": uri, "mimeType": mime, "blob": b}),
                (Some(t), _) => json!({"uri": uri, "mimeType": mime, "text": text_of(t)}),
                _ => json!({"uri": uri, "mimeType": mime, "text": text_of(c)}),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_content_blocks() {
        assert_eq!(
            content_blocks(&json!(3)),
            vec![json!({"type": "text", "text": "3"})]
        );
        assert_eq!(
            content_blocks(&json!([{"type": "text", "text": "a"}, {"x": 1}])),
            vec![
                json!({"type": "text", "text": "a"}),
                json!({"type": "text", "text": "{\"x\":1}"})
            ]
        );
        let p = prompt_result("g", &json!("hi"));
        assert_eq!(p["messages"][0]["content"]["text"], "hi");
        let p = prompt_result(
            "g",
            &json!({"messages": [{"role": "assistant", "content": "yo"}]}),
        );
        assert_eq!(p["messages"][0]["role"], "assistant");
        assert_eq!(p["messages"][0]["content"]["type"], "text");
        let c = resource_contents("resource://x", "text/plain", &json!("body"));
        assert_eq!(c[0]["text"], "body");
        assert_eq!(c[0]["uri"], "resource://x");
    }
}
