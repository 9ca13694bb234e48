//! `b2m hooks install|uninstall`: git hooks beside the project's own, which keep running, and taken
//! out leaving exactly what was there.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_b2m");
pub(crate) const HOOKS: [&str; 3] = ["post-merge", "post-checkout", "pre-push"];

/// git in `dir` (under the temp folder), kept from the host's git config and from any repository
/// holding the temp folder;
/// hooks it runs find b2m by `B2M`.
pub(crate) fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    isolate(&mut cmd, dir);
    cmd
}

/// Runs `cmd` in `dir` with the isolation [`git_command`] gives git (for programs that run git).
pub(crate) fn isolate(cmd: &mut Command, dir: &Path) {
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CEILING_DIRECTORIES", std::env::temp_dir())
        .env("GIT_AUTHOR_NAME", "b2m test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "b2m test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("B2M", BIN)
        .env("B2M_ACCESS_KEY_ID", ACCESS_KEY)
        .env("B2M_SECRET_ACCESS_KEY", SECRET_KEY);
}

/// Runs git in `dir`; it must succeed.
#[track_caller]
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir).args(args).output().expect("these tests need git on PATH");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project (local-folder bucket) that is a git repository with one commit.
pub(crate) fn repo() -> (Bucket, Project) {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "start"]);
    (bucket, p)
}

/// `b2m hooks <args>` in `dir`, with the same git isolation as [`git_command`].
pub(crate) fn hooks(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = b2m_command(dir);
    cmd.arg("hooks").args(args);
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CEILING_DIRECTORIES", std::env::temp_dir());
    Run::from(cmd.output().expect("run b2m"))
}

/// `b2m hooks <action> --json` in `dir`: hook name → what was done.
#[track_caller]
fn hooks_json(dir: &Path, action: &str) -> Vec<(String, String)> {
    let run = hooks(dir, &[action, "--json"]);
    run.ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON report");
    v["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .map(|h| (h["hook"].as_str().expect("hook").into(), h["done"].as_str().expect("done").into()))
        .collect()
}

/// The same action for every hook, as `hooks_json` reports it.
fn all(done: &str) -> Vec<(String, String)> {
    HOOKS.iter().map(|h| (h.to_string(), done.to_string())).collect()
}

/// Runs a hook file as git would: from the top of the work tree `top`, with `args` and `stdin`.
fn run_hook(top: &Path, hook: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(hook);
    cmd.current_dir(top)
        .env_remove("B2M_REMOTE")
        .env_remove("RUST_LOG")
        .env("B2M", BIN)
        .env("B2M_ACCESS_KEY_ID", ACCESS_KEY)
        .env("B2M_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/nonexistent/b2m-test-aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/b2m-test-aws-credentials")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the hook");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    Run::from(child.wait_with_output().expect("hook output"))
}

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("file").permissions().mode() & 0o7777
}

/// Bytes and mode of every file in `dir`, by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("hooks dir")
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read"), mode(&e.path())))
        .collect();
    files.sort();
    files
}

fn write_hook(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("hooks dir");
    std::fs::write(path, text).expect("hook");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A pre-push hook that records its arguments and stdin in `marker`, and fails while `fail` exists.
fn recording_pre_push(marker: &Path, fail: &Path) -> String {
    format!(
        "#!/bin/sh\n# the team's own pre-push\necho \"args: $*\" >> '{m}'\ncat >> '{m}'\nif [ -e '{f}' ]; then echo 'team hook says no' >&2; exit 3; fi\n",
        m = marker.display(),
        f = fail.display()
    )
}

fn hooks_dir(p: &Project) -> PathBuf {
    p.path().join(".git/hooks")
}

#[test]
fn install_writes_three_executable_marked_hooks() {
    let (_bucket, p) = repo();
    assert_eq!(hooks_json(p.path(), "install"), all("installed"));
    for hook in HOOKS {
        let path = hooks_dir(&p).join(hook);
        assert_eq!(mode(&path), 0o755, "{hook}");
        let text = std::fs::read_to_string(&path).expect("hook");
        assert!(text.starts_with("#!/bin/sh\n# b2m-hook v1"), "{hook}: {text}");
        assert!(!text.contains("{{"), "{hook} has a placeholder left: {text}");
        assert!(!hooks_dir(&p).join(format!("{hook}.b2m-chained")).exists());
    }
    let human = hooks(p.path(), &["install"]);
    human.ok();
    assert!(human.stdout.contains("pre-push") && human.stdout.contains("already installed"), "{}", human.stdout);
}

#[test]
fn second_install_changes_nothing() {
    let (_bucket, p) = repo();
    write_hook(&hooks_dir(&p).join("pre-push"), "#!/bin/sh\nexit 0\n", 0o755);
    hooks_json(p.path(), "install");
    let first = snapshot(&hooks_dir(&p));
    let inodes = || HOOKS.map(|h| std::fs::metadata(hooks_dir(&p).join(h)).expect("hook").ino());
    let written = inodes();
    assert_eq!(hooks_json(p.path(), "install"), all("already_installed"));
    assert_eq!(snapshot(&hooks_dir(&p)), first, "a second install changed the hooks folder");
    assert_eq!(inodes(), written, "a second install wrote the hooks again");
    assert!(!hooks_dir(&p).join("pre-push.b2m-chained.b2m-chained").exists());
}

#[test]
fn existing_pre_push_keeps_running_on_a_real_push_and_its_failure_blocks() {
    let (_bucket, p) = repo();
    let scratch = tempfile::tempdir().expect("scratch");
    let (marker, fail) = (scratch.path().join("marker"), scratch.path().join("fail"));
    let origin = scratch.path().join("origin.git");
    git(scratch.path(), &["init", "-q", "--bare", origin.to_str().expect("utf8 path")]);
    git(p.path(), &["remote", "add", "origin", origin.to_str().expect("utf8 path")]);
    let theirs = recording_pre_push(&marker, &fail);
    write_hook(&hooks_dir(&p).join("pre-push"), &theirs, 0o755);

    let done = hooks_json(p.path(), "install");
    assert_eq!(done[2], ("pre-push".to_string(), "chained".to_string()));
    assert_eq!(std::fs::read_to_string(hooks_dir(&p).join("pre-push.b2m-chained")).expect("chained"), theirs);

    git(p.path(), &["push", "-q", "origin", "main"]);
    let head = git(p.path(), &["rev-parse", "HEAD"]).trim().to_string();
    let seen = std::fs::read_to_string(&marker).expect("the team's hook ran on push");
    assert!(seen.contains(&format!("args: origin {}", origin.display())), "{seen}");
    assert!(seen.contains(&format!("refs/heads/main {head} refs/heads/main 0000000")), "no refs on its stdin: {seen}");

    std::fs::write(&fail, "").expect("fail flag");
    git(p.path(), &["commit", "-q", "--allow-empty", "-m", "second"]);
    let push = git_command(p.path()).args(["push", "origin", "main"]).output().expect("git push");
    assert!(!push.status.success(), "the team's failing pre-push did not stop the push");
    assert!(String::from_utf8_lossy(&push.stderr).contains("team hook says no"));
    assert_eq!(git(&origin, &["rev-parse", "main"]).trim(), head, "the blocked commit reached origin");
}

#[test]
fn install_honours_core_hooks_path() {
    let (_bucket, p) = repo();
    git(p.path(), &["config", "core.hooksPath", "team-hooks"]);
    let run = hooks(p.path(), &["install", "--json"]);
    run.ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let custom = p.path().join("team-hooks");
    assert_eq!(report["hooks_dir"].as_str().expect("hooks_dir"), custom.display().to_string());
    for hook in HOOKS {
        assert_eq!(mode(&custom.join(hook)), 0o755, "{hook} not in core.hooksPath");
        assert!(!hooks_dir(&p).join(hook).exists(), "{hook} went to .git/hooks");
    }
    // git itself runs it from there: switching branches shows b2m's status.
    let switch = git_command(p.path()).args(["switch", "-c", "feature"]).output().expect("git switch");
    assert!(switch.status.success());
    assert!(!String::from_utf8_lossy(&switch.stderr).contains("b2m hook:"), "{}", String::from_utf8_lossy(&switch.stderr));
    p.add_entry("legacydb", "legacy.db");
    let checkout = git_command(p.path()).args(["checkout", "main"]).output().expect("git checkout");
    assert!(checkout.status.success(), "post-checkout made the checkout fail");
    let said = String::from_utf8_lossy(&checkout.stderr);
    assert!(said.contains("legacydb"), "git did not run b2m's post-checkout from core.hooksPath: {said}");
}

#[test]
fn uninstall_restores_the_old_hook_exactly_and_removes_ours() {
    let (_bucket, p) = repo();
    let dir = hooks_dir(&p);
    let theirs = "#!/bin/sh\n# odd mode, no trailing newline\nexit 0";
    write_hook(&dir.join("pre-push"), theirs, 0o750);
    let before = snapshot(&dir);
    hooks_json(p.path(), "install");
    assert_eq!(mode(&dir.join("pre-push.b2m-chained")), 0o750);

    let done = hooks_json(p.path(), "uninstall");
    assert_eq!(
        done,
        vec![("post-merge".into(), "removed".into()), ("post-checkout".into(), "removed".into()), ("pre-push".into(), "restored".into())]
    );
    assert_eq!(snapshot(&dir), before, "the hooks folder is not as it was before install");
    assert_eq!(std::fs::read(dir.join("pre-push")).expect("pre-push"), theirs.as_bytes());
    assert_eq!(mode(&dir.join("pre-push")), 0o750);

    let again = hooks_json(p.path(), "uninstall");
    assert_eq!(
        again,
        vec![
            ("post-merge".into(), "not_installed".into()),
            ("post-checkout".into(), "not_installed".into()),
            ("pre-push".into(), "not_ours".into())
        ]
    );
    assert_eq!(snapshot(&dir), before, "a second uninstall touched the hooks");
    let human = hooks(p.path(), &["uninstall"]);
    assert!(human.stdout.contains("not b2m's: left alone"), "{}", human.stdout);
}

#[test]
fn pre_push_blocks_when_check_offline_fails_and_passes_when_it_succeeds() {
    let (_bucket, p) = repo();
    hooks_json(p.path(), "install");
    let hook = hooks_dir(&p).join("pre-push");
    let refs = "refs/heads/main 1111111111111111111111111111111111111111 refs/heads/main 0000000000000000000000000000000000000000\n";
    let args = ["origin", "/somewhere/origin.git"];
    run_hook(p.path(), &hook, &args, refs, &[]).ok();

    p.add_entry("legacydb", "legacy.db");
    let blocked = run_hook(p.path(), &hook, &args, refs, &[]);
    assert_eq!(blocked.code, 1, "{blocked:?}");
    assert!(blocked.stderr.contains("`b2m check --offline` failed, so the push is stopped"), "{}", blocked.stderr);
    assert!(blocked.stdout.contains("FAIL legacydb"), "{}", blocked.stdout);
}

#[test]
fn pre_push_runs_the_chained_hook_first_and_passes_its_failure() {
    let (_bucket, p) = repo();
    let scratch = tempfile::tempdir().expect("scratch");
    let (marker, fail) = (scratch.path().join("marker"), scratch.path().join("fail"));
    write_hook(&hooks_dir(&p).join("pre-push"), &recording_pre_push(&marker, &fail), 0o755);
    hooks_json(p.path(), "install");
    let hook = hooks_dir(&p).join("pre-push");
    let refs = "refs/heads/main 1111111111111111111111111111111111111111 refs/heads/main 0000000000000000000000000000000000000000\n";
    run_hook(p.path(), &hook, &["origin", "url"], refs, &[]).ok();
    assert_eq!(std::fs::read_to_string(&marker).expect("marker"), format!("args: origin url\n{refs}"));

    std::fs::write(&fail, "").expect("fail flag");
    let blocked = run_hook(p.path(), &hook, &["origin", "url"], refs, &[]);
    assert_eq!(blocked.code, 3, "the chained hook's exit status is not passed through: {blocked:?}");
    assert!(blocked.stderr.contains("team hook says no"));
}

#[test]
fn post_merge_and_post_checkout_never_fail_on_b2m() {
    let (_bucket, p) = repo();
    hooks_json(p.path(), "install");
    let dir = hooks_dir(&p);
    let cases: [(&str, &[&str]); 2] = [("post-merge", &["0"]), ("post-checkout", &["1111111", "2222222", "1"])];
    for (hook, args) in cases {
        let path = dir.join(hook);
        run_hook(p.path(), &path, args, "", &[]).ok();

        let missing = run_hook(p.path(), &path, args, "", &[("B2M", "/nonexistent/b2m")]);
        missing.ok();
        assert!(missing.stderr.contains("/nonexistent/b2m is not on PATH"), "{hook}: {}", missing.stderr);
        assert_eq!(missing.stderr.lines().count(), 1, "{hook}: {}", missing.stderr);

        let mut cmd = Command::new(&path);
        cmd.current_dir(p.path()).args(args).env_remove("B2M").env("PATH", "/usr/bin:/bin");
        let unset = Run::from(cmd.output().expect("hook"));
        unset.ok();
        assert!(unset.stderr.contains("b2m is not on PATH"), "{hook}: {}", unset.stderr);
    }
    // A broken bucket: `b2m status` fails, the hooks still exit 0.
    std::fs::write(p.path().join("b2m.toml"), "[remote]\nurl = \"nope://\"\n").expect("b2m.toml");
    for (hook, args) in cases {
        let run = run_hook(p.path(), &dir.join(hook), args, "", &[]);
        run.ok();
        assert!(run.stderr.contains("`b2m status` failed"), "{hook}: {}", run.stderr);
    }
}

#[test]
fn hooks_find_a_project_below_the_top_of_the_repository() {
    let top = tempfile::tempdir().expect("repository");
    let bucket = Bucket::new(Backend::Local);
    let p = Project::in_folder(top.path(), &bucket.url(), None);
    git(top.path(), &["init", "-q", "-b", "main"]);
    hooks_json(p.path(), "install");
    let hook = top.path().join(".git/hooks/pre-push");
    assert!(
        std::fs::read_to_string(&hook)
            .expect("pre-push")
            .contains(&format!("project='{}'", p.path().file_name().expect("name").to_string_lossy()))
    );
    run_hook(top.path(), &hook, &["origin", "url"], "", &[]).ok();
    p.add_entry("legacydb", "legacy.db");
    assert_eq!(run_hook(top.path(), &hook, &["origin", "url"], "", &[]).code, 1, "the hook did not check the project in its subfolder");
}

#[test]
fn install_refuses_when_a_chained_hook_is_in_the_way() {
    let (_bucket, p) = repo();
    let dir = hooks_dir(&p);
    write_hook(&dir.join("pre-push"), "#!/bin/sh\necho new\n", 0o755);
    write_hook(&dir.join("pre-push.b2m-chained"), "#!/bin/sh\necho old\n", 0o755);
    let before = snapshot(&dir);
    hooks(p.path(), &["install"]).fails(1, "pre-push.b2m-chained");
    assert_eq!(snapshot(&dir), before, "a refused install changed the hooks");
}

#[test]
fn outside_a_git_repository_is_a_configuration_error() {
    let bucket = Bucket::new(Backend::Local);
    let p = Project::new(&bucket);
    hooks(p.path(), &["install"]).fails(2, "is not in a git repository").fails(2, "`git init`");
    hooks(p.path(), &["uninstall"]).fails(2, "is not in a git repository");
}

/// `hooks/` in this repository holds the git hooks as `b2m hooks install` writes them for a
/// project at the top of its repository (for projects that copy hooks by hand).
#[test]
fn the_hooks_folder_matches_what_install_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for hook in ["post-merge", "post-checkout", "pre-push"] {
        let template = std::fs::read_to_string(root.join("templates/hooks").join(hook)).expect("template");
        let copy = std::fs::read_to_string(root.join("hooks").join(hook)).expect("hooks/ copy");
        assert_eq!(copy, template.replace("{{project}}", "'.'"), "hooks/{hook} is out of date: regenerate it from templates/hooks/{hook}");
    }
}
