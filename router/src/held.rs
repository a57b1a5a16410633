//! Frames held for a client that is reconnecting (issue 10, "none may be lost silently").
//!
//! hypha-rpc keeps its pending calls across a reconnection: a caller whose connection
//! dropped (its node restarted, or the network blinked) reconnects with the same client id
//! and still waits for the replies. A reply that arrives while it is away has nowhere to
//! go, and without this module it is dropped, so the caller waits for its timeout. Here
//! such a frame is held for [`WINDOW`] and delivered as soon as the client is connected
//! again, on this node or on another one the directory names.
//!
//! What is held: only frames that are not calls (a call to an absent client gets its
//! reject at once, as before), only for an address that was connected within
//! [`WINDOW`] (a frame for an address never seen still gets its error at once), and only
//! within fixed bounds ([`MAX_FRAMES`], [`MAX_BYTES`], [`PER_CLIENT`]); beyond them, or
//! after the window, frames are dropped and counted. The store is off the hot path: it is
//! touched when a client leaves and when a frame finds no destination, so a `Mutex` is
//! fine, and the flush task sleeps while nothing is held.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a departed client's frames are kept, and how long a departure is remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);
/// Most frames held at once on a node.
pub(crate) const MAX_FRAMES: usize = 4096;
/// Most bytes held at once on a node.
pub(crate) const MAX_BYTES: usize = 16 << 20;
/// Most frames held for one client.
pub(crate) const PER_CLIENT: usize = 256;
/// Most departures remembered (the oldest are forgotten first).
const MAX_DEPARTED: usize = 1 << 16;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Held {
    state: Mutex<State>,
    /// Whether any frame is held (the flush task's cheap check).
    any: AtomicBool,
    /// Wakes the flush task when the first frame is held.
    pub(crate) wake: Notify,
}

#[derive(Default)]
struct State {
    /// Address → when it left (local disconnect or dropped from the directory).
    departed: HashMap<String, Instant>,
    /// Departures in order, to forget the oldest.
    order: VecDeque<(Instant, String)>,
    /// Address → frames waiting for it, each with the time it was held.
    frames: HashMap<String, Vec<(Instant, Bytes)>>,
    count: usize,
    bytes: usize,
}

/// What [`Held::take`] hands the flush task.
pub(crate) struct Taken {
    /// Frames whose client is reachable now, per address, oldest first.
    pub(crate) ready: Vec<(String, Vec<Bytes>)>,
    /// Frames dropped because they waited longer than [`WINDOW`].
    pub(crate) expired: usize,
}

impl Held {
    /// Notes that the client at `addr` left now.
    pub(crate) fn departed(&self, addr: &str) {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.departed.insert(addr.to_owned(), now);
        s.order.push_back((now, addr.to_owned()));
        while s.order.len() > MAX_DEPARTED
            || s.order.front().is_some_and(|(t, _)| now - *t > WINDOW)
        {
            let Some((t, a)) = s.order.pop_front() else {
                break;
            };
            // Only if it did not leave again since.
            if s.departed.get(&a) == Some(&t) {
                s.departed.remove(&a);
            }
        }
    }

    /// Holds `frame` for `addr` if `addr` left within [`WINDOW`] (or `vouched`: another
    /// node says so) and the bounds allow. Returns whether it was held.
    pub(crate) fn hold(&self, addr: &str, frame: Bytes, vouched: bool) -> bool {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        let recent = s
            .departed
            .get(addr)
            .is_some_and(|t| now.duration_since(*t) <= WINDOW);
        if !(recent || vouched)
            || s.count >= MAX_FRAMES
            || s.bytes + frame.len() > MAX_BYTES
            || s.frames.get(addr).is_some_and(|v| v.len() >= PER_CLIENT)
        {
            return false;
        }
        s.count += 1;
        s.bytes += frame.len();
        s.frames
            .entry(addr.to_owned())
            .or_default()
            .push((now, frame));
        drop(s);
        if !self.any.swap(true, Release) {
            self.wake.notify_one();
        }
        true
    }

    /// Whether the client at `addr` left within [`WINDOW`].
    pub(crate) fn recently_departed(&self, addr: &str) -> bool {
        let now = Instant::now();
        self.state.lock().is_ok_and(|s| {
            s.departed
                .get(addr)
                .is_some_and(|t| now.duration_since(*t) <= WINDOW)
        })
    }

    /// Whether any frame is held now.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Acquire)
    }

    /// Takes the frames of every address `reachable` says can be reached now, and drops
    /// those that waited longer than [`WINDOW`].
    pub(crate) fn take(&self, mut reachable: impl FnMut(&str) -> bool) -> Taken {
        let now = Instant::now();
        let mut taken = Taken {
            ready: Vec::new(),
            expired: 0,
        };
        let Ok(mut s) = self.state.lock() else {
            return taken;
        };
        let addrs: Vec<String> = s.frames.keys().cloned().collect();
        for addr in addrs {
            let Some(mut frames) = s.frames.remove(&addr) else {
                continue;
            };
            let before = frames.len();
            frames.retain(|(t, _)| now.duration_since(*t) <= WINDOW);
            taken.expired += before - frames.len();
            if frames.is_empty() {
                continue;
            }
            if reachable(&addr) {
                taken
                    .ready
                    .push((addr, frames.into_iter().map(|(_, f)| f).collect()));
            } else {
                s.frames.insert(addr, frames);
            }
        }
        // What is left, after the taken and the expired frames.
        let (count, bytes) = s
            .frames
            .values()
            .flatten()
            .fold((0, 0), |(c, b), (_, f)| (c + 1, b + f.len()));
        s.count = count;
        s.bytes = bytes;
        self.any.store(!s.frames.is_empty(), Release);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_departures_are_held_and_bounds_hold() {
        let h = Held::default();
        assert!(!h.hold("ws/never", Bytes::from_static(b"x"), false));
        assert!(!h.any());
        h.departed("ws/gone");
        assert!(h.hold("ws/gone", Bytes::from_static(b"one"), false));
        assert!(h.hold("ws/other", Bytes::from_static(b"vouched"), true));
        assert!(h.any());
        for _ in 1..PER_CLIENT {
            assert!(h.hold("ws/gone", Bytes::from_static(b"more"), false));
        }
        assert!(!h.hold("ws/gone", Bytes::from_static(b"too many"), false));
        // Nobody reachable: all stay.
        let t = h.take(|_| false);
        assert!(t.ready.is_empty() && t.expired == 0 && h.any());
        // One reachable: its frames come out in order.
        let t = h.take(|a| a == "ws/gone");
        assert_eq!(t.ready.len(), 1);
        assert_eq!(t.ready[0].1.len(), PER_CLIENT);
        assert_eq!(t.ready[0].1[0], Bytes::from_static(b"one"));
        let t = h.take(|_| true);
        assert_eq!(t.ready[0].1, vec![Bytes::from_static(b"vouched")]);
        assert!(!h.any());
        // The room freed is usable again.
        assert!(h.hold("ws/gone", Bytes::from_static(b"again"), false));
    }

    #[test]
    fn the_byte_bound_holds() {
        let h = Held::default();
        h.departed("ws/big");
        let big = Bytes::from(vec![0u8; MAX_BYTES / 2]);
        assert!(h.hold("ws/big", big.clone(), false));
        assert!(!h.hold("ws/big", Bytes::from(vec![0u8; MAX_BYTES / 2 + 1]), false));
        assert!(h.hold("ws/big", big, false));
    }
}
