use super::*;
use tokio_tungstenite::tungstenite;
use tungstenite::error::{CapacityError, ProtocolError};

fn axum_wrapped(e: tungstenite::Error) -> axum::Error {
    axum::Error::new(e)
}

#[test]
fn oversized_messages_are_told_by_error_type() {
    let too_long = || {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 70_000,
            max_size: 65_536,
        })
    };
    // As axum's WebSocket hands it over (tungstenite's error inside `axum::Error`), and bare.
    assert!(is_oversized(&axum_wrapped(too_long())));
    assert!(is_oversized(&too_long()));
}

#[test]
fn other_read_errors_are_not_oversized_whatever_their_text() {
    let not = [
        axum_wrapped(tungstenite::Error::Capacity(CapacityError::TooManyHeaders)),
        axum_wrapped(tungstenite::Error::ConnectionClosed),
        axum_wrapped(tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake,
        )),
        // Text that mentions a size is not a size error.
        axum::Error::new(std::io::Error::other(
            "Space limit exceeded: Message too long (too big)",
        )),
        axum_wrapped(tungstenite::Error::Io(std::io::Error::other(
            "Message too long",
        ))),
    ];
    for e in &not {
        assert!(!is_oversized(e), "{e} is not an oversized message");
    }
}
