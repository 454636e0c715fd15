//! An exact Gaussian process regression on 1-D inputs (the baseline of
//! `hybrid_heteroscedastic`): RBF kernel `k(x, x') = s² exp(−(x − x')² / 2ℓ²)` plus noise
//! `σ_n² I`, hyperparameters `(ℓ, s, σ_n)` by maximising the log marginal likelihood.
//!
//! The targets are standardised first (mean and sd of the training targets; the
//! predictions are mapped back). The `n × n` Cholesky factor is computed on the host in f64
//! (`n` is a few hundred, so one factorisation is a few ms: plain loops, exact, no
//! autodiff needed because the search is derivative-free). The search: a coarse grid over
//! `log ℓ`, `log s`, `log σ_n`, then a compass (pattern) search from the best grid point,
//! halving the step until it is below 0.01 in log space.

use ppl::prelude::*;

/// A fitted exact GP (see the module docs).
#[derive(Debug, Clone)]
pub struct Gp {
    x: Vec<f64>,
    /// Lower Cholesky factor of `K + σ_n² I` (row-major, `n × n`).
    l: Vec<f64>,
    /// `(K + σ_n² I)⁻¹ y` (standardised targets).
    alpha: Vec<f64>,
    /// Lengthscale `ℓ`.
    pub lengthscale: f64,
    /// Signal sd `s` (in units of the targets).
    pub signal_sd: f64,
    /// Noise sd `σ_n` (in units of the targets).
    pub noise_sd: f64,
    /// The maximised log marginal likelihood (of the original, unstandardised targets).
    pub log_marginal: f64,
    y_mean: f64,
    y_sd: f64,
}

fn rbf(a: f64, b: f64, ell: f64, s: f64) -> f64 {
    s * s * (-(a - b) * (a - b) / (2.0 * ell * ell)).exp()
}

/// Lower Cholesky factor of the SPD matrix `a` (`n × n`, row-major), or `None` when a
/// pivot is not positive.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            for k in 0..j {
                s -= ri[k] * rj[k];
            }
            l[i * n + j] = s / d;
        }
    }
    Some(l)
}

/// Solves `L u = b` (forward substitution).
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut u = b.to_vec();
    for i in 0..n {
        let mut s = u[i];
        for k in 0..i {
            s -= l[i * n + k] * u[k];
        }
        u[i] = s / l[i * n + i];
    }
    u
}

/// Solves `Lᵀ u = b` (back substitution).
fn backward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut u = b.to_vec();
    for i in (0..n).rev() {
        let mut s = u[i];
        for k in i + 1..n {
            s -= l[k * n + i] * u[k];
        }
        u[i] = s / l[i * n + i];
    }
    u
}

/// `(L, α, log marginal likelihood)` of standardised targets `y` at log-hyperparameters
/// `p = (log ℓ, log s, log σ_n)`; `None` when the matrix is not numerically SPD.
fn evaluate(x: &[f64], y: &[f64], p: [f64; 3]) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    let n = x.len();
    let (ell, s, sn) = (p[0].exp(), p[1].exp(), p[2].exp());
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = rbf(x[i], x[j], ell, s);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
        k[i * n + i] += sn * sn;
    }
    let l = cholesky(&k, n)?;
    let u = forward(&l, n, y);
    let alpha = backward(&l, n, &u);
    let quad: f64 = u.iter().map(|v| v * v).sum();
    let logdet: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
    let lml = -0.5 * quad - logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    Some((l, alpha, lml))
}

impl Gp {
    /// Fits the GP to inputs `x` and targets `y` (same length ≥ 2, finite).
    pub fn fit(x: &[f64], y: &[f64]) -> Result<Gp> {
        const CTX: &str = "Gp::fit";
        if x.len() != y.len() || x.len() < 2 {
            return Err(PplError::invalid_argument(
                CTX,
                format!(
                    "need as many inputs as targets, at least 2: got {} and {}",
                    x.len(),
                    y.len()
                ),
            ));
        }
        if x.iter().chain(y).any(|v| !v.is_finite()) {
            return Err(PplError::invalid_argument(
                CTX,
                "non-finite inputs or targets",
            ));
        }
        let n = y.len() as f64;
        let y_mean = y.iter().sum::<f64>() / n;
        let y_sd = (y.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-12);
        let ys: Vec<f64> = y.iter().map(|v| (v - y_mean) / y_sd).collect();
        let score = |p: [f64; 3]| evaluate(x, &ys, p).map_or(f64::NEG_INFINITY, |e| e.2);
        // Coarse grid (in units of the standardised targets and the raw inputs).
        let mut best = ([0.0; 3], f64::NEG_INFINITY);
        for i in 0..9 {
            for j in 0..5 {
                for k in 0..9 {
                    let p = [
                        (0.1f64).ln() + i as f64 * (100.0f64).ln() / 8.0, // ℓ: 0.1 .. 10
                        (0.3f64).ln() + j as f64 * (10.0f64).ln() / 4.0,  // s: 0.3 .. 3
                        (0.01f64).ln() + k as f64 * (100.0f64).ln() / 8.0, // σ_n: 0.01 .. 1
                    ];
                    let v = score(p);
                    if v > best.1 {
                        best = (p, v);
                    }
                }
            }
        }
        // Compass search from the best grid point.
        let mut step = 0.5;
        while step > 0.01 {
            let mut moved = false;
            for axis in 0..3 {
                for sign in [-1.0, 1.0] {
                    let mut p = best.0;
                    p[axis] += sign * step;
                    let v = score(p);
                    if v > best.1 {
                        best = (p, v);
                        moved = true;
                    }
                }
            }
            if !moved {
                step *= 0.5;
            }
        }
        let (l, alpha, lml) = evaluate(x, &ys, best.0).ok_or_else(|| {
            PplError::invalid_argument(CTX, "no hyperparameters gave a positive-definite kernel")
        })?;
        Ok(Gp {
            x: x.to_vec(),
            l,
            alpha,
            lengthscale: best.0[0].exp(),
            signal_sd: best.0[1].exp() * y_sd,
            noise_sd: best.0[2].exp() * y_sd,
            // The standardisation is an affine change of variables: subtract n log(sd).
            log_marginal: lml - n * y_sd.ln(),
            y_mean,
            y_sd,
        })
    }

    /// The predictive mean and sd of a new target `y*` (noise included) at each of `xs`.
    pub fn predict(&self, xs: &[f64]) -> Vec<(f64, f64)> {
        let n = self.x.len();
        let (ell, s, sn) = (
            self.lengthscale,
            self.signal_sd / self.y_sd,
            self.noise_sd / self.y_sd,
        );
        xs.iter()
            .map(|&t| {
                let ks: Vec<f64> = self.x.iter().map(|&xi| rbf(t, xi, ell, s)).collect();
                let mean: f64 = ks.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
                let v = forward(&self.l, n, &ks);
                let var = (s * s - v.iter().map(|a| a * a).sum::<f64>()).max(0.0) + sn * sn;
                (self.y_mean + self.y_sd * mean, self.y_sd * var.sqrt())
            })
            .collect()
    }
}
