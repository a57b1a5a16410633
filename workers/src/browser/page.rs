//! What the browser worker does to one page over CDP, free of session bookkeeping: the
//! manifest's cookies and storage set before load ([`preload`]), evaluating a script
//! ([`evaluate`]), console arguments as text, and token redaction for the logs.

use crate::error::{WorkerError, WorkerResult};
use chromiumoxide::cdp::js_protocol::runtime::{EvaluateParams, RemoteObject};
use chromiumoxide::Page;
use rhizo_protocol::value;
use rmpv::Value;

/// How a failed CDP command of `evaluate` is worded (to tell it from a script's own error).
pub(super) const CDP_FAILED: &str = "evaluating the script failed";

/// The manifest's `cookies` (a list of cookie objects, or name → value) for the app's URL,
/// and its `local_storage` / `session_storage` (name → value, non-strings as JSON), set
/// before the page loads.
pub(super) async fn preload(page: &Page, manifest: &Value, url: &str) -> WorkerResult<()> {
    use chromiumoxide::cdp::browser_protocol::network::{CookieParam, SetCookiesParams};
    use chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams;
    let err = |e: chromiumoxide::error::CdpError| {
        WorkerError::Io(format!("setting the app's cookies or storage failed: {e}"))
    };
    let cookies = value::to_json(value::get(manifest, "cookies").unwrap_or(&Value::Nil));
    let pairs: Vec<serde_json::Value> = match cookies {
        serde_json::Value::Array(list) => list,
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(name, value)| {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                serde_json::json!({"name": name, "value": value})
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut params = Vec::new();
    for c in pairs {
        let mut c: CookieParam = serde_json::from_value(c).map_err(|e| {
            WorkerError::Invalid(format!(
                "manifest cookies: each needs a name and a value ({e})"
            ))
        })?;
        if c.url.is_none() && c.domain.is_none() {
            c.url = Some(url.to_owned());
        }
        params.push(c);
    }
    if !params.is_empty() {
        page.execute(SetCookiesParams::new(params))
            .await
            .map_err(err)?;
    }
    let mut script = String::new();
    for (key, store) in [
        ("local_storage", "localStorage"),
        ("session_storage", "sessionStorage"),
    ] {
        let v = value::to_json(value::get(manifest, key).unwrap_or(&Value::Nil));
        if v.as_object().is_some_and(|m| !m.is_empty()) {
            script.push_str(&format!(
                "try {{ for (const [k, v] of Object.entries({v})) {store}.setItem(k, typeof v === \"string\" ? v : JSON.stringify(v)); }} catch (_) {{}}\n"
            ));
        }
    }
    if !script.is_empty() {
        page.execute(AddScriptToEvaluateOnNewDocumentParams::new(script))
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Evaluates `script` in the page (a promise is awaited) and returns its value as JSON.
///
/// Errors: the script throws (its message), or the value cannot be returned as data.
pub(super) async fn evaluate(page: &Page, script: &str) -> WorkerResult<serde_json::Value> {
    let params = EvaluateParams::builder()
        .expression(script)
        .await_promise(true)
        .return_by_value(true)
        .user_gesture(true)
        .build()
        .map_err(WorkerError::Io)?;
    let r = page
        .execute(params)
        .await
        .map_err(|e| WorkerError::Io(format!("{CDP_FAILED}: {e}")))?;
    if let Some(d) = &r.result.exception_details {
        let text = d
            .exception
            .as_ref()
            .and_then(|e| e.description.clone())
            .unwrap_or_else(|| d.text.clone());
        return Err(WorkerError::Io(format!("the script threw: {text}")));
    }
    Ok(r.result
        .result
        .value
        .clone()
        .unwrap_or(serde_json::Value::Null))
}

/// A console argument as text: strings as they are, other values as JSON or their
/// description.
pub(super) fn remote_text(o: &RemoteObject) -> String {
    match &o.value {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => o
            .description
            .clone()
            .or_else(|| o.unserializable_value.as_ref().map(|u| u.inner().clone()))
            .unwrap_or_default(),
    }
}

/// `url` with its `token=` query value hidden (it is a credential).
pub(super) fn redact(url: &str) -> String {
    match url.find("token=") {
        Some(i) => {
            let end = url[i..].find('&').map_or(url.len(), |e| i + e);
            format!("{}token=…{}", &url[..i], &url[end..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            redact("http://h/x?a=1&token=secret&b=2"),
            "http://h/x?a=1&token=…&b=2"
        );
        assert_eq!(redact("http://h/x?token=s"), "http://h/x?token=…");
    }
}
