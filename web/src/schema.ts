// Parameter forms generated from the configuration's JSON Schema (GET /api/v1/config/schema):
// one field per parameter, labelled from its name, with the unit its suffix declares
// (the table of `cellfab params`, crates/cellfab/src/params.rs unit_of), the range its
// description states ("[0.01, 3.0]", "(0, 1e-2]") and the default from GET /config/default.

import type { Json, JsonObject } from "./api";

/** Name suffix → unit, longest suffixes first (MODELS.md §0.1). */
const UNITS: Array<[string, string]> = [
  ["_w_m2_k", "W/(m²·K)"],
  ["_m_per_m", "m/m"],
  ["_v_per_s", "V/s"],
  ["_kg_m2", "kg/m²"],
  ["_kg_m3", "kg/m³"],
  ["_ohm_m2", "Ω·m²"],
  ["_ohm_m", "Ω·m"],
  ["_m3_s", "m³/s"],
  ["_kg_s", "kg/s"],
  ["_pa_s", "Pa·s"],
  ["_j_m3", "J/m³"],
  ["_j_mol", "J/mol"],
  ["_rev_s", "rev/s"],
  ["_per_m2", "1/m²"],
  ["_per_pa", "1/Pa"],
  ["_per_s", "1/s"],
  ["_per_m", "1/m"],
  ["_per_k", "1/K"],
  ["_m_s", "m/s"],
  ["_n_m", "N/m"],
  ["_w_k", "W/K"],
  ["_degc", "°C"],
  ["_frac", "fraction 0..1"],
  ["_deg", "°"],
  ["_ohm", "Ω"],
  ["_m2", "m²"],
  ["_m3", "m³"],
  ["_kg", "kg"],
  ["_pa", "Pa"],
  ["_ah", "Ah"],
  ["_wh", "Wh"],
  ["_hz", "Hz"],
  ["_m", "m"],
  ["_s", "s"],
  ["_n", "N"],
  ["_w", "W"],
  ["_j", "J"],
  ["_v", "V"],
  ["_a", "A"],
];

/** The unit a field's name declares, with the suffix it matched. */
export function unitOf(name: string): { unit: string; suffix: string } | undefined {
  const hit = UNITS.find(([suffix]) => name.endsWith(suffix));
  return hit && { suffix: hit[0], unit: hit[1] };
}

/** "coating_speed_m_s" → "Coating speed". */
export function labelOf(name: string): string {
  const u = unitOf(name);
  const base = u && name.length > u.suffix.length ? name.slice(0, -u.suffix.length) : name;
  const words = base.replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export type FieldKind = "number" | "integer" | "boolean" | "enum" | "text" | "numbers" | "complex";

export interface Range {
  min: number;
  max: number;
  minOpen: boolean;
  maxOpen: boolean;
}

export interface FormField {
  /** Dotted path in the configuration (`anode.coating.coating_speed_m_s`). */
  path: string;
  name: string;
  label: string;
  unit?: string;
  kind: FieldKind;
  options?: string[];
  range?: Range;
  default: Json;
  description: string;
}

const NUM = String.raw`-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`;
const RANGE = new RegExp(String.raw`([\[(])\s*(${NUM})\s*,\s*(${NUM})\s*([\])])`);

/** The range a description states, e.g. "…; [0.01, 3.0]. [E]" or "(0, 1e-2]". */
export function rangeOf(description: string): Range | undefined {
  const m = RANGE.exec(description);
  if (!m) return undefined;
  return { min: Number(m[2]), max: Number(m[3]), minOpen: m[1] === "(", maxOpen: m[4] === ")" };
}

export function formatRange(r: Range, unit?: string): string {
  const u = unit ? " " + unit : "";
  if (!Number.isFinite(r.max)) return `${r.minOpen ? ">" : "≥"} ${r.min}${u}`;
  if (!Number.isFinite(r.min)) return `${r.maxOpen ? "<" : "≤"} ${r.max}${u}`;
  return `${r.minOpen ? "(" : "["}${r.min}, ${r.max}${r.maxOpen ? ")" : "]"}${u}`;
}

type Schema = { [key: string]: unknown };

function resolve(root: Schema, s: Schema | undefined): Schema | undefined {
  let cur = s;
  for (let i = 0; cur && i < 8; i++) {
    const ref = cur.$ref;
    if (typeof ref === "string" && ref.startsWith("#/$defs/")) {
      const target = (root.$defs as Record<string, Schema> | undefined)?.[ref.slice(8)];
      // Keep the referring property's own description.
      cur = target && { ...target, description: cur.description ?? target.description };
      continue;
    }
    const all = cur.allOf as Schema[] | undefined;
    if (all?.length === 1) {
      cur = { ...all[0], description: cur.description };
      continue;
    }
    const any = (cur.anyOf ?? cur.oneOf) as Schema[] | undefined;
    if (any && !any.some((a) => "const" in a || "enum" in a)) {
      const nonNull = any.filter((a) => a.type !== "null");
      if (nonNull.length === 1) {
        cur = { ...nonNull[0], description: cur.description };
        continue;
      }
    }
    break;
  }
  return cur;
}

/** The schema of the object at a dotted path (`anode.coating`), or undefined. */
export function sectionSchema(root: Schema, path: string): Schema | undefined {
  let cur = resolve(root, root);
  for (const part of path.split(".").filter(Boolean)) {
    const props = cur?.properties as Record<string, Schema> | undefined;
    cur = resolve(root, props?.[part]);
  }
  return cur;
}

function enumOptions(s: Schema): string[] | undefined {
  if (Array.isArray(s.enum)) return s.enum.map(String);
  const variants = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (variants && variants.every((v) => "const" in v || Array.isArray(v.enum))) {
    return variants.flatMap((v) => ("const" in v ? [String(v.const)] : (v.enum as unknown[]).map(String)));
  }
  return undefined;
}

function kindOf(s: Schema): { kind: FieldKind; options?: string[] } {
  const options = enumOptions(s);
  if (options) return { kind: "enum", options };
  const type = Array.isArray(s.type) ? (s.type as string[]).find((t) => t !== "null") : s.type;
  if (type === "number") return { kind: "number" };
  if (type === "integer") return { kind: "integer" };
  if (type === "boolean") return { kind: "boolean" };
  if (type === "string") return { kind: "text" };
  if (type === "array") {
    const items = s.items as Schema | undefined;
    if (items && (items.type === "number" || items.type === "integer")) return { kind: "numbers" };
  }
  return { kind: "complex" };
}

export function getPath(obj: Json | undefined, path: string): Json | undefined {
  let cur: Json | undefined = obj;
  for (const part of path.split(".").filter(Boolean)) {
    if (cur && typeof cur === "object" && !Array.isArray(cur)) cur = (cur as JsonObject)[part];
    else return undefined;
  }
  return cur;
}

/** The form of one section (`anode.coating`, `cell.assembly`, `plant`). */
export function fieldsFor(root: Schema, defaults: JsonObject, section: string): FormField[] {
  const s = sectionSchema(root, section);
  const props = (s?.properties ?? {}) as Record<string, Schema>;
  return Object.entries(props).map(([name, raw]) => {
    const r = resolve(root, raw) ?? {};
    const description = String(raw.description ?? r.description ?? "").replace(/\s+/g, " ").trim();
    const { kind, options } = kindOf(r);
    const u = unitOf(name);
    let range = rangeOf(description);
    if (!range && (typeof r.minimum === "number" || typeof r.maximum === "number")) {
      range = { min: (r.minimum as number) ?? -Infinity, max: (r.maximum as number) ?? Infinity, minOpen: false, maxOpen: false };
    }
    const path = section ? `${section}.${name}` : name;
    return {
      path,
      name,
      label: labelOf(name),
      unit: u?.unit,
      kind,
      options,
      range: kind === "number" || kind === "integer" ? range : undefined,
      default: getPath(defaults, path) ?? null,
      description,
    };
  });
}

/** Parses what a user typed into a field; a string result is the error message. */
export function parseInput(field: FormField, text: string): Json | { error: string } {
  const t = text.trim();
  switch (field.kind) {
    case "number":
    case "integer": {
      const v = Number(t);
      if (t === "" || !Number.isFinite(v)) return { error: `${field.label}: "${text}" is not a number` };
      if (field.kind === "integer" && !Number.isInteger(v)) return { error: `${field.label}: ${v} must be a whole number` };
      return v;
    }
    case "numbers": {
      const parts = t.split(/[\s,]+/).filter(Boolean).map(Number);
      if (parts.some((v) => !Number.isFinite(v))) return { error: `${field.label}: "${text}" must be numbers separated by commas` };
      return parts;
    }
    case "boolean":
      return t === "true";
    default:
      return t;
  }
}

/** Writes `value` at a dotted path of a nested override object (copying what it changes). */
export function setPath(obj: JsonObject, path: string, value: Json): JsonObject {
  const [head, ...rest] = path.split(".");
  if (rest.length === 0) return { ...obj, [head]: value };
  const child = obj[head];
  const next = child && typeof child === "object" && !Array.isArray(child) ? (child as JsonObject) : {};
  return { ...obj, [head]: setPath(next, rest.join("."), value) };
}

/** Removes the value at a dotted path, dropping objects it leaves empty. */
export function unsetPath(obj: JsonObject, path: string): JsonObject {
  const [head, ...rest] = path.split(".");
  if (!(head in obj)) return obj;
  const copy = { ...obj };
  if (rest.length === 0) {
    delete copy[head];
    return copy;
  }
  const child = obj[head];
  if (!child || typeof child !== "object" || Array.isArray(child)) return obj;
  const next = unsetPath(child as JsonObject, rest.join("."));
  if (Object.keys(next).length === 0) delete copy[head];
  else copy[head] = next;
  return copy;
}

/** Deep merge of override objects (b wins). */
export function mergeObjects(a: JsonObject, b: JsonObject): JsonObject {
  const out: JsonObject = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const old = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && old && typeof old === "object" && !Array.isArray(old)
        ? mergeObjects(old as JsonObject, v as JsonObject)
        : v;
  }
  return out;
}
