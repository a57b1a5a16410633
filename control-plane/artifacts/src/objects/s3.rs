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
//! only at CompleteMultipartUpload. Up to three parts upload at once while the body is
//! read on, so at most four parts (32 MiB) are held. When the body errs or S3 fails, the upload is aborted
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
//!
//! **Layout.** This file holds the configuration, the client, the bucket set-up and the
//! [`ObjectStore`] impl; GetObject and its bodies are in `s3/read.rs`, put_stream's
//! buffering and multipart upload and the client multipart uploads in `s3/upload.rs`,
//! the unit tests in `s3/tests.rs`.

use super::{
    page, validate_key, validate_prefix, ByteStream, Entry, ObjectInfo, ObjectStore, PresignOp,
    UploadedPart,
};
use crate::error::{ArtifactError, ArtifactResult};
use async_trait::async_trait;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CorsConfiguration, CorsRule, CreateBucketConfiguration, Delete,
    MetadataDirective, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

mod read;
mod upload;

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
        self.get_object(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> ArtifactResult<Option<Bytes>> {
        self.get_object_range(key, range).await
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

    async fn put_stream(&self, key: &str, body: ByteStream) -> ArtifactResult<u64> {
        self.put_object_stream(key, body).await
    }

    async fn put_stream_len(&self, key: &str, body: ByteStream, len: u64) -> ArtifactResult<u64> {
        self.put_object_sized(key, body, len).await
    }

    async fn get_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> ArtifactResult<Option<(ObjectInfo, ByteStream)>> {
        self.get_object_stream(key, range).await
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
        self.start_client_upload(key).await
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        expires: Duration,
    ) -> ArtifactResult<String> {
        self.presign_client_part(key, upload_id, part_number, expires)
            .await
    }

    async fn multipart_complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> ArtifactResult<()> {
        self.complete_client_upload(key, upload_id, parts).await
    }
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
mod tests;
