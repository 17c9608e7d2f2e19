//! The sweep specification (`SWEEP.toml`) and its design: which configuration fields vary,
//! how (grid, Latin hypercube, Monte Carlo) and the value of every field at every point.
//!
//! ```text
//!   SWEEP.toml ──► SweepSpec::from_toml ──► Sweep::resolve (base config, paths checked)
//!                                               │
//!                                               └──► design: point i ─► values[i] ─► PlantConfig (validated)
//! ```
//!
//! Randomness: the design draws from `stream(sweep seed, [DESIGN_STREAM, …])` and each point's
//! plant seed is `derive_seed(sweep seed, [POINT_STREAM, i])`, so the design and every point
//! are fixed by the sweep seed and the spec alone, whatever shard or thread runs them.

use crate::error::SweepError;
use cellfab_model::random::{derive_seed, normal, stream, uniform};
use cellfab_plant::PlantConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Stream tag of a point's plant seed ("POINT").
pub const POINT_STREAM: u64 = 0x0050_4F49_4E54;
/// Stream tag of the design draws ("DESIGN").
pub const DESIGN_STREAM: u64 = 0x4445_5349_474E;
/// Cells per point when neither the spec nor the base configuration caps them.
pub const DEFAULT_CELLS_PER_POINT: u32 = 64;
/// Plant time 0 of every point when the base configuration gives none (timestamps only).
pub const DEFAULT_START: &str = "2025-01-01T00:00:00Z";
/// Points per Parquet part file when the spec does not say.
pub const DEFAULT_POINTS_PER_PART: u32 = 256;

/// How the points are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every combination of each parameter's values (the last parameter varies fastest).
    Grid,
    /// Latin hypercube: `points` points, each parameter's range cut into `points` equal strata,
    /// one point per stratum, strata shuffled independently per parameter.
    Lhs,
    /// `points` independent draws from each parameter's distribution.
    MonteCarlo,
}

/// A distribution of a Monte Carlo parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Uniform on [min, max].
    Uniform,
    /// Normal with `mean` and `sd`, clamped to [min, max] when given.
    Normal,
    /// Log-normal with `median` and `sigma_ln` (sd of ln x), clamped to [min, max] when given.
    Lognormal,
}

/// One swept field, as written in the spec. Which keys apply depends on the method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// Dotted path of a numeric configuration field, e.g. `cathode.calendaring.line_load_n_m`.
    pub path: String,
    /// Grid: explicit values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// Grid (linspace with `num`), LHS, uniform: lower bound; normal/lognormal: clamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Grid (linspace with `num`), LHS, uniform: upper bound; normal/lognormal: clamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Grid: number of evenly spaced values from `min` to `max` (both included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<u32>,
    /// Monte Carlo: the distribution (default uniform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// Normal: mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Normal: standard deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sd: Option<f64>,
    /// Log-normal: median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// Log-normal: standard deviation of ln x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_ln: Option<f64>,
}

/// The sweep specification file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Sweep seed: fixes the design and every point's plant seed.
    pub seed: u64,
    /// Design method.
    pub method: Method,
    /// Number of points (LHS and Monte Carlo; a grid has the product of its value counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    /// Base configuration file (TOML or JSON), relative to the spec file; default: built-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_config: Option<PathBuf>,
    /// Inline overrides applied on top of the base configuration (any subset of its keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Value>,
    /// Cells per point (`cell.assembly.max_cells`); default: the base configuration's cap, or
    /// 64 when the base simulates every cell (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells_per_point: Option<u32>,
    /// Points per Parquet part file (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_per_part: Option<u32>,
    /// The swept fields.
    #[serde(rename = "param")]
    pub params: Vec<ParamSpec>,
}

impl SweepSpec {
    /// Parses a spec from TOML.
    pub fn from_toml(text: &str) -> Result<Self, SweepError> {
        toml::from_str(text).map_err(|e| SweepError::Spec(e.to_string()))
    }

    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::Io(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| SweepError::Spec(format!("{}: {e}", path.display())))
    }
}

/// A swept field after checking: its path, integer-ness and how its values are drawn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    /// Dotted path in the configuration.
    pub path: String,
    /// Column name in the dataset: the path with `.` replaced by `__`.
    pub column: String,
    /// The field holds an integer: values are rounded to the nearest integer.
    pub integer: bool,
    /// The spec entry.
    pub spec: ParamSpec,
}

/// A resolved sweep: base configuration, checked parameters, number of points.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The spec as given.
    pub spec: SweepSpec,
    /// Base configuration (file, inline overrides, cells per point, fixed start, threads = 1).
    pub base: PlantConfig,
    /// The swept fields, in spec order.
    pub params: Vec<Param>,
    /// Number of points.
    pub points: u64,
    /// Grid values per parameter (grid only).
    grid: Vec<Vec<f64>>,
    /// LHS strata permutation and offsets per parameter (LHS only): `[param][point]`.
    lhs: Vec<Vec<f64>>,
}

/// One point of the design.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Index in the design, 0-based.
    pub index: u64,
    /// Plant seed of this point.
    pub seed: u64,
    /// Value of each swept field, in parameter order.
    pub values: Vec<f64>,
}

fn spec_err(path: &str, msg: impl std::fmt::Display) -> SweepError {
    SweepError::Spec(format!("param {path}: {msg}"))
}

/// The JSON value at a dotted path, or an error naming the first missing key.
fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value, SweepError> {
    let mut at = root;
    let mut walked = String::new();
    for key in path.split('.') {
        let obj = at.as_object().ok_or_else(|| SweepError::UnknownField {
            path: path.into(),
            reason: format!("`{walked}` is not a section"),
        })?;
        at = obj.get(key).ok_or_else(|| {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            let parent = if walked.is_empty() { "the configuration".to_string() } else { format!("`{walked}`") };
            SweepError::UnknownField {
                path: path.into(),
                reason: format!("{parent} has no key `{key}` (keys: {})", keys.join(", ")),
            }
        })?;
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(key);
    }
    Ok(at)
}

fn set(root: &mut Value, path: &str, v: Value) {
    let mut at = root;
    for key in path.split('.') {
        at = &mut at[key];
    }
    *at = v;
}

fn linspace(min: f64, max: f64, num: u32) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![min],
        n => (0..n).map(|k| min + (max - min) * k as f64 / (n - 1) as f64).collect(),
    }
}

fn finite(path: &str, name: &str, v: Option<f64>) -> Result<f64, SweepError> {
    match v {
        Some(x) if x.is_finite() => Ok(x),
        Some(x) => Err(spec_err(path, format!("`{name}` = {x} is not a finite number"))),
        None => Err(spec_err(path, format!("`{name}` is required"))),
    }
}

fn range(p: &ParamSpec) -> Result<(f64, f64), SweepError> {
    let (lo, hi) = (finite(&p.path, "min", p.min)?, finite(&p.path, "max", p.max)?);
    if lo > hi {
        return Err(spec_err(&p.path, format!("min {lo} is greater than max {hi}")));
    }
    Ok((lo, hi))
}

impl Sweep {
    /// Checks the spec against the base configuration. `spec_dir` resolves `base_config`.
    pub fn resolve(spec: SweepSpec, spec_dir: &Path) -> Result<Self, SweepError> {
        let mut base = match &spec.base_config {
            Some(file) => load_config(&spec_dir.join(file))?,
            None => PlantConfig::default(),
        };
        if let Some(overrides) = &spec.base {
            base = base.merged(overrides.clone()).map_err(|e| SweepError::Base(e.to_string()))?;
        }
        base.cell.assembly.max_cells = match spec.cells_per_point {
            Some(n) => n,
            None if base.cell.assembly.max_cells == 0 => DEFAULT_CELLS_PER_POINT,
            None => base.cell.assembly.max_cells,
        };
        if base.plant.start.is_empty() {
            base.plant.start = DEFAULT_START.into();
        }
        base.plant.threads = 1;
        base.plant.speed = cellfab_plant::Speed::Max;
        base.validate().map_err(|e| SweepError::Base(e.to_string()))?;
        if spec.params.is_empty() {
            return Err(SweepError::Spec("the spec sweeps no field: add at least one [[param]]".into()));
        }
        if spec.points_per_part == Some(0) {
            return Err(SweepError::Spec("points_per_part = 0: must be at least 1".into()));
        }
        let base_json = serde_json::to_value(&base).map_err(|e| SweepError::Base(e.to_string()))?;
        let mut params = Vec::new();
        for p in &spec.params {
            let field = lookup(&base_json, &p.path)?;
            let integer = match field {
                Value::Number(n) => n.is_u64() || n.is_i64(),
                other => {
                    return Err(SweepError::UnknownField {
                        path: p.path.clone(),
                        reason: format!("it holds {other}, not a number; only numeric fields can be swept"),
                    })
                }
            };
            if params.iter().any(|q: &Param| q.path == p.path) {
                return Err(spec_err(&p.path, "appears twice"));
            }
            params.push(Param { path: p.path.clone(), column: p.path.replace('.', "__"), integer, spec: p.clone() });
        }
        let mut sweep = Sweep { spec, base, params, points: 0, grid: Vec::new(), lhs: Vec::new() };
        sweep.design()?;
        Ok(sweep)
    }

    fn design(&mut self) -> Result<(), SweepError> {
        let method = self.spec.method;
        let points = self.spec.points;
        match method {
            Method::Grid => {
                if points.is_some() {
                    return Err(SweepError::Spec(
                        "`points` does not apply to a grid: its size is the product of the value counts".into(),
                    ));
                }
                let mut total: u64 = 1;
                for p in &self.params {
                    let s = &p.spec;
                    let values = match (&s.values, s.num) {
                        (Some(v), None) if s.min.is_none() && s.max.is_none() => v.clone(),
                        (None, Some(n)) => {
                            let (lo, hi) = range(s)?;
                            linspace(lo, hi, n)
                        }
                        _ => return Err(spec_err(&p.path, "a grid needs either `values` or `min`, `max` and `num`")),
                    };
                    if values.is_empty() {
                        return Err(spec_err(&p.path, "no values"));
                    }
                    if let Some(x) = values.iter().find(|x| !x.is_finite()) {
                        return Err(spec_err(&p.path, format!("value {x} is not a finite number")));
                    }
                    total = total
                        .checked_mul(values.len() as u64)
                        .ok_or_else(|| SweepError::Spec("the grid has more than 2^64 points".into()))?;
                    self.grid.push(values);
                }
                self.points = total;
            }
            Method::Lhs | Method::MonteCarlo => {
                let n = points.filter(|&n| n > 0).ok_or_else(|| {
                    SweepError::Spec(format!("`points` (at least 1) is required for method {method:?}"))
                })?;
                self.points = n;
                for (dim, p) in self.params.iter().enumerate() {
                    let s = &p.spec;
                    if s.values.is_some() || s.num.is_some() {
                        return Err(spec_err(&p.path, "`values` and `num` apply only to a grid"));
                    }
                    match (method, s.distribution.unwrap_or(Distribution::Uniform)) {
                        (_, Distribution::Uniform) => {
                            range(s)?;
                        }
                        (Method::Lhs, d) => {
                            return Err(spec_err(&p.path, format!("a Latin hypercube samples ranges, not {d:?}")))
                        }
                        (_, Distribution::Normal) => {
                            finite(&p.path, "mean", s.mean)?;
                            if finite(&p.path, "sd", s.sd)? < 0.0 {
                                return Err(spec_err(&p.path, "`sd` must be ≥ 0"));
                            }
                        }
                        (_, Distribution::Lognormal) => {
                            if finite(&p.path, "median", s.median)? <= 0.0 {
                                return Err(spec_err(&p.path, "`median` must be > 0"));
                            }
                            if finite(&p.path, "sigma_ln", s.sigma_ln)? < 0.0 {
                                return Err(spec_err(&p.path, "`sigma_ln` must be ≥ 0"));
                            }
                        }
                    }
                    if method == Method::Lhs {
                        let usize_n = usize::try_from(n).map_err(|_| SweepError::Spec("too many points".into()))?;
                        self.lhs.push(lhs_column(self.spec.seed, dim as u64, usize_n));
                    }
                }
            }
        }
        Ok(())
    }

    /// Point `index` of the design (its values and plant seed), not yet validated.
    pub fn point(&self, index: u64) -> Point {
        let seed = derive_seed(self.spec.seed, &[POINT_STREAM, index]);
        let values: Vec<f64> = match self.spec.method {
            Method::Grid => {
                let mut rest = index;
                let mut v = vec![0.0; self.grid.len()];
                for (k, values) in self.grid.iter().enumerate().rev() {
                    let n = values.len() as u64;
                    v[k] = values[(rest % n) as usize];
                    rest /= n;
                }
                v
            }
            Method::Lhs => self
                .params
                .iter()
                .zip(&self.lhs)
                .map(|(p, col)| {
                    let (lo, hi) = (p.spec.min.unwrap_or(0.0), p.spec.max.unwrap_or(0.0));
                    lo + (hi - lo) * col[index as usize]
                })
                .collect(),
            Method::MonteCarlo => {
                let mut rng = stream(self.spec.seed, &[DESIGN_STREAM, index]);
                self.params
                    .iter()
                    .map(|p| {
                        let s = &p.spec;
                        let x = match s.distribution.unwrap_or(Distribution::Uniform) {
                            Distribution::Uniform => {
                                let (lo, hi) = (s.min.unwrap_or(0.0), s.max.unwrap_or(0.0));
                                lo + (hi - lo) * uniform(&mut rng)
                            }
                            Distribution::Normal => s.mean.unwrap_or(0.0) + s.sd.unwrap_or(0.0) * normal(&mut rng),
                            Distribution::Lognormal => {
                                s.median.unwrap_or(1.0) * (s.sigma_ln.unwrap_or(0.0) * normal(&mut rng)).exp()
                            }
                        };
                        x.max(s.min.unwrap_or(f64::NEG_INFINITY)).min(s.max.unwrap_or(f64::INFINITY))
                    })
                    .collect()
            }
        };
        let values = values.into_iter().zip(&self.params).map(|(v, p)| if p.integer { v.round() } else { v }).collect();
        Point { index, seed, values }
    }

    /// The validated plant configuration of a point; the error names the point and the field.
    pub fn config(&self, point: &Point) -> Result<PlantConfig, SweepError> {
        let mut json = serde_json::to_value(&self.base).map_err(|e| SweepError::Base(e.to_string()))?;
        for (p, &v) in self.params.iter().zip(&point.values) {
            let value = if p.integer {
                if v < 0.0 || v > u32::MAX as f64 {
                    return Err(SweepError::Point {
                        index: point.index,
                        message: format!("{} = {v}: must be a whole number ≥ 0", p.path),
                    });
                }
                Value::from(v as u64)
            } else {
                Value::from(v)
            };
            set(&mut json, &p.path, value);
        }
        let mut config: PlantConfig = serde_json::from_value(json)
            .map_err(|e| SweepError::Point { index: point.index, message: e.to_string() })?;
        config.plant.seed = point.seed;
        config.validate().map_err(|e| SweepError::Point { index: point.index, message: e.to_string() })?;
        Ok(config)
    }
}

/// One LHS column: for point i, the position in [0, 1) of a random spot inside the stratum
/// that a random permutation gives it.
fn lhs_column(seed: u64, dim: u64, n: usize) -> Vec<f64> {
    let mut rng = stream(seed, &[DESIGN_STREAM, u64::MAX - dim]);
    let mut strata: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (uniform(&mut rng) * (i + 1) as f64) as usize;
        strata.swap(i, j.min(i));
    }
    strata.into_iter().map(|s| (s as f64 + uniform(&mut rng)) / n as f64).collect()
}

/// Loads a configuration file by extension (TOML or JSON).
pub fn load_config(path: &Path) -> Result<PlantConfig, SweepError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| SweepError::Base(format!("cannot read {}: {e}", path.display())))?;
    let config = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        PlantConfig::from_json_str(&text)
    } else {
        PlantConfig::from_toml_str(&text)
    };
    config.map_err(|e| SweepError::Base(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> Result<Sweep, SweepError> {
        Sweep::resolve(SweepSpec::from_toml(text)?, Path::new("."))
    }

    #[test]
    fn grid_enumerates_every_combination_last_parameter_fastest() {
        let s = sweep(
            r#"seed = 1
method = "grid"
[[param]]
path = "cathode.calendaring.line_load_n_m"
values = [5e5, 6e5]
[[param]]
path = "anode.coating.coating_speed_m_s"
min = 0.2
max = 0.4
num = 3
"#,
        )
        .unwrap();
        assert_eq!(s.points, 6);
        let v: Vec<Vec<f64>> = (0..6).map(|i| s.point(i).values).collect();
        assert_eq!(v[0], vec![5e5, 0.2]);
        assert_eq!(v[1][1], 0.30000000000000004);
        assert_eq!(v[5], vec![6e5, 0.4]);
    }

    #[test]
    fn lhs_puts_one_point_in_every_stratum_of_every_parameter() {
        let s = sweep(
            r#"seed = 3
method = "lhs"
points = 10
[[param]]
path = "cathode.coating.coating_speed_m_s"
min = 0.1
max = 0.6
[[param]]
path = "cell.aging.temperature_degc"
min = 20
max = 30
"#,
        )
        .unwrap();
        for (k, (lo, hi)) in [(0.1, 0.6), (20.0, 30.0)].into_iter().enumerate() {
            let mut strata: Vec<usize> =
                (0..10).map(|i| (((s.point(i).values[k] - lo) / (hi - lo)) * 10.0) as usize).collect();
            strata.sort();
            assert_eq!(strata, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn monte_carlo_points_depend_only_on_seed_and_index() {
        let text = r#"seed = 9
method = "monte_carlo"
points = 50
[[param]]
path = "cathode.coating.coating_speed_m_s"
distribution = "normal"
mean = 0.3
sd = 0.5
min = 0.1
max = 0.5
[[param]]
path = "cell.aging.temperature_degc"
distribution = "lognormal"
median = 25
sigma_ln = 0.1
"#;
        let (a, b) = (sweep(text).unwrap(), sweep(text).unwrap());
        for i in 0..50 {
            let p = a.point(i);
            assert_eq!(p, b.point(i));
            assert!((0.1..=0.5).contains(&p.values[0]), "clamped: {p:?}");
            assert!(p.values[1] > 0.0);
            a.config(&p).unwrap();
        }
        assert_ne!(a.point(0).seed, a.point(1).seed);
    }

    #[test]
    fn unknown_field_names_the_missing_key() {
        let e =
            sweep("seed = 1\nmethod = \"grid\"\n[[param]]\npath = \"cathode.calendaring.line_lod\"\nvalues = [1]\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("cathode.calendaring.line_lod") && e.contains("no key `line_lod`"), "{e}");
    }

    #[test]
    fn out_of_range_value_names_point_field_and_range() {
        let s = sweep(
            "seed = 1\nmethod = \"grid\"\n[[param]]\npath = \"cathode.coating.coating_speed_m_s\"\nvalues = [0.3, 9]\n",
        )
        .unwrap();
        s.config(&s.point(0)).unwrap();
        let e = s.config(&s.point(1)).unwrap_err().to_string();
        assert!(
            e.contains("point 1") && e.contains("cathode.coating.coating_speed_m_s = 9") && e.contains("allowed"),
            "{e}"
        );
    }

    #[test]
    fn integer_fields_are_rounded() {
        let s = sweep("seed = 1\nmethod = \"lhs\"\npoints = 4\n[[param]]\npath = \"cell.assembly.max_cells\"\nmin = 8\nmax = 20\n")
            .unwrap();
        for i in 0..4 {
            let p = s.point(i);
            assert_eq!(p.values[0], p.values[0].round());
            assert_eq!(s.config(&p).unwrap().cell.assembly.max_cells as f64, p.values[0]);
        }
    }
}
