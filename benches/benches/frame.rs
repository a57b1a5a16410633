//! Header decode + rewrite per frame, by payload size (the router's per-frame work before
//! the table lookup).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rhizo_benches::call_frame;
use rhizo_protocol::frame::{rewritten_len, write_rewritten_header, HeaderView, Stamp};
use std::hint::black_box;

fn decode_and_rewrite(c: &mut Criterion) {
    let user = rhizo_protocol::value::encode(&rhizo_protocol::value::map([(
        "id",
        "anonymouz-bench".into(),
    )]));
    let stamp = Stamp {
        from: "ws-user-anonymouz-a/caller",
        ws: "ws-user-anonymouz-a",
        user: &user,
    }
    .encode();
    let mut group = c.benchmark_group("frame/decode+rewrite");
    for size in [128usize, 4 << 10, 64 << 10, 1 << 20] {
        let frame = call_frame("ws-user-anonymouz-b/provider", size);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, frame| {
            b.iter(|| {
                let view = HeaderView::parse(black_box(frame)).unwrap();
                let to = view.to(frame).unwrap();
                let body = &frame[view.header_len()..];
                let mut out =
                    Vec::with_capacity(rewritten_len(&view, to.len(), stamp.len()) + body.len());
                write_rewritten_header(&mut out, frame, &view, &[to], &stamp);
                out.extend_from_slice(body);
                black_box(out)
            })
        });
    }
    group.finish();
    let frame = call_frame("ws-user-anonymouz-b/provider", 128);
    c.bench_function("frame/decode-header-only", |b| {
        b.iter(|| HeaderView::parse(black_box(&frame)).unwrap())
    });
}

criterion_group!(benches, decode_and_rewrite);
criterion_main!(benches);
