//! The durable outbox: every message is appended to a log on disk before it is sent, and
//! leaves the log only when the broker has acknowledged it (PUBACK). A broker that is down,
//! a network that drops, or a cellfab that is stopped and started again loses nothing: the
//! next connection sends what is left, in order.
//!
//! ```text
//! <dir>/id                    stream id, the first part of every message id
//! <dir>/acked                 every message with a lower sequence number was acknowledged
//! <dir>/seg-00000000000000000000.log   one line per message: seq \t topic \t payload (JSON)
//! <dir>/seg-00000000000000010000.log   a new segment every SEGMENT_MESSAGES messages
//! ```
//!
//! Delivery is at least once: after a reconnect (or a crash before `acked` was saved) a
//! message can arrive twice, with the same `message_id`, so a consumer deduplicates by it.
//! The log is bounded by `capacity` pending messages; a producer that finds it full waits
//! (back-pressure reaches the plant through its reliable subscription) after one warning.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Messages per segment file.
pub const SEGMENT_MESSAGES: u64 = 10_000;
/// Default bound of pending messages.
pub const DEFAULT_CAPACITY: u64 = 1_000_000;

/// One message read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Sequence number in this outbox.
    pub seq: u64,
    /// Logical topic.
    pub topic: String,
    /// JSON payload.
    pub payload: String,
}

struct Reader {
    start: u64,
    next: u64,
    file: BufReader<File>,
}

/// The on-disk log of messages not yet acknowledged.
pub struct Outbox {
    dir: PathBuf,
    stream: String,
    capacity: u64,
    next_seq: u64,
    acked: u64,
    acked_saved: u64,
    acked_ahead: BTreeSet<u64>,
    segments: VecDeque<u64>,
    writer: Option<(u64, File)>,
    reader: Option<Reader>,
    read_seq: u64,
}

fn seg_name(start: u64) -> String {
    format!("seg-{start:020}.log")
}

fn parse_line(line: &str) -> Option<Stored> {
    let mut parts = line.trim_end_matches('\n').splitn(3, '\t');
    let seq = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_string();
    let payload = parts.next()?.to_string();
    Some(Stored { seq, topic, payload })
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, resuming whatever it still holds.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let id_path = dir.join("id");
        let stream = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let id = format!("{:x}{:x}", nanos, std::process::id());
                cellfab_store::atomic::write_atomic(&id_path, id.as_bytes())?;
                id
            }
        };
        let acked = std::fs::read_to_string(dir.join("acked")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut segments: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        segments.sort_unstable();
        let mut next_seq = acked;
        if let Some(&last) = segments.last() {
            // count the complete lines of the last segment; cut a line torn by a crash
            let path = dir.join(seg_name(last));
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut reader = BufReader::new(&mut file);
            let (mut good_len, mut n, mut line) = (0u64, last, String::new());
            loop {
                line.clear();
                let read = reader.read_line(&mut line)?;
                if read == 0 || !line.ends_with('\n') || parse_line(&line).is_none_or(|m| m.seq != n) {
                    break;
                }
                good_len += read as u64;
                n += 1;
            }
            drop(reader);
            file.set_len(good_len)?;
            next_seq = next_seq.max(n);
        }
        let mut outbox = Self {
            dir: dir.to_path_buf(),
            stream,
            capacity: capacity.max(1),
            next_seq,
            acked,
            acked_saved: acked,
            acked_ahead: BTreeSet::new(),
            segments: segments.into(),
            writer: None,
            reader: None,
            read_seq: acked,
        };
        outbox.drop_delivered_segments()?;
        Ok(outbox)
    }

    /// The outbox's stream id (first part of every message id).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The id `<stream>:<seq>` the message with sequence number `seq` will carry.
    pub fn message_id(&self, seq: u64) -> String {
        format!("{}:{seq}", self.stream)
    }

    /// The sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages waiting for an acknowledgement.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.acked
    }

    /// True if no more messages may be appended until some are acknowledged.
    pub fn is_full(&self) -> bool {
        self.pending() >= self.capacity
    }

    /// The bound of pending messages.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Appends a message; returns its sequence number. The caller checks [`Outbox::is_full`].
    pub fn push(&mut self, topic: &str, payload: &str) -> std::io::Result<u64> {
        debug_assert!(!topic.contains(['\t', '\n']) && !payload.contains('\n'));
        let seq = self.next_seq;
        let rotate = match &self.writer {
            Some((start, _)) => seq - start >= SEGMENT_MESSAGES,
            None => true,
        };
        if rotate {
            // continue the last segment after a restart if it has room
            let start = match self.segments.back() {
                Some(&s) if seq - s < SEGMENT_MESSAGES => s,
                _ => {
                    self.segments.push_back(seq);
                    seq
                }
            };
            let file = OpenOptions::new().create(true).append(true).open(self.dir.join(seg_name(start)))?;
            self.writer = Some((start, file));
        }
        let (_, file) = self.writer.as_mut().expect("writer opened above");
        file.write_all(format!("{seq}\t{topic}\t{payload}\n").as_bytes())?;
        self.next_seq += 1;
        Ok(seq)
    }

    /// The next message not yet handed out since the last [`Outbox::rewind`], if any.
    pub fn next_unsent(&mut self) -> std::io::Result<Option<Stored>> {
        while self.read_seq < self.next_seq {
            if self.reader.as_ref().is_none_or(|r| r.next > self.read_seq) {
                let Some(start) = self.segments.iter().rev().find(|s| **s <= self.read_seq).copied() else {
                    return Ok(None);
                };
                let file = BufReader::new(File::open(self.dir.join(seg_name(start)))?);
                self.reader = Some(Reader { start, next: start, file });
            }
            let reader = self.reader.as_mut().expect("reader opened above");
            let mut line = String::new();
            let read = reader.file.read_line(&mut line)?;
            if read == 0 || !line.ends_with('\n') {
                // end of this segment: the message is in the next one
                if !line.is_empty() {
                    reader.file.seek(SeekFrom::Current(-(line.len() as i64)))?;
                }
                let next_start = self.segments.iter().find(|s| **s > reader.start).copied();
                match next_start {
                    Some(s) if s <= self.read_seq => {
                        self.reader = None;
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            let Some(msg) = parse_line(&line) else { continue };
            reader.next = msg.seq + 1;
            if msg.seq < self.read_seq {
                continue;
            }
            self.read_seq = msg.seq + 1;
            return Ok(Some(msg));
        }
        Ok(None)
    }

    /// Hands out every unacknowledged message again, from the oldest (after a reconnect).
    pub fn rewind(&mut self) {
        self.read_seq = self.acked;
        self.reader = None;
    }

    /// Marks `seq` as delivered; removes segments that hold only delivered messages.
    pub fn ack(&mut self, seq: u64) -> std::io::Result<()> {
        if seq == self.acked {
            self.acked += 1;
            while self.acked_ahead.remove(&self.acked) {
                self.acked += 1;
            }
        } else if seq > self.acked {
            self.acked_ahead.insert(seq);
        }
        if self.acked - self.acked_saved >= 1000 {
            self.save()?;
        }
        self.drop_delivered_segments()
    }

    fn drop_delivered_segments(&mut self) -> std::io::Result<()> {
        while self.segments.len() > 1 && self.segments[1] <= self.acked {
            let start = self.segments.pop_front().expect("two segments");
            self.save()?;
            std::fs::remove_file(self.dir.join(seg_name(start)))?;
            if self.reader.as_ref().is_some_and(|r| r.start == start) {
                self.reader = None;
            }
        }
        if self.pending() == 0 && self.segments.len() == 1 && self.acked - self.segments[0] >= SEGMENT_MESSAGES {
            // the last segment is full and delivered: the next message starts a new one
            let start = self.segments.pop_front().expect("one segment");
            self.save()?;
            self.writer = None;
            self.reader = None;
            std::fs::remove_file(self.dir.join(seg_name(start)))?;
        }
        Ok(())
    }

    /// Writes the acknowledged position to disk.
    pub fn save(&mut self) -> std::io::Result<()> {
        if self.acked != self.acked_saved || !self.dir.join("acked").exists() {
            cellfab_store::atomic::write_atomic(&self.dir.join("acked"), self.acked.to_string().as_bytes())?;
            self.acked_saved = self.acked;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cellfab-outbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn drain(o: &mut Outbox) -> Vec<u64> {
        std::iter::from_fn(|| o.next_unsent().unwrap()).map(|m| m.seq).collect()
    }

    #[test]
    fn unacknowledged_messages_survive_a_reopen_in_order() {
        let d = dir("reopen");
        let mut o = Outbox::open(&d, 100_000).unwrap();
        let stream = o.stream().to_string();
        for i in 0..25_000u64 {
            o.push("p/anode/M/telemetry", &format!("{{\"i\":{i}}}")).unwrap();
        }
        assert_eq!(drain(&mut o).len(), 25_000);
        for s in 0..12_345 {
            o.ack(s).unwrap();
        }
        o.save().unwrap();
        drop(o);
        let mut o = Outbox::open(&d, 100_000).unwrap();
        assert_eq!(o.stream(), stream);
        assert_eq!(o.pending(), 25_000 - 12_345);
        let seqs = drain(&mut o);
        assert_eq!(seqs, (12_345..25_000).collect::<Vec<_>>());
        // the first segment was delivered entirely and is gone
        assert!(!d.join(seg_name(0)).exists());
        o.push("t", "{}").unwrap();
        assert_eq!(o.next_unsent().unwrap().unwrap().seq, 25_000);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rewind_hands_out_unacknowledged_messages_again() {
        let d = dir("rewind");
        let mut o = Outbox::open(&d, 10).unwrap();
        for _ in 0..5 {
            o.push("t", "{}").unwrap();
        }
        assert_eq!(drain(&mut o), vec![0, 1, 2, 3, 4]);
        o.ack(0).unwrap();
        o.ack(2).unwrap();
        o.rewind();
        assert_eq!(drain(&mut o), vec![1, 2, 3, 4]);
        o.ack(1).unwrap();
        assert_eq!(o.pending(), 2);
        for _ in 0..8 {
            o.push("t", "{}").unwrap();
        }
        assert!(o.is_full());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_line_torn_by_a_crash_is_cut_on_reopen() {
        let d = dir("torn");
        let mut o = Outbox::open(&d, 10).unwrap();
        o.push("t", "{\"a\":1}").unwrap();
        drop(o);
        let mut f = OpenOptions::new().append(true).open(d.join(seg_name(0))).unwrap();
        f.write_all(b"1\tt\t{\"a\":").unwrap();
        drop(f);
        let mut o = Outbox::open(&d, 10).unwrap();
        assert_eq!(o.pending(), 1);
        o.push("t", "{\"b\":2}").unwrap();
        let all: Vec<Stored> = std::iter::from_fn(|| o.next_unsent().unwrap()).collect();
        assert_eq!(all.iter().map(|m| m.payload.as_str()).collect::<Vec<_>>(), ["{\"a\":1}", "{\"b\":2}"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
