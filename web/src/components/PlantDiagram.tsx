import type React from "react";
import { ROWS, type MachineDef, type PlantState } from "../plant";
import { fieldValue, fmt } from "../format";

const STATE_TEXT = { idle: "idle", running: "running", done: "done", alarm: "alarm" } as const;

/** The first final value of a machine's last batch, shown when no live value is there. */
export type Finals = Record<string, [string, number]>;

function Node({ def, index, plant, finals, selected, onSelect }: { def: MachineDef; index: number; plant: PlantState; finals: Finals; selected: boolean; onSelect: (id: string) => void }) {
  const final = finals[def.id];
  const m = plant.machines[def.id];
  const key = m.key && fieldValue(m.key.field, m.key.value);
  const share = plant.batches > 0 ? Math.min(1, m.batchesDone / plant.batches) : 0;
  return (
    // The cell row runs right to left beneath the rewinders (a serpentine flow).
    <li className="node-wrap" style={{ "--col": def.line === "Cell" ? 7 - index : index + 1 } as React.CSSProperties}>
      <button
        type="button"
        className={`node state-${m.state}${selected ? " selected" : ""}`}
        data-machine={def.id}
        data-state={m.state}
        aria-pressed={selected}
        aria-label={`${def.title} ${def.line}: ${STATE_TEXT[m.state]}${m.batch ? `, batch ${m.batch}` : ""}${key ? `, ${key.label} ${key.value} ${key.unit}` : ""}`}
        onClick={() => onSelect(def.id)}
      >
        <span className="node-title">{def.title}</span>
        <span className="node-id">{def.id}</span>
        <span className="node-key" title={m.key?.field}>
          {key ? (
            <>
              <span className="k-label">{key.label}</span> <strong>{key.value}</strong> <span className="k-unit">{key.unit}</span>
            </>
          ) : final ? (
            <span className="node-final">
              {final[0]} <strong>{fmt(final[1])}</strong>
            </span>
          ) : (
            <span className="muted">no data yet</span>
          )}
        </span>
        <span className="node-foot">
          <span className={`badge badge-${m.state}`}>{STATE_TEXT[m.state]}</span>
          <span>{m.batch ? `batch ${m.batch}` : ""}</span>
          {m.alarmsRaised > 0 && (
            <span className="node-alarms" title={`${m.alarmsRaised} alarm events (warnings included)`}>
              ▲{m.alarmsRaised}
            </span>
          )}
          <span title="batches done">
            {m.batchesDone}/{plant.batches}
          </span>
        </span>
        <span className="node-bar" aria-hidden="true">
          <span style={{ width: `${share * 100}%` }} />
        </span>
      </button>
    </li>
  );
}

/** The factory: anode row, cathode row, and the cell row they meet at. */
export function PlantDiagram({ plant, finals, selected, onSelect }: { plant: PlantState; finals: Finals; selected: string | null; onSelect: (id: string) => void }) {
  const row = (name: "anode" | "cathode" | "cell", title: string) => (
    <div className={`row row-${name}`} role="group" aria-label={`${title} line`}>
      <h3 className="row-title">{title}</h3>
      <ol className="row-nodes">
        {ROWS[name].map((def, i) => (
          <Node key={def.id} def={def} index={i} plant={plant} finals={finals} selected={selected === def.id} onSelect={onSelect} />
        ))}
      </ol>
    </div>
  );
  return (
    <div className="flow">
      {row("anode", "Anode")}
      {row("cathode", "Cathode")}
      {row("cell", "Cell")}
    </div>
  );
}
