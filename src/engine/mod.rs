//! The rules: three-way status, the publish protocol, fetching versions, recovery after a crash.

pub mod changesets;
pub mod check;
pub mod export;
pub mod fetch;
pub mod fleet;
pub mod gc;
pub mod history;
pub mod import;
pub mod journal;
pub mod merge;
pub mod pages;
pub mod preflight;
pub mod publish;
pub mod remote;
pub mod restore;
pub mod rollback;
pub mod runner;
pub mod server;
pub mod status;
pub mod swap;

use std::fs::File;
use std::path::PathBuf;

use std::sync::Arc;

use fs2::FileExt;

use crate::coord::{Leases, Protocol, protocol};

use crate::error::{Error, Result};
use crate::manifest::{Entry, Manifest};
use crate::names::{DbFileName, check_db_argument};
use crate::output::Output;
use crate::settings::Settings;
use crate::sqlite::state::State;
use crate::store::Store;

/// What every engine operation works with: the project, its bucket, its local state.
pub struct Context {
    /// The project.
    pub settings: Settings,
    /// The bucket.
    pub store: Arc<dyn Store>,
    /// `.b2m/state.db`.
    pub state: State,
    /// Messages and progress bars.
    pub out: Output,
}

/// The exclusive lock on `.b2m/lock`, held while a command changes state.
pub struct LocalLock {
    /// `None` when this process acts under its parent's lock (a changeset's child).
    _file: Option<File>,
    /// Removes this command's temporary files should it be interrupted.
    _on_interrupt: Option<crate::interrupt::Registration>,
}

/// The file holding the token a changeset's child acts under the parent's local lock with.
const LOCK_TOKEN_FILE: &str = "lock.token";
impl Context {
    /// Opens the project's store and state.
    pub fn open(settings: Settings, out: Output) -> Result<Self> {
        let notice = {
            let out = out.clone();
            Arc::new(move |message: &str| out.info(&format!("warning: {message}")))
        };
        let store: Arc<dyn Store> = Arc::from(crate::store::open_with_notice(&settings.remote, notice)?);
        let counted = store.clone();
        out.count_requests_of(Arc::new(move || counted.requests()));
        let (state, damaged) = State::open_or_rebuild(&settings.state_dir)?;
        if let Some(aside) = damaged {
            out.info(&format!(
                "warning: the local state `{}` was damaged; moved it aside as `{}` and rebuilt it from db.toml and the files",
                settings.state_dir.join("state.db").display(),
                aside.display()
            ));
        }
        let ctx = Context { settings, store, state, out };
        crate::pages::column::keep_in(ctx.tmp_dir());
        Ok(ctx)
    }

    /// Takes the local lock, waiting (and saying for whom) while another b2m holds it, at most
    /// `local_lock_wait`; then clears what an interrupted run left behind and finishes its
    /// committed publishes.
    pub fn lock(&self) -> Result<LocalLock> {
        let file = self.lock_file()?;
        if file.try_lock_exclusive().is_ok() {
            return self.locked(file);
        }
        if self.under_parent_lock() {
            return Ok(LocalLock { _file: None, _on_interrupt: None });
        }
        let holder = || std::fs::read_to_string(self.settings.state_dir.join("lock.owner")).unwrap_or_default().trim().to_string();
        self.out.info(&format!("waiting for another b2m in this project to finish ({})", holder()));
        let started = std::time::Instant::now();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if file.try_lock_exclusive().is_ok() {
                return self.locked(file);
            }
            if started.elapsed() >= self.settings.local_lock_wait {
                return Err(Error::refused(
                    format!(
                        "another b2m in this project ({}) still holds `{}` after {} s",
                        holder(),
                        self.settings.state_dir.join("lock").display(),
                        self.settings.local_lock_wait.as_secs()
                    ),
                    "let it finish and run the command again (`B2M_LOCK_WAIT_SECS` sets how long to wait)",
                ));
            }
        }
    }

    /// Whether this process is a changeset's child acting under its parent's local lock: its
    /// `B2M_LOCAL_LOCK_TOKEN` is the token the parent wrote while holding the lock. Asked only
    /// once the lock was found held: a token left by a parent that died counts for nothing.
    fn under_parent_lock(&self) -> bool {
        let Some(token) = &self.settings.local_lock_token else { return false };
        std::fs::read_to_string(self.settings.state_dir.join(LOCK_TOKEN_FILE)).is_ok_and(|held| held.trim() == token)
    }

    /// While the local lock is held: lets child processes given the returned token act under it
    /// (until [`Context::revoke_lock_token`]).
    pub fn lend_lock_token(&self, _lock: &LocalLock) -> Result<String> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        crate::fsutil::write_atomic(&self.settings.state_dir.join(LOCK_TOKEN_FILE), token.as_bytes())?;
        Ok(token)
    }

    /// Ends what [`Context::lend_lock_token`] allowed.
    pub fn revoke_lock_token(&self) -> Result<()> {
        crate::fsutil::remove_if_exists(&self.settings.state_dir.join(LOCK_TOKEN_FILE))
    }

    /// Takes the local lock if no other b2m holds it (for read-only commands, which never wait).
    pub fn try_lock(&self) -> Result<Option<LocalLock>> {
        let file = self.lock_file()?;
        if file.try_lock_exclusive().is_ok() {
            return self.locked(file).map(Some);
        }
        if self.under_parent_lock() {
            return Ok(Some(LocalLock { _file: None, _on_interrupt: None }));
        }
        Ok(None)
    }

    fn lock_file(&self) -> Result<File> {
        let dir = &self.settings.state_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let path = dir.join("lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))
    }

    fn locked(&self, file: File) -> Result<LocalLock> {
        let owner = format!("pid {} on {}", std::process::id(), crate::util::host_name());
        let _ = std::fs::write(self.settings.state_dir.join("lock.owner"), owner);
        // Nobody else holds the lock: a token a dead parent left lets nobody in.
        self.revoke_lock_token()?;
        let dirs = [self.settings.db_dir.clone(), self.tmp_dir()];
        let on_interrupt = crate::interrupt::on_interrupt(move || {
            for dir in &dirs {
                let _ = remove_temps(dir);
            }
        });
        let lock = LocalLock { _file: Some(file), _on_interrupt: Some(on_interrupt) };
        self.remove_stale_temps()?;
        publish::finish_pending(self)?;
        Ok(lock)
    }

    /// Temp files of a killed download or snapshot: no b2m runs while we hold the lock, so any
    /// left is stale. They never carry a database's name, so nothing else is touched.
    fn remove_stale_temps(&self) -> Result<()> {
        remove_temps(&self.settings.db_dir)?;
        remove_temps(&self.tmp_dir())
    }

    /// The protocol this bucket follows (its `bucket.json`; one GET), checked against
    /// `remote.locking`.
    pub fn protocol(&self) -> Result<Protocol> {
        let record = protocol::read(self.store.as_ref())?;
        protocol::resolve(self.settings.remote.locking, record.as_ref(), self.store.location())
    }

    /// Leases on this project's bucket.
    pub fn leases(&self) -> Leases {
        Leases::new(self.store.clone(), self.out.clone(), self.settings.leases.clone())
    }

    /// Bucket requests made so far by this command.
    pub fn requests(&self) -> u64 {
        self.store.requests()
    }

    /// `.b2m/tmp`, for snapshots.
    pub fn tmp_dir(&self) -> PathBuf {
        self.settings.state_dir.join("tmp")
    }

    /// The local db.toml (an empty one when the file does not exist yet).
    pub fn local_manifest(&self) -> Result<Manifest> {
        let path = &self.settings.manifest;
        match std::fs::read_to_string(path) {
            Ok(text) => Manifest::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Manifest::new_empty(Some(&format!("{}/", self.settings.db_dir.display()))))
            }
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    /// Writes the local db.toml atomically.
    pub fn write_local_manifest(&self, manifest: &Manifest) -> Result<()> {
        crate::fsutil::write_atomic(&self.settings.manifest, manifest.render().as_bytes())
    }

    /// The path of a database file in the db folder.
    pub fn db_path(&self, file: &str) -> PathBuf {
        self.settings.db_dir.join(file)
    }
}

/// Removes b2m's temp files (`.b2m-…`) from `dir`.
fn remove_temps(dir: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".b2m-") {
            tracing::debug!(file = %entry.path().display(), "removing a temp file");
            crate::fsutil::remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

impl Drop for Context {
    fn drop(&mut self) {
        tracing::info!(requests = self.requests(), "bucket requests made");
    }
}

/// Resolves a database argument (stem, db.toml key or file name) against the databases the
/// local and bucket manifests name; returns the stem. An entry of the local db.toml that b2m
/// does not manage is named, with why, rather than reported unknown.
pub fn resolve_db(arg: &str, local_manifest: &Manifest, remote: &[Entry]) -> Result<String> {
    check_db_argument(arg)?;
    let local = &local_manifest.entries()[..];
    let all = || local.iter().chain(remote.iter());
    if let Some(e) = all().find(|e| e.stem == arg || e.key == arg || e.file == arg) {
        return Ok(e.stem.clone());
    }
    if let Some(name) = DbFileName::parse(arg)
        && all().any(|e| e.stem == name.stem)
    {
        return Ok(name.stem);
    }
    if let Some(u) = local_manifest.unmanaged().into_iter().find(|u| u.key == arg || u.value.trim_matches('"') == arg) {
        return Err(Error::config_hint(
            format!("`{} = {}` in db.toml is not a database b2m manages: {}", u.key, u.value, u.why),
            "fix the entry in db.toml, then run the command again",
        ));
    }
    let mut known: Vec<&str> = all().map(|e| e.stem.as_str()).collect();
    known.sort_unstable();
    known.dedup();
    Err(Error::config_hint(
        format!("unknown database `{arg}`"),
        if known.is_empty() {
            "no database is named in db.toml or in the bucket yet".to_string()
        } else {
            format!("known databases: {}", known.join(", "))
        },
    ))
}
