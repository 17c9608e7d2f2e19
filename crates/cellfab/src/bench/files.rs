//! The file system's floor under the seed layout: N small files written one by one, the way
//! the seed layout writes its per-sample files (temporary file + rename), and as plain
//! creations for comparison. A default batch writes ~20 000 such files, so this floor, not
//! the simulator, bounds a seed-layout batch from below.

use super::summary;
use anyhow::Result;
use cellfab_store::atomic::write_atomic;
use std::path::Path;
use std::time::Instant;

/// A sample file's size in the seed layout is 0.5–1.5 kB; this stands for one.
const FILE_BYTES: usize = 900;

/// Writes `n` files `repeat` times each way into fresh folders under `scratch` and prints
/// the median and best time per file and for `n` files.
pub fn floor(n: usize, repeat: u32, scratch: &Path) -> Result<()> {
    let body = vec![b'x'; FILE_BYTES];
    println!("\nfile system floor: {n} files of {FILE_BYTES} bytes, one by one, {repeat} repetitions");
    for (name, atomic) in [("temporary file + rename (seed layout)", true), ("plain create + write", false)] {
        let mut times = Vec::new();
        for r in 0..repeat.max(1) {
            let dir = scratch.join(format!("floor-{atomic}-{r}"));
            std::fs::create_dir_all(&dir)?;
            let t0 = Instant::now();
            for i in 0..n {
                let path = dir.join(format!("MC_Coat_Anode_2025-01-01T00-00-00-000000_result_at_{i}s.json"));
                if atomic {
                    write_atomic(&path, &body)?;
                } else {
                    std::fs::write(&path, &body)?;
                }
            }
            times.push(t0.elapsed().as_secs_f64());
            std::fs::remove_dir_all(&dir)?;
        }
        let s = summary(times);
        println!(
            "  {name:<40} median {:>7.1} µs/file ({:.3} s for {n}), best {:>7.1} µs/file",
            s.median / n as f64 * 1e6,
            s.median,
            s.best / n as f64 * 1e6
        );
    }
    Ok(())
}
