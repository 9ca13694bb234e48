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

/// The two hashes of a database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// sha256 of the bytes: the object's key and what `sha256sum` prints.
    pub sha256: String,
    /// sha256 of the content (header's volatile fields zeroed).
    pub content_sha256: String,
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

/// Both hashes of a file, and its size. A file with a canonical header (every snapshot b2m
/// publishes) is read once: its sha256 is its content hash.
pub fn hash_file(path: &Path, progress: &ProgressBar) -> Result<(Hashes, u64)> {
    let mut header = [0u8; HEADER];
    let canonical = File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok() && is_canonical(&header);
    if canonical {
        let (sha256, size) = sha256_file(path, progress)?;
        return Ok((Hashes { content_sha256: sha256.clone(), sha256 }, size));
    }
    std::thread::scope(|scope| {
        let content = scope.spawn(|| content_hash_file(path, &ProgressBar::hidden()));
        let bytes = sha256_file(path, progress);
        let content = content.join().unwrap_or_else(|_| Err(Error::refused("hashing crashed", "run the command again")));
        let ((sha256, size), content_sha256) = (bytes?, content?);
        Ok((Hashes { sha256, content_sha256 }, size))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let (hashes, size) = hash_file(&path, &ProgressBar::hidden()).expect("hash");
        assert_eq!(size, 300);
        assert_eq!(hashes.sha256, hex::encode(Sha256::digest(&a)));
        assert_eq!(hashes.content_sha256, content_of(&[&a]));
    }
}
