//! The Trace ELBO.
//!
//! For a model `p(x, z)` and a guide `q(z)`, with `K` particles `z_k ~ q`:
//!
//! `ELBO ≈ (1/K) Σ_k [log p(x, z_k) − log q(z_k)]`.
//!
//! Gradients: sites whose value is reparameterised contribute through the pathwise
//! derivative of `z_k`. For every guide site `s` that is not reparameterised (discrete
//! latents), the surrogate adds the score-function (REINFORCE) term
//! `log q_s(z_{s,k}) · stop_grad(ELBO_k − b_s)`, whose gradient is an unbiased estimate of
//! the missing part of `∇ ELBO`; `b_s` is a moving-average baseline (decay β, default 0.9)
//! that reduces its variance without biasing it. The loss to minimise is `−surrogate`; its
//! value equals `−ELBO`.
//!
//! With `K > 1` the model and guide run once, vectorised, inside a plate `"__particles"`
//! at dim `−(max_plate_nesting + 1)`, so models must broadcast over a leading batch dim.

use candle_core::Tensor;
use ppl_core::compat::check_guide;
use ppl_core::ctx::{Ctx, PlateOpts};
use ppl_core::error::{PplError, Result};
use ppl_core::handlers::Replay;
use ppl_core::model::Model;
use ppl_core::site::SiteName;
use ppl_core::trace::{Site, Trace};
use std::collections::HashMap;

/// Name of the plate that vectorises particles.
pub const PARTICLES: &str = "__particles";

/// The ELBO objective. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TraceElbo {
    num_particles: usize,
    max_plate_nesting: usize,
    baseline_decay: f64,
    baselines: HashMap<SiteName, f64>,
    checked: bool,
}

/// One evaluation of the objective.
#[derive(Debug, Clone)]
pub struct ElboOutput {
    /// The differentiable loss (`−surrogate`); call `backward` on it.
    pub loss: Tensor,
    /// The ELBO estimate (the loss's value, negated).
    pub elbo: f64,
}

impl Default for TraceElbo {
    fn default() -> Self {
        TraceElbo {
            num_particles: 1,
            max_plate_nesting: 1,
            baseline_decay: 0.9,
            baselines: HashMap::new(),
            checked: false,
        }
    }
}

impl TraceElbo {
    /// One particle, baseline decay 0.9.
    pub fn new() -> Self {
        Self::default()
    }

    /// `k` particles per step, vectorised in a plate left of `max_plate_nesting` plate dims.
    pub fn with_particles(mut self, k: usize, max_plate_nesting: usize) -> Result<Self> {
        if k == 0 {
            return Err(PplError::InvalidArgument {
                context: "TraceElbo",
                message: "num_particles must be at least 1".into(),
            });
        }
        self.num_particles = k;
        self.max_plate_nesting = max_plate_nesting;
        Ok(self)
    }

    /// Decay `β ∈ [0, 1)` of the moving-average baselines.
    pub fn with_baseline_decay(mut self, beta: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&beta) {
            return Err(PplError::InvalidArgument {
                context: "TraceElbo",
                message: format!("baseline decay must be in [0, 1), got {beta}"),
            });
        }
        self.baseline_decay = beta;
        Ok(self)
    }

    fn run<M: Model + ?Sized>(&self, ctx: &mut Ctx, m: &M) -> Result<()> {
        if self.num_particles > 1 {
            let opts = PlateOpts {
                dim: Some(-(self.max_plate_nesting as isize) - 1),
                ..Default::default()
            };
            ctx.plate(PARTICLES, self.num_particles, opts, |ctx, _| {
                m.run(ctx).map(|_| ())
            })
        } else {
            m.run(ctx).map(|_| ())
        }
    }

    /// Runs the guide, replays it into the model, and returns the loss and ELBO. The first
    /// call also checks that the guide fits the model ([`check_guide`]).
    pub fn loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ElboOutput> {
        let ((), g) = ctx.trace(|ctx| self.run(ctx, guide))?;
        let ((), m) = ctx.trace(|ctx| {
            ctx.handle(Replay::new(&g), |ctx| self.run(ctx, model))
                .map(|(r, _)| r)
        })?;
        if !self.checked {
            check_guide(&m, &g)?;
            self.checked = true;
        }
        let k = self.num_particles;
        let log_p = self.per_particle(&m, |_| true)?;
        let log_q = self.per_particle(&g, |s| s.is_latent())?;
        let elbo_k = (log_p - &log_q)?; // [K] or scalar
        let mut surrogate = elbo_k.sum_all()?;
        let elbo = surrogate
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            / k as f64;
        if !elbo.is_finite() {
            // Leave the baselines alone; the training loop skips non-finite steps.
            return Ok(ElboOutput {
                loss: surrogate.neg()?,
                elbo,
            });
        }
        let cost = elbo_k.detach();
        for s in g.latent_sites().filter(|s| !s.reparameterized) {
            let b = self.baselines.get(&s.name).copied().unwrap_or(elbo);
            let lq = self.site_per_particle(s)?;
            let term = lq.mul(&(&cost - b)?.to_dtype(lq.dtype())?)?.sum_all()?;
            surrogate = (surrogate + term.to_dtype(elbo_k.dtype())?)?;
            let beta = self.baseline_decay;
            self.baselines
                .insert(s.name.clone(), beta * b + (1.0 - beta) * elbo);
        }
        Ok(ElboOutput {
            loss: (surrogate.neg()? / k as f64)?,
            elbo,
        })
    }

    /// A site's scaled, masked log density summed to one value per particle.
    fn site_per_particle(&self, s: &Site) -> Result<Tensor> {
        let lp = s.log_prob()?;
        if self.num_particles == 1 {
            return Ok(lp.sum_all()?);
        }
        let axis = lp.rank() as isize - self.max_plate_nesting as isize - 1;
        if axis < 0 || lp.dim(axis as usize)? != self.num_particles {
            return Err(PplError::Site {
                site: s.name.to_string(),
                plates: String::new(),
                message: format!(
                    "log density of shape {:?} has no particle dim at {} (is max_plate_nesting \
                     = {} right?)",
                    lp.dims(),
                    -(self.max_plate_nesting as isize) - 1,
                    self.max_plate_nesting
                ),
            });
        }
        let axis = axis as usize;
        let mut out = lp;
        for d in (0..out.rank()).rev() {
            if d != axis {
                out = out.sum(d)?;
            }
        }
        Ok(out)
    }

    fn per_particle(&self, t: &Trace, keep: impl Fn(&Site) -> bool) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for s in t.sites().iter().filter(|s| s.has_density() && keep(s)) {
            let lp = self.site_per_particle(s)?;
            total = Some(match total {
                None => lp,
                Some(acc) => {
                    let lp = lp.to_dtype(acc.dtype())?;
                    (acc + lp)?
                }
            });
        }
        total.ok_or_else(|| PplError::InvalidArgument {
            context: "TraceElbo",
            message: "the trace has no site with a density".into(),
        })
    }
}
