//! Atomic file writes: a reader (or a crash) never sees half a file.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// An append-only text file that becomes visible under its final name when finished.
pub struct AtomicAppender {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl AtomicAppender {
    /// Starts `path` (written as a hidden temporary file until [`AtomicAppender::finish`]).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        Ok(Self { tmp, path: path.to_path_buf(), file })
    }

    /// Appends one line.
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.write_all(b"\n")
    }

    /// Flushes and renames to the final name.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        drop(self.file);
        std::fs::rename(&self.tmp, &self.path)
    }
}

/// Writes files atomically on a few threads, so the file system's per-file cost (create,
/// write, rename) is paid in parallel. Files of one folder go to one worker, which keeps
/// directory-lock contention low. The queue to each worker is bounded: a slow disk applies
/// back-pressure to whoever submits, nothing is dropped.
pub struct WriterPool {
    senders: Vec<std::sync::mpsc::SyncSender<(std::path::PathBuf, Vec<u8>)>>,
    workers: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Files queued per worker before `submit` waits.
pub const WRITER_QUEUE: usize = 256;

impl WriterPool {
    /// A pool of `threads` writers (at least one).
    pub fn new(threads: usize) -> Self {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..threads.max(1) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(std::path::PathBuf, Vec<u8>)>(WRITER_QUEUE);
            senders.push(tx);
            workers.push(std::thread::spawn(move || {
                let mut first_error = None;
                for (path, bytes) in rx {
                    if first_error.is_none() {
                        if let Err(e) = write_atomic(&path, &bytes) {
                            first_error = Some(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                        }
                    }
                }
                first_error.map_or(Ok(()), Err)
            }));
        }
        Self { senders, workers }
    }

    /// Queues one file; `shard` picks the worker (use the folder).
    pub fn submit(&self, shard: usize, path: std::path::PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
        self.senders[shard % self.senders.len()]
            .send((path, bytes))
            .map_err(|_| std::io::Error::other("file writer stopped"))
    }

    /// Waits for every queued file; returns the first error.
    pub fn finish(self) -> std::io::Result<()> {
        drop(self.senders);
        let mut result = Ok(());
        for w in self.workers {
            let r = w.join().unwrap_or_else(|_| Err(std::io::Error::other("file writer crashed")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
