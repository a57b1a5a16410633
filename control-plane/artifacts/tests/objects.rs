//! The `ObjectStore` contract, run unchanged against the in-memory store and the
//! local-directory store (a fresh directory under the system temp dir, removed at the
//! end). The S3 store will join it. The local store's own rules (symlinks, reserved
//! temporary names, a file in the way of a directory) are tested after the contract.

use bytes::Bytes;
use rhizo_artifacts::objects::{
    backup_key, default_prefix, file_key, snapshot_key, version_dir, Entry,
};
use rhizo_artifacts::{ArtifactError, LocalObjectStore, MemoryObjectStore, ObjectStore};
use std::sync::Arc;

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rhizo-objects-{:016x}", rand::random::<u64>()))
}

fn names(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e {
            Entry::File { name, .. } => format!("f:{name}"),
            Entry::Directory { name } => format!("d:{name}"),
        })
        .collect()
}

fn invalid<T: std::fmt::Debug>(result: Result<T, ArtifactError>, what: &str) {
    match result {
        Err(ArtifactError::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Exercises every method on an empty store.
async fn exercise(store: Arc<dyn ObjectStore>) {
    let prefix = default_prefix("ws-user-alice");
    let id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let key = |path: &str| file_key(&prefix, id, 0, path).unwrap();
    let v0 = version_dir(&prefix, id, 0);

    // --- missing keys
    assert_eq!(store.get(&key("nope.txt")).await.unwrap(), None);
    assert_eq!(store.head(&key("nope.txt")).await.unwrap(), None);
    assert_eq!(store.get_range(&key("nope.txt"), 0..4).await.unwrap(), None);
    store.delete(&key("nope.txt")).await.unwrap();
    assert!(store.list(&v0, 0, 100).await.unwrap().is_empty());
    assert!(store.list("", 0, 100).await.unwrap().is_empty());
    assert_eq!(store.count_files(&v0, None).await.unwrap(), 0);
    assert_eq!(store.delete_prefix(&v0).await.unwrap(), 0);
    let err = store.copy(&key("nope.txt"), &key("x")).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound(_)), "{err:?}");

    // --- put, get, head, overwrite
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    store
        .put(&key("a.txt"), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("a.txt")).await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let info = store.head(&key("a.txt")).await.unwrap().unwrap();
    assert_eq!(info.size, 5);
    assert!(
        info.last_modified > before - 2.0 && info.last_modified < before + 60.0,
        "{info:?} vs {before}"
    );
    store
        .put(&key("a.txt"), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("a.txt")).await.unwrap().as_deref(),
        Some(&b"hi"[..])
    );
    assert_eq!(store.head(&key("a.txt")).await.unwrap().unwrap().size, 2);
    // An empty object is an object.
    store.put(&key("empty"), Bytes::new()).await.unwrap();
    assert_eq!(store.get(&key("empty")).await.unwrap(), Some(Bytes::new()));
    assert_eq!(store.head(&key("empty")).await.unwrap().unwrap().size, 0);
    // Binary content round-trips unchanged.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .put(&key("bin/blob"), Bytes::from(binary.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("bin/blob")).await.unwrap().as_deref(),
        Some(&binary[..])
    );

    // --- ranges
    let blob = key("bin/blob");
    assert_eq!(
        store.get_range(&blob, 10..20).await.unwrap().as_deref(),
        Some(&binary[10..20])
    );
    assert_eq!(
        store
            .get_range(&blob, 69_990..80_000)
            .await
            .unwrap()
            .as_deref(),
        Some(&binary[69_990..])
    );
    assert_eq!(
        store.get_range(&blob, 70_000..70_010).await.unwrap(),
        Some(Bytes::new())
    );
    assert_eq!(
        store.get_range(&blob, 5..5).await.unwrap(),
        Some(Bytes::new())
    );

    // --- listing: files first (sorted), then directories (sorted), one level
    for path in [
        "data/train.csv",
        "data/test.csv",
        "data/deep/x/y.bin",
        "b.txt",
        "zz/inner.txt",
    ] {
        store
            .put(&key(path), Bytes::from(path.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    // The snapshot sits beside the version directory, never in it.
    store
        .put(&snapshot_key(&prefix, id, 0), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let all = store.list(&v0, 0, 100).await.unwrap();
    assert_eq!(
        names(&all),
        ["f:a.txt", "f:b.txt", "f:empty", "d:bin", "d:data", "d:zz"]
    );
    match &all[1] {
        Entry::File {
            name,
            size,
            last_modified,
        } => {
            assert_eq!((name.as_str(), *size), ("b.txt", 5));
            assert!(*last_modified > before - 2.0);
        }
        other => panic!("expected a file, got {other:?}"),
    }
    // offset and limit apply to the whole sequence, across the file/directory boundary.
    assert_eq!(
        names(&store.list(&v0, 2, 2).await.unwrap()),
        ["f:empty", "d:bin"]
    );
    assert_eq!(names(&store.list(&v0, 5, 10).await.unwrap()), ["d:zz"]);
    assert!(store.list(&v0, 6, 10).await.unwrap().is_empty());
    assert!(store.list(&v0, 0, 0).await.unwrap().is_empty());
    // Nested directories.
    let data = format!("{v0}/data");
    assert_eq!(
        names(&store.list(&data, 0, 100).await.unwrap()),
        ["f:test.csv", "f:train.csv", "d:deep"]
    );
    assert_eq!(
        names(&store.list(&format!("{data}/deep"), 0, 100).await.unwrap()),
        ["d:x"]
    );
    // The artifact's directory: the version directory and its snapshot.
    let art = format!("{prefix}/{id}");
    assert_eq!(
        names(&store.list(&art, 0, 100).await.unwrap()),
        ["f:v0.json", "d:v0"]
    );
    // The root, and a prefix that is a file or a partial name.
    assert_eq!(
        names(&store.list("", 0, 100).await.unwrap()),
        ["d:ws-user-alice"]
    );
    assert!(store.list(&key("a.txt"), 0, 100).await.unwrap().is_empty());
    assert!(store
        .list(&format!("{data}/tr"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list(&format!("{v0}/nothing"), 0, 100)
        .await
        .unwrap()
        .is_empty());

    // --- count_files (recursive; §1.8 file_count)
    assert_eq!(store.count_files(&v0, None).await.unwrap(), 8);
    assert_eq!(store.count_files(&v0, Some(".json")).await.unwrap(), 8);
    assert_eq!(store.count_files(&art, None).await.unwrap(), 9);
    assert_eq!(store.count_files(&art, Some(".json")).await.unwrap(), 8);
    assert_eq!(store.count_files(&data, Some(".csv")).await.unwrap(), 1);
    assert_eq!(store.count_files("", None).await.unwrap(), 9);

    // --- copy (stage backup and restore)
    let backup = backup_key(&prefix, id, "data/train.csv").unwrap();
    store.copy(&key("data/train.csv"), &backup).await.unwrap();
    assert_eq!(
        store.get(&backup).await.unwrap().as_deref(),
        Some(&b"data/train.csv"[..])
    );
    store
        .put(&key("data/train.csv"), Bytes::from_static(b"edited"))
        .await
        .unwrap();
    store.copy(&backup, &key("data/train.csv")).await.unwrap();
    assert_eq!(
        store.get(&key("data/train.csv")).await.unwrap().as_deref(),
        Some(&b"data/train.csv"[..])
    );
    assert_eq!(
        store.get(&backup).await.unwrap().as_deref(),
        Some(&b"data/train.csv"[..]),
        "copy keeps its source"
    );
    // A copy onto itself keeps the bytes.
    store.copy(&key("b.txt"), &key("b.txt")).await.unwrap();
    assert_eq!(
        store.get(&key("b.txt")).await.unwrap().as_deref(),
        Some(&b"b.txt"[..])
    );
    assert_eq!(
        names(&store.list(&art, 0, 100).await.unwrap()),
        ["f:v0.json", "d:.stage_backup", "d:v0"]
    );

    // --- delete: the object goes, and so does a directory left without objects
    store.delete(&key("zz/inner.txt")).await.unwrap();
    assert_eq!(store.get(&key("zz/inner.txt")).await.unwrap(), None);
    assert_eq!(
        names(&store.list(&v0, 0, 100).await.unwrap()),
        ["f:a.txt", "f:b.txt", "f:empty", "d:bin", "d:data"]
    );
    store.delete(&key("zz/inner.txt")).await.unwrap();
    store.delete(&key("data/deep/x/y.bin")).await.unwrap();
    assert_eq!(
        names(&store.list(&data, 0, 100).await.unwrap()),
        ["f:test.csv", "f:train.csv"]
    );
    // Deleting a "directory" as a key removes nothing.
    store.delete(&data).await.unwrap();
    assert_eq!(store.count_files(&data, None).await.unwrap(), 2);

    // --- delete_prefix: directory semantics, a sibling with a longer name survives
    let v1 = version_dir(&prefix, id, 1);
    let v10 = version_dir(&prefix, id, 10);
    store
        .put(
            &file_key(&prefix, id, 1, "one").unwrap(),
            Bytes::from_static(b"1"),
        )
        .await
        .unwrap();
    store
        .put(
            &file_key(&prefix, id, 10, "ten").unwrap(),
            Bytes::from_static(b"10"),
        )
        .await
        .unwrap();
    assert_eq!(store.count_files(&v1, None).await.unwrap(), 1);
    assert_eq!(store.delete_prefix(&v1).await.unwrap(), 1);
    assert_eq!(store.count_files(&v10, None).await.unwrap(), 1);
    assert_eq!(
        names(&store.list(&art, 0, 100).await.unwrap()),
        ["f:v0.json", "d:.stage_backup", "d:v0", "d:v10"]
    );
    assert_eq!(store.delete_prefix(&format!("{data}/tr")).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_prefix(&format!("{prefix}/{id}/.stage_backup"))
            .await
            .unwrap(),
        1
    );
    // A neighbour artifact is untouched by deleting this one's files.
    let other = "0193a1b2-c3d4-7e5f-8a9b-000000000000";
    store
        .put(
            &file_key(&prefix, other, 0, "keep").unwrap(),
            Bytes::from_static(b"k"),
        )
        .await
        .unwrap();
    assert_eq!(store.delete_prefix(&art).await.unwrap(), 8);
    assert!(store.list(&art, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        names(&store.list(&prefix, 0, 100).await.unwrap()),
        [format!("d:{other}")]
    );
    assert_eq!(
        store
            .get(&file_key(&prefix, other, 0, "keep").unwrap())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"k"[..])
    );
    // The whole store.
    store.put("top", Bytes::from_static(b"t")).await.unwrap();
    assert_eq!(
        names(&store.list("", 0, 10).await.unwrap()),
        ["f:top", "d:ws-user-alice"]
    );
    assert_eq!(store.delete_prefix("").await.unwrap(), 2);
    assert!(store.list("", 0, 10).await.unwrap().is_empty());
    assert_eq!(store.count_files("", None).await.unwrap(), 0);

    // --- bad keys and prefixes are refused before any I/O
    for bad in [
        "",
        "/abs",
        "../up",
        "a/../../b",
        "a\\b",
        "a//b",
        "a/",
        "./a",
        "a\0b",
    ] {
        invalid(store.put(bad, Bytes::from_static(b"x")).await, bad);
        invalid(store.get(bad).await, bad);
        invalid(store.get_range(bad, 0..1).await, bad);
        invalid(store.head(bad).await, bad);
        invalid(store.delete(bad).await, bad);
        invalid(store.copy(bad, "ok").await, bad);
        invalid(store.copy("ok", bad).await, bad);
        if !bad.is_empty() {
            invalid(store.delete_prefix(bad).await, bad);
            invalid(store.list(bad, 0, 10).await, bad);
            invalid(store.count_files(bad, None).await, bad);
        }
    }
    assert!(store.list("", 0, 10).await.unwrap().is_empty());
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
