//! Streaming sha256 (SHA-NI where the CPU has it, picked at run time by the sha2 crate), of a
//! file's bytes and of its *content*.
//!
//! The content hash is the sha256 of a database file with the header fields that record no
//! content set to canonical values: bytes 18–19 (the journal mode, legacy or WAL) to 1, 24–27 (the
//! change counter) and 92–99 (version-valid-for and the SQLite version that last wrote it) to 0.
//! A server that merely opens a downloaded db in WAL mode, reads it, or checkpoints it changes
//! those and nothing else, so the content hash stays the same; any change to a page changes it.
//!
//! b2m publishes snapshots whose header already holds those values (see
//! `sqlite::db::canonicalize_header`), so a published object's sha256 *is* its content hash: an
//! upload and a download each hash the bytes once.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::BUF_SIZE;

/// The header bytes that record no content, and their canonical value.
pub const VOLATILE: [(std::ops::Range<usize>, u8); 3] = [(18..20, 1), (24..28, 0), (92..100, 0)];
/// The header's length.
pub const HEADER: usize = 100;

/// Whether a database header already holds the canonical values in its volatile fields, so
/// that the file's sha256 is its content hash.
pub fn is_canonical(header: &[u8]) -> bool {
    header.len() >= HEADER && VOLATILE.iter().all(|(range, value)| header[range.clone()].iter().all(|b| b == value))
}

/// The content hash, fed in order.
pub struct ContentHasher {
    hasher: Sha256,
    offset: usize,
}

impl Default for ContentHasher {
    fn default() -> Self {
        ContentHasher { hasher: Sha256::new(), offset: 0 }
    }
}

impl ContentHasher {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        if self.offset < HEADER {
            let head = (HEADER - self.offset).min(data.len());
            let mut header = [0u8; HEADER];
            header[..head].copy_from_slice(&data[..head]);
            for (range, value) in VOLATILE {
                for at in range {
                    if let Some(i) = at.checked_sub(self.offset).filter(|&i| i < head) {
                        header[i] = value;
                    }
                }
            }
            self.hasher.update(&header[..head]);
            self.hasher.update(&data[head..]);
        } else {
            self.hasher.update(data);
        }
        self.offset = self.offset.saturating_add(data.len());
    }

    /// The hex content hash.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// Streams a file through `feed` in constant memory; returns its size.
fn stream(path: &Path, progress: &ProgressBar, mut feed: impl FnMut(&[u8])) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut buf = vec![0u8; BUF_SIZE];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            return Ok(size);
        }
        feed(&buf[..n]);
        size += n as u64;
        progress.inc(n as u64);
    }
}

/// The sha256 of a file's bytes, and its size.
pub fn sha256_file(path: &Path, progress: &ProgressBar) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = stream(path, progress, |data| hasher.update(data))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// The content hash of a file.
pub fn content_hash_file(path: &Path, progress: &ProgressBar) -> Result<String> {
    let mut hasher = ContentHasher::default();
    stream(path, progress, |data| hasher.update(data))?;
    Ok(hasher.finish())
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new() }
    }

    /// The writer back, and the hex sha256 of everything written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes a file in order while its stretches land in it out of order (a download's): a thread
/// follows the stretch written so far from the start, reading it back from the page cache just
/// behind the writes, so the hash is ready as soon as the last byte is.
pub struct Trailing {
    shared: std::sync::Arc<(std::sync::Mutex<Landed>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<io::Result<(String, u64)>>,
}

/// What has landed: everything before `contiguous`, and the stretches beyond (start → end).
#[derive(Default)]
struct Landed {
    contiguous: u64,
    beyond: std::collections::BTreeMap<u64, u64>,
    /// `Some(true)` once every byte landed, `Some(false)` when the download was abandoned.
    finished: Option<bool>,
}

impl Trailing {
    /// Follows the writes into `file`.
    pub fn new(file: File) -> Self {
        use std::os::unix::fs::FileExt;
        let shared = std::sync::Arc::new((std::sync::Mutex::new(Landed::default()), std::sync::Condvar::new()));
        let follow = shared.clone();
        let thread = std::thread::spawn(move || {
            let (landed, moved) = &*follow;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; BUF_SIZE];
            let mut hashed = 0u64;
            loop {
                let (upto, finished) = {
                    let mut state = landed.lock().map_err(|_| io::Error::other("the download crashed"))?;
                    while state.contiguous == hashed && state.finished.is_none() {
                        state = moved.wait(state).map_err(|_| io::Error::other("the download crashed"))?;
                    }
                    (state.contiguous, state.finished)
                };
                if finished == Some(false) {
                    return Err(io::Error::other("the download was abandoned"));
                }
                while hashed < upto {
                    let n = usize::try_from(upto - hashed).unwrap_or(usize::MAX).min(buf.len());
                    file.read_exact_at(&mut buf[..n], hashed)?;
                    hasher.update(&buf[..n]);
                    hashed += n as u64;
                }
                if finished == Some(true) {
                    return Ok((hex::encode(hasher.finalize()), hashed));
                }
            }
        });
        Trailing { shared, thread }
    }

    /// `len` bytes at `offset` are written.
    pub fn landed(&self, offset: u64, len: u64) {
        let (landed, moved) = &*self.shared;
        let Ok(mut guard) = landed.lock() else { return };
        let state = &mut *guard;
        if offset == state.contiguous {
            state.contiguous += len;
            while let Some(end) = state.beyond.remove(&state.contiguous) {
                state.contiguous = end;
            }
            moved.notify_one();
        } else if let Some((_, end)) = state.beyond.range_mut(..offset).next_back().filter(|(_, end)| **end == offset) {
            *end += len;
        } else {
            state.beyond.insert(offset, offset + len);
        }
    }

    /// Once every byte landed: the hex sha256 of the first `total` bytes, or an error if some
    /// never landed.
    pub fn finish(self, total: u64) -> io::Result<String> {
        self.end(true);
        let (sha256, hashed) = self.thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        if hashed != total {
            return Err(io::Error::other(format!("{hashed} of {total} bytes arrived in order")));
        }
        Ok(sha256)
    }

    /// The download failed: stops following it.
    pub fn abandon(self) {
        self.end(false);
        let _ = self.thread.join();
    }

    fn end(&self, complete: bool) {
        let (landed, moved) = &*self.shared;
        if let Ok(mut state) = landed.lock() {
            state.finished = Some(complete);
            moved.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_hashes_stretches_landed_out_of_order_as_the_whole_file() {
        use std::os::unix::fs::FileExt;
        let data: Vec<u8> = (0..(5 * BUF_SIZE + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let whole = hex::encode(Sha256::digest(&data));
        let file = tempfile::tempfile().expect("temp file");
        let trailing = Trailing::new(file.try_clone().expect("clone"));
        // Stretches of 1.5 MiB, landing last first, each in chunks of 64 KiB.
        let stretches: Vec<(usize, usize)> =
            (0..data.len()).step_by(3 * BUF_SIZE / 2).map(|s| (s, (s + 3 * BUF_SIZE / 2).min(data.len()))).collect();
        for &(start, end) in stretches.iter().rev() {
            for chunk in (start..end).step_by(1 << 16) {
                let chunk_end = (chunk + (1 << 16)).min(end);
                file.write_all_at(&data[chunk..chunk_end], chunk as u64).expect("write");
                trailing.landed(chunk as u64, (chunk_end - chunk) as u64);
            }
        }
        assert_eq!(trailing.finish(data.len() as u64).expect("hash"), whole);
    }

    #[test]
    fn trailing_refuses_a_file_with_a_stretch_that_never_landed() {
        use std::os::unix::fs::FileExt;
        let file = tempfile::tempfile().expect("temp file");
        let trailing = Trailing::new(file.try_clone().expect("clone"));
        file.write_all_at(&[1; 100], 0).expect("write");
        trailing.landed(0, 100);
        file.write_all_at(&[2; 100], 200).expect("write");
        trailing.landed(200, 100);
        assert!(trailing.finish(300).is_err(), "bytes 100..200 never landed");
    }

    fn content_of(chunks: &[&[u8]]) -> String {
        let mut h = ContentHasher::default();
        for c in chunks {
            h.update(c);
        }
        h.finish()
    }

    #[test]
    fn volatile_header_fields_do_not_count_and_chunking_does_not_matter() {
        let mut a = vec![7u8; 300];
        let whole = content_of(&[&a]);
        assert_eq!(content_of(&[&a[..5], &a[5..19], &a[19..93], &a[93..]]), whole);
        for at in [18, 19, 24, 27, 92, 99] {
            // Volatile: whatever it holds, it counts as its canonical value.
            let mut b = a.clone();
            b[at] ^= 0xff;
            assert_eq!(content_of(&[&b]), whole, "byte {at} is volatile");
        }
        for at in [17, 20, 28, 91, 100, 299] {
            let mut b = a.clone();
            b[at] ^= 0xff;
            assert_ne!(content_of(&[&b]), whole, "byte {at} is content");
        }
        a[0] = 1;
        assert!(!is_canonical(&a));
        let mut canonical = a.clone();
        for (range, value) in VOLATILE {
            canonical[range].fill(value);
        }
        assert!(is_canonical(&canonical));
        assert_eq!(hex::encode(Sha256::digest(&canonical)), content_of(&[&a]), "a canonical file's sha256 is its content hash");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.db");
        std::fs::write(&path, &a).expect("write");
        assert_eq!(sha256_file(&path, &ProgressBar::hidden()).expect("hash"), (hex::encode(Sha256::digest(&a)), 300));
        assert_eq!(content_hash_file(&path, &ProgressBar::hidden()).expect("hash"), content_of(&[&a]));
    }
}
