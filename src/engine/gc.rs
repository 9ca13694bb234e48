//! Garbage in the bucket: version objects no commit ever pinned (orphans of uploads that never
//! committed), unfinished multipart uploads, and leases nobody holds any more.
//!
//! gc never removes anything reachable from the bucket's db.toml (the pinned version and its
//! parent chain), nor an object younger than the longest possible publish (`orphan_age`). For
//! each database it holds that database's lease while it decides and deletes, and reads db.toml
//! again under it, so no publish can commit between what gc reads and what it deletes. With no
//! db.toml it removes nothing; a database dropped from db.toml keeps its versions. Deletions are
//! for good: on Backblaze B2, every version of the key goes, oldest first.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::Context;
use super::remote::{self, Chain, RemoteManifest, VersionId};
use crate::coord::lease;
use crate::error::Result;
use crate::store::{Store, Unfinished};

/// One piece of garbage.
#[derive(Debug, Clone, Serialize)]
pub struct Garbage {
    /// The object key.
    pub key: String,
    /// Why it is garbage.
    pub reason: String,
    /// Its size in bytes, when known.
    pub bytes: u64,
    /// For an unfinished multipart upload, its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// What gc found (and, unless a dry run, removed).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Collected {
    /// The garbage.
    pub removed: Vec<Garbage>,
    /// Bytes freed (or, on a dry run, that would be).
    pub bytes: u64,
    /// What gc left alone and why (no db.toml, an incomplete history).
    pub notes: Vec<String>,
}

/// Whether an object is older than `min_age` by our clock (a day by default, which dwarfs any
/// clock skew between us and the bucket).
fn old_enough(modified: Option<SystemTime>, min_age: Duration) -> bool {
    modified.and_then(|t| SystemTime::now().duration_since(t).ok()).is_some_and(|age| age > min_age)
}

/// Finds the garbage and, unless `dry_run`, removes it. A dry run takes no lease and changes
/// nothing. With `keep`, committed versions beyond the newest `keep` of each database db.toml
/// names go too (counted back along the parent chain; the pinned one never goes), and changeset
/// working folders beyond the newest `keep`.
pub fn collect(ctx: &Context, dry_run: bool, keep: Option<u64>) -> Result<Collected> {
    let store = ctx.store.as_ref();
    let Some(manifest) = remote::read_manifest(store)? else {
        return Ok(Collected { notes: vec!["the bucket has no db.toml: nothing is removed".into()], ..Collected::default() });
    };
    crate::util::failpoint("gc-after-read");
    let mut gc = Collector { store, dry_run, keep, min_age: ctx.settings.orphan_age, out: Collected::default() };
    let leases = ctx.leases();
    for entry in manifest.manifest.entries() {
        let _lease = if dry_run { None } else { Some(leases.acquire(&entry.stem, "gc")?) };
        // Read again under the lease: a publish may have committed since.
        let fresh = if dry_run { None } else { remote::read_manifest(store)? };
        gc.database(&entry.stem, fresh.as_ref().unwrap_or(&manifest))?;
    }
    if let Some(n) = keep {
        working_folders(ctx, dry_run, usize::try_from(n).unwrap_or(usize::MAX), &mut gc.out)?;
    }
    gc.stale_leases()?;
    Ok(gc.out)
}

/// One run of gc over the bucket: what it found so far.
struct Collector<'a> {
    store: &'a dyn Store,
    dry_run: bool,
    keep: Option<u64>,
    min_age: Duration,
    out: Collected,
}

impl Collector<'_> {
    /// Counts `g` as garbage and, unless a dry run, removes it.
    fn take(&mut self, g: Garbage) -> Result<()> {
        if !self.dry_run {
            match &g.upload_id {
                Some(id) => self.store.abort_upload(&Unfinished { key: g.key.clone(), upload_id: id.clone(), initiated: None })?,
                None => self.store.purge(&g.key)?,
            }
        }
        self.out.bytes += g.bytes;
        self.out.removed.push(g);
        Ok(())
    }

    /// The garbage of database `stem`, as `manifest` (read under its lease) pins it: version
    /// objects off its history (or beyond `keep`), and old unfinished uploads. Nothing of a
    /// database that is not pinned, or whose history cannot be read whole.
    fn database(&mut self, stem: &str, manifest: &RemoteManifest) -> Result<()> {
        let Some(head) = manifest.current(stem) else {
            self.out.notes.push(format!("`{stem}` is not pinned in db.toml: its versions are kept"));
            return Ok(());
        };
        let chain = remote::chain(self.store, &head)?;
        // A history that ends where an earlier `--keep` removed a version (metadata and object
        // both gone) is whole; a missing metadata object beside a present object is damage.
        let trimmed = chain.missing.as_ref().is_some_and(|m| self.store.head(&m.object_key()).is_ok_and(|o| o.is_none()));
        if !chain.complete && !trimmed {
            self.out.notes.push(format!("`{stem}`: its history could not be read whole, so none of its objects are removed"));
            return Ok(());
        }
        self.versions_off_history(stem, head, &chain)?;
        for upload in self.store.unfinished_uploads(&format!("{}{stem}/", crate::layout::VERSIONS))? {
            if old_enough(upload.initiated, self.min_age) {
                let reason = "an unfinished multipart upload".to_string();
                self.take(Garbage { key: upload.key, reason, bytes: 0, upload_id: Some(upload.upload_id) })?;
            }
        }
        Ok(())
    }

    /// The version objects of `stem` that neither `head` nor the newest `keep` of its history
    /// (`chain`) are: those beyond `keep`, and those never published once older than `min_age`.
    fn versions_off_history(&mut self, stem: &str, head: VersionId, chain: &Chain) -> Result<()> {
        let keep_n = self.keep.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX).max(1));
        let reachable: HashSet<VersionId> = chain.versions.iter().take(keep_n).map(|m| m.id(stem)).chain([head]).collect();
        let expired: HashSet<VersionId> = chain.versions.iter().skip(keep_n).map(|m| m.id(stem)).collect();
        if let (Some(keep), Some(newest_gone), false) = (self.keep, expired.iter().map(|id| id.version).max(), self.dry_run) {
            // History ends here on purpose from now on: say so, and when.
            let trimmed = remote::Trimmed { keep, below: newest_gone, at: crate::util::now_rfc3339(), by: crate::util::user_at_host() };
            let body = serde_json::to_vec_pretty(&trimmed)
                .map_err(|e| crate::error::Error::config(format!("cannot encode the trim record: {e}")))?;
            self.store.put(&crate::layout::trimmed_key(stem), &body, crate::store::Condition::None)?;
        }
        let needed = super::pages::needed_by(self.store, reachable.iter())?;
        for object in self.store.list(&format!("{}{stem}/", crate::layout::VERSIONS))? {
            if needed.contains(&object.key) {
                continue;
            }
            if crate::layout::pack_of(&object.key).is_some() {
                // A pack no kept version's recipe chain reads.
                if old_enough(object.last_modified, self.min_age) {
                    let reason = "a pack no kept version reads".to_string();
                    self.take(Garbage { key: object.key, reason, bytes: object.size, upload_id: None })?;
                }
                continue;
            }
            let Some(id) = VersionId::from_key(&object.key) else { continue };
            if reachable.contains(&id) {
                continue;
            }
            let reason = if expired.contains(&id) {
                format!("v{} {}… is older than the newest {}", id.version, id.short(), self.keep.unwrap_or_default())
            } else if old_enough(object.last_modified, self.min_age) {
                format!("v{} {}… was never published", id.version, id.short())
            } else {
                continue;
            };
            self.take(Garbage { key: object.key, reason, bytes: object.size, upload_id: None })?;
        }
        Ok(())
    }

    /// Leases whose holder stopped renewing them.
    fn stale_leases(&mut self) -> Result<()> {
        let now = chrono::Utc::now();
        for stale in lease::list_leases(self.store)?.into_iter().filter(|l| l.info.is_stale(now)) {
            let reason = format!("stale lease of {}", stale.info.describe());
            self.take(Garbage { key: stale.key, reason, bytes: 0, upload_id: None })?;
        }
        Ok(())
    }
}

/// Changeset and merge working folders (`changeset/dbs/<name>/`) beyond the newest `keep`, of runs
/// that ended: a folder whose changeset is still `running` in the ledger is kept.
fn working_folders(ctx: &Context, dry_run: bool, keep: usize, out: &mut Collected) -> Result<()> {
    let dir = ctx.settings.changesets.join("dbs");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut folders: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    let old = folders.len().saturating_sub(keep);
    for folder in folders.into_iter().take(old) {
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if crate::changeset::ledger::read(ctx.store.as_ref(), &name)?.is_some_and(|e| e.state == crate::changeset::ledger::State::Running) {
            continue;
        }
        let bytes = folder_size(&folder);
        if !dry_run {
            std::fs::remove_dir_all(&folder).map_err(|e| crate::error::Error::io("cannot remove", &folder, e))?;
        }
        out.bytes += bytes;
        out.removed.push(Garbage {
            key: folder.display().to_string(),
            reason: format!("a working folder older than the newest {keep}"),
            bytes,
            upload_id: None,
        });
    }
    Ok(())
}

fn folder_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.flatten().map(|e| e.metadata().map_or(0, |m| if m.is_dir() { folder_size(&e.path()) } else { m.len() })).sum()
    })
}
