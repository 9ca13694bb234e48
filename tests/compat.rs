//! The compatibility suite: the same tests against every S3 server installable here (see
//! `common::servers`): a sync round trip, a multipart upload and a ranged download, a race of
//! publishers, and `b2m doctor`'s verdict, which README's compatibility table records.

use sha2::{Digest, Sha256};

use crate::common::*;

/// Tuning that puts a few MiB over the multipart threshold (5 MiB, S3's smallest part) and
/// downloads in 1 MiB stretches: the suite stays quick and still sends parts and ranges. Versions
/// are stored whole here (as a bucket from before pages keeps them), so that the object is the
/// database's size; the round trip below stores them as pages.
const SMALL_PARTS: [(&str, &str); 3] = [("B2M_PART_SIZE_MIB", "5"), ("B2M_STRETCH_MIB", "1"), ("B2M_PAGES", "0")];

/// What each server is expected to do where servers differ.
trait Expect {
    /// Whether CreateMultipartUpload answers in a form the SDK reads (else b2m sends one PUT).
    fn multipart(self) -> bool;
    /// The protocol `b2m doctor` records (README's table), when the server's behaviour is certain.
    fn protocol(self) -> Option<&'static str>;
}

impl Expect for ServerKind {
    fn multipart(self) -> bool {
        self != ServerKind::Rclone
    }

    fn protocol(self) -> Option<&'static str> {
        match self {
            // Its `If-Match` is atomic in some probes and not in others (threaded, no lock).
            ServerKind::Moto => None,
            // It checks and writes in one step of its event loop: atomic by construction.
            ServerKind::Ministack => Some("conditional"),
            // s3s-fs refuses conditional writes (501); rclone and s3rver ignore them.
            ServerKind::S3sFs | ServerKind::Rclone | ServerKind::S3rver => Some("lease"),
        }
    }
}

/// The sha256 of bytes, in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The object the server's db.toml pins for `ipm-db`, read back: its key's sha256 is its bytes'.
#[track_caller]
fn pinned_bytes(server: &AnyServer) -> Vec<u8> {
    let manifest = String::from_utf8(server.read("db.toml").expect("the bucket has a db.toml")).expect("utf8");
    let key = pinned_object(&manifest, "ipm-db").expect("db.toml pins ipm-db");
    let bytes = server.version_bytes(&key).unwrap_or_else(|| panic!("{key} is in the bucket"));
    assert!(key.contains(&sha256_hex(&bytes)), "{key} holds the bytes its name pins");
    bytes
}

/// A downloaded file is byte for byte the published object (compared by hash: no dump of bytes).
#[track_caller]
fn assert_same_bytes(published: &[u8], file: &std::path::Path) {
    let local = std::fs::read(file).expect("the downloaded file");
    assert_eq!(sha256_hex(&local), sha256_hex(published), "{} is the published object", file.display());
}

/// The `"requests"` a `--json` run reports.
fn requests(run: &Run) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON result");
    json["requests"].as_u64().expect("requests")
}

/// A database over the multipart threshold goes up (in parts, or in one PUT where the server's
/// multipart answer cannot be read, said once) and comes back down in ranged stretches, several in
/// flight; the copy downloaded is the one published.
fn multipart_upload_and_ranged_download(kind: ServerKind) {
    let server = AnyServer::start(kind);
    let dev = server.project();
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 1700);
    let size = std::fs::metadata(dev.db("ipm-db-v1.db")).expect("db").len();
    assert!(size > 6 << 20, "over the 5 MiB threshold: {size}");
    let up = dev.b2m_env(&["upload", "ipm-db", "--json"], &SMALL_PARTS);
    up.ok();
    assert!(!up.stderr.contains("failed"), "{}", up.stderr);
    let said = up.stderr.lines().filter(|l| l.starts_with("warning:") && l.contains("single PUT")).count();
    assert_eq!(said, usize::from(!kind.multipart()), "the one-PUT fallback is said once, where it happens: {}", up.stderr);
    let published = pinned_bytes(&server);
    assert_eq!(published.len() as u64, size);
    let unfinished = server.store().unfinished_uploads("").expect("list unfinished uploads");
    assert!(unfinished.is_empty(), "no upload left open (the fallback aborts the one it could not use): {unfinished:?}");

    let other = server.project();
    other.b2m(&["fetch-db-toml"]).ok();
    let down = other.b2m_env(&["download", "ipm-db", "--json"], &SMALL_PARTS);
    down.ok();
    assert!(requests(&down) >= size.div_ceil(1 << 20), "ranged: one GET per 1 MiB stretch: {}", down.stdout);
    assert_same_bytes(&published, &other.db("ipm-db-v1.db"));
    assert_eq!(other.status_of("ipm-db"), "up_to_date");
}

/// Two project folders on one bucket: the first publishes, the second fetches, each sees the
/// other's versions through `status`; the bucket holds what db.toml pins.
fn sync_round_trip(kind: ServerKind) {
    let server = AnyServer::start(kind);
    let dev = server.project();
    dev.create_db("ipmdb", "ipm-db-v1.db", 3);
    dev.b2m(&["upload", "ipm-db"]).ok();
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");

    let other = server.project();
    other.b2m(&["fetch-db-toml"]).ok();
    assert_eq!(other.status_of("ipm-db"), "missing_local");
    other.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(other.status_of("ipm-db"), "up_to_date");
    assert_eq!(other.rows("ipm-db-v1.db"), dev.rows("ipm-db-v1.db"));
    assert_same_bytes(&pinned_bytes(&server), &other.db("ipm-db-v1.db"));

    other.insert("ipm-db-v1.db", "from the other");
    assert_eq!(other.status_of("ipm-db"), "ready_to_upload");
    other.b2m(&["upload", "ipm-db"]).ok();
    assert!(other.db("ipm-db-v2.db").exists(), "{:?}", other.files());
    assert_eq!(dev.status_of("ipm-db"), "outdated_db");
    dev.b2m(&["download", "ipm-db"]).ok();
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    assert_eq!(dev.rows("ipm-db-v2.db").last().map(String::as_str), Some("from the other"));
    assert_same_bytes(&pinned_bytes(&server), &dev.db("ipm-db-v2.db"));
}

/// `b2m doctor` finds the protocol the table in README.md names for this server, and records it
/// in the bucket's `bucket.json`.
fn doctor_records_the_protocol(kind: ServerKind) {
    let server = AnyServer::start(kind);
    let p = server.project();
    let run = p.b2m(&["doctor", "--json"]);
    run.ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("doctor JSON");
    if std::env::var_os("B2M_TEST_DEBUG").is_some() {
        eprintln!("{kind:?}: {report}");
    }
    if let Some(expected) = kind.protocol() {
        assert_eq!(report["protocol"], expected, "{report}");
    }
    let uploads = if kind.multipart() { "parts" } else { "single_put" };
    assert_eq!(report["large_uploads"], uploads, "{report}");
    let record: serde_json::Value = serde_json::from_slice(&server.read("bucket.json").expect("bucket.json")).expect("json");
    assert_eq!(record["protocol"], report["protocol"], "{record}");
    assert!(!run.stderr.contains(server.secret_key), "credentials never printed");
}

/// Publishers racing on one bucket, after `b2m doctor` chose its protocol: exactly one wins each
/// round, the others are refused as `outdated_db`.
fn racing_publishers_have_one_winner(kind: ServerKind) {
    let server = AnyServer::start(kind);
    let projects: Vec<Project> = (0..4).map(|_| server.project()).collect();
    projects[0].b2m(&["doctor"]).ok();
    crate::coordination::race_rounds(&projects, |key| server.read(key), 2);
}

/// A bucket in another region than `remote.region` (ministack redirects, as AWS S3 does) is a
/// configuration error that names the bucket's region, not an `HTTP 301`.
#[test]
fn ministack_names_the_bucket_region_when_remote_region_is_wrong() {
    let server = AnyServer::start(ServerKind::Ministack);
    let p = server.project();
    let config = std::fs::read_to_string(p.path().join("b2m.toml")).expect("b2m.toml");
    std::fs::write(p.path().join("b2m.toml"), config.replace("us-west-004", "eu-central-1")).expect("b2m.toml");
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    let run = p.b2m(&["upload", "ipm-db"]);
    run.fails(2, "bucket `b2m-test-bucket` is in region `us-west-004`, not in `eu-central-1` (`remote.region`)");
    assert!(run.stderr.contains("set `region = \"us-west-004\"` under `[remote]`"), "{}", run.stderr);
    assert!(!run.stderr.contains("301"), "{}", run.stderr);
}

/// The fallback is said once per process: a SQL changeset that publishes two large databases in
/// one commit sends both in single PUTs and warns once.
#[test]
fn rclone_says_the_single_put_fallback_once_per_process() {
    let server = AnyServer::start(ServerKind::Rclone);
    let dev = server.project();
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 1500);
    dev.create_big_db("emojidb", "emoji-db-v1.db", 1500);
    for db in ["ipm-db", "emoji-db"] {
        dev.b2m_env(&["upload", db], &SMALL_PARTS).ok();
    }
    let name = crate::changesets::changeset(
        &dev,
        "touch-both",
        "sql",
        "-- b2m: db = ipm-db\n-- b2m: db = emoji-db\nINSERT INTO t(v) VALUES ('a');\nINSERT INTO \"emoji-db\".t(v) VALUES ('b');\n",
    );
    let run = dev.b2m_env(&["execute-changeset", &name], &SMALL_PARTS);
    run.ok();
    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning for two single PUTs: {}", run.stderr);
    assert!(warnings[0].contains("single PUT"), "{}", run.stderr);
    let manifest = String::from_utf8(server.read("db.toml").expect("db.toml")).expect("utf8");
    for stem in ["ipm-db", "emoji-db"] {
        let key = pinned_object(&manifest, stem).expect("pinned");
        assert!(key.starts_with(&format!("dbs/{stem}/{stem}-v2.")), "{stem} published as v2: {key}");
        assert!(server.read(&key).is_some_and(|b| b.len() > 5 << 20), "{key} is in the bucket, over the threshold");
    }
}

/// Over S3's 5 GiB limit for one PUT, on a server whose multipart answers b2m cannot read, an
/// upload is refused with an error that says why, before a byte is sent (the file is sparse).
#[test]
fn rclone_refuses_an_object_over_5_gib_clearly() {
    let server = AnyServer::start(ServerKind::Rclone);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("big.db");
    std::fs::File::create(&path).expect("file").set_len((5 << 30) + 1).expect("sparse 5 GiB + 1");
    let store = server.store();
    let refused = store.upload_file("dbs/big/big-v1.x.db", &path, "x", &indicatif::ProgressBar::hidden()).expect_err("refused");
    let message = refused.to_string();
    assert!(matches!(refused, b2m::store::StoreError::TooLargeForOnePut { .. }), "{refused:?}");
    assert!(message.contains("over S3's limit of 5 GiB for one PUT") && message.contains("<InitiateMultipartUpload>"), "{message}");
    assert!(refused.hint().is_some_and(|h| h.contains("5 GiB")), "a hint says what to do");
    assert!(store.head("dbs/big/big-v1.x.db").expect("head").is_none(), "nothing under the key");
    assert!(store.unfinished_uploads("").expect("uploads").is_empty());
}

/// The same suite for each server: `compat::<server>::<test>`.
macro_rules! compat_suite {
    ($($server:ident => $kind:expr),* $(,)?) => {
        $(
            mod $server {
                use super::*;
                #[test]
                fn sync_round_trip() {
                    super::sync_round_trip($kind);
                }
                #[test]
                fn multipart_upload_and_ranged_download() {
                    super::multipart_upload_and_ranged_download($kind);
                }
                #[test]
                fn racing_publishers_have_one_winner() {
                    super::racing_publishers_have_one_winner($kind);
                }
                #[test]
                fn doctor_records_the_protocol() {
                    super::doctor_records_the_protocol($kind);
                }
            }
        )*
    };
}

compat_suite! {
    s3s_fs => ServerKind::S3sFs,
    moto => ServerKind::Moto,
    ministack => ServerKind::Ministack,
    rclone => ServerKind::Rclone,
    s3rver => ServerKind::S3rver,
}
