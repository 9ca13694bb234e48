//! Edges: db.toml entries kept, owners kept, honest answers (issue 21).

use std::process::Stdio;

use crate::common::*;

/// Issue 21 (6): a closed stdout (`b2m status | head -c 1`) ends the command quietly: no panic,
/// no "Broken pipe", the command's own exit code.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let bucket = Bucket::new(Backend::Local);
    let (_dev, server) = published_pair(&bucket, 2);
    for args in [&["status"][..], &["status", "--json"], &["history", "ipm-db"], &["completions", "bash"]] {
        for _ in 0..5 {
            let mut child = b2m_command(server.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
            drop(child.stdout.take());
            let out = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.code() == Some(0) && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "b2m {args:?} with stdout closed: {:?}\n{stderr}",
                out.status
            );
        }
    }
}

/// Issue 21 (7): b2m's rewrites of db.toml keep its line endings (CRLF) and its BOM.
#[test]
fn db_toml_rewrites_keep_crlf_and_a_bom() {
    let bucket = Bucket::new(Backend::Local);
    let (dev, server) = published_pair(&bucket, 2);
    dev.publish_row("ipm-db-v1.db", "v2");
    let text = server.manifest_text();
    let windows = format!("\u{feff}{}", text.replace('\n', "\r\n"));
    std::fs::write(server.manifest(), &windows).expect("db.toml");
    server.b2m(&["download", "ipm-db"]).ok();
    let after = server.manifest_text();
    assert!(after.contains("ipm-db-v2.db"), "{after}");
    assert!(after.starts_with('\u{feff}'), "the BOM was dropped: {after:?}");
    assert!(!after.replace("\r\n", "").contains('\n'), "a bare LF appeared: {after:?}");
    server.b2m(&["fetch-db-toml"]).ok();
    let fetched = server.manifest_text();
    assert!(fetched.starts_with('\u{feff}') && !fetched.replace("\r\n", "").contains('\n'), "{fetched:?}");
}
