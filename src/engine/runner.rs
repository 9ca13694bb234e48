//! Running a changeset once for the whole fleet: claim it (a lease on its name), read its ledger
//! entry, run it, record the outcome.
//!
//! Exactly once across crashes: every version a changeset publishes names it in its metadata, so
//! a run that finds an entry still `running` (its runner died: we now hold its claim) can tell
//! whether the work was published — then it records `done` without running anything. If not, a
//! SQL changeset (transactional, and nothing of it was published) simply runs; a `.py`/`.sh` one
//! is marked `failed (interrupted)`, never re-run silently: its effects are unknown.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::publish::{self, Guarded, ToCommit};
use super::remote::{self, ParentRef};
use super::status::{self, Status};
use super::{Context, LocalLock, fetch};
use crate::changeset::ledger::{self, Entry, MadeVersion, State};
use crate::changeset::log::Log;
use crate::changeset::{Kind, Script, script_sha256, sql};
use crate::coord::{HeldLease, Leases};
use crate::error::{Error, Refusal, Result};
use crate::layout::VersionId;

/// What running a changeset did.
#[derive(Debug, Clone, Serialize)]
pub struct Executed {
    /// The changeset.
    pub name: String,
    /// Its language.
    pub kind: Kind,
    /// `ran`, `already_done` (it ran before, here or elsewhere) or `recovered` (a dead run's work
    /// was found published and recorded).
    pub outcome: String,
    /// The versions it published.
    pub versions: Vec<MadeVersion>,
    /// The ledger entry as it stands now.
    pub entry: Entry,
}

/// The changeset's working folder, kept as the backup of what it replaced.
pub fn workdir(ctx: &Context, name: &str) -> PathBuf {
    ctx.settings.changesets.join("dbs").join(name)
}

/// The changeset's log.
pub fn log_path(ctx: &Context, name: &str) -> PathBuf {
    crate::changeset::log::path(&ctx.settings.changesets, name)
}

/// `b2m execute-changeset NAME [--retry]`, under the local lock `lock`: claim the changeset, see
/// what an earlier run left in its ledger entry, run it, record the outcome.
pub fn execute(ctx: &Context, lock: &LocalLock, script: &Script, retry: bool) -> Result<Executed> {
    refuse_if_earlier_pending(ctx, script)?;
    let sha = script_sha256(&script.path)?;
    let leases = ctx.leases();
    let claim = leases.acquire(&crate::layout::changeset_lease(&script.name), "changeset")?;
    let claimed = Claimed { ctx, script, leases: &leases, claim: &claim };
    let runs = match ledger::read(ctx.store.as_ref(), &script.name)? {
        None => 1,
        Some(entry) => match claimed.after_earlier_run(entry, &sha, retry)? {
            Earlier::Settled(executed) => return Ok(*executed),
            Earlier::RunAgain { runs } => runs,
        },
    };
    let entry = claimed.running_entry(sha, runs);
    let targets = match script.kind {
        Kind::Sql => Some(prepare_sql(ctx, script)?),
        _ => None,
    };
    claimed.write(&entry)?;
    let log = log_path(ctx, &script.name);
    let outcome = match targets {
        Some(targets) => run_sql(ctx, script, &targets, &log),
        None => run_child(ctx, lock, script, &claim, &log),
    };
    upload_log(ctx, &script.name, &log);
    claimed.record(entry, outcome)
}

/// What an earlier run's ledger entry leaves to do.
enum Earlier {
    /// Nothing: the changeset is done (or was found done), and this is what running it did.
    Settled(Box<Executed>),
    /// Run it (again), as run number `runs`.
    RunAgain { runs: u32 },
}

/// A changeset this process holds the claim of: its ledger entry is ours to write.
struct Claimed<'a> {
    ctx: &'a Context,
    script: &'a Script,
    leases: &'a Leases,
    claim: &'a HeldLease,
}

impl Claimed<'_> {
    /// What running the changeset did, with `outcome`, as its ledger `entry` says.
    fn executed(&self, outcome: &str, entry: Entry) -> Executed {
        Executed {
            name: self.script.name.clone(),
            kind: self.script.kind,
            outcome: outcome.to_string(),
            versions: entry.versions.clone(),
            entry,
        }
    }

    /// Writes the ledger entry, within what the claim still guarantees.
    fn write(&self, entry: &Entry) -> Result<()> {
        ledger::write(self.ctx.store.as_ref(), entry, self.leases.budget(&[self.claim])?)
    }

    /// Decides from an earlier run's `entry`: done stays done, a failure runs again only with
    /// `retry`, an interrupted run is recovered.
    fn after_earlier_run(&self, entry: Entry, sha: &str, retry: bool) -> Result<Earlier> {
        let name = &self.script.name;
        let runs = entry.runs + 1;
        match entry.state {
            State::Done => {
                if entry.script_sha256 != sha {
                    self.ctx.out.info(&format!("warning: `{name}` was edited after it ran; `b2m check` reports it"));
                }
                self.ctx.out.info(&format!("`{name}` already ran ({}); nothing to do", entry.describe()));
                Ok(Earlier::Settled(Box::new(self.executed("already_done", entry))))
            }
            State::Failed if !retry => {
                let published = ledger::published(&entry.versions).map(|p| format!("; it {p}")).unwrap_or_default();
                Err(Error::refused(
                    format!(
                        "changeset `{name}` failed ({}): {}{published}",
                        entry.describe(),
                        entry.error.as_deref().unwrap_or("see its log")
                    ),
                    format!("fix it, then run `b2m execute-changeset {name} --retry`"),
                ))
            }
            State::Failed => {
                warn_already_published(self.ctx, name, &entry.versions);
                Ok(Earlier::RunAgain { runs })
            }
            State::Running => self.recover_interrupted(entry, retry),
        }
    }

    /// An entry still `running`: we hold the claim, so the run that wrote it is gone. What did it
    /// publish? A SQL changeset that published is done; a script's other effects are unknown,
    /// so it is failed unless `retry` says to run it again.
    fn recover_interrupted(&self, entry: Entry, retry: bool) -> Result<Earlier> {
        let name = &self.script.name;
        let runs = entry.runs + 1;
        let made = versions_naming(self.ctx, name, &entry.started_at)?;
        // A SQL changeset publishes all its databases in one commit: published is done.
        if self.script.kind == Kind::Sql && !made.is_empty() {
            let done = Entry { state: State::Done, finished_at: Some(crate::util::now_rfc3339()), versions: made, ..entry };
            self.write(&done)?;
            self.ctx.out.info(&format!("`{name}` was interrupted after it published; recorded it as done without running it again"));
            return Ok(Earlier::Settled(Box::new(self.executed("recovered", done))));
        }
        // A script's other effects are unknown, whatever it published: never done.
        if self.script.kind != Kind::Sql && !retry {
            let published = ledger::published(&made).map_or_else(|| "published nothing".to_string(), |p| format!("had {p}"));
            let failed = Entry {
                state: State::Failed,
                finished_at: Some(crate::util::now_rfc3339()),
                error: Some(format!("interrupted on {} while running ({published}); its other effects are unknown", entry.host)),
                versions: made,
                ..entry.clone()
            };
            self.write(&failed)?;
            return Err(Error::refused(
                format!(
                    "changeset `{name}` was interrupted on {} ({}) and {published}; its other effects are unknown",
                    entry.host, entry.owner
                ),
                format!("check what it changes (`b2m status`), then run `b2m execute-changeset {name} --retry`"),
            ));
        }
        warn_already_published(self.ctx, name, &made);
        Ok(Earlier::RunAgain { runs })
    }

    /// The ledger entry of run number `runs`, starting now under our claim.
    fn running_entry(&self, sha: String, runs: u32) -> Entry {
        Entry {
            name: self.script.name.clone(),
            kind: self.script.kind,
            state: State::Running,
            script_sha256: sha,
            owner: crate::util::user_at_host(),
            host: crate::util::host_name(),
            claim: self.claim.info().id,
            started_at: crate::util::now_rfc3339(),
            finished_at: None,
            versions: Vec::new(),
            log: Some(crate::layout::ledger_log_key(&self.script.name)),
            error: None,
            exit_code: None,
            runs,
        }
    }

    /// Records how the run ended in its ledger `entry`, with the versions it published; a failure
    /// says first what it published before it failed.
    fn record(&self, mut entry: Entry, outcome: Result<Vec<MadeVersion>>) -> Result<Executed> {
        let (ctx, name) = (self.ctx, &self.script.name);
        entry.finished_at = Some(crate::util::now_rfc3339());
        match outcome {
            Ok(made) => {
                entry.state = State::Done;
                entry.exit_code = (self.script.kind != Kind::Sql).then_some(0);
                entry.versions = if self.script.kind == Kind::Sql { made } else { versions_naming(ctx, name, &entry.started_at)? };
                self.write(&entry)?;
                ctx.out.info(&format!("`{name}` ran; {} version(s) published", entry.versions.len()));
                Ok(self.executed("ran", entry))
            }
            Err(e) => {
                entry.state = State::Failed;
                entry.error = Some(e.to_string());
                if let Error::Child { code, .. } = &e {
                    entry.exit_code = Some(i32::from(*code));
                }
                entry.versions = versions_naming(ctx, name, &entry.started_at)?;
                self.write(&entry)?;
                // What it published before it failed is in the bucket: say so first.
                Err(match (ledger::published(&entry.versions), e) {
                    (Some(published), Error::Child { message, hint, code }) => {
                        let why = message.strip_prefix(&format!("changeset `{name}` failed: ")).unwrap_or(&message);
                        Error::Child { message: format!("changeset `{name}` {published}, then failed: {why}"), hint, code }
                    }
                    (Some(published), e) => Error::after_publish(&format!("changeset `{name}` {published}"), e),
                    (None, e) => e,
                })
            }
        }
    }
}

/// Puts the run's log in the bucket beside its ledger entry; a failure is a warning.
fn upload_log(ctx: &Context, name: &str, log: &Path) {
    if let Ok(text) = std::fs::read(log)
        && let Err(e) = ctx.store.put(&crate::layout::ledger_log_key(name), &text, crate::store::Condition::None)
    {
        ctx.out.info(&format!("warning: could not upload the log of `{name}`: {e}"));
    }
}

/// Before a retry: what an earlier run already put in the bucket stays there, and the script runs
/// on top of it.
fn warn_already_published(ctx: &Context, name: &str, versions: &[MadeVersion]) {
    if let Some(published) = ledger::published(versions) {
        ctx.out.info(&format!("warning: an earlier run of `{name}` already {published}; running it again applies it on top of that"));
    }
}

/// Changesets run in name order: one whose predecessor has not run (or failed) waits for it.
fn refuse_if_earlier_pending(ctx: &Context, script: &Script) -> Result<()> {
    let earlier: Vec<Script> = crate::changeset::scripts(&ctx.settings.changesets)?.into_iter().filter(|s| s.name < script.name).collect();
    if earlier.is_empty() {
        return Ok(());
    }
    let entries = ledger::all(ctx.store.as_ref())?;
    for s in earlier {
        let state = entries.iter().find(|e| e.name == s.name).map(|e| e.state);
        if state != Some(State::Done) {
            let state = state.map_or("has not run", |st| if st == State::Failed { "failed" } else { "is running" });
            return Err(Error::refused(
                format!("changeset `{}` comes before `{}` and {state}", s.name, script.name),
                format!("run `b2m execute-changeset {}` first (changesets run in name order)", s.name),
            ));
        }
    }
    Ok(())
}

/// The versions whose metadata names changeset `name`, published since `since`: walks each
/// database's history back from what db.toml pins until versions older than `since`.
fn versions_naming(ctx: &Context, name: &str, since: &str) -> Result<Vec<MadeVersion>> {
    let Some(manifest) = remote::read_manifest(ctx.store.as_ref())? else { return Ok(Vec::new()) };
    let mut made = Vec::new();
    for entry in manifest.manifest.entries() {
        let mut next = entry.pinned();
        while let Some(id) = next.take() {
            let Some(meta) = remote::read_meta(ctx.store.as_ref(), &id)? else { break };
            if meta.created_at.as_str() < since {
                break;
            }
            if meta.changeset.as_deref() == Some(name) {
                made.push(MadeVersion::from(&id));
            }
            next = meta.parent.map(|p| VersionId { stem: id.stem.clone(), version: p.version, sha256: p.sha256 });
        }
    }
    made.sort_by(|a, b| (&a.stem, a.version).cmp(&(&b.stem, b.version)));
    Ok(made)
}

/// A SQL changeset's databases: (stem, db.toml key) in header order, checked before anything runs.
fn prepare_sql(ctx: &Context, script: &Script) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(&script.path).map_err(|e| Error::io("cannot read", &script.path, e))?;
    let args = sql::targets(&text);
    if args.is_empty() {
        return Err(Error::config_hint(
            format!("`{}` has no `-- b2m: db = <stem>` line naming the database it changes", script.path.display()),
            "add one line per database, e.g. `-- b2m: db = ipm-db`",
        ));
    }
    let local = ctx.local_manifest()?;
    let remote_entries = remote::read_manifest(ctx.store.as_ref())?.map(|m| m.manifest.entries()).unwrap_or_default();
    let mut targets = Vec::new();
    for arg in args {
        let stem = crate::engine::resolve_db(&arg, &local, &remote_entries)?;
        let Some(r) = remote_entries.iter().find(|e| e.stem == stem) else {
            return Err(Error::refused(format!("`{stem}` is not in the bucket's db.toml"), "publish it first with `b2m upload`"));
        };
        if targets.iter().any(|(s, _)| *s == stem) {
            continue;
        }
        let key = local.entry_for_stem(&stem).map_or(r.key.clone(), |l| l.key);
        targets.push((stem, key));
    }
    Ok(targets)
}

/// Downloads each target's current version into the working folder (kept as the backup), runs the
/// script on copies in one transaction, checks and publishes them as the next versions in one
/// commit, then installs them here.
fn run_sql(ctx: &Context, script: &Script, targets: &[(String, String)], log: &Path) -> Result<Vec<MadeVersion>> {
    let mut logger = Log::open(log)?;
    let protocol = ctx.protocol()?;
    let leases = ctx.leases();
    let mut sorted: Vec<&String> = targets.iter().map(|(stem, _)| stem).collect();
    sorted.sort();
    // Leases in one order everywhere, so two changesets on overlapping databases never deadlock.
    let db_leases = sorted.iter().map(|stem| leases.acquire(stem, "changeset")).collect::<Result<Vec<HeldLease>>>()?;
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    let local = ctx.local_manifest()?;
    let dir = workdir(ctx, &script.name);
    let Working { copies: working, parents } = working_copies(ctx, targets, remote.as_ref(), &local, &dir, &mut logger)?;
    let text = std::fs::read_to_string(&script.path).map_err(|e| Error::io("cannot read", &script.path, e))?;
    let before: Vec<Option<String>> = working.iter().map(|(_, p)| publish::schema_hash(p)).collect();
    let statements = sql::apply(&working, &text, &script.path).inspect_err(|e| logger.line(&format!("failed: {e}")))?;
    logger.line(&format!("ran {statements} statement(s) in one transaction"));
    let to_commit = send_working_copies(ctx, script, targets, &working, &parents, before, &mut logger)?;
    publish::commit(ctx, Guarded { leases: &leases, db_leases, protocol }, &local, &to_commit)?;
    install_published(ctx, script, &local, &to_commit, &mut logger)
}

/// Downloads each target's pinned version into `dir` (kept as the backup) and copies it as the
/// working copy of the next version: the copies (stem, path) and the versions they follow.
/// Refuses a database with local changes here, which the changeset would replace.
fn working_copies(
    ctx: &Context,
    targets: &[(String, String)],
    remote: Option<&remote::RemoteManifest>,
    local: &crate::manifest::Manifest,
    dir: &Path,
    logger: &mut Log,
) -> Result<Working> {
    let mut working = Vec::new();
    let mut parents = Vec::new();
    for (stem, _) in targets {
        let Some(current) = remote.and_then(|m| m.current(stem)) else {
            return Err(Error::refused(format!("`{stem}` is not pinned in the bucket's db.toml"), "publish it first with `b2m upload`"));
        };
        // This machine's copy must have nothing the bucket lacks: it is replaced afterwards.
        let row =
            status::assess(ctx, stem, local.entry_for_stem(stem).as_ref(), remote.and_then(|m| m.manifest.entry_for_stem(stem)).as_ref())?;
        if row.local_changes && row.status != Status::MissingLocal {
            return Err(Error::refused_as(
                Refusal::LocalChanges,
                format!("`{stem}` has local changes here ({}); the changeset would replace them", row.status.as_str()),
                format!("publish them first (`b2m upload {stem}` or `b2m merge {stem}`), then run the changeset"),
            ));
        }
        let (tmp, _, _) = fetch::download_verified(ctx, &current, dir, fetch::Source::Lent)?;
        let original = dir.join(current.file());
        tmp.persist(&original).map_err(|e| Error::io("cannot write", &original, e.error))?;
        let copy = dir.join(crate::names::DbFileName::file_name(stem, current.version + 1));
        std::fs::copy(&original, &copy).map_err(|e| Error::io("cannot copy to", &copy, e))?;
        logger.line(&format!("{stem}: v{} {}… → working copy `{}`", current.version, current.short(), copy.display()));
        working.push((stem.clone(), copy));
        parents.push(current);
    }
    Ok(Working { copies: working, parents })
}

/// The working copies of a SQL changeset's databases.
struct Working {
    /// (stem, path) of each copy, in the order of the targets.
    copies: Vec<(String, PathBuf)>,
    /// The version each copy follows.
    parents: Vec<VersionId>,
}

/// Checks and uploads each working copy as the next version after its parent, naming the
/// changeset; what the commit then writes. `schemas_before` are the copies' schema hashes before
/// the script ran.
fn send_working_copies(
    ctx: &Context,
    script: &Script,
    targets: &[(String, String)],
    working: &[(String, PathBuf)],
    parents: &[VersionId],
    schemas_before: Vec<Option<String>>,
    logger: &mut Log,
) -> Result<Vec<ToCommit>> {
    let mut to_commit = Vec::new();
    for (((stem, copy), parent), schema_before) in working.iter().zip(parents).zip(schemas_before) {
        let parent_ref = ParentRef { version: parent.version, sha256: parent.sha256.clone() };
        let about =
            publish::About { parent: Some(parent_ref.clone()), made_by: "changeset", changeset: Some(script.name.clone()), imported: None };
        let (_, meta) = publish::send_version(ctx, copy, stem, parent.version + 1, &about)?;
        if meta.schema_hash != schema_before {
            logger.line(&format!("{stem}: the schema changed"));
        }
        let key = targets.iter().find(|(s, _)| s == stem).map(|(_, k)| k.clone()).unwrap_or_default();
        let pending = publish::pending_from_working_copy(stem, &key, &meta);
        to_commit.push(ToCommit { pending, parent: Some(parent_ref) });
    }
    Ok(to_commit)
}

/// Installs the committed versions here (restarting the server if a swap stopped it); the
/// versions the changeset made.
fn install_published(
    ctx: &Context,
    script: &Script,
    local: &crate::manifest::Manifest,
    committed: &[ToCommit],
    logger: &mut Log,
) -> Result<Vec<MadeVersion>> {
    let mut made = Vec::new();
    let swaps = crate::engine::swap::Swaps::new(ctx);
    for v in committed {
        let id = VersionId { stem: v.pending.stem.clone(), version: v.pending.version, sha256: v.pending.sha256.clone() };
        logger.line(&format!("{}: published v{} {}…", id.stem, id.version, id.short()));
        fetch::install(ctx, &id, &v.pending.key, local.entry_for_stem(&id.stem).as_ref(), None, &swaps)?;
        ctx.state.clear_pending(&id.stem)?;
        made.push(MadeVersion::from(&id));
    }
    swaps.restart(&format!("changeset `{}` published", script.name))?;
    Ok(made)
}

/// Runs a `.py`/`.sh` changeset as a child process (duct; no shell string is built) in a process
/// group of its own, under the launcher that makes it die with this process (`crate::process`):
/// its `b2m` calls act under this process's local lock and the changeset's claim, by the tokens in
/// their environment. Its output goes to the log file, never to a pipe of ours — a daemon it starts
/// (a server) may keep that file open for as long as it runs without holding this run open — and
/// is copied to the terminal as it comes. The run ends when the script does.
fn run_child(ctx: &Context, lock: &LocalLock, script: &Script, claim: &HeldLease, log: &Path) -> Result<Vec<MadeVersion>> {
    let program = if script.kind == Kind::Py { "python3" } else { "sh" };
    // The helper module a Python changeset imports, should this checkout lack it.
    crate::changeset::create::ensure_folder(&ctx.settings.changesets)?;
    let dir = workdir(ctx, &script.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let mut logger = Log::open(log)?;
    let Some(interpreter) = crate::process::find_program(program) else {
        return Err(Error::config_hint(
            format!("`{program}` is not installed, and changeset `{}` needs it", script.name),
            format!("install {program} on this machine"),
        ));
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find", PathBuf::from("b2m"), e))?;
    let output = std::fs::OpenOptions::new().append(true).open(log).map_err(|e| Error::io("cannot open", log, e))?;
    let from = output.metadata().map_err(|e| Error::io("cannot read", log, e))?.len();
    let output_too = output.try_clone().map_err(|e| Error::io("cannot open", log, e))?;
    let token = ctx.lend_lock_token(lock)?;
    let expr = duct::cmd(&exe, [interpreter.as_os_str(), script.path.as_os_str()])
        .dir(&ctx.settings.root)
        .env(crate::process::LAUNCH, std::process::id().to_string())
        .env("B2M", &exe)
        .env("B2M_CHANGESET", &script.name)
        .env("B2M_WORKDIR", &dir)
        .env("B2M_LOG", log)
        .env("B2M_LEASE_TOKEN", claim.info().id)
        .env("B2M_LOCAL_LOCK_TOKEN", &token)
        .stdout_file(output)
        .stderr_file(output_too)
        .stdin_null()
        .unchecked()
        .before_spawn(|cmd| {
            std::os::unix::process::CommandExt::process_group(cmd, 0);
            Ok(())
        });
    let ran = (|| -> Result<std::process::ExitStatus> {
        let handle = expr.start().map_err(|e| Error::io("cannot run", &script.path, e))?;
        crate::interrupt::kill_group_on_interrupt(handle.pids().first().copied());
        let status = crate::process::follow(&handle, log, from, None).map_err(|e| Error::io("cannot wait for", &script.path, e));
        crate::interrupt::kill_group_on_interrupt(None);
        status?.ok_or_else(|| Error::refused(format!("`{}` did not finish", script.name), "run it again"))
    })();
    ctx.revoke_lock_token()?;
    let status = ran?;
    if status.success() {
        return Ok(Vec::new());
    }
    let code = status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1));
    logger.line(&format!("exit code {code}"));
    Err(Error::Child {
        message: format!("changeset `{}` failed: `{program} {}` exited with {code}", script.name, script.path.display()),
        hint: Some(format!("see `{}`; fix it, then run `b2m execute-changeset {} --retry`", log.display(), script.name)),
        code,
    })
}
