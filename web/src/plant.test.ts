import { describe, expect, it } from "vitest";
import { LOG_LIMIT, MACHINES, flattenValues, initialPlant, reduce, type PlantState } from "./plant";

const snapshot = {
  type: "snapshot",
  run: {
    id: "run-1",
    status: "running",
    batches: 1,
    progress: 0,
    samples: 0,
    alarms: 0,
    machines: MACHINES.map((m) => ({ machine_id: m.id, line: m.line, stage: m.stage, state: "idle", batch: null, batches_done: 0, samples: 0, completed_at: null })),
  },
};

function play(events: object[], from: PlantState = initialPlant()): PlantState {
  return events.reduce<PlantState>((s, e) => reduce(s, e as never), from);
}

describe("plant event reducer", () => {
  it("lays out 7 anode, 7 cathode and 4 cell machines", () => {
    expect(MACHINES.filter((m) => m.line === "Anode")).toHaveLength(7);
    expect(MACHINES.filter((m) => m.line === "Cell").map((m) => m.id)).toEqual(["MC_Assembly_Cell", "MC_ElecFill_Cell", "MC_Formation_Cell", "MC_Aging_Cell"]);
  });

  it("takes the run, its status and every machine as idle from the snapshot", () => {
    const s = play([snapshot]);
    expect(s.runId).toBe("run-1");
    expect(s.status).toBe("running");
    expect(s.machines.TK_Mix_Anode.state).toBe("idle");
  });

  it("moves a machine idle → running → done with its batch and logs each change", () => {
    let s = play([snapshot, { type: "machine_on", machine_id: "TK_Mix_Anode", batch: 1, t_s: 0, timestamp: "2025-01-01T00:00:00Z", message: "TK_Mix_Anode on" }]);
    expect(s.machines.TK_Mix_Anode).toMatchObject({ state: "running", batch: 1 });
    s = play([{ type: "stage_finished", machine_id: "TK_Mix_Anode", batch: 1, accepted: true, progress: 0.05 }, { type: "machine_off", machine_id: "TK_Mix_Anode", batch: 1 }], s);
    expect(s.machines.TK_Mix_Anode).toMatchObject({ state: "done", batchesDone: 1 });
    expect(s.progress).toBe(0.05);
    expect(s.log.map((l) => l.text)[0]).toBe("TK_Mix_Anode on");
    expect(s.log[0].time).toBe("2025-01-01 00:00:00");
    expect(s.log).toHaveLength(3);
  });

  it("marks a machine in alarm while an alarm is raised and clears it after", () => {
    let s = play([snapshot, { type: "machine_on", machine_id: "MC_Coat_Anode", batch: 1 }]);
    s = reduce(s, { type: "alarm", batch: 1, alarm: { machine_id: "MC_Coat_Anode", code: "COAT_LOW_FLOW_LIMIT", severity: "Alarm", state: "Raised", message: "low flow", t_s: 5 } });
    expect(s.machines.MC_Coat_Anode.state).toBe("alarm");
    expect(s.alarms).toBe(1);
    expect(s.log.at(-1)).toMatchObject({ level: "alarm", text: "low flow" });
    s = reduce(s, { type: "alarm", batch: 1, alarm: { machine_id: "MC_Coat_Anode", code: "COAT_LOW_FLOW_LIMIT", severity: "Alarm", state: "Cleared", t_s: 6 } });
    expect(s.machines.MC_Coat_Anode.state).toBe("running");
    expect(s.machines.MC_Coat_Anode.alarmsRaised).toBe(1);
  });

  it("logs warnings without putting the machine in alarm, and a finished machine is done", () => {
    let s = play([snapshot, { type: "machine_on", machine_id: "TK_Mix_Anode", batch: 1 }]);
    s = reduce(s, { type: "alarm", batch: 1, alarm: { machine_id: "TK_Mix_Anode", code: "MIX_AIR_HIGH", severity: "Warning", state: "Raised", message: "air high" } });
    expect(s.machines.TK_Mix_Anode.state).toBe("running");
    expect(s.log.at(-1)).toMatchObject({ level: "alarm", text: "air high" });
    s = reduce(s, { type: "alarm", batch: 1, alarm: { machine_id: "TK_Mix_Anode", code: "MIX_HOT", severity: "Critical", state: "Raised" } });
    expect(s.machines.TK_Mix_Anode.state).toBe("alarm");
    s = reduce(s, { type: "machine_off", machine_id: "TK_Mix_Anode", batch: 1 });
    expect(s.machines.TK_Mix_Anode).toMatchObject({ state: "done", activeAlarms: [], alarmsRaised: 2 });
  });

  it("appends samples to the machine's series and shows its key value", () => {
    let s = play([snapshot]);
    s = reduce(s, { type: "sample", machine_id: "MC_Cal_Cathode", t_s: 10, values: { porosity_frac: { true: 0.3, meas: 0.31 }, line_load_n_m: 1e6 } });
    s = reduce(s, { type: "sample", machine_id: "MC_Cal_Cathode", t_s: 20, values: { porosity_frac: { true: 0.29, meas: 0.295 }, line_load_n_m: 1.1e6 } });
    expect(s.series.MC_Cal_Cathode.t).toEqual([10, 20]);
    expect(s.series.MC_Cal_Cathode.fields.porosity_frac).toEqual([0.31, 0.295]);
    expect(s.machines.MC_Cal_Cathode.key).toEqual({ field: "porosity_frac", value: 0.295 });
    expect(s.samples).toBe(2);
  });

  it("ignores events of unknown machines and unknown types", () => {
    const s = play([snapshot]);
    expect(reduce(s, { type: "sample", machine_id: "nope", t_s: 1, values: {} })).toBe(s);
    expect(reduce(s, { type: "something_new" })).toBe(s);
  });

  it("keeps the log bounded and records the end of the run", () => {
    let s = play([snapshot]);
    for (let i = 0; i < LOG_LIMIT + 20; i++) s = reduce(s, { type: "machine_on", machine_id: "TK_Mix_Anode", batch: 1 });
    s = reduce(s, { type: "run_state", status: "finished" });
    expect(s.log).toHaveLength(LOG_LIMIT);
    expect(s.status).toBe("finished");
    expect(s.progress).toBe(1);
    expect(s.log.at(-1)?.text).toBe("Run finished");
  });

  it("flattens nested typed records", () => {
    expect(flattenValues({ a: 1, b: { c: 2, d: { true: 3, meas: 4 } }, s: "x" })).toEqual({ a: 1, "b.c": 2, "b.d": 4 });
  });
});
