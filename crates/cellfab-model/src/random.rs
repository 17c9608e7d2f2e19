//! Random streams and noise processes (MODELS.md §0.3).
//!
//! The plant derives one independent stream per (batch, line, stage, purpose[, cell]) from
//! the run's master seed with [`derive_seed`], so results are bit-identical whatever the
//! thread count or scheduling. Generator: ChaCha8 (`rand_chacha`); normal sampler: the
//! Ziggurat `StandardNormal` of `rand_distr`. Both are named in the run manifest.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The generator every stream uses.
pub type StreamRng = ChaCha8Rng;

/// Name of the generator and sampler, for manifests.
pub const GENERATOR_NAME: &str = "ChaCha8 (rand_chacha 0.10), StandardNormal Ziggurat (rand_distr 0.6)";

/// What a stream is used for; process variability and sensor noise never share a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Purpose {
    /// Changes the true product: drifts, profiles, defect arrivals.
    Process = 1,
    /// Changes only measured values.
    Sensor = 2,
}

/// SplitMix64 finaliser: a strong 64-bit mixer.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives a child seed from a parent seed and a path of identifiers.
pub fn derive_seed(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix(seed), |acc, &p| mix(acc ^ mix(p.wrapping_add(0x5851_F42D_4C95_7F2D))))
}

/// A stream seeded from `derive_seed(seed, path)`.
pub fn stream(seed: u64, path: &[u64]) -> StreamRng {
    StreamRng::seed_from_u64(derive_seed(seed, path))
}

/// One standard normal draw.
#[inline]
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// One uniform draw in [0, 1).
#[inline]
pub fn uniform<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 53 random bits -> [0, 1)
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A Poisson-distributed count with mean `lambda` (inversion for small means, normal
/// approximation above 50 — defect arrivals per segment are small).
pub fn poisson<R: Rng + ?Sized>(rng: &mut R, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 50.0 {
        let v = lambda + lambda.sqrt() * normal(rng);
        return v.round().max(0.0) as u32;
    }
    let l = (-lambda).exp();
    let mut k = 0u32;
    let mut p = 1.0;
    loop {
        p *= uniform(rng);
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// AR(1) process `z_{k+1} = ρ·z_k + σ·√(1 − ρ²)·ξ_k`, `z_0 ~ N(0, σ²)` (an
/// Ornstein–Uhlenbeck discretisation; MODELS.md §0.3). With σ = 0 it stays at 0 and draws
/// nothing, so deterministic mode consumes no random numbers.
#[derive(Clone, Debug)]
pub struct Ar1 {
    sigma: f64,
    rho: f64,
    innovation: f64,
    value: f64,
}

impl Ar1 {
    /// A process with standard deviation `sigma`, correlation length `correlation` and
    /// sampling spacing `spacing` (same unit as the correlation length).
    pub fn new<R: Rng + ?Sized>(sigma: f64, correlation: f64, spacing: f64, rng: &mut R) -> Self {
        let rho = if correlation > 0.0 { (-spacing / correlation).exp() } else { 0.0 };
        let value = if sigma > 0.0 { sigma * normal(rng) } else { 0.0 };
        Self { sigma, rho, innovation: sigma * (1.0 - rho * rho).sqrt(), value }
    }

    /// Current value.
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Advances one spacing and returns the new value.
    #[inline]
    pub fn step<R: Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        if self.sigma > 0.0 {
            self.value = self.rho * self.value + self.innovation * normal(rng);
        }
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_streams_differ_by_path_and_repeat_by_seed() {
        let a = derive_seed(7, &[1, 2, 3]);
        assert_eq!(a, derive_seed(7, &[1, 2, 3]));
        assert_ne!(a, derive_seed(7, &[1, 2, 4]));
        assert_ne!(a, derive_seed(8, &[1, 2, 3]));
        assert_ne!(derive_seed(7, &[1, 2]), derive_seed(7, &[2, 1]));
    }

    #[test]
    fn ar1_has_requested_spread() {
        let mut rng = stream(1, &[]);
        let mut p = Ar1::new(0.5, 10.0, 1.0, &mut rng);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let v = p.step(&mut rng);
            s += v;
            s2 += v * v;
        }
        let sd = (s2 / n as f64 - (s / n as f64).powi(2)).sqrt();
        assert!((sd - 0.5).abs() < 0.03, "sd {sd}");
    }

    #[test]
    fn poisson_mean_matches() {
        let mut rng = stream(3, &[]);
        let n = 50_000;
        let total: u64 = (0..n).map(|_| poisson(&mut rng, 2.5) as u64).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 2.5).abs() < 0.05, "mean {mean}");
    }
}
