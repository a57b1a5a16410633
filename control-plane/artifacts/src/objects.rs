//! The object store for artifact file bytes (spec artifacts.md §1.7, §5.1, §8 "Storage
//! backend"): one [`ObjectStore`] trait, held as `Arc<dyn ObjectStore>`, with
//! [`LocalObjectStore`] (files under a directory, the default when the server runs
//! without S3) and [`MemoryObjectStore`] (tests). One contract suite
//! (`control-plane/artifacts/tests/objects.rs`) runs against both.
//!
//! **Designed for S3.** The trait speaks S3's model, not a filesystem's: flat string
//! keys, whole-object put (PutObject), get with an optional byte range (GetObject
//! `Range`), head (HeadObject), delete that tolerates a missing key (DeleteObject),
//! prefix removal (ListObjectsV2 + DeleteObjects), server-side copy (CopyObject) and
//! one-level listing with a `/` delimiter (ListObjectsV2 `Delimiter`). There are no
//! directories to create, no rename, no append and no locking; a "directory" is only a
//! shared key prefix, so an empty one does not exist (the local store prunes the empty
//! directories a delete leaves, to answer the same). The S3 implementation (next, with
//! aws-sdk-s3) maps each method to the operations named on it. Presigned URLs are not
//! [`ObjectStore::presign`] (S3 only: the
//! local and memory stores answer `None`, and the service hands out URLs rhizo signs and
//! serves itself, see `signing.rs`).
//!
//! **Streaming.** [`ObjectStore::put_stream`] and [`ObjectStore::get_stream`] move a body
//! of any size in chunks ([`ByteStream`]); nothing holds a whole file in memory. The
//! defaults (used by the memory store) collect or slice in memory.
//!
//! **Multipart uploads** (§3.10–3.11) are [`ObjectStore::multipart_start`],
//! [`ObjectStore::presign_part`] and [`ObjectStore::multipart_complete`]: S3's own
//! CreateMultipartUpload / UploadPart / CompleteMultipartUpload. Stores without them
//! answer `None` from `multipart_start`, and the service stores parts as objects of
//! their own and joins them with `put_stream` (see `service/files.rs`).
//!
//! **Keys** are `/`-separated relative paths, checked with the rules of
//! [`ids::safe_join`](crate::ids::safe_join): not empty, not absolute, no backslash, no
//! NUL, no empty, `.` or `..` segment. A bad key is [`ArtifactError::InvalidArgument`]
//! on every backend, before any I/O. The layout of §1.7 is built by [`file_key`],
//! [`snapshot_key`], [`backup_key`] and [`version_dir`] under [`default_prefix`].
//!
//! **Prefixes** (`dir` of [`ObjectStore::list`], `prefix` of
//! [`ObjectStore::delete_prefix`] and [`ObjectStore::count_files`]) have directory
//! semantics: they match the keys under `prefix/`, never a sibling such as `prefix0/...`
//! or `prefix.json`; the empty prefix is the whole store. Upstream's S3 prefix `v1`
//! would also match `v10/...` and the `v1.json` snapshot; rhizo's never does.
//!
//! Failures of the backend itself (I/O, the network) are
//! [`ArtifactError::ObjectStore`].

mod local;
mod memory;
mod s3;

pub use local::{LocalObjectStore, TEMP_PREFIX};
pub use memory::MemoryObjectStore;
pub use s3::{S3Config, S3ObjectStore};

use crate::error::{ArtifactError, ArtifactResult};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::Serialize;
use std::ops::Range;
use std::time::Duration;

/// A body moved in chunks: what [`ObjectStore::put_stream`] reads and
/// [`ObjectStore::get_stream`] yields. An `Err` item aborts the transfer.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What a presigned URL lets its holder do (§3.9, §3.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignOp {
    /// GetObject (a download).
    Get,
    /// PutObject (an upload of the whole object).
    Put,
}

/// One uploaded part of a multipart upload, as the client reports it at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// 1-based part number.
    pub part_number: u32,
    /// The ETag the server answered to the part's PUT.
    pub etag: String,
}

/// What [`ObjectStore::head`] reports of an object (HeadObject).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectInfo {
    /// Its length in bytes.
    pub size: u64,
    /// When it was last written, unix seconds with a fraction (S3 `LastModified`; the
    /// file's mtime locally).
    pub last_modified: f64,
}

/// One item of a directory listing (§1.7 "Listing semantics", §3.14 `list_files`);
/// serialises as the JSON upstream returns: `{"type": "file", "name", "size",
/// "last_modified"}` or `{"type": "directory", "name"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    /// An object directly in the listed directory.
    File {
        /// Its basename (the key after the listed `dir/`).
        name: String,
        /// Its length in bytes.
        size: u64,
        /// When it was last written, unix seconds.
        last_modified: f64,
    },
    /// A shared prefix one level down (S3 `CommonPrefixes`): at least one object lies
    /// under `dir/name/`.
    Directory {
        /// The segment after the listed `dir/`, without a trailing `/`.
        name: String,
    },
}

/// Where artifact file bytes live. Object-safe; hold it as `Arc<dyn ObjectStore>`.
///
/// Every write is atomic per object: a reader sees the old bytes or the new ones, never
/// a part. Nothing is atomic across objects ([`ObjectStore::delete_prefix`] that fails
/// half-way leaves the rest). All methods are cancel-safe in that sense: dropping a
/// future leaves every object whole (a cancelled put may or may not have landed).
///
/// # Errors
/// Every method: [`ArtifactError::InvalidArgument`] for a bad key or prefix (module
/// docs) and [`ArtifactError::ObjectStore`] when the backend fails.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` at `key`, replacing any object there (PutObject).
    async fn put(&self, key: &str, bytes: Bytes) -> ArtifactResult<()>;

    /// The whole object at `key`, or `None` when there is none (GetObject).
    async fn get(&self, key: &str) -> ArtifactResult<Option<Bytes>>;

    /// The bytes `range` of the object at `key` (GetObject with `Range:
    /// bytes=start-(end-1)`; §3.15 `read_file`, proxy streaming), or `None` when there
    /// is no object. The range is clipped to the object: past its end the result is
    /// shorter, or empty when `range.start` is at or past the end (where S3 answers
    /// 416), and an empty or reversed range gives no bytes.
    async fn get_range(&self, key: &str, range: Range<u64>) -> ArtifactResult<Option<Bytes>>;

    /// Size and modification time of the object at `key`, or `None` (HeadObject).
    async fn head(&self, key: &str) -> ArtifactResult<Option<ObjectInfo>>;

    /// Removes the object at `key`; a missing one is not an error (DeleteObject).
    async fn delete(&self, key: &str) -> ArtifactResult<()>;

    /// Removes every object under `prefix/` (the whole store for `""`) and returns how
    /// many there were (ListObjectsV2 without delimiter + batched DeleteObjects; §3.6
    /// `delete_files`, §1.6 discarding `.stage_backup`).
    async fn delete_prefix(&self, prefix: &str) -> ArtifactResult<u64>;

    /// Copies the object at `from` to `to`, replacing any object there (CopyObject;
    /// §1.6 stage backup and restore). The copy gets a new `last_modified`.
    ///
    /// # Errors
    /// Also [`ArtifactError::NotFound`] when there is no object at `from`.
    async fn copy(&self, from: &str, to: &str) -> ArtifactResult<()>;

    /// One level of the directory `dir` (`""` is the root) as §1.7 lists it: the files
    /// directly in it, sorted by name, then its subdirectories, sorted by name; `offset`
    /// entries of that sequence are skipped and at most `limit` returned. A directory
    /// with no object under it (including a missing one, or a key of a file) lists as
    /// empty. Names sort by their UTF-8 bytes, as S3 returns keys.
    async fn list(&self, dir: &str, offset: u64, limit: u64) -> ArtifactResult<Vec<Entry>>;

    /// How many objects lie under `prefix/` at any depth whose key does not end with
    /// `exclude_suffix` (ListObjectsV2 without delimiter; §1.8 `file_count` at commit,
    /// where upstream excludes `.json`). With directory semantics the `v{i}.json`
    /// snapshot is never under `v{i}/`, so the suffix only matters for user files.
    async fn count_files(&self, prefix: &str, exclude_suffix: Option<&str>) -> ArtifactResult<u64>;

    /// Stores the bytes of `body` at `key` as [`ObjectStore::put`] does, atomically: when
    /// `body` yields an error or the future is dropped midway, no object (and no part of
    /// one) becomes visible at `key`, and an object already there stays. Returns the
    /// number of bytes stored. Memory held is bounded by a few chunks, never the body.
    ///
    /// The default collects `body` in memory and calls `put` (the memory store).
    ///
    /// # Errors
    /// Also [`ArtifactError::ObjectStore`] when `body` fails (the upload was cut off).
    async fn put_stream(&self, key: &str, mut body: ByteStream) -> ArtifactResult<u64> {
        use futures_util::StreamExt;
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ArtifactError::ObjectStore(format!("upload of {key}: {e}")))?;
            buf.extend_from_slice(&chunk);
        }
        let n = buf.len() as u64;
        self.put(key, Bytes::from(buf)).await?;
        Ok(n)
    }

    /// [`ObjectStore::put_stream`] of a body announced as `len` bytes (an HTTP upload's
    /// `Content-Length`): stores like S3 send it on as one streamed PutObject instead of
    /// buffering parts. A body that ends short of `len` or runs past it stores nothing.
    /// The default checks the length around `put_stream`.
    ///
    /// # Errors
    /// As [`ObjectStore::put_stream`]; also [`ArtifactError::ObjectStore`] when the body's
    /// length is not `len`.
    async fn put_stream_len(&self, key: &str, body: ByteStream, len: u64) -> ArtifactResult<u64> {
        self.put_stream(key, exact_length(body, len)).await
    }

    /// The object at `key` as a stream, with its [`ObjectInfo`] (the whole object's size),
    /// or `None` when there is none. With `range`, only those bytes, clipped to the
    /// object as in [`ObjectStore::get_range`].
    ///
    /// The default reads with `get_range` (the memory store).
    async fn get_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> ArtifactResult<Option<(ObjectInfo, ByteStream)>> {
        let Some(info) = self.head(key).await? else {
            return Ok(None);
        };
        let range = range.unwrap_or(0..info.size);
        let Some(bytes) = self.get_range(key, range).await? else {
            return Ok(None);
        };
        let stream = futures_util::stream::once(async move { Ok(bytes) });
        Ok(Some((info, Box::pin(stream))))
    }

    /// A URL that lets anyone holding it perform `op` on `key` for `expires` (SigV4
    /// query-string presigning), or `None` when this store has no URLs of its own (the
    /// local and memory stores, the default): the service then signs a URL served by
    /// rhizo.
    async fn presign(
        &self,
        _op: PresignOp,
        _key: &str,
        _expires: Duration,
    ) -> ArtifactResult<Option<String>> {
        Ok(None)
    }

    /// Starts a native multipart upload to `key` (CreateMultipartUpload) and returns its
    /// upload id, or `None` when the store has none (the default).
    async fn multipart_start(&self, _key: &str) -> ArtifactResult<Option<String>> {
        Ok(None)
    }

    /// A presigned URL for the PUT of part `part_number` (1-based) of the native upload
    /// `upload_id` to `key` (UploadPart).
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when the store has no native multipart uploads
    /// (the default).
    async fn presign_part(
        &self,
        _key: &str,
        _upload_id: &str,
        _part_number: u32,
        _expires: Duration,
    ) -> ArtifactResult<String> {
        Err(ArtifactError::invalid(
            "this object store has no native multipart uploads",
        ))
    }

    /// Completes the native upload `upload_id` to `key` from `parts` (sorted by part
    /// number first; CompleteMultipartUpload). The object appears whole at `key`.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when the store has none (the default), or for
    /// parts the backend rejects (missing, wrong ETag).
    async fn multipart_complete(
        &self,
        _key: &str,
        _upload_id: &str,
        _parts: &[UploadedPart],
    ) -> ArtifactResult<()> {
        Err(ArtifactError::invalid(
            "this object store has no native multipart uploads",
        ))
    }
}

/// `body`, failing (with an error item) as soon as it runs past `len` bytes or ends short
/// of them, so that a store writing it keeps nothing (for [`ObjectStore::put_stream_len`]).
pub fn exact_length(body: ByteStream, len: u64) -> ByteStream {
    use futures_util::StreamExt;
    let mut seen = 0u64;
    let mut ended = false;
    let mut body = body;
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        if ended {
            return std::task::Poll::Ready(None);
        }
        match body.poll_next_unpin(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Some(Ok(chunk))) => {
                seen += chunk.len() as u64;
                if seen > len {
                    ended = true;
                    let e = std::io::Error::other(format!("the body is longer than {len} bytes"));
                    return std::task::Poll::Ready(Some(Err(e)));
                }
                std::task::Poll::Ready(Some(Ok(chunk)))
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                ended = true;
                std::task::Poll::Ready(Some(Err(e)))
            }
            std::task::Poll::Ready(None) => {
                ended = true;
                if seen == len {
                    std::task::Poll::Ready(None)
                } else {
                    let e = std::io::Error::other(format!(
                        "the body ended after {seen} of {len} bytes"
                    ));
                    std::task::Poll::Ready(Some(Err(e)))
                }
            }
        }
    }))
}

/// Checks an object key (module docs): not empty and acceptable to
/// [`safe_join`](crate::ids::safe_join).
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] naming the rule broken.
pub fn validate_key(key: &str) -> ArtifactResult<()> {
    if key.is_empty() {
        return Err(ArtifactError::invalid(
            "Invalid object key: it must not be empty.",
        ));
    }
    crate::ids::safe_join("", key).map(|_| ())
}

/// Checks a prefix or directory: empty (the root) or a valid key.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] naming the rule broken.
pub fn validate_prefix(prefix: &str) -> ArtifactResult<()> {
    crate::ids::safe_join("", prefix).map(|_| ())
}

/// The default key prefix of a workspace's artifacts (§1.7): `{workspace}/artifacts`.
pub fn default_prefix(workspace: &str) -> String {
    format!("{workspace}/artifacts")
}

/// `prefix` and `rest` joined with `/`; an empty `prefix` (per-artifact S3 secrets
/// without `S3_PREFIX`, §1.7) gives `rest`, and trailing `/`s of `prefix` are dropped.
fn under(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// The directory of the files of version index `index` (§1.6: the list index, not the
/// name): `{prefix}/{artifact_uuid}/v{index}`. List it, count it, delete it as a prefix.
pub fn version_dir(prefix: &str, artifact_uuid: &str, index: u64) -> String {
    under(prefix, &format!("{artifact_uuid}/v{index}"))
}

/// The key of the user file `path` in version index `index` (§1.7):
/// `{prefix}/{artifact_uuid}/v{index}/{path}`.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when `path` is empty or not a safe relative path.
pub fn file_key(
    prefix: &str,
    artifact_uuid: &str,
    index: u64,
    path: &str,
) -> ArtifactResult<String> {
    validate_key(path)?;
    crate::ids::safe_join(&version_dir(prefix, artifact_uuid, index), path)
}

/// The key of the snapshot of the row for version index `index` (§1.6 "Version
/// snapshots"): `{prefix}/{artifact_uuid}/v{index}.json`.
pub fn snapshot_key(prefix: &str, artifact_uuid: &str, index: u64) -> String {
    under(prefix, &format!("{artifact_uuid}/v{index}.json"))
}

/// The directory holding the pristine copies an in-place edit saved (§1.6):
/// `{prefix}/{artifact_uuid}/.stage_backup`.
pub fn backup_dir(prefix: &str, artifact_uuid: &str) -> String {
    under(prefix, &format!("{artifact_uuid}/.stage_backup"))
}

/// The key of the pristine copy of `path` during an in-place edit (§1.6):
/// `{prefix}/{artifact_uuid}/.stage_backup/{path}`.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when `path` is empty or not a safe relative path.
pub fn backup_key(prefix: &str, artifact_uuid: &str, path: &str) -> ArtifactResult<String> {
    validate_key(path)?;
    crate::ids::safe_join(&backup_dir(prefix, artifact_uuid), path)
}

/// The directory of everything an artifact stores (§3.6 `delete_files`):
/// `{prefix}/{artifact_uuid}`.
pub fn artifact_dir(prefix: &str, artifact_uuid: &str) -> String {
    under(prefix, artifact_uuid)
}

/// The listing of §1.7 from its parts: `files` (name, size, mtime) sorted, then the
/// distinct `dirs` sorted, then `offset` skipped and `limit` kept.
fn page(
    mut files: Vec<(String, u64, f64)>,
    mut dirs: Vec<String>,
    offset: u64,
    limit: u64,
) -> Vec<Entry> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    dirs.sort();
    dirs.dedup();
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    files
        .into_iter()
        .map(|(name, size, last_modified)| Entry::File {
            name,
            size,
            last_modified,
        })
        .chain(dirs.into_iter().map(|name| Entry::Directory { name }))
        .skip(offset)
        .take(limit)
        .collect()
}

/// The bytes `range` of `data`, clipped as [`ObjectStore::get_range`] says.
fn clip(data: &Bytes, range: Range<u64>) -> Bytes {
    let len = data.len() as u64;
    let start = range.start.min(len);
    let end = range.end.clamp(start, len);
    // Both bounds are at most `len`, which came from a usize.
    data.slice(start as usize..end as usize)
}

/// The current time as unix seconds with a fraction.
fn now_unix_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let p = default_prefix("ws-user-alice");
        assert_eq!(p, "ws-user-alice/artifacts");
        assert_eq!(
            file_key(&p, "u", 0, "data/train.csv").unwrap(),
            "ws-user-alice/artifacts/u/v0/data/train.csv"
        );
        assert_eq!(
            snapshot_key(&p, "u", 3),
            "ws-user-alice/artifacts/u/v3.json"
        );
        assert_eq!(
            backup_key(&p, "u", "a/b").unwrap(),
            "ws-user-alice/artifacts/u/.stage_backup/a/b"
        );
        assert_eq!(version_dir("", "u", 1), "u/v1");
        assert_eq!(file_key("pre/", "u", 1, "x").unwrap(), "pre/u/v1/x");
        assert_eq!(artifact_dir(&p, "u"), "ws-user-alice/artifacts/u");
        for bad in ["", "../x", "/x", "a//b", "a\\b"] {
            assert!(matches!(
                file_key(&p, "u", 0, bad),
                Err(ArtifactError::InvalidArgument(_))
            ));
            assert!(backup_key(&p, "u", bad).is_err());
        }
    }

    #[test]
    fn listing_entries_serialise_like_upstream() {
        let file = Entry::File {
            name: "a.txt".into(),
            size: 3,
            last_modified: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::json!({"type": "file", "name": "a.txt", "size": 3, "last_modified": 1.5})
        );
        let dir = Entry::Directory { name: "d".into() };
        assert_eq!(
            serde_json::to_value(&dir).unwrap(),
            serde_json::json!({"type": "directory", "name": "d"})
        );
    }

    #[test]
    fn ranges_are_clipped() {
        let data = Bytes::from_static(b"0123456789");
        assert_eq!(clip(&data, 2..5), &b"234"[..]);
        assert_eq!(clip(&data, 8..100), &b"89"[..]);
        assert!(clip(&data, 10..12).is_empty());
        assert!(clip(&data, 20..30).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = clip(&data, 5..2);
        assert!(reversed.is_empty());
    }
}
