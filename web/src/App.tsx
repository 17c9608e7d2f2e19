import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { api, ApiError, watchRun, type Json, type JsonObject, type RunView, type SamplesResponse } from "./api";
import { EventLog, History, RecipeForm, Results, type Recipe } from "./components/Panels";
import { LiveChart } from "./components/LiveChart";
import { ParamForm } from "./components/ParamForm";
import { PlantDiagram, type Finals } from "./components/PlantDiagram";
import { fmt } from "./format";
import { initialPlant, machineById, reduce, type PlantState } from "./plant";
import { checkSum, densities, fromMixing, toMixing, type Side } from "./recipe";
import { fieldsFor, getPath, mergeObjects, setPath, unsetPath } from "./schema";

type Notice = { level: "error" | "info"; text: string } | null;

const SPEEDS: Array<{ value: string; label: string }> = [
  { value: "max", label: "Full speed" },
  { value: "60", label: "×60 (1 min/s)" },
  { value: "600", label: "×600 (10 min/s)" },
  { value: "3600", label: "×3600 (1 h/s)" },
  { value: "custom", label: "Custom…" },
];

// "interrupted": the server stopped while the run was in progress (it never resumes)
const TERMINAL = new Set(["finished", "failed", "cancelled", "interrupted"]);

function plantReducer(s: PlantState, a: { reset: true } | { event: JsonObject }): PlantState {
  return "reset" in a ? initialPlant() : reduce(s, a.event);
}

export function App() {
  const [defaults, setDefaults] = useState<JsonObject | null>(null);
  const [schema, setSchema] = useState<JsonObject | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [recipe, setRecipe] = useState<Recipe | null>(null);
  const [recipeTouched, setRecipeTouched] = useState(false);
  const [overrides, setOverrides] = useState<JsonObject>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [batches, setBatches] = useState("1");
  const [seed, setSeed] = useState("42");
  const [speed, setSpeed] = useState("600");
  const [customSpeed, setCustomSpeed] = useState("36000");
  const [plant, dispatch] = useReducer(plantReducer, undefined, initialPlant);
  const [run, setRun] = useState<RunView | null>(null);
  const [history, setHistory] = useState<RunView[]>([]);
  const [selected, setSelected] = useState<string | null>("TK_Mix_Anode");
  const [chartField, setChartField] = useState<string | null>(null);
  const [stored, setStored] = useState<SamplesResponse | null>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [confirmReset, setConfirmReset] = useState(false);
  const [busy, setBusy] = useState(false);
  const closeSocket = useRef<(() => void) | null>(null);
  const panelHeading = useRef<HTMLHeadingElement>(null);
  const currentId = plant.runId;

  const refreshHistory = useCallback(() => api.runs().then(setHistory).catch(() => undefined), []);

  /** Follows a run: its live events, and its full view (results) while and after it runs. */
  const attach = useCallback(
    (id: string) => {
      closeSocket.current?.();
      setStored(null);
      const refresh = () =>
        api
          .run(id)
          .then((view) => {
            setRun(view);
            return view;
          })
          .catch(() => null);
      closeSocket.current = watchRun(
        id,
        (event) => {
          dispatch({ event });
          if (event.type === "run_state" && TERMINAL.has(String(event.status))) {
            void refresh();
            void refreshHistory();
          }
        },
        () => {
          void refresh();
          void refreshHistory();
        },
      );
      void refresh();
    },
    [refreshHistory],
  );

  // Load the defaults, the schema and the history; follow a run that is still going.
  useEffect(() => {
    Promise.all([api.defaultConfig(), api.schema(), api.runs()])
      .then(([d, s, runs]) => {
        setDefaults(d);
        setSchema(s);
        setHistory(runs);
        const side = (name: Side) =>
          fromMixing(getPath(d, `${name}.mixing`) as JsonObject, densities(getPath(d, `${name}.recipe`) as JsonObject, name));
        setRecipe({ anode: side("anode"), cathode: side("cathode") });
        const live = runs.find((r) => !TERMINAL.has(r.status)) ?? runs[0];
        if (live) attach(live.id);
      })
      .catch((e: unknown) => setLoadError(e instanceof Error ? e.message : String(e)));
    return () => closeSocket.current?.();
  }, [attach]);

  // While a run is going, poll its view for per-machine progress and results.
  useEffect(() => {
    if (!currentId || TERMINAL.has(plant.status) || plant.status === "none") return;
    const timer = setInterval(() => void api.run(currentId).then(setRun).catch(() => undefined), 2000);
    return () => clearInterval(timer);
  }, [currentId, plant.status]);

  const recipeChecks = useMemo(
    () => (recipe ? (["anode", "cathode"] as Side[]).map((s) => checkSum(s, recipe[s])) : []),
    [recipe],
  );
  const recipeOk = recipeChecks.every((c) => c.ok);

  /** Everything the user changed, as a configuration override object. */
  const allOverrides = useMemo(() => {
    if (!recipe || !defaults || !recipeTouched || !recipeOk) return overrides;
    const mixing = (side: Side) => toMixing(recipe[side], densities(getPath(defaults, `${side}.recipe`) as JsonObject, side));
    return mergeObjects({ anode: { mixing: mixing("anode") }, cathode: { mixing: mixing("cathode") } }, overrides);
  }, [recipe, defaults, recipeTouched, recipeOk, overrides]);

  // Inline validation by the server, shortly after each change.
  useEffect(() => {
    if (!defaults) return;
    const timer = setTimeout(() => {
      api
        .validate(allOverrides)
        .then((v) => setErrors(Object.fromEntries(v.errors.map((e) => [e.field ?? "", e.message]))))
        .catch((e: unknown) => setNotice({ level: "error", text: `Validation failed: ${e instanceof Error ? e.message : String(e)}` }));
    }, 250);
    return () => clearTimeout(timer);
  }, [allOverrides, defaults]);

  const plantFields = useMemo(
    () =>
      schema && defaults
        ? fieldsFor(schema, defaults, "plant").filter((f) => ["process_variability", "sensor_noise", "start"].includes(f.name))
        : [],
    [schema, defaults],
  );
  const machine = selected ? machineById(selected) : undefined;
  const fields = useMemo(
    () => (schema && defaults && machine ? fieldsFor(schema, defaults, machine.section) : []),
    [schema, defaults, machine],
  );

  // A finished run's chart shows the stored series of the selected machine.
  useEffect(() => {
    setStored(null);
    if (!currentId || !selected || plant.status !== "finished") return;
    let live = true;
    api
      .samples(currentId, selected)
      .then((s) => live && setStored(s))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [currentId, selected, plant.status]);

  const chart = useMemo(() => {
    if (!selected) return null;
    if (stored && stored.points.length > 0) {
      const names = stored.fields.filter((f) => f !== "t_s" && f !== "stage_time_s" && f !== "batch");
      const t = stored.points.map((p) => p.t_s);
      const fieldsData = Object.fromEntries(names.map((f) => [f, stored.points.map((p) => p[f] ?? NaN)]));
      return { t, fields: fieldsData, source: "stored" as const };
    }
    const s = plant.series[selected];
    if (!s) return null;
    const fieldsData = Object.fromEntries(Object.entries(s.fields).filter(([f]) => f !== "t_s" && f !== "stage_time_s"));
    return { t: s.t, fields: fieldsData, source: "live" as const };
  }, [selected, stored, plant.series]);

  const chartFields = chart ? Object.keys(chart.fields) : [];
  const keyField = machine?.keys.find((k) => chartFields.includes(k)) ?? chartFields[0];
  const shownField = chartField && chartFields.includes(chartField) ? chartField : keyField;

  const select = (id: string) => {
    setSelected(id);
    setChartField(null);
    requestAnimationFrame(() => panelHeading.current?.focus());
  };

  const changeParam = (path: string, v: Json | undefined) =>
    setOverrides((o) => (v === undefined ? unsetPath(o, path) : setPath(o, path, v)));

  const running = plant.status === "running" || plant.status === "queued";
  const errorList = Object.entries(errors);

  const start = async () => {
    setNotice(null);
    if (!recipeOk) {
      setNotice({ level: "error", text: `Start refused: ${recipeChecks.filter((c) => !c.ok).map((c) => c.message).join("; ")}.` });
      return;
    }
    if (errorList.length > 0) {
      setNotice({ level: "error", text: `Start refused: ${errorList.length} parameter${errorList.length > 1 ? "s are" : " is"} invalid (${errorList.map(([f]) => f).join(", ")}).` });
      return;
    }
    const speedValue = speed === "max" ? "max" : Number(speed === "custom" ? customSpeed : speed);
    if (speedValue !== "max" && !(speedValue > 0)) {
      setNotice({ level: "error", text: `Start refused: speed = ${customSpeed} must be a number above 0 (simulated seconds per second).` });
      return;
    }
    setBusy(true);
    try {
      const created = await api.startRun({
        config: Object.keys(allOverrides).length ? allOverrides : undefined,
        batches: Number(batches),
        seed: Number(seed),
        speed: speedValue,
      });
      dispatch({ reset: true });
      setRun(null);
      attach(created.id);
      setNotice({ level: "info", text: `Run ${created.id} started.` });
      void refreshHistory();
    } catch (e) {
      if (e instanceof ApiError && e.field) setErrors((old) => ({ ...old, [e.field!]: e.message }));
      setNotice({ level: "error", text: `Start refused by the server: ${e instanceof Error ? e.message : String(e)}` });
    } finally {
      setBusy(false);
    }
  };

  const cancel = async () => {
    if (!currentId) return;
    try {
      await api.cancel(currentId);
      setNotice({ level: "info", text: `Cancel requested for ${currentId}.` });
    } catch (e) {
      setNotice({ level: "error", text: e instanceof Error ? e.message : String(e) });
    }
  };

  const reset = async () => {
    if (!confirmReset) {
      setConfirmReset(true);
      return;
    }
    setConfirmReset(false);
    setBusy(true);
    try {
      closeSocket.current?.();
      await api.reset();
      dispatch({ reset: true });
      setRun(null);
      setStored(null);
      setNotice({ level: "info", text: "The plant was reset: runs cancelled and results cleared." });
      void refreshHistory();
    } catch (e) {
      setNotice({ level: "error", text: e instanceof Error ? e.message : String(e) });
    } finally {
      setBusy(false);
    }
  };

  if (loadError) {
    return (
      <main className="fatal" role="alert">
        <h1>cellfab</h1>
        <p>The server did not answer: {loadError}</p>
        <button type="button" onClick={() => location.reload()}>Retry</button>
      </main>
    );
  }

  const m = selected ? plant.machines[selected] : undefined;
  const finals: Finals = {};
  if (run && run.id === currentId) {
    for (const r of run.results ?? []) {
      const preferred = machineById(r.machine_id)?.finalKey;
      const entry = preferred && preferred in r.summary ? ([preferred, r.summary[preferred]] as [string, number]) : Object.entries(r.summary)[0];
      if (entry) finals[r.machine_id] = entry;
    }
  }
  return (
    <>
      <a className="skip" href="#plant">Skip to the plant</a>
      <header className="top">
        <div className="brand">
          <span className="logo" aria-hidden="true">▮</span>
          <div>
            <h1>cellfab</h1>
            <p className="muted small">lithium-ion cell factory · digital twin</p>
          </div>
        </div>
        <form className="controls" aria-label="Run controls" onSubmit={(e) => { e.preventDefault(); void start(); }}>
          <label>
            Batches
            <input type="number" min={1} max={64} value={batches} onChange={(e) => setBatches(e.target.value)} name="batches" />
          </label>
          <label>
            Seed
            <input type="number" min={0} value={seed} onChange={(e) => setSeed(e.target.value)} name="seed" />
          </label>
          <label>
            Speed
            <select value={speed} onChange={(e) => setSpeed(e.target.value)} name="speed">
              {SPEEDS.map((s) => <option key={s.value} value={s.value}>{s.label}</option>)}
            </select>
          </label>
          {speed === "custom" && (
            <label>
              ×
              <input type="number" min={0} value={customSpeed} onChange={(e) => setCustomSpeed(e.target.value)} name="custom-speed" aria-label="Custom speed (simulated seconds per second)" />
            </label>
          )}
          <div className="buttons">
            <button
              type="submit"
              className={`primary${!recipeOk || errorList.length > 0 ? " blocked" : ""}`}
              disabled={busy || !defaults}
              title={!recipeOk || errorList.length > 0 ? "fix the recipe and the parameters marked in red first" : "start a run"}
            >
              ▶ Start
            </button>
            <button type="button" onClick={() => void cancel()} disabled={!running}>■ Cancel</button>
            <button type="button" className={confirmReset ? "danger" : ""} onClick={() => void reset()} onBlur={() => setConfirmReset(false)} disabled={busy}>
              {confirmReset ? "Confirm reset?" : "↺ Reset"}
            </button>
          </div>
        </form>
        <div className="run-status" aria-live="polite">
          <span className={`badge badge-run-${plant.status}`} data-status={plant.status}>{plant.status === "none" ? "no run" : plant.status}</span>
          <div className="progress" role="progressbar" aria-label="Run progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(plant.progress * 100)}>
            <span style={{ width: `${plant.progress * 100}%` }} />
          </div>
          <span className="small muted">{Math.round(plant.progress * 100)} % · {plant.samples} samples · {plant.alarms} alarms</span>
        </div>
      </header>
      {notice && (
        <div className={`notice notice-${notice.level}`} role={notice.level === "error" ? "alert" : "status"}>
          {notice.text}
          <button type="button" className="link" onClick={() => setNotice(null)} aria-label="Dismiss message">✕</button>
        </div>
      )}
      <main className="layout">
        <section className="card plant" id="plant" aria-labelledby="plant-h">
          <div className="card-head">
            <h2 id="plant-h">Plant</h2>
            <span className="muted small">{currentId ? <code>{currentId}</code> : "idle — set the recipe and parameters, then Start"}</span>
          </div>
          <PlantDiagram plant={plant} finals={finals} selected={selected} onSelect={select} />
          <p className="legend small muted" aria-hidden="true">
            <span className="badge badge-idle">idle</span> <span className="badge badge-running">running</span> <span className="badge badge-done">done</span> <span className="badge badge-alarm">alarm</span> · click a machine for its chart and parameters
          </p>
        </section>

        <aside className="side">
          <section className="card" aria-labelledby="recipe-h">
            <h2 id="recipe-h">Recipe</h2>
            {recipe ? (
              <RecipeForm
                recipe={recipe}
                onChange={(side, c, v) => {
                  setRecipeTouched(true);
                  setRecipe((r) => (r ? { ...r, [side]: { ...r[side], [c]: v } } : r));
                }}
              />
            ) : (
              <p className="muted">Loading…</p>
            )}
          </section>
          <details className="card plant-settings">
            <summary>Plant settings</summary>
            <ParamForm fields={plantFields} overrides={overrides} errors={errors} onChange={changeParam} />
          </details>
          <section className="card" aria-labelledby="log-h">
            <div className="card-head">
              <h2 id="log-h">Live stage updates</h2>
              <span className="muted small">{plant.log.length} events{plant.skipped ? ` · ${plant.skipped} skipped` : ""}</span>
            </div>
            <EventLog log={plant.log} />
          </section>
          {errorList.length > 0 && (
            <section className="card invalid-list" aria-labelledby="invalid-h">
              <h2 id="invalid-h">Invalid parameters</h2>
              <ul>
                {errorList.map(([field, message]) => (
                  <li key={field}><code>{field}</code>: {message}</li>
                ))}
              </ul>
            </section>
          )}
        </aside>

        <section className="card machine" aria-labelledby="machine-h">
          {machine && m ? (
            <>
              <div className="card-head">
                <h2 id="machine-h" ref={panelHeading} tabIndex={-1}>
                  {machine.line} · {machine.title} <code className="small">{machine.id}</code>
                </h2>
                <span className={`badge badge-${m.state}`}>{m.state}</span>
              </div>
              <div className="machine-body">
                <div className="machine-chart">
                  <div className="chart-head">
                    <h3>{chart?.source === "stored" ? "Time series (stored)" : "Live time series"}</h3>
                    {chartFields.length > 0 && (
                      <label className="small">
                        Signal{" "}
                        <select value={shownField} onChange={(e) => setChartField(e.target.value)} name="chart-field">
                          {chartFields.map((f) => <option key={f} value={f}>{f}</option>)}
                        </select>
                      </label>
                    )}
                  </div>
                  {chart && shownField ? (
                    <LiveChart t={chart.t} y={chart.fields[shownField] ?? []} field={shownField} title={machine.id} />
                  ) : (
                    <p className="muted chart-empty">No samples from this machine yet.</p>
                  )}
                  <dl className="machine-facts small">
                    <div><dt>batch</dt><dd>{m.batch ?? "—"}</dd></div>
                    <div><dt>batches done</dt><dd>{m.batchesDone} / {plant.batches}</dd></div>
                    <div><dt>key value</dt><dd>{m.key ? `${m.key.field} = ${fmt(m.key.value)}` : "—"}</dd></div>
                    <div><dt>active alarms</dt><dd>{m.activeAlarms.join(", ") || "none"}</dd></div>
                  </dl>
                </div>
                <div className="machine-params">
                  <h3>Parameters <span className="muted small">({machine.section})</span></h3>
                  <ParamForm fields={fields} overrides={overrides} errors={errors} onChange={changeParam} />
                </div>
              </div>
            </>
          ) : (
            <p className="muted">Select a machine in the plant.</p>
          )}
        </section>

        <section className="card results-card" aria-labelledby="results-h">
          <h2 id="results-h">Results</h2>
          <Results run={run && run.id === currentId ? run : null} />
        </section>

        <section className="card history-card" aria-labelledby="history-h">
          <div className="card-head">
            <h2 id="history-h">Run history</h2>
            <button type="button" onClick={() => void refreshHistory()}>Refresh</button>
          </div>
          <History
            runs={history}
            current={currentId}
            onOpen={(id) => {
              dispatch({ reset: true });
              setRun(null);
              attach(id);
            }}
          />
        </section>
      </main>
    </>
  );
}
