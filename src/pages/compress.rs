//! Frames compressed on every core while the next ones are being cut, handed back in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};

/// The zstd levels a frame is compressed at: one, or (a probe) two, the smaller result kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Levels {
    /// At this level.
    One(i32),
    /// At both; the frame is the smaller, and the answer says whether the first level's was
    /// (within 1%: the first is the faster).
    Probe(i32, i32),
}

/// A frame to compress: its number, its bytes, its levels.
type Job = (usize, Vec<u8>, Levels);

/// A frame compressed.
pub struct Compressed {
    /// Its uncompressed length.
    pub len: usize,
    /// The zstd frame.
    pub frame: std::io::Result<Vec<u8>>,
    /// The level it was compressed at (of a probe's two, the one kept).
    pub level: i32,
    /// Whether it was a probe.
    pub probed: bool,
}

/// One thread per core, each keeping its zstd context from frame to frame (made afresh for each
/// frame, a context costs as much as compressing a frame of a few hundred KiB).
pub struct Compressors {
    work: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<(usize, Compressed)>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sent: usize,
    next: usize,
    ready: BTreeMap<usize, Compressed>,
}

impl Compressors {
    /// Starts the threads. A frame is handed over only to a thread free to take it: memory stays
    /// a frame per thread.
    pub fn new() -> Self {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (work, queue) = mpsc::sync_channel::<Job>(0);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = mpsc::channel::<(usize, Compressed)>();
        let threads = (0..count)
            .map(|_| {
                let (queue, finished) = (queue.clone(), finished.clone());
                std::thread::spawn(move || compress_each(&queue, &finished))
            })
            .collect();
        Compressors { work: Some(work), done, threads, sent: 0, next: 0, ready: BTreeMap::new() }
    }

    /// Hands over the next frame (waits while every thread is busy).
    pub fn push(&mut self, raw: Vec<u8>, levels: Levels) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("the compression threads stopped");
        self.work.as_ref().ok_or_else(stopped)?.send((self.sent, raw, levels)).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// The next frame in order, compressed. `wait`: waits for it; else only when it is ready.
    /// None once every frame handed over was taken.
    pub fn next(&mut self, wait: bool) -> Option<Compressed> {
        while self.next < self.sent && !self.ready.contains_key(&self.next) {
            let got = if wait { self.done.recv().ok() } else { self.done.try_recv().ok() };
            let Some((n, compressed)) = got else { break };
            self.ready.insert(n, compressed);
        }
        let taken = self.ready.remove(&self.next)?;
        self.next += 1;
        Some(taken)
    }
}

impl Drop for Compressors {
    fn drop(&mut self) {
        self.work = None;
        for thread in self.threads.drain(..) {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// A thread's loop: frames from `queue`, compressed, to `finished`, until the queue closes.
fn compress_each(queue: &Mutex<mpsc::Receiver<Job>>, finished: &mpsc::Sender<(usize, Compressed)>) {
    let mut contexts = Contexts::default();
    loop {
        let job = queue.lock().ok().and_then(|q| q.recv().ok());
        let Some((n, raw, levels)) = job else { return };
        let (frame, level, probed) = match levels {
            Levels::One(level) => (contexts.compress(level, &raw), level, false),
            Levels::Probe(fast, slow) => match (contexts.compress(fast, &raw), contexts.compress(slow, &raw)) {
                (Ok(a), Ok(b)) if a.len() as u64 * 100 <= b.len() as u64 * 101 => (Ok(a), fast, true),
                (Ok(_), Ok(b)) => (Ok(b), slow, true),
                (Err(e), _) | (_, Err(e)) => (Err(e), slow, true),
            },
        };
        if finished.send((n, Compressed { len: raw.len(), frame, level, probed })).is_err() {
            return;
        }
    }
}

/// A thread's zstd contexts, one per level it was asked for lately (a probe asks for two): at most
/// [`CONTEXTS`], the one used longest ago dropped first, so a pack that passed its first 64 MiB
/// lets its level-6 contexts go (3.7 MiB each) when it starts probing.
#[derive(Default)]
struct Contexts(Vec<(i32, zstd::bulk::Compressor<'static>)>);

/// zstd contexts a compressing thread keeps.
const CONTEXTS: usize = 2;

impl Contexts {
    fn compress(&mut self, level: i32, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let context = match self.0.iter().position(|(l, _)| *l == level) {
            Some(at) => self.0.remove(at),
            None => (level, zstd::bulk::Compressor::new(level)?),
        };
        if self.0.len() == CONTEXTS {
            self.0.remove(0);
        }
        let at = self.0.len();
        self.0.push(context);
        self.0[at].1.compress(raw)
    }

    /// The levels kept, used longest ago first.
    #[cfg(test)]
    fn levels(&self) -> Vec<i32> {
        self.0.iter().map(|(l, _)| *l).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_the_contexts_of_the_two_levels_it_used_last() {
        let mut contexts = Contexts::default();
        for level in [6, 6, 1, 4, 1, 4, 1] {
            contexts.compress(level, b"page bytes page bytes").expect("compress");
        }
        assert_eq!(contexts.levels(), vec![4, 1], "level 6's context let go once probing began");
    }

    /// `len` bytes no compressor can shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut seed = 7u64;
        let mut out: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                seed.to_le_bytes()
            })
            .collect();
        out.truncate(len);
        out
    }

    #[test]
    fn a_probe_keeps_the_fast_level_only_where_it_does_as_well() {
        let mut compressors = Compressors::new();
        let (text, noise) = (crate::pages::tests::text(1 << 20), noise(1 << 20));
        for raw in [&text, &noise] {
            compressors.push(raw.clone(), Levels::Probe(1, 4)).expect("push");
        }
        let mut answers = Vec::new();
        for raw in [&text, &noise] {
            let done = compressors.next(true).expect("a frame");
            assert_eq!(zstd::bulk::decompress(&done.frame.expect("compressed"), done.len).expect("a zstd frame"), *raw);
            answers.push((done.level, done.probed));
        }
        assert_eq!(answers, vec![(4, true), (1, true)], "text is smaller at level 4; noise no smaller");
    }
}
