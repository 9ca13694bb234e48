//! The S3 store through the library, against real servers on 127.0.0.1: s3s-fs in-process (no
//! versions, no multipart listing) and moto (versions, lifecycle, multipart listing). The state
//! each test leaves is checked with boto3 or on s3s-fs's disk, not only what the store answers.
//! The test proxy (`common::Proxy`) stands in for a bad network: it loses the answer to a multipart
//! completion, refuses a completion, or cuts a download mid-stream.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use b2m::store::{Condition, PutOutcome, Store, StoreError};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

/// The remote the tests open; one constructor, so a new field of `Remote` is set in one place.
fn remote(endpoint: &str) -> b2m::settings::Remote {
    b2m::settings::Remote {
        url: format!("s3://{BUCKET}/{PREFIX}"),
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        locking: b2m::settings::Locking::Auto,
        credentials: Some(b2m::settings::StaticCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: b2m::settings::Secret::new(SECRET_KEY.into()),
        }),
        timeout: std::time::Duration::from_secs(10),
        tuning: b2m::settings::Tuning::default(),
    }
}

/// The store at `endpoint`, opened as b2m opens it.
fn open(endpoint: &str) -> Box<dyn Store> {
    b2m::store::open(&remote(endpoint)).expect("open the S3 store")
}

/// The python of moto's venv (which has boto3); `MotoServer::start` installs it.
fn moto_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/moto/bin/python")
}

/// Runs `code` with boto3 against moto (`s3`, the bucket `B` and the prefix `P` with its slash
/// are defined) and parses what it prints last as JSON.
fn boto(moto: &MotoServer, code: &str) -> serde_json::Value {
    let script = format!(
        "import boto3, json\n\
         s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y')\n\
         B = '{BUCKET}'\n\
         P = '{PREFIX}/'\n\
         {code}\n",
        moto.endpoint
    );
    let out = std::process::Command::new(moto_python()).args(["-c", &script]).output().expect("run boto3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "boto3 failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).expect("boto3 printed JSON")
}

fn enable_versioning(moto: &MotoServer) {
    boto(moto, "s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={'Status': 'Enabled'}); print('null')");
}

/// Every version and delete marker of exactly `key` (under the prefix), as `v:<id>` / `m:<id>`.
fn versions(moto: &MotoServer, key: &str) -> Vec<String> {
    let code = format!(
        "r = s3.list_object_versions(Bucket=B, Prefix=P + '{key}')\n\
         print(json.dumps(['v:' + v['VersionId'] for v in r.get('Versions', []) if v['Key'] == P + '{key}'] \
         + ['m:' + m['VersionId'] for m in r.get('DeleteMarkers', []) if m['Key'] == P + '{key}']))"
    );
    serde_json::from_value(boto(moto, &code)).expect("a list of versions")
}

/// The unfinished multipart uploads in the bucket, as `key upload-id`.
fn uploads(moto: &MotoServer) -> Vec<String> {
    let code = "r = s3.list_multipart_uploads(Bucket=B)\n\
                print(json.dumps([u['Key'] + ' ' + u['UploadId'] for u in r.get('Uploads', [])]))";
    serde_json::from_value(boto(moto, code)).expect("a list of uploads")
}

/// Writes `body` and returns the version id the store reported.
fn put_version(store: &dyn Store, key: &str, body: &[u8]) -> Option<String> {
    match store.put(key, body, Condition::None).expect("put") {
        PutOutcome::Written { version_id, .. } => version_id,
        PutOutcome::ConditionFailed => panic!("an unconditional put reported a failed condition"),
    }
}

/// `len` bytes that differ with `seed`.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A file just over the multipart threshold (32 MiB), with its sha256.
fn big_file(dir: &Path) -> (PathBuf, String, u64) {
    let data = bytes((33 << 20) + 12_345, 7);
    let path = dir.join("big.db");
    std::fs::write(&path, &data).expect("write the big file");
    (path, sha256_hex(&data), data.len() as u64)
}

// ---------------------------------------------------------------------------------------------
// Versions.

#[test]
fn delete_versions_removes_every_version_it_names_on_a_versioned_bucket() {
    let moto = MotoServer::start();
    enable_versioning(&moto);
    let store = open(&moto.endpoint);
    let ids: Vec<String> = (0..3u8).map(|i| put_version(&*store, "locks/ipm-db.json", &[b'a' + i]).expect("a version id")).collect();
    put_version(&*store, "locks/ipm-db.json.other", b"keep me");
    assert_eq!(versions(&moto, "locks/ipm-db.json").len(), 3, "three versions were written");

    store.delete_versions("locks/ipm-db.json", &ids).expect("delete_versions");

    assert_eq!(versions(&moto, "locks/ipm-db.json"), Vec::<String>::new(), "no version and no delete marker is left");
    assert_eq!(versions(&moto, "locks/ipm-db.json.other").len(), 1, "a key that merely starts the same is untouched");
    // Gone already is fine.
    store.delete_versions("locks/ipm-db.json", &ids).expect("delete_versions of versions already gone");
}

#[test]
fn purge_removes_versions_and_delete_markers_on_a_versioned_bucket() {
    let moto = MotoServer::start();
    enable_versioning(&moto);
    let store = open(&moto.endpoint);
    let key = "dbs/ipm-db/ipm-db-v2.abc.db";
    put_version(&*store, key, b"one");
    put_version(&*store, key, b"two");
    store.delete(key).expect("delete (a marker)");
    put_version(&*store, key, b"three");
    store.delete(key).expect("delete (another marker)");
    put_version(&*store, &format!("{key}.json"), b"{}");
    let before = versions(&moto, key);
    assert_eq!(before.iter().filter(|v| v.starts_with("m:")).count(), 2, "two delete markers: {before:?}");
    assert_eq!(before.iter().filter(|v| v.starts_with("v:")).count(), 3, "three versions: {before:?}");

    store.purge(key).expect("purge");

    assert_eq!(versions(&moto, key), Vec::<String>::new(), "every version and marker is gone");
    assert_eq!(versions(&moto, &format!("{key}.json")).len(), 1, "the sibling key keeps its version");
    store.purge(key).expect("purging an absent key");
    assert_eq!(versions(&moto, key), Vec::<String>::new(), "purging an absent key leaves no delete marker");
}

#[test]
fn purge_removes_the_null_version_on_an_unversioned_bucket() {
    let moto = MotoServer::start();
    let store = open(&moto.endpoint);
    let key = "fleet/web-1.json";
    assert_eq!(put_version(&*store, key, b"{}"), None, "an unversioned bucket gives no version id");
    assert_eq!(versions(&moto, key), vec!["v:null".to_string()]);

    store.purge(key).expect("purge");

    assert_eq!(versions(&moto, key), Vec::<String>::new());
    assert!(store.head(key).expect("head").is_none());
}

#[test]
fn purge_and_plain_delete_versions_remove_the_object_where_versions_are_unsupported() {
    let server = S3Server::start();
    let store = open(&server.endpoint);
    for key in ["a.json", "b.json"] {
        store.put(key, b"{}", Condition::None).expect("put");
        assert!(server.object_path(key).exists(), "{key} was written");
    }

    store.purge("a.json").expect("purge falls back to a plain delete");
    store.delete_versions("b.json", &[]).expect("delete_versions with no ids is a plain delete");

    for key in ["a.json", "b.json"] {
        assert!(!server.object_path(key).exists(), "{key} is gone from the server's disk");
        assert!(store.head(key).expect("head").is_none(), "{key} is gone");
    }
    store.purge("a.json").expect("purging an absent key");
}

// ---------------------------------------------------------------------------------------------
// Writes within a budget.

#[test]
fn put_within_gives_up_on_a_silent_server_within_its_budget() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming().flatten() {
            held.push(socket);
        }
    });
    let store = open(&endpoint);
    for (budget, condition) in [(Duration::from_millis(1), Condition::IfAbsent), (Duration::from_millis(400), Condition::None)] {
        let started = Instant::now();
        let result = store.put_within("locks/ipm-db.json", b"{}", condition, budget);
        let took = started.elapsed();
        assert!(matches!(result, Err(StoreError::Unreachable { .. })), "expected Unreachable after {budget:?}, got {result:?}");
        assert!(took < budget + Duration::from_millis(900), "a {budget:?} budget took {took:?}");
    }
}

#[test]
fn put_within_writes_like_put_when_the_server_answers() {
    let server = S3Server::start();
    let store = open(&server.endpoint);
    let written = store.put_within("db.toml", b"[db]\n", Condition::None, Duration::from_secs(20)).expect("put_within");
    assert!(matches!(written, PutOutcome::Written { etag: Some(_), .. }), "{written:?}");
    assert_eq!(std::fs::read(server.object_path("db.toml")).expect("the object on disk"), b"[db]\n");
}

// ---------------------------------------------------------------------------------------------
// Unfinished uploads and retention.

#[test]
fn unfinished_uploads_are_listed_and_aborted() {
    let moto = MotoServer::start();
    let store = open(&moto.endpoint);
    let created = boto(
        &moto,
        "r = s3.create_multipart_upload(Bucket=B, Key=P + 'dbs/ipm-db/ipm-db-v3.abc.db')\n\
         s3.create_multipart_upload(Bucket=B, Key='elsewhere/x.db')\n\
         print(json.dumps(r['UploadId']))",
    );
    let upload_id = created.as_str().expect("an upload id").to_string();

    let listed = store.unfinished_uploads("dbs/").expect("unfinished_uploads");
    assert_eq!(listed.len(), 1, "only the upload under the store's prefix: {listed:?}");
    assert_eq!(listed[0].key, "dbs/ipm-db/ipm-db-v3.abc.db", "keys are relative to the prefix");
    assert_eq!(listed[0].upload_id, upload_id);
    assert!(listed[0].initiated.is_some(), "moto says when it started");
    assert!(store.unfinished_uploads("changesets/").expect("unfinished_uploads").is_empty());

    store.abort_upload(&listed[0]).expect("abort_upload");

    let left = uploads(&moto);
    assert!(left.len() == 1 && left[0].starts_with("elsewhere/x.db "), "only the upload outside the prefix is left: {left:?}");
    assert!(store.unfinished_uploads("").expect("unfinished_uploads").is_empty());
    store.abort_upload(&listed[0]).expect("aborting an upload already gone");
}

#[test]
fn retention_reports_versioning_and_lifecycle_rules() {
    let moto = MotoServer::start();
    let store = open(&moto.endpoint);
    let before = store.retention().expect("retention");
    assert_eq!(before.versioning, None, "a new bucket never had versioning");
    assert!(before.lifecycle.is_empty(), "and has no lifecycle rule: {:?}", before.lifecycle);

    enable_versioning(&moto);
    boto(
        &moto,
        "s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={'Rules': [{'ID': 'x', 'Status': 'Enabled', \
         'Filter': {'Prefix': ''}, 'NoncurrentVersionExpiration': {'NoncurrentDays': 1}}]})\nprint('null')",
    );

    let after = store.retention().expect("retention");
    assert_eq!(after.versioning.as_deref(), Some("Enabled"));
    assert_eq!(after.lifecycle, vec![r#"rule "x": prefix "", hidden versions expire after 1 day"#.to_string()]);
}

#[test]
fn housekeeping_calls_a_server_lacks_answer_empty() {
    let server = S3Server::start();
    let store = open(&server.endpoint);
    assert!(store.unfinished_uploads("").expect("unfinished_uploads where unsupported").is_empty());
    assert_eq!(store.retention().expect("retention where unsupported"), b2m::store::Retention::default());
}

// ---------------------------------------------------------------------------------------------
// Multipart uploads.

#[test]
fn multipart_upload_completes_with_sha256_metadata_and_leaves_no_upload() {
    let moto = MotoServer::start();
    let store = open(&moto.endpoint);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, sha256, size) = big_file(dir.path());
    let progress = ProgressBar::hidden();

    store.upload_file("dbs/big/big-v1.x.db", &path, &sha256, &progress).expect("upload_file");

    let head = boto(
        &moto,
        "h = s3.head_object(Bucket=B, Key=P + 'dbs/big/big-v1.x.db')\nprint(json.dumps([h['Metadata'].get('sha256'), h['ContentLength']]))",
    );
    assert_eq!(head, serde_json::json!([sha256, size]));
    assert_eq!(uploads(&moto), Vec::<String>::new(), "no unfinished upload");
    assert_eq!(progress.position(), size, "progress counted every byte");
}

#[test]
fn an_upload_settle_refuses_is_abandoned_and_leaves_nothing() {
    // The integrity check runs beside the upload: until it answers, nothing may appear.
    let moto = MotoServer::start();
    let store = open(&moto.endpoint);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, sha256, size) = big_file(dir.path());
    let small = dir.path().join("small.db");
    std::fs::write(&small, bytes(1 << 20, 9)).expect("write");
    for (path, key, in_parts) in [(&path, "dbs/big/big-v1.x.db", true), (&small, "dbs/small/small-v1.x.db", false)] {
        let mut asked_after = None;
        let progress = ProgressBar::hidden();
        let appeared = store
            .upload(key, path, &sha256, &progress, &mut || {
                asked_after = Some(progress.position());
                false
            })
            .expect("upload");
        assert!(!appeared, "the upload was abandoned");
        assert!(store.head(key).expect("head").is_none(), "no object under `{key}`");
        assert_eq!(uploads(&moto), Vec::<String>::new(), "no unfinished upload");
        if in_parts {
            assert_eq!(asked_after, Some(size), "a multipart upload settles once every part was sent");
        } else {
            assert_eq!(asked_after, Some(0), "a one-request upload settles before it sends");
        }
    }
}

#[test]
fn multipart_completion_whose_answers_were_all_lost_counts_as_done() {
    // moto completes idempotently (as AWS does), so a single lost answer is healed by the SDK's
    // retry; losing every try's answer leaves the store to find out by a HEAD.
    let moto = MotoServer::start();
    let proxy = Proxy::start(&moto.endpoint);
    for _ in 0..4 {
        proxy.lose_answer_of_next("POST", "/dbs/big/big-v1.x.db", "uploadId=");
    }
    let store = open(&proxy.endpoint);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, sha256, size) = big_file(dir.path());

    store.upload_file("dbs/big/big-v1.x.db", &path, &sha256, &ProgressBar::hidden()).expect("the upload succeeded");

    let completions = proxy.requests().iter().filter(|r| r.method == "POST" && r.query.contains("uploadId=")).count();
    assert_eq!(completions, 4, "every try of the completion lost its answer");
    let head = boto(
        &moto,
        "h = s3.head_object(Bucket=B, Key=P + 'dbs/big/big-v1.x.db')\nprint(json.dumps([h['Metadata'].get('sha256'), h['ContentLength']]))",
    );
    assert_eq!(head, serde_json::json!([sha256, size]));
    assert_eq!(uploads(&moto), Vec::<String>::new(), "no unfinished upload");
}

#[test]
fn multipart_completion_whose_retry_is_refused_counts_as_done() {
    // s3s-fs forgets an upload once completed: the SDK's retry after the lost answer is refused.
    let server = S3Server::start();
    let proxy = Proxy::start(&server.endpoint);
    proxy.lose_answer_of_next("POST", "/dbs/big/big-v1.x.db", "uploadId=");
    let store = open(&proxy.endpoint);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, sha256, _) = big_file(dir.path());

    store.upload_file("dbs/big/big-v1.x.db", &path, &sha256, &ProgressBar::hidden()).expect("the upload succeeded");

    let completions = proxy.requests().iter().filter(|r| r.method == "POST" && r.query.contains("uploadId=")).count();
    assert!(completions >= 2, "the first completion's answer was lost and the SDK tried again ({completions} completions)");
    let stored = std::fs::read(server.object_path("dbs/big/big-v1.x.db")).expect("the object on the server's disk");
    assert_eq!(sha256_hex(&stored), sha256, "the object is the file");
    let open_uploads: Vec<String> = std::fs::read_dir(&server.root)
        .expect("the server's root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert_eq!(open_uploads, Vec::<String>::new(), "no unfinished upload on s3s-fs");
}

#[test]
fn multipart_completion_refused_aborts_the_upload() {
    let moto = MotoServer::start();
    let proxy = Proxy::start(&moto.endpoint);
    let invalid_part = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                        <Error><Code>InvalidPart</Code><Message>refused by the test proxy</Message></Error>";
    proxy.refuse_next("POST", "/dbs/big/big-v1.x.db", "uploadId=", 400, invalid_part);
    let store = open(&proxy.endpoint);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, sha256, _) = big_file(dir.path());

    let result = store.upload_file("dbs/big/big-v1.x.db", &path, &sha256, &ProgressBar::hidden());

    assert_eq!(proxy.pending(), 0, "the proxy refused a completion");
    let err = result.expect_err("a refused completion fails");
    assert!(err.to_string().contains("InvalidPart"), "the original error is reported: {err}");
    assert_eq!(uploads(&moto), Vec::<String>::new(), "the upload was aborted");
    assert!(store.head("dbs/big/big-v1.x.db").expect("head").is_none(), "no object was made");
}

// ---------------------------------------------------------------------------------------------
// Downloads that break off.

/// An object of `len` bytes under `key`, written directly, and a proxy in front of `upstream`
/// that lets `skip` GETs of it through, then cuts the next one after `cut_after` bytes, first
/// replacing the object (when asked) while the client still waits for the rest. Returns the
/// object's bytes and the proxy.
fn object_behind_a_cutting_proxy(
    upstream: &str,
    key: &'static str,
    len: usize,
    skip: usize,
    cut_after: usize,
    replace: bool,
) -> (Vec<u8>, Proxy) {
    let original = bytes(len, 1);
    open(upstream).put(key, &original, Condition::None).expect("put");
    let replacement = bytes(len, 2);
    let writer = open(upstream);
    let proxy = Proxy::start(upstream);
    for _ in 0..skip {
        proxy.pass_next("GET", key, "");
    }
    proxy.cut_answer_of_next_then("GET", key, "", cut_after, move || {
        if replace {
            writer.put(key, &replacement, Condition::None).expect("replace the object");
        }
    });
    (original, proxy)
}

/// A 1 MiB object downloaded in one stream whose first GET (the whole object: a resume asks for a
/// Range) is cut.
fn cut_download(upstream: &str, replace: bool) -> (Vec<u8>, Result<u64, StoreError>, Vec<u8>, bool) {
    let key = "dbs/ipm-db/ipm-db-v1.abc.db";
    let (original, proxy) = object_behind_a_cutting_proxy(upstream, key, 1 << 20, 0, 200_000, replace);
    let store = open(&proxy.endpoint);
    let mut sink = Vec::new();
    let result = store.download(key, &mut sink, &ProgressBar::hidden());
    (original, result, sink, proxy.pending() == 0)
}

/// A 40 MiB object (three stretches of a download) whose second GET is cut mid-stretch.
fn cut_later_stretch(upstream: &str, replace: bool) -> (Vec<u8>, Result<u64, StoreError>, Vec<u8>, bool) {
    let key = "dbs/ipm-db/ipm-db-v2.abc.db";
    let (original, proxy) = object_behind_a_cutting_proxy(upstream, key, 40 << 20, 1, 3 << 20, replace);
    let store = open(&proxy.endpoint);
    let file = tempfile::tempfile().expect("temp file");
    let landed = std::sync::Mutex::new(0u64);
    let result = store.download_to(key, &file, &|_, len| *landed.lock().expect("lock") += len, &ProgressBar::hidden());
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut sink).expect("read back");
    if result.is_ok() {
        assert_eq!(*landed.lock().expect("lock"), sink.len() as u64, "every byte written was reported once");
    }
    let gets = proxy.requests().iter().filter(|r| r.method == "GET").count();
    assert!(gets >= 4, "the object came in stretches, one resumed ({gets} GETs)");
    (original, result, sink, proxy.pending() == 0)
}

#[test]
fn download_in_stretches_resumes_a_broken_one_from_the_same_object() {
    let (s3s, moto) = (S3Server::start(), MotoServer::start());
    for upstream in [&s3s.endpoint, &moto.endpoint] {
        let (original, result, sink, fired) = cut_later_stretch(upstream, false);
        assert!(fired, "the proxy cut a stretch");
        assert_eq!(result.expect("the download resumed"), original.len() as u64);
        assert!(sink == original, "the download is the object, byte for byte, in order");
    }
}

#[test]
fn download_in_stretches_refuses_an_object_replaced_between_them() {
    // s3s-fs ignores If-Match on GET (the ETag gives the change away); moto answers 412.
    let (s3s, moto) = (S3Server::start(), MotoServer::start());
    for upstream in [&s3s.endpoint, &moto.endpoint] {
        let (_, result, _, fired) = cut_later_stretch(upstream, true);
        assert!(fired, "the proxy cut a stretch");
        let err = result.expect_err("stretches of two objects are not spliced");
        assert!(err.to_string().contains("the object changed while it was downloaded; run the command again"), "{err}");
    }
}

#[test]
fn download_resumes_a_broken_stream_of_the_same_object() {
    let server = S3Server::start();
    let (original, result, sink, fired) = cut_download(&server.endpoint, false);
    assert!(fired, "the proxy cut the download");
    assert_eq!(result.expect("the download resumed"), original.len() as u64);
    assert!(sink == original, "the resumed download is the object, byte for byte");
}

#[test]
fn download_refuses_to_splice_an_object_replaced_mid_stream_when_the_server_ignores_if_match() {
    // s3s-fs ignores If-Match on GET: the ETag of the resumed answer gives the change away.
    let server = S3Server::start();
    let (_, result, _, fired) = cut_download(&server.endpoint, true);
    assert!(fired, "the proxy cut the download");
    let err = result.expect_err("a replaced object is not spliced");
    assert!(matches!(err, StoreError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("the object changed while it was downloaded; run the command again"), "{err}");
}

#[test]
fn download_refuses_to_splice_an_object_replaced_mid_stream() {
    // moto checks If-Match and answers 412.
    let moto = MotoServer::start();
    let (_, result, _, fired) = cut_download(&moto.endpoint, true);
    assert!(fired, "the proxy cut the download");
    let err = result.expect_err("a replaced object is not spliced");
    assert!(matches!(err, StoreError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("the object changed while it was downloaded; run the command again"), "{err}");
}
