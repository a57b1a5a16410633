//! The `QueueStore` contract, run unchanged against [`MemoryQueues`] and [`RedisQueues`]
//! (two stores on one Redis under a prefix of their own, as two nodes of a cluster see
//! it). Redis must be reachable at 127.0.0.1:6379; the test starts a local `redis-server`
//! if it is down and fails if it cannot.

use rhizo_queue::{MemoryQueues, QueueError, QueueKey, QueueStore, RedisQueues};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REDIS: &str = "redis://127.0.0.1:6379/0";

fn redis_up() -> bool {
    Command::new("redis-cli")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

async fn ensure_redis() {
    if redis_up() {
        return;
    }
    let _ = Command::new("redis-server")
        .args(["--daemonize", "yes", "--port", "6379", "--save", ""])
        .status();
    for _ in 0..100 {
        if redis_up() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Redis is needed on 127.0.0.1:6379 and did not start");
}

fn key(ws: &str, name: &str) -> QueueKey {
    QueueKey::new(ws, name).unwrap()
}

fn t(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Every method through `a`; `b` is a second view of the same queues (the same store,
/// or another node's store on the same Redis).
async fn exercise(a: Arc<dyn QueueStore>, b: Arc<dyn QueueStore>) {
    let jobs = key("ws-a", "jobs");
    let other_ws = key("ws-b", "jobs");
    assert_eq!(a.len(&jobs).await, Ok(0));
    assert_eq!(a.peek(&jobs, 3).await, Ok(vec![]));
    assert_eq!(a.pop(&jobs, Duration::ZERO).await, Ok(None));

    // FIFO, seen from both views; other workspaces untouched.
    assert_eq!(a.push(&jobs, t("1"), 3).await, Ok(1));
    assert_eq!(b.push(&jobs, t("2"), 3).await, Ok(2));
    assert_eq!(a.push(&jobs, t("3"), 3).await, Ok(3));
    assert_eq!(
        b.push(&jobs, t("4"), 3).await,
        Err(QueueError::Full {
            name: "jobs".into(),
            max: 3
        })
    );
    assert_eq!(b.len(&jobs).await, Ok(3));
    assert_eq!(b.len(&other_ws).await, Ok(0));
    assert_eq!(
        a.peek(&jobs, 2).await,
        Ok(vec![t("1"), t("2")]),
        "pop order"
    );
    assert_eq!(a.peek(&jobs, 10).await, Ok(vec![t("1"), t("2"), t("3")]));
    assert_eq!(b.pop(&jobs, Duration::ZERO).await, Ok(Some(t("1"))));
    assert_eq!(a.pop(&jobs, Duration::from_secs(1)).await, Ok(Some(t("2"))));
    assert_eq!(b.pop(&other_ws, Duration::ZERO).await, Ok(None));
    assert_eq!(a.pop(&jobs, Duration::ZERO).await, Ok(Some(t("3"))));
    assert_eq!(a.len(&jobs).await, Ok(0));

    // An empty pop waits its timeout, then answers None.
    let started = Instant::now();
    assert_eq!(a.pop(&jobs, Duration::from_millis(300)).await, Ok(None));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");

    // A waiting pop gets a task pushed through the other view while it waits.
    let waiter = {
        let a = a.clone();
        let jobs = jobs.clone();
        tokio::spawn(async move { a.pop(&jobs, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.push(&jobs, t("late"), 3).await, Ok(1));
    assert_eq!(waiter.await.unwrap(), Ok(Some(t("late"))));

    // Several waiters, several pushes: each task goes to exactly one of them.
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let jobs = jobs.clone();
            tokio::spawn(async move { s.pop(&jobs, Duration::from_secs(10)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..4 {
        a.push(&jobs, t(&format!("w{i}")), 10).await.unwrap();
    }
    let mut got = Vec::new();
    for w in waiters {
        got.push(w.await.unwrap().unwrap().expect("every waiter gets one"));
    }
    got.sort();
    assert_eq!(got, vec![t("w0"), t("w1"), t("w2"), t("w3")]);
    assert_eq!(a.len(&jobs).await, Ok(0));
}

#[tokio::test]
async fn memory_queues_meet_the_contract() {
    let s: Arc<dyn QueueStore> = Arc::new(MemoryQueues::new());
    exercise(s.clone(), s).await;
}

#[tokio::test]
async fn redis_queues_meet_the_contract_across_two_nodes() {
    ensure_redis().await;
    let prefix = format!("rhizo-test-queue-{}", std::process::id());
    let a: Arc<dyn QueueStore> = Arc::new(RedisQueues::new(REDIS, &prefix).unwrap());
    let b: Arc<dyn QueueStore> = Arc::new(RedisQueues::new(REDIS, &prefix).unwrap());
    exercise(a, b).await;
    let r = RedisQueues::new(REDIS, &prefix).unwrap();
    assert_eq!(
        r.redis_key(&key("ws-a", "jobs")),
        format!("{prefix}:queue:ws-a:jobs")
    );
    let left = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}:*")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "empty queues leave no keys"
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_not_a_hang() {
    let s = RedisQueues::new("redis://127.0.0.1:1/0", "x").unwrap();
    let started = Instant::now();
    let e = s.len(&key("w", "q")).await.unwrap_err();
    assert!(matches!(e, QueueError::Store(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
