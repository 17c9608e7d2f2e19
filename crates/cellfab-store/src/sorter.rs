//! [`TimeSorter`]: a stable sort of records by (plant time, machine id) in bounded memory, for
//! the run-wide files whose records come from every machine thread in any order (`alarms.jsonl`,
//! the `events` table).
//!
//! Records are buffered; each full buffer is sorted and written to a hidden run file
//! (`.<name>.run<k>.spill`, length-prefixed binary records: plant time, machine id, payload as
//! [`SpillRecord`] encodes it), and [`TimeSorter::drain_sorted`] merges the runs with a heap.
//! Ties between runs go to the earlier run and a run keeps its order, so the result is exactly
//! that of one stable sort of all records, whatever the buffer size. Whenever
//! [`MERGE_FAN_IN`] runs of the same level pile up they are merged into one run of the next
//! level (as a log-structured merge does), so a run of a thousand batches with millions of
//! alarm events still merges a few dozen files at the end, each record rewritten only
//! log₆₄(runs) times.

use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// A payload that can go to a run file and come back unchanged.
pub trait SpillRecord: Sized {
    /// Appends the payload's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// The payload from the bytes [`SpillRecord::encode`] wrote.
    fn decode(bytes: Vec<u8>) -> std::io::Result<Self>;
}

impl SpillRecord for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: Vec<u8>) -> std::io::Result<Self> {
        String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("sort run file: {what}"))
}

/// Writes one record: t_s (8 bytes), machine id and payload (each a u32 length and bytes).
fn write_record<T: SpillRecord>(out: &mut impl Write, record: &Keyed<T>, scratch: &mut Vec<u8>) -> std::io::Result<()> {
    scratch.clear();
    record.2.encode(scratch);
    let id = record.1.as_bytes();
    let len = |n: usize| u32::try_from(n).map_err(|_| invalid("a record of 4 GiB or more"));
    out.write_all(&record.0.to_le_bytes())?;
    out.write_all(&len(id.len())?.to_le_bytes())?;
    out.write_all(id)?;
    out.write_all(&len(scratch.len())?.to_le_bytes())?;
    out.write_all(scratch)
}

/// Reads the next record, `None` at a clean end of file; a truncated record is an error.
fn read_record<T: SpillRecord>(input: &mut impl Read) -> std::io::Result<Option<Keyed<T>>> {
    let mut t = [0u8; 8];
    let first = loop {
        match input.read(&mut t[..1]) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if first == 0 {
        return Ok(None);
    }
    input.read_exact(&mut t[1..])?;
    let mut field = || -> std::io::Result<Vec<u8>> {
        let mut n = [0u8; 4];
        input.read_exact(&mut n)?;
        let mut bytes = vec![0u8; u32::from_le_bytes(n) as usize];
        input.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let id = String::from_utf8(field()?).map_err(|_| invalid("a machine id is not UTF-8"))?;
    let payload = T::decode(field()?)?;
    Ok(Some((f64::from_le_bytes(t), id, payload)))
}

/// One record: (plant time, machine id, payload).
type Keyed<T> = (f64, String, T);

fn by_time_then_machine<T>(a: &Keyed<T>, b: &Keyed<T>) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1))
}

/// Runs merged into one as soon as this many of the same size are on disk, so a merge never
/// holds more than this many files open (and their read buffers) however long the run.
pub const MERGE_FAN_IN: usize = 64;

/// Sorts records by (plant time, machine id), stably, spilling sorted runs to disk.
pub struct TimeSorter<T> {
    dir: PathBuf,
    name: String,
    run_records: usize,
    buffer: Vec<Keyed<T>>,
    /// Run files in arrival order, each with its level (0: a spilled buffer; L + 1: a merge
    /// of `MERGE_FAN_IN` runs of level L). Levels never increase along the list.
    runs: Vec<(PathBuf, u32)>,
    /// Run files written so far (for unique names).
    written: usize,
    fan_in: usize,
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

/// Where a merge reads one run from.
enum Source<T> {
    File(BufReader<std::fs::File>),
    Memory(std::vec::IntoIter<Keyed<T>>),
}

impl<T: SpillRecord> Source<T> {
    fn next(&mut self) -> std::io::Result<Option<Keyed<T>>> {
        match self {
            Source::File(f) => read_record(f),
            Source::Memory(m) => Ok(m.next()),
        }
    }
}

/// Merges sorted sources (earlier source first on ties) into `sink`.
fn merge<T: SpillRecord, E>(
    mut sources: Vec<Source<T>>,
    io: &impl Fn(std::io::Error) -> E,
    sink: &mut impl FnMut(Keyed<T>) -> Result<(), E>,
) -> Result<(), E> {
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (run, source) in sources.iter_mut().enumerate() {
        if let Some(record) = source.next().map_err(io)? {
            heap.push(Head { record, run });
        }
    }
    while let Some(Head { record, run }) = heap.pop() {
        if let Some(next) = sources[run].next().map_err(io)? {
            heap.push(Head { record: next, run });
        }
        sink(record)?;
    }
    Ok(())
}

impl<T: SpillRecord> TimeSorter<T> {
    /// A sorter that keeps up to `run_records` records in memory and spills runs into `dir`
    /// (created when the first run is written).
    pub fn new(dir: PathBuf, name: &str, run_records: usize) -> Self {
        Self {
            dir,
            name: name.to_string(),
            run_records: run_records.max(1),
            buffer: Vec::new(),
            runs: Vec::new(),
            written: 0,
            fan_in: MERGE_FAN_IN,
        }
    }

    /// Adds one record.
    pub fn push(&mut self, t_s: f64, machine_id: &str, payload: T) -> std::io::Result<()> {
        self.buffer.push((t_s, machine_id.to_string(), payload));
        if self.buffer.len() >= self.run_records {
            self.spill()?;
        }
        Ok(())
    }

    /// Run files on disk now.
    pub fn spilled_runs(&self) -> usize {
        self.runs.len()
    }

    fn new_run_path(&mut self) -> PathBuf {
        self.written += 1;
        self.dir.join(format!(".{}.run{}.spill", self.name, self.written - 1))
    }

    fn spill(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.new_run_path();
        self.buffer.sort_by(by_time_then_machine);
        let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
        let mut scratch = Vec::new();
        for record in self.buffer.drain(..) {
            write_record(&mut out, &record, &mut scratch)?;
        }
        out.flush()?;
        self.runs.push((path, 0));
        self.compact()
    }

    /// Merges the last `fan_in` runs into one while they share a level.
    fn compact(&mut self) -> std::io::Result<()> {
        while self.runs.len() >= self.fan_in {
            let tail = &self.runs[self.runs.len() - self.fan_in..];
            let level = tail[0].1;
            if tail.iter().any(|(_, l)| *l != level) {
                return Ok(());
            }
            let tail: Vec<(PathBuf, u32)> = self.runs.split_off(self.runs.len() - self.fan_in);
            let path = self.new_run_path();
            let mut sources = Vec::with_capacity(tail.len());
            for (p, _) in &tail {
                sources.push(Source::File(BufReader::with_capacity(1 << 16, std::fs::File::open(p)?)));
            }
            let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
            let mut scratch = Vec::new();
            merge::<T, std::io::Error>(sources, &|e| e, &mut |record| write_record(&mut out, &record, &mut scratch))?;
            out.flush()?;
            for (p, _) in &tail {
                std::fs::remove_file(p)?;
            }
            self.runs.push((path, level + 1));
        }
        Ok(())
    }

    /// Hands every payload to `sink` in sorted order, then removes the run files; `io` turns
    /// a failure to read a run into the sink's error type.
    pub fn drain_sorted<E>(
        mut self,
        io: impl Fn(std::io::Error) -> E,
        mut sink: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = self.merge_all(&io, &mut sink);
        for (path, _) in &self.runs {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn merge_all<E>(
        &mut self,
        io: &impl Fn(std::io::Error) -> E,
        sink: &mut impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut sources = Vec::with_capacity(self.runs.len() + 1);
        for (path, _) in &self.runs {
            sources.push(Source::File(BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(io)?)));
        }
        // the records still buffered came last: they are the last run, kept in memory
        self.buffer.sort_by(by_time_then_machine);
        sources.push(Source::Memory(std::mem::take(&mut self.buffer).into_iter()));
        merge(sources, io, &mut |record| sink(record.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SpillRecord for u32 {
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
        fn decode(bytes: Vec<u8>) -> std::io::Result<Self> {
            let bytes: [u8; 4] = bytes.try_into().map_err(|_| invalid("not a u32"))?;
            Ok(u32::from_le_bytes(bytes))
        }
    }

    #[test]
    fn spilling_gives_exactly_one_stable_sort() {
        // times with many ties, machines interleaved: a stable sort keeps arrival order on ties
        let input: Vec<(f64, &str, u32)> =
            (0..103).map(|i| (((i * 37) % 11) as f64 * 0.5, ["b", "a", ""][(i % 3) as usize], i)).collect();
        let mut expected = input.clone();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let dir = std::env::temp_dir().join(format!("cellfab-time-sorter-{}", std::process::id()));
        for (run_records, fan_in) in [(1, 2), (1, 3), (1, MERGE_FAN_IN), (4, 4), (10, 2), (1000, 2)] {
            let mut sorter = TimeSorter::new(dir.clone(), "events", run_records);
            sorter.fan_in = fan_in;
            for (t, m, i) in &input {
                sorter.push(*t, m, *i).unwrap();
            }
            let spilled = if run_records >= input.len() { 0 } else { input.len() / run_records };
            // with merging, the runs on disk are the digits of the spill count in base fan_in
            let mut expected_runs = 0;
            let mut n = spilled;
            while n > 0 {
                expected_runs += n % fan_in;
                n /= fan_in;
            }
            assert_eq!(sorter.spilled_runs(), expected_runs, "run size {run_records}, fan-in {fan_in}");
            assert!(sorter.spilled_runs() < fan_in * 7, "merging keeps the open runs few");
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
            assert_eq!(
                out,
                expected.iter().map(|e| e.2).collect::<Vec<_>>(),
                "run size {run_records}, fan-in {fan_in}"
            );
            let left = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "run files removed");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_round_trip_and_a_truncated_run_is_an_error() {
        let records: Vec<Keyed<String>> = vec![
            (1.5, "MC_Slit_Anode".into(), "{\"code\":\"SLIT_BURR_HIGH\",\"message\":\"ü\\n\"}".into()),
            (-0.0, String::new(), String::new()),
            (f64::MAX, "x".into(), "y".repeat(70_000)),
        ];
        let mut bytes = Vec::new();
        let mut scratch = Vec::new();
        for r in &records {
            write_record(&mut bytes, r, &mut scratch).unwrap();
        }
        let mut input = bytes.as_slice();
        let mut back = Vec::new();
        while let Some(r) = read_record::<String>(&mut input).unwrap() {
            back.push(r);
        }
        assert_eq!(back.len(), 3);
        for (a, b) in records.iter().zip(&back) {
            assert_eq!((a.0.to_bits(), &a.1, &a.2), (b.0.to_bits(), &b.1, &b.2));
        }
        for cut in [1, 9, 20, bytes.len() - 1] {
            let mut input = &bytes[..cut];
            let mut result = Ok(None);
            for _ in 0..4 {
                result = read_record::<String>(&mut input);
                if !matches!(result, Ok(Some(_))) {
                    break;
                }
            }
            assert!(result.is_err(), "cut at {cut} bytes must be an error, got {result:?}");
        }
    }
}
