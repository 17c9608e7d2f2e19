//! `exp` of a few arguments at once, for the cell model's hot loops (MODELS.md §12.2: the
//! OCP fits, the SEI gate and the SOC factor cost nine `exp`s per integration step of every
//! cell in formation).
//!
//! [`exp_n`] evaluates `N` exponentials side by side with a branch-free kernel (Cody–Waite
//! reduction `x = n·ln 2 + r`, the degree-13 Taylor polynomial of `exp(r)` by Estrin's
//! scheme, `2ⁿ` built from its bits) that the compiler turns into packed instructions.
//! Every multiply-add is a fused `mul_add`, so the result is the same bit for bit on every
//! x86-64 processor: with AVX2 and FMA (run-time detection) four lanes per instruction; on
//! an older processor the same arithmetic through libm's correctly rounded `fma`, slowly.
//! Accuracy: within 2 ulp of the exact value (unit test against libm over the domain).
//! Arguments outside ±[`MAX_PACKED_ARG`] (and NaN) take libm's `exp`, so overflow to ∞,
//! underflow to 0 and NaN behave as usual.

/// Largest |x| the packed kernel evaluates; beyond it libm does (2ⁿ stays a normal number).
pub const MAX_PACKED_ARG: f64 = 700.0;

const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split into a head with trailing zero bits (so `n·LN2_HI` is exact for |n| < 2¹¹)
/// and the rest.
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1.5·2⁵²: adding it rounds to an integer held in the low bits of the mantissa.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;

/// `1/k!` for k = 0…13.
const C: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
];

/// `exp(x)` for |x| ≤ [`MAX_PACKED_ARG`] (other arguments give a finite, wrong value that
/// [`exp_n`] replaces).
#[inline(always)]
fn exp_packed(x: f64) -> f64 {
    let x = x.clamp(-MAX_PACKED_ARG, MAX_PACKED_ARG);
    let t = x.mul_add(LOG2_E, ROUND_SHIFT);
    let n = t - ROUND_SHIFT;
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = C[1].mul_add(r, C[0]);
    let p23 = C[3].mul_add(r, C[2]);
    let p45 = C[5].mul_add(r, C[4]);
    let p67 = C[7].mul_add(r, C[6]);
    let p89 = C[9].mul_add(r, C[8]);
    let p1011 = C[11].mul_add(r, C[10]);
    let p1213 = C[13].mul_add(r, C[12]);
    let q0 = p23.mul_add(r2, p01);
    let q1 = p67.mul_add(r2, p45);
    let q2 = p1011.mul_add(r2, p89);
    let s0 = q1.mul_add(r4, q0);
    let s1 = p1213.mul_add(r4, q2);
    let p = s1.mul_add(r8, s0);
    // the low bits of t hold n + 2⁵¹; 2ⁿ = (n + 1023) << 52
    let n_int = (t.to_bits() as i64).wrapping_sub(ROUND_SHIFT.to_bits() as i64);
    let scale = f64::from_bits((n_int.wrapping_add(1023) as u64) << 52);
    p * scale
}

#[inline(always)]
fn exp_n_lanes<const N: usize>(x: [f64; N]) -> [f64; N] {
    let mut out = [0.0; N];
    for (o, &x) in out.iter_mut().zip(&x) {
        *o = exp_packed(x);
    }
    let mut outside = false;
    for x in &x {
        outside |= x.is_nan() | (x.abs() > MAX_PACKED_ARG);
    }
    if outside {
        exp_outside(&mut out, &x);
    }
    out
}

/// The lanes of [`exp_n`] outside the packed kernel's domain, by libm. Out of line and
/// cold: otherwise the compiler calls libm for every lane and keeps one of the results.
#[cold]
#[inline(never)]
fn exp_outside(out: &mut [f64], x: &[f64]) {
    for (o, x) in out.iter_mut().zip(x) {
        if x.is_nan() || x.abs() > MAX_PACKED_ARG {
            *o = x.exp();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_n_avx2<const N: usize>(x: [f64; N]) -> [f64; N] {
    exp_n_lanes(x)
}

/// True where the processor has AVX2 and FMA (detected once, then a load): hot loops are
/// compiled a second time for them (`#[target_feature(enable = "avx2,fma")]`) and chosen
/// with this. Results are the same bits either way: Rust never fuses a multiply and an add
/// on its own, and every `mul_add` is fused on both paths.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `[exp(x₀), …, exp(x_{N−1})]`, within 2 ulp, the same bits on every processor (see the
/// module documentation).
#[inline(always)]
pub fn exp_n<const N: usize>(x: [f64; N]) -> [f64; N] {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the processor has AVX2 and FMA, checked just above.
        return unsafe { exp_n_avx2(x) };
    }
    exp_n_lanes(x)
}

/// `exp(x)` by the kernel of [`exp_n`] (one lane).
#[inline]
pub fn exp(x: f64) -> f64 {
    exp_n([x])[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs() * f64::EPSILON)
    }

    #[test]
    fn within_two_ulp_of_libm_over_the_domain() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -MAX_PACKED_ARG + 2.0 * MAX_PACKED_ARG * i as f64 / 200_000.0;
            let xs = [x, x * 1e-3, x * 1e-6, -x * 0.0731];
            let got = exp_n(xs);
            for (g, x) in got.iter().zip(xs) {
                worst = worst.max(ulps(*g, x.exp()));
            }
        }
        // in units of ε·|exp(x)|, i.e. at most 2 ulp; libm itself is within 1 ulp
        assert!(worst <= 2.0, "worst {worst} ulp against libm");
    }

    #[test]
    fn packed_and_one_lane_agree_bit_for_bit() {
        let xs: [f64; 8] = [-39.3631 * 0.3, 17.2, -0.5, 0.0, 1e-300, -700.0, 699.9, 3.3];
        let packed = exp_n(xs);
        for (p, x) in packed.iter().zip(xs) {
            assert_eq!(p.to_bits(), exp_n_lanes([x])[0].to_bits(), "{x}");
            assert_eq!(p.to_bits(), exp(x).to_bits(), "{x}");
        }
    }

    #[test]
    fn edges_behave_like_libm() {
        let xs = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 710.0, -746.0, 709.5, -720.0, 0.0];
        let got = exp_n(xs);
        assert!(got[0].is_nan());
        assert_eq!(got[1], f64::INFINITY);
        assert_eq!(got[2], 0.0);
        assert_eq!(got[3], f64::INFINITY);
        assert_eq!(got[4], 0.0);
        assert_eq!(got[5], 709.5f64.exp());
        assert_eq!(got[6], (-720.0f64).exp());
        assert_eq!(got[7], 1.0);
    }
}
