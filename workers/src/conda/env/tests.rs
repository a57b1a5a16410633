//! Tests of the environment cache: the index's LRU and age rules as pure functions, and
//! `EnvCache::ensure` against a stand-in `uv` (a shell script that makes `bin/python`,
//! records each install and fails for a package named `fail-me`), so that sharing a
//! build, cleaning up a failed or cancelled one and evicting run without the network.

use super::*;

fn entry(created_at: u64, last_used: u64) -> Entry {
    Entry {
        dir: "d".into(),
        python: "p".into(),
        packages: vec![],
        created_at,
        last_used,
    }
}

fn index(entries: &[(&str, u64, u64)]) -> Index {
    Index {
        entries: entries
            .iter()
            .map(|(k, c, u)| (k.to_string(), entry(*c, *u)))
            .collect(),
    }
}

const DAY: u64 = 24 * 3600;

#[test]
fn least_recently_used_entries_go_beyond_the_limit() {
    let ix = index(&[("a", 0, 50), ("b", 0, 10), ("c", 0, 30), ("d", 0, 40)]);
    assert_eq!(ix.evictions(100, 2, MAX_AGE, |_| false), ["b", "c"]);
    assert_eq!(
        ix.evictions(100, 4, MAX_AGE, |_| false),
        Vec::<String>::new()
    );
    // An entry in use stays; the next least recently used goes instead.
    assert_eq!(ix.evictions(100, 2, MAX_AGE, |k| k == "b"), ["c", "d"]);
    assert_eq!(
        ix.evictions(100, 0, MAX_AGE, |_| true),
        Vec::<String>::new()
    );
}

#[test]
fn entries_older_than_the_max_age_expire_by_creation_time() {
    let now = 40 * DAY;
    let ix = index(&[("old", 5 * DAY, now), ("new", 20 * DAY, 20 * DAY)]);
    assert!(ix.expired("old", now, MAX_AGE));
    assert!(!ix.expired("new", now, MAX_AGE));
    assert!(!ix.expired("missing", now, MAX_AGE));
    assert_eq!(ix.evictions(now, 10, MAX_AGE, |_| false), ["old"]);
    assert_eq!(
        ix.evictions(now, 10, MAX_AGE, |k| k == "old"),
        Vec::<String>::new()
    );
    // Expired ones count first, then LRU among the rest.
    let ix = index(&[("old", 0, now), ("x", 35 * DAY, 1), ("y", 35 * DAY, 2)]);
    assert_eq!(ix.evictions(now, 1, MAX_AGE, |_| false), ["old", "x"]);
}

#[test]
fn the_index_round_trips_through_json() {
    let ix = index(&[("k", 1, 2)]);
    let back: Index = serde_json::from_slice(&serde_json::to_vec(&ix).unwrap()).unwrap();
    assert_eq!(back, ix);
    assert_eq!(env_dir_name(&"ab".repeat(32)), "env-abababababababab");
}

#[test]
fn an_environment_is_ready_only_with_python_and_the_marker() {
    let d = std::env::temp_dir().join(format!("rhizo-env-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(d.join("bin")).unwrap();
    assert!(!is_ready(&d));
    std::fs::write(d.join("bin/python"), b"").unwrap();
    assert!(!is_ready(&d), "no marker yet");
    std::fs::write(d.join(READY_MARKER), b"").unwrap();
    assert!(is_ready(&d));
    std::fs::remove_dir_all(&d).unwrap();
}

/// A stand-in `uv` in a fresh directory; returns (dir, uv path). Each `pip install`
/// appends its packages to `{dir}/installs` and takes 0.3 s (`slow`: 5 s).
fn fake_uv() -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rhizo-fake-uv-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let uv = dir.join("uv");
    let script = format!(
        r#"#!/bin/sh
[ "$1" = "--no-progress" ] && shift
case "$1" in
  venv) mkdir -p "$2/bin" && : > "$2/bin/python" && echo "Creating virtual environment at: $2" >&2 ;;
  pip)
    shift 4
    echo "$*" >> "{installs}"
    for p in "$@"; do
      [ "$p" = "slow" ] && sleep 5
      [ "$p" = "fail-me" ] && {{ echo "No solution found when resolving: fail-me" >&2; exit 1; }}
    done
    sleep 0.3
    for p in "$@"; do echo " + $p"; done ;;
esac
"#,
        installs = dir.join("installs").display()
    );
    std::fs::write(&uv, script).unwrap();
    std::fs::set_permissions(&uv, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, uv)
}

fn spec_of(packages: &[&str]) -> EnvSpec {
    EnvSpec {
        python: None,
        packages: packages.iter().map(|p| p.to_string()).collect(),
    }
}

fn installs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("installs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn ensure_logged(cache: &EnvCache, spec: &EnvSpec) -> (WorkerResult<EnvLease>, Vec<String>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_cancel_tx, mut cancel) = watch::channel(false);
    let r = cache.ensure(spec, &tx, &mut cancel).await;
    drop(tx);
    let mut lines = Vec::new();
    while let Some(l) = rx.recv().await {
        lines.push(l);
    }
    (r, lines)
}

#[tokio::test]
async fn two_starts_with_one_spec_build_once_and_then_use_the_cache() {
    let (dir, uv) = fake_uv();
    let cache = Arc::new(EnvCache::new(dir.join("cache"), uv, "/usr/bin/python3".into()).unwrap());
    let spec = spec_of(&["six==1.16.0"]);
    let (a, b) = tokio::join!(ensure_logged(&cache, &spec), ensure_logged(&cache, &spec));
    let (a, b) = ((a.0.unwrap(), a.1), (b.0.unwrap(), b.1));
    assert_eq!(installs(&dir).len(), 1, "one build for both");
    assert_eq!(a.0.dir, b.0.dir);
    assert!(is_ready(&a.0.dir));
    let all: Vec<&String> = a.1.iter().chain(b.1.iter()).collect();
    assert_eq!(
        all.iter()
            .filter(|l| l.starts_with("Creating environment"))
            .count(),
        1
    );
    assert_eq!(
        all.iter()
            .filter(|l| l.starts_with("Using cached environment"))
            .count(),
        1
    );
    assert!(
        all.iter().any(|l| l.contains("+ six==1.16.0")),
        "uv's output is passed on"
    );
    let (c, lines) = ensure_logged(&cache, &spec).await;
    assert!(
        c.is_ok() && lines[0].starts_with("Using cached environment"),
        "{lines:?}"
    );
    assert_eq!(installs(&dir).len(), 1);
    let ix = cache.read_index();
    assert_eq!(ix.entries.len(), 1);
    let e = ix.entries.values().next().unwrap();
    assert!(e.packages.contains(&"six==1.16.0".to_owned()), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_or_cancelled_build_leaves_nothing_behind() {
    let (dir, uv) = fake_uv();
    let cache = EnvCache::new(dir.join("cache"), uv, "/usr/bin/python3".into()).unwrap();
    let spec = spec_of(&["fail-me"]);
    let (r, _) = ensure_logged(&cache, &spec).await;
    let e = r.err().expect("the build fails").to_string();
    assert!(
        e.contains("No solution found when resolving: fail-me"),
        "{e}"
    );
    let env = dir
        .join("cache")
        .join(env_dir_name(&spec.key("/usr/bin/python3")));
    assert!(!env.exists(), "the half-built environment is removed");
    assert!(cache.read_index().entries.is_empty());

    let spec = spec_of(&["slow"]);
    let (tx, _rx) = mpsc::unbounded_channel();
    let (cancel_tx, mut cancel) = watch::channel(false);
    let t0 = std::time::Instant::now();
    let (r, _) = tokio::join!(cache.ensure(&spec, &tx, &mut cancel), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel_tx.send(true).unwrap();
    });
    assert!(r.is_err() && t0.elapsed() < Duration::from_secs(3));
    let env = dir
        .join("cache")
        .join(env_dir_name(&spec.key("/usr/bin/python3")));
    assert!(!env.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn beyond_the_limit_unused_environments_are_evicted() {
    let (dir, uv) = fake_uv();
    let cache = EnvCache::new(dir.join("cache"), uv, "/usr/bin/python3".into()).unwrap();
    let (held, _) = ensure_logged(&cache, &spec_of(&["pkg-held"])).await;
    let held = held.unwrap();
    for i in 0..MAX_ENTRIES + 1 {
        let (r, _) = ensure_logged(&cache, &spec_of(&[&format!("pkg-{i}")])).await;
        drop(r.unwrap());
    }
    let ix = cache.read_index();
    assert_eq!(ix.entries.len(), MAX_ENTRIES);
    assert!(
        is_ready(&held.dir),
        "an environment in use is never evicted"
    );
    let dirs = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .filter(|d| {
            d.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("env-")
        })
        .count();
    assert_eq!(dirs, MAX_ENTRIES, "evicted directories are removed");
    std::fs::remove_dir_all(&dir).unwrap();
}
