//! The command line as users of just, uv and cargo expect it.

use crate::common::*;

/// Every `` `b2m <command> …` `` a message, hint or document names (src/, templates/, README.md,
/// docs/) is a command that exists.
#[test]
fn every_command_a_hint_names_exists() {
    let command = <b2m::cli::Cli as clap::CommandFactory>::command();
    let names: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_string()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("src"), root.join("templates"), root.join("README.md"), root.join("docs")];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        let paths: Vec<std::path::PathBuf> =
            if dir.is_dir() { std::fs::read_dir(&dir).expect("dir").flatten().map(|e| e.path()).collect() } else { vec![dir.clone()] };
        for path in paths {
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (i, _) in text.match_indices("`b2m ") {
                let rest = &text[i + 5..];
                let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if word.is_empty() || word.starts_with('-') {
                    continue;
                }
                assert!(names.contains(&word), "{} names `b2m {word}`, which is not a command", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} hints found: the scan is broken");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    for shell in ["bash", "zsh", "fish"] {
        let run = p.b2m(&["completions", shell]);
        run.ok();
        assert!(run.stdout.contains("b2m") && run.stdout.contains("preflight"), "{shell}: {}", &run.stdout[..run.stdout.len().min(200)]);
    }
    p.b2m(&["completions", "tcsh"]).fails(2, "tcsh");
}

#[test]
fn json_errors_are_json_on_stdout_with_a_kind() {
    let bucket = Bucket::new(Backend::Local);
    let (a, b) = published_pair(&bucket, 1);
    a.publish_row("ipm-db-v1.db", "a");
    b.insert("ipm-db-v1.db", "b");
    let run = b.b2m(&["upload", "ipm-db", "--json"]);
    assert_eq!(run.code, 1);
    let error: serde_json::Value = serde_json::from_str(&run.stdout).expect("the error as JSON on stdout");
    assert_eq!(error["error"]["kind"], "outdated_db", "{error}");
    assert!(error["error"]["hint"].as_str().is_some_and(|h| h.contains("b2m merge")), "{error}");
    let run = b.b2m(&["upload", "nope-db", "--json"]);
    assert_eq!(run.code, 2);
    let error: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(error["error"]["kind"], "configuration");
}

#[test]
fn the_seed_spellings_follow_the_commands() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    p.b2m(&["--create-changeset", "from-the-seed", "--kind", "sql"]).ok();
    let run = p.b2m(&["--changesets", "--json"]);
    run.ok();
    assert!(run.stdout.contains("from-the-seed"), "{}", run.stdout);
}

#[test]
fn every_json_result_counts_the_bucket_requests_the_command_sent() {
    // Counted as they leave the S3 client: each stretch of a download is a GET of its own.
    let bucket = Bucket::new(Backend::S3);
    let dev = Project::new(&bucket);
    dev.create_big_db("ipmdb", "ipm-db-v1.db", 40 * 256);
    let json = |project: &Project, args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = project.b2m(&all);
        run.ok();
        serde_json::from_str(&run.stdout).expect("JSON")
    };
    let upload = json(&dev, &["upload", "ipm-db"]);
    let size = upload["size"].as_u64().expect("size");
    assert!(upload["requests"].as_u64().expect("requests") > size.div_ceil(32 << 20), "{upload}");
    assert_eq!(json(&dev, &["status"])["requests"], 2, "status: db.toml and one listing of locks/");
    let server = Project::new(&bucket);
    server.b2m(&["fetch-db-toml"]).ok();
    let download = json(&server, &["download", "ipm-db"]);
    // db.toml, the recipe, then one GET per 16 MiB stretch of the pack.
    let received = download["bytes"].as_u64().expect("bytes");
    assert!(received < size, "compressed: {download}");
    assert_eq!(download["requests"].as_u64(), Some(2 + received.div_ceil(16 << 20)), "{download}");
    let nothing = json(&server, &["download", "ipm-db"]);
    assert_eq!(nothing["requests"], 1, "up to date: db.toml only ({nothing})");
}
