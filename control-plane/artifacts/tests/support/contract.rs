//! The `ObjectStore` contract every backend meets, shared by `tests/objects.rs` (the
//! in-memory and local-directory stores) and `tests/objects_s3.rs` (the S3 store):
//! [`exercise`] runs every method on an empty store and leaves it empty, with the
//! helpers it and the backend-specific tests use.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use rhizo_artifacts::objects::{
    backup_key, default_prefix, file_key, snapshot_key, version_dir, ByteStream, Entry,
};
use rhizo_artifacts::{ArtifactError, ObjectStore};
use std::sync::Arc;

/// The entries of a listing as `f:<name>` (files) and `d:<name>` (directories).
pub fn names(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e {
            Entry::File { name, .. } => format!("f:{name}"),
            Entry::Directory { name } => format!("d:{name}"),
        })
        .collect()
}

/// Asserts that `result` is an [`ArtifactError::InvalidArgument`]; `what` names the case.
pub fn invalid<T: std::fmt::Debug>(result: Result<T, ArtifactError>, what: &str) {
    match result {
        Err(ArtifactError::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Exercises every method on an empty store.
pub async fn exercise(store: Arc<dyn ObjectStore>) {
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
pub async fn collect(mut body: ByteStream) -> std::io::Result<Vec<u8>> {
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
    // A body of announced length: stored when it has exactly that many bytes, nothing
    // stored when it is shorter or longer.
    assert_eq!(
        store
            .put_stream_len("ws/sized", chunks(&[b"abc", b"def"]), 6)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store.get("ws/sized").await.unwrap().as_deref(),
        Some(&b"abcdef"[..])
    );
    for (parts, len) in [(&[&b"abc"[..]][..], 6u64), (&[&b"abcdefgh"[..]][..], 6)] {
        assert!(store
            .put_stream_len("ws/wrong", chunks(parts), len)
            .await
            .is_err());
        assert_eq!(store.get("ws/wrong").await.unwrap(), None, "{len}");
    }
    assert!(store
        .put_stream_len(key, failing(&[b"ab"]), 10)
        .await
        .is_err());
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"abcdefghij"[..])
    );
    assert_eq!(store.count_files("ws", None).await.unwrap(), 3);
    assert_eq!(store.delete_prefix("ws").await.unwrap(), 3);
}
