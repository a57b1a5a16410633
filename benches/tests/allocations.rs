//! The allocation budget of the hot path (DESIGN.md "Rules of the hot path"): forwarding a
//! frame allocates at most once (the rewritten frame buffer), whatever the payload size.
//! Counted with a counting allocator, so the check is exact, not timed.

use rhizo_benches::{call_frame, connect, router};

#[test]
fn forwarding_a_frame_allocates_at_most_once() {
    let r = router();
    let (caller, _crx) = connect(&r, 1, "ws-user-anonymouz-a", "caller");
    let (_provider, mut prx) = connect(&r, 2, "ws-user-anonymouz-b", "provider");
    let (_peer, mut qrx) = connect(&r, 3, "ws-user-anonymouz-a", "peer");
    for size in [0usize, 128, 64 << 10, 1 << 20] {
        for to in ["ws-user-anonymouz-b/provider", "peer"] {
            let frame = call_frame(to, size);
            // Warm up: first-contact bookkeeping and the queue's first block.
            for _ in 0..64 {
                r.route_from(&caller, frame.clone()).unwrap();
            }
            while prx.try_recv().is_ok() || qrx.try_recv().is_ok() {}
            const N: u64 = 256;
            let info = allocation_counter::measure(|| {
                for _ in 0..N {
                    r.route_from(&caller, frame.clone()).unwrap();
                }
            });
            let per_frame = info.count_total as f64 / N as f64;
            println!("payload {size} B to {to}: {per_frame:.3} allocations per forwarded frame");
            assert!(
                per_frame <= 1.1,
                "{per_frame} allocations per frame (payload {size}, to {to})"
            );
            while prx.try_recv().is_ok() || qrx.try_recv().is_ok() {}
        }
    }
}
