//! `duplicate` (spec artifacts.md §3.16) and the smaller methods of §3.17: reset_stats,
//! set_parent, get_secret/set_secret, set_download_weight, get_status, discard_changes.

use super::args::Args;
use super::core::set_config_flag;
use super::{is_collection, ArtifactManager, Loaded};
use crate::error::{ArtifactError, ArtifactResult};
use crate::ids;
use crate::model::now_unix;
use crate::objects::{self, Entry};
use crate::permissions::{self, Operation};
use crate::staging::{self, Draft, ObjectOp};
use rhizo_control_plane::manager::Ctx;
use serde_json::{json, Map, Value as Json};

/// How many entries a copy lists per page.
const PAGE: u64 = 500;

impl ArtifactManager {
    /// `duplicate` (§3.16): a staged copy of the source's manifest and config (the caller
    /// added as `*`, no secrets), its latest files copied into `v0/`, then committed
    /// unless `stage`.
    pub(crate) async fn duplicate(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let source = self
            .load_for(a.req_str("source_artifact_id")?, &caller, Operation::Read)
            .await?
            .artifact;
        if source.versions.is_empty() {
            return Err(ArtifactError::invalid(
                "The source artifact has no committed version to duplicate.",
            ));
        }
        let mut manifest = source.manifest.clone().unwrap_or_else(|| json!({}));
        if a.bool("remove_secrets", true)? {
            if let Some(m) = manifest.as_object_mut() {
                m.remove("secrets");
            }
        }
        let mut config = source.config.clone().unwrap_or_else(|| json!({}));
        if let Some(c) = config.as_object_mut() {
            c.remove("zenodo");
            c.remove("id_parts");
            c.remove("child_count");
        }
        let stage = a.bool("stage", false)?;
        let create = Args::from_pairs(
            "create",
            &[
                ("alias", a.json("target_alias")),
                ("workspace", a.json("target_workspace")),
                ("parent_id", a.json("target_parent_id")),
                ("manifest", Some(manifest)),
                ("type", source.kind.clone().map(Json::String)),
                ("config", Some(config)),
                ("overwrite", a.json("overwrite")),
                ("stage", Some(true.into())),
            ],
        );
        let created = self.create(ctx, &create).await?;
        let target_id = created["_id"].as_str().unwrap_or_default().to_owned();
        let mut target = self.find(&target_id, &ctx.ws).await?;
        let from = objects::version_dir(
            &Self::prefix(&source),
            &source.id,
            source.versions.len() as u64 - 1,
        );
        let to = objects::version_dir(&Self::prefix(&target), &target.id, 0);
        let mut copied = Vec::new();
        self.copy_tree(&from, &to, "", &mut copied).await?;
        let prefix = Self::prefix(&target);
        for path in &copied {
            let ops = staging::stage_put_file(&mut target, &prefix, path, 0.0)?;
            // The files are in place already; only the entries and snapshot matter.
            let ops = ops
                .into_iter()
                .filter(|o| matches!(o, ObjectOp::WriteSnapshot { .. }))
                .collect();
            self.run_ops(&mut target, ops).await?;
        }
        let now = now_unix();
        if !stage {
            let plan = staging::commit(&mut target, &prefix, None, None, now)?;
            self.run_ops(&mut target, plan.ops).await?;
        }
        let stored = self.store.update(&target, now).await?;
        let parent = match &stored.parent_id {
            Some(p) => self.store.get(p).await?,
            None => None,
        };
        self.view(&stored, parent.as_ref()).await
    }

    /// Copies every object under `from/{rel}` to `to/{rel}`, recording the relative paths.
    async fn copy_tree(
        &self,
        from: &str,
        to: &str,
        rel: &str,
        out: &mut Vec<String>,
    ) -> ArtifactResult<()> {
        let mut dirs = vec![rel.to_owned()];
        while let Some(rel) = dirs.pop() {
            let dir = ids::safe_join(from, &rel)?;
            let mut offset = 0;
            loop {
                let entries = self.objects.list(&dir, offset, PAGE).await?;
                let n = entries.len() as u64;
                for e in entries {
                    match e {
                        Entry::File { name, .. } => {
                            let path = ids::safe_join(&rel, &name)?;
                            let path = path.trim_start_matches('/').to_owned();
                            self.objects
                                .copy(&ids::safe_join(from, &path)?, &ids::safe_join(to, &path)?)
                                .await?;
                            out.push(path);
                        }
                        Entry::Directory { name } => {
                            let sub = ids::safe_join(&rel, &name)?;
                            dirs.push(sub.trim_start_matches('/').to_owned());
                        }
                    }
                }
                if n < PAGE {
                    break;
                }
                offset += n;
            }
        }
        Ok(())
    }

    /// `reset_stats` (§3.17).
    pub(crate) async fn reset_stats(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let mut artifact = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::ResetStats)
            .await?
            .artifact;
        artifact.view_count = 0.0;
        artifact.download_count = 0.0;
        self.store.update(&artifact, now_unix()).await?;
        Ok(Json::Null)
    }

    /// `set_parent` (§3.17, checks of §2.5).
    pub(crate) async fn set_parent(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let loaded = self.load(a.req_str("artifact_id")?, &ctx.ws).await?;
        let new_parent = match a.str("new_parent_id")? {
            Some(p) => Some(self.load(p, &ctx.ws).await?),
            None => None,
        };
        permissions::authorize_set_parent(
            &loaded.subject(),
            new_parent.as_ref().map(Loaded::subject).as_ref(),
            &caller,
        )?;
        // No cycles: the new parent must not be the artifact or one of its descendants.
        if let Some(np) = &new_parent {
            let mut cursor = Some(np.artifact.clone());
            while let Some(c) = cursor {
                if c.id == loaded.artifact.id {
                    return Err(ArtifactError::invalid(
                        "Cannot set the parent: it would create a cycle.",
                    ));
                }
                cursor = match &c.parent_id {
                    Some(p) => self.store.get(p).await?,
                    None => None,
                };
            }
        }
        let now = now_unix();
        let mut artifact = loaded.artifact;
        artifact.parent_id = new_parent.as_ref().map(|p| p.artifact.id.clone());
        let stored = self.store.update(&artifact, now).await?;
        if let Some(np) = &new_parent {
            if !is_collection(&np.artifact) {
                let mut p = np.artifact.clone();
                set_config_flag(&mut p, "is_collection", true.into());
                self.store.update(&p, now).await?;
            }
        }
        self.view(&stored, new_parent.as_ref().map(|p| &p.artifact))
            .await
    }

    /// `get_secret` (§3.17): workspace admins only.
    pub(crate) async fn get_secret(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let artifact = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::GetSecret)
            .await?
            .artifact;
        let secrets = artifact.secrets.unwrap_or_else(|| json!({}));
        Ok(match a.str("secret_key")? {
            Some(k) => secrets.get(k).cloned().unwrap_or(Json::Null),
            None => secrets,
        })
    }

    /// `set_secret` (§3.17): workspace rw; a `None` value deletes the key.
    pub(crate) async fn set_secret(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let mut artifact = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::SetSecret)
            .await?
            .artifact;
        let key = a.req_str("secret_key")?.to_owned();
        let mut secrets = match artifact.secrets.take() {
            Some(Json::Object(m)) => m,
            _ => Map::new(),
        };
        match a.json("secret_value") {
            Some(v) => {
                secrets.insert(key, v);
            }
            None => {
                secrets.remove(&key);
            }
        }
        artifact.secrets = Some(Json::Object(secrets));
        self.store.update(&artifact, now_unix()).await?;
        Ok(Json::Null)
    }

    /// `set_download_weight` (§3.17): workspace rw; a weight of 0 removes the entry.
    pub(crate) async fn set_download_weight(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let mut artifact = self
            .load_for(
                a.req_str("artifact_id")?,
                &caller,
                Operation::SetDownloadWeight,
            )
            .await?
            .artifact;
        let path = a.req_str("file_path")?.to_owned();
        ids::safe_join("", &path)?;
        let weight = a.num("download_weight", 0.0)?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(ArtifactError::invalid(
                "Download weight must be a non-negative number.",
            ));
        }
        let mut config = artifact.config.take().unwrap_or_else(|| json!({}));
        if let Some(c) = config.as_object_mut() {
            let weights = c.entry("download_weights").or_insert_with(|| json!({}));
            if !weights.is_object() {
                *weights = json!({});
            }
            if let Some(w) = weights.as_object_mut() {
                if weight > 0.0 {
                    w.insert(path, weight.into());
                } else {
                    w.remove(&path);
                }
            }
        }
        artifact.config = Some(config);
        self.store.update(&artifact, now_unix()).await?;
        Ok(Json::Null)
    }

    /// `get_status` (§3.17, raw storage): `{staged: false}` or `{staged: true, files}`.
    pub(crate) async fn get_status(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let artifact = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::Read)
            .await?
            .artifact;
        Ok(match Draft::from_artifact(&artifact)? {
            None => json!({"staged": false}),
            Some(d) => {
                let files: Vec<Json> = d
                    .files
                    .iter()
                    .map(|f| match f {
                        staging::StagedFile::Put { path, .. } => json!({"path": path}),
                        staging::StagedFile::Remove { path } => {
                            json!({"path": path, "_remove": true})
                        }
                    })
                    .collect();
                json!({"staged": true, "files": files})
            }
        })
    }

    /// `discard_changes` (§3.5, raw storage): [`ArtifactManager::discard`] reporting
    /// `{status}` instead of failing when nothing is staged.
    pub(crate) async fn discard_changes(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let loaded = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::Edit)
            .await?;
        if !loaded.artifact.is_staged() {
            return Ok(json!({"status": "nothing_to_discard"}));
        }
        self.discard(ctx, a).await?;
        Ok(json!({"status": "discarded", "branch": a.get("branch")}))
    }
}
