//! [`S3ObjectStore`]: the [`ObjectStore`] on an S3-compatible service (AWS S3, MinIO,
//! moto…) through aws-sdk-s3 (spec artifacts.md §1.7, §5.1). One bucket holds every key;
//! [`S3ObjectStore::ensure_bucket`] creates it at start-up with the CORS rule of §5.1.
//!
//! **What maps to what.**
//!
//! | method | S3 operations |
//! |---|---|
//! | [`put`](ObjectStore::put) | PutObject |
//! | [`get`](ObjectStore::get), [`get_range`](ObjectStore::get_range) | GetObject (`Range: bytes=a-b`; a 416 is an empty result) |
//! | [`head`](ObjectStore::head) | HeadObject |
//! | [`delete`](ObjectStore::delete) | DeleteObject |
//! | [`delete_prefix`](ObjectStore::delete_prefix) | ListObjectsV2 (no delimiter) + DeleteObjects (Quiet, one per page of ≤ 1000) |
//! | [`copy`](ObjectStore::copy) | CopyObject (`MetadataDirective: REPLACE` onto itself) |
//! | [`list`](ObjectStore::list) | ListObjectsV2 (`Delimiter: /`, continuation tokens) |
//! | [`count_files`](ObjectStore::count_files) | ListObjectsV2 (no delimiter) |
//! | [`put_stream`](ObjectStore::put_stream) | PutObject, or CreateMultipartUpload + UploadPart + CompleteMultipartUpload (AbortMultipartUpload on failure) |
//! | [`get_stream`](ObjectStore::get_stream) | GetObject, streamed (HeadObject for an empty range) |
//! | [`presign`](ObjectStore::presign) | presigned GetObject / PutObject |
//! | [`multipart_start`](ObjectStore::multipart_start) | CreateMultipartUpload |
//! | [`presign_part`](ObjectStore::presign_part) | presigned UploadPart |
//! | [`multipart_complete`](ObjectStore::multipart_complete) | CompleteMultipartUpload |
//!
//! Prefixes keep the trait's directory semantics: `v1` is listed, counted and deleted as
//! the S3 prefix `v1/`, so `v10/...` and `v1.json` never match; `""` is the whole bucket.
//!
//! **Addressing.** Always path-style (`{endpoint}/{bucket}/{key}`), so presigned URLs
//! keep their SigV4 signature when the `/s3` proxy of §5.3 swaps the scheme and host.
//! URLs are SigV4 query-string presigned against the configured (internal) endpoint; §5.2
//! and §5.3 decide what a caller sees. The client uses the static credentials it is given
//! (no environment, profile or instance-metadata lookup), connect timeout 60 s and read
//! timeout 300 s (§5.1), and computes request checksums only where S3 requires them
//! (DeleteObjects), which keeps presigned URLs free of checksum parameters and works
//! with S3-compatible servers that predate the checksum headers.
//!
//! **put_stream's size rule.** The body is read into a buffer of at most
//! `STREAM_PART_SIZE` (8 MiB) plus one chunk. A body that ends within 8 MiB is one
//! PutObject. A longer one becomes a native multipart upload of 8 MiB parts (the last one
//! shorter), so at most 10,000 × 8 MiB (80,000 MiB) can be streamed; the object appears
//! only at CompleteMultipartUpload. When the body errs or S3 fails, the upload is aborted
//! (AbortMultipartUpload) before the error is returned; when the future is dropped
//! midway, the abort is spawned on the current tokio runtime (CreateMultipartUpload runs
//! in a task of its own, so even a drop before its answer aborts the upload it made).
//! Either way no half object is ever visible and an object already at the key stays.
//!
//! **Not done.** The per-artifact S3 secrets of §1.4 (their own endpoint, keys, bucket
//! and prefix) are not used: one store serves one bucket with one set of keys. Abandoned
//! client multipart uploads ([`ObjectStore::multipart_start`] never completed) are not
//! swept with AbortMultipartUpload; as upstream, a bucket lifecycle rule has to remove
//! them. CopyObject is a single request, so [`ObjectStore::copy`] of an object over
//! 5 GiB fails (no UploadPartCopy).

use super::{
    clip, page, validate_key, validate_prefix, ByteStream, Entry, ObjectInfo, ObjectStore,
    PresignOp, UploadedPart,
};
use crate::error::{ArtifactError, ArtifactResult};
use async_trait::async_trait;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CorsConfiguration, CorsRule,
    CreateBucketConfiguration, Delete, MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

/// The part size of [`ObjectStore::put_stream`]'s multipart uploads, and the largest
/// body it stores with a single PutObject: 8 MiB (S3 wants at least 5 MiB for every
/// part but the last).
const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// The most parts one S3 multipart upload may have.
const MAX_PARTS: u32 = 10_000;

/// How many keys one ListObjectsV2 page and one DeleteObjects request carry at most.
const PAGE_KEYS: i32 = 1000;

/// Connect timeout of the S3 client (§5.1 "Client settings").
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Read timeout of the S3 client (§5.1 "Client settings").
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and as whom [`S3ObjectStore`] reaches S3 (§5.2 "Default": the global
/// `--endpoint-url`, keys, region and bucket). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The service's base URL, `http://` or `https://` with host and optional port (and
    /// path), e.g. `http://127.0.0.1:9000`; keys are addressed path-style under it.
    pub endpoint_url: String,
    /// The access key id of the static credentials (SigV4).
    pub access_key_id: String,
    /// The secret access key of the static credentials; never printed.
    pub secret_access_key: String,
    /// The signing region, e.g. `us-east-1`; also the location constraint
    /// [`S3ObjectStore::ensure_bucket`] sends outside `us-east-1`.
    pub region: String,
    /// The bucket holding every key (upstream `--workspace-bucket`, default
    /// `hypha-workspaces`; §1.7).
    pub bucket: String,
}

/// An [`ObjectStore`] on one bucket of an S3-compatible service (module docs). Cheap to
/// share as `Arc<dyn ObjectStore>`; `Debug` hides the secret.
#[derive(Clone)]
pub struct S3ObjectStore {
    /// The SDK client: static credentials, path-style, the configured endpoint.
    client: Client,
    /// Where it points, for `Debug` and error texts; the secret is not kept here.
    endpoint_url: String,
    /// The bucket of every key.
    bucket: String,
}

/// What a GetObject found.
enum Fetched {
    /// No object at the key.
    Missing,
    /// The object exists but the range starts at or past its end (S3's 416).
    PastEnd,
    /// The response, body unread.
    Found(Box<GetObjectOutput>),
}

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

// === impl S3Config ===

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .finish()
    }
}

// === impl S3ObjectStore ===

impl fmt::Debug for S3ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3ObjectStore")
            .field("endpoint_url", &self.endpoint_url)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3ObjectStore {
    /// A store on `config.bucket`: builds the SDK client with the static credentials,
    /// the endpoint and region, path-style addressing and the timeouts of §5.1. Nothing
    /// is sent to S3 yet (see [`S3ObjectStore::ensure_bucket`]), and no environment
    /// variable, profile or metadata service is consulted.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when the endpoint is not an `http(s)://` URL
    /// or the region, bucket or a key is empty.
    pub async fn connect(config: S3Config) -> ArtifactResult<Self> {
        let S3Config {
            endpoint_url,
            access_key_id,
            secret_access_key,
            region,
            bucket,
        } = config;
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| endpoint_url.len() > s.len() && endpoint_url.starts_with(s));
        if !scheme_ok {
            return Err(ArtifactError::invalid(format!(
                "Invalid S3 endpoint URL '{endpoint_url}': it must start with http:// or https://."
            )));
        }
        for (what, value) in [
            ("region", &region),
            ("bucket", &bucket),
            ("access key id", &access_key_id),
            ("secret access key", &secret_access_key),
        ] {
            if value.is_empty() {
                return Err(ArtifactError::invalid(format!(
                    "Invalid S3 configuration: the {what} must not be empty."
                )));
            }
        }
        let credentials = Credentials::new(access_key_id, secret_access_key, None, None, "rhizo");
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build();
        let sdk_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(credentials)
            .region(Region::new(region))
            .endpoint_url(endpoint_url.clone())
            .force_path_style(true)
            .timeout_config(timeouts)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            client: Client::from_conf(sdk_config),
            endpoint_url,
            bucket,
        })
    }

    /// Creates the bucket if needed and sets its CORS rule (§5.1 "Bucket management"):
    /// CreateBucket, where "BucketAlreadyOwnedByYou" and "BucketAlreadyExists" count as
    /// success, and any other refusal is forgiven when HeadBucket finds the bucket
    /// reachable; then PutBucketCors allowing every origin and header, the methods GET,
    /// HEAD, PUT, POST and DELETE, and exposing Accept-Ranges, Content-Length,
    /// Content-Range and ETag (browsers read a part's ETag for multipart uploads). A CORS
    /// failure (some S3-compatible servers have no CORS API) is only logged as a warning.
    ///
    /// # Errors
    /// [`ArtifactError::ObjectStore`] when the bucket can be neither created nor reached.
    pub async fn ensure_bucket(&self) -> ArtifactResult<()> {
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                }) => {}
            Err(e) => {
                if self
                    .client
                    .head_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .is_err()
                {
                    return Err(failed("CreateBucket", &self.bucket, e));
                }
                tracing::debug!(
                    bucket = %self.bucket,
                    error = %DisplayErrorContext(&e),
                    "CreateBucket refused, but the bucket is reachable"
                );
            }
        }
        if let Err(e) = self.put_cors().await {
            tracing::warn!(bucket = %self.bucket, error = %e, "cannot set the bucket's CORS rule");
        }
        Ok(())
    }

    /// The bucket this store keeps its objects in.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// PutBucketCors with the rule of [`S3ObjectStore::ensure_bucket`].
    async fn put_cors(&self) -> ArtifactResult<()> {
        let build = |e| failed("PutBucketCors", &self.bucket, e);
        let mut rule = CorsRule::builder()
            .allowed_origins("*")
            .allowed_headers("*");
        for method in ["GET", "HEAD", "PUT", "POST", "DELETE"] {
            rule = rule.allowed_methods(method);
        }
        for header in ["Accept-Ranges", "Content-Length", "Content-Range", "ETag"] {
            rule = rule.expose_headers(header);
        }
        let cors = CorsConfiguration::builder()
            .cors_rules(rule.build().map_err(build)?)
            .build()
            .map_err(build)?;
        self.client
            .put_bucket_cors()
            .bucket(&self.bucket)
            .cors_configuration(cors)
            .send()
            .await
            .map_err(|e| failed("PutBucketCors", &self.bucket, e))?;
        Ok(())
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

    /// One ListObjectsV2 page of the keys under `prefix` (an S3 prefix, already with its
    /// trailing `/`), with the `/` delimiter when `delimited`.
    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<String>,
    ) -> ArtifactResult<ListObjectsV2Output> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(PAGE_KEYS)
            .set_continuation_token(token);
        if !prefix.is_empty() {
            request = request.prefix(prefix);
        }
        if delimited {
            request = request.delimiter("/");
        }
        request
            .send()
            .await
            .map_err(|e| failed("ListObjectsV2", prefix, e))
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
        loop {
            // Send every whole part; at the end, the rest (which may be a short part).
            while buf.len() > STREAM_PART_SIZE || (ended && !buf.is_empty()) {
                let n = buf.len().min(STREAM_PART_SIZE);
                let part = buf.split_to(n).freeze();
                let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
                if number > MAX_PARTS {
                    return Err(ArtifactError::ObjectStore(format!(
                        "UploadPart {key}: the body is longer than {MAX_PARTS} parts of \
                         {STREAM_PART_SIZE} bytes"
                    )));
                }
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload.upload_id)
                    .part_number(number as i32)
                    .content_length(n as i64)
                    .body(SdkByteStream::from(part))
                    .send()
                    .await
                    .map_err(|e| failed("UploadPart", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number as i32)
                        .set_e_tag(out.e_tag)
                        .build(),
                );
                total += n as u64;
            }
            if ended {
                break;
            }
            ended = fill(&mut buf, body, key).await?;
        }
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

    /// A presigning config valid for `expires`.
    fn presigning(expires: Duration) -> ArtifactResult<PresigningConfig> {
        PresigningConfig::expires_in(expires).map_err(|e| {
            ArtifactError::invalid(format!(
                "Invalid expiry for a presigned URL ({} s): {e}",
                expires.as_secs()
            ))
        })
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> ArtifactResult<()> {
        validate_key(key)?;
        let len = bytes.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .body(SdkByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| failed("PutObject", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> ArtifactResult<Option<Bytes>> {
        validate_key(key)?;
        match self.fetch(key, None).await? {
            Fetched::Missing => Ok(None),
            // Only a ranged request can be past the end.
            Fetched::PastEnd => Ok(Some(Bytes::new())),
            Fetched::Found(out) => Ok(Some(read_body(key, out.body).await?)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> ArtifactResult<Option<Bytes>> {
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

    async fn head(&self, key: &str) -> ArtifactResult<Option<ObjectInfo>> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: size_of(out.content_length),
                last_modified: unix(out.last_modified.as_ref()),
            })),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status(&e) == Some(404) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed("HeadObject", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> ArtifactResult<()> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(failed("DeleteObject", key, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let s3_prefix = dir_prefix(prefix);
        let mut deleted = 0u64;
        let mut token = None;
        loop {
            let out = self.list_page(&s3_prefix, false, token).await?;
            let ids = out
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed("DeleteObjects", &s3_prefix, e))?;
            if !ids.is_empty() {
                let n = ids.len() as u64;
                let batch = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| failed("DeleteObjects", &s3_prefix, e))?;
                let result = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(batch)
                    .send()
                    .await
                    .map_err(|e| failed("DeleteObjects", &s3_prefix, e))?;
                if let Some(err) = result.errors().first() {
                    return Err(ArtifactError::ObjectStore(format!(
                        "DeleteObjects {s3_prefix}: {} of {n} keys not deleted, first {}: {} {}",
                        result.errors().len(),
                        err.key().unwrap_or("?"),
                        err.code().unwrap_or("?"),
                        err.message().unwrap_or(""),
                    )));
                }
                deleted += n;
            }
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        Ok(deleted)
    }

    async fn copy(&self, from: &str, to: &str) -> ArtifactResult<()> {
        validate_key(from)?;
        validate_key(to)?;
        let mut request = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{}", self.bucket, encode_key(from)));
        if from == to {
            // S3 refuses a copy onto itself that changes nothing.
            request = request.metadata_directive(MetadataDirective::Replace);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchKey") || status(&e) == Some(404) => Err(
                ArtifactError::NotFound(format!("Object '{from}' does not exist.")),
            ),
            Err(e) => Err(failed("CopyObject", &format!("{from} -> {to}"), e)),
        }
    }

    async fn list(&self, dir: &str, offset: u64, limit: u64) -> ArtifactResult<Vec<Entry>> {
        validate_prefix(dir)?;
        let s3_prefix = dir_prefix(dir);
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let mut token = None;
        loop {
            let out = self.list_page(&s3_prefix, true, token).await?;
            for object in out.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(&s3_prefix)) else {
                    continue;
                };
                // A zero-byte "folder" marker `dir/` is not a file of the directory.
                if name.is_empty() {
                    continue;
                }
                files.push((
                    name.to_owned(),
                    size_of(object.size),
                    unix(object.last_modified.as_ref()),
                ));
            }
            for common in out.common_prefixes() {
                let name = common
                    .prefix()
                    .and_then(|p| p.strip_prefix(&s3_prefix))
                    .map(|p| p.trim_end_matches('/'));
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    dirs.push(name.to_owned());
                }
            }
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        Ok(page(files, dirs, offset, limit))
    }

    async fn count_files(&self, prefix: &str, exclude_suffix: Option<&str>) -> ArtifactResult<u64> {
        validate_prefix(prefix)?;
        let s3_prefix = dir_prefix(prefix);
        let mut n = 0u64;
        let mut token = None;
        loop {
            let out = self.list_page(&s3_prefix, false, token).await?;
            n += out
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| exclude_suffix.is_none_or(|s| !k.ends_with(s)))
                .count() as u64;
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        Ok(n)
    }

    async fn put_stream(&self, key: &str, mut body: ByteStream) -> ArtifactResult<u64> {
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

    async fn get_stream(
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

    async fn presign(
        &self,
        op: PresignOp,
        key: &str,
        expires: Duration,
    ) -> ArtifactResult<Option<String>> {
        validate_key(key)?;
        let config = Self::presigning(expires)?;
        let request = match op {
            PresignOp::Get => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| failed("presign GetObject", key, e))?,
            PresignOp::Put => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| failed("presign PutObject", key, e))?,
        };
        Ok(Some(request.uri().to_owned()))
    }

    async fn multipart_start(&self, key: &str) -> ArtifactResult<Option<String>> {
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

    async fn presign_part(
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

    async fn multipart_complete(
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
fn clip_stream(body: ByteStream, range: Range<u64>) -> ByteStream {
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

/// The S3 prefix of a directory-semantics prefix: `prefix/`, or `""` for the whole bucket.
fn dir_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// `key` percent-encoded for `x-amz-copy-source`: everything but unreserved characters
/// and `/` is escaped.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The whole object's size from a `Content-Range: bytes a-b/total` answer.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

/// An S3 length (never negative) as `u64`.
fn size_of(length: Option<i64>) -> u64 {
    length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// S3's `LastModified` as unix seconds (0 when missing, which S3 never leaves out).
fn unix(time: Option<&DateTime>) -> f64 {
    time.map_or(0.0, DateTime::as_secs_f64)
}

/// The HTTP status S3 answered with, if it answered.
fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// [`ArtifactError::ObjectStore`]: "`op` `what`: the error with its causes".
fn failed<E: std::error::Error + 'static>(op: &str, what: &str, e: E) -> ArtifactError {
    ArtifactError::ObjectStore(format!("{op} {what}: {}", DisplayErrorContext(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(encode_key("ws/a b/ü+x.txt"), "ws/a%20b/%C3%BC%2Bx.txt");
        assert_eq!(encode_key("a-b_c.d~e/f"), "a-b_c.d~e/f");
    }

    #[test]
    fn content_range_gives_the_total() {
        assert_eq!(total_of("bytes 0-9/70000"), Some(70_000));
        assert_eq!(total_of("bytes */12"), Some(12));
        assert_eq!(total_of("bytes 0-9/*"), None);
        assert_eq!(total_of("garbage"), None);
    }

    #[tokio::test]
    async fn a_whole_object_stream_is_clipped_to_the_range() {
        let whole = || -> ByteStream {
            let chunks = ["0123", "", "456", "789"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
            Box::pin(futures_util::stream::iter(chunks))
        };
        let read = |range: Range<u64>| async move {
            let parts: Vec<_> = clip_stream(whole(), range).collect().await;
            parts
                .into_iter()
                .map(|p| p.unwrap())
                .fold(Vec::new(), |mut all, p| {
                    assert!(!p.is_empty());
                    all.extend_from_slice(&p);
                    all
                })
        };
        assert_eq!(read(2..6).await, b"2345");
        assert_eq!(read(0..10).await, b"0123456789");
        assert_eq!(read(7..100).await, b"789");
        assert!(read(10..20).await.is_empty());
        assert_eq!(read(4..7).await, b"456");
    }

    #[tokio::test]
    async fn debug_hides_the_secret() {
        let config = S3Config {
            endpoint_url: "http://127.0.0.1:9000".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("very-secret") && text.contains("AKIDEXAMPLE"),
            "{text}"
        );
        let store = S3ObjectStore::connect(config.clone()).await.unwrap();
        let text = format!("{store:?}");
        assert!(
            !text.contains("very-secret") && text.contains("9000"),
            "{text}"
        );
        assert_eq!(store.bucket(), "b");
        let bad = S3Config {
            endpoint_url: "127.0.0.1:9000".into(),
            ..config.clone()
        };
        assert!(matches!(
            S3ObjectStore::connect(bad).await,
            Err(ArtifactError::InvalidArgument(_))
        ));
        let bad = S3Config {
            bucket: String::new(),
            ..config
        };
        assert!(matches!(
            S3ObjectStore::connect(bad).await,
            Err(ArtifactError::InvalidArgument(_))
        ));
    }
}
