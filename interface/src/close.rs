//! Why the server closes a connection: one enum that sets the WebSocket close code, the
//! text sent to the client and the metric label (protocol.md §1.5, STYLE.md practice 9).

/// Every server-initiated close carries exactly one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The first frame was not valid JSON (1003, as the reference).
    BadAuthPayload(String),
    /// Authentication or policy failure (1008), reason prefixed `Authentication error: `
    /// by the caller where the reference does so.
    Policy(String),
    /// Setup failed for another reason (1001), e.g. "Failed to establish connection: …".
    SetupFailed(String),
    /// A frame exceeded the size limit (1009).
    FrameTooLarge(usize),
    /// The egress queue stayed full beyond the grace period (1008).
    SlowConsumer,
    /// A newer connection with the same `<ws>/<cid>` took over (1000).
    Superseded,
    /// Nothing arrived for the idle timeout, seconds (1001).
    IdleTimeout(u64),
    /// The server is shutting down (1001; clients reconnect elsewhere).
    Shutdown,
    /// Too many handshakes in flight for too long (1013 "try again later").
    Busy(String),
    /// An admin closed it (`kickout_client`, workspace-api.md §9.3) with this code (a
    /// code an endpoint may send: 1000–1003, 1007–1014 or 3000–4999) and reason.
    Admin {
        /// WebSocket close code.
        code: u16,
        /// Reason.
        message: String,
    },
}

// === impl CloseReason ===

impl CloseReason {
    /// WebSocket close code.
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::BadAuthPayload(_) => 1003,
            CloseReason::Policy(_) | CloseReason::SlowConsumer => 1008,
            CloseReason::FrameTooLarge(_) => 1009,
            CloseReason::Superseded => 1000,
            CloseReason::SetupFailed(_) | CloseReason::IdleTimeout(_) | CloseReason::Shutdown => {
                1001
            }
            CloseReason::Busy(_) => 1013,
            CloseReason::Admin { code, .. } => *code,
        }
    }

    /// Human-readable reason; also sent as `{"type":"error","message":…}` before closing.
    pub fn message(&self) -> String {
        match self {
            CloseReason::BadAuthPayload(m)
            | CloseReason::Policy(m)
            | CloseReason::SetupFailed(m)
            | CloseReason::Busy(m)
            | CloseReason::Admin { message: m, .. } => m.clone(),
            CloseReason::FrameTooLarge(limit) => {
                format!("Frame too large: the limit is {limit} bytes")
            }
            CloseReason::SlowConsumer => "Slow consumer: outgoing queue stayed full".to_owned(),
            CloseReason::Superseded => {
                "Superseded by a newer connection of the same client".to_owned()
            }
            CloseReason::IdleTimeout(s) => format!("Idle timeout ({s}s)"),
            CloseReason::Shutdown => "Server is shutting down".to_owned(),
        }
    }

    /// The close-frame reason: the message cut to WebSocket's 123-byte limit.
    pub fn close_text(&self) -> String {
        let mut m = self.message();
        if m.len() > 123 {
            let mut cut = 120;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push_str("...");
        }
        m
    }

    /// Short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::BadAuthPayload(_) => "bad_auth_payload",
            CloseReason::Policy(_) => "policy",
            CloseReason::SetupFailed(_) => "setup_failed",
            CloseReason::FrameTooLarge(_) => "frame_too_large",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Superseded => "superseded",
            CloseReason::IdleTimeout(_) => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Busy(_) => "busy",
            CloseReason::Admin { .. } => "admin",
        }
    }

    /// Whether `code` is one an endpoint may send in a close frame (RFC 6455 §7.4):
    /// 1000–1003, 1007–1014 or 3000–4999.
    pub fn sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether an `{"type":"error"}` text frame precedes the close. Not for a superseded
    /// connection: its client is already talking on the new one.
    pub fn sends_error(&self) -> bool {
        !matches!(self, CloseReason::Superseded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_text_fits_the_websocket_limit() {
        let r = CloseReason::Policy("é".repeat(200));
        assert!(r.close_text().len() <= 123);
        assert_eq!(r.code(), 1008);
        assert_eq!(CloseReason::FrameTooLarge(10).code(), 1009);
    }
}
