//! Streaming sha256 (SHA-NI where the CPU has it, picked at run time by the sha2 crate), of a
//! file's bytes and of its *content*.
//!
//! The content hash is the sha256 of a database file with the header fields that record no
//! content zeroed: bytes 18–19 (the journal mode: legacy or WAL), 24–27 (the change counter) and
//! 92–99 (version-valid-for and the SQLite version that last wrote it). A server that merely
//! opens a downloaded db in WAL mode, reads it, or checkpoints it changes those and nothing else,
//! so the content hash stays the same; any change to a page changes it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::BUF_SIZE;

/// The header bytes that record no content: zeroed for the content hash.
const VOLATILE: [std::ops::Range<usize>; 3] = [18..20, 24..28, 92..100];
/// The header's length.
const HEADER: usize = 100;

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
            for range in VOLATILE {
                for at in range {
                    if let Some(i) = at.checked_sub(self.offset).filter(|&i| i < head) {
                        header[i] = 0;
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

/// Both hashes, fed in order.
#[derive(Default)]
pub struct DbHasher {
    bytes: Sha256,
    content: ContentHasher,
}

impl DbHasher {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes.update(data);
        self.content.update(data);
    }

    /// Both hex hashes.
    pub fn finish(self) -> Hashes {
        Hashes { sha256: hex::encode(self.bytes.finalize()), content_sha256: self.content.finish() }
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

/// Both hashes of a file, and its size.
pub fn hash_file(path: &Path, progress: &ProgressBar) -> Result<(Hashes, u64)> {
    let mut hasher = DbHasher::default();
    let size = stream(path, progress, |data| hasher.update(data))?;
    Ok((hasher.finish(), size))
}

/// The content hash of a file.
pub fn content_hash_file(path: &Path, progress: &ProgressBar) -> Result<String> {
    let mut hasher = ContentHasher::default();
    stream(path, progress, |data| hasher.update(data))?;
    Ok(hasher.finish())
}

/// A writer that hashes (both ways) what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: DbHasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: DbHasher::default() }
    }

    /// The writer back, and the hashes of everything written.
    pub fn finish(self) -> (W, Hashes) {
        (self.inner, self.hasher.finish())
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
        let mut both = DbHasher::default();
        both.update(&a);
        let hashes = both.finish();
        assert_eq!(hashes.sha256, hex::encode(Sha256::digest(&a)));
        assert_eq!(hashes.content_sha256, content_of(&[&a]));
    }
}
