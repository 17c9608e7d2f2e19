//! `cellfab export pybamm`: one cell of a run folder as a PyBaMM parameter set (MODELS.md §12.5).
//!
//! The electrode geometry and microstructure come from that cell's electrodes in the run:
//!
//! ```text
//!   cell_results.jsonl (cell) ─► batch, lane, coating interval [start, end] of each electrode
//!   calendaring_output samples of that batch and line ─► mean true porosity and coating
//!       thickness over the interval (sample position / length_scale = coating coordinate)
//!   mixing_output final of that batch and line ─► AM share of the solid volume
//!   slitting_output final (cathode) ─► the lane's mean width = "Electrode height [m]"
//!   manifest config ─► cathode length × coated sides = "Electrode width [m]", materials
//! ```
//!
//! Every key the twin does not model (kinetics, transport, thermal, cut-offs) keeps the value
//! of PyBaMM's `Chen2020` set (Chen et al. 2020, J. Electrochem. Soc. 167, 080534; LG M50
//! 21700, graphite-SiOx / NMC811). Chen2020's functions (OCPs, exchange currents, electrolyte
//! properties) are not JSON: load them with `pybamm.ParameterValues("Chen2020")` and
//! `update` it with this file's `parameters`.

use anyhow::{anyhow, bail, Context, Result};
use cellfab_model::consts::FARADAY_C_MOL;
use cellfab_model::material::{Material, Separator};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Arguments of `cellfab export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: ExportWhat,
}

#[derive(clap::Subcommand, Debug)]
enum ExportWhat {
    /// One cell as a PyBaMM parameter set (JSON, Chen2020 key names and units).
    Pybamm(PybammArgs),
}

/// Arguments of `cellfab export pybamm`.
#[derive(clap::Args, Debug)]
pub struct PybammArgs {
    /// Run folder (holding cell_results.jsonl and manifest.json).
    #[arg(long)]
    run: PathBuf,
    /// Cell id, e.g. B1-L0-0.
    #[arg(long)]
    cell: String,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> Result<()> {
    match args.what {
        ExportWhat::Pybamm(a) => {
            let set = pybamm_parameter_set(&a.run, &a.cell)?;
            let text = serde_json::to_string_pretty(&set)? + "\n";
            match &a.out {
                Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

/// Stoichiometry windows of Chen2020 (0 % and 100 % SOC): negative x, positive y.
const CHEN_X_0: f64 = 0.0279;
const CHEN_X_100: f64 = 0.9014;
const CHEN_Y_0: f64 = 0.9084;
const CHEN_Y_100: f64 = 0.2661;

/// Scalar values of PyBaMM's Chen2020 set for what the twin does not model.
fn chen2020() -> Map<String, Value> {
    let v = json!({
        "Negative current collector thickness [m]": 1.2e-5,
        "Positive current collector thickness [m]": 1.6e-5,
        "Negative current collector conductivity [S.m-1]": 58411000.0,
        "Positive current collector conductivity [S.m-1]": 36914000.0,
        "Negative current collector density [kg.m-3]": 8960.0,
        "Positive current collector density [kg.m-3]": 2700.0,
        "Negative electrode conductivity [S.m-1]": 215.0,
        "Positive electrode conductivity [S.m-1]": 0.18,
        "Negative particle diffusivity [m2.s-1]": 3.3e-14,
        "Positive particle diffusivity [m2.s-1]": 4e-15,
        "Negative electrode Bruggeman coefficient (electrolyte)": 1.5,
        "Positive electrode Bruggeman coefficient (electrolyte)": 1.5,
        "Separator Bruggeman coefficient (electrolyte)": 1.5,
        "Negative electrode Bruggeman coefficient (electrode)": 0.0,
        "Positive electrode Bruggeman coefficient (electrode)": 0.0,
        "Negative electrode charge transfer coefficient": 0.5,
        "Positive electrode charge transfer coefficient": 0.5,
        "Negative electrode double-layer capacity [F.m-2]": 0.2,
        "Positive electrode double-layer capacity [F.m-2]": 0.2,
        "Negative electrode OCP entropic change [V.K-1]": 0.0,
        "Positive electrode OCP entropic change [V.K-1]": 0.0,
        "Negative electrode density [kg.m-3]": 1657.0,
        "Positive electrode density [kg.m-3]": 3262.0,
        "Separator density [kg.m-3]": 397.0,
        "Initial concentration in electrolyte [mol.m-3]": 1000.0,
        "Cation transference number": 0.2594,
        "Thermodynamic factor": 1.0,
        "Reference temperature [K]": 298.15,
        "Ambient temperature [K]": 298.15,
        "Initial temperature [K]": 298.15,
        "Total heat transfer coefficient [W.m-2.K-1]": 10.0,
        "Number of electrodes connected in parallel to make a cell": 1.0,
        "Number of cells connected in series to make a battery": 1.0,
        "Lower voltage cut-off [V]": 2.5,
        "Upper voltage cut-off [V]": 4.2,
        "Open-circuit voltage at 0% SOC [V]": 2.5,
        "Open-circuit voltage at 100% SOC [V]": 4.2,
        "Cell cooling surface area [m2]": 0.00531,
        "Cell volume [m3]": 2.42e-5,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn f(v: &Value, pointer: &str) -> Result<f64> {
    v.pointer(pointer).and_then(Value::as_f64).ok_or_else(|| anyhow!("missing number {pointer}"))
}

/// The JSON files of one machine and batch in a stage folder: (final result, samples).
fn machine_files(run: &Path, folder: &str, machine: &str, batch: u64) -> Result<(Value, Vec<Value>)> {
    let dir = run.join(folder);
    let mut finals = None;
    let mut samples = Vec::new();
    let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{machine}_")) || !name.ends_with(".json") {
            continue;
        }
        let is_final = name.contains("_final_results_");
        let doc = read_json(&entry.path())?;
        if doc.get("Batch").and_then(Value::as_u64) != Some(batch) {
            continue;
        }
        if is_final {
            finals = Some(doc);
        } else {
            samples.push(doc);
        }
    }
    let finals = finals.ok_or_else(|| anyhow!("no final result of {machine} batch {batch} in {}", dir.display()))?;
    Ok((finals, samples))
}

/// One electrode of a cell: mean true porosity and coating thickness over its interval,
/// and the AM share of its solid volume.
struct Electrode {
    porosity: f64,
    thickness_m: f64,
    am_solid_volume_frac: f64,
}

fn electrode(run: &Path, side: &str, batch: u64, start_m: f64, end_m: f64) -> Result<Electrode> {
    let (cal_final, samples) = machine_files(run, "calendaring_output", &format!("MC_Cal_{side}"), batch)?;
    let scale = f(&cal_final, "/cellfab/length_scale")?;
    let points: Vec<(f64, f64, f64)> = samples
        .iter()
        .filter_map(|s| {
            Some((
                s.pointer("/cellfab/position_m")?.as_f64()? / scale,
                s.pointer("/cellfab/porosity_frac")?.as_f64()?,
                s.pointer("/cellfab/coating_thickness_m")?.as_f64()?,
            ))
        })
        .collect();
    let inside: Vec<&(f64, f64, f64)> = points.iter().filter(|p| p.0 >= start_m && p.0 <= end_m).collect();
    let (porosity, thickness_m) = if inside.is_empty() {
        let mid = 0.5 * (start_m + end_m);
        let nearest = points
            .iter()
            .min_by(|a, b| (a.0 - mid).abs().total_cmp(&(b.0 - mid).abs()))
            .ok_or_else(|| anyhow!("no calendaring samples of MC_Cal_{side} batch {batch}"))?;
        (nearest.1, nearest.2)
    } else {
        let n = inside.len() as f64;
        (inside.iter().map(|p| p.1).sum::<f64>() / n, inside.iter().map(|p| p.2).sum::<f64>() / n)
    };
    let (mix, _) = machine_files(run, "mixing_output", &format!("TK_Mix_{side}"), batch)?;
    let (am, ca, binder) =
        (f(&mix, "/cellfab/am_volume_m3")?, f(&mix, "/cellfab/ca_volume_m3")?, f(&mix, "/cellfab/binder_volume_m3")?);
    Ok(Electrode { porosity, thickness_m, am_solid_volume_frac: am / (am + ca + binder) })
}

/// Maximum lithium concentration of an active material: ρ·q_stoich·3600/F [mol/m³] (§12.5).
fn c_max(material: Material) -> Result<(f64, f64)> {
    let am = material.active().ok_or_else(|| anyhow!("{material:?} is not an active material"))?;
    Ok((material.density_kg_m3() * am.stoich_capacity_ah_kg * 3600.0 / FARADAY_C_MOL, am.d50_m / 2.0))
}

/// Builds the parameter set of one cell of a run folder.
pub fn pybamm_parameter_set(run: &Path, cell_id: &str) -> Result<Value> {
    let results = run.join("cell_results.jsonl");
    let text = std::fs::read_to_string(&results)
        .with_context(|| format!("cannot read {} (is {} a run folder?)", results.display(), run.display()))?;
    let mut count = 0usize;
    let mut found = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        count += 1;
        let row: Value = serde_json::from_str(line).with_context(|| format!("{}: bad line", results.display()))?;
        if row.get("cell_id").and_then(Value::as_str) == Some(cell_id) {
            found = Some(row);
            break;
        }
    }
    let Some(cell) = found else {
        bail!(
            "unknown cell {cell_id}: {} has {count} cells with ids like B1-L0-0 (B<batch>-L<lane>-<index>)",
            results.display()
        );
    };
    let manifest = read_json(&run.join("manifest.json"))?;
    let config = manifest.get("config").ok_or_else(|| anyhow!("manifest.json has no config"))?;
    let batch = cell["batch_id"].as_u64().ok_or_else(|| anyhow!("cell {cell_id} has no batch_id"))?;
    let lane = cell["lane"].as_u64().unwrap_or(0);
    let neg = electrode(run, "Anode", batch, f(&cell, "/anode_coating_start_m")?, f(&cell, "/anode_coating_end_m")?)?;
    let pos =
        electrode(run, "Cathode", batch, f(&cell, "/cathode_coating_start_m")?, f(&cell, "/cathode_coating_end_m")?)?;
    let material = |line: &str| -> Result<Material> {
        Ok(serde_json::from_value(config[line]["recipe"]["active_material"].clone())?)
    };
    let (c_max_neg, r_neg) = c_max(material("anode")?)?;
    let (c_max_pos, r_pos) = c_max(material("cathode")?)?;
    let (slit, _) = machine_files(run, "slitting_output", "MC_Slit_Cathode", batch)?;
    let height_m = slit
        .pointer("/cellfab/lanes")
        .and_then(Value::as_array)
        .and_then(|lanes| lanes.iter().find(|l| l["lane"].as_u64() == Some(lane)))
        .and_then(|l| l["mean_width_m"].as_f64())
        .map_or_else(|| f(&slit, "/cellfab/lane_width_m"), Ok)?;
    let asm = &config["cell"]["assembly"];
    let sides = config["cathode"]["coating"]["sides"].as_f64().unwrap_or(2.0);
    let (width_m, height_m, format) = match &asm["cell_format"] {
        Value::String(s) if s == "cylindrical" => (sides * f(asm, "/cathode_length_m")?, height_m, "cylindrical"),
        Value::Object(o) if o.contains_key("stacked_pouch") => {
            let p = &o["stacked_pouch"];
            (sides * f(p, "/sheet_length_m")? * f(p, "/cathode_sheet_count")?, f(p, "/sheet_width_m")?, "stacked pouch")
        }
        other => bail!("cell format {other} is not known to the PyBaMM export"),
    };
    let soc = cell["soc_end_frac"].as_f64().unwrap_or(0.3);
    let capacity = cell["discharge_capacity_ah"].as_f64().or(cell["design_capacity_ah"].as_f64()).unwrap_or(0.0);
    let sep = Separator::PE_CERAMIC;
    let (am_neg, am_pos) =
        ((1.0 - neg.porosity) * neg.am_solid_volume_frac, (1.0 - pos.porosity) * pos.am_solid_volume_frac);

    let mut p = chen2020();
    let mut put = |k: &str, v: f64| {
        p.insert(k.into(), json!(v));
    };
    put("Negative electrode thickness [m]", neg.thickness_m);
    put("Positive electrode thickness [m]", pos.thickness_m);
    put("Separator thickness [m]", sep.thickness_m);
    put("Negative electrode porosity", neg.porosity);
    put("Positive electrode porosity", pos.porosity);
    put("Separator porosity", sep.porosity_frac);
    put("Negative electrode active material volume fraction", am_neg);
    put("Positive electrode active material volume fraction", am_pos);
    put("Negative particle radius [m]", r_neg);
    put("Positive particle radius [m]", r_pos);
    put("Maximum concentration in negative electrode [mol.m-3]", c_max_neg);
    put("Maximum concentration in positive electrode [mol.m-3]", c_max_pos);
    put(
        "Initial concentration in negative electrode [mol.m-3]",
        c_max_neg * (CHEN_X_0 + soc * (CHEN_X_100 - CHEN_X_0)),
    );
    put(
        "Initial concentration in positive electrode [mol.m-3]",
        c_max_pos * (CHEN_Y_0 + soc * (CHEN_Y_100 - CHEN_Y_0)),
    );
    put("Electrode height [m]", height_m);
    put("Electrode width [m]", width_m);
    put("Nominal cell capacity [A.h]", capacity);
    put("Current function [A]", capacity);
    let mut keys: Vec<(String, Value)> = p.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(json!({
        "format": "pybamm-parameter-values",
        "based_on": "Chen2020",
        "citations": ["Chen2020"],
        "cell_id": cell_id,
        "run": manifest.get("run_id").cloned().unwrap_or(Value::Null),
        "cell_format": format,
        "usage": "pybamm.ParameterValues(\"Chen2020\").update(<this>[\"parameters\"]) keeps Chen2020's functions",
        "notes": {
            "from_the_cell": "electrode thickness (coating, one side), porosity and active material volume fraction (mean over the cell's web interval at calendering, true values), electrode height (cathode lane width), electrode width (cathode length x coated sides), particle radii (d50/2), maximum concentrations (rho q 3600/F), nominal capacity (measured Q_dis) and initial concentrations (SOC at the end of aging on Chen2020's stoichiometry window)",
            "from_chen2020": "every other key (Chen et al. 2020, J. Electrochem. Soc. 167, 080534)",
            "inactive_volume_fraction": {
                "negative": 1.0 - neg.porosity - am_neg,
                "positive": 1.0 - pos.porosity - am_pos,
            },
        },
        "parameters": Map::from_iter(keys),
    }))
}
