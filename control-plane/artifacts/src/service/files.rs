//! The file methods over RPC (spec artifacts.md §3.9–3.15): put_file and multipart
//! uploads, remove_file, get_file, list_files, read_file and write_file, and the URLs
//! they hand out (§5.3).
//!
//! **URLs.** With `use_proxy` resolved false (the default without `--enable-s3-proxy`)
//! and a store that presigns (S3), the URL is the store's own presigned one. Otherwise
//! it is a URL rhizo signs ([`crate::signing`]) and serves under `/s3/…`, on the public
//! base URL, the local one (`use_local_url=True`) or the base given as
//! `use_local_url="http://…"`.
//!
//! **Multipart.** With native S3 multipart uploads the parts go straight to S3. Without
//! them (the local store, or through rhizo's URLs) each part is an object of its own
//! under `{artifact}/.multipart/{upload_id}/{n}`, its PUT answers an ETag rhizo derives
//! from key and size, and completion checks every ETag and joins the parts into the
//! file with one streamed write, so the file appears whole or not at all. Upload
//! sessions live in memory on the instance that started them (rhizo: the reference keeps
//! them in Redis); completion checks that the session belongs to the artifact named
//! (§3.11: the reference does not).

use super::args::Args;
use super::{ArtifactManager, Loaded};
use crate::error::{ArtifactError, ArtifactResult};
use crate::ids;
use crate::model::{now_unix, Artifact};
use crate::objects::{self, ByteStream, PresignOp, UploadedPart};
use crate::permissions::Operation;
use crate::staging::{self, Draft, StagedFile};
use crate::versions::{version_index, VersionArg};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use rhizo_control_plane::manager::Ctx;
use rmpv::Value;
use serde_json::{json, Map, Value as Json};
use std::time::Duration;

/// Bounds of `expires_in`, seconds (§3.9).
const EXPIRES_MIN: i64 = 60;
const EXPIRES_MAX: i64 = 604_800;
/// `read_file`'s default and largest `limit`, bytes (§3.15).
const READ_DEFAULT: i64 = 64 * 1024;
const READ_MAX: i64 = 10 * 1024 * 1024;

/// An open multipart upload (§3.10).
#[derive(Debug, Clone)]
pub(crate) struct MultipartSession {
    /// Internal id of the artifact the file belongs to.
    pub artifact_id: String,
    /// The object key of the file.
    pub key: String,
    /// The store's own upload id, for a native multipart upload.
    pub native: Option<String>,
    /// The directory of the parts of a joined upload.
    pub parts_dir: String,
    /// How many parts were handed out.
    pub part_count: u32,
    /// When the session lapses, unix seconds.
    pub expires_at: i64,
}

/// `expires_in` checked against its bounds.
fn expires_in(a: &Args) -> ArtifactResult<i64> {
    let e = a.int("expires_in", 3600)?;
    if !(EXPIRES_MIN..=EXPIRES_MAX).contains(&e) {
        return Err(ArtifactError::invalid(format!(
            "expires_in must be between {EXPIRES_MIN} and {EXPIRES_MAX} seconds, got {e}."
        )));
    }
    Ok(e)
}

impl ArtifactManager {
    /// The URL for `op` on `key` valid for `expires` seconds (module docs).
    pub(crate) async fn object_url(
        &self,
        op: PresignOp,
        key: &str,
        expires: i64,
        use_proxy: Option<bool>,
        use_local_url: &Json,
    ) -> ArtifactResult<String> {
        let own = use_proxy.unwrap_or(self.options.proxy);
        if !own {
            let secs = Duration::from_secs(expires as u64);
            if let Some(url) = self.objects.presign(op, key, secs).await? {
                return Ok(url);
            }
        }
        let base = self.url_base(use_local_url)?;
        Ok(self.signer()?.url(&base, op, key, now_unix() + expires))
    }

    /// Where rhizo's own URLs point: `use_local_url` as a base, the local base URL for
    /// `true`, the public base URL otherwise.
    fn url_base(&self, use_local_url: &Json) -> ArtifactResult<String> {
        let host = self.host()?;
        Ok(match use_local_url {
            Json::String(s) if !s.is_empty() => s.trim_end_matches('/').to_owned(),
            Json::Bool(true) => host.local_base_url(),
            _ => host.public_base_url(),
        })
    }

    /// The version folder index `version`/`stage` name for reads of `a` (§1.6).
    pub(crate) fn read_index(
        a: &Artifact,
        version: Option<&Json>,
        stage: bool,
    ) -> ArtifactResult<i64> {
        let arg = if stage {
            VersionArg::Stage
        } else {
            VersionArg::from_value(version)?
        };
        version_index(&a.versions, a.staging.as_ref(), &arg)
    }

    /// The folder staged files of `a` go to (§3.9 "Target index").
    fn staged_index(a: &Artifact) -> ArtifactResult<u64> {
        let draft = Draft::from_artifact(a)?
            .ok_or_else(|| ArtifactError::invalid("Artifact must be in staging mode."))?;
        Ok(staging::staged_index(&a.versions, draft.effective_intent()))
    }

    /// Stages `path` (with `weight`) in `artifact` and returns the object key to upload to.
    pub(crate) async fn stage_upload(
        &self,
        artifact: &mut Artifact,
        path: &str,
        weight: f64,
    ) -> ArtifactResult<String> {
        let prefix = Self::prefix(artifact);
        let ops = staging::stage_put_file(artifact, &prefix, path, weight)?;
        self.run_ops(artifact, ops).await?;
        objects::file_key(&prefix, &artifact.id, Self::staged_index(artifact)?, path)
    }

    /// `put_file` (§3.9).
    pub(crate) async fn put_file(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let (paths, many) = a.paths("file_path")?;
        let weights: Vec<f64> = match a.opt("download_weight") {
            None => vec![0.0; paths.len()],
            Some(Json::Array(w)) => {
                if w.len() != paths.len() {
                    return Err(ArtifactError::invalid(
                        "download_weight must have one weight per file path.",
                    ));
                }
                w.iter()
                    .map(|x| {
                        x.as_f64().ok_or_else(|| {
                            ArtifactError::invalid("download weights must be numbers.")
                        })
                    })
                    .collect::<ArtifactResult<_>>()?
            }
            Some(w) => {
                let w = w
                    .as_f64()
                    .ok_or_else(|| ArtifactError::invalid("download_weight must be a number."))?;
                vec![w; paths.len()]
            }
        };
        if weights.iter().any(|w| *w < 0.0 || !w.is_finite()) {
            return Err(ArtifactError::invalid(
                "Download weight must be a non-negative number.",
            ));
        }
        let expires = expires_in(a)?;
        let use_proxy = a.opt_bool("use_proxy")?;
        let Loaded { mut artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::PutFile)
            .await?;
        let mut urls = Map::new();
        for (path, weight) in paths.iter().zip(weights) {
            let key = self.stage_upload(&mut artifact, path, weight).await?;
            let url = self
                .object_url(
                    PresignOp::Put,
                    &key,
                    expires,
                    use_proxy,
                    a.get("use_local_url"),
                )
                .await?;
            urls.insert(path.clone(), Json::String(url));
        }
        self.store.update(&artifact, now_unix()).await?;
        Ok(one_or_all(urls, many))
    }

    /// `put_file_start_multipart` (§3.10).
    pub(crate) async fn put_file_start_multipart(
        &self,
        ctx: &Ctx,
        a: &Args,
    ) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let path = a.req_str("file_path")?.to_owned();
        let part_count = a.int("part_count", 0)?;
        if !(1..=10_000).contains(&part_count) {
            return Err(ArtifactError::invalid(
                "part_count must be between 1 and 10000.",
            ));
        }
        let part_count = part_count as u32;
        let weight = a.num("download_weight", 0.0)?;
        if weight < 0.0 || !weight.is_finite() {
            return Err(ArtifactError::invalid(
                "Download weight must be a non-negative number.",
            ));
        }
        let expires = expires_in(a)?;
        let use_proxy = a.opt_bool("use_proxy")?;
        let Loaded { mut artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::PutFile)
            .await?;
        let key = self.stage_upload(&mut artifact, &path, weight).await?;
        self.store.update(&artifact, now_unix()).await?;
        let own = use_proxy.unwrap_or(self.options.proxy);
        let native = if own {
            None
        } else {
            self.objects.multipart_start(&key).await?
        };
        let upload_id = native
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let parts_dir = format!(
            "{}/.multipart/{}",
            objects::artifact_dir(&Self::prefix(&artifact), &artifact.id),
            ids::safe_join("", &upload_id.replace(['/', '.'], "_"))?
        );
        let mut parts = Vec::with_capacity(part_count as usize);
        for n in 1..=part_count {
            let url = match &native {
                Some(id) => {
                    self.objects
                        .presign_part(&key, id, n, Duration::from_secs(expires as u64))
                        .await?
                }
                None => {
                    let base = self.url_base(a.get("use_local_url"))?;
                    let part_key = format!("{parts_dir}/{n}");
                    self.signer()?
                        .url(&base, PresignOp::Put, &part_key, now_unix() + expires)
                }
            };
            parts.push(json!({"part_number": n, "url": url}));
        }
        let now = now_unix();
        let mut sessions = self.multipart.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires_at >= now);
        sessions.insert(
            upload_id.clone(),
            MultipartSession {
                artifact_id: artifact.id.clone(),
                key,
                native,
                parts_dir,
                part_count,
                expires_at: now + expires + 10,
            },
        );
        Ok(json!({"upload_id": upload_id, "parts": parts}))
    }

    /// `put_file_complete_multipart` (§3.11).
    pub(crate) async fn put_file_complete_multipart(
        &self,
        ctx: &Ctx,
        a: &Args,
    ) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let upload_id = a.req_str("upload_id")?.to_owned();
        let parts = parse_parts(a.get("parts"))?;
        let Loaded { artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::PutFile)
            .await?;
        let session = {
            let sessions = self.multipart.lock().unwrap_or_else(|e| e.into_inner());
            sessions.get(&upload_id).cloned()
        };
        let session = session
            .filter(|s| s.expires_at >= now_unix())
            .ok_or_else(|| ArtifactError::invalid("Upload session expired or not found"))?;
        if session.artifact_id != artifact.id {
            return Err(ArtifactError::invalid(
                "The upload session belongs to another artifact.",
            ));
        }
        match &session.native {
            Some(id) => {
                self.objects
                    .multipart_complete(&session.key, id, &parts)
                    .await?
            }
            None => self.join_parts(&session, &parts).await?,
        }
        self.multipart
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&upload_id);
        Ok(json!({"success": true, "message": "File uploaded successfully"}))
    }

    /// Joins the parts of a rhizo-served multipart upload into its file (module docs).
    async fn join_parts(
        &self,
        session: &MultipartSession,
        parts: &[UploadedPart],
    ) -> ArtifactResult<()> {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.part_number);
        let signer = self.signer()?;
        let mut keys = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            if p.part_number as usize != i + 1 || p.part_number > session.part_count {
                return Err(ArtifactError::invalid(format!(
                    "The parts must be numbered 1 to {} without gaps; got part {}.",
                    parts.len(),
                    p.part_number
                )));
            }
            let key = format!("{}/{}", session.parts_dir, p.part_number);
            let info = self.objects.head(&key).await?.ok_or_else(|| {
                ArtifactError::invalid(format!("Part {} was not uploaded.", p.part_number))
            })?;
            if signer.etag(&key, info.size) != p.etag.trim_matches('"') {
                return Err(ArtifactError::invalid(format!(
                    "The ETag of part {} does not match the uploaded part.",
                    p.part_number
                )));
            }
            keys.push(key);
        }
        let body = chain_objects(self.objects.clone(), keys);
        self.objects.put_stream(&session.key, body).await?;
        self.objects.delete_prefix(&session.parts_dir).await?;
        Ok(())
    }

    /// `remove_file` (§3.12).
    pub(crate) async fn remove_file(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let path = a.req_str("file_path")?.to_owned();
        let Loaded { mut artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::RemoveFile)
            .await?;
        let prefix = Self::prefix(&artifact);
        let ops = staging::stage_remove_file(&mut artifact, &prefix, &path)?;
        self.run_ops(&mut artifact, ops).await?;
        self.store.update(&artifact, now_unix()).await?;
        Ok(Json::Null)
    }

    /// The sum of the download weights of `paths` in `a`'s config (§1.8).
    pub(crate) fn weights(a: &Artifact, paths: &[String]) -> f64 {
        let Some(Json::Object(w)) = a.config.as_ref().and_then(|c| c.get("download_weights"))
        else {
            return 0.0;
        };
        paths
            .iter()
            .filter_map(|p| w.get(p).and_then(Json::as_f64))
            .filter(|x| *x > 0.0)
            .sum()
    }

    /// `get_file` (§3.13).
    pub(crate) async fn get_file(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let (paths, many) = a.paths("file_path")?;
        let expires = expires_in(a)?;
        let use_proxy = a.opt_bool("use_proxy")?;
        let Loaded { artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::GetFile)
            .await?;
        let index = Self::read_index(&artifact, a.opt("version"), a.bool("stage", false)?)?;
        let prefix = Self::prefix(&artifact);
        let mut urls = Map::new();
        for path in &paths {
            if index < 0 {
                return Err(ArtifactError::file_not_found(path));
            }
            let key = objects::file_key(&prefix, &artifact.id, index as u64, path)?;
            if self.objects.head(&key).await?.is_none() {
                return Err(ArtifactError::file_not_found(path));
            }
            let url = self
                .object_url(
                    PresignOp::Get,
                    &key,
                    expires,
                    use_proxy,
                    a.get("use_local_url"),
                )
                .await?;
            urls.insert(path.clone(), Json::String(url));
        }
        if !a.bool("silent", false)? {
            let w = Self::weights(&artifact, &paths);
            if w > 0.0 {
                self.store.add_downloads(&artifact.id, w).await?;
            }
        }
        Ok(one_or_all(urls, many))
    }

    /// `list_files` (§3.14).
    pub(crate) async fn list_files(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let limit = a.int("limit", 1000)?;
        if !(1..=10_000).contains(&limit) {
            return Err(ArtifactError::invalid("limit must be between 1 and 10000."));
        }
        let offset = a.int("offset", 0)?.max(0) as u64;
        let Loaded { artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::ListFiles)
            .await?;
        let stage = a.bool("stage", false)? || a.str("version").ok().flatten() == Some("stage");
        let dir_path = a
            .str("dir_path")?
            .unwrap_or("")
            .trim_matches('/')
            .to_owned();
        self.list_dir(
            &artifact,
            &dir_path,
            a.opt("version"),
            stage,
            offset,
            limit as u64,
            a.bool("include_pending", false)?,
        )
        .await
    }

    /// One directory level of `a`'s files, shared with the HTTP files route.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn list_dir(
        &self,
        artifact: &Artifact,
        dir_path: &str,
        version: Option<&Json>,
        stage: bool,
        offset: u64,
        limit: u64,
        include_pending: bool,
    ) -> ArtifactResult<Json> {
        let index = Self::read_index(artifact, version, stage)?;
        if index < 0 {
            return Ok(Json::Array(Vec::new()));
        }
        // A directory may be named `.`, `./data` or `data/` (hypha-artifact lists `.`);
        // `..` stays refused by safe_join.
        let dir_path = dir_path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join("/");
        let dir_path = dir_path.as_str();
        let base = objects::version_dir(&Self::prefix(artifact), &artifact.id, index as u64);
        let dir = ids::safe_join(&base, dir_path)?;
        let draft = if stage {
            Draft::from_artifact(artifact)?
        } else {
            None
        };
        // Removed entries are hidden, so fetch past them before paging.
        let fetch = if draft.is_some() {
            offset + limit + 1000
        } else {
            limit
        };
        let start = if draft.is_some() { 0 } else { offset };
        let entries = self.objects.list(&dir, start, fetch).await?;
        let mut items: Vec<Json> = Vec::with_capacity(entries.len());
        let rel = |name: &str| {
            if dir_path.is_empty() {
                name.to_owned()
            } else {
                format!("{dir_path}/{name}")
            }
        };
        for e in entries {
            let mut v =
                serde_json::to_value(&e).map_err(|e| ArtifactError::ObjectStore(e.to_string()))?;
            if let (Some(d), objects::Entry::File { name, .. }) = (&draft, &e) {
                let path = rel(name);
                let mut hidden = false;
                for f in &d.files {
                    match f {
                        StagedFile::Remove { path: p } if *p == path => hidden = true,
                        StagedFile::Put {
                            path: p,
                            download_weight: Some(w),
                        } if *p == path => {
                            v["download_weight"] = (*w).into();
                        }
                        _ => {}
                    }
                }
                if hidden {
                    continue;
                }
            }
            items.push(v);
        }
        if let (Some(d), true) = (&draft, include_pending) {
            for f in &d.files {
                let StagedFile::Put {
                    path,
                    download_weight,
                } = f
                else {
                    continue;
                };
                let Some(name) = direct_child(dir_path, path) else {
                    continue;
                };
                if items.iter().any(|i| i["name"] == name) {
                    continue;
                }
                let mut item = json!({"name": name, "type": "file", "size": 0, "last_modified": null, "etag": null, "pending": true});
                if let Some(w) = download_weight {
                    item["download_weight"] = (*w).into();
                }
                items.push(item);
            }
            items.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
        }
        if draft.is_some() {
            items = items
                .into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
        }
        Ok(Json::Array(items))
    }

    /// `read_file` (§3.15): `{name, content}` with content as text, bytes, base64 or JSON.
    pub(crate) async fn read_file(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Value> {
        let caller = Self::caller(ctx);
        let path = a.req_str("file_path")?.to_owned();
        let format = a.str("format")?.unwrap_or("text").to_owned();
        if !matches!(format.as_str(), "text" | "binary" | "base64" | "json") {
            return Err(ArtifactError::invalid(format!(
                "Invalid format '{format}': expected text, binary, base64 or json."
            )));
        }
        check_encoding(a.str("encoding")?)?;
        let offset = a.int("offset", 0)?.max(0) as u64;
        let limit = a.int("limit", READ_DEFAULT)?.clamp(1, READ_MAX) as u64;
        let Loaded { artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::GetFile)
            .await?;
        let index = Self::read_index(&artifact, a.opt("version"), a.bool("stage", false)?)?;
        if index < 0 {
            return Err(ArtifactError::file_not_found(&path));
        }
        let key = objects::file_key(&Self::prefix(&artifact), &artifact.id, index as u64, &path)?;
        let bytes = self
            .objects
            .get_range(&key, offset..offset.saturating_add(limit))
            .await?
            .ok_or_else(|| ArtifactError::file_not_found(&path))?;
        let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
        let content = match format.as_str() {
            "binary" => Value::Binary(bytes.to_vec()),
            "base64" => Value::from(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            "json" => {
                let j: Json = serde_json::from_slice(&bytes).map_err(|e| {
                    ArtifactError::invalid(format!("The file '{path}' is not valid JSON: {e}"))
                })?;
                rhizo_protocol::value::from_json(&j)
            }
            _ => Value::from(String::from_utf8_lossy(&bytes).into_owned()),
        };
        Ok(Value::Map(vec![
            (Value::from("name"), Value::from(name)),
            (Value::from("content"), content),
        ]))
    }

    /// `write_file` (§3.15).
    pub(crate) async fn write_file(&self, ctx: &Ctx, a: &Args) -> ArtifactResult<Json> {
        let caller = Self::caller(ctx);
        let path = a.req_str("file_path")?.to_owned();
        let format = a.str("format")?.unwrap_or("text");
        check_encoding(a.str("encoding")?)?;
        let body: Vec<u8> = match (format, a.get("content")) {
            ("text", Json::String(s)) => s.clone().into_bytes(),
            ("base64", Json::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| {
                    ArtifactError::invalid(format!("The content is not valid base64: {e}"))
                })?,
            ("json", v) => {
                serde_json::to_vec(v).map_err(|e| ArtifactError::invalid(e.to_string()))?
            }
            ("binary", Json::Array(items)) => items
                .iter()
                .map(|x| x.as_u64().filter(|b| *b < 256).map(|b| b as u8))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| ArtifactError::invalid("The content must be bytes."))?,
            ("binary", Json::String(s)) => s.clone().into_bytes(),
            (f, _) if !matches!(f, "text" | "base64" | "json" | "binary") => {
                return Err(ArtifactError::invalid(format!(
                    "Invalid format '{f}': expected text, binary, base64 or json."
                )))
            }
            _ => {
                return Err(ArtifactError::invalid(format!(
                    "The content does not fit the format '{format}'."
                )))
            }
        };
        let Loaded { mut artifact, .. } = self
            .load_for(a.req_str("artifact_id")?, &caller, Operation::PutFile)
            .await?;
        if !artifact.is_staged() {
            return Err(ArtifactError::invalid(
                "Artifact must be in staging mode. Call edit(artifact_id, stage=True) first.",
            ));
        }
        let key = self.stage_upload(&mut artifact, &path, 0.0).await?;
        let n = body.len();
        self.objects.put(&key, Bytes::from(body)).await?;
        self.store.update(&artifact, now_unix()).await?;
        Ok(json!({"success": true, "bytes_written": n}))
    }
}

/// The URLs of a `str | list[str]` call: the one URL for a single path, the dict of
/// path → URL for a list (§3.9, §3.13).
fn one_or_all(urls: Map<String, Json>, many: bool) -> Json {
    if many {
        Json::Object(urls)
    } else {
        urls.into_iter().next().map_or(Json::Null, |(_, u)| u)
    }
}

/// Only UTF-8 text is supported.
fn check_encoding(encoding: Option<&str>) -> ArtifactResult<()> {
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        None | Some("utf-8") | Some("utf8") | Some("ascii") => Ok(()),
        Some(other) => Err(ArtifactError::invalid(format!(
            "Unsupported encoding '{other}': only utf-8 is supported."
        ))),
    }
}

/// The name of `path` inside `dir` when it lies directly in it.
fn direct_child(dir: &str, path: &str) -> Option<String> {
    let rest = if dir.is_empty() {
        path
    } else {
        path.strip_prefix(dir)?.strip_prefix('/')?
    };
    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
}

/// `parts=[{part_number, etag}]` of `put_file_complete_multipart`.
fn parse_parts(v: &Json) -> ArtifactResult<Vec<UploadedPart>> {
    let Json::Array(items) = v else {
        return Err(ArtifactError::invalid(
            "parts must be a list of {part_number, etag}.",
        ));
    };
    if items.is_empty() {
        return Err(ArtifactError::invalid("parts must not be empty."));
    }
    items
        .iter()
        .map(|p| {
            let n = p.get("part_number").and_then(Json::as_u64);
            let etag = p.get("etag").and_then(Json::as_str);
            match (n, etag) {
                (Some(n), Some(e)) if (1..=10_000).contains(&n) => Ok(UploadedPart {
                    part_number: n as u32,
                    etag: e.to_owned(),
                }),
                _ => Err(ArtifactError::invalid(format!(
                    "Invalid part {p}: expected {{part_number, etag}}."
                ))),
            }
        })
        .collect()
}

/// The objects at `keys`, one after the other, as one body.
pub(crate) fn chain_objects(
    objects: std::sync::Arc<dyn objects::ObjectStore>,
    keys: Vec<String>,
) -> ByteStream {
    struct State {
        objects: std::sync::Arc<dyn objects::ObjectStore>,
        keys: std::vec::IntoIter<String>,
        current: Option<ByteStream>,
    }
    let state = State {
        objects,
        keys: keys.into_iter(),
        current: None,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(cur) = s.current.as_mut() {
                match cur.next().await {
                    Some(item) => return Some((item, s)),
                    None => s.current = None,
                }
            }
            let key = s.keys.next()?;
            match s.objects.get_stream(&key, None).await {
                Ok(Some((_, body))) => s.current = Some(body),
                Ok(None) => {
                    s.keys = Vec::new().into_iter();
                    return Some((Err(std::io::Error::other(format!("{key} is gone"))), s));
                }
                Err(e) => {
                    s.keys = Vec::new().into_iter();
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
            }
        }
    }))
}
