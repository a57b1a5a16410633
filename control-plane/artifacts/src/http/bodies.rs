//! Bodies in and out: streaming an object with `Range` and `HEAD` (§4.2 "use_proxy"),
//! storing an upload's body, and the signed object URLs `/s3/{key}` rhizo serves itself
//! ([`crate::signing`]).

use super::*;

pub(super) fn redirect(url: &str) -> Response {
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A requested byte range (`Range: bytes=…`), resolved against `size`.
enum Wanted {
    All,
    Part(Range<u64>),
    Unsatisfiable,
}

fn parse_range(headers: &HeaderMap, size: u64) -> Wanted {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::All;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Wanted::All;
    };
    // One range only; a list of ranges is answered whole.
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Ok(start), Err(_)) if b.is_empty() => start..size,
        (Err(_), Ok(n)) if a.is_empty() => size.saturating_sub(n)..size,
        _ => return Wanted::All,
    };
    if range.start >= size || range.is_empty() {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(range)
    }
}

/// Streams the object at `key` (200, or 206 for a Range; 416 past its end; 404 when
/// missing); headers only for HEAD.
pub(super) async fn serve_object(
    objects: &dyn ObjectStore,
    key: &str,
    name: &str,
    headers: &HeaderMap,
    head: bool,
) -> HttpResult {
    let Some(info) = objects.head(key).await? else {
        return Err(ArtifactError::file_not_found(name).into());
    };
    let wanted = parse_range(headers, info.size);
    let (status, range) = match wanted {
        Wanted::All => (StatusCode::OK, 0..info.size),
        Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        Wanted::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, range.end - range.start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, content_type(name))
        .header(
            header::ETAG,
            format!("\"{:x}-{:x}\"", info.size, info.last_modified.to_bits()),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", range.start, range.end - 1, info.size),
        );
    }
    let body = if head {
        Body::empty()
    } else {
        let Some((_, stream)) = objects.get_stream(key, Some(range)).await? else {
            return Err(ArtifactError::file_not_found(name).into());
        };
        Body::from_stream(stream)
    };
    builder.body(body).map_err(|e| {
        HttpError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("RuntimeError: {e}"),
        )
    })
}

/// A content type from the file name's extension.
fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" | "py" | "csv" | "yaml" | "yml" => "text/plain; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A request body as the object store's stream.
fn body_stream(body: Body) -> objects::ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
}

/// Stores an upload's body at `key`, streamed: with its `Content-Length` as one sized put
/// (S3: one streamed PutObject), without it in parts.
pub(super) async fn store_body(
    objects: &dyn ObjectStore,
    key: &str,
    headers: &HeaderMap,
    body: Body,
) -> ArtifactResult<u64> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(len) => objects.put_stream_len(key, body_stream(body), len).await,
        None => objects.put_stream(key, body_stream(body)).await,
    }
}

/// Bytes of a refused upload's body read before answering (see [`object_put`]).
const REFUSED_BODY_DRAIN: usize = 1 << 20;

/// Checks the signature of a request to `/s3/{key}` for `op`.
fn check_signature(
    am: &ArtifactManager,
    q: &[(String, String)],
    key: &str,
    op: PresignOp,
) -> Result<(), HttpError> {
    let forbidden = |why: &str| HttpError(StatusCode::FORBIDDEN, format!("PermissionError: {why}"));
    let method = param(q, "method").unwrap_or_default();
    if method != crate::signing::method_name(op) {
        return Err(forbidden("the URL does not allow this method"));
    }
    let expires: i64 = param(q, "expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| forbidden("the URL has no valid expiry"))?;
    let signature = param(q, "signature").unwrap_or_default();
    am.signer()?
        .verify(op, key, expires, signature, crate::model::now_unix())
        .map_err(|e| match e {
            SignatureError::Invalid => forbidden("the URL signature is not valid"),
            SignatureError::Expired => forbidden("the URL has expired"),
        })
}

pub(super) async fn object_get(
    State(am): State<Am>,
    method: Method,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> HttpResult {
    check_signature(&am, &q, &key, PresignOp::Get)?;
    let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
    serve_object(
        am.objects.as_ref(),
        &key,
        &name,
        &headers,
        method == Method::HEAD,
    )
    .await
}

pub(super) async fn object_put(
    State(am): State<Am>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
    body: Body,
) -> HttpResult {
    if let Err(refused) = check_signature(&am, &q, &key, PresignOp::Put) {
        // Read (a bounded part of) the body before refusing: a request body left unread
        // makes the server drop the keep-alive connection, and a client that reuses it
        // for its next request sees "server disconnected" instead of an answer.
        let _ = axum::body::to_bytes(body, REFUSED_BODY_DRAIN).await;
        return Err(refused);
    }
    let n = store_body(am.objects.as_ref(), &key, &headers, body).await?;
    let etag = am.signer()?.etag(&key, n);
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Option<Range<u64>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        match parse_range(&h, size) {
            Wanted::Part(r) => Some(r),
            Wanted::All => None,
            Wanted::Unsatisfiable => Some(0..0),
        }
    }

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(range("bytes=0-4", 10), Some(0..5));
        assert_eq!(range("bytes=5-", 10), Some(5..10));
        assert_eq!(range("bytes=-3", 10), Some(7..10));
        assert_eq!(range("bytes=8-100", 10), Some(8..10));
        assert_eq!(range("bytes=10-", 10), Some(0..0));
        assert_eq!(range("bytes=0-1,3-4", 10), None);
        assert_eq!(range("items=0-1", 10), None);
    }
}
