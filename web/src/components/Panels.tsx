import { useEffect, useRef } from "react";
import { downloads, type RunView, type StageResult } from "../api";
import { fmt } from "../format";
import { MACHINES, type LogLine } from "../plant";
import { COMPONENTS, checkSum, round, type Component, type Fractions, type Side } from "../recipe";

export type Recipe = Record<Side, Fractions>;

const COMPONENT_HELP: Record<Component, string> = {
  AM: "active material",
  CA: "conductive additive",
  PVDF: "binder",
  Solvent: "solvent",
};

/** Slurry volume fractions per side with a live sum. */
export function RecipeForm({ recipe, onChange }: { recipe: Recipe; onChange: (side: Side, c: Component, v: number) => void }) {
  return (
    <div className="recipe">
      {(["anode", "cathode"] as Side[]).map((side) => {
        const check = checkSum(side, recipe[side]);
        return (
          <fieldset key={side} className={`recipe-side${check.ok ? "" : " invalid"}`} data-side={side}>
            <legend>{side === "anode" ? "Anode" : "Cathode"} slurry</legend>
            <div className="recipe-inputs">
              {COMPONENTS.map((c) => (
                <label key={c} className="recipe-input">
                  <span title={COMPONENT_HELP[c]}>{c}</span>
                  <input
                    type="number"
                    step="0.001"
                    min={0}
                    max={1}
                    name={`${side}-${c}`}
                    aria-label={`${side} ${c} (${COMPONENT_HELP[c]}) volume fraction`}
                    value={Number.isFinite(recipe[side][c]) ? recipe[side][c] : ""}
                    onChange={(e) => onChange(side, c, e.target.value === "" ? NaN : Number(e.target.value))}
                  />
                </label>
              ))}
              <output className={`sum ${check.ok ? "ok" : "bad"}`} aria-label={`${side} sum`}>
                Σ {Number.isFinite(check.sum) ? round(check.sum, 4) : "—"}
              </output>
            </div>
            {!check.ok && (
              <p className="error-text recipe-error" role="alert">
                {check.message}
              </p>
            )}
          </fieldset>
        );
      })}
      <p className="muted small">Volume fractions of the mixing tank; they set the dry mass fractions and the solids content of each line's mixer.</p>
    </div>
  );
}

/** The live status messages, newest at the bottom. */
export function EventLog({ log }: { log: LogLine[] }) {
  const box = useRef<HTMLOListElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [log]);
  return (
    <ol ref={box} className="log" role="log" aria-live="polite" aria-label="Live stage updates" tabIndex={0} data-lines={log.length} data-total={log.at(-1)?.seq ?? 0}>
      {log.length === 0 && <li className="muted">No events yet. Start a run to follow the plant.</li>}
      {log.map((l) => (
        <li key={l.seq} className={`log-${l.level}`}>
          {l.time && <time>[{l.time}]</time>} {l.text}
        </li>
      ))}
    </ol>
  );
}

const title = (id: string) => {
  const m = MACHINES.find((d) => d.id === id);
  return m ? (m.title.toLowerCase().startsWith(m.line.toLowerCase()) ? m.title : `${m.line} ${m.title.toLowerCase()}`) : id;
};

function cellFigures(run: RunView) {
  const summary = (id: string) => (run.results ?? []).filter((r) => r.machine_id === id);
  const mean = (rows: StageResult[], key: string) => {
    const v = rows.map((r) => r.summary[key]).filter((x) => typeof x === "number" && Number.isFinite(x));
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const formation = summary("MC_Formation_Cell");
  const extra = run.cells as Record<string, unknown>;
  const num = (k: string) => (typeof extra[k] === "number" ? (extra[k] as number) : null);
  const grades = run.cells.grades ?? {};
  const rejected = Object.entries(grades)
    .filter(([g]) => /reject|fail|scrap/i.test(g))
    .reduce((a, [, n]) => a + n, 0);
  return {
    count: run.cells.count,
    passed: run.cells.count - rejected,
    rejected,
    capacity: num("capacity_mean_ah") ?? mean(formation, "Q_dis mean Ah"),
    energy: num("energy_mean_wh"),
    fce: num("fce_mean_frac") ?? mean(formation, "FCE mean"),
    grades,
  };
}

const order = (id: string) => {
  const i = MACHINES.findIndex((d) => d.id === id);
  return i < 0 ? MACHINES.length : i;
};
/** Anode line, cathode line, cell line, each in flow order; then by batch. */
const byPlantOrder = (a: StageResult, b: StageResult) => order(a.machine_id) - order(b.machine_id) || a.batch - b.batch;

/** Final values per stage, cell results and downloads of one run. */
export function Results({ run }: { run: RunView | null }) {
  if (!run) return <p className="muted">Results appear here when a run has finished.</p>;
  const finished = run.status === "finished";
  const c = cellFigures(run);
  return (
    <div className="results">
      <div className="downloads" role="group" aria-label="Downloads">
        {(["anode", "cathode", "cell", "all"] as const).map((scope) =>
          finished ? (
            <a key={scope} className="button" href={downloads.run(run.id, scope)} download data-scope={scope}>
              ⬇ {scope === "all" ? "All files" : scope[0].toUpperCase() + scope.slice(1)}
            </a>
          ) : (
            <button key={scope} type="button" disabled title="available once the run has finished">
              ⬇ {scope === "all" ? "All files" : scope[0].toUpperCase() + scope.slice(1)}
            </button>
          ),
        )}
      </div>
      <div className="cells" aria-label="Cell results">
        <div className="stat"><span>cells</span><strong>{c.count}</strong></div>
        <div className="stat"><span>passed</span><strong className="ok">{c.passed}</strong></div>
        <div className="stat"><span>rejected</span><strong className={c.rejected ? "bad" : ""}>{c.rejected}</strong></div>
        <div className="stat"><span>capacity (mean)</span><strong>{fmt(c.capacity)} <small>Ah</small></strong></div>
        <div className="stat" title={c.energy === null ? "not reported by the server for this run" : undefined}><span>energy (mean)</span><strong>{fmt(c.energy)} <small>Wh</small></strong></div>
        <div className="stat"><span>first-cycle efficiency</span><strong>{c.fce === null ? "—" : `${fmt(c.fce * 100)} %`}</strong></div>
        <div className="stat grades"><span>grades</span><strong>{Object.entries(c.grades).map(([g, n]) => `${g}: ${n}`).join(" · ") || "—"}</strong></div>
      </div>
      {(run.results ?? []).length > 0 && (
        <div className="table-wrap" tabIndex={0} aria-label="Final values per stage">
          <table className="stage-results">
            <thead>
              <tr><th scope="col">Machine</th><th scope="col">Batch</th><th scope="col">Pass</th><th scope="col">Duration</th><th scope="col">Final values</th></tr>
            </thead>
            <tbody>
              {[...(run.results ?? [])].sort(byPlantOrder).map((r) => (
                <tr key={`${r.machine_id}-${r.batch}`}>
                  <th scope="row">{title(r.machine_id)}</th>
                  <td>{r.batch}</td>
                  <td className={r.accepted ? "ok" : "bad"}>{r.accepted ? "✓ pass" : "✗ fail"}</td>
                  <td>{fmt(r.duration_s / 3600)} h</td>
                  <td className="summary">{Object.entries(r.summary).map(([k, v]) => (<span key={k}>{k} <strong>{fmt(v)}</strong></span>))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/** Runs the server knows, newest first. */
export function History({ runs, current, onOpen }: { runs: RunView[]; current: string | null; onOpen: (id: string) => void }) {
  if (runs.length === 0) return <p className="muted">No runs yet.</p>;
  return (
    <div className="table-wrap">
      <table className="history">
        <thead>
          <tr><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Seed</th><th scope="col">Batches</th><th scope="col">Speed</th><th scope="col">Cells</th><th scope="col"><span className="sr-only">Open</span></th></tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr key={r.id} data-run={r.id} className={r.id === current ? "current" : ""}>
              <th scope="row"><code>{r.id}</code></th>
              <td><span className={`badge badge-run-${r.status}`}>{r.status}</span></td>
              <td>{r.created_at.replace("T", " ").slice(0, 19)}</td>
              <td>{r.seed}</td>
              <td>{r.batches}</td>
              <td>{r.speed === "max" ? "full" : `×${r.speed}`}</td>
              <td>{r.cells?.count ?? 0}</td>
              <td><button type="button" onClick={() => onOpen(r.id)} aria-label={`Open run ${r.id}`}>Open</button></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
