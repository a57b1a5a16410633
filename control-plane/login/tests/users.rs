//! The `UserStore` contract (local accounts), run unchanged against the in-memory store,
//! SQLite (a temp file, reopened to prove the rows survive a restart; and
//! `sqlite::memory:`) and PostgreSQL (a database of its own, dropped at the end). PostgreSQL
//! is expected at `postgres://postgres@127.0.0.1:5432` (trust auth); the test starts the
//! local cluster if it is down. If it is still unreachable the PostgreSQL test fails when
//! `CI` is set and is skipped with a message otherwise.

use rhizo_login::password;
use rhizo_login::users::{normalize_email, UserRecord, UserStore, UserStoreError};
use sqlx::Connection as _;

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn record(id: &str, email: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        email: normalize_email(email),
        name: Some("Ålice \"A\"".into()),
        password_hash: password::hash("s3cret-pass"),
        created_at: 1_800_000_000,
    }
}

/// Exercises every method; leaves `alice@example.org` behind for [`check_persisted`].
async fn exercise(store: &UserStore) {
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(store.by_email("alice@example.org").await.unwrap(), None);
    let alice = record("u-alice", "  Alice@Example.ORG ");
    assert_eq!(alice.email, "alice@example.org");
    store.insert(&alice).await.unwrap();
    let got = store.by_email("alice@example.org").await.unwrap().unwrap();
    assert_eq!(got, alice, "every column round-trips");
    assert!(password::verify("s3cret-pass", &got.password_hash));

    // The e-mail is unique, and so is the id.
    let again = record("u-other", "alice@example.org");
    assert!(matches!(
        store.insert(&again).await,
        Err(UserStoreError::Duplicate)
    ));
    let same_id = record("u-alice", "bob@example.org");
    assert!(matches!(
        store.insert(&same_id).await,
        Err(UserStoreError::Duplicate)
    ));
    let mut bob = record("u-bob", "bob@example.org");
    bob.name = None;
    store.insert(&bob).await.unwrap();
    assert_eq!(store.by_email("bob@example.org").await.unwrap(), Some(bob));
    assert_eq!(store.count().await.unwrap(), 2);
}

async fn check_persisted(store: &UserStore) {
    let got = store.by_email("alice@example.org").await.unwrap().unwrap();
    assert_eq!(got.id, "u-alice");
    assert_eq!(store.count().await.unwrap(), 2);
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    exercise(&UserStore::memory()).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("rhizo-login-{:016x}", rand::random::<u64>()));
    let uri = format!("sqlite://{}", dir.join("rhizo.db").display());
    let store = UserStore::connect(&uri).await.unwrap();
    exercise(&store).await;
    store.close().await;
    let reopened = UserStore::connect(&uri).await.unwrap();
    check_persisted(&reopened).await;
    reopened.close().await;
    // The control plane's own tables migrate into the same file beside ours.
    rhizo_control_plane::storage::SqlStore::connect(&uri)
        .await
        .expect("the control plane's migrations run after ours");
    let again = UserStore::connect(&uri).await.unwrap();
    check_persisted(&again).await;
    again.close().await;
    let _ = std::fs::remove_dir_all(dir);

    let mem = UserStore::connect("sqlite::memory:").await.unwrap();
    exercise(&mem).await;
}

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let mut admin = match rhizo_control_plane::storage::postgres_admin(PG_SERVER).await {
        Ok(conn) => conn,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{why}"),
        Err(why) => {
            eprintln!("skipping the PostgreSQL test: {why}");
            return;
        }
    };
    let db = format!("rhizo_login_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let uri = format!("{PG_SERVER}/{db}");
    let outcome = tokio::spawn(async move {
        let store = UserStore::connect(&uri).await.unwrap();
        exercise(&store).await;
        store.close().await;
        let reopened = UserStore::connect(&uri).await.unwrap();
        check_persisted(&reopened).await;
        reopened.close().await;
    })
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
