//! Element-wise kernels of the Bernoulli log-density written branch-free so that the
//! compiler vectorises them, compiled once per SIMD level by `pulp` and dispatched at run
//! time to the widest the CPU has (AVX-512, AVX2+FMA, ... ; plain scalar code otherwise).
//!
//! f32 uses polynomial `exp` and `ln(1 + u)` (below); f64 uses the standard library's
//! `exp`/`ln_1p` (scalar, exact to libm), as the f64 paths are for accuracy, not speed.

use pulp::{Arch, Simd, WithSimd};

/// `e^t` for `t ≤ 0` in f32: `t = n·ln2 + r` (Cody–Waite split of ln 2), `|r| ≤ ln2/2`,
/// `e^r` by the degree-6 minimax polynomial of Cephes' `expf`, `2^n` from the exponent
/// bits. Arguments below −87 are clamped (the result, ~1.6e-38, is then not subnormal but
/// is far below f32's epsilon relative to the `1 +` it is added to). Relative error
/// below 3·ε (f32's epsilon) on `[−87, 0]` (tested against f64).
#[inline(always)]
fn exp_nonpos(t: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let t = t.max(-87.0);
    let k = t * LOG2E + ROUND;
    let n = k - ROUND;
    let r = t - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // k's low mantissa bits hold n (k = 1.5·2^23 + n exactly): the exponent field of 2^n
    // by integer arithmetic on the bits (no float-to-int conversion, which would not
    // vectorise); n ∈ [−126, 0], so n + 127 ≥ 1 is a normal exponent.
    let n_int = k.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    y * scale
}

/// `ln(1 + u)` for `u ∈ [0, 1]` in f32: `ln(1 + u) = 2 atanh(s)`, `s = u / (2 + u) ≤ 1/3`,
/// by the atanh series to `s¹⁵` (truncation below 2e-8 relative, since `s² ≤ 1/9`).
#[inline(always)]
fn ln_1p_unit(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let z = s * s;
    let mut p = 1.0f32 / 15.0;
    p = p * z + 1.0 / 13.0;
    p = p * z + 1.0 / 11.0;
    p = p * z + 1.0 / 9.0;
    p = p * z + 1.0 / 7.0;
    p = p * z + 1.0 / 5.0;
    p = p * z + 1.0 / 3.0;
    p = p * z + 1.0;
    2.0 * s * p
}

/// `x·l − softplus(l) = x·l − max(l, 0) − ln(1 + e^{−|l|})`.
#[inline(always)]
fn log_prob_f32(l: f32, x: f32) -> f32 {
    let u = exp_nonpos(-l.abs());
    x * l - l.max(0.0) - ln_1p_unit(u)
}

/// `∂/∂l [x·l − softplus(l)] = x − σ(l)`, `σ(l) = 1/(1 + u)` for `l ≥ 0` and `u/(1 + u)`
/// otherwise, `u = e^{−|l|}` (never overflows).
#[inline(always)]
fn dlogits_f32(l: f32, x: f32) -> f32 {
    let u = exp_nonpos(-l.abs());
    let num = if l >= 0.0 { 1.0 } else { u };
    let d = x - num / (1.0 + u);
    // A NaN logit gives a NaN gradient (the clamp inside `exp_nonpos` would hide it).
    if l.is_nan() {
        l
    } else {
        d
    }
}

struct Forward<'a> {
    l: &'a [f32],
    x: &'a [f32],
}

impl WithSimd for Forward<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Vec<f32> {
        // A plain index loop over slices of one known length: the form the loop
        // vectoriser handles (iterator chains and fixed-size blocks stayed scalar here).
        let n = self.l.len().min(self.x.len());
        let (l, x) = (&self.l[..n], &self.x[..n]);
        let mut out = vec![0.0f32; n];
        for i in 0..n {
            out[i] = log_prob_f32(l[i], x[i]);
        }
        out
    }
}

struct Backward<'a> {
    l: &'a [f32],
    x: &'a [f32],
    g: &'a [f32],
}

impl WithSimd for Backward<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Vec<f32> {
        let n = self.l.len().min(self.x.len()).min(self.g.len());
        let (l, x, g) = (&self.l[..n], &self.x[..n], &self.g[..n]);
        let mut out = vec![0.0f32; n];
        for i in 0..n {
            out[i] = g[i] * dlogits_f32(l[i], x[i]);
        }
        out
    }
}

/// `x[i]·l[i] − softplus(l[i])` (f32, vectorised).
pub(crate) fn bernoulli_log_prob_f32(l: &[f32], x: &[f32]) -> Vec<f32> {
    Arch::new().dispatch(Forward { l, x })
}

/// `g[i]·(x[i] − σ(l[i]))` (f32, vectorised).
pub(crate) fn bernoulli_dlogits_f32(l: &[f32], x: &[f32], g: &[f32]) -> Vec<f32> {
    Arch::new().dispatch(Backward { l, x, g })
}

/// `x[i]·l[i] − softplus(l[i])` (f64, scalar libm).
pub(crate) fn bernoulli_log_prob_f64(l: &[f64], x: &[f64]) -> Vec<f64> {
    let it = l.iter().zip(x);
    it.map(|(&l, &x)| x * l - l.max(0.0) - (-l.abs()).exp().ln_1p())
        .collect()
}

/// `g[i]·(x[i] − σ(l[i]))` (f64, scalar libm).
pub(crate) fn bernoulli_dlogits_f64(l: &[f64], x: &[f64], g: &[f64]) -> Vec<f64> {
    let it = l.iter().zip(x).zip(g);
    it.map(|((&l, &x), &g)| {
        let u = (-l.abs()).exp();
        let num = if l >= 0.0 { 1.0 } else { u };
        g * (x - num / (1.0 + u))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_ln_1p_match_f64_references() {
        // A dense sweep of [−100, 0] (including the clamped region) for exp, and [0, 1]
        // for ln(1 + u); the bounds are in units of f32's epsilon relative to the value.
        let mut worst_exp = 0.0f64;
        for i in 0..=200_000 {
            let t = -(i as f64) * 87.0 / 200_000.0;
            let got = exp_nonpos(t as f32) as f64;
            let want = (t as f32 as f64).exp();
            worst_exp = worst_exp.max(((got - want) / want).abs());
        }
        assert!(
            worst_exp < 3.0 * f32::EPSILON as f64,
            "exp rel err {worst_exp}"
        );
        assert!(exp_nonpos(-1e4) < 1e-37 && exp_nonpos(-1e4) >= 0.0);
        assert_eq!(exp_nonpos(0.0), 1.0);
        let mut worst_ln = 0.0f64;
        for i in 0..=100_000 {
            let u = i as f64 / 100_000.0;
            let got = ln_1p_unit(u as f32) as f64;
            let want = (u as f32 as f64).ln_1p();
            let err = if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            };
            worst_ln = worst_ln.max(err);
        }
        assert!(
            worst_ln < 3.0 * f32::EPSILON as f64,
            "ln_1p rel err {worst_ln}"
        );
    }

    #[test]
    fn bernoulli_kernels_match_f64_closed_forms() {
        let ls: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.1).collect();
        for x in [0.0f32, 1.0, 0.25] {
            let xs = vec![x; ls.len()];
            let g = vec![1.5f32; ls.len()];
            let lp = bernoulli_log_prob_f32(&ls, &xs);
            let dl = bernoulli_dlogits_f32(&ls, &xs, &g);
            for i in 0..ls.len() {
                let l = ls[i] as f64;
                let x = x as f64;
                let softplus = l.max(0.0) + (-l.abs()).exp().ln_1p();
                let want = x * l - softplus;
                assert!(
                    (lp[i] as f64 - want).abs() <= 4e-7 * (1.0 + want.abs()),
                    "l {l}"
                );
                let sig = 1.0 / (1.0 + (-l).exp());
                assert!((dl[i] as f64 - 1.5 * (x - sig)).abs() < 1e-6, "l {l}");
            }
        }
    }
}
