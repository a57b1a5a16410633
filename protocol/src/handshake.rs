//! JSON text messages of the WebSocket handshake and control channel
//! (protocol.md §1.2–1.5, §6.1–6.2).
//!
//! Every text frame the server sends is a JSON object (§1.6): a non-object text frame kills
//! the Python client's receive loop.

use serde::Deserialize;
use serde_json::{json, Value};

/// The client's first frame. Missing keys and JSON `null` are treated alike (§1.2).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AuthRequest {
    /// Requested client id; must be non-empty and contain no `/`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Requested workspace; `None` lets the server choose.
    #[serde(default)]
    pub workspace: Option<String>,
    /// A JWT issued by the server or the root token.
    #[serde(default)]
    pub token: Option<String>,
    /// A token from an earlier `connection_info` / `reconnection_token`.
    #[serde(default)]
    pub reconnection_token: Option<String>,
}

/// Why an auth frame was refused before authentication started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a JSON object of the expected shape (close 1003).
    #[error("Invalid authentication payload: {0}")]
    BadJson(String),
    /// `client_id` missing, empty or containing `/`.
    #[error("Authentication error: {0}")]
    BadClientId(&'static str),
}

// === impl AuthRequest ===

impl AuthRequest {
    /// Parses and validates the first text frame.
    ///
    /// Empty strings for `workspace`, `token` and `reconnection_token` count as absent.
    pub fn parse(text: &str) -> Result<Self, HandshakeError> {
        let mut req: AuthRequest =
            serde_json::from_str(text).map_err(|e| HandshakeError::BadJson(e.to_string()))?;
        for f in [
            &mut req.workspace,
            &mut req.token,
            &mut req.reconnection_token,
        ] {
            if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *f = None;
            }
        }
        match req.client_id.as_deref() {
            None | Some("") => Err(HandshakeError::BadClientId("client_id is required")),
            Some(c) if c.contains('/') => Err(HandshakeError::BadClientId(
                "client_id must not contain '/'",
            )),
            Some(_) => Ok(req),
        }
    }

    /// The validated client id (`parse` guarantees it is present).
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or_default()
    }
}

/// `{"type":"error","message":…}` (§1.5).
pub fn error(message: &str) -> String {
    json!({"type": "error", "message": message}).to_string()
}

/// `{"type":"pong"}` (§6.1).
pub fn pong() -> String {
    r#"{"type":"pong"}"#.to_owned()
}

/// `{"type":"reconnection_token","reconnection_token":…}` (§6.2).
pub fn reconnection_token(token: &str) -> String {
    json!({"type": "reconnection_token", "reconnection_token": token}).to_string()
}

/// A control message a client sends as a text frame after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `{"type":"ping"}` → answer with [`pong`].
    Ping,
    /// `{"type":"refresh_token"}` → answer with [`reconnection_token`].
    RefreshToken,
    /// Any other JSON object with a `type`; ignored.
    Other(String),
    /// Not a JSON object; ignored.
    Invalid,
}

/// Classifies a client text frame (§6).
pub fn control(text: &str) -> Control {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => match m.get("type").and_then(Value::as_str) {
            Some("ping") => Control::Ping,
            Some("refresh_token") => Control::RefreshToken,
            Some(t) => Control::Other(t.to_owned()),
            None => Control::Invalid,
        },
        _ => Control::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_and_python_auth_frames_parse() {
        let py = AuthRequest::parse(
            r#"{"client_id":"c1","workspace":null,"token":null,"reconnection_token":null}"#,
        )
        .unwrap();
        let js = AuthRequest::parse(r#"{"client_id":"c1","reconnection_token":null}"#).unwrap();
        assert_eq!(py, js);
        assert_eq!(py.client_id(), "c1");
    }

    #[test]
    fn bad_auth_frames_are_refused() {
        assert!(matches!(
            AuthRequest::parse("{nope"),
            Err(HandshakeError::BadJson(_))
        ));
        assert!(matches!(
            AuthRequest::parse("[1]"),
            Err(HandshakeError::BadJson(_))
        ));
        assert!(matches!(
            AuthRequest::parse("{}"),
            Err(HandshakeError::BadClientId(_))
        ));
        assert!(matches!(
            AuthRequest::parse(r#"{"client_id":"a/b"}"#),
            Err(HandshakeError::BadClientId(_))
        ));
    }

    #[test]
    fn control_frames() {
        assert_eq!(control(r#"{"type":"ping"}"#), Control::Ping);
        assert_eq!(
            control(r#"{"type":"refresh_token"}"#),
            Control::RefreshToken
        );
        assert_eq!(control("hello"), Control::Invalid);
        let e: Value = serde_json::from_str(&error("x")).unwrap();
        assert_eq!(e["type"], "error");
    }
}
