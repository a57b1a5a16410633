//! The reading side of [`S3ObjectStore`]: GetObject for [`ObjectStore::get`],
//! [`ObjectStore::get_range`] and [`ObjectStore::get_stream`] (a 416 is an empty result,
//! a server that ignores `Range` is clipped here), and the SDK body as the crate's
//! [`ByteStream`].

use super::{failed, size_of, status, unix, S3ObjectStore};
use crate::error::ArtifactResult;
use crate::objects::{clip, validate_key, ByteStream, ObjectInfo, ObjectStore};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::Bytes;
use futures_util::StreamExt;
use std::ops::Range;

/// What a GetObject found.
enum Fetched {
    /// No object at the key.
    Missing,
    /// The object exists but the range starts at or past its end (S3's 416).
    PastEnd,
    /// The response, body unread.
    Found(Box<GetObjectOutput>),
}

// === impl S3ObjectStore ===

impl S3ObjectStore {
    /// [`ObjectStore::get`]: one GetObject, the body read whole.
    pub(super) async fn get_object(&self, key: &str) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        match self.fetch(key, None).await? {
            Fetched::Missing => Ok(None),
            // Only a ranged request can be past the end.
            Fetched::PastEnd => Ok(Some(Bytes::new())),
            Fetched::Found(out) => Ok(Some(read_body(key, out.body).await?)),
        }
    }

    /// [`ObjectStore::get_range`]: a ranged GetObject, clipped here when the server
    /// ignores `Range`.
    pub(super) async fn get_object_range(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        if range.start >= range.end {
            return Ok(self.head(key).await?.map(|_| Bytes::new()));
        }
        match self.fetch(key, Some(&range)).await? {
            Fetched::Missing => Ok(None),
            Fetched::PastEnd => Ok(Some(Bytes::new())),
            Fetched::Found(out) => {
                let whole = out.content_range.is_none();
                let bytes = read_body(key, out.body).await?;
                // A server that ignores `Range` answers the whole object.
                Ok(Some(if whole { clip(&bytes, range) } else { bytes }))
            }
        }
    }

    /// [`ObjectStore::get_stream`]: a GetObject whose body is streamed (HeadObject for an
    /// empty range).
    pub(super) async fn get_object_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> ArtifactResult<Option<(ObjectInfo, ByteStream)>> {
        validate_key(key)?;
        let empty = |info: Option<ObjectInfo>| {
            info.map(|info| {
                let stream: ByteStream = Box::pin(futures_util::stream::empty());
                (info, stream)
            })
        };
        if let Some(r) = &range {
            if r.start >= r.end {
                return Ok(empty(self.head(key).await?));
            }
        }
        let out = match self.fetch(key, range.as_ref()).await? {
            Fetched::Missing => return Ok(None),
            Fetched::PastEnd => return Ok(empty(self.head(key).await?)),
            Fetched::Found(out) => out,
        };
        let last_modified = unix(out.last_modified.as_ref());
        let (size, body) = match (range, out.content_range.as_deref()) {
            (None, _) => (size_of(out.content_length), body_stream(out.body)),
            (Some(_), Some(content_range)) => {
                let size = match total_of(content_range) {
                    Some(size) => size,
                    // `bytes a-b/*`: ask for the size.
                    None => match self.head(key).await? {
                        Some(info) => info.size,
                        None => return Ok(None),
                    },
                };
                (size, body_stream(out.body))
            }
            // A server that ignores `Range` answers the whole object: cut it here.
            (Some(range), None) => (
                size_of(out.content_length),
                clip_stream(body_stream(out.body), range),
            ),
        };
        let info = ObjectInfo {
            size,
            last_modified,
        };
        Ok(Some((info, body)))
    }

    /// GetObject of `key`, with `Range: bytes=start-(end-1)` when `range` is given
    /// (callers pass only non-empty ranges).
    async fn fetch(&self, key: &str, range: Option<&Range<u64>>) -> ArtifactResult<Fetched> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(range) = range {
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        match request.send().await {
            Ok(out) => Ok(Fetched::Found(Box::new(out))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Ok(Fetched::Missing)
            }
            Err(e) => match status(&e) {
                Some(404) => Ok(Fetched::Missing),
                Some(416) => Ok(Fetched::PastEnd),
                _ => Err(failed("GetObject", key, e)),
            },
        }
    }
}

/// The whole of a response body.
async fn read_body(key: &str, body: SdkByteStream) -> ArtifactResult<Bytes> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(|e| failed("GetObject", key, e))
}

/// The SDK's streamed body as the crate's [`ByteStream`], chunk by chunk; it ends after
/// the first error.
fn body_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        Some(body),
        |body| async move {
            let mut body = body?;
            match body.next().await? {
                Ok(chunk) => Some((Ok(chunk), Some(body))),
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        },
    ))
}

/// Only the bytes `range` of the whole-object stream `body`; it ends once past
/// `range.end`, or after the first error.
pub(super) fn clip_stream(body: ByteStream, range: Range<u64>) -> ByteStream {
    let state = (body, 0u64, range);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut body, mut at, range)| async move {
            loop {
                if at >= range.end {
                    return None;
                }
                match body.next().await? {
                    Err(e) => return Some((Err(e), (body, u64::MAX, range))),
                    Ok(chunk) => {
                        let len = chunk.len() as u64;
                        let start = range.start.saturating_sub(at).min(len);
                        let end = range.end.saturating_sub(at).clamp(start, len);
                        at += len;
                        if start < end {
                            // Both bounds are at most the chunk's length.
                            let part = chunk.slice(start as usize..end as usize);
                            return Some((Ok(part), (body, at, range)));
                        }
                    }
                }
            }
        },
    ))
}

/// The whole object's size from a `Content-Range: bytes a-b/total` answer.
pub(super) fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}
