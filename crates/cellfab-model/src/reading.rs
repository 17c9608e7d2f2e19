//! The measurement model (MODELS.md §0.4): every measured signal keeps its true value and
//! what the sensor reported.

use crate::random::normal;
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A measured signal: the true value and the sensor's reading (`None` on dropout).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reading {
    /// True value (unit of the field that holds the reading).
    #[serde(rename = "true")]
    pub true_value: f64,
    /// What the sensor reported; `None` when the sensor dropped out.
    #[serde(rename = "meas")]
    pub measured: Option<f64>,
}

impl Reading {
    /// A perfect reading (measured = true).
    #[inline]
    pub fn exact(value: f64) -> Self {
        Self { true_value: value, measured: Some(value) }
    }

    /// The measured value, or the true value when the sensor dropped out (what the legacy
    /// layout writes; a dropout is visible in the columnar outputs).
    #[inline]
    pub fn value(&self) -> f64 {
        self.measured.unwrap_or(self.true_value)
    }
}

/// A sensor: `m = true·(1 + g) + b + σ·ξ`, `σ = √(σ_a² + (σ_r·|true|)²)`, quantised to `q`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sensor {
    /// Gain error g (fraction).
    pub gain_frac: f64,
    /// Bias b (unit of the signal).
    pub bias: f64,
    /// Absolute noise σ_a (unit of the signal).
    pub sigma_abs: f64,
    /// Relative noise σ_r (fraction of |true|).
    pub sigma_rel: f64,
    /// Resolution q (0 = no quantisation).
    pub resolution: f64,
}

impl Sensor {
    /// A sensor with absolute noise only.
    pub const fn absolute(sigma_abs: f64) -> Self {
        Self { gain_frac: 0.0, bias: 0.0, sigma_abs, sigma_rel: 0.0, resolution: 0.0 }
    }

    /// A sensor with relative noise only.
    pub const fn relative(sigma_rel: f64) -> Self {
        Self { gain_frac: 0.0, bias: 0.0, sigma_abs: 0.0, sigma_rel, resolution: 0.0 }
    }

    /// Measures `true_value`. With `noise` off the reading is exact and no number is drawn;
    /// with it on exactly one normal draw is consumed.
    #[inline]
    pub fn measure<R: Rng + ?Sized>(&self, true_value: f64, noise: bool, rng: &mut R) -> Reading {
        if !noise {
            return Reading::exact(true_value);
        }
        let sigma = (self.sigma_abs.powi(2) + (self.sigma_rel * true_value.abs()).powi(2)).sqrt();
        let mut m = true_value * (1.0 + self.gain_frac) + self.bias + sigma * normal(rng);
        if self.resolution > 0.0 {
            m = self.resolution * (m / self.resolution).round();
        }
        Reading { true_value, measured: Some(m) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::stream;

    #[test]
    fn noise_off_is_exact_and_quantisation_applies() {
        let mut rng = stream(1, &[]);
        let s = Sensor { resolution: 0.01, ..Sensor::absolute(0.5) };
        assert_eq!(s.measure(1.234, false, &mut rng).value(), 1.234);
        let r = s.measure(1.234, true, &mut rng);
        let m = r.measured.unwrap();
        assert!(((m / 0.01).round() * 0.01 - m).abs() < 1e-12);
        assert_eq!(r.true_value, 1.234);
    }
}
