//! The writing side of [`S3ObjectStore`] beyond a single PutObject:
//! [`ObjectStore::put_stream`]'s buffering and its multipart upload (aborted on failure,
//! and by [`PendingUpload`]'s drop when the future is dropped midway; size rule in the
//! `s3` module docs), and the native multipart uploads clients drive through
//! [`ObjectStore::multipart_start`], [`ObjectStore::presign_part`] and
//! [`ObjectStore::multipart_complete`].

use super::{failed, S3ObjectStore};
use crate::error::{ArtifactError, ArtifactResult};
use crate::objects::{validate_key, ByteStream, ObjectStore, UploadedPart};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::task::{JoinError, JoinSet};

/// The part a finished upload task gives, or why it failed.
fn joined(
    next: Option<Result<ArtifactResult<CompletedPart>, JoinError>>,
    key: &str,
) -> ArtifactResult<CompletedPart> {
    match next {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(ArtifactError::ObjectStore(format!("UploadPart {key}: {e}"))),
        None => Err(ArtifactError::ObjectStore(format!(
            "UploadPart {key}: no part upload was running"
        ))),
    }
}

/// The part size of [`ObjectStore::put_stream`]'s multipart uploads, and the largest
/// body it stores with a single PutObject: 8 MiB (S3 wants at least 5 MiB for every
/// part but the last).
const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// The largest object one PutObject may store: 5 GiB.
const MAX_SINGLE_PUT: u64 = 5 << 30;

/// The smallest piece [`S3ObjectStore::put_object_sized`] writes to S3: an upload arrives in
/// chunks of a few KiB, and fewer, larger writes cost the S3 server less per byte.
const COALESCE_BYTES: usize = 512 * 1024;

/// `body` regrouped into pieces of at least `min` bytes (the last may be shorter); an
/// error item is passed on after what was gathered before it.
fn coalesce(body: ByteStream, min: usize) -> ByteStream {
    let state = (body, BytesMut::new(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut body, mut buf, mut done)| async move {
            if done {
                return None;
            }
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        if buf.is_empty() && chunk.len() >= min {
                            return Some((Ok(chunk), (body, buf, done)));
                        }
                        buf.extend_from_slice(&chunk);
                        if buf.len() >= min {
                            let piece = buf.split().freeze();
                            return Some((Ok(piece), (body, buf, done)));
                        }
                    }
                    Some(Err(e)) => {
                        done = true;
                        return Some((Err(e), (body, buf, done)));
                    }
                    None => {
                        done = true;
                        if buf.is_empty() {
                            return None;
                        }
                        let piece = buf.split().freeze();
                        return Some((Ok(piece), (body, buf, done)));
                    }
                }
            }
        },
    ))
}

/// A [`ByteStream`] as an HTTP body for the SDK, which wants `Sync` bodies; the mutex is
/// never locked (polling has `&mut` access).
struct StreamedBody(std::sync::Mutex<ByteStream>);

impl http_body::Body for StreamedBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let stream = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stream
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}

/// How many parts of one [`ObjectStore::put_stream`] are uploaded at once.
const PARTS_IN_FLIGHT: usize = 3;

/// The most parts one S3 multipart upload may have.
const MAX_PARTS: u32 = 10_000;

/// A native multipart upload [`S3ObjectStore::put_stream`] has started but not yet
/// completed: aborted on drop unless disarmed, so a dropped future leaves no upload.
struct PendingUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    /// Whether dropping it still has to abort the upload.
    armed: bool,
}

// === impl S3ObjectStore ===

impl S3ObjectStore {
    /// [`ObjectStore::put_stream`]: one PutObject for a body that ends within
    /// [`STREAM_PART_SIZE`], else a multipart upload (module docs of `s3`).
    pub(super) async fn put_object_stream(
        &self,
        key: &str,
        mut body: ByteStream,
    ) -> ArtifactResult<u64> {
        validate_key(key)?;
        let mut buf = BytesMut::new();
        let ended = fill(&mut buf, &mut body, key).await?;
        if ended {
            let n = buf.len() as u64;
            self.put(key, buf.freeze()).await?;
            return Ok(n);
        }
        let mut upload = self.start_upload(key).await?;
        let result = self
            .put_multipart(key, &upload, buf, false, &mut body)
            .await;
        if result.is_err() {
            upload.abort().await;
        }
        upload.armed = false;
        result
    }

    /// [`ObjectStore::put_stream_len`]: a body of known length up to 5 GiB (S3's limit of
    /// one PutObject) goes on as one PutObject whose body is streamed as it arrives, so
    /// nothing is buffered; S3 stores nothing unless all `len` bytes arrive. Longer bodies
    /// take the multipart path of `put_stream`.
    pub(super) async fn put_object_sized(
        &self,
        key: &str,
        body: ByteStream,
        len: u64,
    ) -> ArtifactResult<u64> {
        validate_key(key)?;
        if len > MAX_SINGLE_PUT {
            return self.put_object_stream(key, body).await;
        }
        let body = coalesce(crate::objects::exact_length(body, len), COALESCE_BYTES);
        let body = SdkByteStream::from_body_1_x(StreamedBody(std::sync::Mutex::new(body)));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| failed("PutObject", key, e))?;
        Ok(len)
    }

    /// The part of [`ObjectStore::put_stream`] after the first buffer overflowed
    /// [`STREAM_PART_SIZE`]: the multipart upload, which `upload` aborts if dropped.
    async fn put_multipart(
        &self,
        key: &str,
        upload: &PendingUpload,
        mut buf: BytesMut,
        mut ended: bool,
        body: &mut ByteStream,
    ) -> ArtifactResult<u64> {
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut number = 0u32;
        // Parts go up in tasks of their own while the body is read on, at most
        // PARTS_IN_FLIGHT at once (memory: that many parts plus the one being filled).
        // Dropping the set aborts them; the guard then aborts the upload.
        let mut inflight: JoinSet<ArtifactResult<CompletedPart>> = JoinSet::new();
        loop {
            // Send every whole part; at the end, the rest (which may be a short part).
            while buf.len() > STREAM_PART_SIZE || (ended && !buf.is_empty()) {
                let n = buf.len().min(STREAM_PART_SIZE);
                let part = buf.split_to(n).freeze();
                number += 1;
                if number > MAX_PARTS {
                    return Err(ArtifactError::ObjectStore(format!(
                        "UploadPart {key}: the body is longer than {MAX_PARTS} parts of \
                         {STREAM_PART_SIZE} bytes"
                    )));
                }
                if inflight.len() >= PARTS_IN_FLIGHT {
                    parts.push(joined(inflight.join_next().await, key)?);
                }
                let (client, bucket, key, upload_id) = (
                    self.client.clone(),
                    self.bucket.clone(),
                    key.to_owned(),
                    upload.upload_id.clone(),
                );
                inflight.spawn(async move {
                    let out = client
                        .upload_part()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(&upload_id)
                        .part_number(number as i32)
                        .content_length(n as i64)
                        .body(SdkByteStream::from(part))
                        .send()
                        .await
                        .map_err(|e| failed("UploadPart", &key, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number as i32)
                        .set_e_tag(out.e_tag)
                        .build())
                });
                total += n as u64;
            }
            if ended {
                break;
            }
            ended = fill(&mut buf, body, key).await?;
        }
        while !inflight.is_empty() {
            parts.push(joined(inflight.join_next().await, key)?);
        }
        parts.sort_by_key(|p| p.part_number);
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", key, e))?;
        Ok(total)
    }

    /// CreateMultipartUpload for [`ObjectStore::put_stream`], run in a task of its own so
    /// that an upload S3 creates is aborted even when this future is dropped before the
    /// answer arrives; from the answer on, the returned guard does that.
    async fn start_upload(&self, key: &str) -> ArtifactResult<PendingUpload> {
        let (client, bucket, owned_key) =
            (self.client.clone(), self.bucket.clone(), key.to_owned());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = client
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&owned_key)
                .send()
                .await;
            let answer = match result {
                Ok(out) => out.upload_id.ok_or_else(|| {
                    ArtifactError::ObjectStore(format!(
                        "CreateMultipartUpload {owned_key}: the answer has no upload id"
                    ))
                }),
                Err(e) => Err(failed("CreateMultipartUpload", &owned_key, e)),
            };
            // Nobody waits any more: the upload must not outlive the call.
            if let Err(Ok(upload_id)) = tx.send(answer) {
                abort_upload(&client, &bucket, &owned_key, &upload_id).await;
            }
        });
        let upload_id = rx.await.map_err(|_| {
            ArtifactError::ObjectStore(format!(
                "CreateMultipartUpload {key}: the request's task ended without an answer"
            ))
        })??;
        Ok(PendingUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id,
            armed: true,
        })
    }

    /// [`ObjectStore::multipart_start`]: CreateMultipartUpload for a client.
    pub(super) async fn start_client_upload(&self, key: &str) -> ArtifactResult<Option<String>> {
        validate_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", key, e))?;
        match out.upload_id {
            Some(id) => Ok(Some(id)),
            None => Err(ArtifactError::ObjectStore(format!(
                "CreateMultipartUpload {key}: the answer has no upload id"
            ))),
        }
    }

    /// [`ObjectStore::presign_part`]: a presigned UploadPart.
    pub(super) async fn presign_client_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        expires: Duration,
    ) -> ArtifactResult<String> {
        validate_key(key)?;
        if upload_id.is_empty() {
            return Err(ArtifactError::invalid("The upload id must not be empty."));
        }
        if !(1..=MAX_PARTS).contains(&part_number) {
            return Err(ArtifactError::invalid(format!(
                "Invalid part number {part_number}: it must be between 1 and {MAX_PARTS}."
            )));
        }
        let config = Self::presigning(expires)?;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number as i32)
            .presigned(config)
            .await
            .map_err(|e| failed("presign UploadPart", key, e))?;
        Ok(request.uri().to_owned())
    }

    /// [`ObjectStore::multipart_complete`]: CompleteMultipartUpload of the parts in
    /// number order; what S3 refuses is the client's doing.
    pub(super) async fn complete_client_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> ArtifactResult<()> {
        validate_key(key)?;
        if upload_id.is_empty() {
            return Err(ArtifactError::invalid("The upload id must not be empty."));
        }
        if parts.is_empty() {
            return Err(ArtifactError::invalid(
                "A multipart upload needs at least one part.",
            ));
        }
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.part_number);
        let mut completed = Vec::with_capacity(parts.len());
        for part in &parts {
            let number = i32::try_from(part.part_number).map_err(|_| {
                ArtifactError::invalid(format!("Invalid part number {}.", part.part_number))
            })?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(&part.etag)
                    .build(),
            );
        }
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // S3 answered: a missing upload, a missing part, a wrong ETag, a part too
            // small. All of them are the client's doing.
            Err(SdkError::ServiceError(e)) => {
                let e = e.err();
                let reason = e.message().or(e.code()).unwrap_or("the upload was refused");
                Err(ArtifactError::invalid(format!(
                    "Cannot complete the multipart upload of '{key}': {reason}"
                )))
            }
            Err(e) => Err(failed("CompleteMultipartUpload", key, e)),
        }
    }
}

// === impl PendingUpload ===

impl PendingUpload {
    /// AbortMultipartUpload now, then disarm; a failure is logged (a lifecycle rule is
    /// the backstop).
    async fn abort(&mut self) {
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
        // Disarmed only now: if this future is dropped mid-abort, the drop aborts again.
        self.armed = false;
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
            }
            Err(_) => tracing::warn!(
                %key,
                %upload_id,
                "a dropped upload cannot be aborted outside a tokio runtime"
            ),
        }
    }
}

/// AbortMultipartUpload of `upload_id`, logging a failure.
async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let result = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(
            %key,
            %upload_id,
            error = %DisplayErrorContext(&e),
            "cannot abort a multipart upload"
        );
    }
}

/// Reads `body` into `buf` until `buf` holds more than [`STREAM_PART_SIZE`] bytes or the
/// body ends; returns whether it ended.
async fn fill(buf: &mut BytesMut, body: &mut ByteStream, key: &str) -> ArtifactResult<bool> {
    while buf.len() <= STREAM_PART_SIZE {
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(ArtifactError::ObjectStore(format!("upload of {key}: {e}")));
            }
            None => return Ok(true),
        }
    }
    Ok(false)
}
