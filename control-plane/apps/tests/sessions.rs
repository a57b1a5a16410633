//! The `SessionStore` contract, run unchanged against [`MemorySessions`] and
//! [`RedisSessions`] (two stores on one Redis under a prefix of their own, as two nodes of a
//! cluster see it). Redis must be reachable at 127.0.0.1:6379; the test starts a local
//! `redis-server` if it is down and fails if it cannot.

use rhizo_apps::{Load, LockGuard, MemorySessions, RedisSessions, SessionStore};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

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

fn ids(list: &[serde_json::Value]) -> HashSet<String> {
    list.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every method through `a`; `b` is a second view of the same records (the same store,
/// or another node's store on the same Redis).
async fn exercise(a: Arc<dyn SessionStore>, b: Arc<dyn SessionStore>) {
    // --- records
    assert!(a.list().await.unwrap().is_empty());
    assert_eq!(a.get("ws/_rapp_x__rlb").await.unwrap(), None);
    let rec = json!({
        "id": "ws/_rapp_x__rlb", "app_id": "x", "workspace": "ws", "daemon": true,
        "stop_after_inactive": 2.5, "services": [{"id": "ws/_rapp_x__rlb:echo"}],
    });
    a.put(rec.clone(), None).await.unwrap();
    assert_eq!(
        b.get("ws/_rapp_x__rlb").await.unwrap(),
        Some(rec.clone()),
        "types round-trip"
    );
    let mut changed = rec.clone();
    changed["status"] = json!("running");
    b.put(changed.clone(), None).await.unwrap();
    assert_eq!(
        a.get("ws/_rapp_x__rlb").await.unwrap(),
        Some(changed.clone())
    );
    let err = a.put(json!({"no": "id"}), None).await.unwrap_err();
    assert!(err.to_string().contains("`id`"), "{err}");
    a.put(json!({"id": "ws/_rapp_y__rlb"}), None).await.unwrap();
    assert_eq!(
        ids(&b.list().await.unwrap()),
        HashSet::from(["ws/_rapp_x__rlb".to_owned(), "ws/_rapp_y__rlb".to_owned()])
    );

    // Expiry: a record with a TTL goes by itself, and from the listing.
    a.put(
        json!({"id": "ws/_rapp_t__rlb"}),
        Some(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    assert!(b.get("ws/_rapp_t__rlb").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(b.get("ws/_rapp_t__rlb").await.unwrap(), None);
    assert_eq!(a.list().await.unwrap().len(), 2);

    // Remove is atomic: of two concurrent removers exactly one gets the record.
    let (r1, r2) = tokio::join!(a.remove("ws/_rapp_x__rlb"), b.remove("ws/_rapp_x__rlb"));
    let got: Vec<_> = [r1.unwrap(), r2.unwrap()].into_iter().flatten().collect();
    assert_eq!(got, vec![changed]);
    assert_eq!(a.get("ws/_rapp_x__rlb").await.unwrap(), None);
    assert_eq!(
        ids(&a.list().await.unwrap()),
        HashSet::from(["ws/_rapp_y__rlb".to_owned()])
    );
    assert!(a.remove("ws/_rapp_y__rlb").await.unwrap().is_some());
    assert!(b.list().await.unwrap().is_empty());

    // --- locks
    let ttl = Duration::from_millis(300);
    let held = a
        .try_lock("app-stop-lock:ws/s", ttl)
        .await
        .unwrap()
        .expect("free");
    assert!(
        b.try_lock("app-stop-lock:ws/s", ttl)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(
        a.try_lock("app-stop-lock:ws/other", ttl)
            .await
            .unwrap()
            .is_some(),
        "per name"
    );
    b.unlock(&held).await.unwrap();
    let again = b
        .try_lock("app-stop-lock:ws/s", ttl)
        .await
        .unwrap()
        .expect("released");
    // A stale holder's unlock leaves the new holder's lock alone.
    a.unlock(&held).await.unwrap();
    assert!(a
        .try_lock("app-stop-lock:ws/s", ttl)
        .await
        .unwrap()
        .is_none());
    // Expiry frees a lock nobody released.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let after = a.try_lock("app-stop-lock:ws/s", ttl).await.unwrap();
    assert!(after.is_some(), "expired");
    let after = after.unwrap();
    assert_ne!(after.token, again.token);

    // Compare and extend (the leader lease): the holder extends, a stale holder cannot.
    let lease = a
        .try_lock("autoscaler-leader-test", ttl)
        .await
        .unwrap()
        .expect("free");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            b.extend(&lease, ttl).await.unwrap(),
            "extended by its holder"
        );
    }
    // 450 ms after it was taken with a 300 ms TTL, it is still held.
    assert!(a
        .try_lock("autoscaler-leader-test", ttl)
        .await
        .unwrap()
        .is_none());
    let stale = LockGuard {
        name: lease.name.clone(),
        token: "not-the-holder".into(),
    };
    assert!(!a.extend(&stale, ttl).await.unwrap(), "not ours");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(
        !a.extend(&lease, ttl).await.unwrap(),
        "expired: not extended"
    );
    let next = b
        .try_lock("autoscaler-leader-test", ttl)
        .await
        .unwrap()
        .expect("expired lease is free");
    assert!(!a.extend(&lease, ttl).await.unwrap(), "a new holder's");
    a.unlock(&next).await.unwrap();

    // --- disabled workers
    assert!(a.disabled_workers("ws").await.unwrap().is_empty());
    a.set_worker_disabled("ws", "ws/c:w", true).await.unwrap();
    a.set_worker_disabled("ws", "ws/d:w", true).await.unwrap();
    a.set_worker_disabled("ws2", "ws2/c:w", true).await.unwrap();
    assert_eq!(
        b.disabled_workers("ws").await.unwrap(),
        HashSet::from(["ws/c:w".to_owned(), "ws/d:w".to_owned()])
    );
    b.set_worker_disabled("ws", "ws/c:w", false).await.unwrap();
    b.set_worker_disabled("ws", "ws/never:w", false)
        .await
        .unwrap();
    assert_eq!(
        a.disabled_workers("ws").await.unwrap(),
        HashSet::from(["ws/d:w".to_owned()])
    );

    // --- instance loads (the autoscaler's published figures)
    let x = "ws/_rapp_lx__rlb".to_owned();
    let y = "ws/_rapp_ly__rlb".to_owned();
    let unknown = "ws/_rapp_never__rlb".to_owned();
    assert!(a.loads(&[]).await.unwrap().is_empty());
    assert!(a
        .loads(&[x.clone(), unknown.clone()])
        .await
        .unwrap()
        .is_empty());
    a.put_loads(&[], Duration::from_secs(5)).await.unwrap();
    let load = |requests_per_minute: f64, in_flight: f64| Load {
        requests_per_minute,
        in_flight,
    };
    let short = Duration::from_millis(200);
    a.put_loads(
        &[(x.clone(), load(120.5, 3.0)), (y.clone(), load(0.0, 0.0))],
        short,
    )
    .await
    .unwrap();
    let got = b
        .loads(&[x.clone(), y.clone(), unknown.clone()])
        .await
        .unwrap();
    assert_eq!(
        got,
        HashMap::from([(x.clone(), load(120.5, 3.0)), (y.clone(), load(0.0, 0.0))]),
        "read by another node; unknown ids left out"
    );
    // A newer figure replaces the old one (and renews its TTL); the other expires.
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.put_loads(&[(x.clone(), load(3000.0, 0.5))], Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.loads(&[x.clone(), y.clone()]).await.unwrap(),
        HashMap::from([(x.clone(), load(3000.0, 0.5))]),
        "y expired, x renewed"
    );
    a.put_loads(&[(x.clone(), load(1.0, 1.0))], Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        b.loads(std::slice::from_ref(&x)).await.unwrap().is_empty(),
        "expired"
    );
}

#[test]
fn load_figures_round_trip_through_their_text() {
    let l = Load {
        requests_per_minute: 1234.5,
        in_flight: 7.0,
    };
    assert_eq!(Load::decode(&l.encode()), Some(l));
    assert_eq!(
        Load::decode("60"),
        Some(Load {
            requests_per_minute: 60.0,
            in_flight: 0.0
        }),
        "a bare number is requests per minute"
    );
    for bad in ["", "x", "1 y", "1 2 3", "1  2"] {
        assert_eq!(Load::decode(bad), None, "{bad:?}");
    }
}

#[tokio::test]
async fn memory_sessions_meet_the_contract() {
    let s: Arc<dyn SessionStore> = Arc::new(MemorySessions::default());
    exercise(s.clone(), s).await;
}

#[tokio::test]
async fn redis_sessions_meet_the_contract_across_two_nodes() {
    ensure_redis().await;
    let prefix = format!("rhizo-test-sessions-{}", std::process::id());
    let a: Arc<dyn SessionStore> = Arc::new(RedisSessions::new(REDIS, &prefix).unwrap());
    let b: Arc<dyn SessionStore> = Arc::new(RedisSessions::new(REDIS, &prefix).unwrap());
    exercise(a, b).await;
    let left = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{prefix}:*")])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout).to_string();
    // Only the expiring test locks may remain (they go by themselves within 300 ms).
    assert!(
        left.lines()
            .all(|k| k.contains(":apps:lock:") || k.contains(":apps:disabled:")),
        "{left}"
    );
    for k in left.lines() {
        let _ = Command::new("redis-cli").args(["del", k]).output();
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_not_a_hang() {
    let bad = RedisSessions::new("redis://127.0.0.1:1/0", "rhizo-test-down").unwrap();
    // Bounded by the store's own connect timeout (5 s); the outer one only keeps a
    // regression from hanging the suite.
    let err = tokio::time::timeout(Duration::from_secs(60), bad.list())
        .await
        .expect("the store gives up by itself")
        .unwrap_err();
    assert!(
        err.to_string().starts_with("the session store failed"),
        "{err}"
    );
    let err = bad.put(json!({"id": "w/a"}), None).await.unwrap_err();
    assert!(
        err.to_string().starts_with("the session store failed"),
        "{err}"
    );
    assert!(RedisSessions::new("not a url", "p").is_err());
}
