//! Microbenchmarks of the model alone (divan): every stage of the anode line on its default
//! recipe (samples counted, not stored), formation and aging of a 64-cell lot on one thread,
//! one aging lane-group step, and the packed `exp` against libm. Whole-process figures
//! (a default batch, output formats, N batches, the server) come from `cellfab bench`;
//! both are in docs/PERFORMANCE.md.
//!
//! `cargo bench -p cellfab-model --bench stepping`; the test command runs each once
//! (`-- --test`).

use cellfab_model::electrochem::{CellConstants, CellState, RestLanes, ThermalFactors, REST_LANES};
use cellfab_model::random::stream;
use cellfab_model::recipe::Recipe;
use cellfab_model::stage::{CountSink, Stage, StageCtx};
use cellfab_model::stages::aging::{Aging, AgingParams};
use cellfab_model::stages::assembly::{Assembly, AssemblyInput, AssemblyParams};
use cellfab_model::stages::calendaring::{Calendaring, CalendaringParams};
use cellfab_model::stages::coating::{Coating, CoatingParams};
use cellfab_model::stages::drying::{Drying, DryingParams};
use cellfab_model::stages::filling::{Filling, FillingParams};
use cellfab_model::stages::formation::{Formation, FormationParams};
use cellfab_model::stages::inspection::{Inspection, InspectionParams};
use cellfab_model::stages::mixing::{Mixing, MixingParams};
use cellfab_model::stages::rewinding::{Rewinding, RewindingParams};
use cellfab_model::stages::slitting::{Slitting, SlittingParams};
use cellfab_model::{vexp, Line, Sequential};
use divan::{black_box, Bencher};
use std::sync::LazyLock;

fn main() {
    divan::main();
}

/// One run of stage `S` on `input` with process variability and sensor noise on, as the
/// plant runs it; returns the output and the samples emitted.
fn run<S: Stage>(params: &S::Params, line: Line, input: S::Input) -> (S::Output, u64) {
    let (mut p, mut s) = (stream(42, &[1]), stream(42, &[2]));
    let mut ctx = StageCtx {
        batch_id: 1,
        line,
        start_t_s: 0.0,
        process_rng: &mut p,
        sensor_rng: &mut s,
        stream_seed: 7,
        process_variability: true,
        sensor_noise: true,
        parallel: &Sequential,
        faults: &cellfab_model::fault::NO_FAULTS,
    };
    let mut sink = CountSink::default();
    let out = S::run(params, input, &mut S::MachineState::default(), &mut ctx, &mut sink);
    (out.output, sink.samples)
}

/// Every product of one electrode line, computed once.
struct LineProducts {
    slurry: <Mixing as Stage>::Output,
    film: <Coating as Stage>::Output,
    dry: <Drying as Stage>::Output,
    calendered: <Calendaring as Stage>::Output,
    slit: <Slitting as Stage>::Output,
    inspected: <Inspection as Stage>::Output,
    reels: <Rewinding as Stage>::Output,
}

/// The anode's or the cathode's value.
fn pick<T>(anode: bool, a: T, c: T) -> T {
    if anode {
        a
    } else {
        c
    }
}

fn line_products(line: Line) -> LineProducts {
    let (recipe, anode) = if line == Line::Anode { (Recipe::anode(), true) } else { (Recipe::cathode(), false) };
    let slurry = run::<Mixing>(&pick(anode, MixingParams::anode(), MixingParams::cathode()), line, recipe).0;
    let film = run::<Coating>(&pick(anode, CoatingParams::anode(), CoatingParams::cathode()), line, slurry.clone()).0;
    let dry = run::<Drying>(&pick(anode, DryingParams::anode(), DryingParams::cathode()), line, film.clone()).0;
    let calendered =
        run::<Calendaring>(&pick(anode, CalendaringParams::anode(), CalendaringParams::cathode()), line, dry.clone()).0;
    let slit =
        run::<Slitting>(&pick(anode, SlittingParams::anode(), SlittingParams::cathode()), line, calendered.clone()).0;
    let inspected = run::<Inspection>(&InspectionParams::default(), line, slit.clone()).0;
    let reels =
        run::<Rewinding>(&pick(anode, RewindingParams::anode(), RewindingParams::cathode()), line, inspected.clone()).0;
    LineProducts { slurry, film, dry, calendered, slit, inspected, reels }
}

static ANODE: LazyLock<LineProducts> = LazyLock::new(|| line_products(Line::Anode));

/// Filled and formed cells of a 64-cell lot, computed once.
static CELLS: LazyLock<(<Filling as Stage>::Output, <Formation as Stage>::Output)> = LazyLock::new(|| {
    let cathode = line_products(Line::Cathode);
    let input = AssemblyInput { anode: ANODE.reels.clone(), cathode: cathode.reels };
    let assembly = AssemblyParams { max_cells: 64, ..AssemblyParams::default() };
    let assembled = run::<Assembly>(&assembly, Line::Cell, input).0;
    let filled = run::<Filling>(&FillingParams::default(), Line::Cell, assembled).0;
    let formed = run::<Formation>(&FormationParams::default(), Line::Cell, filled.clone()).0;
    (filled, formed)
});

/// Runs stage `S` on a clone of `input` per iteration; the counter is samples per second.
fn stage<S: Stage>(bencher: Bencher, params: S::Params, line: Line, input: &S::Input)
where
    S::Input: Clone,
{
    let samples = run::<S>(&params, line, input.clone()).1;
    bencher
        .counter(divan::counter::ItemsCount::new(samples))
        .with_inputs(|| input.clone())
        .bench_local_values(|input| black_box(run::<S>(&params, line, input)));
}

#[divan::bench(sample_count = 10)]
fn anode_mixing(b: Bencher) {
    stage::<Mixing>(b, MixingParams::anode(), Line::Anode, &Recipe::anode());
}

#[divan::bench(sample_count = 10)]
fn anode_coating(b: Bencher) {
    stage::<Coating>(b, CoatingParams::anode(), Line::Anode, &ANODE.slurry);
}

#[divan::bench(sample_count = 10)]
fn anode_drying(b: Bencher) {
    stage::<Drying>(b, DryingParams::anode(), Line::Anode, &ANODE.film);
}

#[divan::bench(sample_count = 10)]
fn anode_calendaring(b: Bencher) {
    stage::<Calendaring>(b, CalendaringParams::anode(), Line::Anode, &ANODE.dry);
}

#[divan::bench(sample_count = 10)]
fn anode_slitting(b: Bencher) {
    stage::<Slitting>(b, SlittingParams::anode(), Line::Anode, &ANODE.calendered);
}

#[divan::bench(sample_count = 10)]
fn anode_inspection(b: Bencher) {
    stage::<Inspection>(b, InspectionParams::default(), Line::Anode, &ANODE.slit);
}

#[divan::bench(sample_count = 10)]
fn anode_rewinding(b: Bencher) {
    stage::<Rewinding>(b, RewindingParams::anode(), Line::Anode, &ANODE.inspected);
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn formation_64_cells(b: Bencher) {
    stage::<Formation>(b, FormationParams::default(), Line::Cell, &CELLS.0);
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn aging_64_cells(b: Bencher) {
    stage::<Aging>(b, AgingParams::default(), Line::Cell, &CELLS.1);
}

/// One 60 s rest step of a lane group of eight formed cells (the aging inner loop).
#[divan::bench]
fn aging_lane_group_step(b: Bencher) {
    let cells: Vec<(CellConstants, CellState)> =
        CELLS.1[..REST_LANES].iter().map(|c| (CellConstants::from_filled(&c.filled), c.state())).collect();
    let mut lanes = RestLanes::new(&cells);
    let tf = ThermalFactors::at(25.0);
    b.counter(divan::counter::ItemsCount::new(REST_LANES)).bench_local(|| black_box(lanes.step(&tf, 60.0)));
}

/// Eight `exp`s at once by the packed kernel.
#[divan::bench]
fn exp_packed_8(b: Bencher) {
    let x: [f64; 8] = [-11.8, 4.2, -3.3, 12.1, -20.5, 0.7, -0.2, 17.9];
    b.counter(divan::counter::ItemsCount::new(8usize)).bench_local(|| vexp::exp_n(black_box(x)));
}

/// The same eight `exp`s by libm.
#[divan::bench]
fn exp_libm_8(b: Bencher) {
    let x: [f64; 8] = [-11.8, 4.2, -3.3, 12.1, -20.5, 0.7, -0.2, 17.9];
    b.counter(divan::counter::ItemsCount::new(8usize)).bench_local(|| black_box(x).map(f64::exp));
}
