//! Rebuilding a version's file from its recipe chain: where each page comes from ([`plan`]), and
//! the writing ([`write`]).
//!
//! `chain[0]` is the version wanted, `chain[k + 1]` the parent of `chain[k]`. The chain ends at a
//! base (a recipe with no parent), or at a version whose file is here (`held`): then the last
//! recipe's parent runs read the local file. Any page the frames hold whose hash a local page
//! shares is read from there instead (`lend`).

use std::collections::HashMap;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::column::{self, Column, Record};
use super::{Recipe, Run};
use crate::error::{Error, Result};

/// Where a stretch of the new file's pages comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Pages `from..` of the local file.
    Local { at: u64, count: u64, from: u64 },
    /// Pages `skip..` of frame `frame` of `chain[level]`.
    Frame { at: u64, count: u64, level: usize, frame: u32, skip: u32 },
}

/// A piece on disk: as the run it mirrors (local pages as a parent run), then its level.
impl Record for Piece {
    const BYTES: usize = Run::BYTES + 2;
    fn put(&self, out: &mut [u8]) {
        let (run, level) = match *self {
            Piece::Local { at, count, from } => (Run::Parent { at, count, from }, 0),
            Piece::Frame { at, count, level, frame, skip } => (Run::Frame { at, count, frame, skip }, level as u16),
        };
        run.put(&mut out[..Run::BYTES]);
        out[Run::BYTES..].copy_from_slice(&level.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        let level = usize::from(u16::from_le_bytes([bytes[Run::BYTES], bytes[Run::BYTES + 1]]));
        match Run::get(&bytes[..Run::BYTES]) {
            Run::Parent { at, count, from } => Piece::Local { at, count, from },
            Run::Frame { at, count, frame, skip } => Piece::Frame { at, count, level, frame, skip },
        }
    }
}

impl Piece {
    fn at(&self) -> u64 {
        match *self {
            Piece::Local { at, .. } | Piece::Frame { at, .. } => at,
        }
    }
}

/// Where every page of `chain[0]` comes from. `held`: the local file is the last recipe's parent.
pub fn plan(chain: &[Recipe], held: bool) -> Result<Column<Piece>> {
    let Some(target) = chain.first() else { return Ok(Column::new()) };
    if chain.iter().any(|r| r.page_size != target.page_size) {
        // A page-size change starts a base: a chain never crosses one.
        return Err(Error::refused("a recipe chain crosses a page-size change", "publish the version again"));
    }
    let mut pieces = Column::new();
    resolve(chain, 0, 0, 0, target.pages, held, &mut pieces)?;
    Ok(pieces)
}

/// Pages `from..from+count` of `chain[level]`, written at `out..` of the new file.
fn resolve(chain: &[Recipe], level: usize, out: u64, from: u64, count: u64, held: bool, pieces: &mut Column<Piece>) -> Result<()> {
    let recipe = &chain[level];
    if from + count > recipe.pages {
        return Err(Error::refused(
            format!("a recipe reads page {} of a version of {} pages", from + count, recipe.pages),
            "publish the version again",
        ));
    }
    let mut i = recipe.runs.partition_point(|r| r.span().0 + r.span().1 <= from).map_err(column::failed)?;
    let (mut page, end) = (from, from + count);
    while page < end {
        let run = recipe
            .runs
            .get(i)
            .map_err(column::failed)?
            .ok_or_else(|| Error::refused("a recipe's runs end early", "publish the version again"))?;
        let (at, len) = run.span();
        let (offset, n) = (page - at, (at + len).min(end) - page);
        let dest = out + (page - from);
        match run {
            Run::Frame { frame, skip, .. } => push(pieces, Piece::Frame { at: dest, count: n, level, frame, skip: skip + offset as u32 })?,
            Run::Parent { from: parent_from, .. } if level + 1 < chain.len() => {
                resolve(chain, level + 1, dest, parent_from + offset, n, held, pieces)?;
            }
            Run::Parent { from: parent_from, .. } if held => push(pieces, Piece::Local { at: dest, count: n, from: parent_from + offset })?,
            Run::Parent { .. } => return Err(Error::refused("a recipe chain ends without a base", "publish the version again")),
        }
        page += n;
        i += 1;
    }
    Ok(())
}

fn push(pieces: &mut Column<Piece>, piece: Piece) -> Result<()> {
    let merged = match (pieces.last_mut(), piece) {
        (Some(Piece::Local { at, count, from }), Piece::Local { at: a, from: f, count: n }) if *at + *count == a && *from + *count == f => {
            *count += n;
            true
        }
        (Some(Piece::Frame { at, count, level, frame, skip }), Piece::Frame { at: a, level: l, frame: fr, skip: s, count: n })
            if *at + *count == a && *level == l && *frame == fr && u64::from(*skip) + *count == u64::from(s) =>
        {
            *count += n;
            true
        }
        _ => false,
    };
    if !merged {
        pieces.push(piece).map_err(column::failed)?;
    }
    Ok(())
}

/// Replaces frame pages by local pages with the same hash (`local`: hash → page of the local
/// file), page by page.
pub fn lend(chain: &[Recipe], pieces: Column<Piece>, local: &super::PageIndex<'_>) -> Result<Column<Piece>> {
    if local.is_empty() {
        return Ok(pieces);
    }
    let starts: Vec<Vec<u64>> = chain.iter().map(frame_starts).collect();
    let mut out = Column::new();
    for piece in pieces.iter() {
        let piece = piece.map_err(column::failed)?;
        let Piece::Frame { at, count, level, frame, skip } = piece else {
            push(&mut out, piece)?;
            continue;
        };
        for i in 0..count {
            let n = starts[level][frame as usize] + u64::from(skip) + i;
            let from = match chain[level].framed_hash(n)? {
                Some(hash) => local.get(hash)?,
                None => None,
            };
            match from {
                Some(from) => push(&mut out, Piece::Local { at: at + i, count: 1, from })?,
                None => push(&mut out, Piece::Frame { at: at + i, count: 1, level, frame, skip: skip + i as u32 })?,
            }
        }
    }
    Ok(out)
}

/// The index, among the pages a recipe's frames hold, of each frame's first page.
fn frame_starts(recipe: &Recipe) -> Vec<u64> {
    let mut next = 0;
    recipe
        .frames
        .iter()
        .map(|f| {
            let start = next;
            next += u64::from(f.pages);
            start
        })
        .collect()
}

/// The frames a plan reads, each once, in the order it first reads them: (level, frame), and the
/// index of the first piece that reads it.
pub fn frames_needed(pieces: &Column<Piece>) -> Result<Vec<((usize, u32), u64)>> {
    let mut seen = std::collections::HashSet::new();
    let mut needed = Vec::new();
    for (piece, i) in pieces.iter().zip(0u64..) {
        if let Piece::Frame { level, frame, .. } = piece.map_err(column::failed)?
            && seen.insert((level, frame))
        {
            needed.push(((level, frame), i));
        }
    }
    Ok(needed)
}

/// A frame's compressed bytes, and the pages it holds once decompressed.
pub struct Compressed {
    /// The zstd frame.
    pub bytes: Vec<u8>,
    /// Pages it holds (its recipe says so).
    pub pages: u32,
}

/// Stretches of the new file on their way to be written and hashed: a decompressed frame (or
/// local pages) and the bytes of it that go next.
type Chunk = (Raw, std::ops::Range<usize>);

/// A frame's pages, decompressed (or local pages), shared by the decompression and the writer.
type Raw = std::sync::Arc<Vec<u8>>;

/// Chunks in flight between the decompression and the writer (each holds its frame: memory).
const IN_FLIGHT: usize = 2;

/// Bytes of local pages read at a time.
const LOCAL_CHUNK: usize = 1 << 20;

/// Threads decompressing frames, at most.
const MAX_DECOMPRESSORS: usize = 4;

/// Bytes written to the new file at a time.
const WRITE_BYTES: usize = 1 << 20;

/// Where a rebuild's frames come from; any thread may ask.
pub trait FrameSource: Sync {
    /// Frame `frame` of `chain[level]`, compressed.
    fn frame(&self, level: usize, frame: u32) -> Result<Compressed>;

    /// The rebuild failed: frames not asked for yet will not be.
    fn stop(&self) {}
}

impl<F: Fn(usize, u32) -> Result<Compressed> + Sync> FrameSource for F {
    fn frame(&self, level: usize, frame: u32) -> Result<Compressed> {
        self(level, frame)
    }
}

/// Writes the new file into `out` by the plan: local pages from `local`, frame pages decompressed
/// from what `frames` returns; a frame the plan comes back to later is kept in `spill` (an empty
/// temp file), so it is decompressed once. Frames are decompressed ahead on threads of their own
/// (one per core), and writing and hashing run on another. Returns the sha256 of what was written.
pub fn write(
    page_size: u32,
    pieces: &Column<Piece>,
    local: Option<&std::fs::File>,
    frames: &dyn FrameSource,
    spill: &std::fs::File,
    out: &mut (dyn Write + Send),
    progress: &indicatif::ProgressBar,
) -> Result<String> {
    let (send, receive) = std::sync::mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    let order: Vec<(usize, u32)> = frames_needed(pieces)?.into_iter().map(|(key, _)| key).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_DECOMPRESSORS).min(order.len().max(1));
    let ahead = Ahead::new(order, workers);
    std::thread::scope(|scope| {
        let pool = &ahead.pool;
        let sink = scope.spawn(move || -> std::io::Result<String> {
            let mut sha = Sha256::new();
            for (bytes, range) in receive {
                // Written a MiB at a time: a write of a whole frame of 2 MiB can make the kernel
                // look for a 2 MiB page-cache folio, several times slower on a busy machine.
                for part in bytes[range].chunks(WRITE_BYTES) {
                    out.write_all(part)?;
                    sha.update(part);
                }
                pool.give_back(bytes);
            }
            Ok(hex::encode(sha.finalize()))
        });
        for _ in 0..workers {
            scope.spawn(|| ahead.work(page_size as usize, frames));
        }
        let fed = feed(page_size, pieces, local, &ahead, spill, &send, progress);
        drop(send);
        ahead.stop();
        if fed.is_err() {
            frames.stop();
        }
        let written = sink.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // Errors of the disk stay I/O errors (a full disk is said as one), never a damaged version.
        let written = written.map_err(|e| Error::io("cannot write", "the rebuilt file", e));
        // A writer that failed stops the feed: its error is the one to tell.
        match fed {
            Err(_) if written.is_err() => written,
            Err(e) => Err(e),
            Ok(()) => written,
        }
    })
}

/// Sends the new file's bytes, in order, to `sink`: local pages read, frames decompressed.
fn feed(
    page_size: u32,
    pieces: &Column<Piece>,
    local: Option<&std::fs::File>,
    ahead: &Ahead,
    spill: &std::fs::File,
    sink: &std::sync::mpsc::SyncSender<Chunk>,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let page = page_size as usize;
    let mut written = 0u64;
    let mut frames = Decoded::new(pieces, spill)?;
    let gone = |_| Error::refused("the rebuilt file's writer stopped", "check the disk");
    for piece in pieces.iter() {
        let piece = piece.map_err(column::failed)?;
        if piece.at() != written {
            return Err(Error::refused("a rebuild plan skips pages", "report this"));
        }
        match piece {
            Piece::Local { count, from, .. } => {
                let file = local.ok_or_else(|| Error::refused("a rebuild plan reads a local file there is none of", "report this"))?;
                for chunk in read_local(file, from * u64::from(page_size), count * u64::from(page_size), &ahead.pool) {
                    let chunk = std::sync::Arc::new(chunk?);
                    sink.send((chunk.clone(), 0..chunk.len())).map_err(gone)?;
                }
            }
            Piece::Frame { count, level, frame: f, skip, .. } => {
                let range = skip as usize * page..(skip as usize + count as usize) * page;
                sink.send(frames.pages((level, f), range, ahead)?).map_err(gone)?;
            }
        }
        let count = match piece {
            Piece::Local { count, .. } | Piece::Frame { count, .. } => count,
        };
        written += count;
        progress.inc(count * u64::from(page_size));
    }
    Ok(())
}

/// Frames decompressed: the last one in memory (a plan reads on in it after a lent page), and
/// those the plan comes back to after other frames kept in a spill file. A plan after a
/// `VACUUM` reads each frame of the base once per table it holds pages of.
struct Decoded<'a> {
    last: Option<((usize, u32), Raw)>,
    /// How many separate times the plan reads each frame.
    visits: HashMap<(usize, u32), u32>,
    /// Where each frame read again lies in the spill file, and its length.
    spilled: HashMap<(usize, u32), (u64, usize)>,
    spill: &'a std::fs::File,
    spill_end: u64,
}

impl<'a> Decoded<'a> {
    fn new(pieces: &Column<Piece>, spill: &'a std::fs::File) -> Result<Self> {
        let mut visits = HashMap::new();
        let mut previous = None;
        for piece in pieces.iter() {
            let key = match piece.map_err(column::failed)? {
                Piece::Frame { level, frame, .. } => Some((level, frame)),
                Piece::Local { .. } => None,
            };
            if let Some(key) = key.filter(|k| previous != Some(*k)) {
                *visits.entry(key).or_insert(0) += 1;
            }
            previous = key.or(previous);
        }
        Ok(Decoded { last: None, visits, spilled: HashMap::new(), spill, spill_end: 0 })
    }

    /// Bytes `range` of frame `key` decompressed, taken from `ahead` if need be.
    fn pages(&mut self, key: (usize, u32), range: std::ops::Range<usize>, ahead: &Ahead) -> Result<Chunk> {
        use std::os::unix::fs::FileExt;
        let short = || {
            Error::refused(
                "a frame of the version's pack holds fewer pages than its recipe says",
                "nothing was installed; publish the version again",
            )
        };
        let spill_error = |e: std::io::Error| Error::io("cannot keep a frame in", "a temp file of the rebuild", e);
        if let Some((_, raw)) = self.last.as_ref().filter(|(k, _)| *k == key) {
            return if range.end <= raw.len() { Ok((raw.clone(), range)) } else { Err(short()) };
        }
        if let Some(&(at, len)) = self.spilled.get(&key) {
            if range.end > len {
                return Err(short());
            }
            let mut bytes = ahead.pool.take();
            bytes.resize(range.len(), 0);
            self.spill.read_exact_at(&mut bytes, at + range.start as u64).map_err(spill_error)?;
            let bytes = std::sync::Arc::new(bytes);
            return Ok((bytes.clone(), 0..bytes.len()));
        }
        let raw = ahead.take(key)?;
        if let Some((_, old)) = self.last.take() {
            ahead.pool.give_back(old);
        }
        if self.visits.get(&key).is_some_and(|n| *n > 1) {
            // A MiB at a time, as the rebuilt file is written.
            for (i, part) in raw.chunks(WRITE_BYTES).enumerate() {
                self.spill.write_all_at(part, self.spill_end + (i * WRITE_BYTES) as u64).map_err(spill_error)?;
            }
            self.spilled.insert(key, (self.spill_end, raw.len()));
            self.spill_end += raw.len() as u64;
        }
        let raw = std::sync::Arc::new(raw);
        self.last = Some((key, raw.clone()));
        if range.end > raw.len() {
            return Err(short());
        }
        Ok((raw, range))
    }
}

/// Frames decompressed ahead of the writer, by several threads, handed out in the order the plan
/// first reads them; at most `window` of them wait decompressed (memory).
struct Ahead {
    order: Vec<(usize, u32)>,
    pool: Pool,
    window: usize,
    next: std::sync::atomic::AtomicUsize,
    state: std::sync::Mutex<AheadState>,
    moved: std::sync::Condvar,
}

#[derive(Default)]
struct AheadState {
    /// Frames decompressed (or failed), by their place in `order`.
    ready: HashMap<usize, Result<Vec<u8>>>,
    /// How many have been taken.
    taken: usize,
    /// No more are wanted.
    stopped: bool,
    /// A decompressing thread panicked: what it took will never come.
    broken: bool,
}

/// Marks the window broken when a decompressing thread panics, so the writer does not wait for good.
struct Broken<'a>(&'a Ahead);

impl Drop for Broken<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().broken = true;
            self.0.moved.notify_all();
        }
    }
}

impl Ahead {
    fn new(order: Vec<(usize, u32)>, window: usize) -> Self {
        let next = std::sync::atomic::AtomicUsize::new(0);
        Ahead { order, pool: Pool::default(), window, next, state: Default::default(), moved: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A decompressing thread: takes the next frame in order, when the window has room for it.
    fn work(&self, page: usize, frames: &dyn FrameSource) {
        let _panicked = Broken(self);
        let mut decompressor = zstd::bulk::Decompressor::new();
        loop {
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(level, frame)) = self.order.get(i) else { return };
            let mut state = self.lock();
            while i >= state.taken + self.window && !state.stopped {
                state = self.moved.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if state.stopped {
                return;
            }
            drop(state);
            let raw = frames.frame(level, frame).and_then(|c| self.decompress(&mut decompressor, &c, page));
            self.lock().ready.insert(i, raw);
            self.moved.notify_all();
        }
    }

    /// `c` decompressed into a buffer of the pool; it must hold exactly the pages its recipe says.
    fn decompress(
        &self,
        decompressor: &mut std::io::Result<zstd::bulk::Decompressor<'static>>,
        c: &Compressed,
        page: usize,
    ) -> Result<Vec<u8>> {
        let decompressor = decompressor.as_mut().map_err(|e| damaged(e))?;
        let expected = c.pages as usize * page;
        let mut raw = self.pool.take();
        raw.reserve(expected);
        match decompressor.decompress_to_buffer(&c.bytes, &mut raw) {
            Ok(n) if n == expected => Ok(raw),
            Ok(n) => Err(damaged(&std::io::Error::other(format!("{n} bytes where its recipe says {expected}")))),
            Err(e) => Err(damaged(&e)),
        }
    }

    /// The next frame in order, which must be `key`, once decompressed.
    fn take(&self, key: (usize, u32)) -> Result<Vec<u8>> {
        let mut state = self.lock();
        let i = state.taken;
        if self.order.get(i) != Some(&key) {
            return Err(Error::refused("a rebuild read its frames out of order", "report this"));
        }
        let raw = loop {
            match state.ready.remove(&i) {
                Some(raw) => break raw,
                None if state.broken => return Err(Error::refused("a thread decompressing frames stopped", "report this")),
                None => state = self.moved.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner),
            }
        };
        state.taken += 1;
        self.moved.notify_all();
        raw
    }

    /// No more frames are wanted: the threads waiting for room end.
    fn stop(&self) {
        self.lock().stopped = true;
        self.moved.notify_all();
    }
}

/// Buffers of the bytes on their way to the new file (decompressed frames, local pages, spilled
/// frames), used again: threads that each allocated a frame's 2 MiB anew grew a heap apiece
/// (glibc keeps one per thread), 15 MiB more at 1 GiB. So as many are made as are ever in use
/// at once.
#[derive(Default)]
struct Pool(std::sync::Mutex<Vec<Vec<u8>>>);

/// Buffers kept for use again, at most (more are only alive while the writer lags).
const POOLED: usize = 8;

impl Pool {
    /// An empty buffer, used before if one is free.
    fn take(&self) -> Vec<u8> {
        let mut buffer = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps `bytes`' buffer for use again when this was its last holder.
    fn give_back(&self, bytes: Raw) {
        if let Some(buffer) = std::sync::Arc::into_inner(bytes) {
            let mut free = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if free.len() < POOLED {
                free.push(buffer);
            }
        }
    }
}

fn damaged(e: &std::io::Error) -> Error {
    Error::refused(format!("a frame of the version's pack is damaged ({e})"), "nothing was installed; publish the version again")
}

/// Bytes `offset..offset + len` of `file`, read a chunk at a time into buffers of `pool`.
fn read_local<'a>(file: &'a std::fs::File, offset: u64, len: u64, pool: &'a Pool) -> impl Iterator<Item = Result<Vec<u8>>> + 'a {
    use std::os::unix::fs::FileExt;
    (0..len.div_ceil(LOCAL_CHUNK as u64)).map(move |i| {
        let at = i * LOCAL_CHUNK as u64;
        let mut chunk = pool.take();
        chunk.resize((len - at).min(LOCAL_CHUNK as u64) as usize, 0);
        file.read_exact_at(&mut chunk, offset + at).map_err(|e| Error::io("cannot read", "the local file lending pages", e))?;
        Ok(chunk)
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A base of `pages` pages of text, its pack in objects of about `object_bytes`: the file, the
    /// recipe, and a reader of its frames' bytes.
    fn base(
        dir: &std::path::Path,
        pages: usize,
        object_bytes: u64,
    ) -> (std::path::PathBuf, Recipe, impl Fn(crate::pages::Frame) -> Vec<u8>) {
        let path = crate::pages::tests::text_file(dir, pages);
        let (built, objects) = crate::pages::tests::built(&path, None, dir, object_bytes);
        let files: Vec<std::fs::File> = objects.iter().map(|o| std::fs::File::open(&o.path).expect("open")).collect();
        let bytes = move |f: crate::pages::Frame| {
            let mut bytes = vec![0u8; f.len as usize];
            files[f.pack as usize].read_exact_at(&mut bytes, f.offset).expect("read");
            bytes
        };
        (path, built.recipe, bytes)
    }

    /// Rebuilds a one-recipe version from its pack (in objects of one frame each), each frame's
    /// bytes passed through `spoil`: the file, what was written, and the sha256 `write` returned.
    fn rebuilt(dir: &std::path::Path, spoil: impl Fn(&mut Vec<u8>) + Sync) -> (Vec<u8>, Vec<u8>, Result<String>) {
        let (path, recipe, frame_bytes) = base(dir, 80, 1);
        assert_eq!(recipe.packs.len(), recipe.frames.len(), "an object per frame");
        let pieces = plan(std::slice::from_ref(&recipe), false).expect("plan");
        let read = |_level: usize, frame: u32| -> Result<Compressed> {
            let f = recipe.frames[frame as usize];
            let mut bytes = frame_bytes(f);
            spoil(&mut bytes);
            Ok(Compressed { bytes, pages: f.pages })
        };
        let mut out = Vec::new();
        let spill = tempfile::tempfile().expect("spill");
        let sha = write(4096, &pieces, None, &read, &spill, &mut out, &indicatif::ProgressBar::hidden());
        (std::fs::read(&path).expect("read"), out, sha)
    }

    #[test]
    fn a_rebuild_writes_and_hashes_the_file_byte_for_byte() {
        let dir = tempfile::tempdir().expect("dir");
        let (file, out, sha) = rebuilt(dir.path(), |_| {});
        assert!(out == file, "the rebuilt file is the file");
        assert_eq!(sha.expect("rebuilt"), hex::encode(Sha256::digest(&file)));
    }

    #[test]
    fn a_frame_cut_short_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, _, sha) = rebuilt(dir.path(), |bytes| bytes.truncate(bytes.len() / 2));
        assert!(sha.is_err_and(|e| e.to_string().contains("damaged")));
    }

    #[test]
    fn a_frame_that_cannot_be_had_fails_the_rebuild_and_stops_the_source() {
        // Frames decompress on several threads ahead of the writer: one failing mid-way must
        // end the rebuild with its error, not leave the writer waiting for it.
        struct Failing<F> {
            bytes: F,
            frames: Vec<crate::pages::Frame>,
            stopped: std::sync::atomic::AtomicBool,
        }
        impl<F: Fn(crate::pages::Frame) -> Vec<u8> + Sync> FrameSource for Failing<F> {
            fn frame(&self, _level: usize, frame: u32) -> Result<Compressed> {
                if frame == 2 {
                    return Err(Error::refused("the download of the version's frames failed", "try again"));
                }
                let f = self.frames[frame as usize];
                Ok(Compressed { bytes: (self.bytes)(f), pages: f.pages })
            }
            fn stop(&self) {
                self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().expect("dir");
        let (_, recipe, bytes) = base(dir.path(), 320, crate::pages::PACK_OBJECT_BYTES);
        assert!(recipe.frames.len() > 4, "frames past the failing one: {}", recipe.frames.len());
        let pieces = plan(std::slice::from_ref(&recipe), false).expect("plan");
        let source = Failing { bytes, frames: recipe.frames.clone(), stopped: Default::default() };
        let (spill, mut out) = (tempfile::tempfile().expect("spill"), Vec::new());
        let written = write(4096, &pieces, None, &source, &spill, &mut out, &indicatif::ProgressBar::hidden());
        assert!(written.is_err_and(|e| e.to_string().contains("download of the version's frames failed")));
        assert!(source.stopped.load(std::sync::atomic::Ordering::SeqCst), "the source was told to stop");
        let frame_bytes = recipe.frames[0].pages as usize * 4096;
        assert_eq!(out.len(), 2 * frame_bytes, "what came before the failing frame was written, nothing after");
    }

    #[test]
    fn a_plan_that_comes_back_to_a_frame_decompresses_it_once() {
        // As after a VACUUM: the new file reads each frame of the base twice, half at a time.
        let dir = tempfile::tempdir().expect("dir");
        let (path, recipe, frame_bytes) = base(dir.path(), 64, crate::pages::PACK_OBJECT_BYTES);
        let halves = [(0, 0), (1, 0), (0, 16), (1, 16)];
        let pieces: Column<Piece> = halves
            .iter()
            .enumerate()
            .map(|(i, &(frame, skip))| Piece::Frame { at: i as u64 * 16, count: 16, level: 0, frame, skip })
            .collect();
        let fetched = std::sync::Mutex::new(Vec::new());
        let read = |_level: usize, frame: u32| -> Result<Compressed> {
            fetched.lock().expect("lock").push(frame);
            let f = recipe.frames[frame as usize];
            Ok(Compressed { bytes: frame_bytes(f), pages: f.pages })
        };
        let (spill, mut out) = (tempfile::tempfile().expect("spill"), Vec::new());
        write(4096, &pieces, None, &read, &spill, &mut out, &indicatif::ProgressBar::hidden()).expect("write");
        let mut fetched = fetched.into_inner().expect("lock");
        fetched.sort_unstable();
        assert_eq!(fetched, vec![0, 1], "each frame fetched and decompressed once");
        let file = std::fs::read(&path).expect("read");
        let expected: Vec<u8> =
            halves.iter().flat_map(|&(frame, skip)| file[(frame as usize * 32 + skip as usize) * 4096..][..16 * 4096].to_vec()).collect();
        assert!(out == expected, "the pages in the plan's order");
    }

    #[test]
    fn frames_are_fetched_in_the_order_the_plan_first_reads_them() {
        let pieces: Column<Piece> = [
            Piece::Frame { at: 0, count: 1, level: 1, frame: 4, skip: 0 },
            Piece::Local { at: 1, count: 1, from: 0 },
            Piece::Frame { at: 2, count: 1, level: 0, frame: 9, skip: 0 },
            Piece::Frame { at: 3, count: 1, level: 1, frame: 4, skip: 1 },
            Piece::Frame { at: 4, count: 1, level: 0, frame: 2, skip: 0 },
        ]
        .into_iter()
        .collect();
        assert_eq!(frames_needed(&pieces).expect("read"), vec![((1, 4), 0), ((0, 9), 2), ((0, 2), 4)]);
    }
}
