import { describe, expect, it } from "vitest";
import { checkSum, densities, fromMixing, toMixing } from "./recipe";

describe("recipe sum check", () => {
  it("accepts fractions that sum to one within 1e-4", () => {
    expect(checkSum("anode", { AM: 0.495, CA: 0.045, PVDF: 0.05, Solvent: 0.41 }).ok).toBe(true);
    expect(checkSum("anode", { AM: 0.495, CA: 0.045, PVDF: 0.05, Solvent: 0.41005 }).ok).toBe(true);
  });

  it("refuses a side that does not sum to one and names side and sum", () => {
    const r = checkSum("cathode", { AM: 0.6, CA: 0.045, PVDF: 0.05, Solvent: 0.41 });
    expect(r.ok).toBe(false);
    expect(r.sum).toBeCloseTo(1.105, 9);
    expect(r.message).toContain("Cathode");
    expect(r.message).toContain("1.105");
    expect(r.message).toContain("must sum to 1");
  });

  it("refuses negative, above-one and non-numeric fractions naming the component", () => {
    expect(checkSum("anode", { AM: -0.1, CA: 0.5, PVDF: 0.3, Solvent: 0.3 }).message).toContain("AM = -0.1");
    expect(checkSum("anode", { AM: 1.2, CA: 0, PVDF: 0, Solvent: -0.2 }).ok).toBe(false);
    expect(checkSum("anode", { AM: NaN, CA: 0, PVDF: 0, Solvent: 1 }).message).toContain("AM must be a number");
  });
});

describe("recipe conversion", () => {
  it("turns volume fractions into dry mass fractions that sum to one", () => {
    const rho = densities({ active_material: "graphite", conductive_additive: "carbon_black", binder: "cmc_sbr", solvent: "water" }, "anode");
    const m = toMixing({ AM: 0.495, CA: 0.045, PVDF: 0.05, Solvent: 0.41 }, rho);
    const dry = (m.am_mass_frac_dry as number) + (m.ca_mass_frac_dry as number) + (m.binder_mass_frac_dry as number);
    expect(dry).toBeCloseTo(1, 12);
    // m_AM = 0.495·2260, m_CA = 0.045·1800, m_B = 0.05·1170, m_S = 0.41·997
    const solids = 0.495 * 2260 + 0.045 * 1800 + 0.05 * 1170;
    expect(m.solids_mass_frac).toBeCloseTo(solids / (solids + 0.41 * 997), 12);
  });

  it("round-trips the default mixing parameters through volume fractions", () => {
    const rho = densities(undefined, "cathode");
    const mixing = { am_mass_frac_dry: 0.94, ca_mass_frac_dry: 0.03, binder_mass_frac_dry: 0.03, solids_mass_frac: 0.7 };
    const f = fromMixing(mixing, rho);
    expect(checkSum("cathode", f).ok).toBe(true);
    const back = toMixing(f, rho);
    expect(back.am_mass_frac_dry as number).toBeCloseTo(0.94, 3);
    expect(back.solids_mass_frac as number).toBeCloseTo(0.7, 3);
  });
});
