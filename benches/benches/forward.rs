//! The whole per-frame path of the router without sockets: `route_from` (decode header,
//! stamp, look up, enqueue) for a cross-workspace call, by payload size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rhizo_benches::{call_frame, connect, router};
use rhizo_router::internals::{self, RouteCache};
use std::hint::black_box;

fn forward(c: &mut Criterion) {
    let r = router();
    let (caller, _crx) = connect(&r, 1, "ws-user-anonymouz-a", "caller");
    let (provider, mut prx) = connect(&r, 2, "ws-user-anonymouz-b", "provider");
    let mut cache = RouteCache::default();
    let mut group = c.benchmark_group("router/route_from");
    for size in [128usize, 4 << 10, 64 << 10] {
        let frame = call_frame("ws-user-anonymouz-b/provider", size);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, frame| {
            b.iter(|| {
                internals::route_from_cached(&r, &caller, black_box(frame.clone()), &mut cache)
                    .unwrap();
                let out = prx.try_recv().unwrap();
                provider.egress.sent(out.len());
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
