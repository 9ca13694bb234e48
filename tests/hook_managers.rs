//! b2m's git hooks beside the real hook managers (husky 9, lefthook 2, pre-commit, installed from
//! npm and PyPI on first use): on real commits, checkouts, merges and pushes the team's hooks and
//! b2m's both run and a failing team pre-push blocks the push; a manager re-installing itself
//! leaves both running or b2m's `status` and `check` say how to put b2m's back; and
//! `b2m hooks uninstall` leaves exactly what the manager alone would have.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use crate::hooks::{HOOKS, git, git_command, hooks, isolate, mode, repo};

/// A repository with a hook manager: the project, a bare origin, and a scratch folder holding the
/// log every hook (the team's and b2m's, through a `B2M` wrapper) appends to.
struct Setup {
    _bucket: Bucket,
    p: Project,
    scratch: tempfile::TempDir,
    /// The `node_modules/.bin` with husky and lefthook, first on PATH for git and the managers.
    npm_bin: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let npm_bin = npm_hook_managers();
        let (bucket, p) = repo();
        let scratch = tempfile::tempdir().expect("scratch");
        let origin = scratch.path().join("origin.git");
        git(scratch.path(), &["init", "-q", "--bare", path_str(&origin)]);
        git(p.path(), &["remote", "add", "origin", path_str(&origin)]);
        let log = scratch.path().join("ran");
        let fail = scratch.path().join("fail");
        // The team's hook: records that it ran; its pre-push fails while the flag file exists.
        write_file(
            &scratch.path().join("team.sh"),
            &format!(
                "echo \"team $1\" >> '{log}'\nif [ \"$1\" = pre-push ] && [ -e '{fail}' ]; then echo 'team hook says no' >&2; exit 3; fi\nexit 0\n",
                log = log.display(),
                fail = fail.display()
            ),
            0o644,
        );
        // What the hooks run as b2m: records its arguments, then runs the real one.
        write_file(
            &scratch.path().join("b2m"),
            &format!("#!/bin/sh\necho \"b2m $*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), env!("CARGO_BIN_EXE_b2m")),
            0o755,
        );
        Setup { _bucket: bucket, p, scratch, npm_bin }
    }

    /// The command each manager's config runs for `hook`.
    fn team(&self, hook: &str) -> String {
        format!("sh {} {hook}", self.scratch.path().join("team.sh").display())
    }

    /// `program args` in the project, as a developer's shell would run it.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        isolate(&mut cmd, self.p.path());
        self.env(&mut cmd);
        cmd.args(args);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        let path = format!("{}:{}", self.npm_bin.display(), std::env::var("PATH").unwrap_or_default());
        cmd.env("PATH", path)
            .env("HOME", self.scratch.path())
            .env("XDG_CONFIG_HOME", self.scratch.path().join("config"))
            .env("PRE_COMMIT_HOME", self.scratch.path().join("pre-commit-home"))
            .env("NO_COLOR", "1")
            .env("B2M", self.scratch.path().join("b2m"))
            .env_remove("CI")
            .env_remove("HUSKY")
            .env_remove("LEFTHOOK");
    }

    /// Runs a manager's own command (its install); it must succeed.
    #[track_caller]
    fn manager(&self, program: &Path, args: &[&str]) {
        let out = self.command(program, args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(out.status.success(), "{} {args:?} failed: {}{}", program.display(), text(&out.stdout), text(&out.stderr));
    }

    /// git with the hooks' environment; not checked.
    fn git(&self, args: &[&str]) -> Output {
        let mut cmd = git_command(self.p.path());
        self.env(&mut cmd);
        cmd.args(args).output().expect("git")
    }

    /// git with the hooks' environment; it must succeed. Returns what the hooks logged.
    #[track_caller]
    fn git_ok(&self, args: &[&str]) -> String {
        let out = self.git(args);
        assert!(out.status.success(), "git {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
        self.take_log()
    }

    /// What the hooks logged since the last call (the log is emptied).
    fn take_log(&self) -> String {
        let log = self.scratch.path().join("ran");
        let seen = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        seen
    }

    /// Commits a new file `name` (hook managers skip a pre-push that pushes no files).
    fn commit_file(&self, name: &str) {
        std::fs::write(self.p.path().join(name), name).expect("file");
        self.git_ok(&["add", name]);
        self.git_ok(&["commit", "-q", "-m", name]);
    }

    /// `b2m hooks <action>`; it must succeed.
    #[track_caller]
    fn b2m_hooks(&self, action: &str) {
        hooks(self.p.path(), &[action]).ok();
    }

    /// Whether `b2m status` and `b2m check --offline` both warn that b2m's hooks are not in place
    /// (one line on stderr naming `b2m hooks install`); each must say it or neither.
    #[track_caller]
    fn warns(&self) -> bool {
        let said: Vec<bool> = [&["status"][..], &["check", "--offline"]]
            .iter()
            .map(|args| {
                let mut cmd = b2m_command(self.p.path());
                cmd.args(*args)
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GIT_CEILING_DIRECTORIES", std::env::temp_dir());
                let run = Run::from(cmd.output().expect("b2m"));
                run.ok();
                let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("b2m hooks install")).collect();
                assert!(lines.len() <= 1, "b2m {args:?} warned more than once: {}", run.stderr);
                !lines.is_empty()
            })
            .collect();
        assert_eq!(said[0], said[1], "`b2m status` and `b2m check` disagree on whether b2m's hooks are in place");
        said[0]
    }

    /// Every file under the hooks folder and the managers' own files, with its bytes and mode, and
    /// `core.hooksPath`.
    fn snapshot(&self) -> Files {
        let mut files = Vec::new();
        for top in [".git/hooks", ".husky", "lefthook.yml", ".pre-commit-config.yaml"] {
            collect(self.p.path(), &self.p.path().join(top), &mut files);
        }
        let hooks_path = git_command(self.p.path()).args(["config", "--get-all", "core.hooksPath"]).output().expect("git config");
        files.push(("core.hooksPath".into(), hooks_path.stdout, 0));
        files.sort();
        files
    }

    /// A switch to a new branch, a commit there, a switch back and a merge (post-checkout and
    /// post-merge), a push (pre-push), then a push the team's failing pre-push must stop. The
    /// team's hooks must run every time; b2m's must run when `b2ms` says so.
    #[track_caller]
    fn exercise(&self, round: &str, b2ms: bool) {
        let branch = format!("side-{round}");
        let check = |what: &str, seen: &str, hook: &str, b2m: &str| {
            assert!(seen.contains(&format!("team {hook}")), "round {round}, {what}: the team's {hook} did not run; log: {seen:?}");
            if b2ms {
                assert!(seen.contains(&format!("b2m -C . {b2m}")), "round {round}, {what}: b2m's {hook} did not run; log: {seen:?}");
            }
        };
        let seen = self.git_ok(&["switch", "-q", "-c", &branch]);
        check("git switch -c", &seen, "post-checkout", "status");
        self.commit_file(&format!("{branch}.txt"));
        self.take_log();
        let seen = self.git_ok(&["switch", "-q", "main"]);
        check("git switch main", &seen, "post-checkout", "status");
        let seen = self.git_ok(&["merge", "-q", "--no-ff", "-m", &format!("merge {branch}"), &branch]);
        check("git merge", &seen, "post-merge", "status");
        let seen = self.git_ok(&["push", "-q", "origin", "main"]);
        check("git push", &seen, "pre-push", "check --offline");

        let pushed = self.origin_main();
        std::fs::write(self.scratch.path().join("fail"), "").expect("fail flag");
        self.commit_file(&format!("blocked-{round}.txt"));
        self.take_log();
        let push = self.git(&["push", "origin", "main"]);
        std::fs::remove_file(self.scratch.path().join("fail")).expect("fail flag");
        assert!(!push.status.success(), "round {round}: the team's failing pre-push did not stop the push");
        // pre-commit and lefthook pass a hook's output on to stdout.
        let said = text(&push.stdout) + &text(&push.stderr);
        assert!(said.contains("team hook says no"), "round {round}: the push did not say why it stopped: {said}");
        assert_eq!(self.origin_main(), pushed, "round {round}: the blocked commit reached origin");
        self.take_log();
    }

    fn origin_main(&self) -> String {
        git(&self.scratch.path().join("origin.git"), &["rev-parse", "main"]).trim().to_string()
    }

    /// After a manager re-installed itself: b2m's hooks still run, or `b2m status` and `b2m check`
    /// say they are gone and how to put them back. The team's run either way.
    #[track_caller]
    fn after_manager_reinstall(&self, round: &str) {
        let warned = self.warns();
        self.exercise(round, !warned);
    }

    /// The full story with one manager: `install_manager` (re)installs it; `before` is what it
    /// alone leaves (taken after it installed itself twice, as `npm install` and the like do).
    fn story(&self, install_manager: &dyn Fn()) {
        install_manager();
        install_manager();
        self.git_ok(&["add", "-A", "."]);
        self.git_ok(&["commit", "-q", "-m", "the team's hook manager"]);
        let before = self.snapshot();

        self.b2m_hooks("install");
        assert!(!self.warns(), "b2m warns about its hooks right after `b2m hooks install`");
        self.exercise("1", true);

        // The manager re-installs itself (npm's `prepare`, `lefthook install`, `pre-commit install`).
        install_manager();
        self.after_manager_reinstall("2");
        // Uninstalling now leaves what the manager alone would have.
        self.b2m_hooks("uninstall");
        same_files(
            &self.snapshot(),
            &before,
            "`b2m hooks uninstall` after the manager re-installed itself did not leave what it alone would have",
        );
        assert!(!self.warns(), "b2m warns about hooks it uninstalled");

        self.b2m_hooks("install");
        self.exercise("3", true);
        install_manager();
        self.after_manager_reinstall("4");
        // `b2m hooks install` again: both run.
        self.b2m_hooks("install");
        assert!(!self.warns(), "b2m warns about its hooks right after `b2m hooks install`");
        self.exercise("5", true);
        self.b2m_hooks("uninstall");
        same_files(&self.snapshot(), &before, "`b2m hooks uninstall` did not restore every byte");
        self.exercise("6", false);
    }
}

type Files = Vec<(String, Vec<u8>, u32)>;

/// `now` must equal `before`; a failure names the files that differ and shows their text.
#[track_caller]
fn same_files(now: &Files, before: &Files, what: &str) {
    if now == before {
        return;
    }
    let show = |files: &Files, name: &str| {
        files.iter().find(|f| f.0 == name).map(|f| format!("mode {:o}:\n{}", f.2, String::from_utf8_lossy(&f.1)))
    };
    let mut names: Vec<&String> = now.iter().chain(before).map(|f| &f.0).collect();
    names.sort();
    names.dedup();
    let diff: Vec<String> = names
        .into_iter()
        .filter(|n| show(now, n) != show(before, n))
        .map(|n| format!("{n}: before {:?}\nnow {:?}", show(before, n), show(now, n)))
        .collect();
    panic!("{what}:\n{}", diff.join("\n"));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_file(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every file under `path` (or `path` itself), named relative to `root`.
fn collect(root: &Path, path: &Path, out: &mut Files) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    let name = path.strip_prefix(root).expect("under root").display().to_string();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            collect(root, &entry.path(), out);
        }
    } else if meta.file_type().is_symlink() {
        out.push((name, std::fs::read_link(path).expect("link").as_os_str().as_encoded_bytes().to_vec(), 0));
    } else {
        out.push((name, std::fs::read(path).expect("read"), mode(path)));
    }
}

#[test]
fn husky_and_b2m_hooks_both_run_survive_reinstall_or_warn_and_uninstall_exactly() {
    let s = Setup::new();
    for hook in HOOKS {
        // husky's own hooks are sourced by its runner, not executed: 0644 as `husky init` writes them.
        write_file(&s.p.path().join(".husky").join(hook), &format!("{}\n", s.team(hook)), 0o644);
    }
    let husky = s.npm_bin.join("husky");
    s.story(&|| s.manager(&husky, &[]));
}

#[test]
fn lefthook_and_b2m_hooks_both_run_survive_reinstall_or_warn_and_uninstall_exactly() {
    let s = Setup::new();
    let config: String = HOOKS.iter().map(|hook| format!("{hook}:\n  commands:\n    team:\n      run: {}\n", s.team(hook))).collect();
    std::fs::write(s.p.path().join("lefthook.yml"), config).expect("lefthook.yml");
    let lefthook = s.npm_bin.join("lefthook");
    s.story(&|| s.manager(&lefthook, &["install"]));
}

#[test]
fn pre_commit_and_b2m_hooks_both_run_survive_reinstall_or_warn_and_uninstall_exactly() {
    let pre_commit = pre_commit_bin();
    let s = Setup::new();
    let mut config = format!("default_install_hook_types: [{}]\nrepos:\n  - repo: local\n    hooks:\n", HOOKS.join(", "));
    for hook in HOOKS {
        config.push_str(&format!(
            "      - id: team-{hook}\n        name: team {hook}\n        entry: {}\n        language: system\n        stages: [{hook}]\n        always_run: true\n        pass_filenames: false\n",
            s.team(hook)
        ));
    }
    std::fs::write(s.p.path().join(".pre-commit-config.yaml"), config).expect(".pre-commit-config.yaml");
    s.story(&|| s.manager(&pre_commit, &["install"]));
}
