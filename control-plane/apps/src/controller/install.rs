//! install, commit_app and uninstall (apps-workers.md §1.4, §1.2).

use super::run::StartRequest;
use super::{Args, ServerApps};
use crate::error::{AppsError, AppsResult};
use crate::manifest::{check_installable, merge, StartupConfig};
use crate::source::{self, AppFile};
use crate::workers::root_ctx;
use rhizo_control_plane::names::readable_id;
use rhizo_control_plane::Ctx;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value;
use serde_json::{json, Value};
use std::time::Duration;

/// App types only a browser worker can build; installing one needs a worker that
/// compiles it (§1.4 step 10).
const BROWSER_TYPES: [&str; 5] = ["window", "iframe", "web-python", "web-worker", "hypha"];

// === impl ServerApps (install) ===

impl ServerApps {
    /// `install(...)` → the committed manifest (or the staged one with `stage=True`).
    pub(crate) async fn install(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let ws = a.str("workspace").unwrap_or_else(|| ctx.ws.clone());
        if ctx.user.is_anonymous {
            return Err(AppsError::Permission(
                "Anonymous users cannot install apps".into(),
            ));
        }
        // Only workspace admins install (the reference lets read-write users; issue 12).
        Self::require(ctx, &ws, Permission::Admin, "install apps")?;
        let progress = a.callable("progress_callback");
        self.progress(ctx, progress.as_ref(), "info", "Parsing app manifest...");
        if !a.json("artifact_id").is_null() {
            return Err(AppsError::Invalid(
                "install(artifact_id=…) (install by copy) is not supported yet; use publish or \
                 install from source"
                    .into(),
            ));
        }
        let (manifest, config) = (a.json("manifest"), a.json("config"));
        if !manifest.is_null() && !config.is_null() {
            return Err(AppsError::Invalid(
                "Please only provide either manifest or config (config is deprecated)".into(),
            ));
        }
        let app_id = a.str("app_id").filter(|s| !s.is_empty());
        if let Some(id) = &app_id {
            if !source::valid_app_id(id) {
                return Err(AppsError::Invalid(format!(
                    "Invalid app id {id:?}: only letters, digits, '-' and '_' are allowed"
                )));
            }
        }
        let mut manifest = match (manifest, config) {
            (Value::Null, Value::Null) => {
                json!({"name": "Untitled App", "version": "0.1.0", "type": "hypha"})
            }
            (Value::Null, c) | (c, _) => c,
        };
        if !manifest.is_object() {
            return Err(AppsError::Invalid("manifest must be a dict".into()));
        }
        let mut files = match a.json("files") {
            Value::Null => Vec::new(),
            f => source::normalise_files(&f).map_err(|e| AppsError::Invalid(e.to_string()))?,
        };
        let mut stored: Vec<AppFile> = Vec::new();
        let src = a.str("source");
        if let Some(src) = &src {
            let hash = source::source_hash(src);
            if let Some(expected) = manifest.get("source_hash").and_then(Value::as_str) {
                if expected != hash {
                    return Err(AppsError::Invalid(format!(
                        "The source does not match its source_hash {expected}"
                    )));
                }
            }
            manifest["source_hash"] = json!(hash);
            if src.trim_start().starts_with("http") {
                // Remote sources are not fetched (clusters often have no internet access):
                // the URL becomes the entry point (§1.4 step 7).
                let url = src.trim();
                if !(url.starts_with("https://")
                    || url.starts_with("http://localhost")
                    || url.starts_with("http://127.0.0.1"))
                {
                    return Err(AppsError::Invalid(
                        "Only secured https urls are allowed".into(),
                    ));
                }
                let last = url
                    .split('?')
                    .next()
                    .unwrap_or(url)
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                // A web-app opens the URL itself (§4.7); other apps name a file.
                if manifest.get("type").and_then(Value::as_str) == Some("web-app") {
                    manifest["entry_point"] = json!(url);
                } else {
                    manifest["entry_point"] = json!(last);
                }
            } else if source::is_raw_html(src) {
                if manifest.get("type").and_then(Value::as_str) == Some("hypha") {
                    manifest["type"] = json!("window");
                }
                let name = manifest.get("name").and_then(Value::as_str);
                if name.is_none() || name == Some("Untitled App") {
                    manifest["name"] = json!("Raw HTML App");
                }
                manifest["entry_point"] = json!("index.html");
                stored.push(text_file("index.html", src));
            } else if src.trim_start().starts_with('<') {
                let x = source::extract_files_from_source(src)
                    .map_err(|e| AppsError::Invalid(e.to_string()))?;
                for patch in &x.manifest_patches {
                    merge(&mut manifest, patch);
                }
                stored.extend(x.files.iter().cloned());
                // A browser app's <window>, <style> and <link> tags belong in its page: the
                // browser worker's compile reads them from the whole source (§4.7).
                let ty = manifest
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("hypha");
                if BROWSER_TYPES.contains(&ty) && x.script_entry.is_some() && !x.others.is_empty() {
                    stored.push(text_file("source", src));
                }
                match &x.script_entry {
                    Some(entry) => manifest["entry_point"] = json!(entry),
                    None if !x.remaining.is_empty() => {
                        let entry = entry_point(&manifest);
                        stored.push(text_file(&entry, &x.remaining));
                    }
                    None => {}
                }
            } else {
                let entry = entry_point(&manifest);
                stored.push(text_file(&entry, src));
            }
        }
        stored.append(&mut files);
        check_installable(&manifest, src.is_some()).map_err(AppsError::Invalid)?;
        if manifest.get("entry_point").is_none_or(Value::is_null) {
            manifest["entry_point"] = json!("source");
        }
        let app_type = manifest["type"].as_str().unwrap_or_default().to_owned();
        // Compilation by the worker that will run the app (§1.4 step 10).
        let worker = self
            .choose_worker(
                &ws,
                &app_type,
                a.str("worker_id").as_deref(),
                a.str("worker_selection_mode").as_deref(),
            )
            .await?;
        let host = self.host()?.clone();
        if worker.has("compile") {
            self.progress(
                ctx,
                progress.as_ref(),
                "info",
                &format!("Compiling app using worker {}...", worker.id),
            );
            let files_json: Vec<Value> = stored
                .iter()
                .map(|f| json!({"path": f.path, "name": f.path.rsplit('/').next().unwrap_or(&f.path), "content": f.content, "format": f.format}))
                .collect();
            let cfg = json!({
                "server_url": host.local_base_url(),
                "public_url": host.public_base_url(),
                "workspace": ws,
                "user": ctx.user,
            });
            let out = worker
                .call(
                    &*host,
                    "compile",
                    vec![
                        value::from_json(&manifest),
                        value::from_json(&Value::Array(files_json)),
                        value::from_json(&cfg),
                    ],
                    None,
                    &ws,
                    &ctx.user,
                    Duration::from_secs(120),
                )
                .await
                .map_err(|e| AppsError::Worker(format!("Worker compilation failed: {e}")))?;
            let out = value::to_json(&out);
            let (m, f) = match &out {
                Value::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
                _ => {
                    return Err(AppsError::Worker(
                        "Worker compilation failed: compile must return (manifest, files)".into(),
                    ))
                }
            };
            merge(&mut manifest, &m);
            stored = source::normalise_files(&f)
                .map_err(|e| AppsError::Worker(format!("Worker compilation failed: {e}")))?;
        } else if BROWSER_TYPES.contains(&app_type.as_str()) {
            return Err(AppsError::Worker(format!(
                "Worker {} cannot compile {app_type} apps",
                worker.id
            )));
        }
        // Persist (§1.4 step 11).
        manifest["startup_context"] = json!({"ws": ws, "user": ctx.user});
        let mut startup = StartupConfig::from_manifest(&manifest).map_err(AppsError::Invalid)?;
        startup.overlay(&call_startup(a));
        let startup_json = startup.to_json();
        if startup_json.as_object().is_some_and(|m| !m.is_empty()) {
            manifest["startup_config"] = startup_json;
        }
        manifest["service_ids"] = json!([]);
        self.ensure_collection(ctx, &ws).await?;
        let alias = app_id.unwrap_or_else(readable_id);
        manifest["id"] = json!(alias);
        self.artifacts(
            ctx,
            "create",
            vec![
                ("alias", json!(alias)),
                ("workspace", json!(ws)),
                ("parent_id", json!(format!("{ws}/applications"))),
                ("manifest", manifest.clone()),
                ("type", json!("application")),
                ("overwrite", json!(a.bool("overwrite", false))),
                ("stage", json!(true)),
            ],
        )
        .await?;
        let artifact_id = format!("{ws}/{alias}");
        let written = self
            .write_files(ctx, &artifact_id, &stored, progress.as_ref())
            .await;
        if let Err(e) = written {
            self.cleanup(ctx, &artifact_id).await;
            return Err(e);
        }
        if a.bool("stage", false) {
            return self.read_app(&ws, &alias, None, true).await;
        }
        let commit = CommitRequest {
            app_id: artifact_id,
            version: a.str("version"),
            startup: call_startup(a),
            worker_id: a.str("worker_id"),
            progress,
        };
        let committed = self.commit(ctx, commit).await?;
        self.progress(ctx, None, "success", "Installation complete!");
        Ok(committed)
    }

    async fn write_files(
        &self,
        ctx: &Ctx,
        artifact_id: &str,
        files: &[AppFile],
        progress: Option<&rmpv::Value>,
    ) -> AppsResult<()> {
        for f in files {
            self.progress(
                ctx,
                progress,
                "info",
                &format!("Uploading file {}...", f.path),
            );
            let bytes = f.bytes().map_err(|e| AppsError::Invalid(e.to_string()))?;
            use base64::Engine;
            let content = base64::engine::general_purpose::STANDARD.encode(bytes);
            self.artifacts(
                ctx,
                "write_file",
                vec![
                    ("artifact_id", json!(artifact_id)),
                    ("file_path", json!(f.path)),
                    ("content", json!(content)),
                    ("format", json!("base64")),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes a half-installed app ("Cleaning up failed installation…", §1.4 step 13).
    async fn cleanup(&self, ctx: &Ctx, artifact_id: &str) {
        let _ = self
            .artifacts(
                ctx,
                "delete",
                vec![
                    ("artifact_id", json!(artifact_id)),
                    ("delete_files", json!(true)),
                ],
            )
            .await;
    }

    /// The `applications` collection of `ws`, created when missing (public: readable by
    /// everyone, "Public marketplace of applications").
    async fn ensure_collection(&self, ctx: &Ctx, ws: &str) -> AppsResult<()> {
        let host = self.host()?;
        let root = root_ctx(&**host, ws);
        let id = format!("{ws}/applications");
        if self
            .artifacts(&root, "read", vec![("artifact_id", json!(id))])
            .await
            .is_ok()
        {
            return Ok(());
        }
        let (description, config) = if ws == "public" {
            (
                "Public marketplace of applications",
                json!({"permissions": {"*": "r"}}),
            )
        } else {
            ("Applications of the workspace", Value::Null)
        };
        let created = self
            .artifacts(
                ctx,
                "create",
                vec![
                    ("alias", json!("applications")),
                    ("workspace", json!(ws)),
                    ("type", json!("collection")),
                    (
                        "manifest",
                        json!({"name": "Applications", "description": description}),
                    ),
                    ("config", config),
                ],
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created meanwhile by a concurrent install.
            Err(_)
                if self
                    .artifacts(&root, "read", vec![("artifact_id", json!(id))])
                    .await
                    .is_ok() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `commit_app(app_id, …)`.
    pub(crate) async fn commit_app(&self, ctx: &Ctx, a: &Args<'_>) -> AppsResult<Value> {
        let app_id = a.req("app_id")?;
        let (ws, alias) = split_app(ctx, &app_id);
        Self::require(ctx, &ws, Permission::Admin, "commit apps")?;
        let commit = CommitRequest {
            app_id: format!("{ws}/{alias}"),
            version: a.str("version"),
            startup: call_startup(a),
            worker_id: a.str("worker_id"),
            progress: a.callable("progress_callback"),
        };
        self.commit(ctx, commit).await
    }

    /// §1.4 step 12: startup arguments into the staged manifest, a verification run of
    /// the staged version (which records the services it registers), then commit. On
    /// failure the stage is discarded (a never-committed app removed) and the error is
    /// `Failed to install app '{app_id}': {core error}`.
    async fn commit(&self, ctx: &Ctx, c: CommitRequest) -> AppsResult<Value> {
        let (ws, alias) = split_app(ctx, &c.app_id);
        let mut manifest = self.read_app(&ws, &alias, None, true).await?;
        let mut startup = StartupConfig::from_manifest(&manifest).map_err(AppsError::Invalid)?;
        startup.overlay(&c.startup);
        let startup_json = startup.to_json();
        if startup_json.as_object().is_some_and(|m| !m.is_empty()) {
            manifest["startup_config"] = startup_json;
        }
        self.artifacts(
            ctx,
            "edit",
            vec![
                ("artifact_id", json!(c.app_id)),
                ("manifest", manifest.clone()),
                ("stage", json!(true)),
            ],
        )
        .await?;
        let daemon = manifest.get("daemon").and_then(Value::as_bool) == Some(true);
        let run = StartRequest {
            app_id: c.app_id.clone(),
            version: None,
            stage: true,
            call: startup.clone(),
            worker_id: c.worker_id.clone(),
            selection_mode: None,
            progress: c.progress.clone(),
            fresh: true,
        };
        let verified = match self.start(ctx, run).await {
            Ok(session) => {
                let id = session
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(Some(record)) = self.sessions.get(&id).await {
                    let _ = self.stop_record(&record).await;
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = verified {
            let _ = self.uninstall_artifact(ctx, &ws, &alias).await;
            let core = e.to_string();
            let core = core
                .strip_prefix(&format!("Failed to start app '{alias}', error: "))
                .unwrap_or(&core)
                .to_owned();
            return Err(AppsError::Worker(format!(
                "Failed to install app '{alias}': {core}"
            )));
        }
        self.progress(
            ctx,
            c.progress.as_ref(),
            "info",
            "Committing application artifact...",
        );
        self.artifacts(
            ctx,
            "commit",
            vec![
                ("artifact_id", json!(c.app_id)),
                (
                    "version",
                    c.version.map(|v| json!(v)).unwrap_or(Value::Null),
                ),
            ],
        )
        .await?;
        let committed = self.read_app(&ws, &alias, None, false).await?;
        if daemon {
            // Daemon apps run from their installation on (§1.8). Inside a daemon pass: a
            // worker connecting meanwhile starts a pass of its own (`ensure_daemons`),
            // which must find this instance rather than start a second one.
            let _one_pass = self.daemon_pass.lock().await;
            let req = StartRequest {
                app_id: c.app_id.clone(),
                fresh: true,
                ..Default::default()
            };
            if let Err(e) = self.start(ctx, req).await {
                tracing::warn!(app = %c.app_id, error = %e, "daemon app did not start");
            }
        }
        Ok(committed)
    }

    /// `uninstall(app_id)`: discard the stage if there is one, else delete; then stop
    /// every instance of the app (in this workspace).
    pub(crate) async fn uninstall(&self, ctx: &Ctx, app_id: &str) -> AppsResult<()> {
        let (ws, alias) = split_app(ctx, app_id);
        Self::require(ctx, &ws, Permission::Admin, "uninstall apps")?;
        self.uninstall_artifact(ctx, &ws, &alias).await?;
        let running: Vec<Value> = self
            .sessions
            .list()
            .await?
            .into_iter()
            .filter(|s| crate::sessions::app_of(s) == alias && crate::sessions::ws_of(s) == ws)
            .collect();
        for s in running {
            if let Err(e) = self.stop_record(&s).await {
                tracing::info!(error = %e, "stopping an uninstalled app's instance failed");
            }
        }
        Ok(())
    }

    async fn uninstall_artifact(&self, ctx: &Ctx, ws: &str, alias: &str) -> AppsResult<()> {
        let id = format!("{ws}/{alias}");
        let host = self.host()?;
        let record = self
            .artifacts(
                &root_ctx(&**host, ws),
                "read",
                vec![("artifact_id", json!(id))],
            )
            .await
            .map_err(|_| AppsError::NotFound(format!("App not found: {alias}")))?;
        let staged = record.get("staging").is_some_and(|s| !s.is_null());
        let committed = record
            .get("versions")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
        if staged && committed {
            // Back to the last committed state.
            self.artifacts(ctx, "discard", vec![("artifact_id", json!(id))])
                .await?;
            return Ok(());
        }
        self.artifacts(
            ctx,
            "delete",
            vec![("artifact_id", json!(id)), ("delete_files", json!(true))],
        )
        .await
        .map(|_| ())
    }
}

/// What commit_app needs.
struct CommitRequest {
    app_id: String,
    version: Option<String>,
    startup: StartupConfig,
    worker_id: Option<String>,
    progress: Option<rmpv::Value>,
}

/// The startup arguments of an install/commit call (§1.4 step 11).
fn call_startup(a: &Args<'_>) -> StartupConfig {
    StartupConfig {
        timeout: a.num("timeout"),
        wait_for_service: Some(a.json("wait_for_service")).filter(|v| !v.is_null()),
        additional_kwargs: Some(a.json("additional_kwargs")).filter(|v| !v.is_null()),
        stop_after_inactive: a.num("stop_after_inactive"),
    }
}

/// `ws/alias` or `alias` (in the caller's workspace).
pub(crate) fn split_app(ctx: &Ctx, app_id: &str) -> (String, String) {
    match app_id.split_once('/') {
        Some((w, a)) => (w.to_owned(), a.to_owned()),
        None => (ctx.ws.clone(), app_id.to_owned()),
    }
}

fn entry_point(manifest: &Value) -> String {
    manifest
        .get("entry_point")
        .and_then(Value::as_str)
        .unwrap_or("source")
        .to_owned()
}

fn text_file(path: &str, content: &str) -> AppFile {
    AppFile {
        path: path.to_owned(),
        content: json!(content),
        format: "text".into(),
    }
}
