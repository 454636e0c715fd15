//! Model/guide compatibility: [`check_guide`].

use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::site::SiteKind;
use crate::trace::{Site, Trace};

/// The support without `Independent` wrappers. `RealVector` is ℝ^d, the same set as an
/// `Independent(Real, 1)` (a multivariate Normal guide for a `Normal(..).to_event(1)`
/// latent, or the reverse), so it compares as `Real`; the value shapes, checked separately,
/// fix the dimension.
fn base_support(s: &Site) -> Option<Constraint> {
    let mut c = s.dist.as_ref()?.support();
    while let Constraint::Independent(inner, _) = c {
        c = *inner;
    }
    Some(match c {
        Constraint::RealVector => Constraint::Real,
        c => c,
    })
}

fn mismatch(site: &Site, reason: String) -> PplError {
    PplError::guide_mismatch(&site.name, reason)
}

/// Checks that `guide` can serve as a variational family for `model`: every latent site
/// of the model is a latent site of the guide with the same value shape and the same
/// support, and the guide samples no latent the model lacks. Observed sites of the model
/// must not be sampled by the guide. Input sites ([`Ctx::input`](crate::ctx::Ctx::input))
/// are data, not latents: they are not compared (either side may read inputs the other
/// does not), but the guide may not sample a site the model reads as an input. The first
/// problem is returned as a [`PplError::GuideMismatch`] naming the site.
pub fn check_guide(model: &Trace, guide: &Trace) -> Result<()> {
    for m in model.sites() {
        if m.is_latent() {
            let Some(g) = guide.get(&m.name).filter(|g| g.is_latent()) else {
                return Err(mismatch(
                    m,
                    "the model samples this latent but the guide does not".into(),
                ));
            };
            if m.value.dims() != g.value.dims() {
                return Err(mismatch(
                    m,
                    format!(
                        "the model's value has shape {:?} but the guide's has shape {:?}",
                        m.value.dims(),
                        g.value.dims()
                    ),
                ));
            }
            let (ms, gs) = (base_support(m), base_support(g));
            let (md, gd) = (
                ms.as_ref().map(|c| c.describe()),
                gs.as_ref().map(|c| c.describe()),
            );
            if md != gd {
                return Err(mismatch(
                    m,
                    format!(
                        "the model's support is {} but the guide's is {}",
                        md.unwrap_or_default(),
                        gd.unwrap_or_default()
                    ),
                ));
            }
        } else if m.observed && guide.get(&m.name).is_some_and(|g| g.is_latent()) {
            return Err(mismatch(
                m,
                "observed in the model but sampled by the guide".into(),
            ));
        }
    }
    for g in guide.latent_sites().filter(|g| !g.auxiliary) {
        match model.get(&g.name) {
            None => {
                return Err(mismatch(
                    g,
                    "the guide samples this site but the model has no site of that name".into(),
                ))
            }
            Some(m) if m.kind == SiteKind::Input => {
                return Err(mismatch(
                    g,
                    "the guide samples this site but the model reads it as an input".into(),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
