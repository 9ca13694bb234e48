//! The S3 store: Backblaze B2's S3 endpoint, AWS S3, R2, MinIO. Path-style addressing, no
//! checksum trailers (B2 and others reject them; our sha256 rides in metadata), retries with
//! backoff, connect/read timeouts, multipart uploads with parts sent concurrently, streamed and
//! resumable downloads. Blocking methods over a private tokio runtime.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;

use super::{Condition, Object, ObjectInfo, PutOutcome, Store, StoreError};
use crate::settings::Remote;

/// Files up to this size go in one PUT; larger ones in parts.
const MULTIPART_THRESHOLD: u64 = 32 << 20;
/// The smallest part we send (S3 allows 5 MiB; B2 recommends 100 MB for speed on big files).
const MIN_PART_SIZE: u64 = 16 << 20;
/// S3's limit on parts per upload, with room to spare.
const MAX_PARTS: u64 = 9_000;
/// Parts in flight at once.
const PART_CONCURRENCY: usize = 4;
/// Tries of a download that breaks off mid-stream, resumed with a Range request.
const DOWNLOAD_TRIES: u32 = 4;

/// A bucket (and prefix) on an S3-compatible service.
pub struct S3Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: String,
    location: String,
}

impl S3Store {
    /// Builds a client for `s3://bucket/prefix` at the remote's endpoint. Makes no request.
    pub fn open(remote: &Remote, bucket: &str, prefix: &str) -> Result<Self, StoreError> {
        let location = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        let endpoint = remote.endpoint.clone().unwrap_or_else(|| "https://s3.amazonaws.com".into());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
            StoreError::Failed { operation: "START", key: String::new(), location: location.clone(), detail: e.to_string() }
        })?;
        let region = remote.region.clone().unwrap_or_else(|| "us-east-1".into());
        let credentials = remote
            .credentials
            .as_ref()
            .map(|c| Credentials::new(c.access_key_id.clone(), c.secret_access_key.expose(), None, None, "b2m-environment"));
        let timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(10)).read_timeout(Duration::from_secs(120)).build();
        let client = runtime.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(Region::new(region))
                .retry_config(RetryConfig::standard().with_max_attempts(4))
                .timeout_config(timeouts);
            if let Some(endpoint) = &remote.endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            if let Some(credentials) = credentials {
                loader = loader.credentials_provider(credentials);
            }
            let shared = loader.load().await;
            if let Some(provider) = shared.credentials_provider() {
                use aws_credential_types::provider::ProvideCredentials;
                if let Err(e) = provider.provide_credentials().await {
                    tracing::debug!("no credentials from the AWS chain: {e}");
                    return Err(StoreError::NoCredentials { location: location.clone() });
                }
            }
            let config = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                .build();
            Ok(Client::from_conf(config))
        })?;
        Ok(S3Store { client, runtime, bucket: bucket.to_string(), prefix: prefix.to_string(), endpoint, location })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) }
    }

    fn relative_key<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() { full } else { full.strip_prefix(&self.prefix).map_or(full, |k| k.trim_start_matches('/')) }
    }

    /// Turns an SDK error into one that says what failed.
    fn error<E>(&self, operation: &'static str, key: &str, err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let failed = |detail: String| StoreError::Failed { operation, key: key.to_string(), location: self.location.clone(), detail };
        match &err {
            SdkError::DispatchFailure(failure) => {
                let detail = if failure.is_timeout() {
                    "timed out".to_string()
                } else {
                    failure.as_connector_error().map_or_else(|| "connection failed".to_string(), |c| root_cause(c))
                };
                StoreError::Unreachable { endpoint: self.endpoint.clone(), detail }
            }
            SdkError::TimeoutError(_) => StoreError::Unreachable { endpoint: self.endpoint.clone(), detail: "timed out".into() },
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().unwrap_or("").to_string();
                match (status, code.as_str()) {
                    (_, "NoSuchBucket") => StoreError::NoSuchBucket { bucket: self.bucket.clone(), endpoint: self.endpoint.clone() },
                    (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken")
                    | (401 | 403, _) => StoreError::AccessDenied {
                        location: self.location.clone(),
                        code: if code.is_empty() { status.to_string() } else { code },
                    },
                    _ => {
                        let message = service.err().message().unwrap_or("");
                        failed(format!("HTTP {status} {code} {message}").trim().to_string())
                    }
                }
            }
            SdkError::ResponseError(_) => failed(format!("unreadable response: {}", root_cause(&err))),
            _ => failed(root_cause(&err)),
        }
    }

    fn status_of<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<u16> {
        match err {
            SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
            _ => None,
        }
    }

    fn upload_parts(&self, key: &str, path: &Path, size: u64, sha256: &str, progress: &ProgressBar) -> Result<(), StoreError> {
        let full = self.full_key(key);
        let part_size = MIN_PART_SIZE.max(size.div_ceil(MAX_PARTS));
        self.runtime.block_on(async {
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .metadata("sha256", sha256)
                .send()
                .await
                .map_err(|e| self.error("CREATE MULTIPART", key, e))?;
            let upload_id = created.upload_id().unwrap_or_default().to_string();
            let parts = (0..size.div_ceil(part_size)).map(|i| {
                let offset = i * part_size;
                let length = part_size.min(size - offset);
                let (full, upload_id) = (&full, &upload_id);
                async move {
                    let body =
                        ByteStream::read_from().path(path).offset(offset).length(Length::Exact(length)).build().await.map_err(|e| {
                            StoreError::Failed {
                                operation: "READ",
                                key: key.to_string(),
                                location: path.display().to_string(),
                                detail: e.to_string(),
                            }
                        })?;
                    let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
                    let done = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_length(i64::try_from(length).unwrap_or(i64::MAX))
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| self.error("UPLOAD PART", key, e))?;
                    progress.inc(length);
                    Ok::<_, StoreError>(CompletedPart::builder().part_number(number).set_e_tag(done.e_tag().map(str::to_string)).build())
                }
            });
            let result: Result<Vec<CompletedPart>, StoreError> =
                futures::stream::iter(parts).buffer_unordered(PART_CONCURRENCY).try_collect().await;
            let mut completed = match result {
                Ok(parts) => parts,
                Err(e) => {
                    // Leave no half-upload behind to be billed for.
                    let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&upload_id).send().await;
                    return Err(e);
                }
            };
            completed.sort_by_key(|p| p.part_number());
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
                .send()
                .await
                .map_err(|e| self.error("COMPLETE MULTIPART", key, e))?;
            Ok(())
        })
    }
}

/// The innermost cause of an error, which is the one a person can act on.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

impl Store for S3Store {
    fn location(&self) -> &str {
        &self.location
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.runtime.block_on(async {
            let response = match self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
                Ok(r) => r,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
                Err(e) => return Err(self.error("GET", key, e)),
            };
            let etag = response.e_tag().map(str::to_string);
            let body = response.body.collect().await.map_err(|e| StoreError::Failed {
                operation: "GET",
                key: key.to_string(),
                location: self.location.clone(),
                detail: root_cause(&e),
            })?;
            Ok(Some(Object { body: body.to_vec(), etag }))
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.runtime.block_on(async {
            match self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
                Ok(r) => Ok(Some(ObjectInfo {
                    key: key.to_string(),
                    size: r.content_length().map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                    etag: r.e_tag().map(str::to_string),
                    last_modified: r.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                })),
                Err(e) if Self::status_of(&e) == Some(404) => Ok(None),
                Err(e) => Err(self.error("HEAD", key, e)),
            }
        })
    }

    fn put(&self, key: &str, body: &[u8], condition: Condition) -> Result<PutOutcome, StoreError> {
        self.runtime.block_on(async {
            let conditional = condition != Condition::None;
            let mut request = self.client.put_object().bucket(&self.bucket).key(self.full_key(key)).body(ByteStream::from(body.to_vec()));
            request = match condition {
                Condition::None => request,
                Condition::IfAbsent => request.if_none_match("*"),
                Condition::IfMatch(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(out) => Ok(PutOutcome::Written(out.e_tag().map(str::to_string))),
                Err(e) if conditional && matches!(Self::status_of(&e), Some(412 | 409)) => Ok(PutOutcome::ConditionFailed),
                // Backblaze B2 answers 501 NotImplemented to conditional headers.
                Err(e) if conditional && (Self::status_of(&e) == Some(501) || e.code() == Some("NotImplemented")) => {
                    Err(StoreError::ConditionalUnsupported { location: self.location.clone() })
                }
                Err(e) => Err(self.error("PUT", key, e)),
            }
        })
    }

    fn upload_file(&self, key: &str, path: &Path, sha256: &str, progress: &ProgressBar) -> Result<(), StoreError> {
        let read_failed = |e: &dyn std::error::Error| StoreError::Failed {
            operation: "READ",
            key: key.to_string(),
            location: path.display().to_string(),
            detail: e.to_string(),
        };
        let size = std::fs::metadata(path).map_err(|e| read_failed(&e))?.len();
        if size > MULTIPART_THRESHOLD {
            return self.upload_parts(key, path, size, sha256, progress);
        }
        self.runtime.block_on(async {
            let body = ByteStream::from_path(path).await.map_err(|e| read_failed(&e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .metadata("sha256", sha256)
                .body(body)
                .send()
                .await
                .map_err(|e| self.error("PUT", key, e))?;
            progress.inc(size);
            Ok(())
        })
    }

    fn download(&self, key: &str, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        let write_failed = |source| StoreError::LocalWrite { key: key.to_string(), source };
        self.runtime.block_on(async {
            let mut written = 0u64;
            let mut tries = 0;
            loop {
                tries += 1;
                let mut request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key));
                if written > 0 {
                    request = request.range(format!("bytes={written}-"));
                }
                let response = request.send().await.map_err(|e| self.error("GET", key, e))?;
                let mut body = response.body;
                let broke = loop {
                    match body.try_next().await {
                        Ok(Some(chunk)) => {
                            sink.write_all(&chunk).map_err(write_failed)?;
                            written += chunk.len() as u64;
                            progress.inc(chunk.len() as u64);
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                match broke {
                    None => return Ok(written),
                    Some(e) if tries < DOWNLOAD_TRIES => {
                        tracing::warn!(key, written, "download broke off, resuming: {e}");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                    }
                    Some(e) => {
                        return Err(StoreError::Failed {
                            operation: "GET",
                            key: key.to_string(),
                            location: self.location.clone(),
                            detail: root_cause(&e),
                        });
                    }
                }
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(self.full_key(prefix)).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error("LIST", prefix, e))?;
                for object in page.contents() {
                    let Some(full) = object.key() else { continue };
                    out.push(ObjectInfo {
                        key: self.relative_key(full).to_string(),
                        size: object.size().map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                        etag: object.e_tag().map(str::to_string),
                        last_modified: object.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn check_bucket(&self) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) if Self::status_of(&e) == Some(404) => {
                    Err(StoreError::NoSuchBucket { bucket: self.bucket.clone(), endpoint: self.endpoint.clone() })
                }
                Err(e) => Err(self.error("HEAD BUCKET", "", e)),
            }
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            match self.client.delete_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
                Ok(_) => Ok(()),
                Err(e) if Self::status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(self.error("DELETE", key, e)),
            }
        })
    }
}
