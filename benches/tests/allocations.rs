//! The allocation budget of the hot path (DESIGN.md "Rules of the hot path"): forwarding a
//! frame allocates one buffer (the rewritten frame), whatever the payload size, plus the
//! egress queue's block allocation every 32 items. Counted with a counting allocator, so
//! the check is exact, not timed.

use rhizo_benches::{call_frame, connect, router};
use rhizo_router::internals::{self, RouteCache};

#[test]
fn forwarding_a_frame_allocates_one_buffer() {
    let r = router();
    let (caller, _crx) = connect(&r, 1, "ws-user-anonymouz-a", "caller");
    let (_provider, mut prx) = connect(&r, 2, "ws-user-anonymouz-b", "provider");
    let (_peer, mut qrx) = connect(&r, 3, "ws-user-anonymouz-a", "peer");
    let mut cache = RouteCache::default();
    let mut drain = || while prx.try_recv().is_ok() || qrx.try_recv().is_ok() {};
    for size in [0usize, 128, 64 << 10, 1 << 20] {
        for to in ["ws-user-anonymouz-b/provider", "peer"] {
            let frame = call_frame(to, size);
            // Warm up: first-contact bookkeeping, the route cache, the queue's first block.
            for _ in 0..64 {
                internals::route_from_cached(&r, &caller, frame.clone(), &mut cache).unwrap();
            }
            drain();
            const N: u64 = 256;
            // As a connection task does it (with its route cache), and one-off.
            let cached = allocation_counter::measure(|| {
                for _ in 0..N {
                    internals::route_from_cached(&r, &caller, frame.clone(), &mut cache).unwrap();
                }
            });
            drain();
            let uncached = allocation_counter::measure(|| {
                for _ in 0..N {
                    internals::route_from(&r, &caller, frame.clone()).unwrap();
                }
            });
            drain();
            for (how, info) in [("cached", cached), ("uncached", uncached)] {
                let per_frame = info.count_total as f64 / N as f64;
                println!("payload {size} B to {to} ({how}): {per_frame:.3} allocations per frame");
                assert!(
                    per_frame <= 1.05,
                    "{per_frame} allocations per frame ({size} B to {to}, {how})"
                );
            }
        }
    }
}
