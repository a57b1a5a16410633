//! Routing-table lookups with 100k connected clients, alone and while other threads look up
//! and churn (connect/disconnect) at the same time.

use criterion::{criterion_group, criterion_main, Criterion};
use rhizo_benches::{connect, router};
use rhizo_router::internals;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const CLIENTS: u64 = 100_000;

fn lookups(c: &mut Criterion) {
    let r = router();
    let mut queues = Vec::with_capacity(CLIENTS as usize);
    for i in 0..CLIENTS {
        // 1,000 workspaces of 100 clients.
        queues.push(connect(&r, i, &format!("ws-{}", i % 1000), &format!("c{i}")).1);
    }
    let addrs: Vec<String> = (0..1024u64)
        .map(|i| format!("ws-{}/c{}", (i * 97) % 1000, (i * 97) % CLIENTS))
        .collect();
    c.bench_function("table/lookup-100k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(internals::table(&r).get_addr(&addrs[i]).is_some())
        })
    });

    // Contention: one thread looks up in a loop, another connects/disconnects clients.
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    {
        let (r, stop, addrs) = (r.clone(), stop.clone(), addrs.clone());
        helpers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) & 1023;
                black_box(internals::table(&r).get_addr(&addrs[i]));
            }
        }));
    }
    {
        let (r, stop) = (r.clone(), stop.clone());
        helpers.push(std::thread::spawn(move || {
            let mut id = CLIENTS;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let (conn, _rx) = connect(
                    &r,
                    id,
                    &format!("ws-{}", id % 1000),
                    &format!("churn{}", id % 64),
                );
                internals::table(&r).remove(&conn);
            }
        }));
    }
    c.bench_function("table/lookup-100k-contended", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(internals::table(&r).get_addr(&addrs[i]).is_some())
        })
    });
    stop.store(true, Ordering::Relaxed);
    for h in helpers {
        h.join().unwrap();
    }
    drop(queues);
}

criterion_group!(benches, lookups);
criterion_main!(benches);
