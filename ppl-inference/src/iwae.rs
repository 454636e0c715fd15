//! Multi-sample objectives: the importance-weighted bound (IWAE, Burda et al. 2016), the
//! Rényi-α bound (Li & Turner 2016) and the doubly-reparameterised IWAE gradient (DReG,
//! Tucker et al. 2019), correct with local latents and minibatches.
//!
//! With `K` particles `z_k ~ q` and weights `w_k = p(x, z_k) / q(z_k)`:
//!
//! * IWAE: `L_K = E[log (1/K) Σ_k w_k] ≤ log p(x)`; `L_1 = ELBO`, `L_K` non-decreasing in
//!   `K`, `L_K → log p(x)`.
//! * Rényi-α (`α ≥ 0`, `α ≠ 1`): `L_α = E[1/(1−α) · log (1/K) Σ_k w_k^{1−α}]`; `α = 0` is
//!   IWAE, `α → 1` the ELBO. For `α ∈ [0, 1)` it lower-bounds `log p(x)` for every `K`
//!   (Jensen), tighter as `α → 0`; `α > 1` gives a mass-covering objective that is not a
//!   bound.
//! * DReG (IWAE only, reparameterised guides): the guide-parameter gradient
//!   `Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ` (with `w̃` the normalised weights and `log q`'s
//!   parameters held fixed) replaces the high-variance IWAE one, which degrades as `K`
//!   grows; the model-parameter gradient stays `Σ_k w̃_k ∇_θ log p(x, z_k)`. The surrogate
//!   is `Σ_k stop(w̃_k²) · log w̄_k + Σ_k stop(w̃_k − w̃_k²) · log p(x, stop(z_k))`, where `w̄`
//!   uses the detached guide distributions; its second term needs one more model run.
//!
//! **Local latents and minibatches** ([`Iwae::with_local_plate`]). When every latent of
//! the guide lives in a data plate `i = 1..N` (a VAE's codes), `log p(x) = Σ_i log p(x_i)`
//! and the bound is taken per data point:
//! `L = Σ_{globals} + (N/n) Σ_{i ∈ batch} 1/(1−α) · log (1/K) Σ_k w_{k,i}^{1−α}`,
//! with `w_{k,i}` the weight of point `i`'s own sites. This is an unbiased estimate, over
//! minibatches, of the full-data bound `Σ_i L_K(x_i)`. Pyro instead weights whole
//! particles by the scaled minibatch log-density, which estimates neither (pyro#2220). A
//! guide with latents outside the data plate has no per-point bound: without subsampling
//! the plate is folded into one joint weight (standard IWAE over everything); with
//! subsampling it is a typed error, not a silently wrong number.

use crate::objective::{Objective, ObjectiveOutput};
use crate::particles::{log_mean_exp0, value, Particles};
use candle_core::{Tensor, D};
use ppl_core::compat::check_guide;
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};
use ppl_core::message::PlateFrame;
use ppl_core::model::Model;
use ppl_core::trace::{Site, Trace};

/// Log weights, split into terms shared by every data point and per-point terms.
#[derive(Debug, Clone)]
pub struct LogWeights {
    /// Terms outside the data plate, one per particle: `[K]`.
    pub global: Tensor,
    /// Terms of each data point in the batch: `[K, n]` (`None` without a data plate).
    pub local: Option<Tensor>,
    /// The data plate's subsampling scale `N / n` (1 without a data plate).
    pub scale: f64,
}

impl LogWeights {
    /// The Rényi-α bound (`α = 0`: IWAE) of these weights; a scalar tensor.
    pub fn bound(&self, alpha: f64) -> Result<Tensor> {
        let a = 1.0 - alpha;
        match &self.local {
            None => Ok((log_mean_exp0(&(&self.global * a)?)? / a)?),
            Some(local) => {
                let per_point = (log_mean_exp0(&(local * a)?)? / a)?;
                let g = self.global.mean(0)?;
                Ok((g + (per_point.sum_all()? * self.scale)?)?)
            }
        }
    }

    /// The IWAE estimate of `log p(x_i)` for each data point of the batch, `[n]`
    /// (requires a data plate; the global terms, if any, are added to every point).
    pub fn per_point(&self) -> Result<Tensor> {
        let local = self
            .local
            .as_ref()
            .ok_or_else(|| PplError::InvalidArgument {
                context: "LogWeights::per_point",
                message: "no data plate was given (see Iwae::with_local_plate)".into(),
            })?;
        log_mean_exp0(&local.broadcast_add(&self.global.unsqueeze(1)?)?)
    }
}

/// The multi-sample objective. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Iwae {
    particles: Particles,
    alpha: f64,
    dreg: bool,
    data_plate: Option<String>,
    checked: bool,
}

/// Which guide densities to use for the weights.
#[derive(Clone, Copy, PartialEq)]
enum GuideLogQ {
    Attached,
    Detached,
}

impl Iwae {
    /// IWAE with `k` particles, vectorised left of `max_plate_nesting` plate dims.
    pub fn new(k: usize, max_plate_nesting: usize) -> Result<Self> {
        Ok(Iwae {
            particles: Particles::new(k, max_plate_nesting, "Iwae")?,
            alpha: 0.0,
            dreg: false,
            data_plate: None,
            checked: false,
        })
    }

    /// The Rényi-α bound with `α ≥ 0`, `α ≠ 1` (`α = 0` is IWAE).
    pub fn renyi(alpha: f64, k: usize, max_plate_nesting: usize) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) || (alpha - 1.0).abs() < 1e-12 {
            return Err(PplError::InvalidArgument {
                context: "Iwae::renyi",
                message: format!(
                    "alpha must be finite, non-negative and not 1 (alpha = 1 is the ELBO: \
                     use TraceElbo), got {alpha}"
                ),
            });
        }
        let mut s = Self::new(k, max_plate_nesting)?;
        s.alpha = alpha;
        Ok(s)
    }

    /// Uses the doubly-reparameterised gradient (IWAE only).
    pub fn with_dreg(mut self) -> Result<Self> {
        if self.alpha != 0.0 {
            return Err(PplError::InvalidArgument {
                context: "Iwae::with_dreg",
                message: format!(
                    "DReG is defined for the IWAE bound (alpha = 0), got alpha = {}",
                    self.alpha
                ),
            });
        }
        self.dreg = true;
        Ok(self)
    }

    /// Takes the bound per data point of plate `name` (see the [module docs](self)).
    pub fn with_local_plate(mut self, name: impl Into<String>) -> Self {
        self.data_plate = Some(name.into());
        self
    }

    /// The log weights of one vectorised run of guide and model.
    pub fn log_weights<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<LogWeights> {
        let (g, m) = self.particles.traces(ctx, model, guide)?;
        self.check(&g, &m)?;
        let (mp, gq) = (
            self.parts(&m, |_| true, GuideLogQ::Attached)?,
            self.parts(&g, |s| s.is_latent(), GuideLogQ::Attached)?,
        );
        self.combine(&g, mp, gq)
    }

    fn check(&mut self, g: &Trace, m: &Trace) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        check_guide(m, g)?;
        if let Some(s) = g.latent_sites().find(|s| !s.reparameterized) {
            return Err(PplError::GuideMismatch {
                site: s.name.to_string(),
                reason: "is not reparameterised; multi-sample objectives need \
                         reparameterised guide sites (use TraceElbo for discrete latents)"
                    .into(),
            });
        }
        self.checked = true;
        Ok(())
    }

    fn frame<'a>(&self, s: &'a Site) -> Option<&'a PlateFrame> {
        let name = self.data_plate.as_deref()?;
        s.plates.iter().find(|f| f.name.matches(name))
    }

    /// Sums the densities of the selected sites into `(global [K], local [K, n], scale)`.
    fn parts(
        &self,
        t: &Trace,
        keep: impl Fn(&Site) -> bool,
        logq: GuideLogQ,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<f64>)> {
        let (mut global, mut local, mut scale) = (None::<Tensor>, None::<Tensor>, None);
        let add = |acc: Option<Tensor>, v: Tensor| -> Result<Option<Tensor>> {
            Ok(Some(match acc {
                None => v,
                Some(a) => {
                    let v = v.to_dtype(a.dtype())?;
                    (a + v)?
                }
            }))
        };
        for s in t.sites().iter().filter(|s| s.has_density() && keep(s)) {
            let lp = match logq {
                GuideLogQ::Attached => s.masked_log_prob()?,
                GuideLogQ::Detached => {
                    let d = s.dist.as_ref().ok_or_else(|| PplError::Site {
                        site: s.name.to_string(),
                        plates: String::new(),
                        message: "has no distribution".into(),
                    })?;
                    let lp = d.detach()?.log_prob(&s.value)?;
                    match &s.mask {
                        Some(m) => lp.broadcast_mul(&m.to_dtype(lp.dtype())?)?,
                        None => lp,
                    }
                }
            };
            match self.frame(s) {
                Some(f) => {
                    let lp = (lp * (s.scale / f.scale()))?;
                    let (mut r, dims) = self.particles.reduce(s, &lp, |g| g.name == f.name)?;
                    if dims.is_empty() {
                        r = r.unsqueeze(r.rank())?; // plate of size 1 folded away
                    }
                    if self.particles.k == 1 {
                        r = r.unsqueeze(0)?;
                    }
                    local = add(local, r)?;
                    scale = Some(f.scale());
                }
                None => {
                    let lp = (lp * s.scale)?;
                    let r = self.particles.per_particle(s, &lp)?;
                    let r = if self.particles.k == 1 {
                        r.reshape(1)?
                    } else {
                        r
                    };
                    global = add(global, r)?;
                }
            }
        }
        Ok((global, local, scale))
    }

    /// `model − guide`, folding the data plate into the global weight when the guide has
    /// latents outside it.
    fn combine(
        &self,
        g: &Trace,
        model: (Option<Tensor>, Option<Tensor>, Option<f64>),
        guide: (Option<Tensor>, Option<Tensor>, Option<f64>),
    ) -> Result<LogWeights> {
        let sub = |a: Option<Tensor>, b: Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match (a, b) {
                (Some(a), Some(b)) => {
                    let b = b.to_dtype(a.dtype())?;
                    Some((a - b)?)
                }
                (Some(a), None) => Some(a),
                (None, Some(b)) => Some(b.neg()?),
                (None, None) => None,
            })
        };
        let scale = model.2.or(guide.2).unwrap_or(1.0);
        let mut global = sub(model.0, guide.0)?;
        let mut local = sub(model.1, guide.1)?;
        if let Some(name) = &self.data_plate {
            if local.is_none() {
                return Err(PplError::InvalidArgument {
                    context: "Iwae",
                    message: format!("no site with a density is inside plate `{name}`"),
                });
            }
            if let Some(s) = g.latent_sites().find(|s| self.frame(s).is_none()) {
                if scale != 1.0 {
                    return Err(PplError::GuideMismatch {
                        site: s.name.to_string(),
                        reason: format!(
                            "is a latent outside the subsampled plate `{name}`: the \
                             multi-sample bound has no per-point form with global latents \
                             (use the full batch, or TraceElbo)"
                        ),
                    });
                }
                let l = local.take().map(|l| l.sum(D::Minus1)).transpose()?;
                global = sub(global, l.map(|l| l.neg()).transpose()?)?;
            }
        }
        let global = match global {
            Some(g) => g,
            None => {
                let l = local.as_ref().ok_or_else(|| PplError::InvalidArgument {
                    context: "Iwae",
                    message: "the traces have no site with a density".into(),
                })?;
                Tensor::zeros(l.dim(0)?, l.dtype(), l.device())?
            }
        };
        Ok(LogWeights {
            global,
            local,
            scale: if self.data_plate.is_some() {
                scale
            } else {
                1.0
            },
        })
    }

    /// The DReG surrogate (see the [module docs](self)).
    fn dreg_loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput> {
        let (g, m) = self.particles.traces(ctx, model, guide)?;
        self.check(&g, &m)?;
        let mp = self.parts(&m, |_| true, GuideLogQ::Attached)?;
        let lw = self.combine(
            &g,
            mp.clone(),
            self.parts(&g, |s| s.is_latent(), GuideLogQ::Attached)?,
        )?;
        let bound = value(&lw.bound(0.0)?)?;
        if !bound.is_finite() {
            return Ok(ObjectiveOutput {
                loss: lw.bound(0.0)?.neg()?,
                bound,
            });
        }
        let lw_bar = self.combine(
            &g,
            mp,
            self.parts(&g, |s| s.is_latent(), GuideLogQ::Detached)?,
        )?;
        let m_bar = self.particles.replay(ctx, model, &g, true)?;
        let none = (None, None, None);
        let lp_bar = self.combine(&g, self.parts(&m_bar, |_| true, GuideLogQ::Attached)?, none)?;
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
        Ok(ObjectiveOutput {
            bound: value(&b)?,
            loss: b.neg()?,
        })
    }
}
