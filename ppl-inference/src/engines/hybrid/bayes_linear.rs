//! A Bayesian linear head: the conjugate posterior on fixed flow features.

use candle_core::{DType, Device, Tensor};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ppl_core::{PplError, Result};

/// Bayesian linear regression on features `φ = [z, 1]`: prior `β ~ N(0, α⁻¹ I)`, likelihood
/// `y ~ N(φᵀβ, σ²)`. The posterior is Gaussian in closed form,
/// `A = α I + Φᵀ Φ / σ²`, `Σ = A⁻¹`, `μ = Σ Φᵀ y / σ²`, and so is the predictive:
/// `y* | z* ~ N(φ*ᵀ μ, σ² + φ*ᵀ Σ φ*)`, whose variance grows where the features leave the
/// span of the training features (the Bayesian DIGLM of Nalisnick et al. 2019). Computed
/// in f64 on the host with faer; the features are detached (fit it after training the flow,
/// e.g. with `σ` from a [`LinearGaussian`](super::LinearGaussian) head).
#[derive(Debug, Clone)]
pub struct BayesianLinear {
    /// Posterior covariance `Σ` `[P, P]` (`P = D + 1`).
    cov: Mat<f64>,
    /// Posterior mean `μ` `[P]`.
    mean: Vec<f64>,
    alpha: f64,
    sigma: f64,
    evidence: f64,
}

/// Rows of `z` `[N, D]` as host vectors.
fn rows(z: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(z.detach()
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec2()?)
}

impl BayesianLinear {
    /// The posterior given features `z` `[N, D]`, targets `y` `[N]` (or `[N, 1]`), prior
    /// precision `alpha > 0` and noise scale `sigma > 0`.
    pub fn fit(z: &Tensor, y: &Tensor, alpha: f64, sigma: f64) -> Result<Self> {
        const CTX: &str = "BayesianLinear::fit";
        let n = match z.dims() {
            [n, _] if *n > 0 => *n,
            dims => {
                return Err(PplError::invalid_argument(
                    CTX,
                    format!("features must be [N, D] with N ≥ 1, got {dims:?}"),
                ))
            }
        };
        let y: Vec<f64> = match y.dims() {
            [m] | [m, 1] if *m == n => y.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
            dims => {
                return Err(PplError::invalid_argument(
                    CTX,
                    format!(
                        "targets must be [{n}] or [{n}, 1] for features {:?}, got {dims:?}",
                        z.dims()
                    ),
                ))
            }
        };
        for (name, v) in [("alpha", alpha), ("sigma", sigma)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(PplError::invalid_argument(
                    CTX,
                    format!("`{name}` must be positive and finite, got {v}"),
                ));
            }
        }
        let z = rows(z)?;
        if z.iter().flatten().chain(&y).any(|v| !v.is_finite()) {
            return Err(PplError::invalid_argument(
                CTX,
                "non-finite features or targets",
            ));
        }
        let p = z[0].len() + 1;
        let phi = Mat::from_fn(n, p, |i, j| if j + 1 < p { z[i][j] } else { 1.0 });
        let s2 = sigma * sigma;
        let a = Mat::from_fn(p, p, |i, j| {
            let g: f64 = (0..n).map(|r| phi[(r, i)] * phi[(r, j)]).sum();
            g / s2 + if i == j { alpha } else { 0.0 }
        });
        let rhs = Mat::from_fn(p, 1, |i, _| {
            (0..n).map(|r| phi[(r, i)] * y[r]).sum::<f64>() / s2
        });
        let llt = a.llt(Side::Lower).map_err(|e| {
            PplError::invalid_argument(
                CTX,
                format!("posterior precision not positive definite: {e:?}"),
            )
        })?;
        let mu = llt.solve(&rhs);
        let cov = llt.solve(Mat::<f64>::identity(p, p));
        let mean: Vec<f64> = (0..p).map(|i| mu[(i, 0)]).collect();
        // log p(y) = −N/2 log 2πσ² + P/2 log α − ½ log|A| − ½ (‖y‖²/σ² − μᵀ A μ).
        let l = llt.L();
        let logdet: f64 = (0..p).map(|i| 2.0 * l[(i, i)].ln()).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        let mam: f64 = (0..p).map(|i| mean[i] * rhs[(i, 0)]).sum();
        let evidence = -0.5 * n as f64 * (2.0 * std::f64::consts::PI * s2).ln()
            + 0.5 * p as f64 * alpha.ln()
            - 0.5 * logdet
            - 0.5 * (yy / s2 - mam);
        Ok(BayesianLinear {
            cov,
            mean,
            alpha,
            sigma,
            evidence,
        })
    }

    /// Predictive mean and variance `σ² + φᵀΣφ` at features `z` `[M, D]` (each `[M]`, f64).
    pub fn predict(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.mean.len();
        if z.rank() != 2 || z.dim(1)? + 1 != p {
            return Err(PplError::invalid_argument(
                "BayesianLinear::predict",
                format!("features must be [M, {}], got {:?}", p - 1, z.dims()),
            ));
        }
        let z = rows(z)?;
        let (mut mean, mut var) = (Vec::with_capacity(z.len()), Vec::with_capacity(z.len()));
        for row in &z {
            let phi: Vec<f64> = row.iter().copied().chain([1.0]).collect();
            mean.push(phi.iter().zip(&self.mean).map(|(a, b)| a * b).sum::<f64>());
            let q: f64 = (0..p)
                .map(|i| phi[i] * (0..p).map(|j| self.cov[(i, j)] * phi[j]).sum::<f64>())
                .sum();
            var.push(self.sigma * self.sigma + q);
        }
        let m = z.len();
        Ok((
            Tensor::from_vec(mean, m, &Device::Cpu)?,
            Tensor::from_vec(var, m, &Device::Cpu)?,
        ))
    }

    /// The posterior mean of `β = [w, b]` (`D + 1` values).
    pub fn posterior_mean(&self) -> &[f64] {
        &self.mean
    }

    /// The log marginal likelihood `log p(y | Φ, α, σ)` of the training targets (compare
    /// it across `α`, `σ` to choose them by evidence).
    pub fn log_evidence(&self) -> f64 {
        self.evidence
    }

    /// The prior precision `α` and noise scale `σ`.
    pub fn hyperparameters(&self) -> (f64, f64) {
        (self.alpha, self.sigma)
    }
}
