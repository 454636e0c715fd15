use candle_core::Tensor;
use ppl_core::handlers::{Condition, Replay, StopGradient, Uncondition};
use ppl_core::ChoiceMap;
use ppl_core::Model;
use ppl_core::PlateFrame;
use ppl_core::{Ctx, PlateOpts};
use ppl_core::{PplError, Result};
use ppl_core::{Site, Trace};

/// Name of the plate that vectorises particles.
pub const PARTICLES: &str = "__particles";

/// How many particles, and where their plate goes.
///
/// Vectorised particles, guide→model tracing, and the plate-aware reductions every
/// objective shares.
///
/// `K` particles run as one model execution inside the plate [`PARTICLES`] at dim
/// `−(max_plate_nesting + 1)`, so each site's log density has a particle axis left of its
/// plate axes. An objective reduces a site's log density to what it needs: one value per
/// particle (`[K]`), or one per particle and data point (`[K, n]`), keeping the axes of
/// chosen plates and summing the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Particles {
    /// Number of particles `K ≥ 1` (`1` runs without a particle plate).
    pub k: usize,
    /// The number of plate dims the model uses; the particle plate goes left of them.
    pub max_plate_nesting: usize,
}

impl Particles {
    /// `k` particles left of `max_plate_nesting` plate dims; `k = 0` is an error naming
    /// `context`.
    pub fn new(k: usize, max_plate_nesting: usize, context: &'static str) -> Result<Self> {
        if k == 0 {
            return Err(PplError::config(
                context,
                "the number of particles must be at least 1",
            ));
        }
        Ok(Particles {
            k,
            max_plate_nesting,
        })
    }

    /// One particle (no particle plate).
    pub fn single() -> Self {
        Particles {
            k: 1,
            max_plate_nesting: 0,
        }
    }

    /// Runs `m` once, inside the particle plate when `k > 1`.
    pub fn run<M: Model + ?Sized>(&self, ctx: &mut Ctx, m: &M) -> Result<()> {
        if self.k > 1 {
            let opts = PlateOpts {
                dim: Some(-(self.max_plate_nesting as isize) - 1),
                outermost: true,
                ..Default::default()
            };
            ctx.plate(PARTICLES, self.k, opts, |ctx, _| m.run(ctx).map(|_| ()))
        } else {
            m.run(ctx).map(|_| ())
        }
    }

    /// Traces the guide, then the model with the guide's values replayed (detached from
    /// the graph when `detach_latents`): `(guide trace, model trace)`.
    pub fn traces<M: Model + ?Sized, G: Model + ?Sized>(
        &self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<(Trace, Trace)> {
        let ((), g) = ctx.trace(|ctx| self.run(ctx, guide))?;
        let m = self.replay(ctx, model, &g, false)?;
        Ok((g, m))
    }

    /// Model→guide tracing (the sleep phase of wake-sleep): traces `model` with every
    /// observed site sampled (`Uncondition`), giving joint draws `(z, x) ~ p` (one per
    /// particle), then `guide` with the model's latents replayed and its inputs set to the
    /// choices `inputs` builds from the model's trace (e.g. the simulated `x` for the
    /// guide's data input; see `AutoAmortized::input_choices`), so the guide trace scores
    /// `log q(z | x)` at the simulated pair. Returns `(model trace, guide trace)`.
    pub fn model_then_guide<M: Model + ?Sized, G: Model + ?Sized>(
        &self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
        inputs: impl FnOnce(&Trace) -> Result<ChoiceMap>,
    ) -> Result<(Trace, Trace)> {
        let ((), m) = ctx.trace(|ctx| {
            ctx.handle(Uncondition::new(), |ctx| self.run(ctx, model))
                .map(|(r, _)| r)
        })?;
        let choices = inputs(&m)?;
        // Condition is outside Replay, so the simulated inputs win over the model's data.
        let ((), g) = ctx.trace(|ctx| {
            ctx.handle(Condition::new(choices), |ctx| {
                ctx.handle(Replay::new(&m), |ctx| self.run(ctx, guide))
                    .map(|(r, _)| r)
            })
            .map(|(r, _)| r)
        })?;
        Ok((m, g))
    }

    /// Traces `model` with the values of `guide_trace` replayed; `detach` cuts them from
    /// the graph.
    pub fn replay<M: Model + ?Sized>(
        &self,
        ctx: &mut Ctx,
        model: &M,
        guide_trace: &Trace,
        detach: bool,
    ) -> Result<Trace> {
        let ((), m) = ctx.trace(|ctx| {
            ctx.handle(Replay::new(guide_trace), |ctx| {
                if detach {
                    ctx.handle(StopGradient::all(), |ctx| self.run(ctx, model))
                        .map(|(r, _)| r)
                } else {
                    self.run(ctx, model)
                }
            })
            .map(|(r, _)| r)
        })?;
        Ok(m)
    }

    /// The axis of the particle plate in a batch-shaped tensor of `rank` dims, checked.
    fn particle_axis(&self, site: &Site, lp: &Tensor) -> Result<Option<usize>> {
        if self.k == 1 {
            return Ok(None);
        }
        let axis = lp.rank() as isize - self.max_plate_nesting as isize - 1;
        if axis < 0 || lp.dim(axis as usize)? != self.k {
            return Err(PplError::site(
                &site.name,
                ppl_core::describe_plates(&site.plates),
                format!(
                    "log density of shape {:?} has no particle dim of size {} at dim {} \
                     (the model and guide used {} batch dims when the engine was \
                     initialised; a site whose batch shape changes between runs cannot be \
                     vectorised over particles)",
                    lp.dims(),
                    self.k,
                    -(self.max_plate_nesting as isize) - 1,
                    self.max_plate_nesting
                ),
            ));
        }
        Ok(Some(axis as usize))
    }

    /// Reduces `lp` (a site's batch-shaped log density) to the particle axis followed by
    /// the axes of the plates `keep` selects, in axis order: `[K?, n₁?, …]`. Also returns
    /// the dims of the kept plates, in the same order.
    pub fn reduce(
        &self,
        site: &Site,
        lp: &Tensor,
        keep: impl Fn(&PlateFrame) -> bool,
    ) -> Result<(Tensor, Vec<isize>)> {
        let particle = self.particle_axis(site, lp)?;
        let rank = lp.rank() as isize;
        let mut dims: Vec<isize> = site
            .plates
            .iter()
            .filter(|f| !f.name.matches(PARTICLES) && keep(f) && rank + f.dim >= 0)
            .map(|f| f.dim)
            .collect();
        dims.sort_unstable();
        dims.dedup();
        if particle.is_none() && dims.is_empty() {
            // Everything is summed: one reduction (one graph node) instead of one per axis.
            return Ok((lp.sum_all()?, dims));
        }
        let mut out = lp.clone();
        for d in (0..lp.rank()).rev() {
            let kept = Some(d) == particle || dims.contains(&(d as isize - rank));
            if !kept {
                out = out.sum(d)?;
            }
        }
        Ok((out, dims))
    }

    /// A site's log density summed to one value per particle: `[K]`, or a scalar for one
    /// particle.
    pub fn per_particle(&self, site: &Site, lp: &Tensor) -> Result<Tensor> {
        Ok(self.reduce(site, lp, |_| false)?.0)
    }
}

/// `log (1/K) Σ_k exp(x_k)` along axis 0, computed stably (the max is detached, which
/// leaves value and gradient unchanged).
pub fn log_mean_exp0(x: &Tensor) -> Result<Tensor> {
    let k = x.dim(0)? as f64;
    let m = x.max_keepdim(0)?.detach();
    let s = x.broadcast_sub(&m)?.exp()?.sum_keepdim(0)?.log()?;
    Ok((s + m)?.squeeze(0)?.affine(1.0, -k.ln())?)
}

/// The sum of a tensor's elements as `f64` (its value, for a scalar).
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?)
}
