import { unitOf } from "./schema";

/** A number with 4 significant digits, small and large ones in exponent form. */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

/** "porosity_frac" 0.31 → "porosity 0.31 (fraction)". */
export function fieldValue(field: string, v: number): { label: string; value: string; unit: string } {
  const u = unitOf(field.split(".").at(-1) ?? field);
  const base = u ? field.slice(0, -u.suffix.length) : field;
  return { label: base.replace(/_/g, " "), value: fmt(v), unit: u?.unit === "fraction 0..1" ? "" : (u?.unit ?? "") };
}
