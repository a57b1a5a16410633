//! The `ArtifactStore` contract, run unchanged against the in-memory store, SQLite (a temp
//! file, reopened to prove the rows survive a restart; and `sqlite::memory:`) and
//! PostgreSQL (a database of its own, dropped at the end). PostgreSQL is expected at
//! `postgres://postgres@127.0.0.1:5432` (trust auth); the test starts the local cluster if
//! it is down. If it is still unreachable the PostgreSQL test fails when `CI` is set and
//! is skipped with a message otherwise.

use rhizo_artifacts::ids::{generate_alias, resolve_artifact_id, TemplateContext};
use rhizo_artifacts::model::new_artifact_id;
use rhizo_artifacts::{
    Artifact, ArtifactError, ArtifactStore, MemoryArtifactStore, SqlArtifactStore, StoreError,
    Version,
};
use serde_json::json;
use std::sync::Arc;

#[path = "support/postgres.rs"]
mod postgres;

/// A row with every column set to something a round trip could get wrong.
fn full_row(workspace: &str, alias: &str) -> Artifact {
    let mut a = Artifact::new(workspace, alias);
    a.kind = Some("collection".into());
    a.manifest = Some(json!({"name": "Välue \"quoted\"", "tags": ["a", "b"], "n": 1.5}));
    a.staging =
        Some(json!({"manifest": {}, "files": [{"path": "x.txt"}], "_intent": "new_version"}));
    a.download_count = 2.5;
    a.view_count = 3.0;
    a.file_count = 7;
    a.created_at = 1_700_000_000;
    a.created_by = Some("alice".into());
    a.last_modified = 1_700_000_100;
    a.versions = vec![Version {
        version: "v0".into(),
        comment: Some("Initial version".into()),
        created_at: 1_700_000_000,
    }];
    a.config = Some(json!({"permissions": {"alice": "*", "*": "r"}, "id_parts": {"c": ["red"]}}));
    a.secrets = Some(json!({"S3_ACCESS_KEY_ID": "k"}));
    a
}

fn child(workspace: &str, alias: &str, parent: &Artifact) -> Artifact {
    let mut a = Artifact::new(workspace, alias);
    a.parent_id = Some(parent.id.clone());
    a
}

fn aliases(rows: &[Artifact]) -> Vec<&str> {
    rows.iter().filter_map(|a| a.alias.as_deref()).collect()
}

/// Exercises every method; leaves `ws-keep/keep` (with 3 views) behind for
/// [`check_persisted`] and returns its id.
async fn exercise(store: Arc<dyn ArtifactStore>) -> String {
    store.ping().await.expect("a live store answers ping");

    // --- insert and get
    let coll = full_row("ws-a", "coll");
    assert_eq!(store.get(&coll.id).await.unwrap(), None);
    assert_eq!(store.get_by_alias("ws-a", "coll").await.unwrap(), None);
    store.insert(&coll).await.unwrap();
    assert_eq!(store.get(&coll.id).await.unwrap(), Some(coll.clone()));
    assert_eq!(
        store.get_by_alias("ws-a", "coll").await.unwrap(),
        Some(coll.clone())
    );
    assert_eq!(store.get_by_alias("ws-b", "coll").await.unwrap(), None);

    // A minimal row keeps its NULLs.
    let bare = Artifact {
        kind: None,
        ..Artifact::new("ws-a", "bare")
    };
    store.insert(&bare).await.unwrap();
    assert_eq!(store.get(&bare.id).await.unwrap(), Some(bare.clone()));

    // --- insert errors
    let err = store
        .insert(&Artifact::new("ws-a", "coll"))
        .await
        .unwrap_err();
    match &err {
        ArtifactError::AliasExists { workspace, alias } => {
            assert_eq!((workspace.as_str(), alias.as_str()), ("ws-a", "coll"));
        }
        other => panic!("expected AliasExists, got {other:?}"),
    }
    // The same alias in another workspace is fine.
    let other_ws = Artifact::new("ws-b", "coll");
    store.insert(&other_ws).await.unwrap();
    // The same id again.
    let same_id = Artifact {
        alias: Some("fresh".into()),
        ..coll.clone()
    };
    let err = store.insert(&same_id).await.unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidArgument(_)), "{err:?}");
    // A parent that does not exist.
    let orphan = Artifact {
        parent_id: Some(new_artifact_id()),
        ..Artifact::new("ws-a", "orphan")
    };
    let err = store.insert(&orphan).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound(_)), "{err:?}");
    assert_eq!(store.get_by_alias("ws-a", "orphan").await.unwrap(), None);
    // Rows without an alias never conflict with each other.
    let mut nameless = Artifact::new("ws-a", "x");
    nameless.alias = None;
    store.insert(&nameless).await.unwrap();
    nameless.id = new_artifact_id();
    store.insert(&nameless).await.unwrap();

    // --- children
    let kids: Vec<Artifact> = ["c0", "c1", "c2", "c3"]
        .iter()
        .map(|alias| child("ws-a", alias, &coll))
        .collect();
    for kid in &kids {
        store.insert(kid).await.unwrap();
    }
    assert_eq!(store.count_children(&coll.id).await.unwrap(), 4);
    assert_eq!(store.count_children(&bare.id).await.unwrap(), 0);
    let all = store.list_children(&coll.id, 0, 100).await.unwrap();
    assert_eq!(aliases(&all), ["c0", "c1", "c2", "c3"]);
    assert_eq!(all[2], kids[2]);
    let page = store.list_children(&coll.id, 1, 2).await.unwrap();
    assert_eq!(aliases(&page), ["c1", "c2"]);
    assert!(store
        .list_children(&coll.id, 4, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_children(&coll.id, 0, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_children(&bare.id, 0, 10)
        .await
        .unwrap()
        .is_empty());

    // --- listing a workspace (ordered by id = creation order)
    let ws_a = store.list_workspace("ws-a", 0, 100).await.unwrap();
    assert_eq!(ws_a.len(), 8);
    assert_eq!(ws_a[0].id, coll.id);
    assert!(ws_a.windows(2).all(|w| w[0].id < w[1].id));
    assert!(ws_a.iter().all(|a| a.workspace == "ws-a"));
    let ws_b = store.list_workspace("ws-b", 0, 100).await.unwrap();
    assert_eq!(ws_b, std::slice::from_ref(&other_ws));
    assert_eq!(store.list_workspace("ws-a", 7, 5).await.unwrap().len(), 1);
    assert!(store
        .list_workspace("ws-none", 0, 5)
        .await
        .unwrap()
        .is_empty());

    // --- update replaces the row, keeps id and created_at, stamps last_modified
    let mut edited = coll.clone();
    edited.manifest = Some(json!({"name": "renamed"}));
    edited.staging = None;
    edited.versions.push(Version {
        version: "gold".into(),
        comment: None,
        created_at: 1_700_000_200,
    });
    edited.secrets = None;
    edited.alias = Some("coll-renamed".into());
    edited.created_at = 1; // ignored
    let stored = store.update(&edited, 1_800_000_000).await.unwrap();
    assert_eq!(stored.created_at, coll.created_at);
    assert_eq!(stored.last_modified, 1_800_000_000);
    assert_eq!(stored.manifest, edited.manifest);
    assert_eq!(store.get(&coll.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.get_by_alias("ws-a", "coll").await.unwrap(), None);
    assert_eq!(
        store.get_by_alias("ws-a", "coll-renamed").await.unwrap(),
        Some(stored.clone())
    );

    // --- update errors
    let mut clash = kids[0].clone();
    clash.alias = Some("coll-renamed".into());
    let err = store.update(&clash, 1).await.unwrap_err();
    assert!(matches!(err, ArtifactError::AliasExists { .. }), "{err:?}");
    let err = store
        .update(&Artifact::new("ws-a", "ghost"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound(_)), "{err:?}");
    let mut lost = kids[0].clone();
    lost.parent_id = Some(new_artifact_id());
    let err = store.update(&lost, 1).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound(_)), "{err:?}");
    assert_eq!(store.get(&kids[0].id).await.unwrap(), Some(kids[0].clone()));

    // --- counters: atomic under concurrency, last_modified untouched
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let id = kids[1].id.clone();
            tokio::spawn(async move { store.add_views(&id, 1.0).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    store.add_downloads(&kids[1].id, 0.5).await.unwrap();
    store.add_downloads(&kids[1].id, 2.0).await.unwrap();
    let counted = store.get(&kids[1].id).await.unwrap().unwrap();
    assert_eq!(counted.view_count, 16.0);
    assert_eq!(counted.download_count, 2.5);
    assert_eq!(counted.last_modified, kids[1].last_modified);
    let ghost = new_artifact_id();
    assert!(matches!(
        store.add_views(&ghost, 1.0).await,
        Err(ArtifactError::NotFound(_))
    ));
    assert!(matches!(
        store.add_downloads(&ghost, 1.0).await,
        Err(ArtifactError::NotFound(_))
    ));

    // --- delete: the children become roots
    assert!(store.delete(&kids[3].id).await.unwrap());
    assert!(!store.delete(&kids[3].id).await.unwrap());
    assert_eq!(store.get(&kids[3].id).await.unwrap(), None);
    assert_eq!(store.count_children(&coll.id).await.unwrap(), 3);
    assert!(store.delete(&coll.id).await.unwrap());
    assert_eq!(store.count_children(&coll.id).await.unwrap(), 0);
    let former = store.get(&kids[0].id).await.unwrap().unwrap();
    assert_eq!(former.parent_id, None);
    assert_eq!(former.alias.as_deref(), Some("c0"));
    // Its alias is free again.
    store
        .insert(&Artifact::new("ws-a", "coll-renamed"))
        .await
        .unwrap();

    // --- resolving ids and generating aliases against the store
    let by_alias = resolve_artifact_id("c0", "ws-a").unwrap();
    assert_eq!(store.find(&by_alias).await.unwrap(), Some(former.clone()));
    let by_ws_alias = resolve_artifact_id("ws-b/coll", "ws-a").unwrap();
    assert_eq!(store.find(&by_ws_alias).await.unwrap(), Some(other_ws));
    let by_id = resolve_artifact_id(&former.id, "elsewhere").unwrap();
    assert_eq!(store.find(&by_id).await.unwrap(), Some(former));
    let parts = json!({"n": ["c0", "c1", "c2", "free"]});
    let ctx = TemplateContext {
        user_id: "alice",
        id_parts: parts.as_object(),
        now_unix: 0,
    };
    // c0..c2 are taken in ws-a: only "free" can come out (10 draws of 4; the chance that
    // "free" is never drawn is 0.75^10 ≈ 6 %, so the pool is drawn from again on a miss).
    let mut generated = None;
    for _ in 0..20 {
        let store = store.clone();
        let got = generate_alias(Some("{n}"), &ctx, move |alias| {
            let store = store.clone();
            async move { Ok(store.get_by_alias("ws-a", &alias).await?.is_some()) }
        })
        .await;
        if let Ok(alias) = got {
            generated = Some(alias);
            break;
        }
    }
    assert_eq!(generated.as_deref(), Some("free"));

    // --- what check_persisted looks for
    let keep = full_row("ws-keep", "keep");
    store.insert(&keep).await.unwrap();
    store.add_views(&keep.id, 3.0).await.unwrap();
    keep.id
}

/// What [`exercise`] left behind, seen through a fresh connection.
async fn check_persisted(store: &dyn ArtifactStore, keep_id: &str) {
    let keep = store.get(keep_id).await.unwrap().expect("row kept");
    let expected = Artifact {
        id: keep_id.into(),
        view_count: 6.0,
        ..full_row("ws-keep", "keep")
    };
    assert_eq!(keep, expected);
    assert_eq!(
        store.get_by_alias("ws-keep", "keep").await.unwrap(),
        Some(keep)
    );
    assert_eq!(store.list_workspace("ws-a", 0, 100).await.unwrap().len(), 7);
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rhizo-artifacts-{:016x}", rand::random::<u64>()))
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    let store = Arc::new(MemoryArtifactStore::new());
    let keep = exercise(store.clone()).await;
    check_persisted(store.as_ref(), &keep).await;
}

#[tokio::test]
async fn sqlite_memory_store_meets_the_contract() {
    let store = SqlArtifactStore::connect("sqlite::memory:").await.unwrap();
    let keep = exercise(Arc::new(store.clone())).await;
    check_persisted(&store, &keep).await;
    store.close().await;
    assert!(
        store.ping().await.is_err(),
        "a closed store must fail its ping"
    );
}

#[tokio::test]
async fn sqlite_file_store_keeps_data_across_reopen() {
    let dir = temp_dir();
    // The parent directories do not exist yet: connect creates them.
    let uri = format!("sqlite://{}", dir.join("nested/artifacts.db").display());
    let store = SqlArtifactStore::connect(&uri).await.unwrap();
    let keep = exercise(Arc::new(store.clone())).await;
    store.close().await;

    // A restart: new pool, migrations run again (no-op), same rows.
    let reopened = SqlArtifactStore::connect(&uri).await.unwrap();
    check_persisted(&reopened, &keep).await;
    reopened.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sqlite_store_shares_a_database_with_the_control_planes_store() {
    // Both migrators record their versions in one `_sqlx_migrations`; each must ignore the
    // other's, whichever opened the file first, and after restarts in either order.
    let dir = temp_dir();
    let uri = format!("sqlite://{}", dir.join("shared.db").display());
    let artifacts = SqlArtifactStore::connect(&uri).await.unwrap();
    let control = rhizo_control_plane::storage::SqlStore::connect(&uri)
        .await
        .expect("the control plane opens a database the artifact manager migrated");
    control.close().await;
    artifacts.close().await;
    let artifacts = SqlArtifactStore::connect(&uri)
        .await
        .expect("the artifact manager reopens it after the control plane migrated it");
    artifacts.ping().await.unwrap();
    let control = rhizo_control_plane::storage::SqlStore::connect(&uri)
        .await
        .unwrap();
    control.close().await;
    artifacts.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_uris_fail_with_a_clear_message() {
    let err = SqlArtifactStore::connect("mysql://u:pw@h/db")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::Store(StoreError::UnsupportedUri { .. })),
        "{err}"
    );
    assert!(!err.to_string().contains("pw"), "{err}");

    // A regular file where a directory is needed.
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let uri = format!("sqlite://{}", file.join("db.sqlite").display());
    let err = SqlArtifactStore::connect(&uri).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::Store(StoreError::Open { .. })),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn postgres_store_meets_the_contract_and_keeps_data() {
    postgres::with_database("rhizo_artifacts_test", |uri| async move {
        let store = SqlArtifactStore::connect(&uri).await.unwrap();
        let keep = exercise(Arc::new(store.clone())).await;
        store.close().await;
        let reopened = SqlArtifactStore::connect(&uri).await.unwrap();
        check_persisted(&reopened, &keep).await;
        reopened.close().await;
    })
    .await;
}
