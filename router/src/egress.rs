//! Per-connection egress queue, bounded in bytes and checked at enqueue (DESIGN.md
//! "Rules of the hot path", STYLE.md practices 6–8).
//!
//! Senders never wait: [`Egress::push`] either queues the item or returns
//! [`PushError::Full`]. The connection's writer task drains items in batches and flushes
//! once per batch, then gives the bytes back with [`Egress::sent`].
//!
//! Slow-consumer policy: while a queue is full, calls to that client that expect a reply
//! are rejected at once to their caller (the router does that), and other frames are
//! dropped and counted. If the queue has been full for longer than the grace period when
//! another push fails, the push returns [`PushError::CloseSlowConsumer`] and the router
//! closes the connection with `CloseReason::SlowConsumer` without flushing its queue.

use crate::close::CloseReason;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One item for the writer task.
#[derive(Debug)]
pub enum Outbound {
    /// A binary frame, ready to send (rewritten header followed by the payload).
    Binary(Bytes),
    /// A JSON text frame (control channel).
    Text(String),
    /// Send the error text (if the reason wants it), close the socket and stop.
    Close(CloseReason),
}

// === impl Outbound ===

impl Outbound {
    /// Bytes this item counts against the queue limit.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Binary(b) => b.len(),
            Outbound::Text(t) => t.len(),
            Outbound::Close(_) => 0,
        }
    }

    /// True for an item of no bytes.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Queue is over its byte limit; the item was not queued.
    #[error("egress queue full")]
    Full,
    /// Queue has been full for longer than the grace period: close the connection.
    #[error("egress queue full beyond the grace period")]
    CloseSlowConsumer,
    /// The writer has gone (connection closing).
    #[error("connection closed")]
    Closed,
}

/// The sending half of a connection's egress queue.
#[derive(Debug)]
pub struct Egress {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: AtomicUsize,
    limit: usize,
    grace: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` when the queue was first found full; 0 = not full.
    full_since_ms: AtomicU64,
    /// Set once the connection is to be closed; the writer then skips the queue.
    closing: OnceLock<CloseReason>,
    /// Wakes the connection's reader when a close is decided, so that a writer stuck on a
    /// full socket cannot keep the connection alive.
    close_signal: tokio::sync::Notify,
}

// === impl Egress ===

impl Egress {
    /// A queue of at most `limit` bytes; the receiver goes to the writer task.
    pub fn new(limit: usize, grace: Duration) -> (Self, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let e = Egress {
            tx,
            queued: AtomicUsize::new(0),
            limit,
            grace,
            epoch: Instant::now(),
            full_since_ms: AtomicU64::new(0),
            closing: OnceLock::new(),
            close_signal: tokio::sync::Notify::new(),
        };
        (e, rx)
    }

    /// Queues `item` unless that would take the queue over its limit. An item is always
    /// accepted into an empty queue, so one frame larger than the limit still goes out.
    /// The clock is read only when the queue is full.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        self.push_with_clock(item, Instant::now)
    }

    /// [`Egress::push`] with the current time given (for tests).
    #[cfg(test)]
    pub fn push_at(&self, item: Outbound, now: Instant) -> Result<(), PushError> {
        self.push_with_clock(item, || now)
    }

    fn push_with_clock(
        &self,
        item: Outbound,
        clock: impl FnOnce() -> Instant,
    ) -> Result<(), PushError> {
        let len = item.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            let now = clock();
            let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
            let since = match self.full_since_ms.compare_exchange(
                0,
                now_ms,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => now_ms,
                Err(prev) => prev,
            };
            if now_ms.saturating_sub(since) >= self.grace.as_millis() as u64 {
                return Err(PushError::CloseSlowConsumer);
            }
            return Err(PushError::Full);
        }
        if self.tx.send(item).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(PushError::Closed);
        }
        Ok(())
    }

    /// Queues a control item (close, text) regardless of the limit.
    pub fn push_control(&self, item: Outbound) {
        let len = item.len();
        self.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(item).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// Called by the writer after `bytes` left the queue; clears the full state once the
    /// queue is below half its limit.
    pub fn sent(&self, bytes: usize) {
        let after = self.queued.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if after < self.limit / 2 {
            self.full_since_ms.store(0, Ordering::Release);
        }
    }

    /// Decides to close the connection with `reason` (the first decision wins) and wakes
    /// the writer, which closes without sending what is still queued.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.set(reason.clone()).is_ok() {
            self.push_control(Outbound::Close(reason));
            self.close_signal.notify_one();
        }
    }

    /// Completes once a close has been decided with [`Egress::close`]. Cancel-safe.
    pub async fn close_decided(&self) {
        if self.closing.get().is_some() {
            return;
        }
        self.close_signal.notified().await;
    }

    /// The close decided with [`Egress::close`], if any.
    pub fn closing(&self) -> Option<CloseReason> {
        self.closing.get().cloned()
    }

    /// Bytes currently queued.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Outbound {
        Outbound::Binary(Bytes::from(vec![0; n]))
    }

    #[test]
    fn full_then_close_after_grace() {
        let (e, mut rx) = Egress::new(100, Duration::from_secs(5));
        let t0 = Instant::now();
        e.push_at(frame(80), t0).unwrap();
        assert_eq!(e.push_at(frame(30), t0), Err(PushError::Full));
        assert_eq!(
            e.push_at(frame(30), t0 + Duration::from_secs(4)),
            Err(PushError::Full)
        );
        assert_eq!(
            e.push_at(frame(30), t0 + Duration::from_secs(6)),
            Err(PushError::CloseSlowConsumer)
        );
        assert_eq!(e.queued(), 80);
        // Draining resets the full state.
        let item = rx.try_recv().unwrap();
        e.sent(item.len());
        assert_eq!(e.queued(), 0);
        e.push_at(frame(30), t0 + Duration::from_secs(7)).unwrap();
    }

    #[test]
    fn one_oversized_item_fits_an_empty_queue() {
        let (e, _rx) = Egress::new(10, Duration::from_secs(1));
        e.push(frame(50)).unwrap();
        assert_eq!(e.push(frame(1)), Err(PushError::Full));
    }

    #[test]
    fn closed_writer_is_reported() {
        let (e, rx) = Egress::new(10, Duration::from_secs(1));
        drop(rx);
        assert_eq!(e.push(frame(1)), Err(PushError::Closed));
        assert_eq!(e.queued(), 0);
    }
}
