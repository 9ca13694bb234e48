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
use crate::pages::rebuild::{self, Piece};
use crate::pages::{self, Recipe};
use crate::store::{Condition, Store};

/// A new base once the packs since the last one weigh this share of it…
const BASE_SHARE: f64 = 0.5;
/// …or once this many versions were cut against their parents since it.
const MAX_CHAIN: u32 = 64;
/// How many versions' page hashes this machine keeps.
const CACHED: usize = 8;

/// The page hashes of a version this machine held, and its recipe's chain figures.
struct Cached {
    hashes: Vec<u64>,
    page_size: u32,
    chain: u32,
    base_bytes: u64,
    since_base: u64,
}

fn cache_dir(ctx: &Context) -> PathBuf {
    ctx.settings.state_dir.join("pages")
}

/// Remembers the page hashes of the version `recipe` describes (this machine holds its file).
fn remember(ctx: &Context, recipe: &Recipe, hashes: &[u64]) -> Result<()> {
    let dir = cache_dir(ctx);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let mut bytes = Vec::with_capacity(32 + hashes.len() * 8);
    for n in [u64::from(recipe.page_size), u64::from(recipe.chain), recipe.base_bytes, recipe.since_base] {
        bytes.extend_from_slice(&n.to_be_bytes());
    }
    hashes.iter().for_each(|h| bytes.extend_from_slice(&h.to_be_bytes()));
    crate::fsutil::write_atomic(&dir.join(format!("{}.pages", recipe.sha256)), &bytes)?;
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
    let bytes = std::fs::read(cache_dir(ctx).join(format!("{sha256}.pages"))).ok()?;
    let mut words = bytes.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
    let (page_size, chain, base_bytes, since_base) = (words.next()?, words.next()?, words.next()?, words.next()?);
    Some(Cached {
        page_size: u32::try_from(page_size).ok()?,
        chain: u32::try_from(chain).ok()?,
        base_bytes,
        since_base,
        hashes: words.collect(),
    })
}

/// The recipe of `id`, when it is stored as pages.
pub fn read_recipe(store: &dyn Store, id: &VersionId) -> Result<Option<Recipe>> {
    let key = id.recipe_key();
    let Some(object) = store.get(&key)? else { return Ok(None) };
    let recipe = Recipe::decode(&object.body, &format!("{}/{key}", store.location()))?;
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
/// a new base. `settle` is asked before anything is sent (false: nothing is). Writes the pack (or
/// base) and the recipe; returns the version and its size.
pub fn send(
    ctx: &Context,
    path: &Path,
    stem: &str,
    version: u64,
    parent: Option<&ParentRef>,
    bar: &indicatif::ProgressBar,
    settle: &mut dyn FnMut() -> bool,
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
    let mut built = pages::build(path, cut.as_ref(), &ctx.tmp_dir(), bar)?;
    let id = VersionId { stem: stem.to_string(), version, sha256: built.recipe.sha256.clone() };
    let pack_size = built.recipe.packs.first().map_or(0, |p| p.size);
    if let Some((_, c)) = against {
        (built.recipe.chain, built.recipe.base_bytes, built.recipe.since_base) = (c.chain + 1, c.base_bytes, c.since_base + pack_size);
    }
    if !settle() {
        return Err(Error::refused("the snapshot failed its integrity check", "nothing was sent"));
    }
    if let Some(pack) = &built.pack {
        // A base is a pack too: the `.db` key means "this version whole", always.
        let key = layout::pack_key(stem, &built.pack_sha256);
        let bar = ctx.out.bytes_bar(pack_size, "upload");
        ctx.store.upload_file(&key, pack, &built.pack_sha256, &bar)?;
        bar.finish_and_clear();
        built.recipe.packs[0].key = key;
    }
    crate::util::failpoint("pages-after-pack");
    // Written over an earlier attempt's: this one's packs were just sent, an earlier one's may
    // have been swept since (the recipe of a version not yet committed is an orphan too).
    ctx.store.put(&id.recipe_key(), &built.recipe.encode()?, Condition::None)?;
    crate::util::failpoint("pages-after-recipe");
    put_once(ctx.store.as_ref(), layout::FORMAT_DOC, FORMAT_DOC.as_bytes())?;
    remember(ctx, &built.recipe, &built.hashes)?;
    tracing::info!(pages = built.recipe.pages, new = built.new_pages, pack = pack_size, base = against.is_none(), "sent as pages");
    Ok((id, built.recipe.size()))
}

/// The page hashes of `parent` as its recipes say, for a machine that never held it here (a
/// fresh clone, a rebuilt server): its recipe chain down to a base, a GET each, no listing. None
/// when it is stored whole (the next version is then a base).
fn hashes_in_bucket(ctx: &Context, stem: &str, parent: &ParentRef) -> Result<Option<Cached>> {
    let id = VersionId { stem: stem.to_string(), version: parent.version, sha256: parent.sha256.clone() };
    let Some(recipe) = read_recipe(ctx.store.as_ref(), &id)? else { return Ok(None) };
    let (chain, _) = chain_to(ctx, &id, recipe, None)?;
    let pieces = rebuild::plan(&chain, false)?;
    let Some(hashes) = target_hashes(&chain, &pieces, None) else { return Ok(None) };
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
/// frames that no page of the local file of `stem` holds. Checked by the caller against the
/// sha256; when local pages were lent and the result is wrong, it is rebuilt again from the
/// bucket alone.
pub fn fetch(ctx: &Context, id: &VersionId, recipe: Recipe, out: &std::fs::File, bar: &indicatif::ProgressBar) -> Result<Rebuilt> {
    let local = local_file(ctx, &id.stem);
    let first = rebuild_from(ctx, id, recipe.clone(), local.as_ref(), out, bar)?;
    if first.sha256 == id.sha256 || local.is_none() {
        return Ok(first);
    }
    tracing::warn!(stem = id.stem, "pages lent by the local file did not add up; rebuilding from the bucket alone");
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
        pieces = rebuild::lend(&chain, pieces, &rebuild::local_index(hashes));
    }
    let needed = rebuild::frames_needed(&pieces);
    let frames = Frames::fetch(ctx, &chain, &needed, bar)?;
    let received = frames.received;
    crate::util::failpoint("pages-after-frames");
    let local_file = match (local, pieces.iter().any(|p| matches!(p, Piece::Local { .. }))) {
        (Some(l), true) => Some(std::fs::File::open(&l.path).map_err(|e| Error::io("cannot read", &l.path, e))?),
        _ => None,
    };
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, out);
    let sha256 = rebuild::write(
        page_size,
        &pieces,
        local_file.as_ref(),
        &mut |level, frame| frames.read(&chain, level, frame),
        &mut writer,
        &indicatif::ProgressBar::hidden(),
    )?;
    std::io::Write::flush(&mut writer).map_err(|e| Error::io("cannot write", ctx.tmp_dir(), e))?;
    if sha256 == id.sha256 {
        let hashes = target_hashes(&chain, &pieces, lender.as_deref());
        if let Some(hashes) = hashes {
            remember(ctx, &chain[0], &hashes)?;
        }
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
fn lender(ctx: &Context, local: &Local, page_size: u32) -> Result<Option<Vec<u64>>> {
    if let Some(mut cached) = local.holds.as_deref().and_then(|sha| recall(ctx, sha)).filter(|c| c.page_size == page_size) {
        // The file holds the version's content: every page is the version's but the first, whose
        // header may differ in the bytes that record no content (journal mode, change counter).
        if let Some(first) = cached.hashes.first_mut() {
            *first = first_page_hash(&local.path, page_size)?;
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

/// The page hashes of the rebuilt file, from the recipes and the local file's.
fn target_hashes(chain: &[Recipe], pieces: &[Piece], local: Option<&[u64]>) -> Option<Vec<u64>> {
    let starts: Vec<Vec<u64>> =
        chain.iter().map(|r| r.frames.iter().scan(0, |n, f| Some(std::mem::replace(n, *n + u64::from(f.pages)))).collect()).collect();
    let mut hashes = Vec::with_capacity(chain[0].pages as usize);
    for piece in pieces {
        match *piece {
            Piece::Local { count, from, .. } => hashes.extend_from_slice(local?.get(from as usize..(from + count) as usize)?),
            Piece::Frame { count, level, frame, skip, .. } => {
                let first = starts[level][frame as usize] + u64::from(skip);
                for n in first..first + count {
                    hashes.push(chain[level].framed_hash(n)?);
                }
            }
        }
    }
    Some(hashes)
}

/// The frames a rebuild reads, fetched into one sparse temp file per pack.
struct Frames {
    files: std::collections::HashMap<(usize, u32), tempfile::NamedTempFile>,
    received: u64,
}

/// Frames further apart than this are fetched by separate ranged GETs (a GET costs about what
/// this many bytes of egress do, and a round trip).
const GAP: u64 = 64 << 10;
/// A pack needing more separate stretches than this is read in one GET from its first needed
/// frame to its last.
const MAX_STRETCHES: usize = 16;

impl Frames {
    fn fetch(ctx: &Context, chain: &[Recipe], needed: &[(usize, u32)], bar: &indicatif::ProgressBar) -> Result<Frames> {
        let mut by_pack: std::collections::BTreeMap<(usize, u32), Vec<pages::Frame>> = Default::default();
        for &(level, frame) in needed {
            let f = chain[level].frames[frame as usize];
            by_pack.entry((level, f.pack)).or_default().push(f);
        }
        let mut frames = Frames { files: Default::default(), received: 0 };
        let tmp = ctx.tmp_dir();
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        let total: u64 = by_pack.values().flatten().map(|f| f.len).sum();
        bar.set_length(total);
        for ((level, pack), mut list) in by_pack {
            list.sort_by_key(|f| f.offset);
            let key = &chain[level].packs[pack as usize].key;
            let file = tempfile::Builder::new()
                .prefix(".b2m-pack-")
                .tempfile_in(ctx.tmp_dir())
                .map_err(|e| Error::io("cannot create a temp file in", ctx.tmp_dir(), e))?;
            frames.received += fetch_stretches(ctx, key, &stretches(&list), file.as_file(), bar)?;
            frames.files.insert((level, pack), file);
        }
        Ok(frames)
    }

    fn read(&self, chain: &[Recipe], level: usize, frame: u32) -> Result<Vec<u8>> {
        let f = chain[level].frames[frame as usize];
        let file = self.files.get(&(level, f.pack)).ok_or_else(|| Error::refused("a frame was not fetched", "report this"))?;
        let mut bytes = vec![0u8; f.len as usize];
        file.as_file().read_exact_at(&mut bytes, f.offset).map_err(|e| Error::io("cannot read", file.path(), e))?;
        Ok(bytes)
    }
}

/// A stretch longer than this is read in pieces of it, several at once.
const PIECE: u64 = 16 << 20;
/// Pieces in flight at once (as a whole download's stretches).
const IN_FLIGHT: usize = 4;

/// Reads byte ranges of `key` into `file` at their offsets, pieces of big ones side by side; the
/// bytes read.
fn fetch_stretches(ctx: &Context, key: &str, stretches: &[(u64, u64)], file: &std::fs::File, bar: &indicatif::ProgressBar) -> Result<u64> {
    let pieces: Vec<(u64, u64)> = stretches
        .iter()
        .flat_map(|&(offset, len)| (0..len.div_ceil(PIECE)).map(move |i| (offset + i * PIECE, PIECE.min(len - i * PIECE))))
        .collect();
    let (store, next) = (ctx.store.as_ref(), std::sync::atomic::AtomicUsize::new(0));
    let work = || -> Result<u64> {
        let mut read = 0;
        while let Some(&(offset, len)) = pieces.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            read += store.download_range(key, offset, len, &mut At { file, offset }, bar)?;
        }
        Ok(read)
    };
    let workers = IN_FLIGHT.min(pieces.len()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).sum::<Result<u64>>()
    })
}

/// Byte ranges covering `frames` (sorted by offset): neighbours merged.
fn stretches(frames: &[pages::Frame]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for f in frames {
        match out.last_mut() {
            Some((start, len)) if *start + *len + GAP >= f.offset => *len = (f.offset + f.len).max(*start + *len) - *start,
            _ => out.push((f.offset, f.len)),
        }
    }
    if out.len() > MAX_STRETCHES {
        let (first, last) = (out[0].0, out.last().map_or(0, |(s, l)| s + l));
        return vec![(first, last - first)];
    }
    out
}

/// A writer at a position of a file.
struct At<'a> {
    file: &'a std::fs::File,
    offset: u64,
}

impl std::io::Write for At<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bucket's `FORMAT.md`: how to rebuild a version without b2m.
pub const FORMAT_DOC: &str = include_str!("../../docs/FORMAT.md");
