//! Versions stored as pages, in the engine (README, "Versions stored as pages"): publishing one
//! (a pack of the pages its parent lacks, or a base of every page, and its recipe), fetching one
//! (only the frames no local page holds), and the local cache of page hashes that lets a publish
//! cut against its parent without reading anything from the bucket.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Context;
use super::remote::ParentRef;
use crate::error::{Error, Result};
use crate::layout::{self, VersionId};
use crate::pages::column::{self, Column};
use crate::pages::rebuild::{self, Piece};
use crate::pages::{self, Recipe};
use crate::store::{Condition, InOrder, Store};

/// A new base once the packs since the last one weigh this share of it…
const BASE_SHARE: f64 = 0.5;
/// …or once this many versions were cut against their parents since it.
const MAX_CHAIN: u32 = 64;
/// How many versions' page hashes this machine keeps.
const CACHED: usize = 8;

/// The page hashes of a version this machine held, and its recipe's chain figures.
struct Cached {
    hashes: Column<u64>,
    page_size: u32,
    chain: u32,
    base_bytes: u64,
    since_base: u64,
}

fn cache_dir(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join("pages")
}

/// Remembers the page hashes of the version `recipe` describes (this machine holds its file).
fn remember(ctx: &Context, recipe: &Recipe, hashes: &Column<u64>) -> Result<()> {
    let dir = cache_dir(ctx);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    // Written as they go: the hashes are on disk (a column), never held whole.
    let head = [u64::from(recipe.page_size), u64::from(recipe.chain), recipe.base_bytes, recipe.since_base];
    crate::fsutil::write_atomic_with(&dir.join(format!("{}.pages", recipe.sha256)), &mut |out| {
        head.into_iter().map(Ok).chain(hashes.iter()).try_for_each(|n| out.write_all(&n?.to_be_bytes()))
    })?;
    prune(&dir);
    Ok(())
}

/// Keeps the newest [`CACHED`] entries.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> =
        entries.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    files.sort();
    for (_, old) in files.iter().rev().skip(CACHED) {
        let _ = std::fs::remove_file(old);
    }
}

fn recall(ctx: &Context, sha256: &str) -> Option<Cached> {
    // Read as they go, into a column (on disk past a few).
    let file = std::fs::File::open(cache_dir(ctx).join(format!("{sha256}.pages"))).ok()?;
    let words = (file.metadata().ok()?.len() / 8) as usize;
    let mut file = std::io::BufReader::with_capacity(64 << 10, file);
    let mut word = || {
        let mut bytes = [0u8; 8];
        std::io::Read::read_exact(&mut file, &mut bytes).ok().map(|_| u64::from_be_bytes(bytes))
    };
    let (page_size, chain, base_bytes, since_base) = (word()?, word()?, word()?, word()?);
    let mut hashes = Column::new();
    for _ in 4..words {
        hashes.push(word()?).ok()?;
    }
    Some(Cached { page_size: u32::try_from(page_size).ok()?, chain: u32::try_from(chain).ok()?, base_bytes, since_base, hashes })
}

/// The recipe of `id`, when it is stored as pages.
pub fn read_recipe(store: &dyn Store, id: &VersionId) -> Result<Option<Recipe>> {
    let key = id.recipe_key();
    // Through a temp file: a base's recipe holds 8 bytes a page, never held whole.
    let mut stored = column::scratch().map_err(column::failed)?;
    let mut sink = std::io::BufWriter::new(&stored);
    if !store.get_to(&key, &mut sink)? {
        return Ok(None);
    }
    std::io::Write::flush(&mut sink).map_err(column::failed)?;
    drop(sink);
    std::io::Seek::rewind(&mut stored).map_err(column::failed)?;
    let recipe = Recipe::decode(std::io::BufReader::new(stored), &format!("{}/{key}", store.location()))?;
    if recipe.sha256 != id.sha256 {
        return Err(Error::refused(format!("the recipe `{key}` describes another file"), "publish the version again"));
    }
    Ok(Some(recipe))
}

/// The keys every version in `kept` needs to be rebuilt: its recipe, and down its chain to a base
/// every recipe and every pack (a base included). Versions stored whole need nothing here.
pub fn needed_by<'a>(store: &dyn Store, kept: impl Iterator<Item = &'a VersionId>) -> Result<std::collections::HashSet<String>> {
    let mut needed = std::collections::HashSet::new();
    for id in kept {
        let mut next = Some(id.clone());
        while let Some(id) = next.take() {
            if !needed.insert(id.recipe_key()) {
                break; // this chain's rest is marked already
            }
            let Some(recipe) = read_recipe(store, &id)? else { break };
            needed.extend(recipe.packs.iter().map(|p| p.key.clone()));
            next = recipe.parent.map(|p| VersionId { stem: id.stem.clone(), version: p.version, sha256: p.sha256 });
        }
    }
    Ok(needed)
}

/// Sends the snapshot at `path` as version `version` of `stem`, as pages: cut against `parent`
/// when this machine knows its page hashes and the chain since the last base is short, else as
/// a new base. The pack's objects are sent while the rest is still being cut, once `settle` said
/// yes (asked before anything is sent; false: nothing is). Then the recipe; returns the version
/// and its size.
pub fn send(
    ctx: &Context,
    path: &Path,
    stem: &str,
    version: u64,
    parent: Option<&ParentRef>,
    bar: &indicatif::ProgressBar,
    settle: &mut (dyn FnMut() -> bool + Send),
) -> Result<(VersionId, u64)> {
    let page_size = pages::page_size_of(path)?;
    let cached = match parent {
        Some(p) => recall(ctx, &p.sha256).map_or_else(|| hashes_in_bucket(ctx, stem, p), |c| Ok(Some(c)))?.map(|c| (p, c)),
        None => None,
    };
    let against = cached
        .as_ref()
        .filter(|(_, c)| c.page_size == page_size && c.chain < MAX_CHAIN && (c.since_base as f64) < c.base_bytes as f64 * BASE_SHARE);
    let cut =
        against.map(|(p, c)| pages::Against { parent: pages::Parent { version: p.version, sha256: p.sha256.clone() }, hashes: &c.hashes });
    let mut built = cut_and_send(ctx, path, cut.as_ref(), stem, bar, settle)?;
    crate::util::failpoint("pages-after-pack");
    let id = VersionId { stem: stem.to_string(), version, sha256: built.recipe.sha256.clone() };
    let pack_size: u64 = built.recipe.packs.iter().map(|p| p.size).sum();
    if let Some((_, c)) = against {
        (built.recipe.chain, built.recipe.base_bytes, built.recipe.since_base) = (c.chain + 1, c.base_bytes, c.since_base + pack_size);
    }
    // Written over an earlier attempt's: this one's packs were just sent, an earlier one's may
    // have been swept since (the recipe of a version not yet committed is an orphan too).
    send_recipe(ctx, &id, &built.recipe)?;
    crate::util::failpoint("pages-after-recipe");
    put_once(ctx.store.as_ref(), layout::FORMAT_DOC, FORMAT_DOC.as_bytes())?;
    remember(ctx, &built.recipe, &built.hashes)?;
    let (pages, new, fast_frames) = (built.recipe.pages, built.new_pages, built.fast_frames);
    tracing::info!(
        pages,
        new,
        pack = pack_size,
        objects = built.recipe.packs.len(),
        fast_frames,
        base = against.is_none(),
        "sent as pages"
    );
    Ok((id, built.recipe.size()))
}

/// Sends `recipe` as `id`'s, from a temp file: a base's holds 8 bytes a page, never held whole.
pub(super) fn send_recipe(ctx: &Context, id: &VersionId, recipe: &Recipe) -> Result<()> {
    let tmp = ctx.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
    let file = tempfile::Builder::new()
        .prefix(".b2m-recipe-")
        .tempfile_in(&tmp)
        .map_err(|e| Error::io("cannot create a temp file in", &tmp, e))?;
    let mut out = std::io::BufWriter::new(file.as_file());
    recipe.encode_to(&mut out).and_then(|()| std::io::Write::flush(&mut out)).map_err(|e| Error::io("cannot write", file.path(), e))?;
    drop(out);
    let hidden = indicatif::ProgressBar::hidden();
    let (sha256, _) = crate::sqlite::hash::sha256_file(file.path(), &hidden)?;
    ctx.store.upload_file(&id.recipe_key(), file.path(), &sha256, &hidden)?;
    Ok(())
}

/// [`pages::build`] of the snapshot at `path`, each pack object sent as soon as it is written
/// (the first once `settle` said yes; asked in any case, false: nothing is sent). The recipe's
/// packs carry their keys.
fn cut_and_send(
    ctx: &Context,
    path: &Path,
    cut: Option<&pages::Against<'_>>,
    stem: &str,
    bar: &indicatif::ProgressBar,
    settle: &mut (dyn FnMut() -> bool + Send),
) -> Result<pages::Built> {
    let upload = ctx.out.bytes_bar(0, "upload");
    upload.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    let abandoned = std::sync::atomic::AtomicBool::new(false);
    let (mut built, keys, settled) = std::thread::scope(|scope| {
        let (objects, queue) = std::sync::mpsc::sync_channel::<pages::PackFile>(1);
        let store = ctx.store.as_ref();
        let sender = scope.spawn(|| send_objects(store, stem, queue, &abandoned, &upload, settle));
        let mut hand_on = |object: pages::PackFile| {
            upload.inc_length(object.size);
            objects.send(object).map_err(|_| Error::refused("the pack's upload stopped", "run the command again"))
        };
        let built = pages::build(path, cut, &ctx.tmp_dir(), bar, &mut hand_on);
        // A cut that failed sends nothing more (an object already queued is dropped).
        abandoned.store(built.is_err(), std::sync::atomic::Ordering::Relaxed);
        drop(objects);
        // The rest of the pack's upload, if any, is what is left to wait for.
        bar.finish_and_clear();
        ctx.out.show(&upload);
        let sent = sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (built, sent) {
            (_, Err(e)) | (Err(e), _) => Err(e),
            (Ok(built), Ok((keys, settled))) => Ok((built, keys, settled)),
        }
    })?;
    upload.finish_and_clear();
    if !settled && !settle() {
        return Err(Error::refused("the snapshot failed its integrity check", "nothing was sent"));
    }
    for (pack, key) in built.recipe.packs.iter_mut().zip(keys) {
        pack.key = key;
    }
    Ok(built)
}

/// Sends each pack object from `queue` as it comes (a base is a pack too: the `.db` key means
/// "this version whole", always), the first once `settle` said yes, until the cut is `abandoned`.
/// Their keys, in order, and whether `settle` was asked.
fn send_objects(
    store: &dyn Store,
    stem: &str,
    queue: std::sync::mpsc::Receiver<pages::PackFile>,
    abandoned: &std::sync::atomic::AtomicBool,
    bar: &indicatif::ProgressBar,
    settle: &mut (dyn FnMut() -> bool + Send),
) -> Result<(Vec<String>, bool)> {
    let (mut keys, mut settled) = (Vec::new(), false);
    for object in queue {
        if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if !settled {
            settled = true;
            if !settle() {
                return Err(Error::refused("the snapshot failed its integrity check", "nothing was sent"));
            }
        }
        let key = layout::pack_key(stem, &object.sha256);
        store.upload_file(&key, &object.path, &object.sha256, bar)?;
        keys.push(key);
    }
    Ok((keys, settled))
}

/// The page hashes of `parent` as its recipes say, for a machine that never held it here (a
/// fresh clone, a rebuilt server): its recipe chain down to a base, a GET each, no listing. None
/// when it is stored whole (the next version is then a base).
fn hashes_in_bucket(ctx: &Context, stem: &str, parent: &ParentRef) -> Result<Option<Cached>> {
    let id = VersionId { stem: stem.to_string(), version: parent.version, sha256: parent.sha256.clone() };
    let Some(recipe) = read_recipe(ctx.store.as_ref(), &id)? else { return Ok(None) };
    let (chain, _) = chain_to(ctx, &id, recipe, None)?;
    let pieces = rebuild::plan(&chain, false)?;
    let Some(hashes) = target_hashes(&chain, &pieces, None)? else { return Ok(None) };
    let r = &chain[0];
    tracing::info!(stem, version = parent.version, recipes = chain.len(), "read the parent's page hashes from its recipes");
    Ok(Some(Cached { hashes, page_size: r.page_size, chain: r.chain, base_bytes: r.base_bytes, since_base: r.since_base }))
}

/// Writes a content-addressed object unless it is there (an earlier attempt's is as good).
fn put_once(store: &dyn Store, key: &str, body: &[u8]) -> Result<()> {
    store.put(key, body, Condition::IfAbsent)?;
    Ok(())
}

/// What was read to rebuild a version: bytes received, and the rebuilt file's sha256.
pub struct Rebuilt {
    /// Bytes received from the bucket (recipes and frames).
    pub received: u64,
    /// The sha256 of what was written.
    pub sha256: String,
}

/// Rebuilds version `id` (whose recipe is `recipe`) into `out`, reading from the bucket only the
/// frames that no page of the local file of `stem` holds (`lend`; else every frame). Checked by
/// the caller against the sha256; when local pages were lent and the result is wrong, it is
/// rebuilt again from the bucket alone.
pub fn fetch(
    ctx: &Context,
    id: &VersionId,
    recipe: Recipe,
    out: &std::fs::File,
    lend: bool,
    bar: &indicatif::ProgressBar,
) -> Result<Rebuilt> {
    let local = if lend { local_file(ctx, &id.stem) } else { None };
    // Not cloned for the rare second rebuild: a base's recipe holds 8 bytes a page.
    let first = rebuild_from(ctx, id, recipe, local.as_ref(), out, bar)?;
    if first.sha256 == id.sha256 || local.is_none() {
        return Ok(first);
    }
    tracing::warn!(stem = id.stem, "pages lent by the local file did not add up; rebuilding from the bucket alone");
    let recipe = read_recipe(ctx.store.as_ref(), id)?
        .ok_or_else(|| Error::refused(format!("the recipe of `{}` v{} left the bucket", id.stem, id.version), "try again"))?;
    out.set_len(0).map_err(|e| Error::io("cannot truncate", ctx.tmp_dir(), e))?;
    std::io::Seek::rewind(&mut &*out).map_err(|e| Error::io("cannot rewind", ctx.tmp_dir(), e))?;
    let again = rebuild_from(ctx, id, recipe, None, out, bar)?;
    Ok(Rebuilt { received: first.received + again.received, sha256: again.sha256 })
}

/// The local file of `stem`, and the version it holds when its content is that version's.
struct Local {
    path: PathBuf,
    holds: Option<String>,
}

fn local_file(ctx: &Context, stem: &str) -> Option<Local> {
    let manifest = ctx.local_manifest().ok()?;
    let entry = manifest.entry_for_stem(stem)?;
    let path = ctx.db_path(&entry.file);
    if !path.is_file() {
        return None;
    }
    let base = ctx.state.base(stem).ok().flatten();
    let content = super::status::local_content(ctx, &path).ok().flatten();
    let holds = base.filter(|b| content.as_deref().is_some_and(|c| c == b.local_content_sha256 || c == b.content_sha256)).map(|b| b.sha256);
    Some(Local { path, holds })
}

fn rebuild_from(
    ctx: &Context,
    id: &VersionId,
    recipe: Recipe,
    local: Option<&Local>,
    out: &std::fs::File,
    bar: &indicatif::ProgressBar,
) -> Result<Rebuilt> {
    let (chain, held) = chain_to(ctx, id, recipe, local.and_then(|l| l.holds.as_deref()))?;
    let page_size = chain[0].page_size;
    let mut pieces = rebuild::plan(&chain, held)?;
    let lender = local.map(|l| lender(ctx, l, page_size)).transpose()?.flatten();
    if let Some(hashes) = &lender {
        pieces = rebuild::lend(&chain, pieces, &pages::PageIndex::new(hashes)?)?;
    }
    let frames = Frames::new(ctx, &chain, &pieces)?;
    let lends = pieces.iter().any(|p| matches!(p, Ok(Piece::Local { .. })));
    let local_file = match (local, lends) {
        (Some(l), true) => Some(std::fs::File::open(&l.path).map_err(|e| Error::io("cannot read", &l.path, e))?),
        _ => None,
    };
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, out);
    let (received, sha256) = frames.rebuild(ctx.store.as_ref(), &chain, &pieces, local_file.as_ref(), &mut writer, bar)?;
    std::io::Write::flush(&mut writer).map_err(|e| Error::io("cannot write", ctx.tmp_dir(), e))?;
    if sha256 == id.sha256
        && let Some(hashes) = target_hashes(&chain, &pieces, lender.as_ref())?
    {
        remember(ctx, &chain[0], &hashes)?;
    }
    Ok(Rebuilt { received, sha256 })
}

/// The recipes from `id`'s down to a base, or to the version the local file holds (`holds`):
/// then the last one's parent runs read the local file (`true`).
fn chain_to(ctx: &Context, id: &VersionId, recipe: Recipe, holds: Option<&str>) -> Result<(Vec<Recipe>, bool)> {
    let mut chain = vec![recipe];
    while let Some(parent) = chain.last().and_then(|r| r.parent.clone()) {
        if holds == Some(parent.sha256.as_str()) {
            return Ok((chain, true));
        }
        if chain.len() > MAX_CHAIN as usize * 2 {
            return Err(Error::refused(
                format!("the recipe chain of `{}` v{} is longer than {}", id.stem, id.version, MAX_CHAIN * 2),
                "publish the version again",
            ));
        }
        let parent_id = VersionId { stem: id.stem.clone(), version: parent.version, sha256: parent.sha256 };
        let Some(next) = read_recipe(ctx.store.as_ref(), &parent_id)? else {
            return Err(Error::refused(
                format!(
                    "`{}` v{} is built on v{}, whose recipe `{}` is missing",
                    id.stem,
                    id.version,
                    parent_id.version,
                    parent_id.recipe_key()
                ),
                "restore the object, or publish the version again",
            ));
        };
        chain.push(next);
    }
    Ok((chain, false))
}

/// The page hashes of the local file, when it can lend pages of this size.
fn lender(ctx: &Context, local: &Local, page_size: u32) -> Result<Option<Column<u64>>> {
    if let Some(mut cached) = local.holds.as_deref().and_then(|sha| recall(ctx, sha)).filter(|c| c.page_size == page_size) {
        // The file holds the version's content: every page is the version's but the first, whose
        // header may differ in the bytes that record no content (journal mode, change counter).
        if !cached.hashes.is_empty() {
            cached.hashes.set(0, first_page_hash(&local.path, page_size)?).map_err(column::failed)?;
        }
        return Ok(Some(cached.hashes));
    }
    if pages::page_size_of(&local.path).ok() != Some(page_size) {
        return Ok(None);
    }
    Ok(Some(pages::hash_pages(&local.path, page_size)?.0))
}

/// The hash of the first page of the file at `path`, as it is on disk.
fn first_page_hash(path: &Path, page_size: u32) -> Result<u64> {
    let mut page = vec![0u8; page_size as usize];
    std::fs::File::open(path).and_then(|f| f.read_exact_at(&mut page, 0)).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(pages::page_hash(&page))
}

/// The page hashes of the rebuilt file, from the recipes and the local file's (None: a page the
/// local file lent is past its end).
fn target_hashes(chain: &[Recipe], pieces: &Column<Piece>, local: Option<&Column<u64>>) -> Result<Option<Column<u64>>> {
    let starts: Vec<Vec<u64>> =
        chain.iter().map(|r| r.frames.iter().scan(0, |n, f| Some(std::mem::replace(n, *n + u64::from(f.pages)))).collect()).collect();
    let mut hashes = Column::new();
    for piece in pieces.iter() {
        let (level, first, count) = match piece.map_err(column::failed)? {
            Piece::Local { count, from, .. } => (None, from, count),
            Piece::Frame { count, level, frame, skip, .. } => (Some(level), starts[level][frame as usize] + u64::from(skip), count),
        };
        for n in first..first + count {
            let hash = match (level, local) {
                (Some(level), _) => chain[level].framed_hash(n)?,
                (None, Some(local)) => local.get(n).map_err(column::failed)?,
                (None, None) => None,
            };
            let Some(hash) = hash else { return Ok(None) };
            hashes.push(hash).map_err(column::failed)?;
        }
    }
    Ok(Some(hashes))
}

/// The frames a rebuild reads, fetched into one sparse temp file per pack in the order the
/// rebuild first needs them, while the rebuild reads each one as soon as its bytes have landed.
struct Frames {
    files: std::collections::HashMap<(usize, u32), tempfile::NamedTempFile>,
    /// The ranged GETs: (level, pack), offset, length; in the order the rebuild needs them.
    gets: Vec<((usize, u32), u64, u64)>,
    landing: Landing,
    /// Where the rebuild keeps frames it reads again later.
    spill: std::fs::File,
}

/// Frames further apart than this are fetched by separate ranged GETs (a GET costs about what
/// this many bytes of egress do, and a round trip).
const GAP: u64 = 64 << 10;
/// A pack is read in at most one stretch per this many bytes of frames needed from it (and at
/// least one): beyond that, the smallest gaps between its stretches are read too.
const BYTES_PER_STRETCH: u64 = 4 << 20;
/// A stretch longer than this is read in pieces of it, several at once.
const PIECE: u64 = 16 << 20;
/// Pieces in flight at once (as a whole download's stretches).
const IN_FLIGHT: usize = 4;

impl Frames {
    /// The GETs reading the frames `pieces` (a plan of `chain`) need, and a temp file per pack.
    fn new(ctx: &Context, chain: &[Recipe], pieces: &Column<Piece>) -> Result<Frames> {
        let mut by_pack: std::collections::BTreeMap<(usize, u32), Vec<(pages::Frame, u64)>> = Default::default();
        for ((level, frame), first) in rebuild::frames_needed(pieces)? {
            let f = chain[level].frames[frame as usize];
            by_pack.entry((level, f.pack)).or_default().push((f, first));
        }
        let tmp = ctx.tmp_dir();
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        let spill = tempfile::tempfile_in(&tmp).map_err(|e| Error::io("cannot create a temp file in", &tmp, e))?;
        let mut frames = Frames { files: Default::default(), gets: Vec::new(), landing: Landing::default(), spill };
        let mut order = Vec::new();
        for (pack, mut list) in by_pack {
            list.sort_by_key(|(f, _)| f.offset);
            let ranges: Vec<pages::Frame> = list.iter().map(|(f, _)| *f).collect();
            for (offset, len) in stretches(&ranges).into_iter().flat_map(split) {
                // A GET is needed as early as the first frame it holds part of.
                let first = list.iter().filter(|(f, _)| f.offset < offset + len && offset < f.offset + f.len).map(|(_, i)| *i).min();
                order.push((first.unwrap_or(u64::MAX), (pack, offset, len)));
            }
            let file = tempfile::Builder::new()
                .prefix(".b2m-pack-")
                .tempfile_in(&tmp)
                .map_err(|e| Error::io("cannot create a temp file in", &tmp, e))?;
            frames.files.insert(pack, file);
        }
        order.sort_by_key(|(first, _)| *first);
        frames.gets = order.into_iter().map(|(_, get)| get).collect();
        Ok(frames)
    }

    /// Fetches the frames and rebuilds the file from them (and `local`) into `out`, side by side:
    /// the bytes received, and the sha256 of what was written.
    fn rebuild(
        &self,
        store: &dyn Store,
        chain: &[Recipe],
        pieces: &Column<Piece>,
        local: Option<&std::fs::File>,
        out: &mut (dyn std::io::Write + Send),
        bar: &indicatif::ProgressBar,
    ) -> Result<(u64, String)> {
        bar.set_length(self.gets.iter().map(|(_, _, len)| len).sum());
        std::thread::scope(|scope| {
            let download = scope.spawn(|| self.download(store, chain, bar));
            let hidden = indicatif::ProgressBar::hidden();
            let source = Reading { frames: self, chain };
            // A rebuild that fails tells `source` to stop (no further GETs are made).
            let written = rebuild::write(chain[0].page_size, pieces, local, &source, &self.spill, out, &hidden);
            // The download's own error first: a rebuild waiting for its frames only saw it stop.
            let received = download.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            Ok((received, written?))
        })
    }

    /// Makes the GETs, [`IN_FLIGHT`] at a time, each landing where it belongs: the bytes read.
    fn download(&self, store: &dyn Store, chain: &[Recipe], bar: &indicatif::ProgressBar) -> Result<u64> {
        let _ending = Ending(&self.landing);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Result<u64> {
            let mut read = 0;
            while let Some(&(pack, offset, len)) = self.gets.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                if self.landing.stopped() {
                    break;
                }
                let (key, file) = (&chain[pack.0].packs[pack.1 as usize].key, self.files[&pack].as_file());
                let landed = |at: u64, n: u64| self.landing.landed(pack, at, at + n);
                let got = store.download_range(key, offset, len, &mut InOrder::at(file, offset, &landed), bar);
                read += got.inspect_err(|_| self.landing.end(false))?;
            }
            Ok(read)
        };
        let workers = IN_FLIGHT.min(self.gets.len()).max(1);
        let read = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).sum::<Result<u64>>()
        })?;
        if !self.landing.stopped() {
            crate::util::failpoint("pages-after-frames");
        }
        self.landing.end(true);
        Ok(read)
    }

    /// A frame's bytes, once they have landed.
    fn read(&self, chain: &[Recipe], level: usize, frame: u32) -> Result<rebuild::Compressed> {
        let f = chain[level].frames[frame as usize];
        let pack = (level, f.pack);
        let file = self.files.get(&pack).ok_or_else(|| Error::refused("a frame was not fetched", "report this"))?;
        self.landing.wait(pack, f.offset, f.offset + f.len)?;
        let mut bytes = vec![0u8; f.len as usize];
        file.as_file().read_exact_at(&mut bytes, f.offset).map_err(|e| Error::io("cannot read", file.path(), e))?;
        Ok(rebuild::Compressed { bytes, pages: f.pages })
    }
}

/// The frames of `chain` as they land, for the rebuild's decompressing threads.
struct Reading<'a> {
    frames: &'a Frames,
    chain: &'a [Recipe],
}

impl rebuild::FrameSource for Reading<'_> {
    fn frame(&self, level: usize, frame: u32) -> Result<rebuild::Compressed> {
        self.frames.read(self.chain, level, frame)
    }

    fn stop(&self) {
        self.frames.landing.stop();
    }
}

/// Splits a stretch into pieces of at most [`PIECE`] bytes.
fn split((offset, len): (u64, u64)) -> impl Iterator<Item = (u64, u64)> {
    (0..len.div_ceil(PIECE)).map(move |i| (offset + i * PIECE, PIECE.min(len - i * PIECE)))
}

/// What of each pack has landed in its temp file, shared by the GETs and the rebuild.
#[derive(Default)]
struct Landing {
    state: std::sync::Mutex<Landed>,
    moved: std::sync::Condvar,
}

#[derive(Default)]
struct Landed {
    /// Per pack, the stretches landed: start → end, merged.
    packs: std::collections::HashMap<(usize, u32), std::collections::BTreeMap<u64, u64>>,
    /// Once the download ended: whether every GET finished.
    over: Option<bool>,
    /// The rebuild failed: no GET is started any more.
    stopped: bool,
}

impl Landing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Landed> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes `start..end` of `pack` are written.
    fn landed(&self, pack: (usize, u32), start: u64, end: u64) {
        insert(self.lock().packs.entry(pack).or_default(), start, end);
        self.moved.notify_all();
    }

    /// Waits until bytes `start..end` of `pack` have landed.
    fn wait(&self, pack: (usize, u32), start: u64, end: u64) -> Result<()> {
        let mut state = self.lock();
        loop {
            if state.packs.get(&pack).is_some_and(|ranges| covers(ranges, start, end)) {
                return Ok(());
            }
            match state.over {
                Some(true) => return Err(Error::refused("a frame was not fetched", "report this")),
                Some(false) => return Err(Error::refused("the download of the version's frames failed", "try again")),
                None => state = self.moved.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner),
            }
        }
    }

    /// The download is over (`complete`: every GET finished); the first word stands.
    fn end(&self, complete: bool) {
        let mut state = self.lock();
        state.over = state.over.or(Some(complete));
        self.moved.notify_all();
    }

    /// The rebuild failed: the GETs still to make are not made.
    fn stop(&self) {
        self.lock().stopped = true;
    }

    fn stopped(&self) -> bool {
        let state = self.lock();
        state.stopped || state.over == Some(false)
    }
}

/// Ends the download as failed unless it ended already (a GET's thread that panicked included),
/// so a rebuild waiting for frames never waits for good.
struct Ending<'a>(&'a Landing);

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.0.end(false);
    }
}

/// Adds `start..end` to merged stretches.
fn insert(ranges: &mut std::collections::BTreeMap<u64, u64>, mut start: u64, mut end: u64) {
    if let Some((&s, &e)) = ranges.range(..=start).next_back().filter(|(_, e)| **e >= start) {
        (start, end) = (s, end.max(e));
    }
    while let Some((&s, &e)) = ranges.range(start..).next().filter(|(s, _)| **s <= end) {
        end = end.max(e);
        ranges.remove(&s);
    }
    ranges.insert(start, end);
}

/// Whether merged stretches cover `start..end`.
fn covers(ranges: &std::collections::BTreeMap<u64, u64>, start: u64, end: u64) -> bool {
    ranges.range(..=start).next_back().is_some_and(|(_, e)| *e >= end)
}

/// Byte ranges covering `frames` (sorted by offset): neighbours closer than [`GAP`] merged, then
/// the smallest gaps until the stretches are within the budget of [`BYTES_PER_STRETCH`].
fn stretches(frames: &[pages::Frame]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for f in frames {
        match out.last_mut() {
            Some((start, len)) if *start + *len + GAP >= f.offset => *len = (f.offset + f.len).max(*start + *len) - *start,
            _ => out.push((f.offset, f.len)),
        }
    }
    let budget = (frames.iter().map(|f| f.len).sum::<u64>() / BYTES_PER_STRETCH).max(1) as usize;
    if out.len() <= budget {
        return out;
    }
    let mut gaps: Vec<(u64, usize)> = out.windows(2).enumerate().map(|(i, w)| (w[1].0 - (w[0].0 + w[0].1), i)).collect();
    gaps.sort_unstable();
    let mut joins = vec![false; out.len()];
    for &(_, i) in &gaps[..out.len() - budget] {
        joins[i + 1] = true; // stretch i + 1 joins the one before it
    }
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(budget);
    for (i, (offset, len)) in out.into_iter().enumerate() {
        match merged.last_mut() {
            Some((start, total)) if joins[i] => *total = offset + len - *start,
            _ => merged.push((offset, len)),
        }
    }
    merged
}

/// The bucket's `FORMAT.md`: how to rebuild a version without b2m.
pub const FORMAT_DOC: &str = include_str!("../../docs/FORMAT.md");

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(list: &[(u64, u64)]) -> Vec<pages::Frame> {
        list.iter().map(|&(offset, len)| pages::Frame { pack: 0, offset, len, pages: 1 }).collect()
    }

    #[test]
    fn a_few_needed_frames_far_apart_are_read_in_one_stretch_per_4_mib_needed() {
        // 2 MiB needed in 20 frames far apart: one stretch, first to last.
        let spread: Vec<(u64, u64)> = (0..20).map(|i| (i * (1 << 20), 100 << 10)).collect();
        assert_eq!(stretches(&frames(&spread)), vec![(0, 19 * (1 << 20) + (100 << 10))]);
        // Neighbours closer than the gap are one stretch whatever the budget.
        assert_eq!(stretches(&frames(&[(0, 10), (20, 10), (GAP + 30, 10)])), vec![(0, GAP + 40)]);
    }

    #[test]
    fn many_needed_frames_keep_their_widest_gaps_as_separate_stretches() {
        // 40 frames of 1 MiB (40 MiB needed: a budget of 10 stretches), 1 MiB apart but for
        // nine gaps of 64 MiB: those nine stay gaps, every 1 MiB one is read.
        let mut list = Vec::new();
        let mut at = 0;
        for i in 0..40u64 {
            list.push((at, 1 << 20));
            at += 2 << 20;
            if i % 4 == 3 && i < 39 {
                at += 64 << 20;
            }
        }
        let got = stretches(&frames(&list));
        assert_eq!(got.len(), 10, "{got:?}");
        assert!(got.iter().all(|&(_, len)| len == 7 << 20), "each stretch reads 4 frames and 3 gaps of 1 MiB: {got:?}");
        let read: u64 = got.iter().map(|(_, len)| len).sum();
        assert_eq!(read, 70 << 20, "40 MiB needed, 30 MiB of small gaps, none of the 9 big ones");
    }

    #[test]
    fn landed_stretches_merge_and_a_wait_ends_when_the_download_does() {
        let mut ranges = std::collections::BTreeMap::new();
        insert(&mut ranges, 10, 20);
        insert(&mut ranges, 30, 40);
        assert!(covers(&ranges, 12, 20) && !covers(&ranges, 15, 35));
        insert(&mut ranges, 20, 30);
        assert_eq!(ranges.into_iter().collect::<Vec<_>>(), vec![(10, 40)]);
        let landing = Landing::default();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| landing.wait((0, 0), 0, 100));
            landing.landed((0, 0), 0, 60);
            landing.landed((0, 0), 60, 100);
            assert!(waiter.join().expect("join").is_ok());
            let never = scope.spawn(|| landing.wait((0, 1), 0, 10));
            drop(Ending(&landing));
            assert!(never.join().expect("join").is_err(), "a download that ended without the bytes ends the wait");
        });
    }
}
