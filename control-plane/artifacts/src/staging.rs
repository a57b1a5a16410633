//! The draft/commit life cycle as pure state transitions (spec artifacts.md §1.5, §1.6,
//! §1.8, §3.1, §3.2, §3.4, §3.5, §3.9, §3.12): each function changes an [`Artifact`] in
//! memory and returns the object-store work it implies as a list of [`ObjectOp`]s, built
//! with the key helpers of [`crate::objects`]. Nothing here touches the database or the
//! object store, and time comes in as an argument.
//!
//! **Contract for the service.** For one RPC call: load the row, call one transition
//! here with the artifact's key prefix (§1.7, e.g.
//! [`default_prefix`](crate::objects::default_prefix)), then run the ops
//! in order, then store the row. On an error from a transition the artifact is
//! unchanged and no op is due. The ops' meanings (copy-if-exists, restore-or-delete, …)
//! are on [`ObjectOp`]; [`ObjectOp::RequireExists`] and [`ObjectOp::CountFiles`] come
//! before any write of [`commit`]'s plan, so a failed check leaves everything as it was.
//!
//! **Stored form.** An open session is kept in the internal form of §1.5:
//! `{manifest, config, secrets, type, files: [...], _intent}` plus `_backed_up`, the paths
//! whose pristine copy has already been planned (rhizo: upstream asks the object store;
//! keeping it in the row makes "back up once per path" a pure decision, and
//! [`crate::model::client_staging`] never shows it). The legacy list form is accepted and
//! rewritten to the internal form by the first transition ([`Draft::from_artifact`]); the
//! git form is refused (rhizo: git storage is not supported).

use crate::error::{ArtifactError, ArtifactResult};
use crate::ids::safe_join;
use crate::model::{Artifact, Version, INTENT_EDIT_VERSION, INTENT_NEW_VERSION};
use crate::objects::{backup_dir, backup_key, file_key, snapshot_key, version_dir};
use crate::versions::new_version_name;
use serde_json::{Map, Value};

/// What a commit of the session does to `versions` (§1.5 `_intent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Append a version; files go to the next slot `v{len}/`.
    NewVersion,
    /// Edit the latest version in place; files go to `v{max(0, len-1)}/`.
    EditVersion,
}

/// One entry of `staging.files` (§1.5).
#[derive(Debug, Clone, PartialEq)]
pub enum StagedFile {
    /// `{path, download_weight?}`: a file put in this session; the weight only when > 0.
    Put {
        /// The user path, relative to the version folder.
        path: String,
        /// The download weight (§1.8), `None` when 0.
        download_weight: Option<f64>,
    },
    /// `{path, _remove: true}`: a committed file to delete at commit.
    Remove {
        /// The user path, relative to the version folder.
        path: String,
    },
}

/// An open staging session in typed form (the internal form of §1.5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    /// Staged manifest; `None` keeps the column at commit.
    pub manifest: Option<Value>,
    /// Staged config; `None` keeps the column at commit.
    pub config: Option<Value>,
    /// Staged secrets; `None` keeps the column at commit.
    pub secrets: Option<Value>,
    /// Staged type; `None` keeps the column at commit.
    pub kind: Option<String>,
    /// The file entries, in the order they were staged.
    pub files: Vec<StagedFile>,
    /// The intent; `None` (a legacy draft without one) behaves as
    /// [`Intent::EditVersion`], as upstream's commit does.
    pub intent: Option<Intent>,
    /// Paths whose `.stage_backup` copy has been planned (rhizo, module docs).
    pub backed_up: Vec<String>,
}

/// Fields given to `edit(stage=True)` (§3.2); `None` means "not given".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DraftFields {
    /// New staged manifest (replaces, no merge).
    pub manifest: Option<Value>,
    /// New staged config (replaces, no merge).
    pub config: Option<Value>,
    /// New staged secrets (replaces, no merge).
    pub secrets: Option<Value>,
    /// New staged type.
    pub kind: Option<String>,
}

/// One object-store operation a transition asks the service to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectOp {
    /// Save the pristine copy of a committed file before an in-place edit first
    /// overwrites or removes it (§1.6): copy `from` to `to` **if `from` exists** (a
    /// path new to the version has nothing to save; `NotFound` is not an error).
    Backup {
        /// The committed file, `v{len-1}/{path}`.
        from: String,
        /// Its backup, `.stage_backup/{path}`.
        to: String,
    },
    /// Undo an in-place edit of one path (§3.5): copy `backup` to `target` if the
    /// backup exists, otherwise delete `target` (the file was new in this session).
    Restore {
        /// The backup, `.stage_backup/{path}`.
        backup: String,
        /// The file to restore, `v{len-1}/{path}`.
        target: String,
    },
    /// Check that the object exists (HeadObject, §3.4 step 2); when it does not, stop
    /// and fail the call with upstream's `FileNotFoundError` "File '{path}' does not
    /// exist in the artifact." without storing the row.
    RequireExists {
        /// The object to check.
        key: String,
        /// The user path, for the message.
        path: String,
    },
    /// Delete one object; a missing one is fine.
    Delete {
        /// The object.
        key: String,
    },
    /// Delete every object under `prefix/`.
    DeletePrefix {
        /// The directory.
        prefix: String,
    },
    /// Count the objects under `dir/` not ending in `.json` and store the count in
    /// `file_count` (§1.8) before the row and snapshot are written.
    CountFiles {
        /// The version folder.
        dir: String,
    },
    /// Write the full row (as it is after the transition and the ops before this one)
    /// as JSON to `key` (§1.6 "Version snapshots").
    WriteSnapshot {
        /// `v{index}.json`.
        key: String,
    },
}

/// What [`commit`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitPlan {
    /// The ops to run, in order.
    pub ops: Vec<ObjectOp>,
    /// The index of the committed version (its folder is `v{index}/`).
    pub index: u64,
    /// A warning to log, e.g. a version name ignored by an in-place commit.
    pub warning: Option<String>,
}

// === impl Intent ===

impl Intent {
    /// The `_intent` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::NewVersion => INTENT_NEW_VERSION,
            Intent::EditVersion => INTENT_EDIT_VERSION,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            INTENT_NEW_VERSION => Some(Intent::NewVersion),
            INTENT_EDIT_VERSION => Some(Intent::EditVersion),
            _ => None,
        }
    }
}

// === impl StagedFile ===

impl StagedFile {
    /// The entry's path.
    pub fn path(&self) -> &str {
        match self {
            StagedFile::Put { path, .. } | StagedFile::Remove { path } => path,
        }
    }

    fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert("path".into(), self.path().into());
        match self {
            StagedFile::Put {
                download_weight: Some(w),
                ..
            } => {
                o.insert("download_weight".into(), (*w).into());
            }
            StagedFile::Put { .. } => {}
            StagedFile::Remove { .. } => {
                o.insert("_remove".into(), true.into());
            }
        }
        Value::Object(o)
    }

    fn from_value(v: &Value) -> ArtifactResult<Self> {
        let path = v
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ArtifactError::invalid(format!("Invalid staged file entry {v}.")))?
            .to_owned();
        if v.get("_remove").and_then(Value::as_bool) == Some(true) {
            return Ok(StagedFile::Remove { path });
        }
        let download_weight = v
            .get("download_weight")
            .and_then(Value::as_f64)
            .filter(|w| *w > 0.0);
        Ok(StagedFile::Put {
            path,
            download_weight,
        })
    }
}

// === impl Draft ===

impl Draft {
    /// The open session of `artifact`, or `None` when it is not staged. The legacy list
    /// form (§1.5) becomes a draft without staged values (the columns stay at commit)
    /// and with the intent of its `{_intent}` element.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] for the git form (rhizo: unsupported), a
    /// malformed entry, or a staging value that is neither a dict nor a list.
    pub fn from_artifact(artifact: &Artifact) -> ArtifactResult<Option<Self>> {
        match artifact.staging.as_ref() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(entries)) => {
                let mut draft = Draft::default();
                for e in entries {
                    if let Some(i) = e.get("_intent") {
                        draft.intent = i.as_str().and_then(Intent::parse);
                    } else {
                        draft.files.push(StagedFile::from_value(e)?);
                    }
                }
                Ok(Some(draft))
            }
            Some(Value::Object(o)) => {
                if o.contains_key("_active_branch") {
                    return Err(ArtifactError::invalid(
                        "Git-backed staging is not supported by this server.",
                    ));
                }
                let files = match o.get("files") {
                    Some(Value::Array(fs)) => fs
                        .iter()
                        .map(StagedFile::from_value)
                        .collect::<ArtifactResult<_>>()?,
                    _ => Vec::new(),
                };
                let backed_up = match o.get("_backed_up") {
                    Some(Value::Array(ps)) => ps
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Some(Draft {
                    manifest: o.get("manifest").filter(|v| !v.is_null()).cloned(),
                    config: o.get("config").filter(|v| !v.is_null()).cloned(),
                    secrets: o.get("secrets").filter(|v| !v.is_null()).cloned(),
                    kind: o.get("type").and_then(Value::as_str).map(str::to_owned),
                    files,
                    intent: o
                        .get("_intent")
                        .and_then(Value::as_str)
                        .and_then(Intent::parse),
                    backed_up,
                }))
            }
            Some(other) => Err(ArtifactError::invalid(format!(
                "Invalid staging value {other}."
            ))),
        }
    }

    /// The internal form of §1.5 (plus `_backed_up` when not empty).
    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert(
            "manifest".into(),
            self.manifest.clone().unwrap_or(Value::Null),
        );
        o.insert("config".into(), self.config.clone().unwrap_or(Value::Null));
        o.insert(
            "secrets".into(),
            self.secrets.clone().unwrap_or(Value::Null),
        );
        o.insert(
            "type".into(),
            self.kind.clone().map_or(Value::Null, Value::String),
        );
        o.insert(
            "files".into(),
            Value::Array(self.files.iter().map(StagedFile::to_value).collect()),
        );
        o.insert(
            "_intent".into(),
            self.intent.map_or(Value::Null, |i| i.as_str().into()),
        );
        if !self.backed_up.is_empty() {
            o.insert(
                "_backed_up".into(),
                Value::Array(self.backed_up.iter().map(|p| p.as_str().into()).collect()),
            );
        }
        Value::Object(o)
    }

    /// The intent commit and put_file act on: a missing one is an in-place edit.
    pub fn effective_intent(&self) -> Intent {
        self.intent.unwrap_or(Intent::EditVersion)
    }

    fn position(&self, path: &str) -> Option<usize> {
        self.files.iter().position(|f| f.path() == path)
    }
}

/// The version folder index that staged files of `artifact` are written to (§1.6,
/// §3.9): `len(versions)` for [`Intent::NewVersion`], otherwise `max(0, len-1)` (so a
/// never-committed draft writes to 0).
pub fn staged_index(versions: &[Version], intent: Intent) -> u64 {
    let n = versions.len() as u64;
    match intent {
        Intent::NewVersion => n,
        Intent::EditVersion => n.saturating_sub(1),
    }
}

/// Parses the `version` argument of `edit` (§3.2): `None` → `None`, `"new"` →
/// [`Intent::NewVersion`], `"stage"` → `None` (rhizo: it only means stage=True and does
/// not change the intent).
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] for any other value (upstream forbids editing a
/// named version, §9.15).
pub fn edit_intent(version: Option<&str>) -> ArtifactResult<Option<Intent>> {
    match version {
        None | Some("stage") => Ok(None),
        Some("new") => Ok(Some(Intent::NewVersion)),
        Some(other) => Err(ArtifactError::invalid(format!(
            "Invalid version '{other}': edit accepts only None, 'new' or 'stage'."
        ))),
    }
}

fn store(artifact: &mut Artifact, draft: &Draft) {
    artifact.staging = Some(draft.to_value());
}

fn snapshot(prefix: &str, artifact: &Artifact, index: u64) -> ObjectOp {
    ObjectOp::WriteSnapshot {
        key: snapshot_key(prefix, &artifact.id, index),
    }
}

/// `create(stage=True)` (§3.1): on a freshly built row, opens a draft of its columns
/// (`{manifest, config, secrets, type, files: [], _intent: "new_version"}`) with
/// `versions = []`; the columns keep the same values so the draft lists. Plan: the
/// `v0.json` snapshot.
pub fn stage_create(artifact: &mut Artifact, prefix: &str) -> Vec<ObjectOp> {
    artifact.versions.clear();
    let draft = Draft {
        manifest: artifact.manifest.clone(),
        config: artifact.config.clone(),
        secrets: artifact.secrets.clone(),
        kind: artifact.kind.clone(),
        intent: Some(Intent::NewVersion),
        ..Draft::default()
    };
    store(artifact, &draft);
    vec![snapshot(prefix, artifact, 0)]
}

/// `edit(stage=True)` with `intent` from [`edit_intent`] (§3.2). Without a session,
/// opens one from the given fields, the columns filling the rest, with `intent` or
/// [`Intent::EditVersion`]. With one open, overwrites only the given fields, and the
/// intent only when `intent` is given. A legacy session is rewritten in internal form,
/// its missing values taken from the columns. The columns are not touched. Plan: the
/// snapshot at [`staged_index`].
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] for an unreadable session, and (rhizo) for
/// changing the intent of a session that already has file entries: they were written
/// under the other version folder.
pub fn stage(
    artifact: &mut Artifact,
    prefix: &str,
    fields: DraftFields,
    intent: Option<Intent>,
) -> ArtifactResult<Vec<ObjectOp>> {
    let mut draft = match Draft::from_artifact(artifact)? {
        Some(d) => d,
        None => Draft {
            intent: Some(intent.unwrap_or(Intent::EditVersion)),
            ..Draft::default()
        },
    };
    if let Some(i) = intent {
        if draft.intent != Some(i) && !draft.files.is_empty() {
            return Err(ArtifactError::invalid(format!(
                "Cannot change the staging intent to '{}' while files are staged; commit or discard first.",
                i.as_str()
            )));
        }
        draft.intent = Some(i);
    }
    draft.manifest = fields
        .manifest
        .or(draft.manifest)
        .or_else(|| artifact.manifest.clone());
    draft.config = fields
        .config
        .or(draft.config)
        .or_else(|| artifact.config.clone());
    draft.secrets = fields
        .secrets
        .or(draft.secrets)
        .or_else(|| artifact.secrets.clone());
    draft.kind = fields.kind.or(draft.kind).or_else(|| artifact.kind.clone());
    let index = staged_index(&artifact.versions, draft.effective_intent());
    store(artifact, &draft);
    Ok(vec![snapshot(prefix, artifact, index)])
}

/// `edit(version="new", stage=True)`: [`stage`] with [`Intent::NewVersion`].
///
/// # Errors
/// As [`stage`].
pub fn stage_new_version(
    artifact: &mut Artifact,
    prefix: &str,
    fields: DraftFields,
) -> ArtifactResult<Vec<ObjectOp>> {
    stage(artifact, prefix, fields, Some(Intent::NewVersion))
}

/// `edit(stage=True)` without a version: [`stage`] keeping an open session's intent,
/// or opening one with [`Intent::EditVersion`].
///
/// # Errors
/// As [`stage`].
pub fn stage_edit(
    artifact: &mut Artifact,
    prefix: &str,
    fields: DraftFields,
) -> ArtifactResult<Vec<ObjectOp>> {
    stage(artifact, prefix, fields, None)
}

fn open_draft(artifact: &Artifact) -> ArtifactResult<Draft> {
    Draft::from_artifact(artifact)?
        .ok_or_else(|| ArtifactError::invalid("Artifact must be in staging mode."))
}

/// The `.stage_backup` copy of `path` if the session edits in place and has not
/// planned one for it yet (§1.6), recorded in `draft.backed_up`.
fn backup_once(
    draft: &mut Draft,
    artifact: &Artifact,
    prefix: &str,
    index: u64,
    path: &str,
    ops: &mut Vec<ObjectOp>,
) -> ArtifactResult<()> {
    // A never-committed draft has no committed file to protect.
    if draft.effective_intent() != Intent::EditVersion
        || artifact.versions.is_empty()
        || draft.backed_up.iter().any(|p| p == path)
    {
        return Ok(());
    }
    ops.push(ObjectOp::Backup {
        from: file_key(prefix, &artifact.id, index, path)?,
        to: backup_key(prefix, &artifact.id, path)?,
    });
    draft.backed_up.push(path.to_owned());
    Ok(())
}

fn check_path(path: &str) -> ArtifactResult<()> {
    if path.is_empty() {
        return Err(ArtifactError::invalid("Invalid file path '': it is empty."));
    }
    safe_join("", path).map(|_| ())
}

/// `put_file(path, download_weight)` (§3.9): records `{path, download_weight?}` (the
/// weight only when > 0). A later put of the same path replaces its entry in place,
/// a removal marker included (rhizo: upstream keeps the first entry, so a new weight
/// would be lost). Plan: the backup of the committed file on the first put or removal
/// of the path in an in-place edit, then the snapshot at [`staged_index`]. The upload
/// itself goes to [`file_key`] at [`staged_index`] (the presigned URL is the service's).
///
/// # Errors
/// [`ArtifactError::InvalidArgument`]: not staged ("Artifact must be in staging
/// mode."), an unsafe path ([`safe_join`]), a negative or non-finite weight.
pub fn stage_put_file(
    artifact: &mut Artifact,
    prefix: &str,
    path: &str,
    download_weight: f64,
) -> ArtifactResult<Vec<ObjectOp>> {
    let mut draft = open_draft(artifact)?;
    check_path(path)?;
    if !download_weight.is_finite() || download_weight < 0.0 {
        return Err(ArtifactError::invalid(format!(
            "Invalid download weight {download_weight}: it must be a number >= 0."
        )));
    }
    let index = staged_index(&artifact.versions, draft.effective_intent());
    let mut ops = Vec::new();
    backup_once(&mut draft, artifact, prefix, index, path, &mut ops)?;
    let entry = StagedFile::Put {
        path: path.to_owned(),
        download_weight: (download_weight > 0.0).then_some(download_weight),
    };
    match draft.position(path) {
        Some(i) => draft.files[i] = entry,
        None => draft.files.push(entry),
    }
    store(artifact, &draft);
    ops.push(snapshot(prefix, artifact, index));
    Ok(ops)
}

/// `remove_file(path)` (§3.12). A path put in this session loses its entry and its
/// object at [`staged_index`] is deleted now; otherwise `{path, _remove: true}` is
/// appended (once) and the object is deleted at commit. In an in-place edit the
/// committed file is backed up first, once per path (§1.6).
///
/// # Errors
/// [`ArtifactError::InvalidArgument`]: not staged, or an unsafe path.
pub fn stage_remove_file(
    artifact: &mut Artifact,
    prefix: &str,
    path: &str,
) -> ArtifactResult<Vec<ObjectOp>> {
    let mut draft = open_draft(artifact)?;
    check_path(path)?;
    let index = staged_index(&artifact.versions, draft.effective_intent());
    let mut ops = Vec::new();
    match draft.position(path) {
        Some(i) if matches!(draft.files[i], StagedFile::Put { .. }) => {
            backup_once(&mut draft, artifact, prefix, index, path, &mut ops)?;
            draft.files.remove(i);
            ops.push(ObjectOp::Delete {
                key: file_key(prefix, &artifact.id, index, path)?,
            });
        }
        Some(_) => {}
        None => {
            backup_once(&mut draft, artifact, prefix, index, path, &mut ops)?;
            draft.files.push(StagedFile::Remove {
                path: path.to_owned(),
            });
        }
    }
    store(artifact, &draft);
    Ok(ops)
}

/// `commit(version, comment)` (§3.4, §1.6) at `now` (unix seconds).
///
/// The staged manifest, config, secrets and type replace the columns (those not
/// staged stay); weights > 0 are merged into `config.download_weights` (a config that
/// is not a dict becomes one); staging is cleared; `last_modified = now`. Versions:
///
/// * [`Intent::NewVersion`], or no versions yet: append `{version, comment,
///   created_at: now}`, named `version` or `"v" + len` ([`new_version_name`]);
/// * in place: keep the entries, overwrite the last comment when one is given, and
///   ignore `version` with a warning (as upstream).
///
/// Plan, in order: [`ObjectOp::RequireExists`] for every put entry, [`ObjectOp::Delete`]
/// for every removal marker, [`ObjectOp::DeletePrefix`] of `.stage_backup/` (in place),
/// [`ObjectOp::CountFiles`] of the version folder (the service recomputes
/// `file_count`), then [`ObjectOp::WriteSnapshot`]. rhizo: removal markers delete at the
/// session's folder (`v{len}/` for a new version), never in the previous version
/// (upstream deletes `v{len-1}/path`, changing history, §9.9). Validating the manifest
/// against the parent's `collection_schema` is the service's.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`]: "Artifact must be in staging mode to commit.",
/// `version="stage"`, a duplicate or empty version name.
pub fn commit(
    artifact: &mut Artifact,
    prefix: &str,
    version: Option<&str>,
    comment: Option<&str>,
    now: i64,
) -> ArtifactResult<CommitPlan> {
    let draft = Draft::from_artifact(artifact)?
        .ok_or_else(|| ArtifactError::invalid("Artifact must be in staging mode to commit."))?;
    if version == Some("stage") {
        return Err(ArtifactError::invalid(
            "Invalid version 'stage': a commit cannot target the staging area.",
        ));
    }
    let intent = draft.effective_intent();
    let appends = intent == Intent::NewVersion || artifact.versions.is_empty();
    let name = if appends {
        Some(new_version_name(&artifact.versions, version)?)
    } else {
        None
    };
    let warning = match (appends, version) {
        (false, Some(v)) => Some(format!(
            "Version '{v}' ignored: an in-place commit keeps the latest version's name."
        )),
        _ => None,
    };
    let index = staged_index(&artifact.versions, intent);
    let id = artifact.id.clone();
    let mut ops = Vec::new();
    let mut removals = Vec::new();
    let mut weights = Vec::new();
    for f in &draft.files {
        match f {
            StagedFile::Put {
                path,
                download_weight,
            } => {
                ops.push(ObjectOp::RequireExists {
                    key: file_key(prefix, &id, index, path)?,
                    path: path.clone(),
                });
                if let Some(w) = download_weight {
                    weights.push((path.clone(), *w));
                }
            }
            StagedFile::Remove { path } => removals.push(ObjectOp::Delete {
                key: file_key(prefix, &id, index, path)?,
            }),
        }
    }
    // Nothing fails past this point: the row changes only now.
    ops.extend(removals);
    if intent == Intent::EditVersion {
        ops.push(ObjectOp::DeletePrefix {
            prefix: backup_dir(prefix, &id),
        });
    }
    ops.push(ObjectOp::CountFiles {
        dir: version_dir(prefix, &id, index),
    });
    ops.push(ObjectOp::WriteSnapshot {
        key: snapshot_key(prefix, &id, index),
    });

    if let Some(m) = draft.manifest {
        artifact.manifest = Some(m);
    }
    if let Some(c) = draft.config {
        artifact.config = Some(c);
    }
    if let Some(s) = draft.secrets {
        artifact.secrets = Some(s);
    }
    if let Some(k) = draft.kind {
        artifact.kind = Some(k);
    }
    if !weights.is_empty() {
        merge_weights(artifact, weights);
    }
    match name {
        Some(version) => artifact.versions.push(Version {
            version,
            comment: comment.map(str::to_owned),
            created_at: now,
        }),
        None => {
            if let (Some(c), Some(last)) = (comment, artifact.versions.last_mut()) {
                last.comment = Some(c.to_owned());
            }
        }
    }
    artifact.staging = None;
    artifact.last_modified = now;
    Ok(CommitPlan {
        ops,
        index,
        warning,
    })
}

fn merge_weights(artifact: &mut Artifact, weights: Vec<(String, f64)>) {
    let config = artifact
        .config
        .get_or_insert_with(|| Value::Object(Map::new()));
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    let Value::Object(config) = config else {
        return;
    };
    let table = config
        .entry("download_weights")
        .or_insert_with(|| Value::Object(Map::new()));
    if !table.is_object() {
        *table = Value::Object(Map::new());
    }
    if let Value::Object(table) = table {
        for (path, w) in weights {
            table.insert(path, w.into());
        }
    }
}

/// `discard()` (§3.5): clears staging; the columns already hold the published values.
/// Plan by intent:
///
/// * [`Intent::NewVersion`]: delete everything under `v{len}/` and `v{len}.json`. For
///   a never-committed draft that is `v0/` and `v0.json`, and the row stays with
///   `versions = []` and no staging, as upstream (§3.5, §9.11): it keeps its alias until
///   deleted.
/// * in place: [`ObjectOp::Restore`] every backed-up path (restoring the original, or
///   deleting a file that was new), then delete `.stage_backup/`. rhizo: paths put
///   without a planned backup (a session opened before backups were recorded) are left.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] "No staged changes to discard. Artifact is not in
/// staging mode." when not staged.
pub fn discard(artifact: &mut Artifact, prefix: &str) -> ArtifactResult<Vec<ObjectOp>> {
    let draft = Draft::from_artifact(artifact)?.ok_or_else(|| {
        ArtifactError::invalid("No staged changes to discard. Artifact is not in staging mode.")
    })?;
    let id = artifact.id.clone();
    let intent = draft.effective_intent();
    let index = staged_index(&artifact.versions, intent);
    let mut ops = Vec::new();
    match intent {
        Intent::NewVersion => {
            ops.push(ObjectOp::DeletePrefix {
                prefix: version_dir(prefix, &id, index),
            });
            ops.push(ObjectOp::Delete {
                key: snapshot_key(prefix, &id, index),
            });
        }
        Intent::EditVersion => {
            for path in &draft.backed_up {
                ops.push(ObjectOp::Restore {
                    backup: backup_key(prefix, &id, path)?,
                    target: file_key(prefix, &id, index, path)?,
                });
            }
            ops.push(ObjectOp::DeletePrefix {
                prefix: backup_dir(prefix, &id),
            });
        }
    }
    artifact.staging = None;
    Ok(ops)
}

#[cfg(test)]
mod tests;
