//! `b2m hooks install|uninstall`: the git hooks for developers (post-merge and post-checkout show
//! `b2m status`; pre-push runs `b2m check --offline`), installed beside the hooks a project already
//! has, which keep running first, and taken out leaving exactly what was there.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::HooksAction;
use crate::error::{Error, ExitStatus, Result};
use crate::fsutil;
use crate::output::{self, Output};
use crate::settings;

/// The line that marks a hook as b2m's (any version); the templates carry it on their second line.
const MARKER: &str = "# b2m-hook v";

/// What a hook that was there before b2m's is renamed to; b2m's hook runs it first.
const CHAINED_SUFFIX: &str = ".b2m-chained";

/// b2m's hooks: the name git runs and the script, whose `{{project}}` is the project folder
/// relative to the top of the work tree (where git runs hooks).
const HOOKS: [(&str, &str); 3] = [
    ("post-merge", include_str!("../../templates/hooks/post-merge")),
    ("post-checkout", include_str!("../../templates/hooks/post-checkout")),
    ("pre-push", include_str!("../../templates/hooks/pre-push")),
];

/// What was done to one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// b2m's hook written where there was none.
    Installed,
    /// The hook there was moved to `<hook>.b2m-chained` and b2m's, which runs it first, written.
    Chained,
    /// b2m's hook of another version (or for another project folder) replaced by this one.
    Updated,
    /// b2m's hook was already there, byte for byte: nothing changed.
    AlreadyInstalled,
    /// b2m's hook removed; there was none before it.
    Removed,
    /// b2m's hook removed and the one it chained put back.
    Restored,
    /// Uninstall found no b2m hook there.
    NotInstalled,
    /// The hook there is not b2m's: left alone.
    NotOurs,
}

impl Done {
    /// The words people read.
    fn describe(self) -> &'static str {
        match self {
            Done::Installed => "installed",
            Done::Chained => "chained: the hook that was there runs first",
            Done::Updated => "updated",
            Done::AlreadyInstalled => "already installed",
            Done::Removed => "removed",
            Done::Restored => "removed; the hook that was there before is back",
            Done::NotInstalled => "not installed",
            Done::NotOurs => "not b2m's: left alone",
        }
    }
}

/// One hook's outcome.
#[derive(Debug, Serialize)]
pub struct HookOutcome {
    /// The hook's name (`pre-push`).
    pub hook: &'static str,
    /// Its file.
    pub path: String,
    /// What was done.
    pub done: Done,
}

/// What `b2m hooks install|uninstall` did.
#[derive(Debug, Serialize)]
pub struct HooksReport {
    /// The hooks folder git uses (honouring `core.hooksPath` and worktrees).
    pub hooks_dir: String,
    /// Per hook, in the order post-merge, post-checkout, pre-push.
    pub hooks: Vec<HookOutcome>,
}

/// `b2m hooks install|uninstall`.
pub fn run(start: &Path, out: &Output, action: HooksAction) -> Result<ExitStatus> {
    let root = settings::find_root(start)?;
    let repo = GitRepo::of(&root)?;
    let hooks = match action {
        HooksAction::Install => install(&repo)?,
        HooksAction::Uninstall => uninstall(&repo.hooks_dir)?,
    };
    let report = HooksReport { hooks_dir: repo.hooks_dir.display().to_string(), hooks };
    out.result(&report, || {
        let rows: Vec<Vec<String>> =
            report.hooks.iter().map(|h| vec![h.hook.to_string(), h.done.describe().to_string(), h.path.clone()]).collect();
        output::table(&["hook", "done", "file"], &rows)
    });
    Ok(ExitStatus::Success)
}

/// Where the project sits in git.
struct GitRepo {
    /// The hooks folder git runs hooks from.
    hooks_dir: PathBuf,
    /// The project root relative to the top of the work tree, `.` at the top.
    project: String,
}

impl GitRepo {
    /// Asks git (run in the project root) for its hooks folder and the project's place in the tree.
    fn of(root: &Path) -> Result<Self> {
        let hooks = git(root, &["rev-parse", "--git-path", "hooks"])?;
        let prefix = git(root, &["rev-parse", "--show-prefix"])?;
        let prefix = prefix.trim_end_matches('/');
        // git names the folder relative to `root` (`.git/hooks`, `../.git/hooks`) or absolutely; a
        // folder that does not exist yet (a new `core.hooksPath`) keeps its joined name.
        let joined = root.join(hooks);
        let hooks_dir = fs::canonicalize(&joined).unwrap_or(joined);
        Ok(GitRepo { hooks_dir, project: if prefix.is_empty() { ".".into() } else { prefix.into() } })
    }
}

/// Runs git in `dir` (no shell) and returns its output less the final newline.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let shown = format!("git {}", args.join(" "));
    let ran =
        duct::cmd("git", args).dir(dir).stdin_null().stdout_capture().stderr_capture().unchecked().run().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::config_hint("git is not installed, and `b2m hooks` needs it", "install git, then run `b2m hooks install`")
            }
            _ => Error::config(format!("cannot run `{shown}` in `{}`: {e}", dir.display())),
        })?;
    if !ran.status.success() {
        let said = String::from_utf8_lossy(&ran.stderr);
        if said.contains("not a git repository") {
            return Err(Error::config_hint(
                format!("the project `{}` is not in a git repository, so it has no git hooks", dir.display()),
                "run `git init` in the project (or clone it), then `b2m hooks install`",
            ));
        }
        let said = said.lines().next().unwrap_or("").trim();
        return Err(Error::config(format!("`{shown}` failed in `{}`: {said}", dir.display())));
    }
    let text = String::from_utf8(ran.stdout).map_err(|_| Error::config(format!("`{shown}` printed a path that is not UTF-8")))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// A hook file as found.
enum Found {
    /// No file (not even a dangling symlink).
    Missing,
    /// b2m's hook, with its bytes.
    Ours(Vec<u8>),
    /// Someone else's hook (a symlink always counts as someone else's: b2m never makes one).
    Theirs,
}

/// Looks at the hook at `path`.
fn look(path: &Path) -> Result<Found> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    if !meta.is_file() {
        return Ok(Found::Theirs);
    }
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let ours = String::from_utf8_lossy(&bytes).lines().any(|line| line.starts_with(MARKER));
    Ok(if ours { Found::Ours(bytes) } else { Found::Theirs })
}

/// `<hook>.b2m-chained` beside `hook`.
fn chained_path(hook: &Path) -> PathBuf {
    let mut name = hook.as_os_str().to_owned();
    name.push(CHAINED_SUFFIX);
    name.into()
}

/// Whether anything (file, folder or symlink, dangling or not) is at `path`.
fn present(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// A single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Installs the three hooks. Every hook is looked at before any is touched, so a refusal leaves
/// all as they were.
fn install(repo: &GitRepo) -> Result<Vec<HookOutcome>> {
    let project = sh_quote(&repo.project);
    let mut plan = Vec::new();
    for (hook, template) in HOOKS {
        let path = repo.hooks_dir.join(hook);
        let chained = chained_path(&path);
        let found = look(&path)?;
        if matches!(found, Found::Theirs) && present(&chained)? {
            // Moving this one aside would overwrite the hook chained before: say so, touch nothing.
            return Err(Error::refused(
                format!(
                    "`{}` is not b2m's, and `{}` (the hook b2m chained before) is in the way of moving it aside",
                    path.display(),
                    chained.display()
                ),
                format!("merge the two into `{}` yourself (or remove one), then run `b2m hooks install` again", chained.display()),
            ));
        }
        plan.push((hook, path, chained, found, template.replace("{{project}}", &project)));
    }
    fs::create_dir_all(&repo.hooks_dir).map_err(|e| Error::io("cannot create", &repo.hooks_dir, e))?;
    let mut outcomes = Vec::new();
    for (hook, path, chained, found, script) in plan {
        let done = match found {
            Found::Ours(bytes) if bytes == script.as_bytes() && is_executable(&path)? => Done::AlreadyInstalled,
            Found::Ours(_) => Done::Updated,
            // A rename keeps the bytes and the mode (and a symlink stays a symlink).
            Found::Theirs => {
                fs::rename(&path, &chained).map_err(|e| Error::io("cannot move aside", &path, e))?;
                Done::Chained
            }
            // Left by an install stopped between the move aside and the write: it still chains.
            Found::Missing if present(&chained)? => Done::Chained,
            Found::Missing => Done::Installed,
        };
        if done != Done::AlreadyInstalled {
            write_hook(&path, script.as_bytes())?;
        }
        outcomes.push(HookOutcome { hook, path: path.display().to_string(), done });
    }
    Ok(outcomes)
}

/// Whether the file at `path` has its owner's execute bit.
fn is_executable(path: &Path) -> Result<bool> {
    let meta = fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(meta.permissions().mode() & 0o100 != 0)
}

/// Writes a hook atomically, mode 0755 whatever the umask.
fn write_hook(path: &Path, script: &[u8]) -> Result<()> {
    fsutil::write_atomic(path, script)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| Error::io("cannot make executable", path, e))
}

/// Takes b2m's hooks out, putting back the hooks they chained.
fn uninstall(hooks_dir: &Path) -> Result<Vec<HookOutcome>> {
    let mut outcomes = Vec::new();
    for (hook, _) in HOOKS {
        let path = hooks_dir.join(hook);
        let chained = chained_path(&path);
        let done = match look(&path)? {
            Found::Theirs => Done::NotOurs,
            found => {
                let ours = matches!(found, Found::Ours(_));
                if present(&chained)? {
                    // One rename replaces b2m's hook with the old one: its bytes and mode as they were.
                    fs::rename(&chained, &path).map_err(|e| Error::io("cannot restore", &chained, e))?;
                    Done::Restored
                } else if ours {
                    fsutil::remove_if_exists(&path)?;
                    Done::Removed
                } else {
                    Done::NotInstalled
                }
            }
        };
        outcomes.push(HookOutcome { hook, path: path.display().to_string(), done });
    }
    Ok(outcomes)
}
