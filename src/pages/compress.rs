//! Frames compressed on every core while the next ones are being cut, handed back in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};

/// A frame to compress: its number, its bytes, the zstd level.
type Job = (usize, Vec<u8>, i32);
/// A frame compressed: its number, its uncompressed length, its zstd frame.
type Done = (usize, usize, std::io::Result<Vec<u8>>);

/// One thread per core, each keeping its zstd context from frame to frame (made afresh for each
/// frame, a context costs as much as compressing a frame of a few hundred KiB).
pub struct Compressors {
    work: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sent: usize,
    next: usize,
    ready: BTreeMap<usize, (usize, std::io::Result<Vec<u8>>)>,
}

impl Compressors {
    /// Starts the threads. A frame is handed over only to a thread free to take it: memory stays
    /// a frame per thread.
    pub fn new() -> Self {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (work, queue) = mpsc::sync_channel::<Job>(0);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = mpsc::channel::<Done>();
        let threads = (0..count)
            .map(|_| {
                let (queue, finished) = (queue.clone(), finished.clone());
                std::thread::spawn(move || compress_each(&queue, &finished))
            })
            .collect();
        Compressors { work: Some(work), done, threads, sent: 0, next: 0, ready: BTreeMap::new() }
    }

    /// Hands over the next frame (waits while every thread is busy).
    pub fn push(&mut self, raw: Vec<u8>, level: i32) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("the compression threads stopped");
        self.work.as_ref().ok_or_else(stopped)?.send((self.sent, raw, level)).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// The next frame in order, compressed: its uncompressed length and its zstd frame. `wait`:
    /// waits for it; else only when it is ready. None once every frame handed over was taken.
    pub fn next(&mut self, wait: bool) -> Option<(usize, std::io::Result<Vec<u8>>)> {
        while self.next < self.sent && !self.ready.contains_key(&self.next) {
            let got = if wait { self.done.recv().ok() } else { self.done.try_recv().ok() };
            let Some((n, len, frame)) = got else { break };
            self.ready.insert(n, (len, frame));
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
fn compress_each(queue: &Mutex<mpsc::Receiver<Job>>, finished: &mpsc::Sender<Done>) {
    let mut context: Option<(i32, zstd::bulk::Compressor<'static>)> = None;
    loop {
        let job = queue.lock().ok().and_then(|q| q.recv().ok());
        let Some((n, raw, level)) = job else { return };
        if context.as_ref().is_none_or(|(l, _)| *l != level) {
            context = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let frame = match context.as_mut() {
            Some((_, compressor)) => compressor.compress(&raw),
            None => Err(std::io::Error::other(format!("no zstd context at level {level}"))),
        };
        if finished.send((n, raw.len(), frame)).is_err() {
            return;
        }
    }
}
