//! [`MemoryObjectStore`]: the [`ObjectStore`] kept in the process's memory, for tests.
//! It behaves as S3 does (the contract suite in `control-plane/artifacts/tests/objects.rs`
//! runs it beside [`super::LocalObjectStore`]): keys are flat, so a key `a` and a key
//! `a/b` may both exist.
//!
//! One `std::sync::Mutex` guards the map; no method awaits while holding it.

use super::{
    clip, now_unix_f64, page, validate_key, validate_prefix, Entry, ObjectInfo, ObjectStore,
};
use crate::error::{ArtifactError, ArtifactResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

/// One stored object.
#[derive(Debug, Clone)]
struct Object {
    bytes: Bytes,
    /// Unix seconds of the last write.
    last_modified: f64,
}

/// An [`ObjectStore`] in memory. Share it as `Arc<dyn ObjectStore>`.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    /// Objects by key, ordered as S3 lists them.
    objects: Mutex<BTreeMap<String, Object>>,
}

// === impl MemoryObjectStore ===

impl MemoryObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<String, Object>> {
        // A panic while holding the lock leaves whole objects behind: still usable.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The keys under `prefix/` (all keys for `""`), as (key, part after the prefix).
fn under<'a>(
    objects: &'a BTreeMap<String, Object>,
    prefix: &str,
) -> impl Iterator<Item = (&'a String, &'a str, &'a Object)> {
    let start = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let skip = start.len();
    objects
        .range(start.clone()..)
        .take_while(move |(key, _)| key.starts_with(&start))
        .map(move |(key, object)| (key, &key[skip..], object))
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> ArtifactResult<()> {
        validate_key(key)?;
        let object = Object {
            bytes,
            last_modified: now_unix_f64(),
        };
        self.objects().insert(key.to_owned(), object);
        Ok(())
    }

    async fn get(&self, key: &str) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        Ok(self.objects().get(key).map(|o| o.bytes.clone()))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        Ok(self.objects().get(key).map(|o| clip(&o.bytes, range)))
    }

    async fn head(&self, key: &str) -> ArtifactResult<Option<ObjectInfo>> {
        validate_key(key)?;
        Ok(self.objects().get(key).map(|o| ObjectInfo {
            size: o.bytes.len() as u64,
            last_modified: o.last_modified,
        }))
    }

    async fn delete(&self, key: &str) -> ArtifactResult<()> {
        validate_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let mut objects = self.objects();
        let doomed: Vec<String> = under(&objects, prefix).map(|(k, _, _)| k.clone()).collect();
        for key in &doomed {
            objects.remove(key);
        }
        Ok(doomed.len() as u64)
    }

    async fn copy(&self, from: &str, to: &str) -> ArtifactResult<()> {
        validate_key(from)?;
        validate_key(to)?;
        let mut objects = self.objects();
        let Some(source) = objects.get(from) else {
            return Err(ArtifactError::NotFound(format!(
                "Object '{from}' does not exist."
            )));
        };
        let copy = Object {
            bytes: source.bytes.clone(),
            last_modified: now_unix_f64(),
        };
        objects.insert(to.to_owned(), copy);
        Ok(())
    }

    async fn list(&self, dir: &str, offset: u64, limit: u64) -> ArtifactResult<Vec<Entry>> {
        validate_prefix(dir)?;
        let objects = self.objects();
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (_, rest, object) in under(&objects, dir) {
            match rest.split_once('/') {
                Some((sub, _)) => dirs.push(sub.to_owned()),
                None => files.push((
                    rest.to_owned(),
                    object.bytes.len() as u64,
                    object.last_modified,
                )),
            }
        }
        Ok(page(files, dirs, offset, limit))
    }

    async fn count_files(&self, prefix: &str, exclude_suffix: Option<&str>) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let objects = self.objects();
        let n = under(&objects, prefix)
            .filter(|(key, _, _)| exclude_suffix.is_none_or(|s| !key.ends_with(s)))
            .count();
        Ok(n as u64)
    }
}
