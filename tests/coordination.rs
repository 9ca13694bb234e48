//! Many machines, one bucket: races of real processes on every kind of store, leases, doctor.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const RACERS: usize = 6;
const ROUNDS: usize = 3;

/// `RACERS` project folders on one bucket, with `extra` in each b2m.toml's `[remote]`.
fn fleet(url: &str, endpoint: Option<String>, extra: &str) -> Vec<Project> {
    (0..RACERS)
        .map(|_| {
            let p = Project::with_remote(url, endpoint.clone());
            p.write_config(extra);
            p
        })
        .collect()
}

fn current_file(p: &Project) -> String {
    let text = p.manifest_text();
    let start = text.find("ipm-db-v").expect("ipm-db in db.toml");
    text[start..].split('"').next().expect("file").to_string()
}

/// Publishes v1 from the first project; the others fetch it.
fn seed(projects: &[Project]) {
    let first = &projects[0];
    first.create_db("ipmdb", "ipm-db-v1.db", 2);
    first.b2m(&["upload", "ipm-db"]).ok();
    for p in &projects[1..] {
        p.b2m(&["fetch-db-toml"]).ok();
        p.b2m(&["download", "ipm-db"]).ok();
    }
}

/// One round: everyone at the current version adds rows and uploads at the same instant.
/// Exactly one publishes the next version, with only its rows; the others are refused.
fn race_round(projects: &[Project], bucket_file: impl Fn(&str) -> Option<Vec<u8>>, round: usize) {
    for p in projects {
        p.b2m(&["download", "ipm-db", "--force"]).ok();
        assert_eq!(p.status_of("ipm-db"), "up_to_date");
    }
    let file = current_file(&projects[0]);
    let version: u64 = file.trim_start_matches("ipm-db-v").trim_end_matches(".db").parse().expect("version");
    let base_rows = projects[0].rows(&file);
    for (i, p) in projects.iter().enumerate() {
        assert_eq!(current_file(p), file);
        p.insert(&file, &format!("round {round} racer {i}"));
    }
    let children: Vec<_> = projects
        .iter()
        .map(|p| {
            p.command()
                .args(["upload", "ipm-db"])
                .env("B2M_LEASE_WAIT_SECS", "90")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| Run::from(c.wait_with_output().expect("wait"))).collect();
    let winners: Vec<usize> = runs.iter().enumerate().filter(|(_, r)| r.code == 0).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "round {round}: exactly one winner expected: {runs:#?}");
    let winner = winners[0];
    for (i, run) in runs.iter().enumerate().filter(|(i, _)| *i != winner) {
        assert_eq!(run.code, 1, "racer {i}: {run:?}");
        assert!(run.stderr.contains("outdated_db"), "racer {i} should be refused as outdated_db: {}", run.stderr);
        assert_eq!(projects[i].status_of("ipm-db"), "outdated_db", "racer {i}");
    }
    let next = format!("ipm-db-v{}.db", version + 1);
    let manifest = String::from_utf8(bucket_file("db.toml").expect("db.toml")).expect("utf8");
    let key = pinned_object(&manifest, "ipm-db").expect("db.toml pins ipm-db");
    assert!(key.starts_with(&format!("dbs/ipm-db/ipm-db-v{}.", version + 1)), "db.toml pins {next}, no version beyond: {key}");
    let published = version_bytes(&projects[0], &bucket_file, &key).expect("the next version");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("x.db"), published).expect("write");
    let mut expected = base_rows;
    expected.push(format!("round {round} racer {winner}"));
    assert_eq!(rows_of(&dir.path().join("x.db")), expected, "round {round}: v{} holds only the winner's rows", version + 1);
    assert!(manifest.contains(&format!("ipmdb = \"{next}\"")), "{manifest}");
}

fn race(projects: &[Project], bucket_file: impl Fn(&str) -> Option<Vec<u8>>) {
    race_rounds(projects, bucket_file, ROUNDS);
}

/// Seeds v1, then runs `rounds` racing rounds: each has exactly one winner (the compatibility
/// suite runs this on every server).
pub(crate) fn race_rounds(projects: &[Project], bucket_file: impl Fn(&str) -> Option<Vec<u8>>, rounds: usize) {
    seed(projects);
    for round in 0..rounds {
        race_round(projects, &bucket_file, round);
    }
}

#[test]
fn racing_uploads_on_the_local_folder_store_publish_exactly_once() {
    let bucket = Bucket::new(Backend::Local);
    race(&fleet(&bucket.url(), None, ""), |k| bucket.read(k));
}

#[test]
fn racing_uploads_in_lease_mode_on_the_local_folder_store_publish_exactly_once() {
    let bucket = Bucket::new(Backend::Local);
    race(&fleet(&bucket.url(), None, "locking = \"lease\"\n"), |k| bucket.read(k));
}

#[test]
fn racing_uploads_in_lease_mode_on_s3_publish_exactly_once() {
    let bucket = Bucket::new(Backend::S3);
    race(&fleet(&bucket.url(), bucket.endpoint(), "locking = \"lease\"\n"), |k| bucket.read(k));
}

/// Half the fleet ran `b2m doctor` (which records the bucket's protocol in `bucket.json`), half
/// did not: every machine still follows one protocol, so each round has exactly one winner.
/// `expected` is the protocol the probe must find, when the server's behaviour is certain.
fn race_mixed(projects: &[Project], expected: Option<&str>, bucket_file: impl Fn(&str) -> Option<Vec<u8>>) {
    let mut last = serde_json::Value::Null;
    for p in projects.iter().step_by(2) {
        let run = p.b2m(&["doctor", "--json"]);
        run.ok();
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("doctor JSON");
        if let Some(expected) = expected {
            assert_eq!(report["protocol"], expected, "{report}");
        }
        last = report["protocol"].clone();
    }
    let record: serde_json::Value = serde_json::from_slice(&bucket_file("bucket.json").expect("bucket.json")).expect("json");
    assert_eq!(record["protocol"], last, "the bucket records the last probe: {record}");
    race(projects, bucket_file);
}

#[test]
fn machines_that_ran_doctor_and_machines_that_did_not_race_safely_on_an_atomic_store() {
    let bucket = Bucket::new(Backend::Local);
    race_mixed(&fleet(&bucket.url(), None, "locking = \"auto\"\n"), Some("conditional"), |k| bucket.read(k));
}

#[test]
fn machines_that_ran_doctor_and_machines_that_did_not_race_safely_on_s3s_fs() {
    let bucket = Bucket::new(Backend::S3);
    race_mixed(&fleet(&bucket.url(), bucket.endpoint(), "locking = \"auto\"\n"), Some("lease"), |k| bucket.read(k));
}

#[test]
fn machines_that_ran_doctor_and_machines_that_did_not_race_safely_on_moto() {
    let moto = MotoServer::start();
    let projects = fleet(&format!("s3://{BUCKET}/{PREFIX}"), Some(moto.endpoint.clone()), "locking = \"auto\"\n");
    // moto's `If-Match` is atomic in some probes and not in others: whatever the bucket records,
    // every machine follows it, and the leases hold either way.
    race_mixed(&projects, None, |key| fetch_object(&moto.endpoint, key));
}

#[test]
fn racing_uploads_in_lease_mode_on_moto_publish_exactly_once() {
    let moto = MotoServer::start();
    let projects = fleet(&format!("s3://{BUCKET}/{PREFIX}"), Some(moto.endpoint.clone()), "locking = \"lease\"\n");
    race(&projects, |key| fetch_object(&moto.endpoint, key));
}

#[test]
fn a_local_locking_mode_that_contradicts_the_bucket_is_a_configuration_error() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.write_config("locking = \"conditional\"\n");
    p.b2m(&["upload", "ipm-db"]).fails(2, "contradicts the bucket");
    assert!(bucket.keys().is_empty(), "nothing sent: {:?}", bucket.keys());
    // doctor probes the folder store (atomic) and records it; now the setting agrees.
    p.b2m(&["doctor"]).ok();
    p.b2m(&["upload", "ipm-db"]).ok();
    p.write_config("locking = \"lease\"\n");
    p.insert("ipm-db-v1.db", "x");
    p.b2m(&["upload", "ipm-db"]).fails(2, "records `conditional`");
}

/// Reads an object from moto through boto3 (moto keeps objects in memory, not in files).
fn fetch_object(endpoint: &str, key: &str) -> Option<Vec<u8>> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/moto");
    let script = format!(
        "import boto3,sys\nc=boto3.client('s3',endpoint_url='{endpoint}',region_name='us-east-1',aws_access_key_id='x',aws_secret_access_key='y')\ntry:\n sys.stdout.buffer.write(c.get_object(Bucket='{BUCKET}',Key='{PREFIX}/{key}')['Body'].read())\nexcept c.exceptions.NoSuchKey:\n sys.exit(3)\n"
    );
    let out = std::process::Command::new(venv.join("bin/python")).args(["-c", &script]).output().expect("python");
    match out.status.code() {
        Some(0) => Some(out.stdout),
        Some(3) => None,
        _ => panic!("reading {key} from moto failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn a_held_lease_shows_in_status_blocks_others_and_unlock_force_says_whose() {
    let bucket = Bucket::new(Backend::S3);
    let a = Project::new(&bucket);
    a.write_config("locking = \"lease\"\n");
    a.create_db("ipmdb", "ipm-db-v1.db", 1);
    a.b2m(&["upload", "ipm-db"]).ok();
    let b = Project::new(&bucket);
    b.write_config("locking = \"lease\"\n");
    b.b2m(&["fetch-db-toml"]).ok();
    b.b2m(&["download", "ipm-db"]).ok();

    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    a.b2m_env(&["lock", "ipm-db"], &[("USER", "alice")]).ok();
    let row = b.status_row("ipm-db");
    assert!(row["locked_by"].as_str().is_some_and(|s| s.starts_with("alice@") && s.contains("lock")), "{row}");

    // Someone else must wait, and gives up after the bound with a clear message.
    b.insert("ipm-db-v1.db", "b");
    let started = Instant::now();
    let run = b.b2m_env(&["upload", "ipm-db"], &[("B2M_LEASE_WAIT_SECS", "2"), ("USER", &user)]);
    run.fails(1, "held by alice@");
    assert!(run.stderr.contains("unlock ipm-db --force"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));

    // Unlocking someone else's lease needs --force, and says whose it was.
    b.b2m(&["unlock", "ipm-db"]).fails(1, "not by you");
    let run = b.b2m(&["unlock", "ipm-db", "--force"]);
    run.ok();
    assert!(run.stderr.contains("held by alice@"), "{}", run.stderr);
    assert_eq!(b.status_row("ipm-db")["locked_by"], serde_json::Value::Null);
    b.b2m(&["upload", "ipm-db"]).ok();
}

/// A project using `locking` (after `b2m doctor`, which `conditional` needs), which published
/// `ipm-db` v1.
fn published_with_locking(bucket: &Bucket, locking: &str) -> Project {
    let p = Project::new(bucket);
    if locking == "conditional" {
        p.b2m(&["doctor"]).ok();
    }
    p.write_config(&format!("locking = \"{locking}\"\n"));
    p.create_db("ipmdb", "ipm-db-v1.db", 1);
    p.b2m(&["upload", "ipm-db"]).ok();
    p
}

#[test]
fn a_manual_lock_is_never_borrowed_by_another_process_of_the_same_user() {
    let bucket = Bucket::new(Backend::Local);
    let (a, b) = published_pair(&bucket, 1);
    // Same user, same host: two checkouts (or cron beside a person, or containers all root@same).
    let run = a.b2m(&["lock", "ipm-db", "--json"]);
    run.ok();
    let token = serde_json::from_str::<serde_json::Value>(&run.stdout).expect("lock JSON")["id"].as_str().expect("id").to_string();
    assert!(run.stderr.contains(&format!("B2M_LEASE_TOKEN={token}")), "{}", run.stderr);
    a.insert("ipm-db-v1.db", "a");
    b.insert("ipm-db-v1.db", "b");
    let racers: Vec<_> = [&a, &b]
        .iter()
        .map(|p| {
            p.command()
                .args(["upload", "ipm-db"])
                .env("B2M_LEASE_WAIT_SECS", "2")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for racer in racers {
        Run::from(racer.wait_with_output().expect("wait")).fails(1, "is held by");
    }
    assert!(bucket.manifest().contains("ipmdb = \"ipm-db-v1.db\""), "nothing published under someone else's lock");
    // The lock's holder publishes under it with its token; locking again with it is a no-op.
    a.b2m_env(&["lock", "ipm-db"], &[("B2M_LEASE_TOKEN", &token), ("B2M_LEASE_WAIT_SECS", "2")]).ok();
    a.b2m_env(&["upload", "ipm-db"], &[("B2M_LEASE_TOKEN", &token), ("B2M_LEASE_WAIT_SECS", "2")]).ok();
    assert!(bucket.manifest().contains("ipmdb = \"ipm-db-v2.db\""));
    a.b2m(&["unlock", "ipm-db"]).ok();
    assert!(bucket.keys().iter().all(|k| !k.starts_with("locks/")), "{:?}", bucket.keys());
    b.b2m(&["upload", "ipm-db"]).fails(1, "outdated_db");
}

#[test]
fn orphans_are_listed_read_only_and_removed_only_when_old_enough() {
    for backend in [Backend::Local, Backend::S3] {
        let bucket = Bucket::new(backend);
        let dev = Project::new(&bucket);
        dev.create_db("ipmdb", "ipm-db-v1.db", 1);
        dev.b2m(&["upload", "ipm-db"]).ok();
        let v1 = bucket.stored_key(&bucket.current_object("ipm-db"));
        // An upload that died before its commit left a v2 and its metadata behind.
        let orphan = format!("dbs/ipm-db/ipm-db-v2.{}.db", "ab".repeat(32));
        std::fs::write(bucket.object_path(&orphan), b"half an upload").expect("orphan");
        std::fs::write(bucket.object_path(&meta_key_of(&orphan)), b"{}").expect("orphan meta");
        let keys = bucket.keys();
        // Young orphans are left alone: they may be a publish about to commit.
        let run = dev.b2m(&["gc", "--json"]);
        run.ok();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&run.stdout).expect("json")["removed"], serde_json::json!([]));
        assert_eq!(bucket.keys(), keys);
        let old = [("B2M_ORPHAN_AGE_SECS", "0")];
        std::thread::sleep(std::time::Duration::from_millis(50));
        let run = dev.b2m_env(&["gc", "--dry-run", "--json"], &old);
        run.ok();
        let found: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        let listed: Vec<&str> = found["removed"].as_array().expect("list").iter().filter_map(|g| g["key"].as_str()).collect();
        assert_eq!(listed, vec![orphan.clone(), meta_key_of(&orphan)]);
        assert_eq!(bucket.keys(), keys, "--dry-run changes nothing");
        assert_eq!(dev.status_of("ipm-db"), "up_to_date");
        // A published history is never garbage: v1 stays reachable from v2 through its parent.
        dev.publish_row("ipm-db-v1.db", "x");
        let run = dev.b2m_env(&["gc", "--json"], &old);
        run.ok();
        let found: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        assert_eq!(found["removed"].as_array().map(Vec::len), Some(2), "{found}");
        assert!(!bucket.keys().contains(&orphan));
        assert!(bucket.keys().contains(&v1), "the parent of the pinned version is history, not garbage");
        assert!(bucket.keys().contains(&bucket.stored_key(&bucket.current_object("ipm-db"))));
    }
}

#[test]
fn claim_once_has_exactly_one_winner_in_both_protocols() {
    use b2m::coord::{Claim, LeaseConfig, Leases, Protocol, claim_once};
    use b2m::store::{LocalStore, Store};
    use std::sync::Arc;
    for protocol in [Protocol::Conditional, Protocol::Lease] {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path()).expect("store"));
        let out = b2m::output::Output::new(false, true, 0);
        let claims: Vec<Claim> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let leases = Leases::new(store.clone(), out.clone(), LeaseConfig::default());
                    let store = store.clone();
                    s.spawn(move || {
                        claim_once(store.as_ref(), &leases, protocol, "changesets/x.json", format!("claimer {i}").as_bytes())
                            .expect("claim")
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("join")).collect()
        });
        let won: Vec<_> = claims.iter().filter(|c| **c == Claim::Claimed).collect();
        assert_eq!(won.len(), 1, "{protocol:?}: {claims:?}");
        let body = store.get("changesets/x.json").expect("get").expect("claimed").body;
        for c in &claims {
            if let Claim::Taken(b) = c {
                assert_eq!(b, &body);
            }
        }
    }
}

/// Starts `b2m upload ipm-db` holding its lease with a TTL of `ttl_secs`, pausing `pause_ms`
/// just before the commit.
fn slow_upload(p: &Project, ttl_secs: u32, pause_ms: u32) -> std::process::Child {
    b2m_command(p.path())
        .args(["upload", "ipm-db"])
        .env("B2M_LEASE_TTL_SECS", ttl_secs.to_string())
        .env("B2M_FAILPOINT", format!("before-commit:pause={pause_ms}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn a_lease_is_renewed_while_its_holder_works_past_the_ttl() {
    let bucket = Bucket::new(Backend::S3);
    let (a, b) = published_pair(&bucket, 1);
    for p in [&a, &b] {
        p.write_config("locking = \"lease\"\n");
    }
    a.insert("ipm-db-v1.db", "slow");
    // A holds the lease with a 1 s TTL and pauses 13 s before its commit: past the TTL and the
    // 10 s clock allowance, so only renewals keep the lease alive.
    let slow = slow_upload(&a, 1, 13_000);
    std::thread::sleep(Duration::from_millis(12_500));
    b.insert("ipm-db-v1.db", "impatient");
    let run = b.b2m_env(&["upload", "ipm-db"], &[("B2M_LEASE_WAIT_SECS", "0")]);
    run.fails(1, "is held by");
    Run::from(slow.wait_with_output().expect("wait")).ok();
    assert_eq!(b.status_of("ipm-db"), "outdated_db");
}

#[test]
fn an_expired_lease_of_another_machine_is_taken_over() {
    for locking in ["conditional", "lease"] {
        let bucket = Bucket::new(Backend::Local);
        let a = published_with_locking(&bucket, locking);
        let lease = serde_json::json!({
            "id": "20200101T000000.000000Z-gone", "owner": "bob@elsewhere", "host": "elsewhere", "machine": "other-boot/pid:[1]",
            "pid": 4242, "pid_start": 1, "operation": "upload", "state": "held",
            "acquired_at": "2020-01-01T00:00:00.000Z", "expires_at": "2020-01-01T00:01:00.000Z"
        });
        let key = "locks/ipm-db/20200101T000000.000000Z-gone.json";
        std::fs::create_dir_all(bucket.object_path(key).parent().expect("parent")).expect("locks dir");
        std::fs::write(bucket.object_path(key), serde_json::to_vec(&lease).expect("json")).expect("stale lease");
        assert_eq!(a.status_row("ipm-db")["locked_by"], serde_json::Value::Null, "an expired lease holds nothing");
        a.insert("ipm-db-v1.db", "x");
        let started = Instant::now();
        a.b2m_env(&["upload", "ipm-db"], &[("B2M_LEASE_WAIT_SECS", "5")]).ok();
        assert!(started.elapsed() < Duration::from_secs(5), "{locking}: taken over at once");
        assert!(bucket.keys().iter().all(|k| !k.starts_with("locks/")), "{locking}: {:?}", bucket.keys());
    }
}

#[test]
fn a_holder_whose_lease_was_removed_does_not_commit() {
    for locking in ["conditional", "lease"] {
        let bucket = Bucket::new(Backend::Local);
        let (a, b) = published_pair(&bucket, 1);
        if locking == "conditional" {
            a.b2m(&["doctor"]).ok();
        }
        for p in [&a, &b] {
            p.write_config(&format!("locking = \"{locking}\"\n"));
        }
        a.insert("ipm-db-v1.db", "a");
        let slow = slow_upload(&a, 2, 3_000);
        std::thread::sleep(Duration::from_millis(1500));
        let run = b.b2m(&["unlock", "ipm-db", "--force"]);
        run.ok();
        assert!(run.stderr.contains("removed the lease"), "{locking}: {}", run.stderr);
        Run::from(slow.wait_with_output().expect("wait")).fails(1, "was lost");
        let manifest = String::from_utf8(bucket.read("db.toml").expect("db.toml")).expect("utf8");
        assert!(manifest.contains("ipm-db-v1.db"), "{locking}: nothing published: {manifest}");
        assert_eq!(a.status_of("ipm-db"), "ready_to_upload", "{locking}");
    }
}

#[test]
fn on_a_versioned_bucket_b2m_leaves_no_hidden_versions_of_its_leases() {
    // Backblaze B2 keeps every version: a DELETE only hides one. moto with versioning on does the same.
    let moto = MotoServer::start();
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/moto");
    let client = format!(
        "import boto3,json\nc=boto3.client('s3',endpoint_url='{}',region_name='us-east-1',aws_access_key_id='x',aws_secret_access_key='y')\n",
        moto.endpoint
    );
    let python = |code: &str| {
        let out = std::process::Command::new(venv.join("bin/python")).args(["-c", &format!("{client}{code}")]).output().expect("python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    python(&format!("c.put_bucket_versioning(Bucket='{BUCKET}',VersioningConfiguration={{'Status':'Enabled'}})"));
    let p = Project::with_remote(&format!("s3://{BUCKET}/{PREFIX}"), Some(moto.endpoint.clone()));
    // A short TTL, so a slow upload also renews (each renewal is one more version).
    p.create_db("ipmdb", "ipm-db-v1.db", 2);
    p.b2m_env(&["upload", "ipm-db"], &[("B2M_LEASE_TTL_SECS", "1"), ("B2M_FAILPOINT", "before-commit:pause=1200")]).ok();
    p.publish_row("ipm-db-v1.db", "x");
    p.b2m(&["lock", "ipm-db"]).ok();
    p.b2m(&["unlock", "ipm-db"]).ok();
    let report = p.b2m(&["doctor", "--json"]);
    report.ok();
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("doctor JSON");
    assert_eq!(report["retention"]["versioning"], "Enabled", "{report}");
    let versions = python(&format!(
        "r=c.list_object_versions(Bucket='{BUCKET}',Prefix='{PREFIX}/locks/')\nprint(json.dumps([v['Key'] for v in r.get('Versions',[])+r.get('DeleteMarkers',[])]))"
    ));
    assert_eq!(versions.trim(), "[]", "hidden versions of leases and probes were left behind");
}
