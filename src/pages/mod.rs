//! Versions stored as pages (README, "Versions stored as pages"; the bucket's FORMAT.md): a
//! version's file cut into its SQLite pages, each page's content hashed, the pages its parent
//! does not hold sent in zstd frames, and a [`Recipe`] that says where every page comes from.
//!
//! [`build`] turns a file (and its parent's page hashes) into a pack and a recipe in one pass;
//! [`rebuild`] turns recipes, a local file and frames back into the file.

pub mod rebuild;
pub mod recipe;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use recipe::{Frame, Pack, Parent, Recipe, Run};

use crate::error::{Error, Result};

/// Uncompressed bytes per frame: a frame is the smallest piece a fetch reads.
pub const FRAME_BYTES: usize = 128 << 10;

/// The zstd level packs are written at.
pub const LEVEL: i32 = 3;

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

/// Pages per frame at a page size.
pub fn frame_pages(page_size: u32) -> usize {
    (FRAME_BYTES / page_size as usize).max(1)
}

/// The page hashes of every page of a file, in order, and of the whole file its sha256.
pub fn hash_pages(path: &Path, page_size: u32) -> Result<(Vec<u64>, String)> {
    let mut file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?);
    let mut page = vec![0u8; page_size as usize];
    let (mut hashes, mut whole) = (Vec::new(), Sha256::new());
    while read_page(&mut file, &mut page).map_err(|e| Error::io("cannot read", path, e))? {
        whole.update(&page);
        hashes.push(page_hash(&page));
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

/// The parent a new version is cut against: its recipe's reference, and its page hashes.
pub struct Against<'a> {
    /// Which version.
    pub parent: Parent,
    /// Its page hashes, in page order.
    pub hashes: &'a [u64],
}

/// What [`build`] made.
pub struct Built {
    /// The recipe, its one pack named `pack_key` (fill in the key once the pack's name is known).
    pub recipe: Recipe,
    /// The pack's file (its frames), when any page is new.
    pub pack: Option<tempfile::TempPath>,
    /// The sha256 of the pack's bytes.
    pub pack_sha256: String,
    /// Page hashes of the new file, in page order (for the local cache).
    pub hashes: Vec<u64>,
    /// Pages put in the pack.
    pub new_pages: u64,
}

/// Cuts `path` into pages: those `against` holds (anywhere in it) become runs from the parent,
/// the others go into a pack of zstd frames written in `tmp_dir`. Page 1 (the header) always goes
/// into the pack: a local copy of the parent may differ from it in header bytes alone.
pub fn build(path: &Path, against: Option<&Against<'_>>, tmp_dir: &Path, progress: &indicatif::ProgressBar) -> Result<Built> {
    let page_size = page_size_of(path)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?);
    let mut writer = build::PackWriter::new(tmp_dir, page_size)?;
    let index = against.map(|a| build::ParentIndex::new(a.hashes));
    let mut page = vec![0u8; page_size as usize];
    let (mut whole, mut hashes, mut runs) = (Sha256::new(), Vec::new(), Vec::new());
    let mut at = 0u64;
    while read_page(&mut reader, &mut page).map_err(|e| Error::io("cannot read", path, e))? {
        whole.update(&page);
        let hash = page_hash(&page);
        hashes.push(hash);
        let from_parent = match (&index, at) {
            (_, 0) => None,
            (Some(index), _) => index.find(at, hash),
            (None, _) => None,
        };
        let run = match from_parent {
            Some(from) => Run::Parent { at, count: 1, from },
            None => writer.add(at, &page, hash)?,
        };
        build::push_run(&mut runs, run);
        progress.inc(u64::from(page_size));
        at += 1;
    }
    let (pack, pack_sha256, frames, framed_hashes) = writer.finish()?;
    let new_pages = frames.iter().map(|f| u64::from(f.pages)).sum();
    let size = pack.as_ref().map_or(Ok(0), |p| std::fs::metadata(p).map(|m| m.len())).map_err(|e| Error::io("cannot read", tmp_dir, e))?;
    let recipe = Recipe {
        format: recipe::FORMAT,
        page_size,
        pages: at,
        sha256: hex::encode(whole.finalize()),
        parent: against.map(|a| a.parent.clone()),
        packs: if pack.is_some() { vec![Pack { key: String::new(), size }] } else { Vec::new() },
        frames,
        runs,
        hashes: framed_hashes,
        chain: 0,
        base_bytes: size,
        since_base: 0,
    };
    Ok(Built { recipe, pack, pack_sha256, hashes, new_pages })
}

mod build {
    //! The pieces of [`super::build`]: the parent's page index, runs, the pack writer.

    use super::*;

    /// Where each page hash sits in the parent (the first page holding it).
    pub struct ParentIndex<'a> {
        hashes: &'a [u64],
        sorted: Vec<(u64, u32)>,
    }

    impl<'a> ParentIndex<'a> {
        pub fn new(hashes: &'a [u64]) -> Self {
            let mut sorted: Vec<(u64, u32)> = hashes.iter().enumerate().map(|(i, h)| (*h, i as u32)).collect();
            sorted.sort_unstable();
            ParentIndex { hashes, sorted }
        }

        /// The parent's page with this content: the same page number when it holds it there.
        pub fn find(&self, at: u64, hash: u64) -> Option<u64> {
            if self.hashes.get(at as usize) == Some(&hash) {
                return Some(at);
            }
            let i = self.sorted.partition_point(|(h, _)| *h < hash);
            self.sorted.get(i).filter(|(h, _)| *h == hash).map(|(_, page)| u64::from(*page))
        }
    }

    /// Appends `run`, merged into the last run when it continues it.
    pub fn push_run(runs: &mut Vec<Run>, run: Run) {
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
            runs.push(run);
        }
    }

    /// Frames of new pages, compressed a batch at a time on every core, written in order.
    pub struct PackWriter {
        dir: PathBuf,
        page_size: u32,
        per_frame: usize,
        file: Option<(tempfile::NamedTempFile, Sha256, u64)>,
        /// Pages of the frame being filled, and the frames waiting to be compressed.
        filling: Vec<u8>,
        batch: Vec<Vec<u8>>,
        frames: Vec<Frame>,
        hashes: String,
        /// New pages seen in this version, by hash: a page repeated (zero pages) is read once.
        seen: std::collections::HashMap<u64, (u32, u32)>,
    }

    /// Frames compressed together.
    const BATCH: usize = 32;

    impl PackWriter {
        pub fn new(dir: &Path, page_size: u32) -> Result<Self> {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
            Ok(PackWriter {
                dir: dir.to_path_buf(),
                page_size,
                per_frame: frame_pages(page_size),
                file: None,
                filling: Vec::new(),
                batch: Vec::new(),
                frames: Vec::new(),
                hashes: String::new(),
                seen: Default::default(),
            })
        }

        /// The next frame's number (frames are numbered as they are cut).
        fn frame_number(&self) -> u32 {
            (self.frames.len() + self.batch.len()) as u32
        }

        /// Adds a new page at `at`; returns its run.
        pub fn add(&mut self, at: u64, page: &[u8], hash: u64) -> Result<Run> {
            if let Some(&(frame, skip)) = self.seen.get(&hash) {
                return Ok(Run::Frame { at, count: 1, frame, skip });
            }
            let (frame, skip) = (self.frame_number(), (self.filling.len() / self.page_size as usize) as u32);
            self.filling.extend_from_slice(page);
            self.hashes.push_str(&format!("{hash:016x}"));
            self.seen.insert(hash, (frame, skip));
            if self.filling.len() / self.page_size as usize == self.per_frame {
                self.cut()?;
            }
            Ok(Run::Frame { at, count: 1, frame, skip })
        }

        fn cut(&mut self) -> Result<()> {
            if !self.filling.is_empty() {
                self.batch.push(std::mem::take(&mut self.filling));
            }
            if self.batch.len() >= BATCH {
                self.flush()?;
            }
            Ok(())
        }

        /// Compresses the waiting frames side by side and appends them to the pack.
        fn flush(&mut self) -> Result<()> {
            let batch = std::mem::take(&mut self.batch);
            if batch.is_empty() {
                return Ok(());
            }
            let compressed = compress_all(&batch)?;
            if self.file.is_none() {
                let tmp = tempfile::Builder::new()
                    .prefix(".b2m-pack-")
                    .tempfile_in(&self.dir)
                    .map_err(|e| Error::io("cannot create a temp file in", &self.dir, e))?;
                self.file = Some((tmp, Sha256::new(), 0));
            }
            let Some((file, sha, offset)) = self.file.as_mut() else { return Ok(()) };
            for (raw, frame) in batch.iter().zip(compressed) {
                file.write_all(&frame).map_err(|e| Error::io("cannot write", file.path(), e))?;
                sha.update(&frame);
                let pages = (raw.len() / self.page_size as usize) as u32;
                self.frames.push(Frame { pack: 0, offset: *offset, len: frame.len() as u64, pages });
                *offset += frame.len() as u64;
            }
            Ok(())
        }

        /// The pack (if any page was new), its sha256, its frames and their page hashes.
        pub fn finish(mut self) -> Result<(Option<tempfile::TempPath>, String, Vec<Frame>, String)> {
            self.cut()?;
            self.flush()?;
            let Some((file, sha, _)) = self.file.take() else { return Ok((None, String::new(), Vec::new(), String::new())) };
            file.as_file().sync_all().map_err(|e| Error::io("cannot sync", file.path(), e))?;
            Ok((Some(file.into_temp_path()), hex::encode(sha.finalize()), self.frames, self.hashes))
        }
    }

    /// Each frame compressed, on as many threads as there are cores.
    fn compress_all(frames: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(frames.len()).max(1);
        let per = frames.len().div_ceil(threads);
        let parts: Vec<std::io::Result<Vec<Vec<u8>>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = frames
                .chunks(per)
                .map(|chunk| scope.spawn(move || chunk.iter().map(|f| zstd::bulk::compress(f, LEVEL)).collect()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        let mut out = Vec::with_capacity(frames.len());
        for part in parts {
            out.extend(part.map_err(|e| Error::refused(format!("cannot compress a frame: {e}"), "report this"))?);
        }
        Ok(out)
    }
}
