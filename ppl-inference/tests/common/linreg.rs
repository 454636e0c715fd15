//! Bayesian linear regression with its exact Gaussian posterior and evidence.

use super::host::{cholesky, inverse_from_cholesky, log_det_from_cholesky, log_mvn, round_to};
use super::host::{solve_cholesky, Matrix};
use super::{rows, scalar, upload_rounded};
use candle_core::{DType, Device, Tensor, D};
use ppl_core::prelude::*;

/// Sizes and precisions of [`LinearRegression`].
#[derive(Debug, Clone, Copy)]
pub struct LinRegConfig {
    /// Number of observations `n` (plate `data`).
    pub n: usize,
    /// Number of weights `d` (at most 5: the exact answers use a host Cholesky).
    pub d: usize,
    /// Prior precision `α` of each weight.
    pub alpha: f64,
    /// Noise precision `β`.
    pub beta: f64,
}

impl Default for LinRegConfig {
    /// `n = 20, d = 3, α = 1, β = 4` (noise standard deviation 0.5).
    fn default() -> Self {
        LinRegConfig {
            n: 20,
            d: 3,
            alpha: 1.0,
            beta: 4.0,
        }
    }
}

/// `w ~ N(0, α⁻¹ I_d)`, `y_i | w ~ N(x_iᵀ w, β⁻¹)` for `i` in plate `data`, with fixed
/// covariates `x_i ~ N(0, I_d)` drawn from the seed.
///
/// Sites: latent `w` (event `[d]`), observed `y` (`[n]`) in plate `data` (dim −1).
/// Posterior: `Λ = α I + β XᵀX`, `w | y ~ N(m, Λ⁻¹)` with `m = β Λ⁻¹ Xᵀ y`.
#[derive(Debug, Clone)]
pub struct LinearRegression {
    /// Sizes and precisions (rounded to the dtype).
    pub config: LinRegConfig,
    /// Covariates `[n, d]`.
    pub x: Tensor,
    /// Responses `[n]`.
    pub y: Tensor,
    /// `x` on the host, row-major, as stored.
    pub x_host: Vec<f64>,
    /// `y` on the host, as stored.
    pub y_host: Vec<f64>,
    /// The weights that generated `y` (drawn from the prior).
    pub w_true: Vec<f64>,
    /// Minibatch size of plate `data`, if subsampled.
    pub subsample: Option<usize>,
    /// The dtype of every tensor.
    pub dtype: DType,
    /// The device of every tensor.
    pub device: Device,
    prior_loc: Tensor,
    prior_scale: Tensor,
    noise_scale: Tensor,
}

impl LinearRegression {
    /// The default precisions with `n` observations of `d` covariates, drawn with `seed`.
    pub fn new(seed: u64, n: usize, d: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_config(
            seed,
            LinRegConfig {
                n,
                d,
                ..Default::default()
            },
            dtype,
            device,
        )
    }

    /// Covariates, weights and responses drawn with `seed`.
    pub fn from_config(
        seed: u64,
        config: LinRegConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let LinRegConfig { n, d, alpha, beta } = config;
        if n == 0 || d == 0 || d > 5 {
            return Err(PplError::config(
                "LinearRegression",
                format!("need n ≥ 1 and 1 ≤ d ≤ 5, got n = {n}, d = {d}"),
            ));
        }
        if !(alpha > 0.0 && beta > 0.0) {
            return Err(PplError::config(
                "LinearRegression",
                "precisions must be positive",
            ));
        }
        // The model sees the scales 1/√α and 1/√β in `dtype`; the exact answers use the
        // precisions of those rounded scales.
        let (sa, sb) = (
            round_to(dtype, alpha.powf(-0.5)),
            round_to(dtype, beta.powf(-0.5)),
        );
        let config = LinRegConfig {
            n,
            d,
            alpha: 1.0 / (sa * sa),
            beta: 1.0 / (sb * sb),
        };
        let mut rng = PplRng::seed_from_u64(seed);
        let (x, x_host) = upload_rounded(rng.normals(n * d), &[n, d], dtype, device)?;
        let w_true: Vec<f64> = rng.normals(d).iter().map(|e| sa * e).collect();
        let eps = rng.normals(n);
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let xw: f64 = (0..d).map(|j| x_host[i * d + j] * w_true[j]).sum();
                xw + sb * eps[i]
            })
            .collect();
        let (y, y_host) = upload_rounded(y, &[n], dtype, device)?;
        Ok(LinearRegression {
            config,
            x,
            y,
            x_host,
            y_host,
            w_true,
            subsample: None,
            dtype,
            device: device.clone(),
            prior_loc: Tensor::zeros(d, dtype, device)?,
            prior_scale: scalar(sa, dtype, device)?,
            noise_scale: scalar(sb, dtype, device)?,
        })
    }

    /// The same fixture with plate `data` subsampled `m` points at a time.
    pub fn with_subsample(mut self, m: usize) -> Result<Self> {
        if m == 0 || m > self.config.n {
            return Err(PplError::config(
                "LinearRegression::with_subsample",
                format!("subsample size {m} must be in 1..={}", self.config.n),
            ));
        }
        self.subsample = Some(m);
        Ok(self)
    }

    /// The options of plate `data` (a guide must mirror them).
    pub fn plate_opts(&self) -> PlateOpts {
        PlateOpts {
            subsample_size: self.subsample,
            ..Default::default()
        }
    }

    /// The model. See the [type docs](Self).
    pub fn model(&self, ctx: &mut Ctx) -> Result<()> {
        let prior = Normal::new(&self.prior_loc, &self.prior_scale)?.to_event(1)?;
        let w = ctx.sample("w", prior)?;
        ctx.plate("data", self.config.n, self.plate_opts(), |ctx, g| {
            let x = rows(&self.x, g, self.subsample)?;
            let y = rows(&self.y, g, self.subsample)?;
            // The mean must keep w's batch dims exactly: w is [d] alone and [K, 1, d] under
            // a particle plate at dim −2, where the 1 is the slot of plate `data`. Multiplying
            // x [m, d] by w and summing the last dim gives [m] or [K, m]: the data dim lands
            // on the slot. `matvec(x, w)` or `x.matmul(w.unsqueeze(-1))` would give [K, 1, m]
            // instead: a stray size-1 dim at −2, which the particle plate then *expands*
            // (a 1 means "broadcast me") to [K, K, m], pairing every particle's weights
            // with every other particle's, silently.
            let mean = x.broadcast_mul(&w)?.sum(D::Minus1)?;
            ctx.observe("y", Normal::new(&mean, &self.noise_scale)?, &y)?;
            Ok(())
        })
    }

    /// The same model written as `examples/bayes_linreg.rs` once did, with
    /// `matvec(x, w)`: right for one particle, but under a particle plate `w` is
    /// `[K, 1, d]` and the mean `[K, 1, m]`, whose leading `K` lies left of the particle
    /// dim (see [`LinearRegression::model`]). Engines must reject it with particles.
    pub fn matvec_model(&self, ctx: &mut Ctx) -> Result<()> {
        let prior = Normal::new(&self.prior_loc, &self.prior_scale)?.to_event(1)?;
        let w = ctx.sample("w", prior)?;
        ctx.plate("data", self.config.n, self.plate_opts(), |ctx, g| {
            let x = rows(&self.x, g, self.subsample)?;
            let y = rows(&self.y, g, self.subsample)?;
            let mean = ppl_core::linalg::matvec(&x, &w)?;
            ctx.observe("y", Normal::new(&mean, &self.noise_scale)?, &y)?;
            Ok(())
        })
    }

    /// A choice map fixing `w`.
    pub fn choices(&self, w: &[f64]) -> Result<ChoiceMap> {
        let t = upload_rounded(w.to_vec(), &[self.config.d], self.dtype, &self.device)?.0;
        Ok(ChoiceMap::new().with("w", t))
    }

    /// The posterior precision `Λ = α I + β XᵀX` and `β Xᵀ y`.
    fn precision(&self) -> (Matrix, Vec<f64>) {
        let LinRegConfig { n, d, alpha, beta } = self.config;
        let mut a = vec![vec![0.0; d]; d];
        let mut b = vec![0.0; d];
        for i in 0..n {
            let row = &self.x_host[i * d..(i + 1) * d];
            for j in 0..d {
                b[j] += beta * row[j] * self.y_host[i];
                for k in 0..d {
                    a[j][k] += beta * row[j] * row[k];
                }
            }
        }
        for (j, r) in a.iter_mut().enumerate() {
            r[j] += alpha;
        }
        (a, b)
    }

    /// The exact posterior `N(mean, cov)` of `w`.
    pub fn exact_posterior(&self) -> Result<(Vec<f64>, Matrix)> {
        let (a, b) = self.precision();
        let l = cholesky(&a)?;
        Ok((solve_cholesky(&l, &b), inverse_from_cholesky(&l)))
    }

    /// `log p(w | y)` under the exact posterior.
    pub fn exact_log_posterior(&self, w: &[f64]) -> Result<f64> {
        let (m, cov) = self.exact_posterior()?;
        log_mvn(w, &m, &cov)
    }

    /// `log p(y) = d/2 log α + n/2 log β − β/2 ‖y − X m‖² − α/2 ‖m‖² − ½ log det Λ
    /// − n/2 log 2π` (Bishop, PRML eq. 3.86).
    pub fn exact_log_evidence(&self) -> Result<f64> {
        let LinRegConfig { n, d, alpha, beta } = self.config;
        let (a, b) = self.precision();
        let l = cholesky(&a)?;
        let m = solve_cholesky(&l, &b);
        let rss: f64 = (0..n)
            .map(|i| {
                let xm: f64 = (0..d).map(|j| self.x_host[i * d + j] * m[j]).sum();
                (self.y_host[i] - xm).powi(2)
            })
            .sum();
        let mm: f64 = m.iter().map(|v| v * v).sum();
        let (n, d) = (n as f64, d as f64);
        Ok(0.5 * d * alpha.ln() + 0.5 * n * beta.ln()
            - 0.5 * beta * rss
            - 0.5 * alpha * mm
            - 0.5 * log_det_from_cholesky(&l)
            - 0.5 * n * (2.0 * std::f64::consts::PI).ln())
    }
}

impl Model for LinearRegression {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        self.model(ctx)
    }
}
