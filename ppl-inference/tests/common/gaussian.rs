//! Conjugate Gaussian models: one global latent ([`ConjugateGaussian`]) and one latent per
//! data point ([`LocalGaussian`], an amortised-VAE-like model whose posterior and evidence
//! factorise over points).

use super::host::{log_normal, round_to};
use super::{rows, scalar, upload_rounded};
use candle_core::{DType, Device, Tensor};
use ppl_core::prelude::*;

/// Sizes and hyper-parameters of the Gaussian fixtures (shared by both).
#[derive(Debug, Clone, Copy)]
pub struct GaussianConfig {
    /// Number of data points `n` (the size of plate `data`).
    pub n: usize,
    /// Dimension `d` of each latent and each data point (independent dims).
    pub d: usize,
    /// Prior mean `μ0`.
    pub prior_loc: f64,
    /// Prior standard deviation `σ0`.
    pub prior_scale: f64,
    /// Likelihood standard deviation `σ`.
    pub noise_scale: f64,
}

impl Default for GaussianConfig {
    /// `n = 10, d = 1, μ0 = 0, σ0 = 1, σ = 0.5`.
    fn default() -> Self {
        GaussianConfig {
            n: 10,
            d: 1,
            prior_loc: 0.0,
            prior_scale: 1.0,
            noise_scale: 0.5,
        }
    }
}

impl GaussianConfig {
    fn check(&self, context: &'static str) -> Result<()> {
        if self.n == 0 || self.d == 0 {
            return Err(PplError::config(context, "n and d must be at least 1"));
        }
        if !(self.prior_scale > 0.0 && self.noise_scale > 0.0) {
            return Err(PplError::config(context, "scales must be positive"));
        }
        Ok(())
    }

    /// The same hyper-parameters as the model sees them in `dtype`.
    fn rounded(&self, dtype: DType) -> Self {
        GaussianConfig {
            prior_loc: round_to(dtype, self.prior_loc),
            prior_scale: round_to(dtype, self.prior_scale),
            noise_scale: round_to(dtype, self.noise_scale),
            ..*self
        }
    }
}

/// `z ~ N(μ0, σ0² I_d)`, `x_i | z ~ N(z, σ² I_d)` for `i` in plate `data` of size `n`.
///
/// Sites: latent `z` (event shape `[d]`), observed `x` (`[n, d]`, event `[d]`), plate
/// `data` (dim −1). The model vectorises over a particle plate at dim −2: `z` gets batch
/// shape `[K, 1]`, whose 1 broadcasts against the data plate. With
/// [`with_subsample`](Self::with_subsample) the plate draws a minibatch of `m` points and
/// scales their likelihood by `n / m` (the exact answers stay those of all `n` points).
#[derive(Debug, Clone)]
pub struct ConjugateGaussian {
    /// Sizes and hyper-parameters (rounded to the dtype).
    pub config: GaussianConfig,
    /// The data `[n, d]` on the fixture's device.
    pub x: Tensor,
    /// The data on the host, row-major `[n, d]`, exactly as stored in `x`.
    pub x_host: Vec<f64>,
    /// The latent that generated the data (drawn from the prior).
    pub z_true: Vec<f64>,
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

impl ConjugateGaussian {
    /// The default configuration with `n` points, data drawn from the model with `seed`.
    pub fn new(seed: u64, n: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_config(
            seed,
            GaussianConfig {
                n,
                ..Default::default()
            },
            dtype,
            device,
        )
    }

    /// Data drawn from the model with `seed`: `z_true` from the prior, then `x`.
    pub fn from_config(
        seed: u64,
        config: GaussianConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check("ConjugateGaussian")?;
        let c = config.rounded(dtype);
        let (n, d) = (c.n, c.d);
        let mut rng = PplRng::seed_from_u64(seed);
        let z_true: Vec<f64> = rng
            .normals(d)
            .iter()
            .map(|e| c.prior_loc + c.prior_scale * e)
            .collect();
        let eps = rng.normals(n * d);
        let x: Vec<f64> = (0..n * d)
            .map(|i| z_true[i % d] + c.noise_scale * eps[i])
            .collect();
        let (x, x_host) = upload_rounded(x, &[n, d], dtype, device)?;
        Ok(ConjugateGaussian {
            config: c,
            x,
            x_host,
            z_true,
            subsample: None,
            dtype,
            device: device.clone(),
            prior_loc: upload_rounded(vec![c.prior_loc; d], &[d], dtype, device)?.0,
            prior_scale: scalar(c.prior_scale, dtype, device)?,
            noise_scale: scalar(c.noise_scale, dtype, device)?,
        })
    }

    /// The same fixture with plate `data` subsampled `m` points at a time.
    pub fn with_subsample(mut self, m: usize) -> Result<Self> {
        if m == 0 || m > self.config.n {
            return Err(PplError::config(
                "ConjugateGaussian::with_subsample",
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
        let z = ctx.sample("z", prior)?;
        ctx.plate("data", self.config.n, self.plate_opts(), |ctx, g| {
            let x = rows(&self.x, g, self.subsample)?;
            // z is [d] (or [K, 1, d] under a particle plate): Normal(z) has batch [] (or
            // [K, 1]) after to_event, which the plate expands to [m] (or [K, m]).
            let lik = Normal::new(&z, &self.noise_scale)?.to_event(1)?;
            ctx.observe("x", lik, &x)?;
            Ok(())
        })
    }

    /// A choice map fixing `z` to `z` (length `d`), for `assess`/`generate`.
    pub fn choices(&self, z: &[f64]) -> Result<ChoiceMap> {
        let t = upload_rounded(z.to_vec(), &[self.config.d], self.dtype, &self.device)?.0;
        Ok(ChoiceMap::new().with("z", t))
    }

    /// The exact posterior of `z`: per-dim means (length `d`) and the variance shared by
    /// every dim, `1 / (1/σ0² + n/σ²)`.
    pub fn exact_posterior(&self) -> (Vec<f64>, f64) {
        let c = &self.config;
        let prec = 1.0 / c.prior_scale.powi(2) + c.n as f64 / c.noise_scale.powi(2);
        let var = 1.0 / prec;
        let mean = (0..c.d)
            .map(|j| {
                let sum: f64 = (0..c.n).map(|i| self.x_host[i * c.d + j]).sum();
                var * (c.prior_loc / c.prior_scale.powi(2) + sum / c.noise_scale.powi(2))
            })
            .collect();
        (mean, var)
    }

    /// `log p(z | x)` under the exact posterior.
    pub fn exact_log_posterior(&self, z: &[f64]) -> f64 {
        let (mean, var) = self.exact_posterior();
        z.iter()
            .zip(&mean)
            .map(|(z, m)| log_normal(*z, *m, var.sqrt()))
            .sum()
    }

    /// `log p(x)` of all `n` points: per dim, `x_{·j} ~ N(μ0 1, σ² I + σ0² 1 1ᵀ)`, so with
    /// `u = x_{·j} − μ0`, `S = Σ u_i`, `Q = Σ u_i²`:
    /// `−n/2 log(2πσ²) − ½ log(1 + nσ0²/σ²) − Q/(2σ²) + σ0² S² / (2σ²(σ² + nσ0²))`.
    pub fn exact_log_evidence(&self) -> f64 {
        let c = &self.config;
        let (n, s2, s02) = (c.n as f64, c.noise_scale.powi(2), c.prior_scale.powi(2));
        (0..c.d)
            .map(|j| {
                let u: Vec<f64> = (0..c.n)
                    .map(|i| self.x_host[i * c.d + j] - c.prior_loc)
                    .collect();
                let s: f64 = u.iter().sum();
                let q: f64 = u.iter().map(|v| v * v).sum();
                -0.5 * n * (2.0 * std::f64::consts::PI * s2).ln()
                    - 0.5 * (1.0 + n * s02 / s2).ln()
                    - q / (2.0 * s2)
                    + s02 * s * s / (2.0 * s2 * (s2 + n * s02))
            })
            .sum()
    }
}

impl Model for ConjugateGaussian {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        self.model(ctx)
    }
}

/// `z_i ~ N(μ0, σ0² I_d)`, `x_i | z_i ~ N(z_i, σ² I_d)` for `i` in plate `data`: one latent
/// per point, like a VAE with a linear decoder. Posterior and evidence factorise:
/// `z_i | x_i ~ N(a x_i + b, v)` with `a = σ0²/(σ0²+σ²)`, `b = μ0 σ²/(σ0²+σ²)`,
/// `v = σ0²σ²/(σ0²+σ²)`, and `x_i ~ N(μ0, (σ0²+σ²) I_d)`.
///
/// Sites: latent `z` and observed `x`, both `[n, d]` with event `[d]`, in plate `data`
/// (dim −1); under a particle plate at dim −2 `z` is `[K, n, d]`. Subsampling as in
/// [`ConjugateGaussian`]: the model then samples only the minibatch's `z_i`.
#[derive(Debug, Clone)]
pub struct LocalGaussian {
    /// Sizes and hyper-parameters (rounded to the dtype).
    pub config: GaussianConfig,
    /// The data `[n, d]`.
    pub x: Tensor,
    /// The data on the host, row-major `[n, d]`, exactly as stored in `x`.
    pub x_host: Vec<f64>,
    /// The latents that generated the data, row-major `[n, d]`.
    pub z_true: Vec<f64>,
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

impl LocalGaussian {
    /// The default configuration with `n` points, data drawn from the model with `seed`.
    pub fn new(seed: u64, n: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_config(
            seed,
            GaussianConfig {
                n,
                ..Default::default()
            },
            dtype,
            device,
        )
    }

    /// Data drawn from the model with `seed`: each `z_i` from the prior, then `x_i`.
    pub fn from_config(
        seed: u64,
        config: GaussianConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.check("LocalGaussian")?;
        let c = config.rounded(dtype);
        let (n, d) = (c.n, c.d);
        let mut rng = PplRng::seed_from_u64(seed);
        let z_true: Vec<f64> = rng
            .normals(n * d)
            .iter()
            .map(|e| c.prior_loc + c.prior_scale * e)
            .collect();
        let eps = rng.normals(n * d);
        let x: Vec<f64> = (0..n * d)
            .map(|i| z_true[i] + c.noise_scale * eps[i])
            .collect();
        let (x, x_host) = upload_rounded(x, &[n, d], dtype, device)?;
        Ok(LocalGaussian {
            config: c,
            x,
            x_host,
            z_true,
            subsample: None,
            dtype,
            device: device.clone(),
            prior_loc: upload_rounded(vec![c.prior_loc; d], &[d], dtype, device)?.0,
            prior_scale: scalar(c.prior_scale, dtype, device)?,
            noise_scale: scalar(c.noise_scale, dtype, device)?,
        })
    }

    /// The same fixture with plate `data` subsampled `m` points at a time.
    pub fn with_subsample(mut self, m: usize) -> Result<Self> {
        if m == 0 || m > self.config.n {
            return Err(PplError::config(
                "LocalGaussian::with_subsample",
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
        ctx.plate("data", self.config.n, self.plate_opts(), |ctx, g| {
            let x = rows(&self.x, g, self.subsample)?;
            // batch [] event [d]; the plate expands the batch to [m] (a particle plate
            // left of it to [K, m]).
            let prior = Normal::new(&self.prior_loc, &self.prior_scale)?.to_event(1)?;
            let z = ctx.sample("z", prior)?;
            ctx.observe("x", Normal::new(&z, &self.noise_scale)?.to_event(1)?, &x)?;
            Ok(())
        })
    }

    /// A choice map fixing every `z_i` (row-major `[n, d]`; without subsampling).
    pub fn choices(&self, z: &[f64]) -> Result<ChoiceMap> {
        let shape = [self.config.n, self.config.d];
        let t = upload_rounded(z.to_vec(), &shape, self.dtype, &self.device)?.0;
        Ok(ChoiceMap::new().with("z", t))
    }

    /// The exact encoder: `z_i | x_i ~ N(a x_i + b, v)`, returned as `(a, b, v)`.
    pub fn exact_encoder(&self) -> (f64, f64, f64) {
        let c = &self.config;
        let (s02, s2) = (c.prior_scale.powi(2), c.noise_scale.powi(2));
        (
            s02 / (s02 + s2),
            c.prior_loc * s2 / (s02 + s2),
            s02 * s2 / (s02 + s2),
        )
    }

    /// The exact posterior: means row-major `[n, d]` and the variance shared by all.
    pub fn exact_posterior(&self) -> (Vec<f64>, f64) {
        let (a, b, v) = self.exact_encoder();
        (self.x_host.iter().map(|x| a * x + b).collect(), v)
    }

    /// `log p(z | x)` under the exact posterior (`z` row-major `[n, d]`), per point.
    pub fn exact_log_posterior_per_point(&self, z: &[f64]) -> Vec<f64> {
        let (mean, v) = self.exact_posterior();
        let d = self.config.d;
        (0..self.config.n)
            .map(|i| {
                (0..d)
                    .map(|j| log_normal(z[i * d + j], mean[i * d + j], v.sqrt()))
                    .sum()
            })
            .collect()
    }

    /// `log p(x_i)` for every point: `Σ_j log N(x_ij; μ0, σ0² + σ²)`.
    pub fn exact_log_evidence_per_point(&self) -> Vec<f64> {
        let c = &self.config;
        let sd = (c.prior_scale.powi(2) + c.noise_scale.powi(2)).sqrt();
        self.x_host
            .chunks(c.d)
            .map(|row| row.iter().map(|x| log_normal(*x, c.prior_loc, sd)).sum())
            .collect()
    }

    /// `log p(x) = Σ_i log p(x_i)`.
    pub fn exact_log_evidence(&self) -> f64 {
        self.exact_log_evidence_per_point().iter().sum()
    }
}

impl Model for LocalGaussian {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        self.model(ctx)
    }
}
