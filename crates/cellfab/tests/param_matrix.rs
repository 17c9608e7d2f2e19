//! `cellfab run --config FILE` with every numeric parameter out of its range: the command
//! fails with one message naming the parameter, and writes nothing.

use cellfab_plant::PlantConfig;
use serde_json::Value;
use std::process::Command;

fn numeric_pointers(v: &Value, pointer: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| numeric_pointers(c, &format!("{pointer}/{k}"), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| numeric_pointers(c, &format!("{pointer}/{i}"), out)),
        Value::Number(_) => out.push(pointer.to_string()),
        _ => {}
    }
}

/// The name a message must carry: the last key of the pointer that is not a list index.
fn key(pointer: &str) -> &str {
    pointer.rsplit('/').find(|k| k.parse::<usize>().is_err()).unwrap_or(pointer)
}

#[test]
fn every_out_of_range_parameter_fails_the_run_by_name_and_writes_nothing() {
    let default = serde_json::to_value(PlantConfig::default()).unwrap();
    let mut pointers = Vec::new();
    numeric_pointers(&default, "", &mut pointers);
    assert!(pointers.len() > 150, "{}", pointers.len());
    let dir = std::env::temp_dir().join(format!("cellfab-cli-matrix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (config_path, out) = (dir.join("config.json"), dir.join("out"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for pointer in &pointers {
        // a value the configuration refuses (the validation in-process picks the sign)
        let refused = [1e300, -1e300].into_iter().find_map(|v| {
            let mut c = default.clone();
            *c.pointer_mut(pointer).unwrap() = v.into();
            PlantConfig::from_json_value(c.clone()).map_or(Some(c.clone()), |p| p.validate().err().map(|_| c))
        });
        let Some(config) = refused else { continue };
        std::fs::write(&config_path, config.to_string()).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_cellfab"))
            .args(["run", "--quiet", "--config"])
            .arg(&config_path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        checked += 1;
        if o.status.success() {
            failures.push(format!("{pointer}: the run succeeded"));
        } else if !stderr.contains(key(pointer)) {
            failures.push(format!("{pointer}: the message does not name {}: {stderr}", key(pointer)));
        } else if stderr.lines().count() > 3 || stderr.len() > 600 {
            failures.push(format!("{pointer}: not one clear message: {stderr}"));
        }
        if out.exists() && std::fs::read_dir(&out).unwrap().next().is_some() {
            failures.push(format!("{pointer}: wrote into {}", out.display()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} of {checked}:\n{}", failures.len(), failures.join("\n"));
    assert!(checked > 150, "only {checked} parameters refused 1e300 or -1e300");
}
