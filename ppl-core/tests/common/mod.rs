//! Helpers shared by the ppl-core integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use ppl_core::PplRng;

pub fn t(v: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

pub fn t1(v: &[f64], dtype: DType) -> Tensor {
    t(v, &[v.len()], dtype)
}

pub fn s(v: f64) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

pub fn host(x: &Tensor) -> Vec<f64> {
    x.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `n` uniforms in (lo, hi) from a seeded stream.
pub fn unif(rng: &mut PplRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|_| lo + (hi - lo) * rng.uniform_open())
        .collect()
}

/// `n` log-uniforms in (lo, hi).
pub fn log_unif(rng: &mut PplRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    unif(rng, n, lo.ln(), hi.ln())
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// Asserts `|got - want| <= tol * max(1, |want|)` element-wise (equal infinities pass).
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g == w {
            continue;
        }
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

pub const DTYPES: [(DType, f64); 2] = [(DType::F64, 1e-10), (DType::F32, 2e-4)];

/// log N(x; m, sd), the closed form.
pub fn lnorm(x: f64, m: f64, sd: f64) -> f64 {
    -0.5 * ((x - m) / sd).powi(2) - sd.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// A scalar tensor's value as f64.
pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}
pub mod flow_checks;
