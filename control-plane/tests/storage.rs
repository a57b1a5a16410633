//! The `Store` contract, run unchanged against the in-memory store, SQLite (a temp file,
//! reopened to prove the data survives a restart; and `sqlite::memory:`) and PostgreSQL (a database of its own,
//! dropped at the end). PostgreSQL must be reachable at `postgres://postgres@127.0.0.1:5432`
//! (trust auth); the test starts the local cluster if it is down and fails if it cannot.

use rhizo_control_plane::storage::{
    now_unix, token_hash, Block, BlockKind, EventFilter, MemoryStore, SqlStore, Store, StoreError,
    WorkspaceRecord,
};
use serde_json::json;
use sqlx::Connection as _;
use std::sync::Arc;

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn record(id: &str) -> WorkspaceRecord {
    let config = json!({
        "bookmarks": [{"bookmark_type": "workspace", "id": id, "name": id, "description": ""}],
        "environs": {"KEY": "välue with \"quotes\""},
    });
    let service_types =
        json!({"echo-type": {"id": "echo-type", "name": "Echo", "definition": {"n": 1}}});
    WorkspaceRecord {
        id: id.into(),
        name: format!("{id} name"),
        description: "a workspace".into(),
        persistent: true,
        owners: vec!["alice".into(), "bob@example.com".into()],
        read_only: false,
        config: serde_json::from_value(config).unwrap(),
        service_types: serde_json::from_value(service_types).unwrap(),
    }
}

/// Exercises every method; leaves `ws-keep`, a revocation of `tok-keep` and three events of
/// alice in `ws-keep` behind for [`check_persisted`].
async fn exercise(store: Arc<dyn Store>) {
    store.ping().await.expect("a live store answers ping");
    // --- workspaces
    assert_eq!(store.get_workspace("ws-keep").await.unwrap(), None);
    assert!(store.list_workspaces().await.unwrap().is_empty());
    let mut keep = record("ws-keep");
    store.put_workspace(&keep).await.unwrap();
    store.put_workspace(&record("ws-gone")).await.unwrap();
    assert_eq!(
        store.get_workspace("ws-keep").await.unwrap(),
        Some(keep.clone())
    );

    // Upsert replaces every field.
    keep.name = "renamed".into();
    keep.persistent = false;
    keep.read_only = true;
    keep.owners = vec![];
    keep.config.insert("environs".into(), json!({}));
    keep.service_types.clear();
    store.put_workspace(&keep).await.unwrap();
    assert_eq!(
        store.get_workspace("ws-keep").await.unwrap(),
        Some(keep.clone())
    );

    let ids: Vec<String> = store
        .list_workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["ws-gone", "ws-keep"]);
    assert!(store.delete_workspace("ws-gone").await.unwrap());
    assert!(!store.delete_workspace("ws-gone").await.unwrap());
    assert_eq!(store.get_workspace("ws-gone").await.unwrap(), None);
    assert_eq!(store.list_workspaces().await.unwrap(), vec![keep]);

    // --- revocation
    let now = now_unix();
    let (a, b) = (token_hash("tok-a"), token_hash("tok-b"));
    assert!(!store.is_revoked(&a).await.unwrap());
    store.revoke_token(&a, now + 3600).await.unwrap();
    store.revoke_token(&b, now - 10).await.unwrap(); // already expired: ignored
    assert!(store.is_revoked(&a).await.unwrap());
    assert!(!store.is_revoked(&b).await.unwrap());
    assert!(!store.is_revoked(&token_hash("tok-unknown")).await.unwrap());
    // Revoking again with an earlier expiry keeps the later one.
    store.revoke_token(&a, now + 5).await.unwrap();
    assert_eq!(store.purge_expired_revocations(now + 100).await.unwrap(), 1);
    assert!(store.is_revoked(&a).await.unwrap());
    assert_eq!(
        store.purge_expired_revocations(now + 7200).await.unwrap(),
        1
    );
    assert!(!store.is_revoked(&a).await.unwrap());
    store
        .revoke_token(&token_hash("tok-keep"), now + 3600)
        .await
        .unwrap();

    // --- blocks
    assert!(store.list_blocks(now).await.unwrap().is_empty());
    let block = |kind, key: &str, reason: &str, expires_at| Block {
        kind,
        key: key.into(),
        reason: reason.into(),
        expires_at,
    };
    store
        .put_block(&block(BlockKind::User, "mallory", "spam", now + 60))
        .await
        .unwrap();
    store
        .put_block(&block(BlockKind::Ip, "10.0.0.9", "", now + 60))
        .await
        .unwrap();
    store
        .put_block(&block(BlockKind::User, "old", "", now - 1))
        .await
        .unwrap(); // already expired: not listed
                   // Blocking again replaces the reason and the expiry.
    store
        .put_block(&block(BlockKind::User, "mallory", "abuse", now + 3600))
        .await
        .unwrap();
    assert_eq!(
        store.list_blocks(now).await.unwrap(),
        vec![
            block(BlockKind::Ip, "10.0.0.9", "", now + 60),
            block(BlockKind::User, "mallory", "abuse", now + 3600),
        ]
    );
    assert_eq!(store.list_blocks(now + 100).await.unwrap().len(), 1);
    assert!(store.delete_block(BlockKind::Ip, "10.0.0.9").await.unwrap());
    assert!(!store.delete_block(BlockKind::Ip, "10.0.0.9").await.unwrap());
    // The same key under the other kind is a different row.
    assert!(!store.delete_block(BlockKind::Ip, "mallory").await.unwrap());

    // --- event logs
    let logged = store
        .log_event("ws-keep", "alice", "login", Some(&json!({"n": 1})), 1_000)
        .await
        .unwrap();
    assert_eq!(logged.data, Some(json!({"n": 1})));
    store
        .log_event("ws-keep", "alice", "log", Some(&json!("hello")), 2_000)
        .await
        .unwrap();
    let last = store
        .log_event("ws-keep", "alice", "login", None, 3_000)
        .await
        .unwrap();
    assert!(last.id > logged.id);
    // Other users' and workspaces' rows are never returned.
    store
        .log_event("ws-keep", "bob", "login", None, 2_000)
        .await
        .unwrap();
    store
        .log_event("ws-other", "alice", "login", None, 2_000)
        .await
        .unwrap();
    check_events(store.as_ref()).await;
}

async fn check_events(store: &dyn Store) {
    let all = EventFilter::new("ws-keep", "alice");
    let events = store.get_events(&all).await.unwrap();
    let summary: Vec<(&str, i64)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.timestamp_ms))
        .collect();
    assert_eq!(
        summary,
        [("login", 1_000), ("log", 2_000), ("login", 3_000)]
    );
    assert!(events
        .iter()
        .all(|e| e.workspace == "ws-keep" && e.user_id == "alice"));
    assert_eq!(events[0].data, Some(json!({"n": 1})));
    assert_eq!(events[1].data, Some(json!("hello")));
    assert_eq!(events[2].data, None);

    let logins = EventFilter {
        event_type: Some("login".into()),
        ..all.clone()
    };
    assert_eq!(store.get_events(&logins).await.unwrap().len(), 2);
    // Bounds are inclusive.
    let window = EventFilter {
        start_ms: Some(2_000),
        end_ms: Some(3_000),
        ..all.clone()
    };
    let in_window: Vec<i64> = store
        .get_events(&window)
        .await
        .unwrap()
        .iter()
        .map(|e| e.timestamp_ms)
        .collect();
    assert_eq!(in_window, [2_000, 3_000]);
    let before = EventFilter {
        event_type: Some("login".into()),
        end_ms: Some(2_999),
        ..all.clone()
    };
    assert_eq!(store.get_events(&before).await.unwrap().len(), 1);

    assert_eq!(
        store.event_stats(&all).await.unwrap(),
        [("log".to_string(), 1), ("login".to_string(), 2)]
    );
    assert_eq!(
        store.event_stats(&window).await.unwrap(),
        [("log".to_string(), 1), ("login".to_string(), 1)]
    );
    assert!(store
        .event_stats(&EventFilter::new("ws-keep", "nobody"))
        .await
        .unwrap()
        .is_empty());
}

/// What [`exercise`] left behind, seen through a fresh connection.
async fn check_persisted(store: &dyn Store) {
    let ids: Vec<String> = store
        .list_workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["ws-keep"]);
    let keep = store.get_workspace("ws-keep").await.unwrap().unwrap();
    assert_eq!(keep.name, "renamed");
    assert!(keep.read_only);
    assert_eq!(keep.config["environs"], json!({}));
    assert!(keep.config["bookmarks"].is_array());
    assert!(store.is_revoked(&token_hash("tok-keep")).await.unwrap());
    assert!(!store.is_revoked(&token_hash("tok-a")).await.unwrap());
    let blocks = store.list_blocks(now_unix()).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0].key.as_str(), blocks[0].reason.as_str()),
        ("mallory", "abuse")
    );
    check_events(store).await;
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rhizo-storage-{:016x}", rand::random::<u64>()))
}

#[tokio::test]
async fn sqlite_file_store_keeps_data_across_reopen() {
    let dir = temp_dir();
    // The parent directories do not exist yet: connect creates them.
    let uri = format!("sqlite://{}", dir.join("nested/rhizo.db").display());
    let store = SqlStore::connect(&uri).await.unwrap();
    exercise(Arc::new(store.clone())).await;
    store.close().await;

    // A restart: new pool, migrations run again (no-op), same data.
    let reopened = SqlStore::connect(&uri).await.unwrap();
    check_persisted(&reopened).await;
    reopened.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    let store = Arc::new(MemoryStore::new());
    exercise(store.clone()).await;
    check_persisted(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_memory_store_meets_the_contract() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    exercise(Arc::new(store.clone())).await;
    check_persisted(&store).await;
    store.close().await;
    assert!(
        store.ping().await.is_err(),
        "a closed store must fail its ping"
    );
}

#[tokio::test]
async fn bad_uris_fail_with_a_clear_message() {
    let err = SqlStore::connect("mysql://u:pw@h/db").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUri { .. }), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");

    // A regular file where a directory is needed.
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let uri = format!("sqlite://{}", file.join("db.sqlite").display());
    let err = SqlStore::connect(&uri).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot open database at {uri}: ")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_hash_is_sha256_hex() {
    assert_eq!(
        token_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// A connection to the `postgres` maintenance database (the cluster is started if it is
/// down). Panics if PostgreSQL cannot be reached.
async fn pg_admin() -> sqlx::PgConnection {
    rhizo_control_plane::storage::postgres_admin(PG_SERVER)
        .await
        .unwrap_or_else(|why| panic!("{why}"))
}

#[tokio::test]
async fn postgres_store_meets_the_contract_and_keeps_data() {
    let db = format!("rhizo_test_{:016x}", rand::random::<u64>());
    let mut admin = pg_admin().await;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();

    let uri = format!("{PG_SERVER}/{db}");
    let outcome = tokio::spawn(async move {
        let store = SqlStore::connect(&uri).await.unwrap();
        exercise(Arc::new(store.clone())).await;
        store.close().await;
        let reopened = SqlStore::connect(&uri).await.unwrap();
        check_persisted(&reopened).await;
        reopened.close().await;
    })
    .await;

    // Drop the database whether or not the body passed.
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
