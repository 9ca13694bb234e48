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
