//! The file routes of the artifact manager (spec artifacts.md §4.2–4.4): listing,
//! download and server-side upload of one file, the streamed ZIP, the multipart routes
//! and the static `/view/` site.

use super::bodies::{redirect, serve_object, store_body};
use super::*;

pub(super) async fn file_root(
    State(am): State<Am>,
    method: Method,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    files(am, method, ws, alias, String::new(), headers, q).await
}

pub(super) async fn file_get(
    State(am): State<Am>,
    method: Method,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    files(am, method, ws, alias, path, headers, q).await
}

/// `GET|HEAD …/files/{path}` (§4.2).
async fn files(
    am: Am,
    method: Method,
    ws: String,
    alias: String,
    path: String,
    headers: HeaderMap,
    q: Vec<(String, String)>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let loaded = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?;
    let artifact = loaded.artifact;
    let version = version_arg(&q);
    let stage = flag(&q, "stage").unwrap_or(false);
    if path.is_empty() || path.ends_with('/') {
        let limit = int(&q, "limit", 1000)?.clamp(1, 10_000) as u64;
        let offset = int(&q, "offset", 0)?.max(0) as u64;
        let items = am
            .list_dir(
                &artifact,
                path.trim_matches('/'),
                version.as_ref(),
                stage,
                offset,
                limit,
                false,
            )
            .await?;
        if items.as_array().is_some_and(Vec::is_empty) {
            return Err(HttpError(
                StatusCode::NOT_FOUND,
                "KeyError: File or directory not found".into(),
            ));
        }
        return Ok(AxumJson(items).into_response());
    }
    let index = ArtifactManager::read_index(&artifact, version.as_ref(), stage)?;
    if index < 0 {
        return Err(ArtifactError::file_not_found(&path).into());
    }
    let key = objects::file_key(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
        &path,
    )?;
    if !flag(&q, "silent").unwrap_or(false) && method != Method::HEAD {
        let w = ArtifactManager::weights(&artifact, std::slice::from_ref(&path));
        if w > 0.0 {
            am.store.add_downloads(&artifact.id, w).await?;
        }
    }
    let use_proxy = flag(&q, "use_proxy");
    let own = use_proxy.unwrap_or(am.options.proxy);
    if !own && method != Method::HEAD {
        // As the reference: a redirect to the file's URL (presigned S3, or rhizo's own).
        let expires = int(&q, "expires_in", 3600)?.clamp(60, 604_800);
        let local = match param(&q, "use_local_url") {
            Some("true") => Json::Bool(true),
            Some(s) if s.starts_with("http") => Json::String(s.to_owned()),
            _ => Json::Null,
        };
        let url = am
            .object_url(PresignOp::Get, &key, expires, Some(false), &local)
            .await?;
        return Ok(redirect(&url));
    }
    serve_object(
        am.objects.as_ref(),
        &key,
        &path,
        &headers,
        method == Method::HEAD,
    )
    .await
}

pub(super) async fn file_put(
    State(am): State<Am>,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
    body: Body,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let mut artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::PutFile)
        .await?
        .artifact;
    let weight = param(&q, "download_weight")
        .and_then(|w| w.parse::<f64>().ok())
        .unwrap_or(0.0);
    let key = am.stage_upload(&mut artifact, &path, weight).await?;
    let n = store_body(am.objects.as_ref(), &key, &headers, body).await?;
    am.store.update(&artifact, crate::model::now_unix()).await?;
    Ok(AxumJson(json!({"success": true, "message": format!("File {path} uploaded ({n} bytes)."), "size": n})).into_response())
}

/// `GET …/create-zip-file` (§4.3).
pub(super) async fn zip_files(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?
        .artifact;
    let index = ArtifactManager::read_index(&artifact, version_arg(&q).as_ref(), false)?;
    if index < 0 {
        return Err(ArtifactError::invalid("The artifact has no files to zip.").into());
    }
    let dir = objects::version_dir(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
    );
    let selected: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "file")
        .map(|(_, v)| v.clone())
        .collect();
    let mut entries = Vec::new();
    if selected.is_empty() {
        walk(am.objects.as_ref(), &dir, &mut entries).await?;
    } else {
        for path in &selected {
            let key = objects::file_key(
                &ArtifactManager::prefix(&artifact),
                &artifact.id,
                index as u64,
                path,
            )?;
            let info = am
                .objects
                .head(&key)
                .await?
                .ok_or_else(|| ArtifactError::file_not_found(path))?;
            entries.push(ZipEntry {
                name: path.clone(),
                key,
                size: info.size,
            });
        }
    }
    let length = zip::content_length(&entries)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("ValueError: {e}")))?;
    if !flag(&q, "silent").unwrap_or(false) {
        let special = artifact
            .config
            .as_ref()
            .and_then(|c| c.get("download_weights"))
            .and_then(|w| w.get("create-zip-file"))
            .and_then(Json::as_f64);
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let w = special.unwrap_or_else(|| ArtifactManager::weights(&artifact, &names));
        if w > 0.0 {
            am.store.add_downloads(&artifact.id, w).await?;
        }
    }
    let stream = zip::archive(am.objects.clone(), entries)
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("ValueError: {e}")))?;
    let name = artifact
        .alias
        .clone()
        .unwrap_or_else(|| artifact.id.clone());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/zip")
        .header(header::CONTENT_LENGTH, length)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.zip\"", name.replace('"', "")),
        )
        .body(Body::from_stream(stream))
        .map_err(|e| {
            HttpError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("RuntimeError: {e}"),
            )
        })
}

/// Every file under `dir`, recursively, named relative to it.
async fn walk(objects: &dyn ObjectStore, dir: &str, out: &mut Vec<ZipEntry>) -> ArtifactResult<()> {
    const PAGE: u64 = 1000;
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let here = crate::ids::safe_join(dir, &rel)?;
        let mut offset = 0;
        loop {
            let items = objects.list(&here, offset, PAGE).await?;
            let n = items.len() as u64;
            for item in items {
                let join = |name: &str| {
                    if rel.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{rel}/{name}")
                    }
                };
                match item {
                    objects::Entry::File { name, size, .. } => {
                        let name = join(&name);
                        out.push(ZipEntry {
                            key: crate::ids::safe_join(dir, &name)?,
                            name,
                            size,
                        });
                    }
                    objects::Entry::Directory { name } => pending.push(join(&name)),
                }
            }
            if n < PAGE {
                break;
            }
            offset += n;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

pub(super) async fn multipart_start(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let use_local_url = match param(&q, "use_local_url") {
        Some("true") => Some(Json::Bool(true)),
        Some(s) if s.starts_with("http") => Some(Json::String(s.to_owned())),
        _ => None,
    };
    let args = Args::from_pairs(
        "put_file_start_multipart",
        &[
            ("artifact_id", Some(Json::String(url_id(&ws, &alias)))),
            (
                "file_path",
                param(&q, "path").map(|p| Json::String(p.to_owned())),
            ),
            ("part_count", Some(int(&q, "part_count", 0)?.into())),
            (
                "download_weight",
                param(&q, "download_weight")
                    .and_then(|w| w.parse::<f64>().ok())
                    .map(Json::from),
            ),
            ("expires_in", Some(int(&q, "expires_in", 3600)?.into())),
            ("use_proxy", flag(&q, "use_proxy").map(Json::Bool)),
            ("use_local_url", use_local_url),
        ],
    );
    Ok(AxumJson(am.put_file_start_multipart(&ctx, &args).await?).into_response())
}

pub(super) async fn multipart_complete(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
    AxumJson(body): AxumJson<Json>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let args = Args::from_pairs(
        "put_file_complete_multipart",
        &[
            ("artifact_id", Some(Json::String(url_id(&ws, &alias)))),
            ("upload_id", body.get("upload_id").cloned()),
            ("parts", body.get("parts").cloned()),
        ],
    );
    Ok(AxumJson(am.put_file_complete_multipart(&ctx, &args).await?).into_response())
}

pub(super) async fn view_root(
    State(am): State<Am>,
    Path((ws, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    view(am, ws, alias, String::new(), headers, q).await
}

pub(super) async fn view_file(
    State(am): State<Am>,
    Path((ws, alias, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    view(am, ws, alias, path, headers, q).await
}

/// `GET /{ws}/view/{alias}/{path}` (§4.4): a file of the artifact served as a page
/// (needs `get_file`, counts a view). Templates are not rendered (rhizo).
async fn view(
    am: Am,
    ws: String,
    alias: String,
    path: String,
    headers: HeaderMap,
    q: Vec<(String, String)>,
) -> HttpResult {
    let ctx = ctx(&am, &headers, &q, &ws)?;
    let caller = ArtifactManager::caller(&ctx);
    let artifact = am
        .load_for(&url_id(&ws, &alias), &caller, Operation::GetFile)
        .await?
        .artifact;
    let view_config = artifact.config.as_ref().and_then(|c| c.get("view_config"));
    if view_config.and_then(Json::as_str) == Some("disabled") {
        return Err(HttpError(
            StatusCode::NOT_FOUND,
            "KeyError: The view of this artifact is disabled.".into(),
        ));
    }
    let root = view_config
        .and_then(|v| v.get("root_directory"))
        .and_then(Json::as_str)
        .unwrap_or("")
        .trim_matches('/');
    let page = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.clone()
    };
    let file = if root.is_empty() {
        page
    } else {
        format!("{root}/{page}")
    };
    let index = ArtifactManager::read_index(
        &artifact,
        version_arg(&q).as_ref(),
        flag(&q, "stage").unwrap_or(false),
    )?;
    if index < 0 {
        return Err(ArtifactError::file_not_found(&file).into());
    }
    let key = objects::file_key(
        &ArtifactManager::prefix(&artifact),
        &artifact.id,
        index as u64,
        &file,
    )?;
    am.store.add_views(&artifact.id, 1.0).await?;
    serve_object(am.objects.as_ref(), &key, &file, &headers, false).await
}
