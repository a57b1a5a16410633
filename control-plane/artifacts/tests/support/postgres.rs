//! A fresh PostgreSQL database on 127.0.0.1:5432 (trust auth) for one test, dropped after
//! it whether or not the test passed. Included with `#[path = "support/postgres.rs"]`.

use sqlx::Connection as _;
use std::future::Future;

/// The server the tests use.
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Runs `body` with the URI of a new database named `{prefix}_{random}` and drops the
/// database afterwards; a panic in `body` is re-raised after the drop. Without a
/// reachable server the test is skipped with a message, or fails when `CI` is set (the
/// cluster is started by `postgres_admin` if it is down).
pub async fn with_database<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut admin = match rhizo_control_plane::storage::postgres_admin(PG_SERVER).await {
        Ok(conn) => conn,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{why}"),
        Err(why) => {
            eprintln!("skipping the PostgreSQL test: {why}");
            return;
        }
    };
    let db = format!("{prefix}_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let outcome = tokio::spawn(body(format!("{PG_SERVER}/{db}"))).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
