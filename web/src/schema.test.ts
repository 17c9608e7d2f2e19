import { describe, expect, it } from "vitest";
import { fieldsFor, formatRange, labelOf, parseInput, rangeOf, setPath, unitOf } from "./schema";

// A cut-down copy of the shape `cellfab params --format schema` produces (schemars).
const schema = {
  type: "object",
  properties: {
    anode: { description: "The anode line.", $ref: "#/$defs/ElectrodeLineConfig" },
  },
  $defs: {
    ElectrodeLineConfig: {
      type: "object",
      properties: { coating: { description: "Coater.", $ref: "#/$defs/CoatingParams" } },
    },
    CoatingParams: {
      type: "object",
      properties: {
        coating_speed_m_s: { description: "Line (web) speed, also the dryer speed; [0.01, 3.0]. [E]", type: "number" },
        flow_rate_m3_s: { description: "Slurry flow per die (side); (0, 1e-2]. [E]", type: "number" },
        sides: { description: "Coated sides; 1 or 2. [E]", type: "integer", minimum: 0 },
        slurry_temperature_degc: { description: "Slurry temperature at the die; [5, 60].", type: "number" },
        mode: { description: "Die mode.", $ref: "#/$defs/Mode" },
        window_pa_s: { description: "Viscosity window.", type: "array", items: { type: "number" } },
        enabled: { description: "On.", type: "boolean" },
      },
    },
    Mode: { type: "string", enum: ["slot_die", "comma_bar"] },
  },
};
const defaults = {
  anode: {
    coating: { coating_speed_m_s: 0.5, flow_rate_m3_s: 0.0001, sides: 2, slurry_temperature_degc: 25, mode: "slot_die", window_pa_s: [2, 8], enabled: true },
  },
};

describe("form generation from the JSON Schema", () => {
  const fields = fieldsFor(schema, defaults, "anode.coating");
  const byName = Object.fromEntries(fields.map((f) => [f.name, f]));

  it("makes one field per parameter with its full path and default", () => {
    expect(fields.map((f) => f.name)).toEqual([
      "coating_speed_m_s",
      "flow_rate_m3_s",
      "sides",
      "slurry_temperature_degc",
      "mode",
      "window_pa_s",
      "enabled",
    ]);
    expect(byName.coating_speed_m_s.path).toBe("anode.coating.coating_speed_m_s");
    expect(byName.coating_speed_m_s.default).toBe(0.5);
    expect(byName.window_pa_s.default).toEqual([2, 8]);
  });

  it("labels fields from their names and takes units from the suffix", () => {
    expect(byName.coating_speed_m_s.label).toBe("Coating speed");
    expect(byName.coating_speed_m_s.unit).toBe("m/s");
    expect(byName.flow_rate_m3_s.unit).toBe("m³/s");
    expect(byName.slurry_temperature_degc.unit).toBe("°C");
    expect(byName.window_pa_s.unit).toBe("Pa·s");
    expect(byName.sides.unit).toBeUndefined();
  });

  it("reads closed and open ranges from the description", () => {
    expect(byName.coating_speed_m_s.range).toEqual({ min: 0.01, max: 3, minOpen: false, maxOpen: false });
    expect(byName.flow_rate_m3_s.range).toEqual({ min: 0, max: 0.01, minOpen: true, maxOpen: false });
    expect(byName.sides.range).toEqual({ min: 0, max: Infinity, minOpen: false, maxOpen: false });
  });

  it("picks the input kind from the type, enums included", () => {
    expect(byName.sides.kind).toBe("integer");
    expect(byName.mode.kind).toBe("enum");
    expect(byName.mode.options).toEqual(["slot_die", "comma_bar"]);
    expect(byName.window_pa_s.kind).toBe("numbers");
    expect(byName.enabled.kind).toBe("boolean");
  });

  it("parses input and names the field when it is not a number", () => {
    expect(parseInput(byName.coating_speed_m_s, "9")).toBe(9);
    expect(parseInput(byName.coating_speed_m_s, "fast")).toEqual({ error: 'Coating speed: "fast" is not a number' });
    expect(parseInput(byName.sides, "1.5")).toEqual({ error: "Sides: 1.5 must be a whole number" });
    expect(parseInput(byName.window_pa_s, "2, 9")).toEqual([2, 9]);
  });

  it("builds nested overrides from dotted paths without touching the original", () => {
    const base = { anode: { mixing: { solids_mass_frac: 0.5 } } };
    const next = setPath(base, "anode.coating.coating_speed_m_s", 9);
    expect(next).toEqual({ anode: { mixing: { solids_mass_frac: 0.5 }, coating: { coating_speed_m_s: 9 } } });
    expect(base).toEqual({ anode: { mixing: { solids_mass_frac: 0.5 } } });
  });

  it("has the unit table of cellfab params for composite suffixes", () => {
    expect(unitOf("jacket_ua_w_k")?.unit).toBe("W/K");
    expect(unitOf("heat_transfer_w_m2_k")?.unit).toBe("W/(m²·K)");
    expect(labelOf("porosity_frac")).toBe("Porosity");
    expect(rangeOf("no range here")).toBeUndefined();
  });

  it("writes ranges the way the server's messages do", () => {
    expect(formatRange({ min: 0.01, max: 3, minOpen: false, maxOpen: false }, "m/s")).toBe("[0.01, 3] m/s");
    expect(formatRange({ min: 0, max: 0.01, minOpen: true, maxOpen: false })).toBe("(0, 0.01]");
    expect(formatRange({ min: 0, max: Infinity, minOpen: false, maxOpen: false })).toBe("≥ 0");
  });
});
