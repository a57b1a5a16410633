//! The cache of Python environments of the conda-jupyter-kernel worker (apps-workers.md
//! §4.3), built with `uv` instead of conda.
//!
//! An environment lives at `{cache_dir}/env-{key[..16]}` where `key` is
//! [`EnvSpec::key`] (sha256 of the normalised spec); `{cache_dir}/index.json` records
//! `{key: {dir, python, packages, created_at, last_used}}` (Unix seconds). An entry is
//! valid only while its `bin/python` and its `.hypha_env_ready` marker exist and it is
//! younger than [`MAX_AGE`] (counted from its creation, as the reference does). After a
//! build, entries beyond [`MAX_ENTRIES`] are evicted least recently used first, and
//! expired ones too — never one a live session uses ([`EnvLease`]).
//!
//! A miss builds: `uv venv <dir> --python <interpreter>` (the app's `python=X` request,
//! else the worker's interpreter; uv never downloads one), then `uv pip install --python
//! <dir>/bin/python <EnvSpec::install_list>`, every output line going to the caller's
//! `log` as it comes. The marker is written last; a build that fails or is cancelled
//! removes the directory. Builds of one key are serialised (a per-key async lock): two
//! sessions starting with the same spec build once, the second one uses the first's
//! result. The index is shared by the sessions of one worker process; several worker
//! processes sharing a cache directory may rebuild or evict each other's entries.

use super::spec::EnvSpec;
use crate::error::{WorkerError, WorkerResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

/// At most this many environments are kept (LRU beyond).
pub(crate) const MAX_ENTRIES: usize = 10;

/// An environment older than this (since it was built) is rebuilt: 30 days.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The file whose presence says that an environment is complete.
pub(crate) const READY_MARKER: &str = ".hypha_env_ready";

/// The cache: where environments go and how they are built.
pub(crate) struct EnvCache {
    dir: PathBuf,
    /// The uv binary (absolute).
    uv: PathBuf,
    /// The interpreter environments are made from when the app asks for no version.
    python: PathBuf,
    /// Per-key build locks.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Keys in use by live sessions, with their count; never evicted.
    in_use: Arc<Mutex<HashMap<String, usize>>>,
    /// Serialises the index's read-modify-write.
    index_lock: Mutex<()>,
}

/// A ready environment, held by a session: while it lives its entry is not evicted.
pub(crate) struct EnvLease {
    /// `{dir}/bin/python`.
    pub(crate) python: PathBuf,
    /// The environment's directory.
    pub(crate) dir: PathBuf,
    key: String,
    in_use: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for EnvLease {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().expect("in_use lock");
        if let Some(n) = in_use.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.key);
            }
        }
    }
}

/// One cached environment in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    /// The directory's name under the cache directory.
    pub(crate) dir: String,
    /// The interpreter it was made from (request or path).
    pub(crate) python: String,
    /// What was installed.
    pub(crate) packages: Vec<String>,
    /// Unix seconds.
    pub(crate) created_at: u64,
    /// Unix seconds.
    pub(crate) last_used: u64,
}

/// `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Index {
    pub(crate) entries: BTreeMap<String, Entry>,
}

impl Index {
    /// Whether `key`'s entry has outlived `max_age` at `now` (absent: no).
    pub(crate) fn expired(&self, key: &str, now: u64, max_age: Duration) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| now.saturating_sub(e.created_at) > max_age.as_secs())
    }

    /// The keys to evict at `now`: every expired entry, then the least recently used ones
    /// until at most `max_entries` remain; never a key `keep` says to keep.
    pub(crate) fn evictions(
        &self,
        now: u64,
        max_entries: usize,
        max_age: Duration,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .keys()
            .filter(|k| self.expired(k, now, max_age) && !keep(k))
            .cloned()
            .collect();
        let mut rest: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(k, _)| !out.contains(k))
            .collect();
        rest.sort_by_key(|(k, e)| (e.last_used, (*k).clone()));
        let mut excess = rest.len().saturating_sub(max_entries);
        for (k, _) in rest {
            if excess == 0 {
                break;
            }
            if !keep(k) {
                out.push(k.clone());
                excess -= 1;
            }
        }
        out
    }
}

/// Now in Unix seconds.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The directory name of `key`'s environment.
pub(crate) fn env_dir_name(key: &str) -> String {
    format!("env-{}", &key[..key.len().min(16)])
}

/// Whether `dir` holds a complete environment.
pub(crate) fn is_ready(dir: &Path) -> bool {
    dir.join("bin/python").exists() && dir.join(READY_MARKER).is_file()
}

impl EnvCache {
    /// Errors: the cache directory cannot be created.
    pub(crate) fn new(dir: PathBuf, uv: PathBuf, python: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(EnvCache {
            dir: std::path::absolute(&dir)?,
            uv,
            python,
            locks: Mutex::default(),
            in_use: Arc::default(),
            index_lock: Mutex::new(()),
        })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// The index on disk (empty when missing or unreadable).
    fn read_index(&self) -> Index {
        std::fs::read(self.index_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write_index(&self, index: &Index) {
        let tmp = self
            .dir
            .join(format!(".index.{}.json", uuid::Uuid::new_v4()));
        let body = serde_json::to_vec_pretty(index).unwrap_or_default();
        if std::fs::write(&tmp, body).is_err() || std::fs::rename(&tmp, self.index_path()).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(dir = %self.dir.display(), "could not write the environment index");
        }
    }

    /// Changes the index under the lock.
    fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        let _g = self.index_lock.lock().expect("index lock");
        let mut index = self.read_index();
        let out = f(&mut index);
        self.write_index(&index);
        out
    }

    fn lease(&self, key: &str, dir: PathBuf) -> EnvLease {
        *self
            .in_use
            .lock()
            .expect("in_use lock")
            .entry(key.to_owned())
            .or_default() += 1;
        EnvLease {
            python: dir.join("bin/python"),
            dir,
            key: key.to_owned(),
            in_use: self.in_use.clone(),
        }
    }

    /// The environment of `spec`, from the cache or built now; `log` receives what
    /// happens (`"Using cached environment …"`, `"Creating environment …"`, uv's output
    /// lines). Returns early with an error when `cancel` turns true (the session was
    /// stopped), removing a half-built environment.
    ///
    /// Errors: [`WorkerError::Io`] with uv's last output lines when a build fails;
    /// [`WorkerError::Invalid`] when cancelled.
    pub(crate) async fn ensure(
        &self,
        spec: &EnvSpec,
        log: &mpsc::UnboundedSender<String>,
        cancel: &mut watch::Receiver<bool>,
    ) -> WorkerResult<EnvLease> {
        let key = spec.key(&self.python.to_string_lossy());
        let lock = self
            .locks
            .lock()
            .expect("locks lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let _build = tokio::select! {
            g = lock.lock() => g,
            _ = stopped(cancel) => return Err(cancelled()),
        };
        let name = env_dir_name(&key);
        let dir = self.dir.join(&name);
        let now = now_secs();
        let in_use = self.in_use.lock().expect("in_use lock").contains_key(&key);
        let expired = self.read_index().expired(&key, now, MAX_AGE);
        if is_ready(&dir) && (!expired || in_use) {
            let lease = self.lease(&key, dir.clone());
            self.update_index(|ix| {
                let e = ix.entries.entry(key.clone()).or_insert_with(|| Entry {
                    dir: name.clone(),
                    python: describe_python(spec, &self.python),
                    packages: spec.install_list(),
                    created_at: now,
                    last_used: now,
                });
                e.last_used = now;
            });
            let _ = log.send(format!("Using cached environment {}", dir.display()));
            return Ok(lease);
        }
        if dir.exists() {
            let why = if expired { "expired" } else { "incomplete" };
            let _ = log.send(format!("Removing {why} environment {}", dir.display()));
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        let started = std::time::Instant::now();
        let _ = log.send(format!(
            "Creating environment {} with uv ({})",
            dir.display(),
            spec.install_list().join(" ")
        ));
        let built = self.build(spec, &dir, log, cancel).await;
        if let Err(e) = built {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        if let Err(e) = tokio::fs::write(dir.join(READY_MARKER), b"").await {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(WorkerError::Io(format!(
                "marking {} ready: {e}",
                dir.display()
            )));
        }
        let lease = self.lease(&key, dir.clone());
        let evicted = self.update_index(|ix| {
            ix.entries.insert(
                key.clone(),
                Entry {
                    dir: name.clone(),
                    python: describe_python(spec, &self.python),
                    packages: spec.install_list(),
                    created_at: now,
                    last_used: now,
                },
            );
            let in_use = self.in_use.lock().expect("in_use lock");
            let gone = ix.evictions(now, MAX_ENTRIES, MAX_AGE, |k| in_use.contains_key(k));
            gone.into_iter()
                .filter_map(|k| ix.entries.remove(&k))
                .collect::<Vec<_>>()
        });
        for e in evicted {
            let _ = log.send(format!("Evicting cached environment {}", e.dir));
            let _ = tokio::fs::remove_dir_all(self.dir.join(&e.dir)).await;
        }
        let _ = log.send(format!(
            "Environment ready in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(lease)
    }

    async fn build(
        &self,
        spec: &EnvSpec,
        dir: &Path,
        log: &mpsc::UnboundedSender<String>,
        cancel: &mut watch::Receiver<bool>,
    ) -> WorkerResult<()> {
        let python = spec
            .python
            .clone()
            .unwrap_or_else(|| self.python.to_string_lossy().into_owned());
        let mut venv = vec!["venv".to_owned(), dir.to_string_lossy().into_owned()];
        venv.extend(["--python".to_owned(), python]);
        self.uv(&venv, log, cancel).await?;
        let mut install = vec![
            "pip".to_owned(),
            "install".to_owned(),
            "--python".to_owned(),
            dir.join("bin/python").to_string_lossy().into_owned(),
        ];
        install.extend(spec.install_list());
        self.uv(&install, log, cancel).await
    }

    /// Runs `uv <args>`, sending its output lines to `log`.
    async fn uv(
        &self,
        args: &[String],
        log: &mpsc::UnboundedSender<String>,
        cancel: &mut watch::Receiver<bool>,
    ) -> WorkerResult<()> {
        let mut cmd = tokio::process::Command::new(&self.uv);
        cmd.arg("--no-progress")
            .args(args)
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("NO_COLOR", "1")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = format!("uv {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| WorkerError::Io(format!("cannot run {}: {e}", self.uv.display())))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        if let Some(out) = child.stdout.take() {
            spawn_lines(out, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_lines(err, tx.clone());
        }
        drop(tx);
        let mut tail: Vec<String> = Vec::new();
        let status = loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(l) => {
                        let l = l.trim_end().to_owned();
                        if !l.is_empty() {
                            tail.push(l.clone());
                            if tail.len() > 20 {
                                tail.remove(0);
                            }
                            let _ = log.send(l);
                        }
                    }
                    None => break child.wait().await,
                },
                _ = stopped(cancel) => {
                    let _ = child.kill().await;
                    return Err(cancelled());
                }
            }
        };
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(WorkerError::Io(format!(
                "building the environment failed: `{shown}` exited with {s}:\n{}",
                tail.join("\n")
            ))),
            Err(e) => Err(WorkerError::Io(format!("waiting for uv failed: {e}"))),
        }
    }
}

fn describe_python(spec: &EnvSpec, default: &Path) -> String {
    spec.python
        .clone()
        .unwrap_or_else(|| default.to_string_lossy().into_owned())
}

/// Sends each line `r` gives to `tx`, on a task of its own.
pub(crate) fn spawn_lines<R>(r: R, tx: mpsc::UnboundedSender<String>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
}

/// Resolves once `cancel` is true; never if its sender is gone without that.
/// Cancel-safe.
pub(crate) async fn stopped(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn cancelled() -> WorkerError {
    WorkerError::Invalid("the session was stopped while its environment was prepared".into())
}

#[cfg(test)]
mod tests;
