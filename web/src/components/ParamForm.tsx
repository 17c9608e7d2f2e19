import { useEffect, useState } from "react";
import type { Json, JsonObject } from "../api";
import { formatRange, getPath, parseInput, type FormField } from "../schema";

function shown(v: Json | undefined): string {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.join(", ");
  return String(v);
}

function Field({ field, value, serverError, onChange }: { field: FormField; value: Json | undefined; serverError?: string; onChange: (path: string, v: Json | undefined) => void }) {
  const [text, setText] = useState(shown(value ?? field.default));
  const [localError, setLocalError] = useState<string | null>(null);
  useEffect(() => setText(shown(value ?? field.default)), [value, field.default]);
  const id = `f-${field.path.replace(/\./g, "-")}`;
  const error = localError ?? serverError;
  const changed = value !== undefined;
  const commit = (raw: string) => {
    const parsed = parseInput(field, raw);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed) && "error" in parsed) {
      setLocalError(String(parsed.error));
      return;
    }
    setLocalError(null);
    onChange(field.path, JSON.stringify(parsed) === JSON.stringify(field.default) ? undefined : (parsed as Json));
  };
  const hint = [field.range ? formatRange(field.range, field.unit) : field.unit, `default ${shown(field.default)}`].filter(Boolean).join(" · ");
  let input;
  if (field.kind === "boolean") {
    input = <input id={id} type="checkbox" checked={text === "true"} onChange={(e) => { setText(String(e.target.checked)); commit(String(e.target.checked)); }} />;
  } else if (field.kind === "enum") {
    input = (
      <select id={id} value={text} onChange={(e) => { setText(e.target.value); commit(e.target.value); }}>
        {field.options?.map((o) => <option key={o} value={o}>{o}</option>)}
      </select>
    );
  } else {
    input = (
      <input
        id={id}
        type="text"
        inputMode={field.kind === "number" || field.kind === "integer" ? "decimal" : undefined}
        value={text}
        aria-invalid={error ? true : undefined}
        aria-describedby={`${id}-hint${error ? ` ${id}-err` : ""}`}
        onChange={(e) => setText(e.target.value)}
        onBlur={(e) => commit(e.target.value)}
        onKeyDown={(e) => e.key === "Enter" && commit((e.target as HTMLInputElement).value)}
      />
    );
  }
  return (
    <div className={`field${error ? " invalid" : ""}${changed ? " changed" : ""}`} data-path={field.path}>
      <label htmlFor={id} title={field.description}>
        {field.label}
        {field.unit && <span className="unit"> [{field.unit}]</span>}
        {changed && <span className="changed-dot" title="changed from the default"> •</span>}
      </label>
      {input}
      <span id={`${id}-hint`} className="hint">{hint}</span>
      {error && (
        <span id={`${id}-err`} className="error-text" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

/** A machine's parameters, generated from the schema; changed values become overrides. */
export function ParamForm({ fields, overrides, errors, onChange }: { fields: FormField[]; overrides: JsonObject; errors: Record<string, string>; onChange: (path: string, v: Json | undefined) => void }) {
  const simple = fields.filter((f) => f.kind !== "complex");
  const complex = fields.filter((f) => f.kind === "complex");
  return (
    <div className="param-form">
      <div className="fields">
        {simple.map((f) => (
          <Field key={f.path} field={f} value={getPath(overrides, f.path)} serverError={errors[f.path]} onChange={onChange} />
        ))}
      </div>
      {complex.length > 0 && (
        <p className="muted small">
          Structured settings ({complex.map((f) => f.name).join(", ")}) keep their defaults here; set them through
          the API's <code>config</code> object.
        </p>
      )}
    </div>
  );
}
