use super::estimator::{volume_term, VolumeEstimator};
use super::gram::log_det_gram;
use crate::engine::{Engine, Metrics, StepOutput};
use candle_core::{DType, Tensor, D};
use ppl_core::flows::{Injective, RectangularFlow};
use ppl_core::{Ctx, PplError, Result};
use std::collections::HashMap;

const CONTEXT: &str = "Rectangular";
const STEP_KEY: &str = "rectangular/step";

/// Options of [`Rectangular`].
#[derive(Debug, Clone, PartialEq)]
pub struct RectangularOptions {
    /// How the gradient of the volume term is obtained (default [`VolumeEstimator::Exact`]).
    pub estimator: VolumeEstimator,
    /// Weight `β ≥ 0` of the reconstruction error `‖x − g(g†(x))‖²` (default 1).
    pub beta: f64,
    /// Points per step (default: all).
    pub batch_size: Option<usize>,
    /// Likelihood warm-up: the likelihood's weight grows linearly from `1/warmup` to 1 over
    /// the first `warmup` steps (default 0: full weight from the start).
    pub warmup_steps: usize,
}

impl Default for RectangularOptions {
    fn default() -> Self {
        RectangularOptions {
            estimator: VolumeEstimator::Exact,
            beta: 1.0,
            batch_size: None,
            warmup_steps: 0,
        }
    }
}

impl RectangularOptions {
    /// Sets [`RectangularOptions::estimator`].
    pub fn estimator(mut self, e: VolumeEstimator) -> Self {
        self.estimator = e;
        self
    }
    /// Sets [`RectangularOptions::beta`].
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }
    /// Sets [`RectangularOptions::batch_size`].
    pub fn batch_size(mut self, b: usize) -> Self {
        self.batch_size = Some(b);
        self
    }
    /// Sets [`RectangularOptions::warmup_steps`].
    pub fn warmup_steps(mut self, n: usize) -> Self {
        self.warmup_steps = n;
        self
    }

    fn validate(&self) -> Result<()> {
        self.estimator.validate()?;
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(PplError::config(
                CONTEXT,
                format!("`beta` must be finite and ≥ 0, got {}", self.beta),
            ));
        }
        if self.batch_size == Some(0) {
            return Err(PplError::config(CONTEXT, "`batch_size` must be ≥ 1"));
        }
        Ok(())
    }
}

/// Per-point results of a trained injective flow on some data, always with the exact
/// volume term.
#[derive(Debug, Clone)]
pub struct RectangularEval {
    /// `log p_X(x_i)` on the manifold at `z_i = g†(x_i)` `[N]` (exact log-det).
    pub log_density: Tensor,
    /// The codes `z_i = g†(x_i)` `[N, d]`.
    pub latents: Tensor,
    /// `‖x_i − g(g†(x_i))‖²` `[N]`.
    pub reconstruction_error: Tensor,
}

/// Exact per-point evaluation of a rectangular flow on rows `x` `[N, D]`:
/// `log p_X(x) = log p_Z(z) − ½ log det(J_g(z)ᵀ J_g(z))` at `z = g†(x)` (the log-det always
/// exact), and the reconstruction error. Processed in chunks of `chunk` rows.
pub fn evaluate_injective(
    model: &RectangularFlow,
    x: &Tensor,
    chunk: usize,
) -> Result<RectangularEval> {
    check_data(model, x)?;
    let n = x.dim(0)?;
    let chunk = chunk.max(1);
    let (mut lds, mut zs, mut res) = (Vec::new(), Vec::new(), Vec::new());
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let xb = x.narrow(0, start, len)?.detach();
        let z = model.encode(&xb)?.detach();
        let recon = model.decode(&z)?;
        let ld = log_det_gram(model, &z)?;
        let lp = (model.log_prior(&z)? - (ld * 0.5)?)?;
        lds.push(lp.detach());
        res.push((xb - recon)?.sqr()?.sum(D::Minus1)?.detach());
        zs.push(z);
        start += len;
    }
    Ok(RectangularEval {
        log_density: Tensor::cat(&lds, 0)?,
        latents: Tensor::cat(&zs, 0)?,
        reconstruction_error: Tensor::cat(&res, 0)?,
    })
}

fn check_data(model: &RectangularFlow, x: &Tensor) -> Result<usize> {
    match x.dims() {
        [n, dd] if *dd == model.data_dim() && *n > 0 => Ok(*n),
        dims => Err(PplError::invalid_argument(
            CONTEXT,
            format!(
                "data must be [N ≥ 1, {}] for a flow into R^{}, got {dims:?}",
                model.data_dim(),
                model.data_dim()
            ),
        )),
    }
}

/// Maximum-likelihood training of an injective flow on a manifold (rectangular flows;
/// Caterini, Loaiza-Ganem, Pleiss & Cunningham, NeurIPS 2021).
///
/// **The model.** A [`RectangularFlow`] `g: R^d → R^D` (`d < D`) with latent density
/// `p_Z` and left inverse `g†`. Its density on the learned manifold is
/// `log p_X(x) = log p_Z(z) − ½ log det(J_g(z)ᵀ J_g(z))`, `z = g†(x)`.
///
/// **The objective.** Per minibatch of `x`, with `z = g†(x)` and `x̂ = g(z)`:
/// `loss = mean_b[ −w_t (log p_Z(z_b) − V_b) + β ‖x_b − x̂_b‖² ]`, where `V_b` is the
/// volume term `½ log det(JᵀJ)` and `w_t = min(1, (t+1)/warmup)` the likelihood warm-up
/// weight at step `t`. How `∇V` is obtained is the [`VolumeEstimator`]: exact (tangents and
/// Cholesky), Hutchinson with conjugate gradients (stochastic, unbiased), free-form
/// (encoder Jacobian as the pseudo-inverse; no solve), or none (two-step baseline).
///
/// **Reported values.** The stochastic estimators' surrogates contribute gradient but no
/// value, so the step's `value` is the full loss for `exact` and the loss *without* the
/// volume term otherwise; metrics: `log_pz`, `recon` (mean squared reconstruction
/// distance), `weight`, and `log_density` (the exact mean log-density) only for `exact`,
/// `cg_iterations`, `cg_residual` (largest relative residual) and `cg_converged` (0/1) for
/// Hutchinson (whose gradient is unbiased only when CG has converged).
///
/// **The two-step baseline.** With [`VolumeEstimator::NoLogDet`] the codes enter the
/// likelihood detached: the square flow learns the manifold from the reconstruction alone
/// and the latent flow (if any) fits the codes by maximum likelihood, which is the paper's
/// two-step procedure run in one loop. Densities for evaluation always come from the exact
/// log-det ([`evaluate_injective`]).
///
/// The flows' weights live in the context's parameter store (build them with
/// [`Ctx::module`]); the step counter (for the warm-up) is engine state, saved in
/// checkpoints.
pub struct Rectangular<'a> {
    model: &'a RectangularFlow,
    x: Tensor,
    opts: RectangularOptions,
    step: u64,
    name: String,
}

impl<'a> Rectangular<'a> {
    /// Training of `model` on rows `x` `[N, D]`.
    pub fn new(model: &'a RectangularFlow, x: &Tensor, opts: RectangularOptions) -> Self {
        let name = format!("rectangular/{}", opts.estimator.name());
        Rectangular {
            model,
            x: x.clone(),
            opts,
            step: 0,
            name,
        }
    }

    /// Exact per-point log-densities and reconstruction errors on `x` ([`evaluate_injective`]).
    pub fn evaluate(&self, x: &Tensor) -> Result<RectangularEval> {
        evaluate_injective(self.model, x, 4096)
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

impl Engine for Rectangular<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        self.opts.validate()?;
        check_data(self.model, &self.x)?;
        Ok(())
    }

    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let n = self.x.dim(0)?;
        let xb = match self.opts.batch_size {
            Some(b) if b < n => {
                let mut idx = ctx.rng().permutation(n);
                idx.truncate(b);
                let idx: Vec<u32> = idx.into_iter().map(|i| i as u32).collect();
                let idx = Tensor::from_vec(idx, b, self.x.device())?;
                self.x.index_select(&idx, 0)?
            }
            _ => self.x.clone(),
        };
        let weight = match self.opts.warmup_steps {
            0 => 1.0,
            w => ((self.step + 1) as f64 / w as f64).min(1.0),
        };
        let z = self.model.encode(&xb)?;
        let vol = volume_term(self.model, &xb, &z, &self.opts.estimator, ctx.rng())?;
        // The two-step baseline: the codes' likelihood trains only the latent flow (if any),
        // the reconstruction alone trains the square flow.
        let log_pz = match self.opts.estimator {
            VolumeEstimator::NoLogDet => self.model.log_prior(&z.detach())?,
            _ => self.model.log_prior(&z)?,
        };
        let recon = (&xb - &vol.reconstruction)?.sqr()?.sum(D::Minus1)?;
        let nll = ((&log_pz - &vol.loss_term)? * -weight)?;
        let loss = (nll + (&recon * self.opts.beta)?)?.mean_all()?;
        let mut metrics = Metrics::new();
        metrics.insert("log_pz", scalar(&log_pz.mean_all()?)?);
        metrics.insert("recon", scalar(&recon.mean_all()?)?);
        metrics.insert("weight", weight);
        if let Some(h) = &vol.half_log_det {
            metrics.insert("log_density", scalar(&(&log_pz - h)?.mean_all()?)?);
        }
        if let Some(cg) = &vol.cg {
            metrics.insert("cg_iterations", cg.iterations as f64);
            metrics.insert("cg_residual", cg.max_relative_residual);
            metrics.insert("cg_converged", if cg.converged { 1.0 } else { 0.0 });
        }
        let value = scalar(&loss)?;
        self.step += 1;
        Ok(StepOutput {
            loss,
            value,
            metrics,
        })
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            STEP_KEY.to_string(),
            Tensor::new(self.step as f64, self.x.device())?,
        )])
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        let mut step = None;
        for (k, v) in &state {
            if k != STEP_KEY {
                return Err(PplError::config(
                    CONTEXT,
                    format!("unexpected engine state `{k}` in the checkpoint"),
                ));
            }
            let s = scalar(v)?;
            if !(s >= 0.0 && s.fract() == 0.0) {
                return Err(PplError::config(
                    CONTEXT,
                    format!("`{STEP_KEY}` must be a step count, got {s}"),
                ));
            }
            step = Some(s as u64);
        }
        self.step = step.ok_or_else(|| {
            PplError::config(CONTEXT, format!("the checkpoint lacks `{STEP_KEY}`"))
        })?;
        Ok(())
    }
}
