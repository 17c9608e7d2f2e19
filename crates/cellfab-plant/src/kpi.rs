//! Plant KPIs (MODELS.md §14), computed from what the engine records of each stage run: plant
//! times (input ready, start, end), Critical-alarm down time and the measures of the stage's
//! final result. Pure functions of simulated times, so the KPIs are the same for any thread
//! count.
//!
//! Machine states (OPC UA Machinery, per machine over the run window `[0, end of run]`):
//! * **busy**: processing a batch, its own internal stops included (`down` is the part of
//!   busy under an active Critical alarm);
//! * **blocked**: finished, the output not yet taken by the next machine (it is busy);
//! * **starved**: waiting for the input of its next batch (before its first batch too);
//! * **idle**: no more batches to do.
//!
//! `busy + blocked + starved + idle = elapsed` for every single-capacity machine. A rack with
//! room for every batch (aging shelves) counts the union of its occupied intervals as busy.

use crate::engine::StageStat;
use cellfab_model::{Line, StageKind};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Efficiency of the mixer motor: shaft energy / η is the electric energy (§14) [C].
pub const MIXER_MOTOR_EFFICIENCY: f64 = 0.9;
/// Base power of slitting, inspection and rewinding while running (§14) [W] [C].
pub const WEB_FINISHING_BASE_POWER_W: f64 = 5_000.0;
/// Power per winder of assembly (§14) [W] [C].
pub const WINDER_POWER_W: f64 = 3_000.0;
/// Base power of the assembly line besides its winders (§14) [W] [C].
pub const ASSEMBLY_BASE_POWER_W: f64 = 5_000.0;
/// Vacuum and dosing power of filling while its stations run (§14) [W] [C].
pub const FILLING_POWER_W: f64 = 30_000.0;

/// What one stage run produced, read from its final result (units per stage: kg for mixing,
/// metres of web for coating … slitting, lane-metres for inspection and rewinding, cells for
/// the cell line).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageMeasures {
    /// Unit of `input`, `output`, `good` and the scrap quantities (`kg`, `m`, `lane_m`, `cells`).
    pub unit: &'static str,
    /// Quantity received.
    pub input: f64,
    /// Quantity processed (total output).
    pub output: f64,
    /// Good output (not rejected at this stage).
    pub good: f64,
    /// Time the output takes at design rate [s] (performance numerator).
    pub ideal_s: f64,
    /// Planned stops inside the stage duration (rewinder splices) [s].
    pub planned_stop_s: f64,
    /// Electric energy of the stage run [kWh].
    pub energy_kwh: f64,
    /// Scrap quantity per reason (alarm code or reject reason).
    pub scrap: BTreeMap<String, f64>,
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn counts(v: &Value, key: &str) -> BTreeMap<String, f64> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, n)| n.as_f64().filter(|n| *n > 0.0).map(|n| (k.clone(), n))).collect())
        .unwrap_or_default()
}

/// The measures of one stage run from its result and parameters (both as JSON, the stage's
/// serialised types), and its duration.
pub fn measures(stage: StageKind, result: &Value, params: &Value, duration_s: f64, accepted: bool) -> StageMeasures {
    let kwh = |j: f64| j / 3.6e6;
    let running = |power_w: f64, s: f64| kwh(power_w * s);
    let mut m = StageMeasures { ideal_s: duration_s, ..Default::default() };
    match stage {
        StageKind::Mixing => {
            let mass = num(result, "slurry_mass_kg");
            m.unit = "kg";
            (m.input, m.output, m.good) = (mass, mass, if accepted { mass } else { 0.0 });
            if !accepted {
                m.scrap.insert("MIX_LOT_REJECTED".into(), mass);
            }
            m.energy_kwh = kwh(num(result, "shaft_energy_j") / MIXER_MOTOR_EFFICIENCY);
        }
        StageKind::Coating => {
            let length = num(result, "roll_length_m");
            m.unit = "m";
            (m.input, m.output, m.good) = (length, length, length);
            let speed = num(params, "coating_speed_m_s");
            if speed > 0.0 {
                m.ideal_s = length / speed;
            }
            // The coater's drive is not modelled: the line's energy is the dryer's (§14).
        }
        StageKind::Drying => {
            // Length comes from the coater's record of the batch (see `compute`).
            m.unit = "m";
            m.energy_kwh = kwh(num(result, "energy_j") + num(result, "recovery_energy_j"));
        }
        StageKind::Calendaring => {
            let length = num(result, "length_m");
            m.unit = "m";
            (m.input, m.output, m.good) = (length, length, length);
            let speed = num(params, "calender_speed_m_s");
            if speed > 0.0 {
                m.ideal_s = length / speed;
            }
            m.energy_kwh = kwh(num(result, "energy_j"));
        }
        StageKind::Slitting => {
            let length = num(result, "cut_length_m");
            m.unit = "m";
            (m.input, m.output, m.good) = (length, length, length);
            let speed = num(params, "slitting_speed_m_s");
            if speed > 0.0 {
                m.ideal_s = length / speed;
            }
            m.energy_kwh = running(WEB_FINISHING_BASE_POWER_W, duration_s);
        }
        StageKind::Inspection => {
            let (ok, rejected) = (num(result, "accepted_length_m"), num(result, "rejected_length_m"));
            m.unit = "lane_m";
            (m.input, m.output, m.good) = (ok + rejected, ok + rejected, ok);
            if rejected > 0.0 {
                m.scrap.insert("INSP_REJECTED_SEGMENTS".into(), rejected);
            }
            let lanes = result.get("lanes").and_then(Value::as_array).map_or(1, Vec::len).max(1) as f64;
            let speed = num(params, "inspection_speed_m_s");
            if speed > 0.0 {
                m.ideal_s = num(result, "inspected_length_m").max((ok + rejected) / lanes) / speed;
            }
            m.energy_kwh = running(WEB_FINISHING_BASE_POWER_W, duration_s);
        }
        StageKind::Rewinding => {
            let lanes = result.get("reels").and_then(Value::as_array).map_or(0.0, |r| {
                r.iter()
                    .filter_map(|x| x.get("lane").and_then(Value::as_u64))
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as f64
            });
            let unwound = num(result, "unwound_length_m");
            let length = unwound * lanes.max(1.0);
            m.unit = "lane_m";
            (m.input, m.output, m.good) = (length, length, length);
            m.planned_stop_s = num(result, "splice_stops") * num(params, "splice_time_s");
            let speed = num(params, "rewinding_speed_m_s");
            if speed > 0.0 {
                m.ideal_s = unwound / speed;
            }
            m.energy_kwh = running(WEB_FINISHING_BASE_POWER_W, duration_s);
        }
        StageKind::CellAssembly => {
            let (total, good) = (num(result, "cells_total"), num(result, "cells_good"));
            let winders = num(params, "winder_count").max(1.0);
            m.unit = "cells";
            (m.input, m.output, m.good) = (total, total, good);
            m.scrap = counts(result, "reject_counts");
            m.ideal_s = total * num(result, "cycle_s") / winders;
            m.energy_kwh = running(winders * WINDER_POWER_W + ASSEMBLY_BASE_POWER_W, duration_s);
        }
        StageKind::ElectrolyteFilling => {
            let filled = num(result, "cells_filled");
            let (under, over) = (num(result, "underfill_count"), num(result, "overfill_count"));
            m.unit = "cells";
            (m.input, m.output, m.good) = (filled, filled, filled - under - over);
            for (reason, n) in [("FILL_UNDERFILL", under), ("FILL_OVERFILL", over)] {
                if n > 0.0 {
                    m.scrap.insert(reason.into(), n);
                }
            }
            let stations = num(params, "stations").max(1.0);
            let cycle = num(params, "station_cycle_s");
            let soak = if filled > 0.0 { num(params, "soak_time_s") } else { 0.0 };
            m.ideal_s = filled * cycle / stations + soak;
            m.energy_kwh = running(FILLING_POWER_W, (duration_s - soak).max(0.0));
        }
        StageKind::FormationCycling => {
            let (cycled, formed) = (num(result, "cells_cycled"), num(result, "cells_formed"));
            m.unit = "cells";
            (m.input, m.output, m.good) = (cycled, cycled, formed);
            m.scrap = counts(result, "reject_counts");
            m.energy_kwh = kwh(num(result, "formation_energy_grid_j"));
        }
        StageKind::Aging => {
            let aged = num(result, "cells_aged");
            m.scrap = counts(result, "reject_counts");
            let rejected: f64 = m.scrap.values().sum();
            m.unit = "cells";
            (m.input, m.output, m.good) = (aged, aged, aged - rejected);
            m.energy_kwh = kwh(num(result, "shelf_energy_j"));
        }
    }
    m
}

/// The good cells of a run and the energy they hold, counted at the line's end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CellTally {
    /// Cells that left aging.
    pub cells: u64,
    /// Cells graded A, B or C (not rejected anywhere).
    pub good_cells: u64,
    /// Formation discharge energy of the good cells (true values) [Wh].
    pub good_energy_wh: f64,
}

/// OEE of one machine (ISO 22400): planned time = busy − planned stops, run time = planned −
/// down (Critical alarms).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Oee {
    /// Availability `T_run / T_plan`.
    pub availability: f64,
    /// Performance `ideal time of the output / T_run`.
    pub performance: f64,
    /// Quality `good / total output`.
    pub quality: f64,
    /// `A · P · Q`.
    pub oee: f64,
}

/// KPIs of one machine over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MachineKpis {
    /// Machine id (`MC_Coat_Anode`).
    pub machine_id: String,
    /// Line.
    pub line: Line,
    /// Stage.
    pub stage: StageKind,
    /// Batches processed.
    pub batches: u32,
    /// A rack with room for every batch (aging shelves): not a single-capacity resource.
    pub unlimited_capacity: bool,
    /// Mean stage duration per batch (cycle time) [s].
    pub cycle_time_s: f64,
    /// Processing, internal stops included [s].
    pub busy_s: f64,
    /// Part of busy under an active Critical alarm [s].
    pub down_s: f64,
    /// Holding finished output the next machine has not taken yet [s].
    pub blocked_s: f64,
    /// Waiting for input [s].
    pub starved_s: f64,
    /// No more work [s].
    pub idle_s: f64,
    /// Planned stops inside busy (splices) [s].
    pub planned_stop_s: f64,
    /// `busy / elapsed`.
    pub utilisation: f64,
    /// Availability, performance, quality.
    pub oee: Oee,
    /// Unit of the quantities.
    pub unit: &'static str,
    /// Quantity received.
    pub input: f64,
    /// Total output.
    pub output: f64,
    /// Good output.
    pub good: f64,
    /// Stage yield `good / input`.
    pub yield_frac: f64,
    /// Scrap per reason.
    pub scrap: BTreeMap<String, f64>,
    /// Electric energy [kWh].
    pub energy_kwh: f64,
}

/// KPIs of a run (MODELS.md §14).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlantKpis {
    /// Elapsed plant time: end of the last batch [s].
    pub elapsed_s: f64,
    /// Batches finished.
    pub batches: u32,
    /// Cells that left aging.
    pub cells: u64,
    /// Good cells (not rejected).
    pub good_cells: u64,
    /// Good cells per hour of elapsed plant time.
    pub throughput_cells_per_h: f64,
    /// `cells/h × mean discharge energy × 8760 h · 10⁻⁹` [GWh/yr].
    pub throughput_gwh_per_yr: f64,
    /// Steady state, one batch per takt: good cells per batch / takt × 3600.
    pub steady_state_cells_per_h: f64,
    /// Steady-state GWh/yr-equivalent.
    pub steady_state_gwh_per_yr: f64,
    /// Mean lead time of a batch: end of aging − start of its first mixing [s].
    pub lead_time_s: f64,
    /// Lead time of each batch [s].
    pub batch_lead_times_s: Vec<f64>,
    /// Steady-state batch interval: the largest mean occupancy per batch of a single-capacity
    /// resource (coater and dryer as one) [s].
    pub takt_s: f64,
    /// Mean interval between consecutive batch finishes (0 for one batch) [s].
    pub observed_batch_interval_s: f64,
    /// The resource with the highest busy share (ties: least starved).
    pub bottleneck: String,
    /// Rolled throughput yield `Π Y_s` per line (`Anode`, `Cathode`, `Cell`).
    pub rolled_throughput_yield: BTreeMap<String, f64>,
    /// Rejected cells per reason over the cell line.
    pub scrap_cells_by_reason: BTreeMap<String, f64>,
    /// Electric energy per stage (both lines summed) [kWh].
    pub energy_by_stage_kwh: BTreeMap<String, f64>,
    /// Electric energy of the run [kWh].
    pub energy_kwh: f64,
    /// Discharge energy of the good cells [kWh].
    pub cell_energy_kwh: f64,
    /// Plant energy per kWh of good cells.
    pub energy_per_cell_energy: f64,
    /// Per machine, in chain order.
    pub machines: Vec<MachineKpis>,
}

fn downstream(line: Line, stage: StageKind) -> Option<(Line, StageKind)> {
    use StageKind::*;
    let next = match stage {
        Mixing => Coating,
        Coating => Drying,
        Drying => Calendaring,
        Calendaring => Slitting,
        Slitting => Inspection,
        Inspection => Rewinding,
        Rewinding => return Some((Line::Cell, CellAssembly)),
        CellAssembly => ElectrolyteFilling,
        ElectrolyteFilling => FormationCycling,
        FormationCycling => Aging,
        Aging => return None,
    };
    Some((line, next))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        1.0
    }
}

/// Computes the KPIs from the engine's stage records (any order), the cell tally and the
/// elapsed plant time.
pub fn compute(stats: &[StageStat], cells: &CellTally, elapsed_s: f64) -> PlantKpis {
    let mut stats: Vec<&StageStat> = stats.iter().collect();
    stats.sort_by(|a, b| {
        (a.machine.line, a.machine.stage, a.machine.batch).cmp(&(b.machine.line, b.machine.stage, b.machine.batch))
    });
    let index: Index = stats.iter().map(|s| ((s.machine.line, s.machine.stage, s.machine.batch), *s)).collect();
    let mut machines: Vec<MachineKpis> = Vec::new();
    let mut i = 0;
    while i < stats.len() {
        let first = stats[i];
        let runs: Vec<&StageStat> = stats[i..]
            .iter()
            .take_while(|s| s.machine.line == first.machine.line && s.machine.stage == first.machine.stage)
            .copied()
            .collect();
        i += runs.len();
        machines.push(machine_kpis(&runs, elapsed_s, &index));
    }
    let mut k = PlantKpis { elapsed_s, cells: cells.cells, good_cells: cells.good_cells, ..Default::default() };
    k.batches = stats.iter().map(|s| s.machine.batch).max().unwrap_or(0);
    k.throughput_cells_per_h = if elapsed_s > 0.0 { cells.good_cells as f64 * 3600.0 / elapsed_s } else { 0.0 };
    let mean_wh = if cells.good_cells > 0 { cells.good_energy_wh / cells.good_cells as f64 } else { 0.0 };
    k.throughput_gwh_per_yr = k.throughput_cells_per_h * mean_wh * 8760.0 * 1e-9;
    let mut finishes = Vec::new();
    for batch in 1..=k.batches {
        let of_batch = stats.iter().filter(|s| s.machine.batch == batch);
        let start = of_batch.clone().map(|s| s.start_t_s).fold(f64::INFINITY, f64::min);
        let end = of_batch.map(|s| s.start_t_s + s.duration_s).fold(f64::NEG_INFINITY, f64::max);
        if start.is_finite() && end.is_finite() {
            k.batch_lead_times_s.push(end - start);
            finishes.push(end);
        }
    }
    k.lead_time_s = k.batch_lead_times_s.iter().sum::<f64>() / k.batch_lead_times_s.len().max(1) as f64;
    if finishes.len() > 1 {
        k.observed_batch_interval_s = (finishes[finishes.len() - 1] - finishes[0]) / (finishes.len() - 1) as f64;
    }
    let single = |m: &&MachineKpis| !m.unlimited_capacity && m.stage != StageKind::Coating;
    k.takt_s = machines.iter().filter(single).map(|m| m.cycle_time_s).fold(0.0, f64::max);
    k.bottleneck = machines
        .iter()
        .filter(single)
        .max_by(|a, b| a.utilisation.total_cmp(&b.utilisation).then(b.starved_s.total_cmp(&a.starved_s)))
        .map(|m| m.machine_id.clone())
        .unwrap_or_default();
    if k.takt_s > 0.0 && k.batches > 0 {
        k.steady_state_cells_per_h = cells.good_cells as f64 / k.batches as f64 * 3600.0 / k.takt_s;
        k.steady_state_gwh_per_yr = k.steady_state_cells_per_h * mean_wh * 8760.0 * 1e-9;
    }
    for m in &machines {
        *k.rolled_throughput_yield.entry(m.line.title().to_string()).or_insert(1.0) *= m.yield_frac;
        *k.energy_by_stage_kwh.entry(m.stage.name().to_string()).or_default() += m.energy_kwh;
        k.energy_kwh += m.energy_kwh;
        if m.unit == "cells" {
            for (reason, n) in &m.scrap {
                *k.scrap_cells_by_reason.entry(reason.clone()).or_default() += n;
            }
        }
    }
    k.cell_energy_kwh = cells.good_energy_wh / 1e3;
    k.energy_per_cell_energy = if k.cell_energy_kwh > 0.0 { k.energy_kwh / k.cell_energy_kwh } else { 0.0 };
    k.machines = machines;
    k
}

/// Stage records by (line, stage, batch).
type Index<'a> = BTreeMap<(Line, StageKind, u32), &'a StageStat>;

/// When a batch's output left the machine: when the next machine started on it.
fn released(s: &StageStat, index: &Index) -> f64 {
    let end = s.start_t_s + s.duration_s;
    let (line, batch) = (s.machine.line, s.machine.batch);
    if s.machine.stage == StageKind::Coating {
        // The coated web leaves the coater through the dryer: the coater holds the line
        // until the dryer has emptied (one resource, §14).
        return index.get(&(line, StageKind::Drying, batch)).map_or(end, |d| d.start_t_s + d.duration_s);
    }
    match downstream(line, s.machine.stage) {
        Some((l, stage)) => index.get(&(l, stage, batch)).map_or(end, |d| d.start_t_s.max(end)),
        None => end,
    }
}

fn machine_kpis(runs: &[&StageStat], elapsed_s: f64, index: &Index) -> MachineKpis {
    let first = runs[0];
    let (line, stage) = (first.machine.line, first.machine.stage);
    let mut m = MachineKpis {
        machine_id: first.machine.machine_id.clone(),
        line,
        stage,
        batches: runs.len() as u32,
        unlimited_capacity: first.unlimited_capacity,
        cycle_time_s: 0.0,
        busy_s: 0.0,
        down_s: 0.0,
        blocked_s: 0.0,
        starved_s: 0.0,
        idle_s: 0.0,
        planned_stop_s: 0.0,
        utilisation: 0.0,
        oee: Oee::default(),
        unit: "",
        input: 0.0,
        output: 0.0,
        good: 0.0,
        yield_frac: 0.0,
        scrap: BTreeMap::new(),
        energy_kwh: 0.0,
    };
    // Quantities, energy, scrap.
    for s in runs {
        let mut q = s.measures.clone();
        if stage == StageKind::Drying {
            // The dryer passes what the coater coated.
            if let Some(c) = index.get(&(line, StageKind::Coating, s.machine.batch)) {
                (q.input, q.output, q.good) = (c.measures.input, c.measures.output, c.measures.output);
            }
        }
        m.unit = q.unit;
        m.input += q.input;
        m.output += q.output;
        m.good += q.good;
        m.energy_kwh += q.energy_kwh;
        m.planned_stop_s += q.planned_stop_s;
        for (reason, n) in q.scrap {
            *m.scrap.entry(reason).or_default() += n;
        }
        m.down_s += s.down_s;
    }
    // State times: walk the busy intervals in time order; gaps are blocked while the last
    // output waits to be taken, then starved if another batch follows, else idle.
    let mut spans: Vec<(f64, f64, f64)> =
        runs.iter().map(|s| (s.start_t_s, s.start_t_s + s.duration_s, released(s, index))).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut t = 0.0f64; // time classified so far
    let mut held_until = 0.0f64; // output of the finished batches held until
    for &(start, end, release) in &spans {
        if start > t {
            let blocked = (held_until.min(start) - t).max(0.0);
            m.blocked_s += blocked;
            m.starved_s += start - t - blocked;
            t = start;
        }
        if end > t {
            m.busy_s += end - t;
            t = end;
        }
        held_until = held_until.max(release);
    }
    if elapsed_s > t {
        let blocked = (held_until.min(elapsed_s) - t).max(0.0);
        m.blocked_s += blocked;
        m.idle_s += elapsed_s - t - blocked;
    }
    m.cycle_time_s = runs.iter().map(|s| s.duration_s).sum::<f64>() / runs.len() as f64;
    m.utilisation = ratio(m.busy_s, elapsed_s);
    let busy_total: f64 = runs.iter().map(|s| s.duration_s).sum();
    let ideal: f64 = runs.iter().map(|s| s.measures.ideal_s).sum();
    let planned = busy_total - m.planned_stop_s;
    let run = planned - m.down_s;
    let availability = ratio(run, planned);
    let performance = ratio(ideal, run);
    let quality = ratio(m.good, m.output);
    m.oee = Oee { availability, performance, quality, oee: availability * performance * quality };
    m.yield_frac = ratio(m.good, m.input);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MachineRef;

    fn stat(line: Line, stage: StageKind, batch: u32, start: f64, duration: f64, m: StageMeasures) -> StageStat {
        StageStat {
            machine: MachineRef { line, stage, machine_id: stage.machine_id(line), batch },
            ready_t_s: start,
            start_t_s: start,
            duration_s: duration,
            down_s: 0.0,
            unlimited_capacity: stage == StageKind::Aging,
            samples: 0,
            alarms: 0,
            compute_wall_s: 0.0,
            summary: Vec::new(),
            accepted: true,
            measures: m,
        }
    }

    fn cells(n: f64, good: f64, ideal: f64, kwh: f64) -> StageMeasures {
        StageMeasures {
            unit: "cells",
            input: n,
            output: n,
            good,
            ideal_s: ideal,
            energy_kwh: kwh,
            ..Default::default()
        }
    }

    /// A three-machine cell line, two batches, numbers small enough to check on paper:
    /// assembly 10 s, filling 30 s, formation 20 s per batch (flow shop: a batch starts at
    /// max(input ready, machine free)).
    ///
    /// ```text
    /// assembly   [0,10) b1  [10,20) b2
    /// filling    [10,40) b1 [40,70) b2
    /// formation  [40,60) b1 [70,90) b2        aging (unlimited) [60,70) b1, [90,100) b2
    /// ```
    #[test]
    fn two_batch_flow_shop_matches_the_hand_calculation() {
        use StageKind::*;
        let c = Line::Cell;
        let records = vec![
            stat(c, CellAssembly, 1, 0.0, 10.0, cells(4.0, 3.0, 8.0, 1.0)),
            stat(c, CellAssembly, 2, 10.0, 10.0, cells(4.0, 4.0, 8.0, 1.0)),
            stat(c, ElectrolyteFilling, 1, 10.0, 30.0, cells(3.0, 3.0, 30.0, 2.0)),
            stat(c, ElectrolyteFilling, 2, 40.0, 30.0, cells(4.0, 4.0, 30.0, 2.0)),
            stat(c, FormationCycling, 1, 40.0, 20.0, cells(3.0, 3.0, 20.0, 3.0)),
            stat(c, FormationCycling, 2, 70.0, 20.0, cells(4.0, 2.0, 20.0, 3.0)),
            stat(c, Aging, 1, 60.0, 10.0, cells(3.0, 3.0, 10.0, 0.5)),
            stat(c, Aging, 2, 90.0, 10.0, cells(2.0, 2.0, 10.0, 0.5)),
        ];
        let tally = CellTally { cells: 8, good_cells: 5, good_energy_wh: 50.0 };
        let k = compute(&records, &tally, 100.0);
        let m = |id: &str| k.machines.iter().find(|m| m.machine_id == id).unwrap();
        let asm = m("MC_Assembly_Cell");
        // Busy 20; batch 1 waits in [10,10) (filling takes it at once), batch 2's output waits
        // [20,40) for filling: blocked 20; then idle [40,100) = 60.
        assert_eq!((asm.busy_s, asm.blocked_s, asm.starved_s, asm.idle_s), (20.0, 20.0, 0.0, 60.0));
        // 8 cells × 1 s ideal... P = (8+8)/20 = 0.8; Q = 7/8.
        assert_eq!((asm.oee.availability, asm.oee.performance, asm.oee.quality), (1.0, 0.8, 0.875));
        assert!((asm.oee.oee - 0.7).abs() < 1e-12);
        let fill = m("MC_ElecFill_Cell");
        // Starved [0,10), busy [10,70), idle [70,100).
        assert_eq!((fill.busy_s, fill.blocked_s, fill.starved_s, fill.idle_s), (60.0, 0.0, 10.0, 30.0));
        let form = m("MC_Formation_Cell");
        // Starved [0,40) and [60,70), busy 40, idle [90,100).
        assert_eq!((form.busy_s, form.blocked_s, form.starved_s, form.idle_s), (40.0, 0.0, 50.0, 10.0));
        assert_eq!(form.yield_frac, 5.0 / 7.0);
        assert_eq!(fill.utilisation, 0.6);
        assert_eq!(k.bottleneck, "MC_ElecFill_Cell");
        assert_eq!(k.takt_s, 30.0);
        assert_eq!(k.steady_state_cells_per_h, 2.5 * 120.0);
        assert_eq!(k.batch_lead_times_s, vec![70.0, 90.0]);
        assert_eq!(k.lead_time_s, 80.0);
        assert_eq!(k.observed_batch_interval_s, 30.0);
        assert_eq!(k.throughput_cells_per_h, 5.0 * 36.0);
        assert_eq!(k.energy_kwh, 13.0);
        assert_eq!(k.cell_energy_kwh, 0.05);
        assert!((k.energy_per_cell_energy - 260.0).abs() < 1e-9);
        assert!((k.throughput_gwh_per_yr - 180.0 * 10.0 * 8760.0 * 1e-9).abs() < 1e-15);
        assert!((k.rolled_throughput_yield["Cell"] - (7.0 / 8.0) * 1.0 * (5.0 / 7.0) * 1.0).abs() < 1e-12);
    }
}
