//! `b2m init` and `b2m demo`: the first commands a person runs.

use crate::common::*;

#[test]
fn init_sets_up_a_project_that_works_and_can_rerun() {
    let dir = tempfile::tempdir().expect("dir");
    let run = Run::from(b2m_command(dir.path()).arg("init").output().expect("run"));
    run.ok();
    for path in ["b2m.toml", "db/all_dbs/db.toml", "changeset/scripts", "changeset/dbs", "changeset/logs", ".b2m-bucket", ".gitignore"] {
        assert!(dir.path().join(path).exists(), "{path} missing");
    }
    let gitignore = std::fs::read_to_string(dir.path().join(".gitignore")).expect("gitignore");
    assert!(gitignore.contains(".b2m/"));
    // The new project is usable straight away.
    let conn = rusqlite::Connection::open(dir.path().join("db/all_dbs/ipm-db-v1.db")).expect("db");
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('x');").expect("rows");
    let manifest = dir.path().join("db/all_dbs/db.toml");
    let text = std::fs::read_to_string(&manifest).expect("db.toml").replace("[db]\n", "[db]\nipmdb = \"ipm-db-v1.db\"\n");
    std::fs::write(&manifest, text).expect("write");
    Run::from(b2m_command(dir.path()).args(["upload", "ipm-db"]).output().expect("run")).ok();
    let bucket_manifest = std::fs::read_to_string(dir.path().join(".b2m-bucket/db.toml")).expect("bucket db.toml");
    let pinned = pinned_object(&bucket_manifest, "ipm-db").expect("pinned");
    assert!(dir.path().join(".b2m-bucket").join(recipe_key_of(&pinned)).is_file(), "{pinned} is stored as pages");
    // A rerun keeps what exists and adds no duplicate .gitignore lines.
    let config = std::fs::read_to_string(dir.path().join("b2m.toml")).expect("b2m.toml");
    Run::from(b2m_command(dir.path()).arg("init").output().expect("run")).ok();
    assert_eq!(std::fs::read_to_string(dir.path().join("b2m.toml")).expect("b2m.toml"), config);
    assert_eq!(std::fs::read_to_string(dir.path().join(".gitignore")).expect("gitignore"), gitignore);
    Run::from(b2m_command(dir.path()).args(["init", "--remote", "ftp://x"]).output().expect("run")).fails(2, "ftp://x");
}

#[test]
fn the_demo_runs_the_main_job_end_to_end() {
    let dir = tempfile::tempdir().expect("dir");
    let demo = dir.path().join("demo");
    let run = Run::from(b2m_command(dir.path()).args(["demo", &demo.display().to_string()]).output().expect("run"));
    run.ok();
    for step in ["new_local", "missing_local", "outdated_db", "ready_to_upload", "up_to_date"] {
        assert!(run.stdout.contains(step), "demo never showed {step}:\n{}", run.stdout);
    }
    let manifest = std::fs::read_to_string(demo.join("server/db/all_dbs/db.toml")).expect("db.toml");
    assert!(manifest.contains("ipmdb = \"ipm-db-v4.db\""), "{manifest}");
    let bucket_manifest = std::fs::read_to_string(demo.join("bucket/db.toml")).expect("bucket db.toml");
    let object = pinned_object(&bucket_manifest, "ipm-db").expect("pinned");
    assert!(object.starts_with("dbs/ipm-db/ipm-db-v4.") && demo.join("bucket").join(recipe_key_of(&object)).is_file(), "{object}");
    // It refuses a folder that is not empty, rather than mixing into it.
    Run::from(b2m_command(dir.path()).args(["demo", &demo.display().to_string()]).output().expect("run")).fails(2, "is not empty");
    // With --json the result alone is on stdout.
    let run =
        Run::from(b2m_command(dir.path()).args(["demo", &dir.path().join("d2").display().to_string(), "--json"]).output().expect("run"));
    run.ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("demo JSON");
    assert!(report["steps"].as_array().is_some_and(|s| s.len() >= 6));
}

#[test]
fn the_pre_start_hook_passes_preflight_s_exit_code_through() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 1);
    let hook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-start");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg(&hook).current_dir(server.path()).env("B2M", env!("CARGO_BIN_EXE_b2m"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run the hook"))
    };
    run(&[]).ok();
    // A start that must stop: the bucket's folder is gone.
    server.write_config("");
    let broken =
        std::fs::read_to_string(server.path().join("b2m.toml")).expect("b2m.toml").replace(&bucket.url(), "file:///nonexistent/b2m-bucket");
    std::fs::write(server.path().join("b2m.toml"), broken).expect("b2m.toml");
    assert_eq!(run(&[]).code, 2, "preflight's exit code, passed through");
    assert_eq!(run(&[("B2M", "/nonexistent/b2m")]).code, 127);
}
