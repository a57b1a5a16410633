//! Per-connection message budget (workspace-api.md §7 step 10, `HYPHA_WS_MSG_RATE_LIMIT` /
//! `HYPHA_WS_MSG_BURST_LIMIT`): a token bucket holding up to `burst` messages, refilled at
//! `rate` messages per second. Sans-IO: the caller passes the time, so tests need no clock.

use std::time::Instant;

/// Messages a connection may send per second, and how many it may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRate {
    /// Sustained rate, messages per second (> 0).
    pub per_second: u32,
    /// Bucket size, messages (≥ 1).
    pub burst: u32,
}

/// The budget of one connection.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket for `limit`, starting at `now`.
    pub fn new(limit: MsgRate, now: Instant) -> Self {
        let burst = f64::from(limit.burst.max(1));
        TokenBucket {
            rate: f64::from(limit.per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Spends one message at `now`; `false` when the budget is exhausted (the message
    /// must not be handled).
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            MsgRate {
                per_second: 10,
                burst: 5,
            },
            t0,
        );
        // The burst goes through at once, the next message does not.
        assert!((0..5).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 100 ms refills one message at 10/s.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // A long pause refills no more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert!((0..5).all(|_| b.take(t2)));
        assert!(!b.take(t2));
    }

    #[test]
    fn a_steady_sender_below_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let limit = MsgRate {
            per_second: 200,
            burst: 1,
        };
        let mut b = TokenBucket::new(limit, t0);
        // 10,000 messages 6 ms apart (≈167/s) against 200/s with no burst to spare.
        assert!((0..10_000u32).all(|i| b.take(t0 + Duration::from_millis(6 * u64::from(i)))));
    }
}
