//! Two interleaved half circles ("two moons"), generated with the library's seeded RNG.
//! Shared by the flow and hybrid-model examples (`#[path]`-included).

use candle_core::{Device, Tensor};
use ppl::PplRng;

/// `n` points as `[x₀, y₀, x₁, y₁, …]` and their labels (0.0 / 1.0, alternating): class 0
/// on the upper half circle `(cos t, sin t)`, class 1 on the lower `(1 − cos t, 0.5 − sin t)`,
/// `t ~ U(0, π)`, plus `N(0, noise²)` on each coordinate, centred by `(−0.5, −0.25)`.
pub fn two_moons_points(rng: &mut PplRng, n: usize, noise: f64) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let t = std::f64::consts::PI * rng.uniform_open();
        let (x, y, label) = if i % 2 == 0 {
            (t.cos(), t.sin(), 0.0)
        } else {
            (1.0 - t.cos(), 0.5 - t.sin(), 1.0)
        };
        xs.push(x + noise * rng.standard_normal() - 0.5);
        xs.push(y + noise * rng.standard_normal() - 0.25);
        ys.push(label);
    }
    (xs, ys)
}

/// [`two_moons_points`] from a fresh generator seeded with `seed`, as tensors `[n, 2]`
/// and `[n]` (f64).
#[allow(dead_code)] // not every example that includes this file uses both forms
pub fn two_moons(n: usize, noise: f64, seed: u64) -> ppl::Result<(Tensor, Tensor)> {
    let (xs, ys) = two_moons_points(&mut PplRng::seed_from_u64(seed), n, noise);
    Ok((
        Tensor::from_vec(xs, (n, 2), &Device::Cpu)?,
        Tensor::from_vec(ys, n, &Device::Cpu)?,
    ))
}
