//! Atomic file writes: a reader (or a crash) never sees half a file.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename. A
/// failed write (a full disk, a file-size limit) removes its temporary file and names `path`
/// in its error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written =
        std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(naming(path, e));
    }
    Ok(())
}

/// The same error, with the file it concerns in front.
fn naming(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// True for the name of a file still being written: `.<name>.tmp` of [`write_atomic`] and
/// [`AtomicAppender`], `.<name>.partial` of the tables and `.<name>.spill` of their row spills
/// (`crate::tables`, `crate::run_tables`).
pub fn is_temp_name(name: &str) -> bool {
    let stem =
        name.strip_suffix(".tmp").or_else(|| name.strip_suffix(".partial")).or_else(|| name.strip_suffix(".spill"));
    stem.is_some_and(|stem| stem.len() > 1 && stem.starts_with('.'))
}

/// Removes the temporary files a crash left under `dir` (this folder and its sub-folders,
/// symbolic links not followed) and returns how many were removed. Complete files are never
/// touched: a temporary file only ever becomes visible through its rename.
pub fn remove_temp_files(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_str().is_some_and(is_temp_name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
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
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| naming(path, e))?);
        Ok(Self { tmp, path: path.to_path_buf(), file })
    }

    /// Appends one line.
    pub fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"))
            .map_err(|e| naming(&self.path, e))
    }

    /// Flushes and renames to the final name.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| naming(&self.path, e))?;
        drop(self.file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| naming(&self.path, e))
    }
}

/// Writes files atomically on a few threads, so the file system's per-file cost (create,
/// write, rename) is paid in parallel. Files of one folder go to one worker, which keeps
/// directory-lock contention low. The queue to each worker is bounded: a slow disk applies
/// back-pressure to whoever submits, nothing is dropped.
pub struct WriterPool {
    senders: Vec<std::sync::mpsc::SyncSender<Job>>,
    workers: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// What a pool worker is asked to do.
enum Job {
    /// Write one file.
    File(std::path::PathBuf, Vec<u8>),
    /// Answer once every file queued before has been written.
    Sync(std::sync::mpsc::SyncSender<()>),
}

/// Files queued per worker before `submit` waits.
pub const WRITER_QUEUE: usize = 256;

impl WriterPool {
    /// A pool of `threads` writers (at least one).
    pub fn new(threads: usize) -> Self {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..threads.max(1) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITER_QUEUE);
            senders.push(tx);
            workers.push(std::thread::spawn(move || {
                let mut first_error = None;
                for job in rx {
                    let (path, bytes) = match job {
                        Job::File(path, bytes) => (path, bytes),
                        Job::Sync(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if first_error.is_none() {
                        if let Err(e) = write_atomic(&path, &bytes) {
                            first_error = Some(e);
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
            .send(Job::File(path, bytes))
            .map_err(|_| std::io::Error::other("file writer stopped"))
    }

    /// Waits until every file queued so far is written (or has failed: its error comes from
    /// [`WriterPool::finish`]). A record of a file stored elsewhere (the run registry) after
    /// this call never points to a file that a crash could still take away.
    pub fn sync(&self) -> std::io::Result<()> {
        for sender in &self.senders {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            sender.send(Job::Sync(tx)).map_err(|_| std::io::Error::other("file writer stopped"))?;
            rx.recv().map_err(|_| std::io::Error::other("file writer stopped"))?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_tmp_or_partial_files() {
        assert!(is_temp_name(".manifest.json.tmp"));
        assert!(is_temp_name(".samples.parquet.partial"));
        assert!(is_temp_name(".events.run0.spill"));
        assert!(!is_temp_name("manifest.json"));
        assert!(!is_temp_name(".tmp"));
        assert!(!is_temp_name("x.tmp"));
    }

    #[test]
    fn a_failed_write_names_its_file_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("cellfab-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // the target is a folder: the rename fails after the temporary file was written
        let target = dir.join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        let e = write_atomic(&target, b"{}").unwrap_err();
        assert!(e.to_string().contains(&target.display().to_string()), "{e}");
        assert!(!dir.join(".taken.tmp").exists());
        // leftovers of a crash are removed, complete files stay
        std::fs::write(dir.join(".a.json.tmp"), "{").unwrap();
        std::fs::write(target.join(".b.csv.partial"), "a,").unwrap();
        std::fs::write(dir.join("c.json"), "{}").unwrap();
        assert_eq!(remove_temp_files(&dir).unwrap(), 2);
        assert!(dir.join("c.json").exists() && target.join("inside").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
