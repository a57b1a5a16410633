//! Backpressure into the manager: how many calls each client, and all clients together,
//! may have running in the manager at once (`Limits::manager_calls_per_client`,
//! `Limits::manager_calls_total`). A call over either bound is refused at once, never
//! queued: the caller gets a reject it can act on, and the manager's memory stays bounded
//! whatever a client sends (STYLE.md practice 8; linkerd's load shedding).

use crate::error::{ManagerError, ManagerResult};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The call slots of the manager. Zero disables a bound.
#[derive(Debug)]
pub(crate) struct CallLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_client: usize,
    total: usize,
    running: AtomicUsize,
    by_client: DashMap<String, usize>,
}

/// One running call of `client`; frees its slots when dropped.
#[derive(Debug)]
pub(crate) struct CallSlot {
    inner: Arc<Inner>,
    client: String,
}

// === impl CallLimits ===

impl CallLimits {
    /// Limits of `per_client` calls per caller address and `total` in all.
    pub(crate) fn new(per_client: usize, total: usize) -> Self {
        CallLimits {
            inner: Arc::new(Inner {
                per_client,
                total,
                running: AtomicUsize::new(0),
                by_client: DashMap::new(),
            }),
        }
    }

    /// Takes a slot for a call from `client` (`"<ws>/<cid>"`).
    ///
    /// Errors: [`ManagerError::Quota`] naming the bound that is reached.
    pub(crate) fn acquire(&self, client: &str) -> ManagerResult<CallSlot> {
        let i = &self.inner;
        let before = i.running.fetch_add(1, Ordering::AcqRel);
        if i.total != 0 && before >= i.total {
            i.running.fetch_sub(1, Ordering::AcqRel);
            return Err(ManagerError::Quota(format!(
                "the server is busy: {} calls are running in the manager (limit {})",
                before, i.total
            )));
        }
        {
            let mut n = i.by_client.entry(client.to_owned()).or_default();
            if i.per_client != 0 && *n >= i.per_client {
                drop(n);
                i.running.fetch_sub(1, Ordering::AcqRel);
                return Err(ManagerError::Quota(format!(
                    "too many calls from {client} running in the manager (limit {})",
                    i.per_client
                )));
            }
            *n += 1;
        }
        Ok(CallSlot {
            inner: i.clone(),
            client: client.to_owned(),
        })
    }

    /// Calls running now, in all.
    pub(super) fn running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }
}

// === impl CallSlot ===

impl Drop for CallSlot {
    fn drop(&mut self) {
        let i = &self.inner;
        if let Some(mut n) = i.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
        }
        i.by_client.remove_if(&self.client, |_, n| *n == 0);
        i.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_and_total_bounds_refuse_then_free() {
        let l = CallLimits::new(2, 3);
        let a1 = l.acquire("w/a").unwrap();
        let _a2 = l.acquire("w/a").unwrap();
        let err = l.acquire("w/a").unwrap_err();
        assert_eq!(
            err,
            ManagerError::Quota("too many calls from w/a running in the manager (limit 2)".into())
        );
        let _b1 = l.acquire("w/b").unwrap();
        let err = l.acquire("w/c").unwrap_err();
        assert!(
            matches!(&err, ManagerError::Quota(m) if m.contains("limit 3")),
            "{err}"
        );
        assert_eq!(l.running(), 3, "refused calls hold no slot");
        drop(a1);
        assert_eq!(l.running(), 2);
        let _a3 = l.acquire("w/a").unwrap();
    }

    #[test]
    fn zero_means_unbounded() {
        let l = CallLimits::new(0, 0);
        let slots: Vec<_> = (0..1000).map(|_| l.acquire("w/a").unwrap()).collect();
        assert_eq!(l.running(), 1000);
        drop(slots);
        assert_eq!(l.running(), 0);
        assert!(
            l.inner.by_client.is_empty(),
            "rows of idle clients are removed"
        );
    }
}
