//! Formation and aging split a lot into fixed-size chunks of cells and run them as jobs of
//! the plant's `Parallel`: the samples, alarms, result and cells must be byte-identical
//! whether the jobs run in order on one thread, on several threads, or in reverse order.

mod common_formed;

use cellfab_model::cell::FilledCell;
use cellfab_model::random::stream;
use cellfab_model::stage::{Parallel, Sequential, Stage, StageCtx, VecSink};
use cellfab_model::stages::aging::{Aging, AgingParams};
use cellfab_model::stages::formation::{Formation, FormationParams, CELLS_PER_JOB};
use cellfab_model::Line;
use common_formed::nominal_lot;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Jobs on `workers` scoped threads pulling indices from a counter (what the plant does).
struct Scoped {
    workers: usize,
}

impl Parallel for Scoped {
    fn for_each(&self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs {
                break;
            }
            job(i);
        };
        std::thread::scope(|s| {
            for _ in 0..self.workers {
                s.spawn(work);
            }
        });
    }
}

/// Jobs on the calling thread, last first.
struct Reversed;

impl Parallel for Reversed {
    fn for_each(&self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..jobs).rev().for_each(job);
    }
}

/// A lot of `n` cells that differ from one another (wetting, water, one latent short), so
/// lot sums depend on the order in which they are added.
fn varied_lot(n: usize) -> Vec<FilledCell> {
    let mut cells = nominal_lot(n, 40);
    for (i, c) in cells.iter_mut().enumerate() {
        c.wetting_frac = 0.93 + 0.07 * ((i * 37) % 101) as f64 / 100.0;
        c.water_mass_kg *= 0.5 + ((i * 53) % 89) as f64 / 88.0;
    }
    cells[n / 2].assembled.latent_short_resistance_ohm = 2000.0;
    cells
}

fn ctx<'a>(
    p: &'a mut cellfab_model::random::StreamRng,
    s: &'a mut cellfab_model::random::StreamRng,
    parallel: &'a dyn Parallel,
) -> StageCtx<'a> {
    StageCtx {
        batch_id: 1,
        line: Line::Cell,
        start_t_s: 1234.0,
        process_rng: p,
        sensor_rng: s,
        stream_seed: 7,
        process_variability: false,
        sensor_noise: true,
        parallel,
        faults: &cellfab_model::fault::NO_FAULTS,
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// Everything a stage run produced, serialized: output, result, samples, alarms.
fn run_stage<S: Stage>(params: &S::Params, input: S::Input, parallel: &dyn Parallel) -> [String; 4]
where
    S::Output: Serialize,
{
    let (mut p, mut s) = (stream(7, &[1]), stream(7, &[2]));
    let mut sink = VecSink::default();
    let run = S::run(params, input, &mut Default::default(), &mut ctx(&mut p, &mut s, parallel), &mut sink);
    [json(&run.output), json(&run.result), json(&sink.samples), json(&sink.alarms)]
}

fn assert_same(what: &str, a: &[String; 4], b: &[String; 4]) {
    for (part, (x, y)) in ["output", "result", "samples", "alarms"].iter().zip(a.iter().zip(b)) {
        assert!(x == y, "{what}: {part} differs ({} vs {} bytes)", x.len(), y.len());
    }
}

#[test]
fn formation_is_byte_identical_on_any_number_of_threads() {
    // Three chunks per wave, two waves of unequal size.
    let n = 2 * CELLS_PER_JOB + 100;
    // Traced cells (first of lanes 0, 2, … 14, 40 per lane) fall in every chunk.
    let p = FormationParams { channels: (n - 37) as u32, traced_cells: 12, ..FormationParams::default() };
    let one = run_stage::<Formation>(&p, varied_lot(n), &Sequential);
    assert!(one[3].contains("FORM_"), "the lot raises alarms");
    for (name, parallel) in [
        ("4 threads", &Scoped { workers: 4 } as &dyn Parallel),
        ("2 threads", &Scoped { workers: 2 }),
        ("reversed", &Reversed),
    ] {
        assert_same(name, &one, &run_stage::<Formation>(&p, varied_lot(n), parallel));
    }
}

#[test]
fn aging_is_byte_identical_on_any_number_of_threads() {
    let n = 2 * CELLS_PER_JOB + 100;
    let mut formed = {
        let (mut p, mut s) = (stream(7, &[1]), stream(7, &[2]));
        let mut sink = VecSink::default();
        let parallel = Scoped { workers: 2 };
        Formation::run(
            &FormationParams::default(),
            varied_lot(n),
            &mut (),
            &mut ctx(&mut p, &mut s, &parallel),
            &mut sink,
        )
        .output
    };
    // A soft short that formation would not catch shows up as a K-value outlier in aging.
    let k = formed.iter().position(|c| c.formed && !c.is_rejected() && c.filled.assembled.genealogy.lane == 5).unwrap();
    formed[k].filled.assembled.latent_short_resistance_ohm = 500.0;
    let p = AgingParams { traced_cells: 12, ..AgingParams::default() };
    let one = run_stage::<Aging>(&p, formed.clone(), &Sequential);
    assert!(one[3].contains("AGE_"), "the lot raises alarms");
    for (name, parallel) in [
        ("4 threads", &Scoped { workers: 4 } as &dyn Parallel),
        ("2 threads", &Scoped { workers: 2 }),
        ("reversed", &Reversed),
    ] {
        assert_same(name, &one, &run_stage::<Aging>(&p, formed.clone(), parallel));
    }
}
