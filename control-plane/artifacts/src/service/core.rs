//! The artifact life cycle over RPC (spec artifacts.md §3.1–3.6): create, edit, read,
//! commit, discard and delete, and the object-store plans they run.

use super::args::Args;
use super::{is_collection, ArtifactManager, Loaded};
use crate::error::{ArtifactError, ArtifactResult};
use crate::ids::{self, TemplateContext};
use crate::model::{now_unix, Artifact, Version};
use crate::objects;
use crate::permissions::{self, Caller, Operation, Subject};
use crate::staging::{self, Draft, DraftFields, Intent, ObjectOp};
use crate::versions::{version_index, VersionArg};
use bytes::Bytes;
use rhizo_control_plane::manager::Ctx;
use serde_json::{json, Value as Json};

/// How many children a recursive delete walks per page.
const PAGE: u64 = 500;

impl ArtifactManager {
    /// Runs the object-store plan of a transition on `a` (staging.rs [`ObjectOp`]).
    ///
    /// # Errors
    /// [`ArtifactError::FileNotFound`] for a [`ObjectOp::RequireExists`] that fails (the
    /// row is then not stored by the caller); object-store failures.
    pub(crate) async fn run_ops(&self, a: &mut Artifact, ops: Vec<ObjectOp>) -> ArtifactResult<()> {
        for op in ops {
            match op {
                ObjectOp::Backup { from, to } => match self.objects.copy(&from, &to).await {
                    Ok(()) | Err(ArtifactError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                },
                ObjectOp::Restore { backup, target } => {
                    if self.objects.head(&backup).await?.is_some() {
                        self.objects.copy(&backup, &target).await?;
                    } else {
                        self.objects.delete(&target).await?;
                    }
                }
                ObjectOp::RequireExists { key, path } => {
                    if self.objects.head(&key).await?.is_none() {
                        return Err(ArtifactError::file_not_found(&path));
                    }
                }
                ObjectOp::Delete { key } => self.objects.delete(&key).await?,
                ObjectOp::DeletePrefix { prefix } => {
                    self.objects.delete_prefix(&prefix).await?;
                }
                ObjectOp::CountFiles { dir } => {
                    let n = self.objects.count_files(&dir, Some(".json")).await?;
                    a.file_count = i64::try_from(n).unwrap_or(i64::MAX);
                }
                ObjectOp::WriteSnapshot { key } => self.write_snapshot(a, &key).await?,
            }
        }
        Ok(())
    }

    /// Writes the row as JSON to `key` (§1.6 "Version snapshots"). rhizo: without the
    /// secrets (§9.13: upstream stores them in the object store).
    async fn write_snapshot(&self, a: &Artifact, key: &str) -> ArtifactResult<()> {
        let mut row =
            serde_json::to_value(a).map_err(|e| ArtifactError::ObjectStore(e.to_string()))?;
        if let Some(o) = row.as_object_mut() {
            o.remove("secrets");
        }
        let body =
            serde_json::to_vec(&row).map_err(|e| ArtifactError::ObjectStore(e.to_string()))?;
        self.objects.put(key, Bytes::from(body)).await
    }

    /// The persisted state of workspace `ws`: artifacts need a persistent one (§2.5).
    fn require_persistent(&self, ws: &str) -> ArtifactResult<()> {
        let persistent = self.host()?.workspace(ws).is_some_and(|w| w.persistent);
        permissions::require_persistent_workspace(ws, persistent)
    }

    /// `create` (§3.1).
    pub(crate) async fn create(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let version = a.str("version")?;
        let stage = a.bool("stage", false)? || version == Some("stage");
        let manifest = a
            .json("manifest")
            .ok_or_else(|| ArtifactError::invalid("Manifest must be provided."))?;
        if !manifest.is_object() {
            return Err(ArtifactError::invalid("The manifest must be a dictionary."));
        }
        let (alias, alias_ws) = match (a.str("artifact_id")?, a.str("alias")?) {
            (Some(_), Some(_)) => {
                return Err(ArtifactError::invalid(
                    "Please provide either artifact_id or alias, not both.",
                ))
            }
            (Some(id), None) => {
                let Some((ws, alias)) = id.split_once('/') else {
                    return Err(ArtifactError::invalid(format!(
                        "Invalid artifact_id '{id}': expected 'workspace/alias'."
                    )));
                };
                (Some(alias.to_owned()), Some(ws.to_owned()))
            }
            (None, Some(alias)) => {
                let (ws, name) = ids::split_alias(alias, a.str("workspace")?)?;
                (Some(name.to_owned()), ws.map(str::to_owned))
            }
            (None, None) => (None, None),
        };
        let parent = match a.str("parent_id")? {
            Some(p) => Some(self.find(p, &ctx.ws).await.map_err(|_| {
                ArtifactError::NotFound(format!("Parent artifact with ID '{p}' does not exist."))
            })?),
            None => None,
        };
        let explicit_ws = a.str("workspace")?.map(str::to_owned).or(alias_ws);
        if let (Some(ws), Some(p)) = (&explicit_ws, &parent) {
            if *ws != p.workspace {
                return Err(ArtifactError::invalid(format!(
                    "The workspace '{ws}' does not match the parent's workspace '{}'.",
                    p.workspace
                )));
            }
        }
        let workspace = explicit_ws
            .or_else(|| parent.as_ref().map(|p| p.workspace.clone()))
            .unwrap_or_else(|| ctx.ws.clone());
        self.require_persistent(&workspace)?;
        let parent_subject = parent.as_ref().map(|p| Subject {
            config: p.config.as_ref(),
            parent_config: None,
            workspace: &p.workspace,
        });
        permissions::authorize_create(parent_subject.as_ref(), &workspace, &caller, stage)?;

        let overwrite = a.bool("overwrite", false)?;
        let now = now_unix();
        let id_parts = parent
            .as_ref()
            .and_then(|p| p.config.as_ref())
            .and_then(|c| c.get("id_parts"))
            .and_then(Json::as_object);
        let template_ctx = TemplateContext {
            user_id: caller.owner_id(),
            id_parts,
            now_unix: now,
        };
        let mut existing = None;
        let alias = match alias {
            Some(t) if !ids::is_template(&t) => {
                ids::validate_alias(&t)?;
                if let Some(old) = self.store.get_by_alias(&workspace, &t).await? {
                    if !overwrite {
                        return Err(ArtifactError::AliasExists {
                            workspace: workspace.clone(),
                            alias: t,
                        });
                    }
                    if is_collection(&old) && self.store.count_children(&old.id).await? > 0 {
                        return Err(ArtifactError::invalid(format!(
                            "Cannot overwrite the collection '{t}': it still has children."
                        )));
                    }
                    existing = Some(old);
                }
                t
            }
            template => {
                let store = &self.store;
                let ws = workspace.as_str();
                ids::generate_alias(template.as_deref(), &template_ctx, |c| async move {
                    Ok(store.get_by_alias(ws, &c).await?.is_some())
                })
                .await?
            }
        };

        let mut row = Artifact::new(&workspace, &alias);
        if let Some(old) = &existing {
            row.id = old.id.clone();
            row.created_at = old.created_at;
        }
        let kind = a.str("type")?.unwrap_or("generic").to_owned();
        let mut config = permissions::grant_creator(a.json("config"), caller.owner_id())?;
        if kind == "collection" {
            if let Some(c) = config.as_object_mut() {
                c.insert("is_collection".into(), true.into());
            }
        }
        row.kind = Some(kind);
        row.manifest = Some(manifest);
        row.config = Some(config);
        row.secrets = a.json("secrets");
        row.created_by = Some(caller.owner_id().to_owned());
        row.parent_id = parent.as_ref().map(|p| p.id.clone());
        let prefix = Self::prefix(&row);
        let ops = if stage {
            staging::stage_create(&mut row, &prefix)
        } else {
            let name = match version {
                None | Some("new") | Some("stage") => "v0".to_owned(),
                Some(v) => v.to_owned(),
            };
            row.versions = vec![Version {
                version: name,
                comment: Some(a.str("comment")?.unwrap_or("Initial version").to_owned()),
                created_at: now,
            }];
            vec![ObjectOp::WriteSnapshot {
                key: objects::snapshot_key(&prefix, &row.id, 0),
            }]
        };
        if existing.is_some() {
            row = self.store.update(&row, now).await?;
        } else {
            self.store.insert(&row).await?;
        }
        if let Some(p) = &parent {
            if !is_collection(p) {
                let mut p = p.clone();
                set_config_flag(&mut p, "is_collection", true.into());
                self.store.update(&p, now).await?;
            }
        }
        self.run_ops(&mut row, ops).await?;
        self.view(&row, parent.as_ref()).await
    }

    /// `edit` (§3.2).
    pub(crate) async fn edit(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let version = a.str("version")?;
        let stage = a.bool("stage", false)? || version == Some("stage");
        let intent = staging::edit_intent(version)?;
        let Loaded {
            mut artifact,
            parent,
        } = self.load(a.req_str("artifact_id")?, &ctx.ws).await?;
        {
            let loaded = Loaded {
                artifact: artifact.clone(),
                parent: parent.clone(),
            };
            let gates = permissions::edit_gates(
                stage,
                intent == Some(Intent::NewVersion),
                parent.is_some(),
                !artifact.versions.is_empty(),
            );
            permissions::enforce(&loaded.subject(), &caller, &gates)?;
        }
        let prefix = Self::prefix(&artifact);
        let now = now_unix();
        let fields = DraftFields {
            manifest: a.json("manifest"),
            config: a.json("config"),
            secrets: a.json("secrets"),
            kind: a.str("type")?.map(str::to_owned),
        };
        if stage {
            let ops = staging::stage(&mut artifact, &prefix, fields, intent)?;
            self.run_ops(&mut artifact, ops).await?;
            let stored = self.store.update(&artifact, now).await?;
            return self.view(&stored, parent.as_ref()).await;
        }
        // In place: staged values fill in what the call leaves out (§3.2 stage=False).
        let mut new_version = intent == Some(Intent::NewVersion);
        let mut fields = fields;
        if let Some(draft) = Draft::from_artifact(&artifact)? {
            fields.manifest = fields.manifest.or(draft.manifest);
            fields.config = fields.config.or(draft.config);
            fields.secrets = fields.secrets.or(draft.secrets);
            fields.kind = fields.kind.or(draft.kind);
            new_version |= draft.intent == Some(Intent::NewVersion);
            artifact.staging = None;
        }
        if let Some(m) = fields.manifest {
            artifact.manifest = Some(m);
        }
        if let Some(c) = fields.config {
            artifact.config = Some(match &parent {
                Some(p) => {
                    permissions::merge_child_permissions(c, p.config.as_ref(), caller.owner_id())?
                }
                None => c,
            });
        }
        if let Some(s) = fields.secrets {
            artifact.secrets = Some(s);
        }
        if let Some(k) = fields.kind {
            artifact.kind = Some(k);
        }
        let comment = a.str("comment")?.map(str::to_owned);
        if new_version || artifact.versions.is_empty() {
            let name = crate::versions::default_version_name(&artifact.versions);
            artifact.versions.push(Version {
                version: name,
                comment,
                created_at: now,
            });
        } else if let (Some(c), Some(last)) = (comment, artifact.versions.last_mut()) {
            last.comment = Some(c);
        }
        let index = artifact.versions.len() as u64 - 1;
        let key = objects::snapshot_key(&prefix, &artifact.id, index);
        self.run_ops(&mut artifact, vec![ObjectOp::WriteSnapshot { key }])
            .await?;
        let stored = self.store.update(&artifact, now).await?;
        self.view(&stored, parent.as_ref()).await
    }

    /// `read` (§3.3).
    pub(crate) async fn read(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let id = a.req_str("artifact_id")?;
        self.read_artifact(
            &caller,
            id,
            a.opt("version"),
            a.bool("stage", false)?,
            a.bool("silent", false)?,
        )
        .await
    }

    /// The work of `read`, shared with the HTTP route.
    pub(crate) async fn read_artifact(
        &self,
        caller: &Caller,
        id: &str,
        version: Option<&Json>,
        stage: bool,
        silent: bool,
    ) -> ArtifactResult<Json> {
        let mut arg = VersionArg::from_value(version)?;
        if stage {
            if !matches!(arg, VersionArg::Default | VersionArg::Stage) {
                return Err(ArtifactError::invalid(
                    "You cannot specify a version when using stage mode.",
                ));
            }
            arg = VersionArg::Stage;
        }
        let Loaded {
            mut artifact,
            parent,
        } = self.load_for(id, caller, Operation::Read).await?;
        if !silent {
            self.store.add_views(&artifact.id, 1.0).await?;
            artifact.view_count += 1.0;
        }
        if arg == VersionArg::Stage {
            if let Some(draft) = Draft::from_artifact(&artifact)? {
                if let Some(m) = draft.manifest {
                    artifact.manifest = Some(m);
                }
                if let Some(c) = draft.config {
                    artifact.config = Some(c);
                }
                if let Some(k) = draft.kind {
                    artifact.kind = Some(k);
                }
            }
            return self.view(&artifact, parent.as_ref()).await;
        }
        let index = version_index(&artifact.versions, artifact.staging.as_ref(), &arg)?;
        let last = artifact.versions.len() as i64 - 1;
        if arg != VersionArg::Default && index != last && index >= 0 {
            if index > last {
                return Err(ArtifactError::invalid(format!(
                    "Artifact version index {index} does not exist."
                )));
            }
            let key = objects::snapshot_key(&Self::prefix(&artifact), &artifact.id, index as u64);
            if let Some(bytes) = self.objects.get(&key).await? {
                if let Ok(Json::Object(row)) = serde_json::from_slice::<Json>(&bytes) {
                    artifact.manifest = row.get("manifest").cloned();
                    artifact.config = row.get("config").cloned();
                }
            }
        }
        let mut view = self.view(&artifact, parent.as_ref()).await?;
        if artifact.is_staged() {
            // The published values, without the draft (§3.3 "Otherwise").
            view["staging"] = Json::Null;
        }
        Ok(view)
    }

    /// `commit` (§3.4).
    pub(crate) async fn commit(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let loaded = self.load(a.req_str("artifact_id")?, &ctx.ws).await?;
        let gates = permissions::commit_gates(
            loaded.parent.is_some(),
            !loaded.artifact.versions.is_empty(),
        );
        permissions::enforce(&loaded.subject(), &caller, &gates)?;
        let Loaded {
            mut artifact,
            parent,
        } = loaded;
        let prefix = Self::prefix(&artifact);
        let now = now_unix();
        let plan = staging::commit(
            &mut artifact,
            &prefix,
            a.str("version")?,
            a.str("comment")?,
            now,
        )?;
        if let Some(schema) = parent
            .as_ref()
            .and_then(|p| p.config.as_ref())
            .and_then(|c| c.get("collection_schema"))
            .filter(|s| !s.is_null())
        {
            validate_manifest(schema, artifact.manifest.as_ref().unwrap_or(&Json::Null))?;
        }
        if let Some(w) = &plan.warning {
            tracing::info!(artifact = %artifact.public_id(), "{w}");
        }
        self.run_ops(&mut artifact, plan.ops).await?;
        let stored = self.store.update(&artifact, now).await?;
        self.view(&stored, parent.as_ref()).await
    }

    /// `discard` (§3.5).
    pub(crate) async fn discard(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let Loaded {
            mut artifact,
            parent,
        } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::Edit)
            .await?;
        let prefix = Self::prefix(&artifact);
        let ops = staging::discard(&mut artifact, &prefix)?;
        self.run_ops(&mut artifact, ops).await?;
        let stored = self.store.update(&artifact, now_unix()).await?;
        self.view(&stored, parent.as_ref()).await
    }

    /// `delete` (§3.6).
    pub(crate) async fn delete(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let version = a.str("version")?;
        if version == Some("stage") {
            return Err(ArtifactError::invalid(
                "Cannot delete the staged version: use discard() to drop staged changes.",
            ));
        }
        let recursive = a.bool("recursive", false)?;
        let delete_files = a.bool("delete_files", false)?;
        let loaded = self.load(a.req_str("artifact_id")?, &ctx.ws).await?;
        permissions::authorize_delete(
            &loaded.subject(),
            &caller,
            loaded.artifact.manifest.as_ref(),
            version.is_none(),
            recursive,
        )?;
        match version {
            None => {
                self.delete_tree(&caller, loaded.artifact, delete_files, recursive)
                    .await?
            }
            Some(name) => {
                self.delete_version(loaded.artifact, name, delete_files)
                    .await?
            }
        }
        Ok(Json::Null)
    }

    /// Deletes `artifact` (and, when `recursive`, its children first, each checked for
    /// `delete` like the artifact).
    async fn delete_tree(
        &self,
        caller: &Caller,
        artifact: Artifact,
        delete_files: bool,
        recursive: bool,
    ) -> ArtifactResult<()> {
        let mut stack = vec![(artifact, false)];
        // Depth first: a row is deleted once its children are.
        while let Some((a, expanded)) = stack.pop() {
            if recursive && !expanded {
                let children = self.all_children(&a.id).await?;
                stack.push((a.clone(), true));
                for child in children {
                    let subject = Subject {
                        config: child.config.as_ref(),
                        parent_config: Some(a.config.as_ref().unwrap_or(&Json::Null)),
                        workspace: &child.workspace,
                    };
                    permissions::authorize(&subject, caller, Operation::Delete)?;
                    stack.push((child, false));
                }
                continue;
            }
            if delete_files {
                let dir = objects::artifact_dir(&Self::prefix(&a), &a.id);
                self.objects.delete_prefix(&dir).await?;
            }
            self.store.delete(&a.id).await?;
        }
        Ok(())
    }

    /// Every child row of `parent_id` (paged).
    pub(crate) async fn all_children(&self, parent_id: &str) -> ArtifactResult<Vec<Artifact>> {
        let mut out = Vec::new();
        loop {
            let page = self
                .store
                .list_children(parent_id, out.len() as u64, PAGE)
                .await?;
            let n = page.len() as u64;
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// Deletes the version `name` of `artifact` (§3.6 "A specific version"). rhizo: only
    /// the latest version can be deleted: version folders are list indices (§1.6), and
    /// deleting an earlier one would point every later name at the wrong folder (§9.7).
    async fn delete_version(
        &self,
        mut artifact: Artifact,
        name: &str,
        delete_files: bool,
    ) -> ArtifactResult<()> {
        let Some(index) = artifact.versions.iter().position(|v| v.version == name) else {
            let names: Vec<&str> = artifact
                .versions
                .iter()
                .map(|v| v.version.as_str())
                .collect();
            return Err(ArtifactError::invalid(format!(
                "Artifact version '{name}' does not exist. Available versions: {names:?}."
            )));
        };
        if index + 1 != artifact.versions.len() {
            return Err(ArtifactError::invalid(format!(
                "Only the latest version can be deleted ('{}'); '{name}' has later versions.",
                artifact.versions.last().map_or("", |v| v.version.as_str())
            )));
        }
        if artifact.is_staged() {
            return Err(ArtifactError::invalid(
                "The artifact has staged changes: commit or discard them before deleting a version.",
            ));
        }
        let prefix = Self::prefix(&artifact);
        artifact.versions.pop();
        self.objects
            .delete(&objects::snapshot_key(&prefix, &artifact.id, index as u64))
            .await?;
        if delete_files {
            let dir = objects::version_dir(&prefix, &artifact.id, index as u64);
            self.objects.delete_prefix(&dir).await?;
        }
        self.store.update(&artifact, now_unix()).await?;
        Ok(())
    }
}

/// Checks a child's `manifest` against its collection's `collection_schema` (§1.4, §3.4
/// step 5), a JSON Schema; references to other documents are not fetched.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] "ValidationError: …" naming the first violations
/// and where they are, or "Invalid collection_schema: …" for a schema that is not one.
pub(crate) fn validate_manifest(schema: &Json, manifest: &Json) -> ArtifactResult<()> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| ArtifactError::invalid(format!("Invalid collection_schema: {e}")))?;
    let errors: Vec<String> = validator
        .iter_errors(manifest)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{e} (at {at})")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ArtifactError::invalid(format!(
            "ValidationError: the manifest does not match the collection's schema: {}",
            errors.join("; ")
        )))
    }
}

/// Sets `config[key] = value` on `a`, making `config` an object if needed.
pub(super) fn set_config_flag(a: &mut Artifact, key: &str, value: Json) {
    let mut config = a.config.take().unwrap_or_else(|| json!({}));
    if !config.is_object() {
        config = json!({});
    }
    if let Some(c) = config.as_object_mut() {
        c.insert(key.into(), value);
    }
    a.config = Some(config);
}
