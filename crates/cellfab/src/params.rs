//! `cellfab params`: the default configuration as TOML with a comment above every key
//! (meaning, range and tag from the parameter's documentation, unit from its name), or the
//! JSON Schema the server and UI reuse. One definition (`PlantConfig`) feeds every view.

use anyhow::Result;
use cellfab_plant::PlantConfig;
use serde_json::{Map, Value};
use std::fmt::Write;

/// Arguments of `cellfab params`.
#[derive(clap::Args, Debug)]
pub struct ParamsArgs {
    /// Only the sections of this stage (e.g. `coating`, `formation`) or group (`plant`, `anode`).
    #[arg(long)]
    stage: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Toml)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Commented TOML.
    Toml,
    /// Plain JSON.
    Json,
    /// JSON Schema of the configuration.
    Schema,
}

pub fn params(args: ParamsArgs) -> Result<()> {
    let config = PlantConfig::default();
    match args.format {
        Format::Schema => println!("{}", serde_json::to_string_pretty(&PlantConfig::json_schema())?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&config)?),
        Format::Toml => {
            let text = commented_toml(&config, args.stage.as_deref());
            if text.trim().is_empty() {
                anyhow::bail!(
                    "stage = {}: no such stage or group (use plant, anode, cathode, cell, recipe, or a stage such as coating)",
                    args.stage.unwrap_or_default()
                );
            }
            print!("{text}");
        }
    }
    Ok(())
}

/// Unit of a field, from its suffix (MODELS.md §0.1).
pub fn unit_of(field: &str) -> Option<&'static str> {
    const UNITS: &[(&str, &str)] = &[
        ("_w_m2_k", "W/(m²·K)"),
        ("_m_per_m", "m/m"),
        ("_v_per_s", "V/s"),
        ("_kg_m2", "kg/m²"),
        ("_kg_m3", "kg/m³"),
        ("_ohm_m2", "Ω·m²"),
        ("_ohm_m", "Ω·m"),
        ("_m3_s", "m³/s"),
        ("_kg_s", "kg/s"),
        ("_pa_s", "Pa·s"),
        ("_j_m3", "J/m³"),
        ("_j_mol", "J/mol"),
        ("_rev_s", "rev/s"),
        ("_per_m2", "1/m²"),
        ("_per_pa", "1/Pa"),
        ("_per_s", "1/s"),
        ("_per_m", "1/m"),
        ("_per_k", "1/K"),
        ("_m_s", "m/s"),
        ("_n_m", "N/m"),
        ("_w_k", "W/K"),
        ("_degc", "°C"),
        ("_frac", "fraction 0..1"),
        ("_deg", "°"),
        ("_ohm", "Ω"),
        ("_m2", "m²"),
        ("_m3", "m³"),
        ("_kg", "kg"),
        ("_pa", "Pa"),
        ("_ah", "Ah"),
        ("_wh", "Wh"),
        ("_hz", "Hz"),
        ("_m", "m"),
        ("_s", "s"),
        ("_n", "N"),
        ("_w", "W"),
        ("_j", "J"),
        ("_v", "V"),
        ("_a", "A"),
    ];
    UNITS.iter().find(|(suffix, _)| field.ends_with(suffix)).map(|(_, u)| *u)
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..8 {
        let next = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
            .or_else(|| s.get("allOf").and_then(|a| a.get(0)));
        match next {
            Some(n) => s = n,
            None => break,
        }
    }
    s
}

fn description(schema: &Value) -> Option<String> {
    schema.get("description").and_then(Value::as_str).map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn toml_value(v: &Value) -> String {
    match toml::Value::try_from(v.clone()) {
        Ok(t) => t.to_string(),
        Err(_) => v.to_string(),
    }
}

/// The configuration as TOML with a comment above every key; `filter` keeps only sections
/// whose path contains that name.
pub fn commented_toml(config: &PlantConfig, filter: Option<&str>) -> String {
    let root = PlantConfig::json_schema();
    let value = serde_json::to_value(config).unwrap_or_default();
    let mut out = String::new();
    if filter.is_none() {
        out.push_str("# cellfab plant configuration (defaults). Every key is optional in a config file:\n");
        out.push_str("# a file gives only what it changes. Units are in the key names (MODELS.md §0.1).\n");
    }
    if let Value::Object(map) = &value {
        emit(&root, &root, map, &mut Vec::new(), filter, &mut out);
    }
    out
}

fn emit(
    root: &Value,
    schema: &Value,
    map: &Map<String, Value>,
    path: &mut Vec<String>,
    filter: Option<&str>,
    out: &mut String,
) {
    let schema = resolve(root, schema);
    let props = schema.get("properties");
    let shown = filter.is_none_or(|f| path.iter().any(|p| p == f));
    let scalars: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_object()).collect();
    if !path.is_empty() && !scalars.is_empty() && shown {
        let _ = writeln!(out, "\n[{}]", path.join("."));
        if let Some(d) = description(schema) {
            let _ = writeln!(out, "# {d}");
        }
        for (k, v) in scalars {
            let prop = props.and_then(|p| p.get(k)).map(|p| resolve(root, p));
            let mut comment = prop.and_then(description).unwrap_or_default();
            if let Some(u) = unit_of(k) {
                let _ = write!(comment, " Unit: {u}.");
            }
            let _ = writeln!(out, "# {}", comment.trim());
            let _ = writeln!(out, "{k} = {}", toml_value(v));
        }
    }
    for (k, v) in map {
        if let Value::Object(inner) = v {
            let sub = props.and_then(|p| p.get(k)).cloned().unwrap_or(Value::Null);
            path.push(k.clone());
            emit(root, &sub, inner, path, filter, out);
            path.pop();
        }
    }
}
