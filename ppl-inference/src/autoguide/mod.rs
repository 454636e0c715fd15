//! Guides built automatically from a model's trace, one file per family.
//!
//! An autoguide traces the model once (its *prototype*) to learn the latent sites, their
//! shapes and supports, then is itself a [`Model`](ppl_core::model::Model) usable as the
//! guide of any engine. Its parameters live in the store under `auto_<kind>/<site>`.

mod delta;

pub use delta::AutoDelta;

use candle_core::Tensor;
use ppl_core::constraints::Constraint;
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};
use ppl_core::model::Model;
use ppl_core::site::SiteName;

/// One latent site of the prototype trace.
#[derive(Debug, Clone)]
pub struct LatentSite {
    /// The site name.
    pub name: SiteName,
    /// The value drawn in the prototype run (initial value of the guide's parameters).
    pub init: Tensor,
    /// The support without `Independent` wrappers.
    pub support: Constraint,
}

/// Traces `model` once and lists its latent sites; discrete
/// latents are an error naming the site, since these guides are continuous.
pub fn prototype<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<Vec<LatentSite>> {
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
            return Err(PplError::GuideMismatch {
                site: s.name.to_string(),
                reason: format!(
                    "is discrete ({}); continuous autoguides cannot cover it",
                    c.describe()
                ),
            });
        }
        out.push(LatentSite {
            name: s.name.clone(),
            init: s.value.detach(),
            support: c,
        });
    }
    Ok(out)
}
