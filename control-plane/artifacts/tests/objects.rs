//! The `ObjectStore` contract, run unchanged against the in-memory store, the
//! local-directory store (a fresh directory under the system temp dir, removed at the
//! end) and the S3 store on a real S3-compatible server (moto, one per test, see
//! `support/moto.rs`; skipped with a note when moto is missing, failed under CI). The
//! local store's own rules (symlinks, reserved temporary names, a file in the way of a
//! directory) and the S3 store's own features (presigned URLs used over raw HTTP, native
//! multipart uploads, put_stream's multipart path and its abort) are tested after the
//! contract.

#[path = "support/moto.rs"]
mod moto;
#[path = "support/raw_http.rs"]
mod raw_http;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use moto::Moto;
use rhizo_artifacts::objects::{
    backup_key, default_prefix, file_key, snapshot_key, version_dir, ByteStream, Entry, PresignOp,
    UploadedPart,
};
use rhizo_artifacts::{
    ArtifactError, LocalObjectStore, MemoryObjectStore, ObjectStore, S3ObjectStore,
};
use std::sync::Arc;
use std::time::Duration;

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
    assert_eq!(
        store.get_range(&key("empty"), 0..4).await.unwrap(),
        Some(Bytes::new())
    );
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
        invalid(store.put_stream(bad, chunks(&[b"x"])).await, bad);
        invalid(store.get_stream(bad, None).await.map(|_| ()), bad);
        if !bad.is_empty() {
            invalid(store.delete_prefix(bad).await, bad);
            invalid(store.list(bad, 0, 10).await, bad);
            invalid(store.count_files(bad, None).await, bad);
        }
    }
    assert!(store.list("", 0, 10).await.unwrap().is_empty());

    exercise_streams(store.as_ref()).await;
    assert!(store.list("", 0, 10).await.unwrap().is_empty());
}

/// A body of `parts`, one chunk each.
fn chunks(parts: &[&[u8]]) -> ByteStream {
    let parts: Vec<std::io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(stream::iter(parts))
}

/// A body of `parts`, then an I/O error.
fn failing(parts: &[&[u8]]) -> ByteStream {
    let broken = stream::once(async { Err(std::io::Error::other("client went away")) });
    Box::pin(chunks(parts).chain(broken))
}

/// A stream's bytes, or its first error.
async fn collect(mut body: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// `put_stream` and `get_stream` on an empty store; leaves it empty.
async fn exercise_streams(store: &dyn ObjectStore) {
    let key = "ws/artifacts/u/v0/streamed.bin";
    assert!(store.get_stream(key, None).await.unwrap().is_none());
    assert!(store.get_stream(key, Some(0..4)).await.unwrap().is_none());
    // Chunks of any size, empty ones included, are joined.
    let n = store
        .put_stream(key, chunks(&[b"ab", b"", b"cdefgh", b"ij"]))
        .await
        .unwrap();
    assert_eq!(n, 10);
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"abcdefghij"[..])
    );
    let (info, body) = store.get_stream(key, None).await.unwrap().unwrap();
    assert_eq!(info.size, 10);
    assert!(info.last_modified > 0.0);
    assert_eq!(collect(body).await.unwrap(), b"abcdefghij");
    // Ranges are clipped as get_range's; the size is always the whole object's.
    for (range, want) in [
        (2..5, &b"cde"[..]),
        (8..100, b"ij"),
        (10..12, b""),
        (50..60, b""),
        (3..3, b""),
    ] {
        let (info, body) = store
            .get_stream(key, Some(range.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.size, 10, "{range:?}");
        assert_eq!(collect(body).await.unwrap(), want, "{range:?}");
    }
    // An empty body is an empty object.
    assert_eq!(store.put_stream("ws/empty", chunks(&[])).await.unwrap(), 0);
    assert_eq!(store.head("ws/empty").await.unwrap().unwrap().size, 0);
    let (info, body) = store.get_stream("ws/empty", None).await.unwrap().unwrap();
    assert_eq!(info.size, 0);
    assert!(collect(body).await.unwrap().is_empty());
    // A body that fails: an error, and no object; an object already there stays.
    let err = store
        .put_stream("ws/broken", failing(&[b"half"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::ObjectStore(_)), "{err:?}");
    assert_eq!(store.get("ws/broken").await.unwrap(), None);
    let err = store
        .put_stream(key, failing(&[b"replacement"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ArtifactError::ObjectStore(_)), "{err:?}");
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"abcdefghij"[..])
    );
    assert_eq!(store.count_files("ws", None).await.unwrap(), 2);
    assert_eq!(store.delete_prefix("ws").await.unwrap(), 2);
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

// === S3 ===

/// A moto server and a store on a bucket of its own, or `None` when the test is skipped.
async fn s3(test: &str) -> Option<(Moto, S3ObjectStore)> {
    let moto = Moto::start(test).await?;
    let store = moto.store(test).await;
    Some((moto, store))
}

/// `len` bytes of a fixed pseudo-random pattern (so parts and offsets are told apart).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A lazy body of `data` in chunks of `chunk` bytes: nothing is copied ahead of reading.
fn lazy_body(data: Bytes, chunk: usize) -> ByteStream {
    let len = data.len();
    Box::pin(
        stream::iter((0..len).step_by(chunk))
            .map(move |at| Ok::<_, std::io::Error>(data.slice(at..(at + chunk).min(len)))),
    )
}

/// The multipart uploads in progress in `store`'s bucket.
async fn uploads_in_progress(moto: &Moto, store: &S3ObjectStore) -> usize {
    moto.sdk()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

/// The ETag S3 keeps for `key` (a multipart object's ends in `-<parts>`).
async fn etag(moto: &Moto, store: &S3ObjectStore, key: &str) -> String {
    let out = moto
        .sdk()
        .head_object()
        .bucket(store.bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    out.e_tag().unwrap().trim_matches('"').to_owned()
}

/// Polls `check` until it holds (30 s at most: the machine may be busy).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    let Some((_moto, store)) = s3("s3_store_meets_the_contract").await else {
        return;
    };
    exercise(Arc::new(store)).await;
}

#[tokio::test]
async fn s3_bucket_creation_is_idempotent_and_sets_cors() {
    let Some((moto, store)) = s3("s3_bucket_creation_is_idempotent").await else {
        return;
    };
    store.put("k", Bytes::from_static(b"v")).await.unwrap();
    // A second start-up finds the bucket it owns and keeps its objects.
    store.ensure_bucket().await.unwrap();
    let again = S3ObjectStore::connect(moto.config(store.bucket()))
        .await
        .unwrap();
    again.ensure_bucket().await.unwrap();
    assert_eq!(again.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let cors = moto
        .sdk()
        .get_bucket_cors()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap();
    let rule = &cors.cors_rules()[0];
    assert_eq!(rule.allowed_origins(), ["*"]);
    assert_eq!(rule.allowed_headers(), ["*"]);
    assert_eq!(
        rule.allowed_methods(),
        ["GET", "HEAD", "PUT", "POST", "DELETE"]
    );
    for header in ["Accept-Ranges", "Content-Length", "Content-Range", "ETag"] {
        assert!(
            rule.expose_headers().iter().any(|h| h == header),
            "{header} not exposed: {rule:?}"
        );
    }
}

#[tokio::test]
async fn s3_presigned_urls_work_over_raw_http() {
    let Some((moto, store)) = s3("s3_presigned_urls_work_over_raw_http").await else {
        return;
    };
    let key = "ws/artifacts/u/v0/data/upload me.bin";
    let data = pattern(100_000);
    let hour = Duration::from_secs(3600);
    let put = store
        .presign(PresignOp::Put, key, hour)
        .await
        .unwrap()
        .expect("S3 presigns");
    let path_style = format!("{}/{}/ws/artifacts/", moto.endpoint(), store.bucket());
    assert!(put.starts_with(&path_style), "path-style: {put}");
    assert!(put.contains("X-Amz-Expires=3600"), "{put}");
    assert!(raw_http::sigv4_query_valid(
        "PUT",
        &put,
        moto::SECRET_ACCESS_KEY
    ));
    let answer = raw_http::request("PUT", &put, &data).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&data[..]));

    let get = store
        .presign(PresignOp::Get, key, hour)
        .await
        .unwrap()
        .unwrap();
    assert!(raw_http::sigv4_query_valid(
        "GET",
        &get,
        moto::SECRET_ACCESS_KEY
    ));
    let answer = raw_http::request("GET", &get, b"").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, data);

    // A changed signature, method or secret does not verify. (moto 5 serves presigned
    // URLs without checking their signature, so the 403 real S3 answers is checked by
    // recomputing the signature as S3 does.)
    let tampered = raw_http::tamper(&get);
    assert_ne!(tampered, get);
    assert!(!raw_http::sigv4_query_valid(
        "GET",
        &tampered,
        moto::SECRET_ACCESS_KEY
    ));
    assert!(!raw_http::sigv4_query_valid(
        "PUT",
        &get,
        moto::SECRET_ACCESS_KEY
    ));
    assert!(!raw_http::sigv4_query_valid("GET", &get, "another-secret"));

    // Expiry bounds: S3 allows at most 7 days.
    invalid(
        store
            .presign(PresignOp::Get, key, Duration::from_secs(8 * 24 * 3600))
            .await,
        "expiry past 7 days",
    );
    invalid(store.presign(PresignOp::Get, "../x", hour).await, "bad key");
}

#[tokio::test]
async fn s3_put_stream_of_20_mib_goes_multipart_and_reads_back() {
    let Some((moto, store)) = s3("s3_put_stream_of_20_mib").await else {
        return;
    };
    let data = Bytes::from(pattern(20 << 20));
    let n = store
        .put_stream("big/20mib", lazy_body(data.clone(), 64 << 10))
        .await
        .unwrap();
    assert_eq!(n, 20 << 20);
    assert_eq!(
        store.head("big/20mib").await.unwrap().unwrap().size,
        20 << 20
    );
    // 8 + 8 + 4 MiB.
    assert!(etag(&moto, &store, "big/20mib").await.ends_with("-3"));
    let (info, body) = store.get_stream("big/20mib", None).await.unwrap().unwrap();
    assert_eq!(info.size, 20 << 20);
    let back = collect(body).await.unwrap();
    assert!(back == data, "20 MiB read back differently");
    // One huge chunk is cut into parts too.
    let n = store
        .put_stream("big/one-chunk", lazy_body(data.clone(), 20 << 20))
        .await
        .unwrap();
    assert_eq!(n, 20 << 20);
    assert!(store.get("big/one-chunk").await.unwrap().unwrap() == data);
    // Exactly 8 MiB is still one PutObject; one byte more is two parts.
    let eight = data.slice(..8 << 20);
    store
        .put_stream("big/8mib", lazy_body(eight.clone(), 1 << 20))
        .await
        .unwrap();
    assert!(!etag(&moto, &store, "big/8mib").await.contains('-'));
    assert!(store.get("big/8mib").await.unwrap().unwrap() == eight);
    let over = data.slice(..(8 << 20) + 1);
    store
        .put_stream("big/8mib+1", lazy_body(over.clone(), 1 << 20))
        .await
        .unwrap();
    assert!(etag(&moto, &store, "big/8mib+1").await.ends_with("-2"));
    assert!(store.get("big/8mib+1").await.unwrap().unwrap() == over);
    assert_eq!(uploads_in_progress(&moto, &store).await, 0);
}

#[tokio::test]
async fn s3_put_stream_failing_midway_leaves_no_object_and_no_upload() {
    let Some((moto, store)) = s3("s3_put_stream_failing_midway").await else {
        return;
    };
    let ten = Bytes::from(pattern(10 << 20));
    let body = || {
        let broken = stream::once(async { Err(std::io::Error::other("client went away")) });
        Box::pin(lazy_body(ten.clone(), 1 << 20).chain(broken)) as ByteStream
    };
    // Past the first part: the multipart upload is aborted.
    let err = store.put_stream("k", body()).await.unwrap_err();
    assert!(
        matches!(&err, ArtifactError::ObjectStore(m) if m.contains("client went away")),
        "{err:?}"
    );
    assert_eq!(store.head("k").await.unwrap(), None);
    assert_eq!(uploads_in_progress(&moto, &store).await, 0);
    // An object already there stays whole.
    store.put("k", Bytes::from_static(b"old")).await.unwrap();
    store.put_stream("k", body()).await.unwrap_err();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(uploads_in_progress(&moto, &store).await, 0);
    assert_eq!(store.count_files("", None).await.unwrap(), 1);
}

#[tokio::test]
async fn s3_put_stream_dropped_midway_aborts_its_upload() {
    let Some((moto, store)) = s3("s3_put_stream_dropped_midway").await else {
        return;
    };
    let store = Arc::new(store);
    // 10 MiB, then a body that never ends. put_stream polls past the 10 MiB only
    // after its first part (8 MiB) is stored: then it is parked, waiting for the body.
    let (parked_tx, parked) = tokio::sync::oneshot::channel::<()>();
    let never = stream::once(async move {
        let _ = parked_tx.send(());
        std::future::pending::<std::io::Result<Bytes>>().await
    });
    let body: ByteStream =
        Box::pin(lazy_body(Bytes::from(pattern(10 << 20)), 1 << 20).chain(never));
    let task = tokio::spawn({
        let store = store.clone();
        async move { store.put_stream("stuck", body).await }
    });
    parked.await.expect("put_stream read the whole 10 MiB");
    assert_eq!(uploads_in_progress(&moto, &store).await, 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    eventually("the dropped upload is aborted", || async {
        uploads_in_progress(&moto, &store).await == 0
    })
    .await;
    assert_eq!(store.head("stuck").await.unwrap(), None);
    // Dropped as soon as S3 has the upload: wherever the call then is (awaiting
    // CreateMultipartUpload's answer, or an UploadPart), the upload goes.
    for round in 0..5 {
        let body: ByteStream =
            Box::pin(lazy_body(Bytes::from(pattern(10 << 20)), 1 << 20).chain(stream::pending()));
        let task = tokio::spawn({
            let store = store.clone();
            async move { store.put_stream(&format!("early{round}"), body).await }
        });
        eventually("the upload has started", || async {
            uploads_in_progress(&moto, &store).await == 1
        })
        .await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        eventually("the dropped upload is aborted", || async {
            uploads_in_progress(&moto, &store).await == 0
        })
        .await;
    }
    assert_eq!(store.count_files("", None).await.unwrap(), 0);
}

#[tokio::test]
async fn s3_native_multipart_through_presigned_part_urls() {
    let Some((moto, store)) = s3("s3_native_multipart").await else {
        return;
    };
    let key = "ws/artifacts/u/v0/parts.bin";
    let hour = Duration::from_secs(3600);
    let first = pattern(5 << 20);
    let second = b"the short last part".to_vec();
    let upload_id = store.multipart_start(key).await.unwrap().expect("native");
    let mut parts = Vec::new();
    for (number, bytes) in [(1u32, &first), (2, &second)] {
        let url = store
            .presign_part(key, &upload_id, number, hour)
            .await
            .unwrap();
        assert!(url.contains(&format!("partNumber={number}")), "{url}");
        assert!(raw_http::sigv4_query_valid(
            "PUT",
            &url,
            moto::SECRET_ACCESS_KEY
        ));
        let answer = raw_http::request("PUT", &url, bytes).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let etag = answer.header("etag").expect("an ETag").to_owned();
        parts.push(UploadedPart {
            part_number: number,
            etag,
        });
    }
    // Nothing is visible before completion.
    assert_eq!(store.head(key).await.unwrap(), None);
    // The client may report its parts in any order.
    parts.reverse();
    store
        .multipart_complete(key, &upload_id, &parts)
        .await
        .unwrap();
    let mut want = first.clone();
    want.extend_from_slice(&second);
    assert!(store.get(key).await.unwrap().unwrap() == want[..]);
    assert!(etag(&moto, &store, key).await.ends_with("-2"));

    // What the client gets wrong is an InvalidArgument carrying S3's reason.
    let upload_id = store.multipart_start("other").await.unwrap().unwrap();
    let url = store
        .presign_part("other", &upload_id, 1, hour)
        .await
        .unwrap();
    assert_eq!(raw_http::request("PUT", &url, b"tiny").await.status, 200);
    let wrong = [UploadedPart {
        part_number: 1,
        etag: "\"00000000000000000000000000000000\"".into(),
    }];
    invalid(
        store.multipart_complete("other", &upload_id, &wrong).await,
        "wrong ETag",
    );
    invalid(
        store
            .multipart_complete("other", "no-such-upload", &parts)
            .await,
        "unknown upload",
    );
    invalid(
        store.multipart_complete("other", &upload_id, &[]).await,
        "no parts",
    );
    invalid(
        store.presign_part("other", &upload_id, 0, hour).await,
        "part 0",
    );
    invalid(
        store.presign_part("other", &upload_id, 10_001, hour).await,
        "part 10001",
    );
    assert_eq!(store.head("other").await.unwrap(), None);
}

#[tokio::test]
async fn s3_listing_counting_and_deleting_page_past_1000_keys() {
    let Some((_moto, store)) = s3("s3_listing_page_past_1000_keys").await else {
        return;
    };
    let store = Arc::new(store);
    let keys: Vec<String> = (0..1100)
        .map(|i| format!("many/f{i:04}"))
        .chain(["many/sub/x".to_owned(), "many0/sibling".to_owned()])
        .collect();
    stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move { store.put(&key, Bytes::from_static(b"x")).await.unwrap() }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let all = store.list("many", 0, 10_000).await.unwrap();
    assert_eq!(all.len(), 1101);
    assert_eq!(names(&all[..1]), ["f:f0000"]);
    assert_eq!(names(&all[1099..]), ["f:f1099", "d:sub"]);
    assert_eq!(
        names(&store.list("many", 1098, 2).await.unwrap()),
        ["f:f1098", "f:f1099"]
    );
    assert_eq!(store.count_files("many", None).await.unwrap(), 1101);
    assert_eq!(store.count_files("", None).await.unwrap(), 1102);
    assert_eq!(store.delete_prefix("many").await.unwrap(), 1101);
    assert_eq!(store.count_files("", None).await.unwrap(), 1);
    assert_eq!(names(&store.list("", 0, 10).await.unwrap()), ["d:many0"]);
}

#[tokio::test]
async fn s3_get_stream_reads_a_range() {
    let Some((_moto, store)) = s3("s3_get_stream_reads_a_range").await else {
        return;
    };
    let data = pattern(1 << 20);
    store.put("r", Bytes::from(data.clone())).await.unwrap();
    let (info, body) = store
        .get_stream("r", Some(1000..300_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 1 << 20);
    assert!(info.last_modified > 0.0);
    assert!(collect(body).await.unwrap() == data[1000..300_000]);
    let (info, body) = store
        .get_stream("r", Some((1 << 20) - 5..u64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 1 << 20);
    assert_eq!(collect(body).await.unwrap(), data[(1 << 20) - 5..]);
    let (info, body) = store
        .get_stream("r", Some(2 << 20..3 << 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 1 << 20);
    assert!(collect(body).await.unwrap().is_empty());
}
