use super::objective::{not_initialised, Objective, ObjectiveOutput};
use crate::engine::Metrics;
use crate::importance::{scalar, GuideLogQ, LogWeights, ModelInfo, Particles, WeightBuilder};
use candle_core::Tensor;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::{PplError, Result};

/// The multi-sample objective.
///
/// Multi-sample objectives: the importance-weighted bound (IWAE, Burda et al. 2016), the
/// Rényi-α bound (Li & Turner 2016) and the doubly-reparameterised IWAE gradient (DReG,
/// Tucker et al. 2019), correct with local latents and minibatches.
///
/// With `K` particles `z_k ~ q` and weights `w_k = p(x, z_k) / q(z_k)`:
///
/// * IWAE: `L_K = E[log (1/K) Σ_k w_k] ≤ log p(x)`; `L_1 = ELBO`, `L_K` non-decreasing in
///   `K`, `L_K → log p(x)`.
/// * Rényi-α (`α ≥ 0`, `α ≠ 1`): `L_α = E[1/(1−α) · log (1/K) Σ_k w_k^{1−α}]`; `α = 0` is
///   IWAE, `α → 1` the ELBO. For `α ∈ [0, 1)` it lower-bounds `log p(x)` for every `K`
///   (Jensen), tighter as `α → 0`; `α > 1` gives a mass-covering objective that is not a
///   bound.
/// * DReG (IWAE only, reparameterised guides): the guide-parameter gradient
///   `Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ` (with `w̃` the normalised weights and `log q`'s
///   parameters held fixed) replaces the high-variance IWAE one, which degrades as `K`
///   grows; the model-parameter gradient stays `Σ_k w̃_k ∇_θ log p(x, z_k)`. The surrogate
///   is `Σ_k stop(w̃_k²) · log w̄_k + Σ_k stop(w̃_k − w̃_k²) · log p(x, stop(z_k))`, where `w̄`
///   uses the detached guide distributions; its second term needs one more model run.
///
/// **Local latents and minibatches** ([`Iwae::with_local_plate`]). When every latent of
/// the guide lives in a data plate `i = 1..N` (a VAE's codes), `log p(x) = Σ_i log p(x_i)`
/// and the bound is taken per data point:
/// `L = Σ_{globals} + (N/n) Σ_{i ∈ batch} 1/(1−α) · log (1/K) Σ_k w_{k,i}^{1−α}`,
/// with `w_{k,i}` the weight of point `i`'s own sites. This is an unbiased estimate, over
/// minibatches, of the full-data bound `Σ_i L_K(x_i)`. Pyro instead weights whole
/// particles by the scaled minibatch log-density, which estimates neither (pyro#2220). A
/// guide with latents outside the data plate has no per-point bound: without subsampling
/// the plate is folded into one joint weight (standard IWAE over everything); with
/// subsampling it is a typed error, not a silently wrong number.
#[derive(Debug, Clone)]
pub struct Iwae {
    k: usize,
    alpha: f64,
    dreg: bool,
    data_plate: Option<String>,
    /// Set by [`Objective::init`] (the plate nesting comes from the model).
    weights: Option<WeightBuilder>,
}

impl Iwae {
    /// IWAE with `k ≥ 1` particles, vectorised in one run inside a plate left of the
    /// model's plates (their nesting is inferred by [`Objective::init`]).
    pub fn new(k: usize) -> Result<Self> {
        Particles::new(k, 0, "Iwae")?;
        Ok(Iwae {
            k,
            alpha: 0.0,
            dreg: false,
            data_plate: None,
            weights: None,
        })
    }

    /// The Rényi-α bound with `α ≥ 0`, `α ≠ 1` (`α = 0` is IWAE).
    pub fn renyi(alpha: f64, k: usize) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) || (alpha - 1.0).abs() < 1e-12 {
            return Err(PplError::config(
                "Iwae::renyi",
                format!(
                    "alpha must be finite, non-negative and not 1 (alpha = 1 is the ELBO: \
                     use TraceElbo), got {alpha}"
                ),
            ));
        }
        let mut s = Self::new(k)?;
        s.alpha = alpha;
        Ok(s)
    }

    /// Uses the doubly-reparameterised gradient (IWAE only).
    pub fn with_dreg(mut self) -> Result<Self> {
        if self.alpha != 0.0 {
            return Err(PplError::config(
                "Iwae::with_dreg",
                format!(
                    "DReG is defined for the IWAE bound (alpha = 0), got alpha = {}",
                    self.alpha
                ),
            ));
        }
        self.dreg = true;
        Ok(self)
    }

    /// Takes the bound per data point of plate `name` (see the [`Iwae`]).
    pub fn with_local_plate(mut self, name: impl Into<String>) -> Self {
        self.data_plate = Some(name.into());
        self.weights = None;
        self
    }

    fn weights(&self) -> Result<&WeightBuilder> {
        self.weights
            .as_ref()
            .ok_or_else(|| not_initialised(self.name()))
    }

    /// The log weights of one vectorised run of guide and model.
    pub fn log_weights<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<LogWeights> {
        let w = self.weights()?;
        let (g, m) = w.particles.traces(ctx, model, guide)?;
        w.log_weights(&g, &m)
    }

    /// The bound's metrics: the mean effective sample size of the weights.
    fn metrics(lw: &LogWeights) -> Result<Metrics> {
        let ess = lw.ess()?;
        Ok(Metrics::new().with("ess", scalar(&ess)? / ess.elem_count() as f64))
    }

    /// The DReG surrogate (see the [`Iwae`]).
    fn dreg_loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput> {
        let w = self.weights()?;
        let (g, m) = w.particles.traces(ctx, model, guide)?;
        let mp = w.parts(&m, |_| true, GuideLogQ::Attached)?;
        let lw = w.combine(
            &g,
            mp.clone(),
            w.parts(&g, |s| s.is_latent(), GuideLogQ::Attached)?,
        )?;
        let bound = scalar(&lw.bound(0.0)?)?;
        if !bound.is_finite() {
            return Ok(ObjectiveOutput {
                loss: lw.bound(0.0)?.neg()?,
                bound,
                metrics: Metrics::new(),
            });
        }
        let metrics = Self::metrics(&lw)?;
        let lw_bar = w.combine(&g, mp, w.parts(&g, |s| s.is_latent(), GuideLogQ::Detached)?)?;
        let m_bar = w.particles.replay(ctx, model, &g, true)?;
        let none = (None, None, None);
        let lp_bar = w.combine(&g, w.parts(&m_bar, |_| true, GuideLogQ::Attached)?, none)?;
        // One surrogate per weight vector along axis 0 (particles).
        let surrogate = |lw: &Tensor, lw_bar: &Tensor, lp_bar: &Tensor| -> Result<Tensor> {
            let wt = candle_nn::ops::softmax(&lw.detach(), 0)?;
            let w2 = wt.sqr()?;
            let a = (lw_bar * &w2)?.sum(0)?;
            let b = (lp_bar * (wt - &w2)?)?.sum(0)?;
            Ok((a + b)?)
        };
        let s = match (&lw.local, &lw_bar.local, &lp_bar.local) {
            (Some(l), Some(lb), Some(pb)) => {
                let per_point = surrogate(l, lb, pb)?.sum_all()?;
                (lw.global.mean(0)? + (per_point * lw.scale)?)?
            }
            _ => surrogate(&lw.global, &lw_bar.global, &lp_bar.global)?,
        };
        Ok(ObjectiveOutput {
            loss: s.neg()?,
            bound,
            metrics,
        })
    }
}

impl Objective for Iwae {
    fn name(&self) -> &'static str {
        match (self.alpha == 0.0, self.dreg) {
            (true, false) => "iwae",
            (true, true) => "iwae_dreg",
            _ => "renyi",
        }
    }

    /// Sets the plate nesting and checks that every guide latent is reparameterised.
    fn init(&mut self, info: &ModelInfo) -> Result<()> {
        if let Some(s) = info.guide.latent_sites().find(|s| !s.reparameterized) {
            return Err(PplError::guide_mismatch(
                &s.name,
                "is not reparameterised; multi-sample objectives need reparameterised \
                 guide sites (use TraceElbo for discrete latents)",
            ));
        }
        let particles = Particles::new(self.k, info.max_plate_nesting, "Iwae")?;
        self.weights = Some(WeightBuilder::new(particles, self.data_plate.clone()));
        Ok(())
    }

    fn loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput> {
        if self.dreg {
            return self.dreg_loss(ctx, model, guide);
        }
        let lw = self.log_weights(ctx, model, guide)?;
        let b = lw.bound(self.alpha)?;
        let bound = scalar(&b)?;
        let metrics = if bound.is_finite() {
            Self::metrics(&lw)?
        } else {
            Metrics::new()
        };
        Ok(ObjectiveOutput {
            bound,
            loss: b.neg()?,
            metrics,
        })
    }
}
