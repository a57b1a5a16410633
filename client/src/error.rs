//! [`RpcError`]: what a typed call ([`crate::ServiceProxy`]) or a typed registration
//! ([`crate::ServiceBuilder`]) fails with.

use crate::ClientError;
use std::time::Duration;

/// Why a typed call failed.
///
/// A typed service function returns it too: its text ([`std::fmt::Display`]) is what the
/// caller receives, so [`RpcError::Remote`] passes a message through unchanged (a Python
/// caller sees it as the text of the exception it raises).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The callee rejected the call with this text (e.g. `TypeError: add() invalid
    /// arguments: missing field `b``, or the text a handler failed with).
    #[error("{0}")]
    Remote(String),
    /// Neither a reply nor a heartbeat of the callee within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection is gone, or went down while the call waited.
    #[error("disconnected")]
    Disconnected,
    /// The service has no function of that name.
    #[error("no function `{0}` in the service")]
    NoSuchFunction(String),
    /// The arguments could not be encoded (e.g. keyword arguments that are not a map).
    #[error("could not encode the arguments: {0}")]
    Encode(String),
    /// The reply does not decode as the type asked for.
    #[error("could not decode the reply: {0}")]
    Decode(String),
    /// The connection failed or the server broke the protocol (handshake, transport).
    #[error("connection: {0}")]
    Connection(String),
}

impl RpcError {
    /// An error whose text the caller receives as is.
    pub fn remote(message: impl Into<String>) -> Self {
        RpcError::Remote(message.into())
    }
}

impl From<ClientError> for RpcError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Remote(m) => RpcError::Remote(m),
            ClientError::Timeout(t) => RpcError::Timeout(t),
            ClientError::Closed => RpcError::Disconnected,
            e @ (ClientError::Ws(_) | ClientError::Refused(_) | ClientError::Protocol(_)) => {
                RpcError::Connection(e.to_string())
            }
        }
    }
}
