//! Sequences of fixed-size records as long as the file has pages (page hashes, runs, a plan's
//! pieces), kept in an unnamed temp file (see [`keep_in`]) past their first block, so that a
//! command's memory does not grow with the database: a block being filled, the 2 blocks read back
//! last, and the first record of every block (for a search) stay in memory, a 256th of the whole.
//!
//! [`sorted`] sorts records too many to hold at once: sorted runs of [`SORT_RUN`] records on disk,
//! merged.

use std::os::unix::fs::FileExt;

/// Records per block: what is filled, and read back, at a time.
const BLOCK: usize = 256;
/// Records sorted in memory at a time by [`sorted`].
const SORT_RUN: usize = 1 << 16;
/// Blocks read back kept at once: a column read in two places by turns (a file's page hashes, at
/// the same place and after a match elsewhere) reads each block once.
const CACHED: usize = 2;
/// Records read at a time by an [`Iter`].
const READ_AHEAD: usize = 16 * BLOCK;

/// A record of a fixed size.
pub trait Record: Copy + Send {
    /// Its size, in bytes.
    const BYTES: usize;
    /// Writes it into `out` (`BYTES` long).
    fn put(&self, out: &mut [u8]);
    /// Reads it from `bytes` (`BYTES` long).
    fn get(bytes: &[u8]) -> Self;
}

impl Record for u64 {
    const BYTES: usize = 8;
    fn put(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        u64::from_le_bytes(bytes.try_into().unwrap_or_default())
    }
}

/// A page hash and the page that holds it.
impl Record for (u64, u32) {
    const BYTES: usize = 12;
    fn put(&self, out: &mut [u8]) {
        self.0.put(&mut out[..8]);
        out[8..].copy_from_slice(&self.1.to_le_bytes());
    }
    fn get(bytes: &[u8]) -> Self {
        (u64::get(&bytes[..8]), u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default()))
    }
}

/// A sequence of records: appended to, then read in order or by position.
pub struct Column<T: Record> {
    len: u64,
    /// Records past the last block written to `file` (at most a block).
    tail: Vec<T>,
    file: Option<std::fs::File>,
    /// The first record of every block in `file`.
    firsts: Vec<T>,
    /// The [`CACHED`] blocks last read back, the latest first: their numbers, and their bytes.
    cache: std::sync::Mutex<[(u64, Vec<u8>); CACHED]>,
    /// The bytes of the block being written.
    block_bytes: Vec<u8>,
}

impl<T: Record> Default for Column<T> {
    fn default() -> Self {
        Column {
            len: 0,
            tail: Vec::new(),
            file: None,
            firsts: Vec::new(),
            cache: std::sync::Mutex::new(std::array::from_fn(|_| (u64::MAX, Vec::new()))),
            block_bytes: Vec::new(),
        }
    }
}

impl<T: Record> std::fmt::Debug for Column<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Column({} records)", self.len)
    }
}

impl<T: Record + PartialEq> PartialEq for Column<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().zip(other.iter()).all(|(a, b)| matches!((a, b), (Ok(a), Ok(b)) if a == b))
    }
}

impl<T: Record + PartialEq> Eq for Column<T> {}

impl<T: Record> Column<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records in `file`.
    fn written(&self) -> u64 {
        self.len - self.tail.len() as u64
    }

    /// Appends a record.
    pub fn push(&mut self, record: T) -> std::io::Result<()> {
        if self.tail.len() == BLOCK {
            let offset = self.written() * T::BYTES as u64;
            let file = match &self.file {
                Some(file) => file,
                None => self.file.insert(scratch()?),
            };
            self.block_bytes.resize(BLOCK * T::BYTES, 0);
            for (record, out) in self.tail.iter().zip(self.block_bytes.chunks_mut(T::BYTES)) {
                record.put(out);
            }
            file.write_all_at(&self.block_bytes, offset)?;
            self.firsts.push(self.tail[0]);
            self.tail.clear();
        }
        self.tail.push(record);
        self.len += 1;
        Ok(())
    }

    /// The last record, to change in place.
    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.tail.last_mut()
    }

    /// The record at `i`.
    pub fn get(&self, i: u64) -> std::io::Result<Option<T>> {
        if i >= self.len {
            return Ok(None);
        }
        let written = self.written();
        if i >= written {
            return Ok(Some(self.tail[(i - written) as usize]));
        }
        let (block, at) = (i / BLOCK as u64, (i % BLOCK as u64) as usize);
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The block moves to the front; the one read longest ago makes room for it.
        let hit = cache.iter().position(|(b, _)| *b == block);
        cache[..=hit.unwrap_or(CACHED - 1)].rotate_right(1);
        if hit.is_none() {
            let (number, bytes) = &mut cache[0];
            *number = u64::MAX;
            bytes.resize(BLOCK * T::BYTES, 0);
            self.file.as_ref().map_or(Ok(()), |f| f.read_exact_at(bytes, block * (BLOCK * T::BYTES) as u64))?;
            *number = block;
        }
        Ok(Some(T::get(&cache[0].1[at * T::BYTES..][..T::BYTES])))
    }

    /// Replaces the record at `i` (which must exist).
    pub fn set(&mut self, i: u64, record: T) -> std::io::Result<()> {
        let written = self.written();
        if i >= written {
            if let Some(slot) = self.tail.get_mut((i - written) as usize) {
                *slot = record;
            }
            return Ok(());
        }
        let mut bytes = vec![0u8; T::BYTES];
        record.put(&mut bytes);
        self.file.as_ref().map_or(Ok(()), |f| f.write_all_at(&bytes, i * T::BYTES as u64))?;
        if i.is_multiple_of(BLOCK as u64) {
            self.firsts[(i / BLOCK as u64) as usize] = record;
        }
        for (number, _) in self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter_mut() {
            *number = u64::MAX;
        }
        Ok(())
    }

    /// The number of records, from the first, for which `before` holds (the records are ordered
    /// so that it holds for a first stretch of them only). One block read back at most.
    pub fn partition_point(&self, before: impl Fn(&T) -> bool) -> std::io::Result<u64> {
        // The answer lies in the last block whose first record holds (or is 0), before the next
        // block's start (or the end).
        let blocks = self.firsts.partition_point(&before);
        let mut lo = blocks.saturating_sub(1) as u64 * BLOCK as u64;
        let mut hi = if blocks < self.firsts.len() { blocks as u64 * BLOCK as u64 } else { self.len };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid)? {
                Some(record) if before(&record) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Its records, in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { column: self, next: 0, buffer: Vec::new(), at: 0 }
    }
}

/// A [`Column`]'s records in order, read from its file [`READ_AHEAD`] at a time.
pub struct Iter<'a, T: Record> {
    column: &'a Column<T>,
    next: u64,
    /// Records read ahead, as bytes, and the next one's index among them.
    buffer: Vec<u8>,
    at: usize,
}

impl<T: Record> Iterator for Iter<'_, T> {
    type Item = std::io::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        let column = self.column;
        if self.next >= column.len {
            return None;
        }
        let written = column.written();
        if self.next >= written {
            self.next += 1;
            return Some(Ok(column.tail[(self.next - 1 - written) as usize]));
        }
        if self.at * T::BYTES == self.buffer.len() {
            let count = (written - self.next).min(READ_AHEAD as u64) as usize;
            self.buffer.resize(count * T::BYTES, 0);
            if let Some(Err(e)) = column.file.as_ref().map(|f| f.read_exact_at(&mut self.buffer, self.next * T::BYTES as u64)) {
                self.next = column.len;
                return Some(Err(e));
            }
            self.at = 0;
        }
        let record = T::get(&self.buffer[self.at * T::BYTES..][..T::BYTES]);
        self.at += 1;
        self.next += 1;
        Some(Ok(record))
    }
}

#[cfg(test)]
impl<T: Record> FromIterator<T> for Column<T> {
    /// Panics when its temp file cannot be written: for tests.
    fn from_iter<I: IntoIterator<Item = T>>(records: I) -> Self {
        let mut column = Column::new();
        for record in records {
            column.push(record).expect("a temp file");
        }
        column
    }
}

/// `records` sorted by `key` (ties in the order they came), [`SORT_RUN`] at a time in memory,
/// merged from disk.
pub fn sorted<T: Record, K: Ord>(records: impl Iterator<Item = std::io::Result<T>>, key: impl Fn(&T) -> K) -> std::io::Result<Column<T>> {
    let mut runs: Vec<Column<T>> = Vec::new();
    let mut run = Vec::with_capacity(SORT_RUN.min(1024));
    let mut records = records.peekable();
    while records.peek().is_some() {
        run.clear();
        for record in records.by_ref().take(SORT_RUN) {
            run.push(record?);
        }
        run.sort_by_key(&key);
        let mut column = Column::new();
        run.iter().try_for_each(|r| column.push(*r))?;
        runs.push(column);
    }
    if runs.len() <= 1 {
        return Ok(runs.pop().unwrap_or_default());
    }
    let mut heads: Vec<_> = runs.iter().map(|r| r.iter().peekable()).collect();
    let mut out = Column::new();
    loop {
        let mut best: Option<(usize, K)> = None;
        for (i, head) in heads.iter_mut().enumerate() {
            match head.peek() {
                Some(Ok(record)) => {
                    let k = key(record);
                    if best.as_ref().is_none_or(|(_, b)| k < *b) {
                        best = Some((i, k));
                    }
                }
                Some(Err(_)) => return Err(head.next().and_then(Result::err).unwrap_or_else(|| std::io::Error::other("a sort run"))),
                None => {}
            }
        }
        let Some((i, _)) = best else { break };
        if let Some(Ok(record)) = heads[i].next() {
            out.push(record)?;
        }
    }
    Ok(out)
}

/// Where this process keeps columns past their first block (see [`keep_in`]).
static DIR: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Keeps columns in `dir` from now on: a project's temp folder, beside its databases (not a /tmp
/// that may be held in memory); the system's temp folder until one is set.
pub fn keep_in(dir: std::path::PathBuf) {
    *DIR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir);
}

fn dir() -> std::path::PathBuf {
    DIR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_else(std::env::temp_dir)
}

/// A temp file where columns are kept: unnamed, so that nothing is left behind however the
/// process ends.
pub fn scratch() -> std::io::Result<std::fs::File> {
    let dir = dir();
    match tempfile::tempfile_in(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir)?;
            tempfile::tempfile_in(&dir)
        }
        file => file,
    }
}

/// An error of a column's temp file, said as one.
pub fn failed(e: std::io::Error) -> crate::error::Error {
    crate::error::Error::io("cannot keep page records in a temp file in", dir(), e)
}

impl<T: Record + serde::Serialize> serde::Serialize for Column<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(usize::try_from(self.len).ok())?;
        for record in self.iter() {
            seq.serialize_element(&record.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

impl<'de, T: Record + serde::Deserialize<'de>> serde::Deserialize<'de> for Column<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Records<T>(std::marker::PhantomData<T>);
        impl<'de, T: Record + serde::Deserialize<'de>> serde::de::Visitor<'de> for Records<T> {
            type Value = Column<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Column<T>, A::Error> {
                let mut column = Column::new();
                while let Some(record) = seq.next_element()? {
                    column.push(record).map_err(serde::de::Error::custom)?;
                }
                Ok(column)
            }
        }
        deserializer.deserialize_seq(Records(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_past_its_first_block_reads_back_what_was_pushed_in_order_and_by_position() {
        let n = (BLOCK * 5 + 7) as u64;
        let mut column: Column<u64> = (0..n).map(|i| i * 3).collect();
        assert!(column.file.is_some(), "past a block, records are on disk");
        assert_eq!(column.iter().map(|r| r.expect("read")).collect::<Vec<_>>(), (0..n).map(|i| i * 3).collect::<Vec<_>>());
        for i in [0, 1, BLOCK as u64 - 1, BLOCK as u64, n - 8, n - 1, 2, n / 2] {
            assert_eq!(column.get(i).expect("read"), Some(i * 3), "record {i}");
        }
        assert_eq!(column.get(n).expect("read"), None);
        column.set(3, 1).expect("set");
        column.set(n - 1, 2).expect("set");
        assert_eq!((column.get(3).expect("read"), column.get(n - 1).expect("read")), (Some(1), Some(2)));
        *column.last_mut().expect("last") = 9;
        assert_eq!(column.iter().last().expect("last").expect("read"), 9);
    }

    #[test]
    fn a_search_finds_the_first_record_past_a_stretch_within_a_block_and_across_blocks() {
        for n in [0u64, 1, 5, BLOCK as u64, BLOCK as u64 + 1, BLOCK as u64 * 3 + 17] {
            let column: Column<u64> = (0..n).map(|i| i * 2).collect();
            for target in 0..n * 2 + 2 {
                let expected = (0..n).position(|i| i * 2 >= target).map_or(n, |p| p as u64);
                assert_eq!(column.partition_point(|r| *r < target).expect("search"), expected, "{n} records, target {target}");
            }
        }
    }

    #[test]
    fn records_too_many_to_sort_at_once_are_sorted_through_runs_on_disk() {
        let n = SORT_RUN as u64 * 3 + 11;
        let records: Column<(u64, u32)> = (0..n).map(|i| ((i * 7919) % 1009, i as u32)).collect();
        let sorted = sorted(records.iter(), |r| *r).expect("sort");
        let got: Vec<(u64, u32)> = sorted.iter().map(|r| r.expect("read")).collect();
        let mut expected: Vec<(u64, u32)> = records.iter().map(|r| r.expect("read")).collect();
        expected.sort();
        assert_eq!(got, expected);
    }
}
