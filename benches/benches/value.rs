//! hypha-rpc value encode/decode (what the manager and the clients do per message; the
//! router never does this for forwarded frames).

use criterion::{criterion_group, criterion_main, Criterion};
use rhizo_benches::call_frame;
use rhizo_protocol::message::Message;
use rhizo_protocol::value;
use std::hint::black_box;

fn encode_decode(c: &mut Criterion) {
    let frame = call_frame("ws-user-anonymouz-b/provider", 128);
    let decoded = Message::decode(&frame).unwrap();
    c.bench_function("value/decode-message-128B", |b| {
        b.iter(|| Message::decode(black_box(&frame)).unwrap())
    });
    c.bench_function("value/encode-message-128B", |b| {
        b.iter(|| value::encode(black_box(&decoded.merged)))
    });
    c.bench_function("value/classify-call", |b| {
        b.iter(|| Message::decode(black_box(&frame)).unwrap().classify())
    });
}

criterion_group!(benches, encode_decode);
criterion_main!(benches);
