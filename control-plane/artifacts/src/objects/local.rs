//! [`LocalObjectStore`]: the [`ObjectStore`] over a local directory, the default when the
//! server runs without S3 (spec artifacts.md §8 "Storage backend", alternative). The
//! object `a/b/c.txt` is the file `{root}/a/b/c.txt`.
//!
//! * **Atomic writes.** `put` and `copy` write a temporary file in the target's own
//!   directory, flush it to disk and rename it over the target, so a reader sees the old
//!   object or the new one. Temporary names start with [`TEMP_PREFIX`]; keys with such a
//!   segment are refused, and leftovers of a crash are never listed or counted.
//! * **Staying inside the root.** Keys are validated (no `..`, no absolute path); on top
//!   of that, the deepest existing ancestor of every path is canonicalised and must lie
//!   under the canonical root, so a symlink planted in the tree cannot lead a key out of
//!   it. Listings and counts do not follow symlinks at all.
//! * **Directories are implied, as on S3.** Parents are created on write, and a delete
//!   removes the directories it leaves empty (up to the root); a listed directory holds
//!   at least one object. Unlike S3, a filesystem cannot hold a file `a` and a file
//!   `a/b` at once: such a put is refused with `InvalidArgument`. The §1.7 layout never
//!   asks for it (`v0.json` sits beside `v0/`).

use super::{now_unix_f64, page, validate_key, validate_prefix, Entry, ObjectInfo, ObjectStore};
use crate::error::{ArtifactError, ArtifactResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::io::{ErrorKind, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// How the names of temporary files begin; a key segment may not.
pub const TEMP_PREFIX: &str = ".rhizo-tmp-";

/// How often a write is retried when a concurrent delete pruned its fresh directory.
const WRITE_ATTEMPTS: usize = 3;

/// An [`ObjectStore`] keeping each object as a file under `root`. Share it as
/// `Arc<dyn ObjectStore>`.
#[derive(Debug)]
pub struct LocalObjectStore {
    /// The directory as configured (created on first use).
    root: PathBuf,
    /// `root` created and canonicalised, once.
    canonical: OnceCell<PathBuf>,
}

/// Where a write takes its bytes from.
enum Source<'a> {
    Bytes(Bytes),
    /// A file of the store (a `copy`).
    File(&'a Path),
    /// A finished temporary file of a streamed upload, moved into place (a rename on the
    /// same filesystem).
    Moved(&'a Path),
}

// === impl LocalObjectStore ===

impl LocalObjectStore {
    /// A store under `root` (e.g. `{data-dir}/objects`). The directory is created on
    /// first use; nothing is touched here.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            canonical: OnceCell::new(),
        }
    }

    /// The directory as configured.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn canonical_root(&self) -> ArtifactResult<&Path> {
        self.canonical
            .get_or_try_init(|| async {
                tokio::fs::create_dir_all(&self.root).await.map_err(|e| {
                    io_error("create the root", &self.root.display().to_string(), e)
                })?;
                tokio::fs::canonicalize(&self.root)
                    .await
                    .map_err(|e| io_error("resolve the root", &self.root.display().to_string(), e))
            })
            .await
            .map(PathBuf::as_path)
    }

    /// The path of `key` (`""` is the root) under the canonical root, after checking
    /// that no symlink leads it outside.
    async fn resolve(&self, key: &str) -> ArtifactResult<(PathBuf, PathBuf)> {
        if key.split('/').any(|s| s.starts_with(TEMP_PREFIX)) {
            return Err(ArtifactError::invalid(format!(
                "Invalid file path '{key}': names starting with '{TEMP_PREFIX}' are reserved."
            )));
        }
        let root = self.canonical_root().await?.to_path_buf();
        let path = if key.is_empty() {
            root.clone()
        } else {
            key.split('/').fold(root.clone(), |p, s| p.join(s))
        };
        // The deepest existing ancestor decides where the path really leads.
        let mut probe = path.as_path();
        loop {
            match tokio::fs::canonicalize(probe).await {
                Ok(real) if real.starts_with(&root) => break,
                Ok(_) => {
                    return Err(ArtifactError::invalid(format!(
                        "Invalid file path '{key}': it leads outside the object store."
                    )))
                }
                Err(e) if is_missing(&e) && probe != root => match probe.parent() {
                    Some(parent) => probe = parent,
                    None => break,
                },
                Err(e) => return Err(io_error("resolve", key, e)),
            }
        }
        Ok((root, path))
    }

    /// Writes `source` to `path` through a temporary file and a rename.
    async fn write(
        &self,
        root: &Path,
        path: &Path,
        key: &str,
        source: Source<'_>,
    ) -> ArtifactResult<()> {
        let parent = path.parent().unwrap_or(root);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match write_once(parent, path, &source).await {
                Ok(()) => return Ok(()),
                // A concurrent delete removed the fresh parent: create it again.
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < WRITE_ATTEMPTS => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotADirectory | ErrorKind::AlreadyExists) => {
                    return Err(ArtifactError::invalid(format!(
                        "Cannot store '{key}': a file exists where a directory of its path should be."
                    )))
                }
                Err(e) if matches!(e.kind(), ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty) => {
                    return Err(ArtifactError::invalid(format!(
                        "Cannot store '{key}': a directory of files exists at that path."
                    )))
                }
                Err(e) => return Err(io_error("write", key, e)),
            }
        }
    }
}

/// One attempt of [`LocalObjectStore::write`]; the temporary file is removed on failure.
async fn write_once(parent: &Path, path: &Path, source: &Source<'_>) -> std::io::Result<()> {
    tokio::fs::create_dir_all(parent).await?;
    let temp = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let result = async {
        match source {
            Source::Bytes(bytes) => {
                let mut file = tokio::fs::File::create(&temp).await?;
                file.write_all(bytes).await?;
                file.sync_all().await?;
            }
            Source::File(from) => {
                tokio::fs::copy(from, &temp).await?;
                tokio::fs::File::open(&temp).await?.sync_all().await?;
            }
            Source::Moved(from) => tokio::fs::rename(from, &temp).await?,
        }
        if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
            return Err(std::io::Error::from(ErrorKind::IsADirectory));
        }
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// Whether an I/O error means "nothing there" (including a file where a directory of
/// the path should be).
fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

fn io_error(op: &str, key: &str, e: std::io::Error) -> ArtifactError {
    ArtifactError::ObjectStore(format!("cannot {op} '{key}': {e}"))
}

/// The metadata of the regular file at `path`, or `None` (missing, or a directory).
async fn file_meta(path: &Path, key: &str) -> ArtifactResult<Option<std::fs::Metadata>> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(io_error("inspect", key, e)),
    }
}

fn mtime(meta: &std::fs::Metadata) -> f64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(now_unix_f64, |d| d.as_secs_f64())
}

/// Removes the empty directories from `path`'s parent up to (not including) `root`.
async fn prune(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || tokio::fs::remove_dir(d).await.is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Every regular file under `dir` at any depth, without following symlinks; stops at
/// the first one when `first_only`. A missing `dir` (or a file) has none.
async fn walk(dir: &Path, key: &str, first_only: bool) -> ArtifactResult<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries = match tokio::fs::read_dir(&d).await {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(io_error("list", key, e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("list", key, e))?
        {
            let is_temp = entry
                .file_name()
                .to_str()
                .is_none_or(|n| n.starts_with(TEMP_PREFIX));
            let kind = entry
                .file_type()
                .await
                .map_err(|e| io_error("list", key, e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && !is_temp {
                found.push(entry.path());
                if first_only {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> ArtifactResult<()> {
        validate_key(key)?;
        let (root, path) = self.resolve(key).await?;
        self.write(&root, &path, key, Source::Bytes(bytes)).await
    }

    async fn put_stream(&self, key: &str, mut body: super::ByteStream) -> ArtifactResult<u64> {
        use futures_util::StreamExt;
        validate_key(key)?;
        let (root, path) = self.resolve(key).await?;
        // The body goes to a temporary file at the root first: a cut-off upload leaves
        // nothing under the key, and only a whole one is renamed into place.
        let temp = root.join(format!("{TEMP_PREFIX}up-{:016x}", rand::random::<u64>()));
        let received = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| io_error("write", key, e))?;
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|e| ArtifactError::ObjectStore(format!("upload of {key}: {e}")))?;
                n += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("write", key, e))?;
            }
            file.sync_all()
                .await
                .map_err(|e| io_error("write", key, e))?;
            Ok::<_, ArtifactError>(n)
        }
        .await;
        let result = match received {
            Ok(n) => self
                .write(&root, &path, key, Source::Moved(&temp))
                .await
                .map(|()| n),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    async fn get_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> ArtifactResult<Option<(ObjectInfo, super::ByteStream)>> {
        validate_key(key)?;
        let (_, path) = self.resolve(key).await?;
        let Some(meta) = file_meta(&path, key).await? else {
            return Ok(None);
        };
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_error("read", key, e)),
        };
        let info = ObjectInfo {
            size: meta.len(),
            last_modified: mtime(&meta),
        };
        let range = range.unwrap_or(0..meta.len());
        let start = range.start.min(meta.len());
        let end = range.end.clamp(start, meta.len());
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| io_error("read", key, e))?;
        let reader = file.take(end - start);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
        Ok(Some((info, Box::pin(stream))))
    }

    async fn get(&self, key: &str) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        let (_, path) = self.resolve(key).await?;
        if file_meta(&path, key).await?.is_none() {
            return Ok(None);
        }
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_error("read", key, e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        let (_, path) = self.resolve(key).await?;
        let Some(meta) = file_meta(&path, key).await? else {
            return Ok(None);
        };
        let start = range.start.min(meta.len());
        let end = range.end.clamp(start, meta.len());
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_error("read", key, e)),
        };
        let read = async {
            file.seek(SeekFrom::Start(start)).await?;
            let mut buf = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
            file.take(end - start).read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        read.await
            .map(|buf| Some(Bytes::from(buf)))
            .map_err(|e| io_error("read", key, e))
    }

    async fn head(&self, key: &str) -> ArtifactResult<Option<ObjectInfo>> {
        validate_key(key)?;
        let (_, path) = self.resolve(key).await?;
        Ok(file_meta(&path, key).await?.map(|m| ObjectInfo {
            size: m.len(),
            last_modified: mtime(&m),
        }))
    }

    async fn delete(&self, key: &str) -> ArtifactResult<()> {
        validate_key(key)?;
        let (root, path) = self.resolve(key).await?;
        if file_meta(&path, key).await?.is_none() {
            return Ok(());
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(io_error("delete", key, e)),
        }
        prune(&root, &path).await;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let (root, dir) = self.resolve(prefix).await?;
        if !tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            return Ok(0);
        }
        let count = walk(&dir, prefix, false).await?.len() as u64;
        let doomed = if dir == root {
            // Keep the root itself: remove what is in it.
            let mut children = Vec::new();
            let mut entries = tokio::fs::read_dir(&dir)
                .await
                .map_err(|e| io_error("list", prefix, e))?;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_error("list", prefix, e))?
            {
                children.push(entry.path());
            }
            children
        } else {
            vec![dir.clone()]
        };
        for path in doomed {
            let removed = match tokio::fs::symlink_metadata(&path).await {
                Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&path).await,
                Ok(_) => tokio::fs::remove_file(&path).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_error("delete", prefix, e)),
            }
        }
        if dir != root {
            prune(&root, &dir).await;
        }
        Ok(count)
    }

    async fn copy(&self, from: &str, to: &str) -> ArtifactResult<()> {
        validate_key(from)?;
        validate_key(to)?;
        let (_, source) = self.resolve(from).await?;
        let (root, target) = self.resolve(to).await?;
        if file_meta(&source, from).await?.is_none() {
            return Err(ArtifactError::NotFound(format!(
                "Object '{from}' does not exist."
            )));
        }
        match self.write(&root, &target, to, Source::File(&source)).await {
            // The source vanished between the check and the copy.
            Err(ArtifactError::ObjectStore(_)) if file_meta(&source, from).await?.is_none() => Err(
                ArtifactError::NotFound(format!("Object '{from}' does not exist.")),
            ),
            other => other,
        }
    }

    async fn list(&self, dir: &str, offset: u64, limit: u64) -> ArtifactResult<Vec<Entry>> {
        validate_prefix(dir)?;
        let (_, path) = self.resolve(dir).await?;
        let mut entries = match tokio::fs::read_dir(&path).await {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", dir, e)),
        };
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("list", dir, e))?
        {
            // A name that is not UTF-8 cannot be a key; temporaries are not objects.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let kind = entry
                .file_type()
                .await
                .map_err(|e| io_error("list", dir, e))?;
            if kind.is_file() {
                let meta = match entry.metadata().await {
                    Ok(meta) => meta,
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(io_error("list", dir, e)),
                };
                files.push((name, meta.len(), mtime(&meta)));
            } else if kind.is_dir() && !walk(&entry.path(), dir, true).await?.is_empty() {
                dirs.push(name);
            }
        }
        Ok(page(files, dirs, offset, limit))
    }

    async fn count_files(&self, prefix: &str, exclude_suffix: Option<&str>) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let (_, dir) = self.resolve(prefix).await?;
        let found = walk(&dir, prefix, false).await?;
        let n = found
            .iter()
            .filter(|p| exclude_suffix.is_none_or(|s| !p.to_str().is_some_and(|p| p.ends_with(s))))
            .count();
        Ok(n as u64)
    }
}
