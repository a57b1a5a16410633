//! The `ObjectStore` contract (`support/contract.rs`), run unchanged against the
//! in-memory store and the local-directory store (a fresh directory under the system
//! temp dir, removed at the end), then the local store's own rules: data kept across a
//! reopen and whole files under concurrent writers, symlinks, reserved temporary names,
//! a file in the way of a directory. The S3 store is tested in `tests/objects_s3.rs`.

#[path = "support/contract.rs"]
mod contract;

use bytes::Bytes;
use contract::{exercise, invalid, names};
use rhizo_artifacts::{LocalObjectStore, MemoryObjectStore, ObjectStore};
use std::sync::Arc;

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rhizo-objects-{:016x}", rand::random::<u64>()))
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    exercise(Arc::new(MemoryObjectStore::new())).await;
}

#[tokio::test]
async fn local_store_meets_the_contract() {
    let dir = temp_dir();
    exercise(Arc::new(LocalObjectStore::new(dir.join("objects")))).await;
    // Nothing is left behind: no temporary files, no empty directories.
    let left: Vec<_> = std::fs::read_dir(dir.join("objects")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn local_store_keeps_data_across_reopen_and_writes_whole_files() {
    let dir = temp_dir();
    let root = dir.join("objects");
    let store = LocalObjectStore::new(root.clone());
    store
        .put("ws/artifacts/u/v0/a.txt", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.join("ws/artifacts/u/v0/a.txt")).unwrap(),
        b"kept"
    );
    drop(store);
    let store = LocalObjectStore::new(root.clone());
    assert_eq!(
        store
            .get("ws/artifacts/u/v0/a.txt")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    // Concurrent writers of one key: every reader sees one whole version.
    let store = Arc::new(store);
    let big_a = Bytes::from(vec![b'a'; 1 << 20]);
    let big_b = Bytes::from(vec![b'b'; 1 << 20]);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, bytes) = (
            store.clone(),
            if i % 2 == 0 {
                big_a.clone()
            } else {
                big_b.clone()
            },
        );
        tasks.push(tokio::spawn(async move {
            store.put("ws/big", bytes).await.unwrap();
            let got = store.get("ws/big").await.unwrap().unwrap();
            assert_eq!(got.len(), 1 << 20);
            assert!(got.iter().all(|&c| c == got[0]), "a torn read");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Only the objects remain: the temporaries were renamed away.
    let names: Vec<_> = std::fs::read_dir(root.join("ws"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["artifacts", "big"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn local_store_refuses_what_a_filesystem_cannot_hold() {
    let dir = temp_dir();
    let root = dir.join("objects");
    let store = LocalObjectStore::new(root.clone());
    store.put("a/file", Bytes::from_static(b"f")).await.unwrap();
    // A file where a directory should be, and a directory where a file should be.
    invalid(
        store.put("a/file/below", Bytes::from_static(b"x")).await,
        "file in the way",
    );
    invalid(
        store.put("a", Bytes::from_static(b"x")).await,
        "directory in the way",
    );
    invalid(store.copy("a/file", "a").await, "copy onto a directory");
    assert_eq!(store.get("a/file/below").await.unwrap(), None);
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.head("a").await.unwrap(), None);
    // Temporary names are reserved, and a leftover temporary is not an object.
    invalid(
        store.put("a/.rhizo-tmp-1", Bytes::new()).await,
        "reserved name",
    );
    std::fs::write(root.join("a/.rhizo-tmp-crashed"), b"half").unwrap();
    assert_eq!(names(&store.list("a", 0, 10).await.unwrap()), ["f:file"]);
    assert_eq!(store.count_files("a", None).await.unwrap(), 1);
    // A leftover empty directory is not listed.
    std::fs::create_dir_all(root.join("a/empty/deeper")).unwrap();
    assert_eq!(names(&store.list("a", 0, 10).await.unwrap()), ["f:file"]);
    assert_eq!(store.delete_prefix("a").await.unwrap(), 1);
    assert!(!root.join("a").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn local_store_never_follows_a_symlink_out_of_its_root() {
    let dir = temp_dir();
    let root = dir.join("objects");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"s").unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("file-link")).unwrap();
    let store = LocalObjectStore::new(root.clone());
    invalid(store.get("link/secret").await, "read through a symlink");
    invalid(store.get("file-link").await, "read a symlinked file");
    invalid(
        store.put("link/new", Bytes::from_static(b"x")).await,
        "write through a symlink",
    );
    invalid(
        store.delete("link/secret").await,
        "delete through a symlink",
    );
    invalid(
        store.delete_prefix("link").await,
        "delete a symlinked directory",
    );
    invalid(store.list("link", 0, 10).await, "list through a symlink");
    assert!(!outside.join("new").exists());
    assert!(outside.join("secret").exists());
    // Listings and counts do not follow symlinks.
    store.put("real", Bytes::from_static(b"r")).await.unwrap();
    assert_eq!(names(&store.list("", 0, 10).await.unwrap()), ["f:real"]);
    assert_eq!(store.count_files("", None).await.unwrap(), 1);
    // Removing everything removes the links, not what they point at.
    assert_eq!(store.delete_prefix("").await.unwrap(), 1);
    assert!(outside.join("secret").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
