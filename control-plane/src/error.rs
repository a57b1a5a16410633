//! The control plane's one error type, and its two mappings to the outside (STYLE.md
//! practice 15): to the text of a wire reject, which hypha-rpc clients raise as a Python
//! exception whose class name leads the message (protocol.md §3.4), and to an HTTP status
//! with the reference's `{"success": false, "detail": …}` body (workspace-api.md §8.3).
//!
//! Each variant holds the message a user reads, without the class prefix; [`ManagerError::wire`]
//! adds it. Errors that come back from another client ([`ManagerError::Remote`]) keep that
//! client's text as it was sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a manager call or a control-plane request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// The caller lacks a permission (`PermissionError`, HTTP 403).
    #[error("PermissionError: {0}")]
    Permission(String),
    /// A workspace, service, client, token or key does not exist (`KeyError`, 404).
    #[error("KeyError: {0}")]
    NotFound(String),
    /// The method is not one the service has (`Method not found: …`, 404). The reference
    /// sends this text without an exception class.
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    /// An argument has a wrong value (`ValueError`, 400).
    #[error("ValueError: {0}")]
    InvalidArgument(String),
    /// Arguments do not fit the method's parameters, or have the wrong type
    /// (`TypeError`, 400).
    #[error("TypeError: {0}")]
    BadCall(String),
    /// A quota or bound was reached (`RuntimeError`, 429).
    #[error("RuntimeError: {0}")]
    Quota(String),
    /// No answer in time (`TimeoutError`, 504).
    #[error("TimeoutError: {0}")]
    Timeout(String),
    /// The client the call needed went away (`ConnectionError`, 502).
    #[error("ConnectionError: {0}")]
    Disconnected(String),
    /// The database or object store failed (`RuntimeError`, 500).
    #[error("RuntimeError: {0}")]
    Store(String),
    /// Anything else that went wrong inside the server (`RuntimeError`, 500).
    #[error("RuntimeError: {0}")]
    Internal(String),
    /// Another client rejected the call the manager made for the caller; its text as it
    /// was sent (the status is read from that text, §8.3).
    #[error("{0}")]
    Remote(String),
}

/// Shorthand for the results of manager methods.
pub type ManagerResult<T> = Result<T, ManagerError>;

// === impl ManagerError ===

impl ManagerError {
    /// The text of the reject sent to the caller: the Python exception class, a colon and
    /// the message (e.g. `KeyError: Service not found: x`).
    pub fn wire(&self) -> String {
        self.to_string()
    }

    /// A [`ManagerError::BadCall`] from an error of `rhizo_protocol::message::bind`, which
    /// reports arguments that do not fit a method's parameters as text with a leading
    /// `TypeError: ` (the class its Python counterpart raises). The prefix is stripped so
    /// that [`ManagerError::wire`] adds it back once; text without it is kept whole. This
    /// and [`ManagerError::Remote`]'s status are the only places that read error text.
    pub fn bad_call(text: String) -> Self {
        match text.strip_prefix("TypeError: ") {
            Some(message) => ManagerError::BadCall(message.to_owned()),
            None => ManagerError::BadCall(text),
        }
    }

    /// The status of this error on the listing and info routes (`/{ws}/services/`,
    /// `/{ws}/services/{id}`): 403 for the manager's own permission errors, 404 for
    /// everything else, unknown workspaces and remote errors included (§8.3).
    pub fn listing_status(&self) -> StatusCode {
        match self {
            ManagerError::Permission(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::NOT_FOUND,
        }
    }

    /// The Python exception class the caller's client raises, where the variant has one.
    pub fn python_class(&self) -> Option<&'static str> {
        Some(match self {
            ManagerError::Permission(_) => "PermissionError",
            ManagerError::NotFound(_) => "KeyError",
            ManagerError::InvalidArgument(_) => "ValueError",
            ManagerError::BadCall(_) => "TypeError",
            ManagerError::Quota(_) | ManagerError::Store(_) | ManagerError::Internal(_) => {
                "RuntimeError"
            }
            ManagerError::Timeout(_) => "TimeoutError",
            ManagerError::Disconnected(_) => "ConnectionError",
            ManagerError::MethodNotFound(_) | ManagerError::Remote(_) => return None,
        })
    }

    /// The HTTP status of this error (workspace-api.md §8.3).
    pub fn status(&self) -> StatusCode {
        match self {
            ManagerError::Permission(_) => StatusCode::FORBIDDEN,
            ManagerError::NotFound(_) | ManagerError::MethodNotFound(_) => StatusCode::NOT_FOUND,
            ManagerError::InvalidArgument(_) | ManagerError::BadCall(_) => StatusCode::BAD_REQUEST,
            ManagerError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            ManagerError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ManagerError::Disconnected(_) => StatusCode::BAD_GATEWAY,
            ManagerError::Store(_) | ManagerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ManagerError::Remote(text) => remote_status(text),
        }
    }
}

/// The status of an error another client sent, read from its text as §8.3 has it for
/// remote errors — the only thing a remote exception carries. hypha-rpc clients send a
/// message or a whole traceback, so the Python class is looked for anywhere in it, and
/// Python services report bad arguments without a class, so those phrases count as 400.
fn remote_status(text: &str) -> StatusCode {
    const BAD_ARGUMENTS: [&str; 3] = [
        "unexpected keyword argument",
        "required positional argument",
        "positional arguments but",
    ];
    let lower = text.to_lowercase();
    if text.contains("TimeoutError") || text.contains("Method call timed out") {
        StatusCode::GATEWAY_TIMEOUT
    } else if text.contains("PermissionError") || lower.contains("permission denied") {
        StatusCode::FORBIDDEN
    } else if text.contains("KeyError") || lower.contains("not found") {
        StatusCode::NOT_FOUND
    } else if ["TypeError", "ValueError", "AssertionError"]
        .iter()
        .chain(BAD_ARGUMENTS.iter())
        .any(|p| text.contains(p))
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl From<crate::storage::StoreError> for ManagerError {
    fn from(e: crate::storage::StoreError) -> Self {
        ManagerError::Store(e.to_string())
    }
}

/// An HTTP error answer in the reference's shape, `{"success": false, "detail": …}`, for
/// every control-plane route (workspace-api.md §8.3). Internals stay in the log: the
/// detail is the message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status sent.
    pub status: StatusCode,
    /// The `detail` text.
    pub detail: String,
    /// Sent as the bare text (`text/plain`) instead of the JSON object: the answers the
    /// reference gives on `/{ws}/apps/…` (workspace-api.md §8.4).
    pub plain: bool,
}

// === impl ApiError ===

impl ApiError {
    /// An error answer with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            plain: false,
        }
    }

    /// The same error sent as plain text (workspace-api.md §8.4: the app routes).
    pub fn into_plain(self) -> Self {
        ApiError {
            plain: true,
            ..self
        }
    }

    /// The answer of a listing or info route: the status of
    /// [`ManagerError::listing_status`], the error's wire text as detail.
    pub fn listing(e: ManagerError) -> Self {
        ApiError::new(e.listing_status(), e.wire())
    }
}

/// A token that does not verify (invalid, expired, revoked): 401 with the reason; one
/// of a blocked user: 403, as the reference.
impl From<crate::tokens::TokenError> for ApiError {
    fn from(e: crate::tokens::TokenError) -> Self {
        let status = match e {
            crate::tokens::TokenError::Blocked(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        ApiError::new(e.status(), e.wire())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, detail = %self.detail, "HTTP request failed");
        }
        if self.plain {
            return (self.status, self.detail).into_response();
        }
        let body = serde_json::json!({"success": false, "detail": self.detail});
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_leads_with_the_python_class() {
        let e = ManagerError::NotFound("Service not found: x".into());
        assert_eq!(e.wire(), "KeyError: Service not found: x");
        assert_eq!(e.python_class(), Some("KeyError"));
        assert_eq!(
            ManagerError::MethodNotFound("services.default.nope".into()).wire(),
            "Method not found: services.default.nope"
        );
        assert_eq!(
            ManagerError::Remote("Exception: boom".into()).wire(),
            "Exception: boom"
        );
    }

    #[tokio::test]
    async fn app_route_errors_are_plain_text_the_rest_json() {
        use axum::body::to_bytes;
        let plain = ApiError::new(StatusCode::NOT_FOUND, "Function not found: a/b")
            .into_plain()
            .into_response();
        assert_eq!(plain.status(), StatusCode::NOT_FOUND);
        let ct = plain.headers()[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert!(ct.starts_with("text/plain"), "{ct}");
        let body = to_bytes(plain.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"Function not found: a/b");
        let json = ApiError::from(ManagerError::NotFound("x".into())).into_response();
        let body = to_bytes(json.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"success": false, "detail": "KeyError: x"})
        );
    }

    #[test]
    fn bind_errors_keep_one_class_prefix() {
        let e = ManagerError::bad_call("TypeError: f() takes 1 positional arguments".into());
        assert_eq!(
            e,
            ManagerError::BadCall("f() takes 1 positional arguments".into())
        );
        assert_eq!(e.wire(), "TypeError: f() takes 1 positional arguments");
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn listing_routes_answer_403_only_for_local_permission_errors() {
        let listing = |e: ManagerError| ApiError::listing(e).status.as_u16();
        assert_eq!(listing(ManagerError::Permission("no".into())), 403);
        assert_eq!(listing(ManagerError::NotFound("x".into())), 404);
        assert_eq!(listing(ManagerError::InvalidArgument("x".into())), 404);
        assert_eq!(
            listing(ManagerError::Remote("PermissionError: no".into())),
            404
        );
    }

    #[test]
    fn statuses_follow_the_reference_mapping() {
        let cases = [
            (ManagerError::Permission("x".into()), 403),
            (ManagerError::NotFound("x".into()), 404),
            (ManagerError::MethodNotFound("x".into()), 404),
            (ManagerError::InvalidArgument("x".into()), 400),
            (ManagerError::BadCall("x".into()), 400),
            (ManagerError::Quota("x".into()), 429),
            (ManagerError::Timeout("x".into()), 504),
            (ManagerError::Disconnected("x".into()), 502),
            (ManagerError::Store("x".into()), 500),
            (ManagerError::Remote("PermissionError: no".into()), 403),
            (ManagerError::Remote("KeyError: 'a'".into()), 404),
            (
                ManagerError::Remote(
                    "TypeError: f() got an unexpected keyword argument 'z'".into(),
                ),
                400,
            ),
            (
                ManagerError::Remote("add() got an unexpected keyword argument 'z'".into()),
                400,
            ),
            (
                ManagerError::Remote("TimeoutError: Method call timed out".into()),
                504,
            ),
            (ManagerError::Remote("Exception: boom".into()), 500),
            // hypha-rpc sends tracebacks: the class is found anywhere in the text.
            (
                ManagerError::Remote(
                    "Traceback (most recent call last):\n  ...\nKeyError: 'a'".into(),
                ),
                404,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
        }
    }
}
