//! A Gaussian mixture with known components and a discrete assignment per point.

use super::host::{log_normal, logsumexp};
use super::{rows, upload_rounded};
use candle_core::{DType, Device, Tensor};
use ppl_core::prelude::*;

/// The known components of [`GaussianMixture`].
#[derive(Debug, Clone)]
pub struct MixtureConfig {
    /// Number of points `n` (plate `data`).
    pub n: usize,
    /// Mixing weights `π_k` (positive; normalised by the fixture).
    pub weights: Vec<f64>,
    /// Component means `μ_k`.
    pub means: Vec<f64>,
    /// Component standard deviations `σ_k`.
    pub scales: Vec<f64>,
}

impl Default for MixtureConfig {
    /// `n = 6`; three overlapping components: `π = (0.3, 0.5, 0.2)`,
    /// `μ = (−2, 0, 2.5)`, `σ = (0.7, 1, 0.5)`.
    fn default() -> Self {
        MixtureConfig {
            n: 6,
            weights: vec![0.3, 0.5, 0.2],
            means: vec![-2.0, 0.0, 2.5],
            scales: vec![0.7, 1.0, 0.5],
        }
    }
}

/// `c_i ~ Categorical(π)`, `x_i | c_i ~ N(μ_{c_i}, σ_{c_i}²)` for `i` in plate `data`.
///
/// Sites: latent `c` (`[n]`, category indices as floats of the dtype) and observed `x`
/// (`[n]`) in plate `data` (dim −1). Exact: `log p(x_i) = logsumexp_k (log π_k +
/// log N(x_i; μ_k, σ_k))` and responsibilities `p(c_i = k | x_i)`.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    /// Components (normalised and rounded to the dtype).
    pub config: MixtureConfig,
    /// The data `[n]`.
    pub x: Tensor,
    /// The data on the host, as stored.
    pub x_host: Vec<f64>,
    /// The assignments that generated the data.
    pub c_true: Vec<usize>,
    /// Minibatch size of plate `data`, if subsampled.
    pub subsample: Option<usize>,
    /// The dtype of every tensor.
    pub dtype: DType,
    /// The device of every tensor.
    pub device: Device,
    probs: Tensor,
    means: Tensor,
    scales: Tensor,
}

impl GaussianMixture {
    /// The default components with `n` points, drawn with `seed`.
    pub fn new(seed: u64, n: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_config(
            seed,
            MixtureConfig {
                n,
                ..Default::default()
            },
            dtype,
            device,
        )
    }

    /// Assignments and data drawn with `seed`.
    pub fn from_config(
        seed: u64,
        config: MixtureConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let k = config.weights.len();
        if config.n == 0 || k == 0 || config.means.len() != k || config.scales.len() != k {
            return Err(PplError::config(
                "GaussianMixture",
                format!(
                    "need n ≥ 1 and K ≥ 1 weights, means and scales each, got n = {}, {} \
                     weights, {} means, {} scales",
                    config.n,
                    k,
                    config.means.len(),
                    config.scales.len()
                ),
            ));
        }
        let positive = |v: &f64| *v > 0.0 && v.is_finite();
        if !config.weights.iter().all(positive) || !config.scales.iter().all(positive) {
            return Err(PplError::config(
                "GaussianMixture",
                "weights and scales must be positive",
            ));
        }
        let total: f64 = config.weights.iter().sum();
        let normalised: Vec<f64> = config.weights.iter().map(|w| w / total).collect();
        let (probs, weights) = upload_rounded(normalised, &[k], dtype, device)?;
        let (means, means_host) = upload_rounded(config.means.clone(), &[k], dtype, device)?;
        let (scales, scales_host) = upload_rounded(config.scales.clone(), &[k], dtype, device)?;
        let config = MixtureConfig {
            n: config.n,
            weights,
            means: means_host,
            scales: scales_host,
        };
        let mut rng = PplRng::seed_from_u64(seed);
        let u = rng.uniforms(config.n);
        let c_true: Vec<usize> = u
            .iter()
            .map(|u| {
                let mut acc = 0.0;
                config
                    .weights
                    .iter()
                    .position(|w| {
                        acc += w;
                        *u < acc
                    })
                    .unwrap_or(k - 1)
            })
            .collect();
        let eps = rng.normals(config.n);
        let x: Vec<f64> = c_true
            .iter()
            .zip(&eps)
            .map(|(c, e)| config.means[*c] + config.scales[*c] * e)
            .collect();
        let (x, x_host) = upload_rounded(x, &[config.n], dtype, device)?;
        Ok(GaussianMixture {
            config,
            x,
            x_host,
            c_true,
            subsample: None,
            dtype,
            device: device.clone(),
            probs,
            means,
            scales,
        })
    }

    /// The same fixture with plate `data` subsampled `m` points at a time.
    pub fn with_subsample(mut self, m: usize) -> Result<Self> {
        if m == 0 || m > self.config.n {
            return Err(PplError::config(
                "GaussianMixture::with_subsample",
                format!("subsample size {m} must be in 1..={}", self.config.n),
            ));
        }
        self.subsample = Some(m);
        Ok(self)
    }

    /// The number of components `K`.
    pub fn num_components(&self) -> usize {
        self.config.weights.len()
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
            let c = ctx.sample("c", Categorical::from_probs(&self.probs)?)?;
            // c has any shape ([m], [K, m] under particles, or an enumeration's); look the
            // component parameters up elementwise and restore that shape.
            let idx = c.flatten_all()?.to_dtype(DType::U32)?;
            let loc = self.means.index_select(&idx, 0)?.reshape(c.shape())?;
            let scale = self.scales.index_select(&idx, 0)?.reshape(c.shape())?;
            ctx.observe("x", Normal::new(&loc, &scale)?, &x)?;
            Ok(())
        })
    }

    /// A choice map fixing every assignment `c_i` (without subsampling).
    pub fn choices(&self, c: &[usize]) -> Result<ChoiceMap> {
        let v: Vec<f64> = c.iter().map(|k| *k as f64).collect();
        let t = upload_rounded(v, &[self.config.n], self.dtype, &self.device)?.0;
        Ok(ChoiceMap::new().with("c", t))
    }

    /// `log π_k + log N(x_i; μ_k, σ_k)`, `[n][K]`.
    fn log_joint_table(&self) -> Vec<Vec<f64>> {
        let c = &self.config;
        self.x_host
            .iter()
            .map(|x| {
                (0..c.weights.len())
                    .map(|k| c.weights[k].ln() + log_normal(*x, c.means[k], c.scales[k]))
                    .collect()
            })
            .collect()
    }

    /// `p(c_i = k | x_i)`, `[n][K]`.
    pub fn exact_responsibilities(&self) -> Vec<Vec<f64>> {
        self.log_joint_table()
            .iter()
            .map(|row| {
                let z = logsumexp(row);
                row.iter().map(|l| (l - z).exp()).collect()
            })
            .collect()
    }

    /// `log p(x_i)` for every point.
    pub fn exact_log_evidence_per_point(&self) -> Vec<f64> {
        self.log_joint_table()
            .iter()
            .map(|r| logsumexp(r))
            .collect()
    }

    /// `log p(x) = Σ_i log p(x_i)`.
    pub fn exact_log_evidence(&self) -> f64 {
        self.exact_log_evidence_per_point().iter().sum()
    }

    /// `log p(c | x) = Σ_i log p(c_i | x_i)`.
    pub fn exact_log_posterior(&self, c: &[usize]) -> f64 {
        let r = self.exact_responsibilities();
        c.iter().enumerate().map(|(i, k)| r[i][*k].ln()).sum()
    }
}

impl Model for GaussianMixture {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        self.model(ctx)
    }
}
