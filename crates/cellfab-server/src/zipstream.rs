//! Run folders as zip downloads, streamed: a blocking task writes the zip (deflate, data
//! descriptors, no seeking) into a bounded channel that the response body drains, so neither
//! the files nor the archive are ever held in memory as a whole. A client that disconnects
//! stops the writer at its next chunk.

use axum::body::{Body, Bytes};
use cellfab_model::{Line, StageKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Which files of a run go into the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One electrode line's JSON files together with the cell line's (`GET /files/Anode`).
    LegacyElectrode(Line),
    /// The stage files of one line only; for `Line::Cell` also `cell_results.jsonl`.
    Line(Line),
    /// Every file of the run folder.
    All,
}

/// Bytes buffered before a chunk is handed to the response body.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the zip writer and the client.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The line a seed-layout file belongs to, from its machine-id prefix.
fn line_of(stage: StageKind, name: &str) -> Option<Line> {
    [Line::Anode, Line::Cathode, Line::Cell]
        .into_iter()
        .find(|&line| name.starts_with(&format!("{}_", stage.machine_id(line))))
}

/// The files of `run_dir` that `scope` selects, as (name in the archive, path), sorted.
pub fn select(run_dir: &Path, scope: Scope) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if scope == Scope::All || scope == Scope::Line(Line::Cell) {
        let top: &[&str] = if scope == Scope::All {
            &["manifest.json", "alarms.jsonl", "cell_results.jsonl", "fault_labels.jsonl"]
        } else {
            &["cell_results.jsonl"]
        };
        for name in top {
            let path = run_dir.join(name);
            if path.is_file() {
                out.push((name.to_string(), path));
            }
        }
    }
    for stage in StageKind::ALL {
        let folder = stage.folder();
        let dir = run_dir.join(&folder);
        if !dir.is_dir() {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.ends_with(".json"))
            .collect();
        names.sort_unstable();
        for name in names {
            let keep = match (scope, line_of(stage, &name)) {
                (Scope::All, _) => true,
                (Scope::Line(want), Some(line)) => want == line,
                (Scope::LegacyElectrode(want), Some(line)) => line == want || line == Line::Cell,
                (_, None) => false,
            };
            if keep {
                out.push((format!("{folder}/{name}"), dir.join(&name)));
            }
        }
    }
    Ok(out)
}

/// A `Write` that forwards full chunks to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

fn write_zip(files: Vec<(String, PathBuf)>, out: ChannelWriter) -> zip::result::ZipResult<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, path) in files {
        zip.start_file(name, options)?;
        let mut file = std::fs::File::open(&path)?;
        std::io::copy(&mut file, &mut zip)?;
    }
    let mut inner = zip.finish()?.into_inner();
    inner.flush()?;
    Ok(())
}

/// A response body that streams a zip of `files`.
pub fn stream(files: Vec<(String, PathBuf)>) -> Body {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK_BYTES) };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_zip(files, writer) {
            // The body ends with an error, so the client sees a broken transfer, not a
            // truncated zip that looks complete.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}
