//! Versions stored as pages (issue 20): a publish sends the pages that changed, a fetch receives
//! the pages the server lacks, and every rebuilt file is byte-identical to the published one.

use std::path::Path;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::common::*;

/// A project that stores new versions as pages.
fn paged(bucket: &Bucket) -> Project {
    let mut p = Project::new(bucket);
    p.env.push(("B2M_PAGES".into(), "1".into()));
    p
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// The sha256 the bucket's db.toml pins for `stem`.
fn pinned(bucket: &Bucket, stem: &str) -> String {
    let object = bucket.current_object(stem);
    object.rsplit('.').nth(1).expect("sha in the key").to_string()
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

/// A database of about `mib` MiB: rows of text in two tables, an index.
fn create(p: &Project, file: &str, mib: u32) {
    let conn = Connection::open(p.db(file)).expect("db");
    conn.execute_batch(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
         INSERT INTO t(v) SELECT 'row ' || x || ' ' || hex(randomblob(150)) FROM c;
         INSERT INTO notes(body) SELECT v FROM t WHERE id % 3 = 0;
         CREATE INDEX t_v ON t(v);",
        rows = mib * 1500
    ))
    .expect("fill");
    drop(conn);
    p.add_entry("ipmdb", file);
}

/// Changes about one row in `every`, spread over the file.
fn touch(p: &Project, file: &str, every: u32) {
    let conn = Connection::open(p.db(file)).expect("db");
    conn.execute(&format!("UPDATE t SET v = v || '!' WHERE id % {every} = 0"), []).expect("update");
}

/// The size of the objects under `dbs/ipm-db/` whose key ends with `suffix`, and how many.
fn stored(bucket: &Bucket, suffix: &str) -> (u64, usize) {
    let keys: Vec<String> = bucket.keys().into_iter().filter(|k| k.starts_with("dbs/ipm-db/") && k.ends_with(suffix)).collect();
    (keys.iter().map(|k| bucket.read(k).map_or(0, |b| b.len() as u64)).sum(), keys.len())
}

fn download(server: &Project, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "download", "ipm-db"];
    all.extend(args);
    let run = server.b2m(&all);
    run.ok();
    json(&run)
}

/// A developer who published `ipm-db` v1 (about `mib` MiB) as pages.
fn published(bucket: &Bucket, mib: u32) -> Project {
    let dev = paged(bucket);
    create(&dev, "ipm-db-v1.db", mib);
    dev.b2m(&["upload", "ipm-db"]).ok();
    dev
}

/// A server that fetched what the bucket publishes.
fn fetched(bucket: &Bucket) -> Project {
    let server = paged(bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    download(&server, &[]);
    server
}

fn on_both_stores(test: impl Fn(Backend)) {
    test(Backend::Local);
    test(Backend::S3);
}

#[test]
fn a_changed_version_costs_its_pages_and_rebuilds_byte_identical() {
    on_both_stores(|backend| {
        let bucket = Bucket::new(backend);
        let dev = paged(&bucket);
        create(&dev, "ipm-db-v1.db", 8);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let size = std::fs::metadata(dev.db("ipm-db-v1.db")).expect("size").len();
        let (base, packs) = stored(&bucket, ".pack");
        assert!(packs == 1 && base < size, "the base is one pack, compressed: {base} of {size} bytes");
        assert_eq!(stored(&bucket, ".db").1, 0, "no version is stored whole");
        let server = paged(&bucket);
        server.b2m(&["fetch-db-toml"]).ok();
        let cold = download(&server, &[]);
        assert_eq!(sha256_of(&server.db("ipm-db-v1.db")), pinned(&bucket, "ipm-db"), "{cold}");
        // 1 row in 200 changes: the next version costs a pack of those pages, up and down.
        touch(&dev, "ipm-db-v1.db", 200);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let (all, count) = stored(&bucket, ".pack");
        let packs = all - base;
        assert_eq!(count, 2, "the base and one pack for v2");
        assert!(packs * 10 < size, "v2's pack is {packs} bytes of a {size}-byte db");
        let fetched = download(&server, &[]);
        assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
        assert_eq!(server.rows("ipm-db-v2.db"), dev.rows("ipm-db-v2.db"));
        let received = fetched["bytes"].as_u64().expect("bytes");
        assert!(received <= packs + 4096, "received {received} bytes for a pack of {packs}");
        assert_eq!(server.status_of("ipm-db"), "up_to_date");
    });
}

/// A base past one pack object's size (32 MiB) goes up as several objects, each sent while the
/// next is compressed; a cold fetch reads them all, and a later change still costs its pages.
#[test]
fn a_base_past_one_pack_object_is_sent_in_several_and_rebuilds_byte_identical() {
    on_both_stores(|backend| {
        let bucket = Bucket::new(backend);
        let dev = paged(&bucket);
        create(&dev, "ipm-db-v1.db", 2);
        let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
        conn.execute_batch(
            "CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 72)
             INSERT INTO blobs(b) SELECT randomblob(1 << 20) FROM c;",
        )
        .expect("blobs");
        drop(conn);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let (base, objects) = stored(&bucket, ".pack");
        assert!(objects >= 2, "a base of {base} bytes in {objects} object(s)");
        let server = fetched(&bucket);
        assert_eq!(sha256_of(&server.db("ipm-db-v1.db")), pinned(&bucket, "ipm-db"));
        // A row and the last blob change: v2's pack holds their pages, not the base's objects.
        touch(&dev, "ipm-db-v1.db", 400);
        let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
        conn.execute("UPDATE blobs SET b = randomblob(4096) || substr(b, 4097) WHERE id = 72", []).expect("blob");
        drop(conn);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let fetched = download(&server, &[]);
        assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
        let received = fetched["bytes"].as_u64().expect("bytes");
        assert!(received < 2 << 20, "received {received} bytes: {fetched}");
        let exported = bucket.version_bytes(&bucket.current_object("ipm-db")).expect("rebuilt");
        assert!(exported == std::fs::read(server.db("ipm-db-v2.db")).expect("read"), "export gives the same file");
    });
}

#[test]
fn pages_moved_by_a_vacuum_are_not_sent_again_and_a_page_size_change_starts_a_base() {
    let bucket = Bucket::new(Backend::S3);
    let dev = published(&bucket, 8);
    let server = fetched(&bucket);
    let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
    conn.execute_batch("DROP TABLE notes; VACUUM;").expect("vacuum");
    drop(conn);
    let size = std::fs::metadata(dev.db("ipm-db-v1.db")).expect("size").len();
    let (base, _) = stored(&bucket, ".pack");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let packs = stored(&bucket, ".pack").0 - base;
    assert!(packs * 10 <= size, "after a VACUUM the pack is {packs} bytes of {size}");
    download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
    // A shrinking file, then a new page size: each rebuilds exactly.
    let conn = Connection::open(dev.db("ipm-db-v2.db")).expect("db");
    conn.execute_batch("DELETE FROM t WHERE id % 2 = 0; VACUUM;").expect("shrink");
    drop(conn);
    dev.b2m(&["upload", "ipm-db"]).ok();
    download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v3.db")), pinned(&bucket, "ipm-db"));
    let conn = Connection::open(dev.db("ipm-db-v3.db")).expect("db");
    conn.execute_batch("PRAGMA page_size = 8192; VACUUM;").expect("page size");
    drop(conn);
    let (before, _) = stored(&bucket, ".pack");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let (after, _) = stored(&bucket, ".pack");
    assert!(after - before > size / 10, "a new page size starts a base ({} bytes)", after - before);
    download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v4.db")), pinned(&bucket, "ipm-db"));
}

#[test]
fn a_server_three_versions_behind_and_a_changed_local_file_rebuild_exactly() {
    let bucket = Bucket::new(Backend::S3);
    let dev = published(&bucket, 4);
    let server = fetched(&bucket);
    let (base, _) = stored(&bucket, ".pack");
    for (n, every) in [(1, 97), (2, 89), (3, 83)] {
        touch(&dev, &format!("ipm-db-v{n}.db"), every);
        dev.b2m(&["upload", "ipm-db"]).ok();
    }
    let packs = stored(&bucket, ".pack").0 - base;
    let fetched = download(&server, &[]);
    assert!(fetched["bytes"].as_u64().unwrap_or(u64::MAX) <= packs, "{fetched}: three packs weigh {packs}");
    assert_eq!(sha256_of(&server.db("ipm-db-v4.db")), pinned(&bucket, "ipm-db"));
    // The server's file changes; the next version replaces it (--force), lending what matches.
    server.insert("ipm-db-v4.db", "local row");
    touch(&dev, "ipm-db-v4.db", 71);
    let before = stored(&bucket, ".pack").0;
    dev.b2m(&["upload", "ipm-db"]).ok();
    let pack = stored(&bucket, ".pack").0 - before;
    let fetched = download(&server, &["--force"]);
    let received = fetched["bytes"].as_u64().unwrap_or(u64::MAX);
    // Beyond v5's pack, only the frames holding v4's copies of the pages the local row changed.
    let frames = 4 * 128 * 1024;
    assert!(
        received <= pack + frames,
        "{fetched}: the changed local file lends the pages it shares ({received} bytes for a pack of {pack})"
    );
    assert_eq!(sha256_of(&server.db("ipm-db-v5.db")), pinned(&bucket, "ipm-db"));
    assert!(!server.rows("ipm-db-v5.db").contains(&"local row".to_string()));
}

#[test]
fn a_damaged_pack_is_refused_and_nothing_is_swapped() {
    let bucket = Bucket::new(Backend::Local);
    let dev = published(&bucket, 4);
    let server = fetched(&bucket);
    let base = bucket.keys();
    touch(&dev, "ipm-db-v1.db", 50);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let pack = bucket.keys().into_iter().find(|k| k.ends_with(".pack") && !base.contains(k)).expect("v2's pack");
    let path = bucket.object_path(&pack);
    let mut bytes = std::fs::read(&path).expect("pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");
    let before = sha256_of(&server.db("ipm-db-v1.db"));
    server.b2m(&["download", "ipm-db"]).fails(1, "");
    assert_eq!(sha256_of(&server.db("ipm-db-v1.db")), before, "the old file is untouched");
    assert!(!server.db("ipm-db-v2.db").exists(), "nothing of v2 was placed");
    // A pack cut short is refused the same way.
    std::fs::write(&path, &bytes[..middle]).expect("truncate");
    server.b2m(&["download", "ipm-db"]).fails(1, "");
    assert_eq!(sha256_of(&server.db("ipm-db-v1.db")), before);
    // A version its pages cannot rebuild is a conflict, as an object that does not match its
    // sha256 is: a person decides.
    let row = server.status_row("ipm-db");
    assert_eq!(row["status"], "conflict", "{row}");
    assert!(row["detail"].as_str().is_some_and(|d| d.contains("ipm-db-v2.")), "{row}");
}

#[test]
fn gc_keeps_every_pack_and_recipe_a_kept_version_reads() {
    let bucket = Bucket::new(Backend::S3);
    let dev = published(&bucket, 2);
    for n in 1..=3 {
        touch(&dev, &format!("ipm-db-v{n}.db"), 200 + n);
        dev.b2m(&["upload", "ipm-db"]).ok();
    }
    // Keep only v4: its chain still reads v1's base and the packs of v2..v4.
    dev.b2m_env(&["gc", "--keep", "1"], &[("B2M_ORPHAN_AGE_SECS", "0")]).ok();
    let server = paged(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v4.db")), pinned(&bucket, "ipm-db"));
    assert_eq!(stored(&bucket, ".pack").1, 4, "v1's base and v2..v4's packs are kept");
}

#[test]
fn a_bucket_of_whole_versions_keeps_working_and_its_first_paged_publish_starts_a_base() {
    let bucket = Bucket::new(Backend::S3);
    // A bucket and its machines from before pages: versions stored whole.
    let whole = |p: &mut Project| p.env.push(("B2M_PAGES".into(), "0".into()));
    let mut dev = Project::new(&bucket);
    whole(&mut dev);
    dev.create_db("ipmdb", "ipm-db-v1.db", 20);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let mut server = Project::new(&bucket);
    whole(&mut server);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    assert_eq!((stored(&bucket, ".db").1, stored(&bucket, ".recipe").1), (1, 0));
    // The upgrade: the same machines, pages on by default.
    dev.env.clear();
    server.env.clear();
    dev.publish_row("ipm-db-v1.db", "paged");
    assert_eq!(stored(&bucket, ".recipe").1, 1);
    download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
    assert!(server.rows("ipm-db-v2.db").contains(&"paged".to_string()));
}

#[test]
fn export_rebuilds_any_version_with_no_project() {
    on_both_stores(|backend| {
        let bucket = Bucket::new(backend);
        let (dev, _server) = published_pair(&bucket, 30);
        let mut dev = dev;
        dev.env.push(("B2M_PAGES".into(), "1".into()));
        dev.publish_row("ipm-db-v1.db", "paged v2");
        touch(&dev, "ipm-db-v2.db", 3);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let outside = tempfile::tempdir().expect("dir");
        let export = |args: &[&str]| {
            let mut cmd = b2m_command(outside.path());
            cmd.args(["export", "ipm-db"]).args(args).args(["--remote", &bucket.url()]);
            if let Some(endpoint) = bucket.endpoint() {
                cmd.args(["--endpoint", &endpoint, "--region", "us-west-004"]);
            }
            Run::from(cmd.output().expect("run"))
        };
        export(&["v3.db"]).ok();
        assert_eq!(sha256_of(&outside.path().join("v3.db")), pinned(&bucket, "ipm-db"));
        export(&["v1.db", "--version", "1"]).ok();
        assert_eq!(rows_of(&outside.path().join("v1.db")).len(), 30, "v1, stored whole");
        export(&["v2.db", "--version", "2"]).ok();
        assert!(rows_of(&outside.path().join("v2.db")).contains(&"paged v2".to_string()));
        export(&["v2.db", "--version", "2"]).fails(1, "exists");
        export(&["v9.db", "--version", "9"]).fails(1, "has no v9");
        assert!(!outside.path().join(".b2m").exists(), "no local state left behind");
    });
}

/// Killed at each step of a publish and of a fetch of pages: the bucket and the server hold the
/// old version or the new, never a mix, and the next command finishes the job.
#[test]
fn a_crash_at_each_step_of_a_paged_publish_or_fetch_leaves_old_or_new() {
    for point in ["pages-after-pack", "pages-after-recipe", "before-commit", "after-commit", "after-local-manifest"] {
        let bucket = Bucket::new(Backend::S3);
        let dev = published(&bucket, 2);
        let v1 = pinned(&bucket, "ipm-db");
        touch(&dev, "ipm-db-v1.db", 30);
        let run = dev.b2m_env(&["upload", "ipm-db"], &[("B2M_FAILPOINT", point)]);
        assert_ne!(run.code, 0, "{point}: the failpoint must kill the upload");
        let committed = pinned(&bucket, "ipm-db") != v1;
        assert_eq!(committed, point == "after-commit" || point == "after-local-manifest", "{point}");
        let expected = if committed { "up_to_date" } else { "ready_to_upload" };
        assert_eq!(dev.status_of("ipm-db"), expected, "after a crash at {point}");
        if !committed {
            dev.b2m(&["upload", "ipm-db"]).ok();
        }
        assert_eq!(dev.status_of("ipm-db"), "up_to_date", "{point}");
        let server = paged(&bucket);
        server.b2m(&["fetch-db-toml"]).ok();
        download(&server, &[]);
        assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"), "{point}");
    }
    for point in ["pages-after-frames", "before-install", "after-install"] {
        let bucket = Bucket::new(Backend::S3);
        let dev = published(&bucket, 2);
        let server = fetched(&bucket);
        touch(&dev, "ipm-db-v1.db", 30);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let run = server.b2m_env(&["download", "ipm-db"], &[("B2M_FAILPOINT", point)]);
        assert_ne!(run.code, 0, "{point}: the failpoint must kill the download");
        let files = server.files();
        let named = if point == "after-install" { "ipm-db-v2.db" } else { "ipm-db-v1.db" };
        assert!(files.contains(&named.to_string()), "{point}: {files:?}");
        server.b2m(&["download", "ipm-db"]).ok();
        assert_eq!(server.files(), vec!["db.toml", "ipm-db-v2.db"], "{point}: temp files cleared, one file");
        assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"), "{point}");
    }
}

/// gc run (with no grace period) while a publish of pages is paused at each of its steps never
/// removes what the published version reads: it waits for the database's lease.
#[test]
fn gc_between_the_steps_of_a_paged_publish_removes_nothing_it_needs() {
    for point in ["pages-after-pack", "pages-after-recipe", "before-commit"] {
        let bucket = Bucket::new(Backend::S3);
        let dev = published(&bucket, 2);
        touch(&dev, "ipm-db-v1.db", 30);
        let mut publish = dev.command();
        publish.args(["upload", "ipm-db"]).env("B2M_FAILPOINT", format!("{point}:pause=1500"));
        let publish = publish.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("upload");
        std::thread::sleep(std::time::Duration::from_millis(700));
        // From another machine: its own local lock, only the bucket's lease between them.
        let other = paged(&bucket);
        let gc = other.b2m_env(&["gc", "--keep", "1"], &[("B2M_ORPHAN_AGE_SECS", "0")]);
        let published = publish.wait_with_output().expect("upload");
        assert!(published.status.success(), "{point}: {}", String::from_utf8_lossy(&published.stderr));
        gc.ok();
        other.b2m_env(&["gc", "--keep", "1"], &[("B2M_ORPHAN_AGE_SECS", "0")]).ok();
        let server = paged(&bucket);
        server.b2m(&["fetch-db-toml"]).ok();
        download(&server, &[]);
        assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"), "{point}");
    }
}

/// The machine that published a version keeps its own file, whose header differs from the
/// published one in the bytes that record no content (here its journal mode): it still lends
/// every page it holds, and the first rebuild is right (no second one from the bucket alone).
#[test]
fn the_publishers_own_file_lends_its_pages_whatever_its_header_says() {
    let bucket = Bucket::new(Backend::Local);
    let dev = published(&bucket, 4);
    let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).expect("wal");
    drop(conn);
    assert_eq!(dev.status_of("ipm-db"), "up_to_date");
    let lent = |run: &Run| {
        run.ok();
        assert!(!run.stderr.contains("did not add up"), "{}", run.stderr);
        json(run)["bytes"].as_u64().expect("bytes")
    };
    // The version it holds, exported here: every page but the first is its own.
    let out = dev.path().join("v1.db");
    let received = lent(&dev.b2m(&["--json", "export", "ipm-db", &out.to_string_lossy()]));
    assert!(received < 128 << 10, "received {received} bytes (its first frame) for the version this machine holds");
    assert_eq!(sha256_of(&out), pinned(&bucket, "ipm-db"));
    // Another machine changes one row in place; this one follows.
    let other = fetched(&bucket);
    let conn = Connection::open(other.db("ipm-db-v1.db")).expect("db");
    conn.execute("UPDATE t SET v = replace(v, 'row 7 ', 'row 8 ') WHERE id = 7", []).expect("update");
    drop(conn);
    other.b2m(&["upload", "ipm-db"]).ok();
    dev.b2m(&["fetch-db-toml"]).ok();
    let received = lent(&dev.b2m(&["--json", "download", "ipm-db"]));
    assert!(received < 64 << 10, "received {received} bytes for one changed row");
    assert_eq!(sha256_of(&dev.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
}

/// A file past 1 GiB holds SQLite's lock-byte page (the page at byte 2^30, which SQLite never
/// uses): it is a page like any other here, and the rebuilt file is byte-identical, cold and
/// after a change past it.
#[test]
fn a_file_past_the_lock_byte_page_rebuilds_byte_identical() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
    conn.execute_batch(
        "PRAGMA page_size = 65536;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE filler(b BLOB);
         INSERT INTO filler(b) VALUES (zeroblob(520 * 1024 * 1024)), (zeroblob(520 * 1024 * 1024));
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)
         INSERT INTO t(v) SELECT 'row ' || x || ' ' || hex(randomblob(100)) FROM c;",
    )
    .expect("fill");
    drop(conn);
    let size = std::fs::metadata(dev.db("ipm-db-v1.db")).expect("size").len();
    assert!(size > (1 << 30) + (1 << 20), "past the lock-byte page: {size}");
    dev.add_entry("ipmdb", "ipm-db-v1.db");
    dev.b2m(&["upload", "ipm-db"]).ok();
    let server = fetched(&bucket);
    assert_eq!(sha256_of(&server.db("ipm-db-v1.db")), pinned(&bucket, "ipm-db"));
    // Rows past the lock-byte page change; the server receives their pages only.
    let conn = Connection::open(dev.db("ipm-db-v1.db")).expect("db");
    conn.execute("UPDATE t SET v = v || '!' WHERE id % 50 = 0", []).expect("update");
    drop(conn);
    dev.b2m(&["upload", "ipm-db"]).ok();
    let fetched = download(&server, &[]);
    assert_eq!(sha256_of(&server.db("ipm-db-v2.db")), pinned(&bucket, "ipm-db"));
    assert!(fetched["bytes"].as_u64().expect("bytes") < 4 << 20, "{fetched}");
}

/// A machine that does not know the parent's page hashes (its `.b2m/` is new: a fresh clone, a
/// rebuilt server) reads them from the parent's recipes, with no listing, and still sends only
/// what changed, not a new base.
#[test]
fn a_publish_without_the_parents_hashes_here_reads_them_from_its_recipes() {
    let bucket = Bucket::new(Backend::S3);
    let dev = published(&bucket, 8);
    touch(&dev, "ipm-db-v1.db", 200);
    dev.b2m(&["upload", "ipm-db"]).ok();
    std::fs::remove_dir_all(dev.path().join(".b2m/pages")).expect("forget the page hashes");
    let size = std::fs::metadata(dev.db("ipm-db-v2.db")).expect("size").len();
    let (before, _) = stored(&bucket, ".pack");
    touch(&dev, "ipm-db-v2.db", 150);
    let run = dev.b2m(&["-v", "upload", "ipm-db"]);
    run.ok();
    let (after, packs) = stored(&bucket, ".pack");
    assert_eq!(packs, 3, "the base and the packs of v2 and v3");
    assert!((after - before) * 10 < size, "v3's pack is {} bytes of a {size}-byte db", after - before);
    let server = fetched(&bucket);
    assert_eq!(sha256_of(&server.db("ipm-db-v3.db")), pinned(&bucket, "ipm-db"));
}
