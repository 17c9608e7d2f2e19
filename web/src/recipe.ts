// The slurry recipe as the prototype's users know it: volume fractions of the mixing tank
// (AM, CA, PVDF = binder, Solvent) that must sum to 1. The plant's mixing parameters are mass
// fractions; the conversion is the server's `params_from_volume_fractions` (MODELS.md §1.6):
// m_i = r_i·ρ_i, dry fractions and solids mass fraction from those masses.

import type { JsonObject } from "./api";

export const COMPONENTS = ["AM", "CA", "PVDF", "Solvent"] as const;
export type Component = (typeof COMPONENTS)[number];
export type Fractions = Record<Component, number>;
export type Side = "anode" | "cathode";

/** Sum tolerance, as the server's /start-both (±1e-4). */
export const SUM_TOLERANCE = 1e-4;

/** Material densities [kg/m³] (cellfab-model material.rs). */
export const DENSITY_KG_M3: Record<string, number> = {
  graphite: 2260,
  nmc811: 4750,
  carbon_black: 1800,
  pvdf: 1780,
  cmc_sbr: 1170,
  nmp: 1028,
  water: 997,
};

export interface SumCheck {
  sum: number;
  ok: boolean;
  /** Empty when ok; otherwise one sentence naming the side, the sum and the rule. */
  message: string;
}

/** Checks one side: every fraction a number in [0, 1] and the four summing to 1 ± 1e-4. */
export function checkSum(side: Side, f: Fractions): SumCheck {
  const title = side === "anode" ? "Anode" : "Cathode";
  for (const c of COMPONENTS) {
    const v = f[c];
    if (!Number.isFinite(v)) return { sum: NaN, ok: false, message: `${title} ${c} must be a number` };
    if (v < 0 || v > 1) return { sum: NaN, ok: false, message: `${title} ${c} = ${v} must be within 0 to 1` };
  }
  const sum = COMPONENTS.reduce((s, c) => s + f[c], 0);
  const ok = Math.abs(sum - 1) <= SUM_TOLERANCE;
  return {
    sum,
    ok,
    message: ok ? "" : `${title} fractions sum to ${round(sum, 4)}; AM + CA + PVDF + Solvent must sum to 1`,
  };
}

export function round(v: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(v * k) / k;
}

/** The four densities of a line's recipe [AM, CA, binder, solvent]. */
export function densities(recipe: JsonObject | undefined, side: Side): [number, number, number, number] {
  const fallback = side === "anode" ? ["graphite", "carbon_black", "cmc_sbr", "water"] : ["nmc811", "carbon_black", "pvdf", "nmp"];
  const keys = ["active_material", "conductive_additive", "binder", "solvent"];
  return keys.map((k, i) => DENSITY_KG_M3[String(recipe?.[k] ?? fallback[i])] ?? DENSITY_KG_M3[fallback[i]]) as [
    number,
    number,
    number,
    number,
  ];
}

/** Mixing parameters from volume fractions (the fractions must pass checkSum). */
export function toMixing(f: Fractions, rho: [number, number, number, number]): JsonObject {
  const m = [f.AM * rho[0], f.CA * rho[1], f.PVDF * rho[2], f.Solvent * rho[3]];
  const solids = m[0] + m[1] + m[2];
  return {
    am_mass_frac_dry: m[0] / solids,
    ca_mass_frac_dry: m[1] / solids,
    binder_mass_frac_dry: m[2] / solids,
    solids_mass_frac: solids / (solids + m[3]),
  };
}

/** Volume fractions from mixing parameters: the defaults shown when the page opens. */
export function fromMixing(mixing: JsonObject | undefined, rho: [number, number, number, number]): Fractions {
  const num = (k: string, d: number) => (typeof mixing?.[k] === "number" ? (mixing[k] as number) : d);
  const ws = num("solids_mass_frac", 0.5);
  const masses = [
    ws * num("am_mass_frac_dry", 0.95),
    ws * num("ca_mass_frac_dry", 0.02),
    ws * num("binder_mass_frac_dry", 0.03),
    1 - ws,
  ];
  const volumes = masses.map((m, i) => m / rho[i]);
  const total = volumes.reduce((a, b) => a + b, 0);
  const r = volumes.map((v) => round(v / total, 4));
  // Put the rounding remainder on the solvent so the defaults sum to exactly 1.
  r[3] = round(1 - r[0] - r[1] - r[2], 4);
  return { AM: r[0], CA: r[1], PVDF: r[2], Solvent: r[3] };
}
