//! Preparing a terminal session from its manifest (apps-workers.md §4.2, §4.3): the
//! startup command, the session directory's name, and `files_to_stage` — app files copied
//! into the session directory before the program starts.
//!
//! `files_to_stage` entries: `"file"` (same path), `"folder/"` (recursively, through the
//! directory listings of the artifact routes), `"src:dst"` and `"src/:dst/"`. Every path
//! must be relative and free of `..`; staging never writes outside the session directory.

use crate::error::{WorkerError, WorkerResult};
use crate::fetch::AppFiles;
use rhizo_protocol::value::get;
use rmpv::Value;
use std::path::{Component, Path, PathBuf};

/// The program a terminal session runs when its manifest names none.
pub(crate) const DEFAULT_STARTUP_COMMAND: &str = "/bin/bash";

/// At most this many files are staged for one session.
const MAX_STAGED_FILES: usize = 1000;

/// At most this deep a staged folder is walked.
const MAX_DEPTH: usize = 16;

/// `manifest.startup_command` as argv: a string is split like a shell would (quotes
/// honoured), a list is taken as is; absent → `/bin/bash`.
///
/// Errors: [`WorkerError::Invalid`] for unbalanced quotes, an empty command or a list with
/// non-strings.
pub(crate) fn startup_command(manifest: &Value) -> WorkerResult<Vec<String>> {
    let argv = match get(manifest, "startup_command").filter(|v| !v.is_nil()) {
        None => vec![DEFAULT_STARTUP_COMMAND.to_owned()],
        Some(Value::String(s)) => {
            let s = s.as_str().unwrap_or_default();
            shlex::split(s).ok_or_else(|| {
                WorkerError::Invalid(format!("startup_command {s:?} has unbalanced quotes"))
            })?
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                WorkerError::Invalid("startup_command must be a string or a list of strings".into())
            })?,
        Some(other) => {
            return Err(WorkerError::Invalid(format!(
                "startup_command must be a string or a list of strings, got {other}"
            )))
        }
    };
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(WorkerError::Invalid("startup_command is empty".into()));
    }
    Ok(argv)
}

/// A session id as a single directory name: every character outside `[A-Za-z0-9._-]`
/// becomes `_` (so `ws/client` → `ws_client`).
pub(crate) fn dir_name(session_id: &str) -> String {
    let name: String = session_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.chars().all(|c| c == '.') {
        format!("_{name}")
    } else {
        name
    }
}

/// A relative path inside the session directory.
///
/// Errors: [`WorkerError::Invalid`] for absolute paths and `..`.
fn safe_relative(p: &str) -> WorkerResult<PathBuf> {
    let path = Path::new(p.trim_start_matches("./"));
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(WorkerError::Invalid(format!(
            "files_to_stage path {p:?} must be relative and must not contain '..'"
        )))
    }
}

/// The `(source, destination)` of one `files_to_stage` entry; a source ending in `/` is a
/// folder.
fn split_entry(entry: &str) -> (&str, &str) {
    match entry.split_once(':') {
        Some((src, dst)) if !dst.is_empty() => (src, dst),
        _ => (entry, entry),
    }
}

/// Fetches `manifest.files_to_stage` from `base` into `dir`; returns the staged relative
/// paths.
///
/// Errors: [`WorkerError::Invalid`] for a malformed list or path, too many files;
/// [`WorkerError::Fetch`] for a file or folder the server does not give;
/// [`WorkerError::Io`] for a failed write.
pub(crate) async fn stage_files(
    files: &AppFiles,
    manifest: &Value,
    base: &str,
    token: Option<&str>,
    dir: &Path,
) -> WorkerResult<Vec<String>> {
    let Some(list) = get(manifest, "files_to_stage").filter(|v| !v.is_nil()) else {
        return Ok(Vec::new());
    };
    let entries = list
        .as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| WorkerError::Invalid("files_to_stage must be a list of strings".into()))?;
    let mut staged = Vec::new();
    for entry in entries {
        let (src, dst) = split_entry(entry);
        if src.ends_with('/') {
            let mut pending = vec![(src.trim_end_matches('/').to_owned(), 0usize)];
            let dst_root = safe_relative(dst.trim_end_matches('/'))?;
            let src_root = src.trim_end_matches('/').to_owned();
            while let Some((folder, depth)) = pending.pop() {
                if depth > MAX_DEPTH {
                    return Err(WorkerError::Invalid(format!(
                        "files_to_stage folder {src:?} is nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                for e in files.list(base, &folder, token).await? {
                    let child = format!("{folder}/{}", e.name);
                    if e.is_dir {
                        pending.push((child, depth + 1));
                        continue;
                    }
                    let rel = child[src_root.len()..].trim_start_matches('/');
                    let target = dst_root.join(safe_relative(rel)?);
                    write(files, base, &child, token, &dir.join(&target)).await?;
                    staged.push(target.display().to_string());
                    if staged.len() > MAX_STAGED_FILES {
                        return Err(WorkerError::Invalid(format!(
                            "files_to_stage names more than {MAX_STAGED_FILES} files"
                        )));
                    }
                }
            }
        } else {
            safe_relative(src)?;
            let target = safe_relative(dst)?;
            write(files, base, src, token, &dir.join(&target)).await?;
            staged.push(target.display().to_string());
        }
    }
    Ok(staged)
}

async fn write(
    files: &AppFiles,
    base: &str,
    src: &str,
    token: Option<&str>,
    target: &Path,
) -> WorkerResult<()> {
    let body = files.get(base, src, token).await?;
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| WorkerError::Io(format!("creating {}: {e}", parent.display())))?;
    }
    tokio::fs::write(target, body)
        .await
        .map_err(|e| WorkerError::Io(format!("writing {}: {e}", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::from_json;
    use serde_json::json;

    #[test]
    fn startup_commands_from_strings_and_lists() {
        let m = |v| from_json(&json!({ "startup_command": v }));
        assert_eq!(startup_command(&Value::Nil).unwrap(), ["/bin/bash"]);
        assert_eq!(
            startup_command(&m(json!("python3 -c 'print(1)'"))).unwrap(),
            ["python3", "-c", "print(1)"]
        );
        assert_eq!(
            startup_command(&m(json!(["sh", "-i"]))).unwrap(),
            ["sh", "-i"]
        );
        assert!(startup_command(&m(json!("sh 'x"))).is_err());
        assert!(startup_command(&m(json!(""))).is_err());
        assert!(startup_command(&m(json!([1]))).is_err());
    }

    #[test]
    fn session_dirs_are_one_safe_component() {
        assert_eq!(dir_name("ws-a/_rapp_x__rlb"), "ws-a__rapp_x__rlb");
        assert_eq!(dir_name("../../etc"), ".._.._etc");
        assert_eq!(dir_name(".."), "_..");
    }

    #[test]
    fn staged_paths_stay_inside() {
        assert!(safe_relative("a/b.txt").is_ok());
        assert!(safe_relative("./a").is_ok());
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("a/../../x").is_err());
        assert_eq!(split_entry("src/:dst/"), ("src/", "dst/"));
        assert_eq!(split_entry("f.txt"), ("f.txt", "f.txt"));
    }
}
