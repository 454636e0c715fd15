//! Guides built automatically from a model's trace, one file per family.
//!
//! An autoguide traces the model once (its *prototype*) to learn the latent sites, their
//! shapes, supports and plates, then is itself a [`Model`] usable as the guide of any
//! engine. Constrained latents get a distribution on unconstrained space mapped through
//! [`biject_to`] of their support. Each guide re-enters the plates of each site (same
//! name, size, dim and subsample size), so subsampled plates draw one minibatch shared by
//! guide and model. Parameters live in the store under `auto_<kind>/…`.
//!
//! | guide | `q` |
//! |---|---|
//! | [`AutoDelta`] | point mass (MAP) |
//! | [`AutoNormal`] | mean-field Normal per site (plates mirrored, subsampling supported) |
//! | [`AutoMultivariateNormal`] | one full-rank Gaussian over all latents |
//! | [`AutoLowRankMultivariateNormal`] | one Gaussian with low-rank-plus-diagonal covariance |
//! | [`AutoIaf`] | a Gaussian pushed through inverse autoregressive flows, over all latents |
//! | [`AutoAmortized`] | an MLP encoder mapping each data point to its local latents' Normal parameters |

mod amortized;
mod continuous;
mod delta;
mod iaf;
mod normal;

pub use amortized::AutoAmortized;
pub use continuous::{AutoLowRankMultivariateNormal, AutoMultivariateNormal};
pub use delta::AutoDelta;
pub use iaf::{AutoIaf, IAF_BASE};
pub use normal::AutoNormal;

use candle_core::Tensor;
use ppl_core::transforms::{biject_to, Transform};
use ppl_core::Constraint;
use ppl_core::Model;
use ppl_core::PlateFrame;
use ppl_core::SiteName;
use ppl_core::Trace;
use ppl_core::{Ctx, PlateGuard, PlateOpts};
use ppl_core::{PplError, Result};
use std::sync::Arc;

/// One latent site of the prototype trace.
#[derive(Debug, Clone)]
pub struct LatentSite {
    /// The site name.
    pub name: SiteName,
    /// The value drawn in the prototype run (initial value of the guide's parameters).
    pub init: Tensor,
    /// The support without `Independent` wrappers.
    pub support: Constraint,
    /// The number of event dims of the model's distribution.
    pub event_dim: usize,
    /// The enclosing plates, outermost first.
    pub plates: Vec<PlateFrame>,
    transform: Arc<dyn Transform>,
}

impl LatentSite {
    /// The bijection from unconstrained space onto the support (built once, in
    /// [`prototype`]).
    pub fn transform(&self) -> &Arc<dyn Transform> {
        &self.transform
    }

    /// The number of batch dims of the value.
    pub fn batch_rank(&self) -> usize {
        self.init.rank() - self.event_dim
    }

    /// The value's axis of plate `f`.
    pub fn plate_axis(&self, f: &PlateFrame) -> Option<usize> {
        let a = self.batch_rank() as isize + f.dim;
        (a >= 0).then_some(a as usize)
    }

    /// The shape of the value over the full plates (subsampled axes at their full size).
    pub fn full_shape(&self) -> Vec<usize> {
        let mut shape = self.init.dims().to_vec();
        for f in &self.plates {
            if let Some(a) = self.plate_axis(f) {
                shape[a] = f.size;
            }
        }
        shape
    }

    /// Whether some plate of the site was subsampled in the prototype.
    pub fn subsampled(&self) -> bool {
        self.plates.iter().any(|f| f.subsample_size != f.size)
    }

    /// The initial unconstrained value over the full plates: the prototype's value mapped
    /// back, or zeros when the prototype only saw a minibatch.
    pub fn unconstrained_init(&self) -> Result<Tensor> {
        let t = self.transform();
        if self.subsampled() {
            let shape = t.unconstrained_shape(&self.full_shape());
            return Ok(Tensor::zeros(shape, self.init.dtype(), self.init.device())?);
        }
        t.inverse(&self.init)
    }

    /// Runs `f` inside the site's plates (re-entered with the prototype's options); `f`
    /// gets the guards, outermost first.
    pub fn in_plates<R>(
        &self,
        ctx: &mut Ctx,
        f: impl FnOnce(&mut Ctx, &[PlateGuard]) -> Result<R>,
    ) -> Result<R> {
        let mut guards = Vec::with_capacity(self.plates.len());
        for p in &self.plates {
            let opts = PlateOpts {
                subsample_size: (p.subsample_size != p.size).then_some(p.subsample_size),
                dim: Some(p.dim),
                ..Default::default()
            };
            match ctx.plate_enter(p.name.clone(), p.size, opts) {
                Ok(g) => guards.push(g),
                Err(e) => {
                    unwind(ctx, guards)?;
                    return Err(e);
                }
            }
        }
        let out = f(ctx, &guards);
        unwind(ctx, guards)?;
        out
    }

    /// Selects the minibatch of a full-plate parameter `[.., N, ..]` along each
    /// subsampled plate's axis.
    pub fn select(&self, full: &Tensor, guards: &[PlateGuard]) -> Result<Tensor> {
        let mut out = full.clone();
        for g in guards {
            let f = g.frame();
            if f.subsample_size == f.size {
                continue;
            }
            if let Some(a) = self.plate_axis(f) {
                out = out.contiguous()?.index_select(&g.indices()?, a)?;
            }
        }
        Ok(out)
    }
}

fn unwind(ctx: &mut Ctx, guards: Vec<PlateGuard>) -> Result<()> {
    for g in guards.into_iter().rev() {
        ctx.plate_exit(g)?;
    }
    Ok(())
}

/// Traces `model` once and lists its latent sites; discrete latents are an error naming
/// the site, since these guides are continuous.
pub fn prototype<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<Vec<LatentSite>> {
    Ok(prototype_trace(ctx, model)?.1)
}

/// [`prototype`] with the trace it came from.
pub fn prototype_trace<M: Model + ?Sized>(
    ctx: &mut Ctx,
    model: &M,
) -> Result<(Trace, Vec<LatentSite>)> {
    let ((), trace) = ctx.trace(|ctx| model.run(ctx).map(|_| ()))?;
    let mut out = Vec::new();
    for s in trace.latent_sites() {
        let mut c = s
            .dist
            .as_ref()
            .map(|d| d.support())
            .unwrap_or(Constraint::Real);
        while let Constraint::Independent(inner, _) = c {
            c = *inner;
        }
        if c.is_discrete() {
            return Err(PplError::guide_mismatch(
                &s.name,
                format!(
                    "is discrete ({}); continuous autoguides cannot cover it",
                    c.describe()
                ),
            ));
        }
        let transform =
            biject_to(&c).map_err(|e| PplError::guide_mismatch(&s.name, e.to_string()))?;
        out.push(LatentSite {
            transform,
            name: s.name.clone(),
            init: s.value.detach(),
            support: c,
            event_dim: s.dist.as_ref().map_or(0, |d| d.event_shape().len()),
            plates: s.plates.to_vec(),
        });
    }
    Ok((trace, out))
}
