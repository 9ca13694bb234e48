//! The S3 store: Backblaze B2's S3 endpoint, AWS S3, R2, MinIO. Path-style addressing, no
//! checksum trailers (B2 and others reject them; our sha256 rides in metadata), retries with
//! backoff, connect/read timeouts (and a whole-operation budget for writes under a lease),
//! multipart uploads with parts sent concurrently and never left unfinished, streamed downloads
//! that resume only on the very same object, and the housekeeping gc and doctor need (versions,
//! unfinished uploads, retention). Blocking methods over a private tokio runtime. A server whose
//! CreateMultipartUpload answer the SDK cannot read (`rclone serve s3` names its root element
//! `InitiateMultipartUpload`) gets each object in one PUT instead, up to S3's 5 GiB, said once.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ExpirationStatus, LifecycleRule};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;

use super::{Condition, InOrder, Notice, Object, ObjectInfo, PutOutcome, Retention, Store, StoreError, Unfinished};
use crate::settings::{Remote, Tuning};

/// S3's limit on the size of one PUT: above it an object can only go up in parts.
const MAX_ONE_PUT: u64 = 5 << 30;
/// S3's limit on parts per upload, with room to spare.
const MAX_PARTS: u64 = 9_000;
/// Reads of a file being sent (the SDK's default is 4 KiB: a thread hand-off per page).
const READ_BUFFER: usize = 256 << 10;
/// Tries of a download that breaks off mid-stream, resumed with a Range request.
const DOWNLOAD_TRIES: u32 = 4;
/// Attempts of a request (the first and three retries).
const ATTEMPTS: u32 = 4;
/// The slowest link a transfer is given time for: a part (or a one-PUT object) of `n` bytes may
/// take `remote.timeout` plus `n` at this rate before its answer comes.
const SLOWEST_LINK: u64 = 64 << 10;
/// What a download says when the object under its key was replaced between two of its requests.
const CHANGED: &str = "the object changed while it was downloaded; run the command again";

/// A bucket (and prefix) on an S3-compatible service.
pub struct S3Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: String,
    /// `remote.region`, or the default.
    region: String,
    location: String,
    /// Part and stretch sizes, and how many are in flight (from the settings).
    tuning: Tuning,
    /// Requests sent (every attempt), counted by [`CountRequests`].
    sent: Arc<AtomicU64>,
    /// `remote.timeout`: to connect, and to the first byte of an answer.
    timeout: Duration,
    /// The root element of a CreateMultipartUpload answer the SDK could not read, once the server
    /// gave one: from then on, for the rest of this process, objects go up in one PUT.
    single_puts: OnceLock<String>,
    /// Where the fallback is said (once).
    notice: Notice,
}

/// Counts every request the client sends, retries included, as it leaves.
#[derive(Debug)]
struct CountRequests(Arc<AtomicU64>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl S3Store {
    /// Builds a client for `s3://bucket/prefix` at the remote's endpoint. Makes no request.
    /// `notice` hears of the servers' quirks b2m works around.
    pub fn open(remote: &Remote, bucket: &str, prefix: &str, notice: Notice) -> Result<Self, StoreError> {
        let location = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        let endpoint = remote.endpoint.clone().unwrap_or_else(|| "https://s3.amazonaws.com".into());
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(8).enable_all().build().map_err(|e| {
                StoreError::Failed { operation: "START", key: String::new(), location: location.clone(), detail: e.to_string() }
            })?;
        let region = remote.region.clone().unwrap_or_else(|| "us-east-1".into());
        let sent = Arc::new(AtomicU64::new(0));
        let client = runtime.block_on(client(remote, &region, &location, sent.clone()))?;
        Ok(S3Store {
            client,
            runtime,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
            region,
            location,
            tuning: remote.tuning,
            sent,
            timeout: remote.timeout,
            single_puts: OnceLock::new(),
            notice,
        })
    }

    /// The key in the bucket: the remote's prefix, then `key`.
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) }
    }

    /// A bucket key as the callers know it, relative to the remote's prefix.
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
                    // AWS S3 (and ministack) redirect a request signed for another region.
                    (301, _) | (_, "PermanentRedirect") => StoreError::WrongRegion {
                        bucket: self.bucket.clone(),
                        region: self.region.clone(),
                        actual: service.raw().headers().get("x-amz-bucket-region").map(str::to_string),
                    },
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

    /// The HTTP status of an error the service answered with.
    fn status_of<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<u16> {
        match err {
            SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
            _ => None,
        }
    }

    /// A download's failure when the object under its key was replaced between two requests.
    fn changed(&self, key: &str) -> StoreError {
        StoreError::Failed { operation: "GET", key: key.to_string(), location: self.location.clone(), detail: CHANGED.into() }
    }

    /// A per-request configuration that bounds the whole operation, retries included, by `budget`
    /// (the client's connect and read timeouts still apply inside it).
    fn within(&self, budget: Duration) -> aws_sdk_s3::config::Builder {
        let mut timeouts = TimeoutConfig::builder().operation_timeout(budget).build();
        if let Some(base) = self.client.config().timeout_config() {
            timeouts.take_defaults_from(base);
        }
        aws_sdk_s3::config::Builder::default().timeout_config(timeouts)
    }

    /// A per-request configuration for a request that sends `bytes` of body: its answer comes only
    /// once the body is sent, so the wait for it grows with the body (at the slowest link).
    fn sending(&self, bytes: u64) -> aws_sdk_s3::config::Builder {
        let wait = self.timeout + Duration::from_secs(bytes / SLOWEST_LINK);
        let timeouts = TimeoutConfig::builder().read_timeout(wait).operation_timeout(wait * ATTEMPTS).build();
        aws_sdk_s3::config::Builder::default().timeout_config(timeouts)
    }

    /// PutObject under a condition; with a `budget`, the write gives up once it is spent.
    async fn put_object(&self, key: &str, body: &[u8], condition: Condition, budget: Option<Duration>) -> Result<PutOutcome, StoreError> {
        let conditional = condition != Condition::None;
        let mut request = self.client.put_object().bucket(&self.bucket).key(self.full_key(key)).body(ByteStream::from(body.to_vec()));
        request = match condition {
            Condition::None => request,
            Condition::IfAbsent => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(etag),
        };
        let sent = match budget {
            None => request.send().await,
            Some(budget) => request.customize().config_override(self.within(budget)).send().await,
        };
        match sent {
            Ok(out) => Ok(PutOutcome::Written { etag: out.e_tag().map(str::to_string), version_id: out.version_id().map(str::to_string) }),
            Err(e) if conditional && matches!(Self::status_of(&e), Some(412 | 409)) => Ok(PutOutcome::ConditionFailed),
            // Backblaze B2 answers 501 NotImplemented to conditional headers.
            Err(e) if conditional && unsupported(&e) => Err(StoreError::ConditionalUnsupported { location: self.location.clone() }),
            Err(e) => Err(self.error("PUT", key, e)),
        }
    }

    /// A plain DeleteObject (absent is fine).
    async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        match self.client.delete_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
            Ok(_) => Ok(()),
            Err(e) if Self::status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.error("DELETE", key, e)),
        }
    }

    /// Removes one version of an object for good (a version or key already gone is fine).
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), StoreError> {
        match self.client.delete_object().bucket(&self.bucket).key(self.full_key(key)).version_id(version_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if Self::status_of(&e) == Some(404) || matches!(e.code(), Some("NoSuchVersion" | "NoSuchKey")) => Ok(()),
            // A bucket that never kept versions calls each object's only version "null"; a server
            // that refuses that id (its answer, not a network failure) gets a plain delete instead.
            Err(e) if version_id == "null" && matches!(e, SdkError::ServiceError(_)) && !matches!(Self::status_of(&e), Some(401 | 403)) => {
                tracing::debug!(key, "deleting version \"null\" was refused, deleting the object: {}", root_cause(&e));
                self.delete_object(key).await
            }
            Err(e) => Err(self.error("DELETE VERSION", key, e)),
        }
    }

    /// Every version and delete marker of exactly `key`, oldest first; `None` when the store has
    /// no ListObjectVersions.
    async fn versions_of(&self, key: &str) -> Result<Option<Vec<String>>, StoreError> {
        let full = self.full_key(key);
        // (current, last modified, order of appearance counted back, so that within one list a
        // later entry, which S3 sends older, sorts first; version id)
        let mut entries: Vec<(bool, Option<aws_smithy_types::DateTime>, std::cmp::Reverse<usize>, String)> = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        let (mut seen_versions, mut seen_markers) = (0usize, 0usize);
        loop {
            let request = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take());
            let page = match request.send().await {
                Ok(page) => page,
                Err(e) if unsupported(&e) => return Ok(None),
                Err(e) => return Err(self.error("LIST VERSIONS", key, e)),
            };
            for v in page.versions().iter().filter(|v| v.key() == Some(full.as_str())) {
                seen_versions += 1;
                let id = v.version_id().unwrap_or("null").to_string();
                entries.push((v.is_latest().unwrap_or(false), v.last_modified().copied(), std::cmp::Reverse(seen_versions), id));
            }
            for m in page.delete_markers().iter().filter(|m| m.key() == Some(full.as_str())) {
                seen_markers += 1;
                let id = m.version_id().unwrap_or("null").to_string();
                entries.push((m.is_latest().unwrap_or(false), m.last_modified().copied(), std::cmp::Reverse(seen_markers), id));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        // The current entry goes last, so nothing older ever becomes current on the way.
        entries.sort();
        Ok(Some(entries.into_iter().map(|(_, _, _, id)| id).collect()))
    }

    /// Aborts a multipart upload; its own failure is only logged (the caller reports its cause).
    async fn abort_quietly(&self, full: &str, upload_id: &str) {
        if let Err(e) = self.client.abort_multipart_upload().bucket(&self.bucket).key(full).upload_id(upload_id).send().await {
            tracing::debug!(key = full, upload_id, "aborting the upload failed: {}", root_cause(&e));
        }
    }

    /// Whether the object under `full` is ours: it carries our sha256 and has the expected size.
    async fn landed(&self, full: &str, size: u64, sha256: &str) -> bool {
        match self.client.head_object().bucket(&self.bucket).key(full).send().await {
            Ok(head) => {
                let ours = head.metadata().and_then(|m| m.get("sha256")).is_some_and(|s| s == sha256);
                ours && head.content_length().and_then(|n| u64::try_from(n).ok()) == Some(size)
            }
            Err(e) => {
                tracing::debug!(key = full, "HEAD after a failed completion: {}", root_cause(&e));
                false
            }
        }
    }

    /// Streams bytes `offset..offset + len` of an object in one ranged GET.
    async fn download_stretch(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        sink: &mut dyn Write,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let last = offset + len.max(1) - 1;
        let request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).range(format!("bytes={offset}-{last}"));
        let response = request.send().await.map_err(|e| self.error("GET", key, e))?;
        // A server that ignores the range answers the whole object: not what was asked for.
        let range = response.content_range().unwrap_or("");
        if !range.starts_with(&format!("bytes {offset}-{last}/")) {
            return Err(StoreError::Failed {
                operation: "GET",
                key: key.to_string(),
                location: self.location.clone(),
                detail: format!("asked for bytes {offset}-{last}, answered `{range}`"),
            });
        }
        let mut written = 0;
        if let Some(e) = drain(key, response.body, sink, &mut written, progress).await? {
            return Err(StoreError::Failed {
                operation: "GET",
                key: key.to_string(),
                location: self.location.clone(),
                detail: format!("the answer broke off: {e}"),
            });
        }
        if written != len {
            return Err(StoreError::Failed {
                operation: "GET",
                key: key.to_string(),
                location: self.location.clone(),
                detail: format!("{written} of {len} bytes"),
            });
        }
        Ok(written)
    }

    /// Streams the whole object in one GET (resumed where it broke off, on the very same object).
    async fn download_whole(&self, key: &str, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        let mut written = 0u64;
        let mut tries = 0;
        // The first answer's ETag and size: a resume must read the very same object, never
        // splice the tail of a newer one onto the head of an older one.
        let mut first: Option<(Option<String>, Option<i64>)> = None;
        loop {
            tries += 1;
            let response = self.get_from(key, written, &mut first).await?;
            let broke = drain(key, response.body, sink, &mut written, progress).await?;
            let resumable = first.as_ref().is_some_and(|(etag, _)| etag.is_some());
            match broke {
                None => return Ok(written),
                Some(e) if tries < DOWNLOAD_TRIES && resumable => {
                    tracing::warn!(key, written, "download broke off, resuming: {e}");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                }
                Some(e) => {
                    let unsafe_to_resume = if resumable { "" } else { " (the store gave no ETag to resume it safely)" };
                    return Err(StoreError::Failed {
                        operation: "GET",
                        key: key.to_string(),
                        location: self.location.clone(),
                        detail: format!("{}{unsafe_to_resume}", root_cause(&e)),
                    });
                }
            }
        }
    }

    /// The object from byte `written` on: the whole of it the first time (recording its ETag and
    /// size in `first`), then the rest of the very same object, or [`S3Store::changed`].
    async fn get_from(
        &self,
        key: &str,
        written: u64,
        first: &mut Option<(Option<String>, Option<i64>)>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key));
        if let Some((etag, _)) = &first {
            // Only resumed with an ETag to hold the server to (see below).
            request = request.set_if_match(etag.clone()).range(format!("bytes={written}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            // 412: the ETag moved on; 404: the object is gone; 416: it shrank.
            Err(e) if first.is_some() && matches!(Self::status_of(&e), Some(404 | 412 | 416)) => return Err(self.changed(key)),
            Err(e) => return Err(self.error("GET", key, e)),
        };
        match &first {
            None => *first = Some((response.e_tag().map(str::to_string), response.content_length())),
            Some((etag, total)) => {
                // A server that ignores If-Match (or Range) must not slip a different
                // object, or the whole of it, past us.
                let range = response.content_range().unwrap_or("");
                let same = response.e_tag() == etag.as_deref()
                    && range.starts_with(&format!("bytes {written}-"))
                    && total.is_none_or(|total| range.ends_with(&format!("/{total}")));
                if !same {
                    tracing::debug!(key, written, range, etag = response.e_tag(), "the resumed download is of another object");
                    return Err(self.changed(key));
                }
            }
        }
        Ok(response)
    }

    /// Downloads an object into `file` in stretches, `stretches_in_flight` at a time, each written
    /// where it belongs as it arrives (memory holds no stretch whole) and reported to `landed`.
    /// Every stretch after the first names the first one's ETag, so all come from the very same
    /// object. A server that ignores ranges, or gives no ETag, is read in one GET.
    async fn download_stretches(
        &self,
        key: &str,
        file: &std::fs::File,
        landed: &dyn Fn(u64, u64),
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key);
        let stretch = self.tuning.stretch;
        let first = self.client.get_object().bucket(&self.bucket).key(&full).range(format!("bytes=0-{}", stretch - 1)).send().await;
        let first = match first {
            Ok(r) => r,
            // An empty object has no first byte to range over.
            Err(e) if Self::status_of(&e) == Some(416) => return self.download_whole(key, &mut InOrder::new(file, landed), progress).await,
            Err(e) => return Err(self.error("GET", key, e)),
        };
        let ranged = first.content_range().and_then(parse_content_range).filter(|&(start, _, _)| start == 0);
        let (Some((_, first_end, total)), Some(etag)) = (ranged, first.e_tag().map(str::to_string)) else {
            drop(first);
            return self.download_whole(key, &mut InOrder::new(file, landed), progress).await;
        };
        let stretches = std::iter::once((0, first_end)).chain(
            (first_end + 1..total)
                .step_by(usize::try_from(stretch).unwrap_or(usize::MAX))
                .map(|start| (start, (start + stretch).min(total) - 1)),
        );
        let object = Stretches { key, full: &full, etag: &etag, total, file, landed, progress };
        let mut first = Some(first);
        let fetches = stretches.map(|span| {
            let (object, response) = (&object, first.take());
            async move { self.fetch_stretch(object, span, response).await }
        });
        futures::stream::iter(fetches).buffer_unordered(self.tuning.stretches_in_flight).try_collect::<()>().await?;
        Ok(total)
    }

    /// Writes the bytes `start..=end` of `object` where they belong, whole: resumed where the
    /// stream broke off, never from another object. `response` is an answer already received for
    /// exactly this stretch.
    async fn fetch_stretch(
        &self,
        object: &Stretches<'_>,
        (start, end): (u64, u64),
        mut response: Option<aws_sdk_s3::operation::get_object::GetObjectOutput>,
    ) -> Result<(), StoreError> {
        let mut next = start;
        let mut tries = 0;
        loop {
            let answer = match response.take() {
                Some(r) => r,
                None => {
                    tries += 1;
                    self.get_stretch(object, next, end).await?
                }
            };
            // A server that ignores If-Match or Range must not slip other bytes past us.
            if answer.e_tag() != Some(object.etag)
                || answer.content_range().and_then(parse_content_range) != Some((next, end, object.total))
            {
                tracing::debug!(
                    key = object.key,
                    next,
                    end,
                    range = answer.content_range(),
                    etag = answer.e_tag(),
                    "a stretch of another object"
                );
                return Err(self.changed(object.key));
            }
            let Some(broke) = self.write_stretch(object, answer.body, &mut next, end).await? else { return Ok(()) };
            if tries >= DOWNLOAD_TRIES {
                return Err(StoreError::Failed {
                    operation: "GET",
                    key: object.key.to_string(),
                    location: self.location.clone(),
                    detail: broke,
                });
            }
            tracing::warn!(key = object.key, next, "download broke off, resuming: {broke}");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(tries.max(1)))).await;
        }
    }

    /// Asks for the bytes `next..=end` of `object`, held to its ETag.
    async fn get_stretch(
        &self,
        object: &Stretches<'_>,
        next: u64,
        end: u64,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        let request =
            self.client.get_object().bucket(&self.bucket).key(object.full).if_match(object.etag).range(format!("bytes={next}-{end}"));
        match request.send().await {
            Ok(r) => Ok(r),
            // 412: the ETag moved on; 404: the object is gone; 416: it shrank.
            Err(e) if matches!(Self::status_of(&e), Some(404 | 412 | 416)) => Err(self.changed(object.key)),
            Err(e) => Err(self.error("GET", object.key, e)),
        }
    }

    /// Writes `body`, the bytes from `next` on, where they belong, moving `next` along: `None`
    /// when the stretch is whole through `end`, or why the stream broke off before.
    async fn write_stretch(
        &self,
        object: &Stretches<'_>,
        mut body: ByteStream,
        next: &mut u64,
        end: u64,
    ) -> Result<Option<String>, StoreError> {
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) if *next + chunk.len() as u64 <= end + 1 => {
                    object.write(*next, &chunk).map_err(|source| StoreError::LocalWrite { key: object.key.to_string(), source })?;
                    *next += chunk.len() as u64;
                    object.progress.inc(chunk.len() as u64);
                }
                Ok(Some(_)) => return Err(self.changed(object.key)),
                Ok(None) if *next == end + 1 => return Ok(None),
                Ok(None) => return Ok(Some("the answer ended early".to_string())),
                Err(e) => return Ok(Some(root_cause(&e))),
            }
        }
    }

    /// The body of `length` bytes of a file from `offset`, read as it is sent, in large reads.
    async fn body(&self, key: &str, path: &Path, offset: u64, length: u64) -> Result<ByteStream, StoreError> {
        let body = ByteStream::read_from().path(path).offset(offset).length(Length::Exact(length)).buffer_size(READ_BUFFER).build();
        body.await.map_err(|e| read_failed(key, path, &e))
    }

    /// Starts a multipart upload; returns its id, or `None` when the server answered in a form
    /// the SDK cannot read (the upload it may have opened is aborted, and the fallback to one
    /// PUT is remembered for this process and said once).
    async fn create_upload(&self, key: &str, full: &str, sha256: &str) -> Result<Option<String>, StoreError> {
        let created = self.client.create_multipart_upload().bucket(&self.bucket).key(full).metadata("sha256", sha256).send().await;
        let created = match created {
            Ok(created) => created,
            // A success the SDK cannot decode: `rclone serve s3` names the root element
            // `InitiateMultipartUpload` where S3 says `InitiateMultipartUploadResult`.
            Err(SdkError::ServiceError(service)) if service.raw().status().is_success() => {
                let body = service.raw().body().bytes().unwrap_or_default();
                if let Some(upload_id) = xml_text(body, "UploadId") {
                    self.abort_quietly(full, &upload_id).await;
                }
                let root = root_element(body).unwrap_or_else(|| "no XML".into());
                if self.single_puts.set(root.clone()).is_ok() {
                    (self.notice)(&format!(
                        "`{}` answers CreateMultipartUpload with `<{root}>`, which is not S3's `<InitiateMultipartUploadResult>`; \
                         b2m sends each object in a single PUT instead (up to 5 GiB)",
                        self.endpoint
                    ));
                }
                tracing::debug!(key, root, "unreadable CreateMultipartUpload answer: one PUT instead");
                return Ok(None);
            }
            Err(e) => return Err(self.error("CREATE MULTIPART", key, e)),
        };
        match created.upload_id() {
            Some(id) => Ok(Some(id.to_string())),
            None => Err(StoreError::Failed {
                operation: "CREATE MULTIPART",
                key: key.to_string(),
                location: self.location.clone(),
                detail: "the answer named no upload id".into(),
            }),
        }
    }

    /// Uploads a large file in parts, `parts_in_flight` at a time. Any failure aborts the
    /// upload, so no unfinished upload is left behind to be billed for, and so does `settle`
    /// answering false before the completion; a completion whose answer was lost (the SDK's retry
    /// then hears `NoSuchUpload`) is recognised by the object it made. `None`: the server's
    /// multipart answers cannot be read, nothing was sent; send the file in one PUT.
    fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<Option<bool>, StoreError> {
        let full = self.full_key(key);
        let part_size = self.tuning.part_size.max(size.div_ceil(MAX_PARTS));
        self.runtime.block_on(async {
            let Some(upload_id) = self.create_upload(key, &full, sha256).await? else { return Ok(None) };
            let upload = Upload { key, full: &full, upload_id: &upload_id, path, progress };
            let parts = (0..size.div_ceil(part_size)).map(|i| {
                let offset = i * part_size;
                self.send_part(&upload, i, offset, part_size.min(size - offset))
            });
            let result: Result<Vec<CompletedPart>, StoreError> =
                futures::stream::iter(parts).buffer_unordered(self.tuning.parts_in_flight).try_collect().await;
            let completed = match result {
                Ok(parts) => parts,
                Err(e) => {
                    self.abort_quietly(&full, &upload_id).await;
                    return Err(e);
                }
            };
            if !settle() {
                self.abort_quietly(&full, &upload_id).await;
                return Ok(Some(false));
            }
            self.complete_upload(&upload, size, sha256, completed).await.map(Some)
        })
    }

    /// Sends part number `i + 1` of `upload`: `length` bytes of its file from `offset`.
    async fn send_part(&self, upload: &Upload<'_>, i: u64, offset: u64, length: u64) -> Result<CompletedPart, StoreError> {
        let body = self.body(upload.key, upload.path, offset, length).await?;
        let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let done = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(upload.full)
            .upload_id(upload.upload_id)
            .part_number(number)
            .content_length(i64::try_from(length).unwrap_or(i64::MAX))
            .body(body)
            .customize()
            .config_override(self.sending(length))
            .send()
            .await
            .map_err(|e| self.error("UPLOAD PART", upload.key, e))?;
        upload.progress.inc(length);
        Ok(CompletedPart::builder().part_number(number).set_e_tag(done.e_tag().map(str::to_string)).build())
    }

    /// Completes `upload` from its `completed` parts. A completion whose answer was lost still
    /// succeeded when the object under the key is ours (`size` bytes, `sha256`); either way the
    /// upload does not stay open.
    async fn complete_upload(
        &self,
        upload: &Upload<'_>,
        size: u64,
        sha256: &str,
        mut completed: Vec<CompletedPart>,
    ) -> Result<bool, StoreError> {
        completed.sort_by_key(|p| p.part_number());
        let finished = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(upload.full)
            .upload_id(upload.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            // The server assembles the parts before it answers (s3s-fs reads them all again).
            .customize()
            .config_override(self.sending(size))
            .send()
            .await;
        let Err(e) = finished else { return Ok(true) };
        let error = self.error("COMPLETE MULTIPART", upload.key, e);
        let landed = self.landed(upload.full, size, sha256).await;
        // Whether or not the object landed, the upload must not stay open: after a completion
        // that took effect this is a harmless `NoSuchUpload`.
        self.abort_quietly(upload.full, upload.upload_id).await;
        if landed {
            tracing::debug!(key = upload.key, "the completion's answer was lost, but the object is ours: {error}");
            Ok(true)
        } else {
            Err(error)
        }
    }
}

/// A multipart upload under way: the key (as callers know it, and in the bucket), its id, and the
/// file it sends.
struct Upload<'a> {
    key: &'a str,
    full: &'a str,
    upload_id: &'a str,
    path: &'a Path,
    progress: &'a ProgressBar,
}

/// The SDK's client for `remote` in `region`: path-style, checksums only where required, retries
/// and timeouts as b2m wants them, rustls, requests counted into `sent`. Credentials from the
/// environment (`remote.credentials`), else the AWS chain's; none at all is an error here rather
/// than at the first request.
async fn client(remote: &Remote, region: &str, location: &str, sent: Arc<AtomicU64>) -> Result<Client, StoreError> {
    let credentials = remote
        .credentials
        .as_ref()
        .map(|c| Credentials::new(c.access_key_id.clone(), c.secret_access_key.expose(), None, None, "b2m-environment"));
    // A silent endpoint (connections accepted, never answered) costs `remote.timeout` per
    // attempt, and a whole request with its retries at most ATTEMPTS of them: a start is never
    // held for minutes. Transfers of a body get more (see `sending`).
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(remote.timeout)
        .read_timeout(remote.timeout)
        .operation_timeout(remote.timeout * ATTEMPTS)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .timeout_config(timeouts);
    if let Some(endpoint) = &remote.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    // rustls with ring: one copied binary, linking only libc, no system OpenSSL.
    let tls = aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring);
    loader = loader.http_client(aws_smithy_http_client::Builder::new().tls_provider(tls).build_https());
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    let shared = loader.load().await;
    if let Some(provider) = shared.credentials_provider() {
        use aws_credential_types::provider::ProvideCredentials;
        if let Err(e) = provider.provide_credentials().await {
            tracing::debug!("no credentials from the AWS chain: {e}");
            return Err(StoreError::NoCredentials { location: location.to_string() });
        }
    }
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .interceptor(CountRequests(sent))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(config))
}

/// Writes `body` into `sink` as it comes, counting into `written` and `progress`: `None` when it
/// ended, or the error it broke off with.
async fn drain(
    key: &str,
    mut body: ByteStream,
    sink: &mut dyn Write,
    written: &mut u64,
    progress: &ProgressBar,
) -> Result<Option<ByteStreamError>, StoreError> {
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                sink.write_all(&chunk).map_err(|source| StoreError::LocalWrite { key: key.to_string(), source })?;
                *written += chunk.len() as u64;
                progress.inc(chunk.len() as u64);
            }
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(e)),
        }
    }
}

/// One object downloaded in stretches, and where they land: positioned writes into a file, each
/// reported once written.
struct Stretches<'a> {
    key: &'a str,
    full: &'a str,
    /// The first answer's: every stretch must come from the very same object.
    etag: &'a str,
    /// The object's size.
    total: u64,
    file: &'a std::fs::File,
    landed: &'a dyn Fn(u64, u64),
    progress: &'a ProgressBar,
}

impl Stretches<'_> {
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, offset)?;
        (self.landed)(offset, data.len() as u64);
        Ok(())
    }
}

/// The error of a local file that could not be read for an upload.
fn read_failed(key: &str, path: &Path, e: &dyn std::error::Error) -> StoreError {
    StoreError::Failed { operation: "READ", key: key.to_string(), location: path.display().to_string(), detail: e.to_string() }
}

/// `bytes START-END/TOTAL` → (start, end, total).
fn parse_content_range(range: &str) -> Option<(u64, u64, u64)> {
    let (span, total) = range.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Whether the service said it does not implement the operation (Backblaze B2 and s3s-fs answer
/// 501 `NotImplemented`; s3rver answers ListObjectVersions with 405 `MethodNotAllowed`).
fn unsupported<E: ProvideErrorMetadata>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> bool {
    matches!(S3Store::status_of(err), Some(501 | 405)) || matches!(err.code(), Some("NotImplemented" | "MethodNotAllowed"))
}

/// `bucket/key` with everything but unreserved characters and `/` percent-encoded, as
/// `x-amz-copy-source` wants it.
fn percent_encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The innermost cause of an error, which is the one a person can act on.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The `<Status>` of a GetBucketVersioning answer, read leniently (whatever the root element).
fn versioning_status_in(body: &[u8]) -> Option<String> {
    xml_text(body, "Status")
}

/// The text of the first `<tag>` element of an XML answer, read leniently (whatever the root).
fn xml_text(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, rest) = text.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.trim().to_string()).filter(|s| !s.is_empty())
}

/// The name of an XML answer's root element (after the declaration), at most 64 characters.
fn root_element(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text.trim_start();
    if let Some(after) = rest.strip_prefix("<?") {
        rest = after.split_once("?>")?.1.trim_start();
    }
    let name: String =
        rest.strip_prefix('<')?.chars().take_while(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '-')).take(64).collect();
    Some(name).filter(|n| !n.is_empty())
}

/// `1 day`, `7 days`.
fn days(n: i32) -> String {
    if n == 1 { "1 day".to_string() } else { format!("{n} days") }
}

/// A lifecycle rule as one short line for `b2m doctor`, e.g.
/// `rule "x": prefix "", hidden versions expire after 1 day`.
// The rule's own `Prefix` is deprecated in favour of `Filter`, but older rules and some services
// still use it.
#[allow(deprecated)]
fn describe_rule(rule: &LifecycleRule) -> String {
    let filter = rule.filter();
    let prefix = filter.and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix()))).or(rule.prefix()).unwrap_or("");
    let mut parts = vec![format!("prefix {prefix:?}")];
    let tags = filter.and_then(|f| f.tag()).into_iter().chain(filter.and_then(|f| f.and()).map_or(&[][..], |a| a.tags()));
    parts.extend(tags.map(|t| format!("tag {}={}", t.key(), t.value())));
    if let Some(expiration) = rule.expiration() {
        if let Some(n) = expiration.days() {
            parts.push(format!("objects expire after {}", days(n)));
        }
        if let Some(date) = expiration.date().and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()) {
            parts.push(format!("objects expire on {date}"));
        }
        if expiration.expired_object_delete_marker() == Some(true) {
            parts.push("lone delete markers removed".into());
        }
    }
    for t in rule.transitions() {
        let class = t.storage_class().map_or("another class", |c| c.as_str());
        parts.extend(t.days().map(|n| format!("objects move to {class} after {}", days(n))));
    }
    if let Some(noncurrent) = rule.noncurrent_version_expiration() {
        if let Some(n) = noncurrent.noncurrent_days() {
            parts.push(format!("hidden versions expire after {}", days(n)));
        }
        if let Some(k) = noncurrent.newer_noncurrent_versions() {
            parts.push(format!("the newest {k} hidden versions kept"));
        }
    }
    for t in rule.noncurrent_version_transitions() {
        let class = t.storage_class().map_or("another class", |c| c.as_str());
        parts.extend(t.noncurrent_days().map(|n| format!("hidden versions move to {class} after {}", days(n))));
    }
    if let Some(n) = rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()) {
        parts.push(format!("unfinished uploads aborted after {}", days(n)));
    }
    let name = rule.id().map_or_else(|| "rule (unnamed)".to_string(), |id| format!("rule {id:?}"));
    let disabled = if *rule.status() == ExpirationStatus::Disabled { " (disabled)" } else { "" };
    format!("{name}{disabled}: {}", parts.join(", "))
}

impl Store for S3Store {
    fn location(&self) -> &str {
        &self.location
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.get_bounded(key, None)
    }

    fn get_within(&self, key: &str, within: Duration) -> Result<Option<Object>, StoreError> {
        self.get_bounded(key, Some(within))
    }

    fn get_to(&self, key: &str, sink: &mut dyn Write) -> Result<bool, StoreError> {
        self.runtime.block_on(async {
            let response = match self.client.get_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
                Ok(r) => r,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(false),
                Err(e) => return Err(self.error("GET", key, e)),
            };
            let hidden = ProgressBar::hidden();
            match drain(key, response.body, sink, &mut 0, &hidden).await? {
                None => Ok(true),
                Some(e) => Err(StoreError::Failed {
                    operation: "GET",
                    key: key.to_string(),
                    location: self.location.clone(),
                    detail: root_cause(&e),
                }),
            }
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
        self.runtime.block_on(self.put_object(key, body, condition, None))
    }

    fn put_within(&self, key: &str, body: &[u8], condition: Condition, within: Duration) -> Result<PutOutcome, StoreError> {
        self.runtime.block_on(self.put_object(key, body, condition, Some(within)))
    }

    fn upload(
        &self,
        key: &str,
        path: &Path,
        sha256: &str,
        progress: &ProgressBar,
        settle: &mut dyn FnMut() -> bool,
    ) -> Result<bool, StoreError> {
        let size = std::fs::metadata(path).map_err(|e| read_failed(key, path, &e))?.len();
        if size > self.tuning.part_size && self.single_puts.get().is_none() {
            // `None`: the server's multipart answer cannot be read, nothing was sent: one PUT.
            if let Some(uploaded) = self.upload_parts(key, path, size, sha256, progress, settle)? {
                return Ok(uploaded);
            }
        }
        if size > MAX_ONE_PUT {
            let root = self.single_puts.get().map_or("", String::as_str);
            return Err(StoreError::TooLargeForOnePut {
                key: key.to_string(),
                size,
                endpoint: self.endpoint.clone(),
                answer: format!("`<{root}>`, not S3's `<InitiateMultipartUploadResult>`"),
            });
        }
        // One PUT: once it is sent the object is there, so settle first.
        if !settle() {
            return Ok(false);
        }
        self.runtime.block_on(async {
            let body = self.body(key, path, 0, size).await?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .metadata("sha256", sha256)
                .body(body)
                .customize()
                .config_override(self.sending(size))
                .send()
                .await
                .map_err(|e| self.error("PUT", key, e))?;
            progress.inc(size);
            Ok(true)
        })
    }

    fn download_range(&self, key: &str, offset: u64, len: u64, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        self.runtime.block_on(self.download_stretch(key, offset, len, sink, progress))
    }

    fn download(&self, key: &str, sink: &mut dyn Write, progress: &ProgressBar) -> Result<u64, StoreError> {
        self.runtime.block_on(self.download_whole(key, sink, progress))
    }

    fn download_to(&self, key: &str, file: &std::fs::File, landed: &dyn Fn(u64, u64), progress: &ProgressBar) -> Result<u64, StoreError> {
        self.runtime.block_on(self.download_stretches(key, file, landed, progress))
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

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.runtime.block_on(self.delete_object(key))
    }

    fn delete_versions(&self, key: &str, version_ids: &[String]) -> Result<(), StoreError> {
        if version_ids.is_empty() {
            return self.delete(key);
        }
        self.runtime.block_on(async {
            for id in version_ids {
                self.delete_version(key, id).await?;
            }
            Ok(())
        })
    }

    fn purge(&self, key: &str) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            match self.versions_of(key).await? {
                None => self.delete_object(key).await,
                Some(ids) if ids.is_empty() => {
                    // Nothing listed: a plain delete on a versioned bucket would only add a
                    // delete marker, so delete only what a HEAD still finds (a listing that
                    // left it out).
                    match self.client.head_object().bucket(&self.bucket).key(self.full_key(key)).send().await {
                        Ok(_) => self.delete_object(key).await,
                        Err(e) if Self::status_of(&e) == Some(404) => Ok(()),
                        Err(e) => Err(self.error("HEAD", key, e)),
                    }
                }
                Some(ids) => {
                    for id in &ids {
                        self.delete_version(key, id).await?;
                    }
                    Ok(())
                }
            }
        })
    }

    fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<Unfinished>, StoreError> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let (mut key_marker, mut upload_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let request = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(self.full_key(prefix))
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(upload_marker.take());
                let page = match request.send().await {
                    Ok(page) => page,
                    Err(e) if unsupported(&e) => return Ok(Vec::new()),
                    Err(e) => return Err(self.error("LIST UPLOADS", prefix, e)),
                };
                for upload in page.uploads() {
                    let (Some(full), Some(upload_id)) = (upload.key(), upload.upload_id()) else { continue };
                    out.push(Unfinished {
                        key: self.relative_key(full).to_string(),
                        upload_id: upload_id.to_string(),
                        initiated: upload.initiated().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    });
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_string);
                upload_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && upload_marker.is_none() {
                    break;
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
            Ok(out)
        })
    }

    fn abort_upload(&self, upload: &Unfinished) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let full = self.full_key(&upload.key);
            match self.client.abort_multipart_upload().bucket(&self.bucket).key(full).upload_id(&upload.upload_id).send().await {
                Ok(_) => Ok(()),
                Err(e) if Self::status_of(&e) == Some(404) || e.code() == Some("NoSuchUpload") => Ok(()),
                Err(e) => Err(self.error("ABORT UPLOAD", &upload.key, e)),
            }
        })
    }

    fn retention(&self) -> Result<Retention, StoreError> {
        self.runtime.block_on(async {
            let mut retention = Retention::default();
            // Doctor reports what the bucket tells; a call it refuses or lacks (B2 has no
            // lifecycle API, a restricted key may not read it) leaves that part empty.
            match self.client.get_bucket_versioning().bucket(&self.bucket).send().await {
                Ok(out) => retention.versioning = out.status().map(|s| s.as_str().to_string()),
                // moto names the answer's root `GetBucketVersioningResponse`, which the SDK
                // refuses to decode; a 200 answer is still read for its `<Status>`.
                Err(SdkError::ServiceError(service)) if service.raw().status().as_u16() == 200 => {
                    retention.versioning = service.raw().body().bytes().and_then(versioning_status_in);
                }
                Err(e @ SdkError::ServiceError(_)) => tracing::debug!("GetBucketVersioning: {}", root_cause(&e)),
                Err(e) => return Err(self.error("GET VERSIONING", "", e)),
            }
            match self.client.get_bucket_lifecycle_configuration().bucket(&self.bucket).send().await {
                Ok(out) => retention.lifecycle = out.rules().iter().map(describe_rule).collect(),
                Err(e @ SdkError::ServiceError(_)) => tracing::debug!("GetBucketLifecycleConfiguration: {}", root_cause(&e)),
                Err(e) => return Err(self.error("GET LIFECYCLE", "", e)),
            }
            Ok(retention)
        })
    }

    fn copy(&self, from: &str, to: &str, sha256: &str) -> Result<(), StoreError> {
        // CopyObject keeps the object's metadata (our sha256) and moves no byte through here; it
        // takes objects up to 5 GiB, larger ones go through this machine.
        let size = self.head(from)?.map_or(0, |info| info.size);
        if size > MAX_ONE_PUT {
            return super::copy_through_here(self, from, to, sha256);
        }
        let source = format!("{}/{}", self.bucket, self.full_key(from));
        self.runtime.block_on(async {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(self.full_key(to))
                .copy_source(percent_encode_path(&source))
                // A server-side copy answers once it is done: give it the time a transfer gets.
                .customize()
                .config_override(self.sending(5 << 30))
                .send()
                .await
                .map_err(|e| self.error("COPY", from, e))?;
            Ok(())
        })
    }

    fn requests(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn probe_multipart(&self, key: &str) -> Result<Option<String>, StoreError> {
        let full = self.full_key(key);
        self.runtime.block_on(async {
            match self.create_upload(key, &full, "probe").await? {
                Some(upload_id) => {
                    self.abort_quietly(&full, &upload_id).await;
                    Ok(None)
                }
                None => Ok(self.single_puts.get().cloned()),
            }
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
}

impl S3Store {
    /// GetObject, read whole; with `within`, the request and its retries give up once it is spent.
    fn get_bounded(&self, key: &str, within: Option<Duration>) -> Result<Option<Object>, StoreError> {
        self.runtime.block_on(async {
            let request = self.client.get_object().bucket(&self.bucket).key(self.full_key(key));
            let sent = match within {
                None => request.send().await,
                Some(budget) => request.customize().config_override(self.within(budget)).send().await,
            };
            let response = match sent {
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
}
