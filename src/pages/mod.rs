//! Versions stored as pages (README, "Versions stored as pages"; the bucket's FORMAT.md): a
//! version's file cut into its SQLite pages, each page's content hashed, the pages its parent
//! does not hold sent in zstd frames, and a [`Recipe`] that says where every page comes from.
//!
//! [`build`] turns a file (and its parent's page hashes) into a pack and a recipe in one pass;
//! [`rebuild`] turns recipes, a local file and frames back into the file.

pub mod column;
mod compress;
pub mod rebuild;
pub mod recipe;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use column::Column;
pub use recipe::{Frame, Pack, Parent, Recipe, Run};

use crate::error::{Error, Result};

/// A frame (the smallest piece a fetch reads) holds about this share of the file's pages…
const FRAMES_PER_FILE: u64 = 256;
/// …and between these many bytes of them, uncompressed: frames of a few MiB compress as well as
/// one stream, and small files keep small frames, so a fetch of a few pages reads little more.
pub const MIN_FRAME_BYTES: u64 = 128 << 10;
/// See [`MIN_FRAME_BYTES`]; also what a rebuild holds of one frame at a time.
pub const MAX_FRAME_BYTES: u64 = 2 << 20;

/// The zstd level of a base's frames, and of a pack's beyond its first [`DENSE_BYTES`], unless
/// [`FAST_LEVEL`] does as well.
pub const LEVEL: i32 = 4;
/// The zstd level a frame at [`LEVEL`] is probed against, every [`PROBE_EVERY`] frames: where it
/// compresses as well (blobs, hex, data zstd cannot shrink much), it is 2–4× faster.
pub const FAST_LEVEL: i32 = 1;
/// See [`FAST_LEVEL`]: one frame in this many is compressed at both levels, the smaller kept,
/// and the frames cut until the next probe's answer use the level that did as well.
const PROBE_EVERY: u32 = 16;
/// The zstd level of a pack's first frames: a pack is small, and every server reads it.
pub const PACK_LEVEL: i32 = 6;
/// How many bytes of a pack's new pages are compressed at [`PACK_LEVEL`] (a pack bigger than
/// this, after a large change, costs the base's time per byte beyond it).
pub const DENSE_BYTES: u64 = 64 << 20;
/// A pack (a base above all) is cut into objects of at most this many bytes (or one frame), each
/// sent while the next is still being compressed: a fresh upload costs the compression, not it and
/// then the transfer. The store's part size: each object is one PUT.
pub const PACK_OBJECT_BYTES: u64 = 32 << 20;

/// How many distinct new pages a version's pack looks up by content (see `PackWriter::seen`).
const SEEN: usize = 1 << 16;

/// A page's hash: the first 8 bytes of its sha256, big-endian.
pub fn page_hash(page: &[u8]) -> u64 {
    let digest = Sha256::digest(page);
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// The page size a SQLite file's header names (bytes 16–17; 1 means 65536).
pub fn page_size_of(path: &Path) -> Result<u32> {
    let mut header = [0u8; 100];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).map_err(|e| Error::io("cannot read", path, e))?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(Error::refused(format!("`{}` is not a SQLite database", path.display()), "check the file"));
    }
    let size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u32::from(n),
    };
    if !size.is_power_of_two() || size < 512 {
        return Err(Error::refused(format!("`{}` names page size {size}", path.display()), "check the file"));
    }
    Ok(size)
}

/// Pages per frame of a file of `file_bytes` at a page size.
pub fn frame_pages(page_size: u32, file_bytes: u64) -> usize {
    let bytes = (file_bytes / FRAMES_PER_FILE).clamp(MIN_FRAME_BYTES, MAX_FRAME_BYTES);
    (bytes / u64::from(page_size)).max(1) as usize
}

/// The page hashes of every page of a file, in order, and of the whole file its sha256.
pub fn hash_pages(path: &Path, page_size: u32) -> Result<(Column<u64>, String)> {
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?);
    let mut page = vec![0u8; page_size as usize];
    let (mut hashes, mut whole) = (Column::new(), Sha256::new());
    while read_page(&mut file, &mut page).map_err(|e| Error::io("cannot read", path, e))? {
        whole.update(&page);
        hashes.push(page_hash(&page)).map_err(column::failed)?;
    }
    Ok((hashes, hex::encode(whole.finalize())))
}

/// Reads one whole page; false at the end. A file that ends mid-page is an error.
fn read_page(file: &mut impl Read, page: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < page.len() {
        match file.read(&mut page[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ends inside a page")),
            n => filled += n,
        }
    }
    Ok(true)
}

/// A file's pages by hash (the first page holding each): pairs of a hash and its page, sorted
/// and on disk (see [`Column`]), so that memory does not grow with the file.
pub struct PageIndex<'a> {
    hashes: &'a Column<u64>,
    sorted: Column<(u64, u32)>,
}

impl<'a> PageIndex<'a> {
    /// The index of a file whose page hashes are `hashes`, in page order.
    pub fn new(hashes: &'a Column<u64>) -> Result<Self> {
        let pairs = hashes.iter().zip(0u32..).map(|(hash, page)| hash.map(|h| (h, page)));
        let all = column::sorted(pairs, |pair| *pair).map_err(column::failed)?;
        let mut sorted = Column::new();
        let mut last = None;
        for pair in all.iter() {
            let (hash, page) = pair.map_err(column::failed)?;
            if last != Some(hash) {
                sorted.push((hash, page)).map_err(column::failed)?;
                last = Some(hash);
            }
        }
        Ok(PageIndex { hashes, sorted })
    }

    /// The first page holding `hash`.
    pub fn get(&self, hash: u64) -> Result<Option<u64>> {
        let i = self.sorted.partition_point(|&(h, _)| h < hash).map_err(column::failed)?;
        let found = self.sorted.get(i).map_err(column::failed)?;
        Ok(found.filter(|&(h, _)| h == hash).map(|(_, page)| u64::from(page)))
    }

    /// Whether the file had no page.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The page holding `hash`: the first of `near` that does (the page at the same place, one
    /// that did not move; the page after the last one found, as a `VACUUM` moves pages in runs),
    /// else the first page holding it.
    pub fn find(&self, near: &[u64], hash: u64) -> Result<Option<u64>> {
        for &page in near {
            if self.hashes.get(page).map_err(column::failed)? == Some(hash) {
                return Ok(Some(page));
            }
        }
        self.get(hash)
    }
}

/// The parent a new version is cut against: its recipe's reference, and its page hashes.
pub struct Against<'a> {
    /// Which version.
    pub parent: Parent,
    /// Its page hashes, in page order.
    pub hashes: &'a Column<u64>,
}

/// One object of a pack, written whole: [`build`] hands each to its caller as soon as it is.
pub struct PackFile {
    /// Its bytes, in a temporary file.
    pub path: tempfile::TempPath,
    /// Their sha256 (the object's key is `packs/<sha256>.pack`).
    pub sha256: String,
    /// Their length.
    pub size: u64,
}

/// What [`build`] made.
pub struct Built {
    /// The recipe; its packs' keys are empty (fill them in once the objects are sent).
    pub recipe: Recipe,
    /// Page hashes of the new file, in page order (for the local cache).
    pub hashes: Column<u64>,
    /// Pages put in the pack.
    pub new_pages: u64,
    /// Frames compressed at [`FAST_LEVEL`] (where it did as well as [`LEVEL`]).
    pub fast_frames: u64,
}

/// Cuts `path` into pages: those `against` holds (anywhere in it) become runs from the parent,
/// the others go into a pack of zstd frames written in `tmp_dir`, handed to `sent` an object of
/// at most [`PACK_OBJECT_BYTES`] at a time (in order: the recipe's packs). Page 1 (the header)
/// always goes into the pack: a local copy of the parent may differ from it in header bytes alone.
pub fn build(
    path: &Path,
    against: Option<&Against<'_>>,
    tmp_dir: &Path,
    progress: &indicatif::ProgressBar,
    sent: &mut dyn FnMut(PackFile) -> Result<()>,
) -> Result<Built> {
    build_in(path, against, tmp_dir, progress, PACK_OBJECT_BYTES, sent)
}

/// [`build`] with pack objects of at most `object_bytes`.
fn build_in(
    path: &Path,
    against: Option<&Against<'_>>,
    tmp_dir: &Path,
    progress: &indicatif::ProgressBar,
    object_bytes: u64,
    sent: &mut dyn FnMut(PackFile) -> Result<()>,
) -> Result<Built> {
    let page_size = page_size_of(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let file_bytes = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let per_frame = frame_pages(page_size, file_bytes);
    let shape = build::Shape { page_size, per_frame, base: against.is_none(), object_bytes };
    let mut writer = build::PackWriter::new(tmp_dir, shape, sent)?;
    let index = against.map(|a| PageIndex::new(a.hashes)).transpose()?;
    let mut page = vec![0u8; page_size as usize];
    let (mut whole, mut hashes, mut runs) = (Sha256::new(), Column::new(), Column::new());
    let mut at = 0u64;
    // The parent's page after the last one this file's pages were found at.
    let mut follows = u64::MAX;
    while read_page(&mut reader, &mut page).map_err(|e| Error::io("cannot read", path, e))? {
        whole.update(&page);
        let hash = page_hash(&page);
        hashes.push(hash).map_err(column::failed)?;
        let from_parent = match (&index, at) {
            (_, 0) => None,
            (Some(index), _) => index.find(&[at, follows], hash)?,
            (None, _) => None,
        };
        let run = match from_parent {
            Some(from) => {
                follows = from + 1;
                Run::Parent { at, count: 1, from }
            }
            None => writer.add(at, &page, hash)?,
        };
        build::push_run(&mut runs, run)?;
        progress.inc(u64::from(page_size));
        at += 1;
    }
    let build::Written { packs, frames, hashes: framed_hashes, fast_frames } = writer.finish()?;
    let new_pages = frames.iter().map(|f| u64::from(f.pages)).sum();
    let size = packs.iter().map(|p| p.size).sum();
    let recipe = Recipe {
        format: recipe::FORMAT,
        page_size,
        pages: at,
        sha256: hex::encode(whole.finalize()),
        parent: against.map(|a| a.parent.clone()),
        packs,
        frames,
        runs,
        hashes: framed_hashes,
        chain: 0,
        base_bytes: size,
        since_base: 0,
    };
    Ok(Built { recipe, hashes, new_pages, fast_frames })
}

mod build {
    //! The pieces of [`super::build`]: runs, the pack writer.

    use super::compress::Levels;
    use super::*;

    /// Appends `run`, merged into the last run when it continues it.
    pub fn push_run(runs: &mut Column<Run>, run: Run) -> Result<()> {
        let merged = match (runs.last_mut(), run) {
            (Some(Run::Parent { at, count, from }), Run::Parent { at: a, from: f, .. }) if *at + *count == a && *from + *count == f => {
                *count += 1;
                true
            }
            (Some(Run::Frame { at, count, frame, skip }), Run::Frame { at: a, frame: fr, skip: s, .. })
                if *at + *count == a && *frame == fr && u64::from(*skip) + *count == u64::from(s) =>
            {
                *count += 1;
                true
            }
            _ => false,
        };
        if !merged {
            runs.push(run).map_err(column::failed)?;
        }
        Ok(())
    }

    /// How a pack is cut: frames of `per_frame` pages (a `base`'s all at [`LEVEL`] or
    /// [`FAST_LEVEL`], a pack's first [`DENSE_BYTES`] at [`PACK_LEVEL`]), objects of about
    /// `object_bytes`.
    pub struct Shape {
        pub page_size: u32,
        pub per_frame: usize,
        pub base: bool,
        pub object_bytes: u64,
    }

    /// The pack object being written: its file, the sha256 and length of its bytes so far.
    struct Open {
        file: tempfile::NamedTempFile,
        sha: Sha256,
        len: u64,
    }

    /// Frames of new pages, compressed on every core while the next ones are cut, written in order
    /// into objects handed on as each fills.
    pub struct PackWriter<'s> {
        dir: PathBuf,
        shape: Shape,
        sent: &'s mut dyn FnMut(PackFile) -> Result<()>,
        open: Option<Open>,
        packs: Vec<Pack>,
        /// Pages of the frame being filled; the frames cut so far, and their bytes.
        filling: Vec<u8>,
        cut: u32,
        cut_bytes: u64,
        compressors: super::compress::Compressors,
        frames: Vec<Frame>,
        hashes: Column<u64>,
        /// New pages seen in this version, by hash: a page repeated (zero pages, a blob stored
        /// twice) is sent once. Only the first [`SEEN`] are kept, so that memory stays flat in
        /// the file's size: past them a repeated page is sent again, in a frame where zstd makes
        /// little of it.
        seen: std::collections::HashMap<u64, (u32, u32)>,
        /// The last probe found [`FAST_LEVEL`] as good as [`LEVEL`]; frames kept at it.
        fast: bool,
        fast_frames: u64,
    }

    impl<'s> PackWriter<'s> {
        pub fn new(dir: &Path, shape: Shape, sent: &'s mut dyn FnMut(PackFile) -> Result<()>) -> Result<Self> {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
            Ok(PackWriter {
                dir: dir.to_path_buf(),
                shape,
                sent,
                open: None,
                packs: Vec::new(),
                filling: Vec::new(),
                cut: 0,
                cut_bytes: 0,
                compressors: super::compress::Compressors::new(),
                frames: Vec::new(),
                hashes: Column::new(),
                seen: Default::default(),
                fast: false,
                fast_frames: 0,
            })
        }

        /// Adds a new page at `at`; returns its run.
        pub fn add(&mut self, at: u64, page: &[u8], hash: u64) -> Result<Run> {
            if let Some(&(frame, skip)) = self.seen.get(&hash) {
                return Ok(Run::Frame { at, count: 1, frame, skip });
            }
            let page_size = self.shape.page_size as usize;
            let (frame, skip) = (self.cut, (self.filling.len() / page_size) as u32);
            self.filling.extend_from_slice(page);
            self.hashes.push(hash).map_err(column::failed)?;
            if self.seen.len() < SEEN {
                self.seen.insert(hash, (frame, skip));
            }
            if self.filling.len() / page_size == self.shape.per_frame {
                self.cut()?;
            }
            Ok(Run::Frame { at, count: 1, frame, skip })
        }

        /// Hands the frame being filled to the compressors; writes those compressed already.
        fn cut(&mut self) -> Result<()> {
            if !self.filling.is_empty() {
                let levels = if !self.shape.base && self.cut_bytes < DENSE_BYTES {
                    Levels::One(PACK_LEVEL)
                } else if self.cut.is_multiple_of(PROBE_EVERY) {
                    Levels::Probe(FAST_LEVEL, LEVEL)
                } else {
                    Levels::One(if self.fast { FAST_LEVEL } else { LEVEL })
                };
                self.cut_bytes += self.filling.len() as u64;
                self.cut += 1;
                let raw = std::mem::take(&mut self.filling);
                self.compressors.push(raw, levels).map_err(|e| Error::refused(format!("cannot compress a frame: {e}"), "report this"))?;
            }
            self.write(false)
        }

        /// Appends the compressed frames to the pack, in order: those ready, or (`all`) every one.
        fn write(&mut self, all: bool) -> Result<()> {
            while let Some(done) = self.compressors.next(all) {
                let (len, fast) = (done.len, done.level == FAST_LEVEL);
                let frame = done.frame.map_err(|e| Error::refused(format!("cannot compress a frame: {e}"), "report this"))?;
                self.fast = if done.probed { fast } else { self.fast };
                self.fast_frames += u64::from(fast);
                // An object is never made bigger than its size by a frame (a single PUT each).
                if self.open.as_ref().is_some_and(|o| o.len > 0 && o.len + frame.len() as u64 > self.shape.object_bytes) {
                    self.close()?;
                }
                if self.open.is_none() {
                    let file = tempfile::Builder::new()
                        .prefix(".b2m-pack-")
                        .tempfile_in(&self.dir)
                        .map_err(|e| Error::io("cannot create a temp file in", &self.dir, e))?;
                    self.open = Some(Open { file, sha: Sha256::new(), len: 0 });
                }
                let Some(open) = self.open.as_mut() else { return Ok(()) };
                open.file.write_all(&frame).map_err(|e| Error::io("cannot write", open.file.path(), e))?;
                open.sha.update(&frame);
                let pages = (len / self.shape.page_size as usize) as u32;
                self.frames.push(Frame { pack: self.packs.len() as u32, offset: open.len, len: frame.len() as u64, pages });
                open.len += frame.len() as u64;
            }
            Ok(())
        }

        /// Hands the object being written on, whole.
        fn close(&mut self) -> Result<()> {
            let Some(Open { file, sha, len }) = self.open.take() else { return Ok(()) };
            self.packs.push(Pack { key: String::new(), size: len });
            (self.sent)(PackFile { path: file.into_temp_path(), sha256: hex::encode(sha.finalize()), size: len })
        }

        /// The pack's objects (empty when no page was new), its frames and their page hashes.
        pub fn finish(mut self) -> Result<Written> {
            self.cut()?;
            self.write(true)?;
            self.close()?;
            Ok(Written { packs: self.packs, frames: self.frames, hashes: self.hashes, fast_frames: self.fast_frames })
        }
    }

    /// What a [`PackWriter`] wrote.
    pub struct Written {
        pub packs: Vec<Pack>,
        pub frames: Vec<Frame>,
        /// The hashes of the pages the frames hold, in order.
        pub hashes: Column<u64>,
        /// Frames kept at [`FAST_LEVEL`].
        pub fast_frames: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`build_in`] with pack objects of at most `object_bytes`, kept.
    pub(crate) fn built(path: &Path, against: Option<&Against<'_>>, dir: &Path, object_bytes: u64) -> (Built, Vec<PackFile>) {
        let mut objects = Vec::new();
        let hidden = indicatif::ProgressBar::hidden();
        let built = build_in(path, against, dir, &hidden, object_bytes, &mut |object| {
            objects.push(object);
            Ok(())
        })
        .expect("build");
        (built, objects)
    }

    /// `len` bytes of text like a table's rows: numbered lines of words from a vocabulary of 300
    /// (zstd's levels compress it as they do real rows: level 1 about 9% bigger than level 4).
    pub(crate) fn text(len: usize) -> Vec<u8> {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let words: Vec<String> = (0..300).map(|_| (0..3 + next(7)).map(|_| (b'a' + next(26) as u8) as char).collect()).collect();
        let mut bytes = Vec::with_capacity(len + 200);
        for row in 1.. {
            if bytes.len() >= len {
                break;
            }
            let line: Vec<&str> = (0..4 + next(11)).map(|_| words[next(300) as usize].as_str()).collect();
            bytes.extend_from_slice(format!("row {row} {}\n", line.join(" ")).as_bytes());
        }
        bytes.truncate(len);
        bytes
    }

    /// A file that looks like a SQLite database of `pages` pages of 4096 bytes of [`text`].
    pub(crate) fn text_file(dir: &Path, pages: usize) -> PathBuf {
        let mut bytes = text(pages * 4096);
        bytes[..16].copy_from_slice(b"SQLite format 3\0");
        bytes[16..18].copy_from_slice(&4096u16.to_be_bytes());
        let path = dir.join("test.db");
        std::fs::write(&path, &bytes).expect("write");
        path
    }

    #[test]
    fn a_page_index_finds_the_first_page_holding_a_hash() {
        let hashes: Column<u64> = [9, 4, 9, 7, 4].into_iter().collect();
        let index = PageIndex::new(&hashes).expect("index");
        let found: Vec<Option<u64>> = [9, 4, 7, 5].iter().map(|h| index.get(*h).expect("read")).collect();
        assert_eq!(found, vec![Some(0), Some(1), Some(3), None]);
        assert!(PageIndex::new(&Column::new()).expect("index").is_empty());
    }

    #[test]
    fn a_page_index_too_big_to_sort_at_once_finds_the_first_page_of_each_hash() {
        // 3 × 50,000 pages: every hash three times, sorted through runs on disk.
        let hashes: Column<u64> = (0..150_000u64).map(|page| (page % 50_000).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let index = PageIndex::new(&hashes).expect("index");
        for page in [0u64, 1, 4_095, 4_096, 49_999] {
            let hash = page.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(index.get(hash).expect("read"), Some(page), "page {page}");
            assert_eq!(index.find(&[page + 50_000], hash).expect("read"), Some(page + 50_000), "a page that did not move");
            assert_eq!(index.find(&[7, page + 100_000], hash).expect("read"), Some(page + 100_000), "the next that holds it");
        }
        assert_eq!(index.get(12345).expect("read"), None);
    }

    #[test]
    fn frames_are_a_256th_of_the_file_within_128_kib_and_2_mib() {
        assert_eq!(frame_pages(4096, 4 << 20), 32, "a small file: 128 KiB frames");
        assert_eq!(frame_pages(4096, 256 << 20), 256, "1 MiB frames");
        assert_eq!(frame_pages(4096, 512 << 20), 512, "2 MiB frames");
        assert_eq!(frame_pages(4096, 64 << 30), 512, "never more than 2 MiB");
        assert_eq!(frame_pages(65536, 1 << 20), 2);
    }

    #[test]
    fn a_base_is_cut_in_frames_of_its_size_and_a_pack_is_compressed_harder() {
        let dir = tempfile::tempdir().expect("dir");
        let path = text_file(dir.path(), 96);
        let (base, base_objects) = built(&path, None, dir.path(), PACK_OBJECT_BYTES);
        let pages: Vec<u32> = base.recipe.frames.iter().map(|f| f.pages).collect();
        assert_eq!(pages, vec![32, 32, 32]);
        // Cut against a parent that shares no page: the same frames, as a pack.
        let parent = Parent { version: 1, sha256: "0".repeat(64) };
        let (pack, pack_objects) = built(&path, Some(&Against { parent, hashes: &Column::new() }), dir.path(), PACK_OBJECT_BYTES);
        assert_eq!(pack.new_pages, 96);
        assert_eq!((base_objects.len(), pack_objects.len()), (1, 1), "one object each");
        let (base_size, pack_size) = (base_objects[0].size, pack_objects[0].size);
        assert!(pack_size < base_size, "a pack at level {PACK_LEVEL} ({pack_size}) beats a base at level {LEVEL} ({base_size})");
    }

    #[test]
    fn a_base_is_compressed_at_the_fast_level_where_it_does_as_well() {
        let dir = tempfile::tempdir().expect("dir");
        let text = text_file(dir.path(), 48 * 32);
        let (base, _) = built(&text, None, dir.path(), PACK_OBJECT_BYTES);
        assert_eq!((base.recipe.frames.len(), base.fast_frames), (48, 0), "text: every frame at level {LEVEL}");
        // Hex digits (as in blobs stored as text): level 1 does as well, 2-4× faster.
        let mut bytes = std::fs::read(&text).expect("read");
        let mut seed = 7u64;
        for b in &mut bytes[4096..] {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = b"0123456789abcdef"[(seed >> 60) as usize];
        }
        std::fs::write(&text, &bytes).expect("write");
        let (base, _) = built(&text, None, dir.path(), PACK_OBJECT_BYTES);
        assert!(base.fast_frames >= 40, "hex: {} of 48 frames at level {FAST_LEVEL}", base.fast_frames);
    }

    #[test]
    fn a_pack_past_its_object_size_is_cut_into_objects_between_frames() {
        let dir = tempfile::tempdir().expect("dir");
        let path = text_file(dir.path(), 96);
        let (one, _) = built(&path, None, dir.path(), PACK_OBJECT_BYTES);
        // Objects of frame 0 and 1's bytes: those two in the first, frame 2 in the second.
        let two_frames = one.recipe.frames[0].len + one.recipe.frames[1].len;
        let (cut, objects) = built(&path, None, dir.path(), two_frames);
        let at: Vec<(u32, u64)> = cut.recipe.frames.iter().map(|f| (f.pack, f.offset)).collect();
        assert_eq!(at, vec![(0, 0), (0, cut.recipe.frames[0].len), (1, 0)]);
        let sizes: Vec<u64> = objects.iter().map(|o| o.size).collect();
        assert_eq!(sizes, cut.recipe.packs.iter().map(|p| p.size).collect::<Vec<_>>(), "the recipe's packs are the objects");
        for object in &objects {
            let bytes = std::fs::read(&object.path).expect("read");
            assert_eq!((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))), (object.size, object.sha256.clone()));
        }
        let frames = |b: &Built| b.recipe.frames.iter().map(|f| (f.len, f.pages)).collect::<Vec<_>>();
        assert_eq!(frames(&cut), frames(&one), "the same frames either way");
    }
}
