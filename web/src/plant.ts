// The plant view's state: the factory's machines in their rows, and the reducer that turns
// the run's live events (WS /api/v1/runs/{id}/events) into what the diagram, the event log and
// the live chart show.
//
//   anode   Mix → Coat → Dry → Cal → Slit → Inspect → Rewind ─┐
//                                                               ├→ Assembly → Fill → Formation → Aging
//   cathode Mix → Coat → Dry → Cal → Slit → Inspect → Rewind ─┘

import type { JsonObject, MachineProgress, RunStatus, RunView } from "./api";

export interface MachineDef {
  id: string;
  line: "Anode" | "Cathode" | "Cell";
  stage: string;
  title: string;
  /** Configuration section of its parameters. */
  section: string;
  /** Sample fields shown as the machine's live key value, first found wins. */
  keys: string[];
  /** Final-result summary entry shown once the machine is done. */
  finalKey: string;
}

type Row = [prefix: string, stage: string, title: string, section: string, keys: string[], finalKey: string];

const ELECTRODE: Row[] = [
  ["TK_Mix", "mixing", "Mixing", "mixing", ["viscosity_pa_s", "solids_mass_frac"], "viscosity 10/s 25 °C Pa·s"],
  ["MC_Coat", "coating", "Coating", "coating", ["areal_mass_kg_m2", "wet_thickness_m"], "areal mass kg/m2"],
  ["MC_Dry", "drying", "Drying", "drying", ["residual_solvent_frac", "web_temperature_exit_degc"], "residual solvent kg/kg"],
  ["MC_Cal", "calendaring", "Calendering", "calendaring", ["porosity_frac", "line_load_n_m"], "porosity"],
  ["MC_Slit", "slitting", "Slitting", "slitting", ["burr_max_m", "web_tension_n"], "max burr um"],
  ["MC_Inspect", "inspection", "Inspection", "inspection", ["burr_max_m", "position_m"], "accepted m per lane"],
  ["MC_Rewind", "rewinding", "Rewinding", "rewinding", ["dew_point_degc"], "reel length m"],
];
const CELL: Row[] = [
  ["MC_Assembly", "cell_assembly", "Cell assembly", "assembly", ["cells_completed", "cells_rejected"], "cells"],
  ["MC_ElecFill", "electrolyte_filling", "Filling", "filling", ["mean_wetting_frac", "cells_filled"], "wetting"],
  ["MC_Formation", "formation_cycling", "Formation", "formation", ["voltage_mean_v", "sei_progress_mean_frac"], "Q_dis mean Ah"],
  ["MC_Aging", "aging", "Aging", "aging", ["ocv_mean_v", "cells_flagged"], "grade A"],
];

function defs(line: MachineDef["line"], rows: Row[]): MachineDef[] {
  const group = line.toLowerCase();
  return rows.map(([prefix, stage, title, section, keys, finalKey]) => ({
    id: `${prefix}_${line}`,
    line,
    stage,
    title,
    section: `${group}.${section}`,
    keys,
    finalKey,
  }));
}

export const ROWS = {
  anode: defs("Anode", ELECTRODE),
  cathode: defs("Cathode", ELECTRODE),
  cell: defs("Cell", CELL),
};
export const MACHINES: MachineDef[] = [...ROWS.anode, ...ROWS.cathode, ...ROWS.cell];
export const machineById = (id: string) => MACHINES.find((m) => m.id === id);

export type MachineState = "idle" | "running" | "done" | "alarm";

export interface MachineView {
  state: MachineState;
  batch: number | null;
  batchesDone: number;
  /** Live key value: the field and its latest value. */
  key?: { field: string; value: number };
  /** Codes of raised alarms of severity Alarm or Critical (warnings are only logged). */
  activeAlarms: string[];
  /** Alarm events raised on this machine in this run, warnings included. */
  alarmsRaised: number;
}

export interface LogLine {
  seq: number;
  time: string;
  text: string;
  level: "info" | "alarm" | "error";
}

/** A machine's live series: sample time [s] and every numeric field. */
export interface Series {
  t: number[];
  fields: Record<string, number[]>;
}

export interface PlantState {
  runId: string | null;
  status: RunStatus | "none";
  batches: number;
  progress: number;
  machines: Record<string, MachineView>;
  log: LogLine[];
  series: Record<string, Series>;
  samples: number;
  alarms: number;
  seq: number;
  skipped: number;
}

export const LOG_LIMIT = 500;
export const SERIES_LIMIT = 5000;

function freshMachines(): Record<string, MachineView> {
  return Object.fromEntries(MACHINES.map((m) => [m.id, { state: "idle", batch: null, batchesDone: 0, activeAlarms: [], alarmsRaised: 0 }]));
}

export function initialPlant(): PlantState {
  return { runId: null, status: "none", batches: 1, progress: 0, machines: freshMachines(), log: [], series: {}, samples: 0, alarms: 0, seq: 0, skipped: 0 };
}

/** Numbers of a sample's typed record, flattened (`{"true", "meas"}` signals → meas). */
export function flattenValues(v: unknown, prefix = "", out: Record<string, number> = {}): Record<string, number> {
  if (typeof v === "number" && Number.isFinite(v)) out[prefix] = v;
  else if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if ("true" in o && "meas" in o) {
      const x = typeof o.meas === "number" ? o.meas : o.true;
      if (typeof x === "number") out[prefix] = x;
    } else {
      for (const [k, x] of Object.entries(o)) flattenValues(x, prefix ? `${prefix}.${k}` : k, out);
    }
  }
  return out;
}

function fromProgress(p: MachineProgress, batches: number, prev?: MachineView): MachineView {
  const state: MachineState =
    p.state === "on" ? "running" : p.batches_done >= batches && batches > 0 ? "done" : p.batches_done > 0 ? "done" : "idle";
  return { state: prev?.activeAlarms.length && state === "running" ? "alarm" : state, batch: p.batch, batchesDone: p.batches_done, key: prev?.key, activeAlarms: prev?.activeAlarms ?? [], alarmsRaised: prev?.alarmsRaised ?? 0 };
}

function withLog(s: PlantState, text: string, level: LogLine["level"], time = ""): PlantState {
  const seq = s.seq + 1;
  const log = [...s.log, { seq, time, text, level }];
  return { ...s, seq, log: log.length > LOG_LIMIT ? log.slice(log.length - LOG_LIMIT) : log };
}

function setMachine(s: PlantState, id: unknown, f: (m: MachineView) => MachineView): PlantState {
  if (typeof id !== "string" || !s.machines[id]) return s;
  return { ...s, machines: { ...s.machines, [id]: f(s.machines[id]) } };
}

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" ? v : null);

/** Applies one live event (or a snapshot of the run) to the plant view. */
export function reduce(s: PlantState, e: JsonObject): PlantState {
  const time = str(e.timestamp).replace("T", " ").slice(0, 19);
  const message = str(e.message);
  switch (e.type) {
    case "snapshot": {
      const run = e.run as unknown as RunView;
      const machines = freshMachines();
      for (const p of run.machines ?? []) if (machines[p.machine_id]) machines[p.machine_id] = fromProgress(p, run.batches, s.runId === run.id ? s.machines[p.machine_id] : undefined);
      const same = s.runId === run.id;
      return {
        ...(same ? s : initialPlant()),
        runId: run.id,
        status: run.status,
        batches: run.batches,
        progress: run.progress,
        samples: run.samples,
        alarms: run.alarms,
        machines,
        seq: s.seq,
      };
    }
    case "run_state": {
      const status = str(e.status) as RunStatus;
      let next: PlantState = { ...s, status };
      if (status === "finished") next = { ...next, progress: 1 };
      const err = str(e.error);
      return withLog(next, `Run ${status}${err ? ": " + err : ""}`, status === "failed" ? "error" : "info");
    }
    case "machine_on": {
      const next = setMachine(s, e.machine_id, (m) => ({ ...m, state: m.activeAlarms.length ? "alarm" : "running", batch: num(e.batch) }));
      return withLog(next, message || `${str(e.machine_id)} on (batch ${num(e.batch)})`, "info", time);
    }
    case "machine_off": {
      // A stage's alarms end with its batch: the machine is done, its alarm count stays.
      const next = setMachine(s, e.machine_id, (m) => ({ ...m, state: "done", activeAlarms: [] }));
      return withLog(next, message || `${str(e.machine_id)} off`, "info", time);
    }
    case "stage_finished": {
      let next = setMachine(s, e.machine_id, (m) => ({ ...m, batchesDone: m.batchesDone + 1 }));
      if (typeof e.progress === "number") next = { ...next, progress: e.progress };
      return withLog(next, message || `${str(e.machine_id)} finished batch ${num(e.batch)}`, e.accepted === false ? "alarm" : "info", time);
    }
    case "sample": {
      const id = str(e.machine_id);
      const def = machineById(id);
      if (!def) return s;
      const values = flattenValues(e.values);
      const t = num(e.t_s) ?? 0;
      const prev = s.series[id] ?? { t: [], fields: {} };
      const cut = prev.t.length >= SERIES_LIMIT ? 1 : 0;
      const series: Series = { t: [...prev.t.slice(cut), t], fields: {} };
      const names = new Set([...Object.keys(prev.fields), ...Object.keys(values)]);
      for (const f of names) {
        const old = prev.fields[f] ?? new Array(prev.t.length).fill(NaN);
        series.fields[f] = [...old.slice(cut), values[f] ?? NaN];
      }
      const keyField = def.keys.find((k) => k in values) ?? Object.keys(values).find((k) => k !== "t_s" && k !== "stage_time_s");
      const next = setMachine({ ...s, samples: s.samples + 1, series: { ...s.series, [id]: series } }, id, (m) => ({
        ...m,
        key: keyField ? { field: keyField, value: values[keyField] } : m.key,
      }));
      return next;
    }
    case "alarm": {
      const a = (e.alarm ?? {}) as JsonObject;
      const id = str(a.machine_id);
      const raised = str(a.state).toLowerCase() !== "cleared";
      const code = str(a.code);
      const severe = /^(alarm|critical)$/i.test(str(a.severity));
      const next = setMachine({ ...s, alarms: s.alarms + (raised ? 1 : 0) }, id, (m) => {
        const others = m.activeAlarms.filter((c) => c !== code);
        const activeAlarms = raised && severe ? [...others, code] : others;
        const alarmsRaised = m.alarmsRaised + (raised ? 1 : 0);
        const state: MachineState = activeAlarms.length ? "alarm" : m.state === "alarm" ? (m.batchesDone > 0 ? "done" : "running") : m.state;
        return { ...m, activeAlarms, alarmsRaised, state };
      });
      const atime = num(a.t_s) !== null ? time : "";
      return withLog(next, message || str(a.message) || `${id} ${code} ${raised ? "raised" : "cleared"}`, raised ? "alarm" : "info", atime);
    }
    case "skipped":
      return { ...s, skipped: s.skipped + (num(e.events) ?? 0) };
    case "run_started":
    case "batch_queued":
    case "batch_finished":
    case "cell_results":
    case "run_finished":
      return message ? withLog(s, message, "info", time) : s;
    default:
      return s;
  }
}
