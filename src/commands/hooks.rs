//! `b2m hooks install|uninstall`: the git hooks for developers (post-merge and post-checkout show
//! `b2m status`; pre-push runs `b2m check --offline`), installed beside the hooks a project already
//! has (a hook manager's: husky, lefthook, pre-commit), which keep running first, and taken out
//! leaving exactly what was there. A manager re-installing itself replaces b2m's hooks; b2m's
//! `status` and `check` notice ([`warn_if_dropped`]), `install` puts them back and `uninstall`
//! tidies what is left of them.

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

/// Where hook managers move a hook that is not theirs when they install themselves: pre-commit to
/// `<hook>.legacy` (and runs it), lefthook to `<hook>.old` (and does not).
const DISPLACED_SUFFIXES: [&str; 2] = [".legacy", ".old"];

/// The file in `.b2m/` saying b2m's hooks were installed in this clone (it holds the hooks folder),
/// so that `status` and `check` notice when they are gone.
const RECORD: &str = "hooks-installed";

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
    /// A hook manager had replaced b2m's hook (re-installing itself): what b2m left beside the
    /// manager's hook is tidied away, so the folder is as the manager alone would have left it.
    Tidied,
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
            Done::Tidied => "had been replaced by a hook manager's: what b2m left is tidied away",
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
    let record = root.join(settings::STATE_DIR).join(RECORD);
    let hooks = match action {
        HooksAction::Install => {
            let hooks = install(&repo)?;
            fs::create_dir_all(root.join(settings::STATE_DIR))
                .map_err(|e| Error::io("cannot create", root.join(settings::STATE_DIR), e))?;
            fsutil::write_atomic(&record, repo.hooks_dir.as_os_str().as_encoded_bytes())?;
            hooks
        }
        HooksAction::Uninstall => {
            let hooks = uninstall(&repo.hooks_dir)?;
            fsutil::remove_if_exists(&record)?;
            hooks
        }
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

/// b2m's hook where a hook manager moved it when it installed itself (`<hook>.legacy`,
/// `<hook>.old`), if there is one.
fn displaced(hook: &Path) -> Result<Option<PathBuf>> {
    for suffix in DISPLACED_SUFFIXES {
        let mut name = hook.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        if matches!(look(&path)?, Found::Ours(_)) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Whether two hooks are the same: both files with the same bytes and mode, or both symlinks to
/// the same place. A manager re-installing itself writes the hook it wrote before.
fn same(a: &Path, b: &Path) -> Result<bool> {
    let (Some(ma), Some(mb)) = (meta(a)?, meta(b)?) else { return Ok(false) };
    if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
        let link = |p: &Path| fs::read_link(p).map_err(|e| Error::io("cannot read", p, e));
        return Ok(ma.file_type().is_symlink() && mb.file_type().is_symlink() && link(a)? == link(b)?);
    }
    let read = |p: &Path| fs::read(p).map_err(|e| Error::io("cannot read", p, e));
    Ok(ma.is_file() && mb.is_file() && ma.permissions().mode() == mb.permissions().mode() && read(a)? == read(b)?)
}

/// The metadata of what is at `path` (not following a symlink), if anything is.
fn meta(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Renames `from` over `to` (bytes, mode and symlinks kept).
fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("cannot rename", from, e))
}

/// What to do to one hook before writing b2m's.
enum Step {
    /// b2m's is there: write it if it differs.
    Ours(Vec<u8>),
    /// Nothing to move: write b2m's (`chains` when an earlier install left a chained hook).
    Write { chains: bool },
    /// Move the hook there to `<hook>.b2m-chained` and write b2m's.
    Chain,
    /// A manager put its hook where b2m's was: the chained one goes back where the manager moved
    /// b2m's (`back_to`, as the manager alone would have left it), or away when it is the
    /// manager's hook again (`None`); then as [`Step::Chain`].
    Rechain { back_to: Option<PathBuf> },
}

/// Installs the three hooks. Every hook is looked at before any is touched, so a refusal leaves
/// all as they were.
fn install(repo: &GitRepo) -> Result<Vec<HookOutcome>> {
    let project = sh_quote(&repo.project);
    let mut plan = Vec::new();
    for (hook, template) in HOOKS {
        let path = repo.hooks_dir.join(hook);
        let chained = chained_path(&path);
        let moved = displaced(&path)?;
        let step = plan_hook(&path, &chained, moved.as_ref())?;
        plan.push(Planned { hook, path, chained, moved, step, script: template.replace("{{project}}", &project) });
    }
    fs::create_dir_all(&repo.hooks_dir).map_err(|e| Error::io("cannot create", &repo.hooks_dir, e))?;
    plan.into_iter().map(install_hook).collect()
}

/// One hook to install, looked at: where it goes, where the hook it chains goes, where a manager
/// moved b2m's old one, what to do, and b2m's script for it.
struct Planned {
    hook: &'static str,
    path: PathBuf,
    chained: PathBuf,
    moved: Option<PathBuf>,
    step: Step,
    script: String,
}

/// What to do to the hook at `path`, given the hook b2m chained before (`chained`) and where a
/// manager moved b2m's (`moved`). Refuses when moving the hook there aside would overwrite the
/// one chained before.
fn plan_hook(path: &Path, chained: &Path, moved: Option<&PathBuf>) -> Result<Step> {
    Ok(match look(path)? {
        Found::Ours(bytes) => Step::Ours(bytes),
        Found::Missing => Step::Write { chains: present(chained)? },
        Found::Theirs if !present(chained)? => Step::Chain,
        // The manager re-wrote the hook b2m had chained (husky's stubs, lefthook's and
        // pre-commit's scripts): the one chained is the manager's old copy.
        Found::Theirs if same(chained, path)? => Step::Rechain { back_to: None },
        // pre-commit moved b2m's hook to `<hook>.legacy` and runs it from there; the hook b2m
        // chained goes there instead, as pre-commit alone would have put it.
        Found::Theirs if moved.is_some() => Step::Rechain { back_to: moved.cloned() },
        Found::Theirs => {
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
    })
}

/// Carries out one planned hook: moves the hook there aside as its step says, clears b2m's old
/// one where a manager moved it, and writes b2m's.
fn install_hook(planned: Planned) -> Result<HookOutcome> {
    let Planned { hook, path, chained, moved, step, script } = planned;
    let put_back = matches!(step, Step::Rechain { back_to: Some(_) });
    let done = match step {
        Step::Ours(bytes) if bytes == script.as_bytes() && is_executable(&path)? => Done::AlreadyInstalled,
        Step::Ours(_) => Done::Updated,
        // Left by an install stopped between the move aside and the write: it still chains.
        Step::Write { chains: true } => Done::Chained,
        Step::Write { chains: false } => Done::Installed,
        Step::Chain | Step::Rechain { .. } => {
            if let Step::Rechain { back_to: Some(back_to) } = &step {
                rename(&chained, back_to)?;
            }
            // A rename keeps the bytes and the mode (and a symlink stays a symlink); it
            // replaces the manager's old copy in the `Rechain { back_to: None }` case.
            rename(&path, &chained)?;
            Done::Chained
        }
    };
    // b2m's old hook where a manager moved it goes (the new one replaces it), unless the
    // chained hook has just been put back there.
    if let Some(moved) = moved.filter(|_| !put_back) {
        fsutil::remove_if_exists(&moved)?;
    }
    if done != Done::AlreadyInstalled {
        write_hook(&path, script.as_bytes())?;
    }
    Ok(HookOutcome { hook, path: path.display().to_string(), done })
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

/// Takes b2m's hooks out, putting back the hooks they chained. Where a hook manager has replaced
/// b2m's hook since, what b2m left beside it goes, so the folder is what the manager alone leaves.
fn uninstall(hooks_dir: &Path) -> Result<Vec<HookOutcome>> {
    let mut outcomes = Vec::new();
    for (hook, _) in HOOKS {
        let path = hooks_dir.join(hook);
        let chained = chained_path(&path);
        let moved = displaced(&path)?;
        let has_chained = present(&chained)?;
        let done = match look(&path)? {
            Found::Theirs => match (moved, has_chained) {
                // The manager re-wrote the hook b2m had chained: its old copy goes.
                (moved, true) if same(&chained, &path)? => {
                    fsutil::remove_if_exists(&chained)?;
                    if let Some(moved) = moved {
                        fsutil::remove_if_exists(&moved)?;
                    }
                    Done::Tidied
                }
                // pre-commit moved b2m's hook to `<hook>.legacy`: the hook b2m chained goes there,
                // where pre-commit alone would have put it (one rename replaces b2m's).
                (Some(moved), true) => {
                    rename(&chained, &moved)?;
                    Done::Tidied
                }
                (Some(moved), false) => {
                    fsutil::remove_if_exists(&moved)?;
                    Done::Tidied
                }
                (None, _) => Done::NotOurs,
            },
            found => {
                if let Some(moved) = moved {
                    fsutil::remove_if_exists(&moved)?;
                }
                let ours = matches!(found, Found::Ours(_));
                if has_chained {
                    // One rename replaces b2m's hook with the old one: its bytes and mode as they were.
                    rename(&chained, &path)?;
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

/// When `b2m hooks install` ran in this project and `b2m hooks uninstall` has not, but b2m's hooks
/// are not where git runs hooks now (a hook manager re-installed itself over them: npm's `prepare`
/// running husky, `lefthook install`), one warning line on stderr saying how to put them back.
/// Costs nothing unless the hooks were installed (one file's absence); then one `git` run and three
/// small files read. Never fails the command it is part of.
pub(crate) fn warn_if_dropped(root: &Path, out: &Output) {
    if !root.join(settings::STATE_DIR).join(RECORD).exists() {
        return;
    }
    let Ok(repo) = GitRepo::of(root) else { return };
    let gone: Vec<&str> = HOOKS
        .iter()
        .filter(|(hook, _)| {
            // pre-commit runs the hook it moved to `<hook>.legacy`: b2m's still runs from there.
            let ours = |name: String| matches!(look(&repo.hooks_dir.join(name)), Ok(Found::Ours(_)));
            !ours(hook.to_string()) && !ours(format!("{hook}.legacy"))
        })
        .map(|(hook, _)| *hook)
        .collect();
    if !gone.is_empty() {
        out.info(&format!(
            "warning: b2m's git hooks ({}) are no longer in `{}` (a hook manager re-installed itself?): run `b2m hooks install` to put them back (`b2m hooks uninstall` to stop this warning)",
            gone.join(", "),
            repo.hooks_dir.display()
        ));
    }
}
