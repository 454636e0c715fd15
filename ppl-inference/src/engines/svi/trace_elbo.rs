use super::baseline::Baseline;
use super::objective::{not_initialised, Objective, ObjectiveOutput};
use crate::engine::Metrics;
use crate::importance::{scalar, ModelInfo, Particles};
use candle_core::Tensor;
use ppl_core::distributions::kl_divergence;
use ppl_core::handlers::StopGradient;
use ppl_core::Constraint;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::SiteName;
use ppl_core::{PplError, Result};
use ppl_core::{Site, Trace};
use std::collections::{HashMap, HashSet};

/// The prefix of the moving-average baselines in [`Objective::state`].
const AVERAGE: &str = "baseline_average/";

/// The ELBO objective.
///
/// The Trace ELBO, with score-function terms, baselines, Rao-Blackwellisation within
/// plates, and the analytic-KL (mean-field) variant.
///
/// For a model `p(x, z)` and a guide `q(z)`, with `K` particles `z_k ~ q` (vectorised in
/// one run, see [`Particles`]):
///
/// `ELBO ≈ (1/K) Σ_k [log p(x, z_k) − log q(z_k)]`.
///
/// **Gradients.** Reparameterised sites contribute through the pathwise derivative of
/// `z_k`. For every guide site `s` whose sample is not reparameterised (discrete latents),
/// the surrogate adds the score-function (REINFORCE) term
/// `Σ_i log q(s_i) · stop_grad(c_{s,i} − b_s)`, with `log q(s_i)` unscaled (per element
/// `i` of the site's plates) and `c_{s,i}` the *downstream cost* of `s_i`:
///
/// * without Rao-Blackwellisation, `c_{s,i} = ELBO_k`, the whole particle's estimate;
/// * with it (the default), `c_{s,i}` drops only terms that provably do not depend on
///   `s_i`, which removes variance, not expectation:
///   - guide sites *before* `s` in the guide's order (drawn before `s_i`, so neither their
///     values nor their `log q` can depend on it);
///   - of a site that shares a plate with `s`, the elements other than `i` (a plate
///     declares its elements conditionally independent, in guide and model alike).
///
///   Every model term is kept otherwise, *whatever the model's order*: the model's
///   latents take the guide's values, so a model site sampled before `s` still depends on
///   `s_i` when the guide drew its value after `s` and from it (Pyro's semi-supervised VAE
///   samples `z` before `y` in the model, but its guide draws `y` first and `z | y`).
///   Dropping by the model's order would bias the gradient: in a toy with
///   `∂ELBO/∂l = p(1 − p)(3x − 9 − l)` it dropped `E[log p(z) | y]`, a term worth 4.5 nats,
///   and trained `p` to 0.46 instead of `p* = σ(−4.5) = 0.011`.
///
/// `b_s` is a baseline, which leaves the estimator unbiased (`E[∇ log q] = 0`):
/// [`Baseline::MovingAverage`] (decay β, default 0.9) of the mean cost, or
/// [`Baseline::Learned`], a parameter `baseline/<site>` fitted jointly by adding
/// `mean((c − b)²)` to the loss, or none.
///
/// **Analytic KL** ([`TraceElbo::with_analytic_kl`], Pyro's `TraceMeanField_ELBO`): for a
/// reparameterised guide site whose (guide, model) pair has a closed-form
/// [`kl_divergence`], `log p(z_s) − log q(z_s)` is replaced by `−KL(q_s ‖ p_s)`, scaled and
/// masked like the site; other sites keep the Monte-Carlo terms. The estimate stays
/// unbiased and its variance drops.
///
/// The loss to minimise is `−surrogate / K` (plus the learned baselines' squared error);
/// the reported bound is the ELBO estimate.
#[derive(Debug, Clone)]
pub struct TraceElbo {
    k: usize,
    /// Set by [`Objective::init`] (the plate nesting comes from the model).
    particles: Option<Particles>,
    baseline: Baseline,
    rao_blackwellize: bool,
    analytic_kl: bool,
    score_function_only: bool,
    averages: HashMap<SiteName, f64>,
}

impl Default for TraceElbo {
    fn default() -> Self {
        TraceElbo {
            k: 1,
            particles: None,
            baseline: Baseline::MovingAverage(0.9),
            rao_blackwellize: true,
            analytic_kl: false,
            score_function_only: false,
            averages: HashMap::new(),
        }
    }
}

/// One site's contribution to `log p − log q`, batch-shaped.
struct Term<'a> {
    site: &'a Site,
    /// Model terms enter the ELBO with `+`, guide terms (`value = log q`) with `−`.
    from_model: bool,
    order: usize,
    value: Tensor,
}

impl TraceElbo {
    /// One particle, moving-average baselines (β = 0.9), Rao-Blackwellised, Monte-Carlo KL.
    pub fn new() -> Self {
        Self::default()
    }

    /// `k ≥ 1` particles per step, vectorised in one run inside a plate left of the
    /// model's plates (their nesting is inferred by [`Objective::init`]).
    pub fn with_particles(mut self, k: usize) -> Result<Self> {
        Particles::new(k, 0, "TraceElbo")?;
        self.k = k;
        self.particles = None;
        Ok(self)
    }

    fn particles(&self) -> Result<Particles> {
        self.particles.ok_or_else(|| not_initialised("trace_elbo"))
    }

    /// Decay `β ∈ [0, 1)` of the moving-average baselines.
    pub fn with_baseline_decay(self, beta: f64) -> Result<Self> {
        self.with_baseline(Baseline::MovingAverage(beta))
    }

    /// The baseline of the score-function terms.
    pub fn with_baseline(mut self, b: Baseline) -> Result<Self> {
        if let Baseline::MovingAverage(beta) = b {
            if !(0.0..1.0).contains(&beta) {
                return Err(PplError::config(
                    "TraceElbo",
                    format!("baseline decay must be in [0, 1), got {beta}"),
                ));
            }
        }
        self.baseline = b;
        Ok(self)
    }

    /// Whether score-function costs are Rao-Blackwellised (default `true`).
    pub fn with_rao_blackwellization(mut self, on: bool) -> Self {
        self.rao_blackwellize = on;
        self
    }

    /// Uses closed-form `KL(q_s ‖ p_s)` where the pair has one (mean-field ELBO).
    pub fn with_analytic_kl(mut self, on: bool) -> Self {
        self.analytic_kl = on;
        self
    }

    /// Treats every guide site as non-reparameterised (score-function gradients only), for
    /// comparing estimators or for guides whose samples must not be differentiated.
    pub fn with_score_function_only(mut self, on: bool) -> Self {
        self.score_function_only = on;
        self
    }

    fn traces<M: Model + ?Sized, G: Model + ?Sized>(
        &self,
        particles: &Particles,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<(Trace, Trace)> {
        if !self.score_function_only {
            return particles.traces(ctx, model, guide);
        }
        let ((), g) = ctx.trace(|ctx| {
            ctx.handle(StopGradient::all(), |ctx| particles.run(ctx, guide))
                .map(|(r, _)| r)
        })?;
        let m = particles.replay(ctx, model, &g, false)?;
        Ok((g, m))
    }

    /// `−KL(q ‖ p)` of a guide site against its model site, scaled and masked like the
    /// guide site; `None` when the pair has no closed form.
    fn neg_kl(&self, q: &Site, p: &Site) -> Result<Option<Tensor>> {
        let (Some(qd), Some(pd)) = (&q.dist, &p.dist) else {
            return Ok(None);
        };
        let kl = match kl_divergence(qd.as_ref(), pd.as_ref()) {
            Ok(kl) => kl,
            Err(PplError::NoAnalyticKl { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut t = kl.neg()?;
        if let Some(m) = &q.mask {
            t = t.broadcast_mul(&m.to_dtype(t.dtype())?)?;
        }
        if q.scale != 1.0 {
            t = (t * q.scale)?;
        }
        Ok(Some(t))
    }

    /// The per-site terms of `log p − log q`.
    fn terms<'a>(&self, g: &'a Trace, m: &'a Trace) -> Result<Vec<Term<'a>>> {
        let mut kl_sites = HashSet::new();
        let mut out = Vec::new();
        for (order, s) in m.sites().iter().enumerate() {
            if !s.has_density() {
                continue;
            }
            let mut value = None;
            if self.analytic_kl && s.is_latent() {
                if let Some(q) = g.get(s.name.clone()).filter(|q| q.reparameterized) {
                    if let Some(t) = self.neg_kl(q, s)? {
                        kl_sites.insert(s.name.clone());
                        value = Some(t);
                    }
                }
            }
            let value = match value {
                Some(v) => v,
                None => s.log_prob()?,
            };
            out.push(Term {
                site: s,
                from_model: true,
                order,
                value,
            });
        }
        for (order, s) in g.sites().iter().enumerate() {
            if s.is_latent() && s.has_density() && !kl_sites.contains(&s.name) {
                out.push(Term {
                    site: s,
                    from_model: false,
                    order,
                    value: s.log_prob()?,
                });
            }
        }
        Ok(out)
    }

    /// The downstream cost of guide site `s` (see the module docs), shaped like its
    /// reduced log density `[K?, plate dims of s…]`.
    fn cost(
        &self,
        particles: &Particles,
        s: &Site,
        s_dims: &[isize],
        terms: &[Term<'_>],
        g_order: usize,
        elbo_k: &Tensor,
    ) -> Result<Tensor> {
        let lead = usize::from(particles.k > 1);
        if !self.rao_blackwellize {
            let mut c = elbo_k.clone();
            for _ in s_dims {
                c = c.unsqueeze(c.rank())?;
            }
            return Ok(c);
        }
        let mut total: Option<Tensor> = None;
        for t in terms {
            // Only guide sites drawn before `s` are dropped whole; the model's order says
            // nothing about what its sites' guide values depend on (see the type's docs).
            if !t.from_model && t.order < g_order {
                continue;
            }
            let (mut r, t_dims) = particles.reduce(t.site, &t.value, |f| {
                s.plates.iter().any(|sf| sf.name == f.name)
            })?;
            for (j, d) in s_dims.iter().enumerate() {
                if !t_dims.contains(d) {
                    r = r.unsqueeze(lead + j)?;
                }
            }
            let r = r.to_dtype(elbo_k.dtype())?;
            let r = if t.from_model { r } else { r.neg()? };
            total = Some(match total {
                None => r,
                Some(acc) => acc.broadcast_add(&r)?,
            });
        }
        match total {
            Some(t) => Ok(t),
            None => elbo_k.zeros_like().map_err(Into::into),
        }
    }
}

impl Objective for TraceElbo {
    fn name(&self) -> &'static str {
        "trace_elbo"
    }

    fn init(&mut self, info: &ModelInfo) -> Result<()> {
        self.particles = Some(Particles::new(self.k, info.max_plate_nesting, "TraceElbo")?);
        Ok(())
    }

    /// Runs the guide, replays it into the model, and returns the loss and ELBO.
    fn loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput> {
        let particles = self.particles()?;
        let (g, m) = self.traces(&particles, ctx, model, guide)?;
        let k = particles.k as f64;
        let terms = self.terms(&g, &m)?;
        let mut elbo_k: Option<Tensor> = None;
        for t in &terms {
            // The sign is applied when accumulating (a sub, not a neg node per guide site).
            let v = particles.per_particle(t.site, &t.value)?;
            elbo_k = Some(match (elbo_k, t.from_model) {
                (None, true) => v,
                (None, false) => v.neg()?,
                (Some(acc), plus) => {
                    let v = v.to_dtype(acc.dtype())?;
                    if plus {
                        (acc + v)?
                    } else {
                        (acc - v)?
                    }
                }
            });
        }
        let elbo_k = elbo_k.ok_or_else(|| {
            PplError::config(
                "TraceElbo",
                "neither the model nor the guide has a site with a density",
            )
        })?;
        let mut surrogate = if elbo_k.rank() == 0 {
            elbo_k.clone()
        } else {
            elbo_k.sum_all()?
        };
        let elbo = scalar(&surrogate)? / k;
        if !elbo.is_finite() {
            // Leave the baselines alone; the training loop skips non-finite steps.
            return Ok(ObjectiveOutput {
                loss: surrogate.neg()?,
                bound: elbo,
                metrics: Metrics::new(),
            });
        }
        let cost_k = elbo_k.detach();
        let mut baseline_loss: Option<Tensor> = None;
        for (g_order, s) in g.sites().iter().enumerate() {
            if !s.is_latent() || s.reparameterized || !s.has_density() {
                continue;
            }
            let (lq, s_dims) = particles.reduce(s, &s.masked_log_prob()?, |_| true)?;
            let cost = self
                .cost(&particles, s, &s_dims, &terms, g_order, &cost_k)?
                .detach()
                .to_dtype(lq.dtype())?;
            let advantage = match self.baseline {
                Baseline::None => cost,
                Baseline::MovingAverage(beta) => {
                    let mean = scalar(&cost)? / cost.elem_count() as f64;
                    let b = self.averages.get(&s.name).copied().unwrap_or(mean);
                    self.averages
                        .insert(s.name.clone(), beta * b + (1.0 - beta) * mean);
                    cost.affine(1.0, -b)?
                }
                Baseline::Learned => {
                    let zero = Tensor::zeros((), lq.dtype(), lq.device())?;
                    let b = ctx.param(
                        format!("baseline/{}", s.name),
                        || Ok(zero.clone()),
                        Constraint::Real,
                    )?;
                    let sq = cost.broadcast_sub(&b)?.sqr()?.mean_all()?;
                    baseline_loss = Some(match baseline_loss {
                        None => sq,
                        Some(acc) => (acc + sq)?,
                    });
                    cost.broadcast_sub(&b.detach())?
                }
            };
            let term = lq
                .broadcast_mul(&advantage)?
                .sum_all()?
                .to_dtype(surrogate.dtype())?;
            surrogate = (surrogate + term)?;
        }
        let mut loss = surrogate.affine(-1.0 / k, 0.0)?;
        if let Some(bl) = baseline_loss {
            let bl = bl.to_dtype(loss.dtype())?;
            loss = (loss + bl)?;
        }
        Ok(ObjectiveOutput {
            loss,
            bound: elbo,
            metrics: Metrics::new(),
        })
    }

    /// The moving-average baselines, one scalar (f64) per site: `baseline_average/<site>`.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = self
            .averages
            .iter()
            .map(|(name, v)| {
                let t = Tensor::new(*v, &candle_core::Device::Cpu)?;
                Ok((format!("{AVERAGE}{name}"), t))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        let mut averages = HashMap::new();
        for (key, t) in state {
            let name = key.strip_prefix(AVERAGE).ok_or_else(|| {
                PplError::config(
                    "TraceElbo::load_state",
                    format!("unexpected state `{key}` (expected `{AVERAGE}<site>`)"),
                )
            })?;
            if t.elem_count() != 1 {
                return Err(PplError::config(
                    "TraceElbo::load_state",
                    format!("`{key}` must hold one value, got shape {:?}", t.dims()),
                ));
            }
            averages.insert(SiteName::parse(name), scalar(&t)?);
        }
        self.averages = averages;
        Ok(())
    }
}
