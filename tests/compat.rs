//! The compatibility suite: the same tests against every S3 server installable here (see
//! `common::servers`): a sync round trip, a multipart upload and a ranged download, a race of
//! publishers, and `b2m doctor`'s verdict, which README's compatibility table records.

use sha2::{Digest, Sha256};

use crate::common::*;

/// Tuning that puts a few MiB over the multipart threshold (5 MiB, S3's smallest part) and
/// downloads in 1 MiB stretches: the suite stays quick and still sends parts and ranges.
const SMALL_PARTS: [(&str, &str); 2] = [("B2M_PART_SIZE_MIB", "5"), ("B2M_STRETCH_MIB", "1")];

/// What each server is expected to do where servers differ.
trait Expect {
    /// Whether CreateMultipartUpload answers in a form the SDK reads (else b2m sends one PUT).
    fn multipart(self) -> bool;
}

impl Expect for ServerKind {
    fn multipart(self) -> bool {
        self != ServerKind::Rclone
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
    let bytes = server.read(&key).unwrap_or_else(|| panic!("{key} is in the bucket"));
    assert!(key.contains(&sha256_hex(&bytes)), "{key} holds the bytes its name pins");
    bytes
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
    assert_eq!(std::fs::read(other.db("ipm-db-v1.db")).expect("downloaded"), published);
    assert_eq!(other.status_of("ipm-db"), "up_to_date");
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
                fn multipart_upload_and_ranged_download() {
                    super::multipart_upload_and_ranged_download($kind);
                }
            }
        )*
    };
}

compat_suite! {
    rclone => ServerKind::Rclone,
}
