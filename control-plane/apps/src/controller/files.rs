//! The apps as artifacts: list_apps, get_app_info, the file functions, edit_app, publish
//! (apps-workers.md §1.2). Each is a thin call into the artifact manager with the
//! caller's identity, so its permission rules apply.

use super::install::split_app;
use super::{Args, ServerApps};
use crate::error::{AppsError, AppsResult};
use crate::manifest::{autoscaling, merge};
use rhizo_control_plane::Ctx;
use rhizo_protocol::user::Permission;
use serde_json::{json, Value};

// === impl ServerApps (apps as artifacts) ===

impl ServerApps {
    /// `list_apps()`: the manifests under `{ws}/applications`, `id` = the alias.
    pub(crate) async fn list_apps(&self, ctx: &Ctx) -> AppsResult<Value> {
        let listed = self
            .artifacts(
                ctx,
                "list",
                vec![
                    ("parent_id", json!(format!("{}/applications", ctx.ws))),
                    ("limit", json!(1000)),
                ],
            )
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(AppsError::Manager(rhizo_control_plane::ManagerError::NotFound(_))) => {
                return Ok(json!([]))
            }
            Err(e) => return Err(AppsError::Invalid(format!("Failed to list apps: {e}"))),
        };
        let items = match &listed {
            Value::Array(l) => l.clone(),
            other => other
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        let apps = items
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some("application"))
            .map(|a| {
                let mut m = a.get("manifest").cloned().unwrap_or_else(|| json!({}));
                if let Some(alias) = a.get("alias").and_then(Value::as_str) {
                    m["id"] = json!(alias);
                }
                m
            })
            .collect();
        Ok(Value::Array(apps))
    }

    /// `get_app_info(app_id, version, stage)`: the artifact record.
    pub(crate) async fn get_app_info(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        self.artifacts(
            ctx,
            "read",
            vec![
                ("artifact_id", json!(format!("{ws}/{alias}"))),
                ("version", a.json("version")),
                ("stage", json!(a.bool("stage", false))),
            ],
        )
        .await
        .map_err(|e| AppsError::NotFound(format!("Failed to get app info for {alias}: {e}")))
    }

    /// `edit_file(app_id, file_path, file_content)`: staged until `commit_app`.
    pub(crate) async fn edit_file(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        Self::require(ctx, &ws, Permission::Admin, "edit apps")?;
        let content = a
            .str("file_content")
            .ok_or_else(|| AppsError::Invalid("file_content must be a string".into()))?;
        self.ensure_staged(ctx, &ws, &alias).await?;
        self.artifacts(
            ctx,
            "write_file",
            vec![
                ("artifact_id", json!(format!("{ws}/{alias}"))),
                ("file_path", json!(a.req("file_path")?)),
                ("content", json!(content)),
                ("format", json!("text")),
            ],
        )
        .await
        .map(|_| Value::Null)
    }

    /// Files are written into a staged version: one is opened when the app has none.
    async fn ensure_staged(&self, ctx: &Ctx, ws: &str, alias: &str) -> AppsResult<()> {
        let host = self.host()?;
        let record = self
            .artifacts(
                &crate::workers::root_ctx(&**host, ws),
                "read",
                vec![("artifact_id", json!(format!("{ws}/{alias}")))],
            )
            .await?;
        if record.get("staging").is_some_and(|s| !s.is_null()) {
            return Ok(());
        }
        let manifest = self.read_app(ws, alias, None, false).await?;
        self.artifacts(
            ctx,
            "edit",
            vec![
                ("artifact_id", json!(format!("{ws}/{alias}"))),
                ("manifest", manifest),
                ("stage", json!(true)),
            ],
        )
        .await
        .map(|_| ())
    }

    /// `remove_file(app_id, file_path)`.
    pub(crate) async fn remove_file(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        Self::require(ctx, &ws, Permission::Admin, "edit apps")?;
        self.ensure_staged(ctx, &ws, &alias).await?;
        self.artifacts(
            ctx,
            "remove_file",
            vec![
                ("artifact_id", json!(format!("{ws}/{alias}"))),
                ("file_path", json!(a.req("file_path")?)),
            ],
        )
        .await
        .map(|_| Value::Null)
    }

    /// `list_files(app_id)`.
    pub(crate) async fn list_files(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        let id = json!(format!("{ws}/{alias}"));
        match self
            .artifacts(ctx, "list_files", vec![("artifact_id", id.clone())])
            .await
        {
            Ok(v) => Ok(v),
            // A never-committed app has only its staged files.
            Err(_) => {
                self.artifacts(
                    ctx,
                    "list_files",
                    vec![("artifact_id", id), ("stage", json!(true))],
                )
                .await
            }
        }
    }

    /// `read_file(app_id, file_path, format="text"|"json"|"binary", version, stage)`.
    pub(crate) async fn read_file(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        let path = a.req("file_path")?;
        let format = a.str("format").unwrap_or_else(|| "text".into());
        if !matches!(format.as_str(), "text" | "json" | "binary") {
            return Err(AppsError::Invalid(format!(
                "Invalid format {format:?}: use text, json or binary"
            )));
        }
        let got = self
            .artifacts(
                ctx,
                "read_file",
                vec![
                    ("artifact_id", json!(format!("{ws}/{alias}"))),
                    ("file_path", json!(path)),
                    (
                        "format",
                        json!(if format == "binary" { "base64" } else { "text" }),
                    ),
                    ("version", a.json("version")),
                    ("stage", json!(a.bool("stage", false))),
                ],
            )
            .await
            .map_err(|e| {
                AppsError::NotFound(format!(
                    "Failed to get file content for {alias}/{path}: {e}"
                ))
            })?;
        let content = got.get("content").cloned().unwrap_or(got);
        if format == "json" {
            let text = content.as_str().unwrap_or_default();
            return serde_json::from_str(text)
                .map_err(|e| AppsError::Invalid(format!("{path} is not valid JSON: {e}")));
        }
        Ok(content)
    }

    /// `edit_app(app_id, manifest, disabled, autoscaling_config, startup_config)`: into
    /// the staged version (takes effect at `commit_app`); `disabled=True` also stops
    /// every running instance at once.
    pub(crate) async fn edit_app(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        Self::require(ctx, &ws, Permission::Admin, "edit apps")?;
        let fail = |e: String| AppsError::Invalid(format!("Failed to edit app '{alias}': {e}"));
        let mut manifest = self
            .read_app(&ws, &alias, None, false)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let patch = a.json("manifest");
        if patch.is_object() {
            merge(&mut manifest, &patch);
        }
        if let Some(d) = a.raw("disabled").as_bool() {
            manifest["disabled"] = json!(d);
            if d {
                let running: Vec<Value> = self
                    .sessions
                    .list()
                    .await?
                    .into_iter()
                    .filter(|s| {
                        crate::sessions::app_of(s) == alias && crate::sessions::ws_of(s) == ws
                    })
                    .collect();
                for s in running {
                    let _ = self.stop_record(&s).await;
                }
            }
        }
        let scaling = match a.json("autoscaling_config") {
            Value::Null => a.json("autoscaling_manifest"),
            v => v,
        };
        if !scaling.is_null() {
            let empty =
                scaling.as_object().is_some_and(|m| m.is_empty()) || scaling == json!(false);
            if empty {
                manifest["autoscaling"] = Value::Null;
            } else {
                let probe = json!({"autoscaling": scaling});
                let parsed = autoscaling(&probe).map_err(fail)?;
                manifest["autoscaling"] = serde_json::to_value(parsed).unwrap_or(Value::Null);
            }
        }
        match a.json("startup_config") {
            Value::Null => {}
            Value::Object(m) if m.is_empty() => manifest["startup_config"] = Value::Null,
            v => manifest["startup_config"] = v,
        }
        self.artifacts(
            ctx,
            "edit",
            vec![
                ("artifact_id", json!(format!("{ws}/{alias}"))),
                ("manifest", manifest),
                ("stage", json!(true)),
            ],
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(Value::Null)
    }

    /// `publish(app_id, collection_id, new_app_id, overwrite, remove_secrets, stage)`:
    /// a copy in `collection_id` without `config.secrets` and `startup_context`.
    pub(crate) async fn publish(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        if ctx.user.is_anonymous {
            return Err(AppsError::Permission(
                "Anonymous users cannot publish apps".into(),
            ));
        }
        let (ws, alias) = split_app(ctx, &a.req("app_id")?);
        let collection = a.req("collection_id")?;
        let target = a.str("new_app_id").unwrap_or_else(|| alias.clone());
        let stage = a.bool("stage", false);
        let copy = self
            .artifacts(
                ctx,
                "duplicate",
                vec![
                    ("source_artifact_id", json!(format!("{ws}/{alias}"))),
                    ("target_alias", json!(target)),
                    ("target_parent_id", json!(collection)),
                    ("overwrite", json!(a.bool("overwrite", false))),
                    ("remove_secrets", json!(a.bool("remove_secrets", true))),
                    ("stage", json!(stage)),
                ],
            )
            .await?;
        let id = copy.get("id").cloned().unwrap_or(Value::Null);
        let mut manifest = copy.get("manifest").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = manifest.as_object_mut() {
            m.remove("startup_context");
            if a.bool("remove_secrets", true) {
                if let Some(c) = m.get_mut("config").and_then(Value::as_object_mut) {
                    c.remove("secrets");
                }
            }
        }
        self.artifacts(
            ctx,
            "edit",
            vec![
                ("artifact_id", id.clone()),
                ("manifest", manifest),
                ("stage", json!(stage)),
            ],
        )
        .await?;
        self.artifacts(
            ctx,
            "read",
            vec![("artifact_id", id), ("stage", json!(stage))],
        )
        .await
    }
}
