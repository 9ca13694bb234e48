//! A full disk: the command fails with one clear line, and nothing is lost or half-written.

use std::process::Command;

use crate::common::*;

/// A small tmpfs, mounted for one test (needs root, as CI and the dev machines have).
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "this test mounts a {mib} MiB tmpfs to fill a disk: run it as root (`mount -t tmpfs` failed)");
        TinyDisk { dir }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn fill(p: &Project, file: &str) {
    let conn = rusqlite::Connection::open(p.db(file)).expect("db");
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000)
         INSERT INTO t(v) SELECT hex(randomblob(2000)) FROM c;",
    )
    .expect("fill");
}

#[test]
fn a_full_disk_fails_cleanly_and_loses_nothing() {
    let bucket = Bucket::new(Backend::Local);
    let dev = Project::new(&bucket);
    fill(&dev, "ipm-db-v1.db");
    dev.add_entry("ipmdb", "ipm-db-v1.db");
    dev.b2m(&["upload", "ipm-db"]).ok();

    // A server on a 28 MiB disk: v1 (16 MiB) fits beside the compressed pages it is rebuilt from,
    // a second copy does not.
    let disk = TinyDisk::mount(28);
    let server = Project::in_folder(disk.dir.path(), &bucket.url(), None);
    server.b2m(&["fetch-db-toml"]).ok();
    server.b2m(&["download", "ipm-db"]).ok();
    let v1 = std::fs::read(server.db("ipm-db-v1.db")).expect("v1");

    dev.publish_row("ipm-db-v1.db", "more");
    let manifest = server.manifest_text();
    let run = server.b2m(&["download", "ipm-db"]);
    run.fails(1, "No space left on device");
    assert!(run.stderr.contains("free some disk space"), "{}", run.stderr);
    assert_eq!(server.files(), vec!["db.toml", "ipm-db-v1.db"], "no partial download left");
    assert_eq!(server.manifest_text(), manifest);
    assert_eq!(std::fs::read(server.db("ipm-db-v1.db")).expect("v1"), v1, "the old file is untouched");
}

#[test]
fn an_upload_without_room_for_its_snapshot_sends_nothing() {
    let bucket = Bucket::new(Backend::Local);
    let disk = TinyDisk::mount(40);
    let dev = Project::in_folder(disk.dir.path(), &bucket.url(), None);
    fill(&dev, "ipm-db-v1.db");
    dev.add_entry("ipmdb", "ipm-db-v1.db");
    // Leave less room than the 16 MiB snapshot needs.
    let free = 40 * 1024 * 1024 - std::fs::metadata(dev.db("ipm-db-v1.db")).expect("db").len() as usize;
    std::fs::write(disk.dir.path().join("ballast"), vec![0u8; free.saturating_sub(6 << 20)]).expect("ballast");
    let run = dev.b2m(&["upload", "ipm-db"]);
    run.fails(1, "No space left on device");
    assert!(run.stderr.contains("free some disk space"), "{}", run.stderr);
    assert!(bucket.keys().is_empty(), "nothing sent: {:?}", bucket.keys());
    assert_eq!(dev.files(), vec!["db.toml", "ipm-db-v1.db"]);
    assert_eq!(dev.rows("ipm-db-v1.db").len(), 4000, "the database is untouched");
    assert_eq!(dev.status_of("ipm-db"), "new_local");
}
