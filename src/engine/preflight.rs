//! `b2m preflight`: what every server start runs. Under the local lock: read the bucket's db.toml
//! once; bring each database to the version it pins (download when behind and clean; stop on
//! `outdated_db` with local changes, naming `b2m merge`; report `ready_to_upload`, which stops the
//! start only with `--strict`); run the pending changesets in name order (one another machine is
//! running is waited for, bounded, then synced to — never run twice). Exit 0 means the server may
//! start.
//!
//! When nothing changed it costs one bucket request (the GET of db.toml) and no re-hash: local
//! content comes from the hash cache, and changesets this machine has seen done are not asked
//! about again (a done ledger entry never changes).

use serde::Serialize;

use super::remote::{self, RemoteManifest};
use super::runner;
use super::status::{self, Status};
use super::swap::Swaps;
use super::{Context, LocalLock, fetch};
use crate::changeset::{self, ledger};
use crate::error::{Error, Refusal, Result};
use crate::store::StoreError;

/// A database preflight brought forward.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// The stem.
    pub name: String,
    /// The version it had (`None`: no local file).
    pub from: Option<u64>,
    /// The version it has now.
    pub to: u64,
}

/// A changeset preflight ran, or found done.
#[derive(Debug, Clone, Serialize)]
pub struct Ran {
    /// The changeset.
    pub name: String,
    /// `ran`, `already_done` (another machine ran it, perhaps while we waited) or `recovered`.
    pub outcome: String,
}

/// What preflight did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Preflight {
    /// Databases brought to the bucket's version.
    pub fetched: Vec<Fetched>,
    /// Changesets that were pending here.
    pub changesets: Vec<Ran>,
    /// Databases with local data the bucket lacks (a start goes on unless `--strict`).
    pub ready_to_upload: Vec<String>,
    /// The bucket could not be reached and `preflight.allow_offline` let the start go on.
    pub offline: bool,
    /// Whether this preflight stopped the server (to swap a file it had open).
    pub stopped_server: bool,
    /// Bucket requests made.
    pub requests: u64,
}

/// What `b2m download --all` did.
#[derive(Debug, Default, Serialize)]
pub struct DownloadedAll {
    /// Databases brought to the bucket's version.
    pub fetched: Vec<Fetched>,
    /// Databases with local data the bucket lacks (left as they are).
    pub ready_to_upload: Vec<String>,
    /// Bucket requests made.
    pub requests: u64,
}

/// `b2m download --all`: every database the bucket names brought to its version, as preflight
/// does, but without running changesets or recording a fleet heartbeat (a developer's machine is
/// not a server), and a server this stopped is started again. One that cannot be brought forward
/// (local changes behind the bucket, a conflict) is named in the error, after all the others.
pub fn download_all(ctx: &Context) -> Result<DownloadedAll> {
    let swaps = Swaps::new(ctx);
    let remote = remote::read_manifest(ctx.store.as_ref())?;
    if let Some(r) = remote.as_ref().filter(|_| !ctx.settings.manifest.exists()) {
        fetch::write_fetched_manifest(ctx, RemoteManifest { manifest: r.manifest.clone(), etag: None })?;
    }
    let mut done = Preflight::default();
    let synced = sync(ctx, remote.as_ref(), &swaps, &mut done);
    let restarted = swaps.restart(&format!("downloaded {} database(s)", done.fetched.len()));
    synced?;
    restarted?;
    if done.fetched.is_empty() {
        ctx.out.info("every database is the bucket's version; nothing to download");
    }
    Ok(DownloadedAll { fetched: done.fetched, ready_to_upload: done.ready_to_upload, requests: ctx.requests() })
}

/// Runs preflight under `lock`.
pub fn preflight(ctx: &Context, lock: &LocalLock, strict: bool) -> Result<Preflight> {
    let mut done = Preflight::default();
    let swaps = Swaps::new(ctx);
    let remote = match remote::read_manifest_within(ctx.store.as_ref(), ctx.settings.offline_after) {
        Ok(remote) => remote,
        Err(Error::Store(e @ StoreError::Unreachable { .. })) => return offline(ctx, e, done),
        Err(e) => return Err(e),
    };
    // A fresh server: its db.toml starts as the bucket's (comments and all; its own `path`).
    if let Some(r) = remote.as_ref().filter(|_| !ctx.settings.manifest.exists()) {
        fetch::write_fetched_manifest(ctx, RemoteManifest { manifest: r.manifest.clone(), etag: None })?;
    }
    sync(ctx, remote.as_ref(), &swaps, &mut done)?;
    let ran_any = run_pending(ctx, lock, &mut done)?;
    if ran_any {
        // A changeset (ours or another machine's) published: bring everything to it.
        let remote = remote::read_manifest(ctx.store.as_ref())?;
        sync(ctx, remote.as_ref(), &swaps, &mut done)?;
    }
    done.stopped_server = swaps.stopped();
    // What this server runs, for `b2m fleet`: written when it changed, else once a day.
    let last_changeset = changeset::scripts(&ctx.settings.changesets)?
        .into_iter()
        .map(|s| s.name)
        .rfind(|n| ctx.state.changeset_known_done(n).unwrap_or(false));
    if let Err(e) = super::fleet::heartbeat(ctx, last_changeset) {
        ctx.out.info(&format!("warning: could not record this server in the fleet view: {e}"));
    }
    if strict && !done.ready_to_upload.is_empty() {
        return Err(Error::refused(
            format!("{} has local data that is not in the bucket (`--strict`)", done.ready_to_upload.join(", ")),
            "publish it with `b2m upload`, or start without `--strict`",
        ));
    }
    done.requests = ctx.requests();
    Ok(done)
}

/// Brings every database the bucket's db.toml names to the version it pins. One that cannot be
/// (local changes behind the bucket, a conflict, an unreadable file) stops the start, but only
/// after every other database was brought forward.
fn sync(ctx: &Context, remote: Option<&RemoteManifest>, swaps: &Swaps<'_>, done: &mut Preflight) -> Result<()> {
    let Some(remote) = remote else { return Ok(()) };
    let local = ctx.local_manifest()?;
    let mut blocked: Vec<Error> = Vec::new();
    let local_entries = local.entries();
    for r in remote.manifest.entries() {
        if let Some(why) = status::key_clash(&local_entries, &r) {
            blocked.push(Error::refused_as(
                Refusal::Conflict,
                format!("conflict: `{}`: {why}", r.stem),
                "a person must decide; `b2m status` shows the details",
            ));
            continue;
        }
        let l = local.entry_for_stem(&r.stem);
        let row = status::assess(ctx, &r.stem, l.as_ref(), Some(&r))?;
        match row.status {
            Status::UpToDate => {}
            Status::MissingLocal | Status::OutdatedDb if !row.local_changes || row.status == Status::MissingLocal => {
                let Some(id) = row.remote_id.clone() else { continue };
                let key = l.as_ref().map_or(r.key.clone(), |l| l.key.clone());
                if let Some(l) = &l {
                    swaps.check(&ctx.db_path(&l.file))?;
                }
                match fetch::install(ctx, &id, &key, l.as_ref(), row.local_content.as_deref(), swaps) {
                    Ok(_) => {}
                    Err(e @ Error::Refused { .. }) => {
                        blocked.push(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                ctx.out.info(&format!("fetched `{}` v{}", r.stem, id.version));
                done.fetched.push(Fetched { name: r.stem.clone(), from: row.local_version, to: id.version });
            }
            Status::OutdatedDb => blocked.push(Error::refused_as(
                Refusal::OutdatedDb,
                format!(
                    "outdated_db: the bucket has `{}` v{}, and this server's v{} has local changes",
                    r.stem,
                    r.version,
                    row.local_version.unwrap_or(0)
                ),
                format!("run `b2m merge {}` to carry them onto the new version, then start again", r.stem),
            )),
            Status::ReadyToUpload => {
                ctx.out.info(&format!("`{}` has local data that is not in the bucket (ready_to_upload)", r.stem));
                if !done.ready_to_upload.contains(&r.stem) {
                    done.ready_to_upload.push(r.stem.clone());
                }
            }
            _ => blocked.push(Error::refused_as(
                Refusal::Conflict,
                format!("conflict: `{}`: {}", r.stem, row.detail.unwrap_or_else(|| "its state is unclear".into())),
                "a person must decide; `b2m status` shows the details",
            )),
        }
    }
    one_error(blocked)
}

/// Every database that could not be brought forward, as one error (none: done).
fn one_error(mut blocked: Vec<Error>) -> Result<()> {
    match blocked.len() {
        0 => Ok(()),
        1 => Err(blocked.remove(0)),
        _ => {
            let hint = blocked[0].hint().unwrap_or_default();
            let message = blocked.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            Err(Error::refused(message, hint))
        }
    }
}

/// Runs the changesets not known done here, in name order; returns whether any may have published.
fn run_pending(ctx: &Context, lock: &LocalLock, done: &mut Preflight) -> Result<bool> {
    let mut published = false;
    for script in changeset::scripts(&ctx.settings.changesets)? {
        if ctx.state.changeset_known_done(&script.name)? {
            continue;
        }
        let entry = ledger::read(ctx.store.as_ref(), &script.name)?;
        if let Some(entry) = entry.filter(|e| e.state == ledger::State::Done) {
            ctx.state.set_changeset_done(&script.name, &entry.script_sha256)?;
            continue;
        }
        let executed = runner::execute(ctx, lock, &script, false)?;
        ctx.state.set_changeset_done(&script.name, &executed.entry.script_sha256)?;
        published |= executed.outcome != "already_done" || !executed.versions.is_empty();
        done.changesets.push(Ran { name: script.name.clone(), outcome: executed.outcome });
    }
    Ok(published)
}

/// The bucket cannot be reached: the start goes on only with `preflight.allow_offline` and every
/// local file still exactly its pinned version.
fn offline(ctx: &Context, e: StoreError, mut done: Preflight) -> Result<Preflight> {
    if !ctx.settings.allow_offline {
        return Err(Error::refused(
            format!("cannot read the bucket's db.toml ({e}); the server must not start on versions nobody checked"),
            "fix the network or the bucket, or set `preflight.allow_offline = true` in `b2m.toml`",
        ));
    }
    let local = ctx.local_manifest()?;
    for l in local.entries() {
        let path = ctx.db_path(&l.file);
        let content = if path.is_file() { status::local_content(ctx, &path)? } else { None };
        let base = ctx.state.base(&l.stem)?;
        let matches = match (content, base, &l.sha256) {
            (Some(c), Some(b), Some(pin)) => b.version == l.version && &b.sha256 == pin && b.matches(&c),
            _ => false,
        };
        if !matches {
            return Err(Error::refused(
                format!("cannot reach the bucket ({e}), and `{}` is not exactly its pinned version", l.file),
                "fix the network or the bucket; offline starts need every file to match its pin",
            ));
        }
    }
    ctx.out.info(&format!("WARNING: the bucket cannot be reached ({e}); starting on the pinned local versions (preflight.allow_offline)"));
    done.offline = true;
    done.requests = ctx.requests();
    Ok(done)
}
