//! [`TimeSorter`]: a stable sort of records by (plant time, machine id) in bounded memory, for
//! the run-wide files whose records come from every machine thread in any order (`alarms.jsonl`,
//! the `events` table).
//!
//! Records are buffered; each full buffer is sorted and written to a hidden run file
//! (`.<name>.run<k>.spill`, JSON lines), and [`TimeSorter::drain_sorted`] merges the runs with a
//! heap. Ties between runs go to the earlier run and a run keeps its order, so the result is
//! exactly that of one stable sort of all records, whatever the buffer size.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

/// One record: (plant time, machine id, payload).
type Keyed<T> = (f64, String, T);

fn by_time_then_machine<T>(a: &Keyed<T>, b: &Keyed<T>) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1))
}

/// Sorts records by (plant time, machine id), stably, spilling sorted runs to disk.
pub struct TimeSorter<T> {
    dir: PathBuf,
    name: String,
    run_records: usize,
    buffer: Vec<Keyed<T>>,
    runs: Vec<PathBuf>,
}

/// The head record of one run in the merge heap (a max-heap, so the order is reversed).
struct Head<T> {
    record: Keyed<T>,
    run: usize,
}

impl<T> PartialEq for Head<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl<T> Eq for Head<T> {}
impl<T> PartialOrd for Head<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Head<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        by_time_then_machine(&other.record, &self.record).then_with(|| other.run.cmp(&self.run))
    }
}

impl<T: Serialize + DeserializeOwned> TimeSorter<T> {
    /// A sorter that keeps up to `run_records` records in memory and spills runs into `dir`
    /// (created when the first run is written). Payloads must survive a JSON round trip
    /// (no non-finite floats).
    pub fn new(dir: PathBuf, name: &str, run_records: usize) -> Self {
        Self { dir, name: name.to_string(), run_records: run_records.max(1), buffer: Vec::new(), runs: Vec::new() }
    }

    /// Adds one record.
    pub fn push(&mut self, t_s: f64, machine_id: &str, payload: T) -> std::io::Result<()> {
        self.buffer.push((t_s, machine_id.to_string(), payload));
        if self.buffer.len() >= self.run_records {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs written to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!(".{}.run{}.spill", self.name, self.runs.len()));
        self.runs.push(path.clone());
        self.buffer.sort_by(by_time_then_machine);
        let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
        for record in self.buffer.drain(..) {
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Hands every payload to `sink` in sorted order, then removes the run files; `io` turns
    /// a failure to read a run into the sink's error type.
    pub fn drain_sorted<E>(
        mut self,
        io: impl Fn(std::io::Error) -> E,
        mut sink: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = self.merge(&io, &mut sink);
        for path in &self.runs {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn merge<E>(
        &mut self,
        io: &impl Fn(std::io::Error) -> E,
        sink: &mut impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        // the records still buffered came last: they are the last run, kept in memory
        self.buffer.sort_by(by_time_then_machine);
        let mut memory = std::mem::take(&mut self.buffer).into_iter();
        let mut files = Vec::with_capacity(self.runs.len());
        for path in &self.runs {
            files.push(BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(io)?).lines());
        }
        let last = files.len();
        let mut next = |run: usize| -> std::io::Result<Option<Keyed<T>>> {
            if run == last {
                return Ok(memory.next());
            }
            match files[run].next() {
                None => Ok(None),
                Some(line) => Ok(Some(serde_json::from_str(&line?)?)),
            }
        };
        let mut heap = BinaryHeap::new();
        for run in 0..=last {
            if let Some(record) = next(run).map_err(io)? {
                heap.push(Head { record, run });
            }
        }
        while let Some(Head { record, run }) = heap.pop() {
            if let Some(record) = next(run).map_err(io)? {
                heap.push(Head { record, run });
            }
            sink(record.2)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilling_gives_exactly_one_stable_sort() {
        // times with many ties, machines interleaved: a stable sort keeps arrival order on ties
        let input: Vec<(f64, &str, u32)> =
            (0..103).map(|i| (((i * 37) % 11) as f64 * 0.5, ["b", "a", ""][(i % 3) as usize], i)).collect();
        let mut expected = input.clone();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let dir = std::env::temp_dir().join(format!("cellfab-time-sorter-{}", std::process::id()));
        for run_records in [1, 4, 10, 1000] {
            let mut sorter = TimeSorter::new(dir.clone(), "events", run_records);
            for (t, m, i) in &input {
                sorter.push(*t, m, *i).unwrap();
            }
            let expected_runs = if run_records >= input.len() { 0 } else { input.len() / run_records };
            assert_eq!(sorter.spilled_runs(), expected_runs);
            let mut out = Vec::new();
            sorter
                .drain_sorted(
                    |e| e,
                    |i| {
                        out.push(i);
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(out, expected.iter().map(|e| e.2).collect::<Vec<_>>(), "run size {run_records}");
            let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "run files removed");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
