use super::{Handler, SiteFilter};
use crate::error::Result;
use crate::message::Message;
use crate::site::{SiteKind, SiteName};

/// Samples observed sites instead of scoring their data, like NumPyro's
/// `handlers.uncondition`: every observed sample site (from `observe`, or made observed
/// by a [`Condition`](super::Condition) inside this handler) that the filter selects
/// becomes a latent site whose value is a fresh draw of the distribution's full batch +
/// event shape (so under a plate of size `n`, or a particle plate of size `K`, each element
/// gets its own draw), reparameterised when the distribution supports it. The trace records
/// it with `observed = false` and [`Site::was_observed`](crate::trace::Site::was_observed)
/// set. Factor sites are left alone.
///
/// This is the sleep phase of wake-sleep: `ctx.trace(|ctx| ctx.handle(Uncondition::new(),
/// model))` gives joint samples `(z, x) ~ p`. A handler outside it still acts on the
/// unconditioned site as a latent: `Replay(trace)` around `Uncondition` reproduces a traced
/// run, and a `Condition` around it observes the site again.
///
/// ```
/// use ppl_core::prelude::*;
/// use ppl_core::handlers::Uncondition;
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let model = |ctx: &mut Ctx| {
///     let z = ctx.sample("z", Normal::standard(&[], DType::F64, &Device::Cpu)?)?;
///     ctx.observe("x", Normal::new(&z, &Tensor::new(1f64, &Device::Cpu)?)?, &Tensor::new(0.5f64, &Device::Cpu)?)
/// };
/// let mut ctx = Ctx::new(0);
/// let ((x, _), trace) = ctx.trace(|ctx| ctx.handle(Uncondition::new(), model))?;
/// let site = trace.site("x")?;
/// assert!(site.is_latent() && site.was_observed);
/// assert_ne!(x.to_scalar::<f64>()?, 0.5);
/// # Ok(()) }
/// ```
pub struct Uncondition {
    select: Option<SiteFilter>,
}

impl std::fmt::Debug for Uncondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.select {
            None => "Uncondition(all)",
            Some(_) => "Uncondition(<filter>)",
        })
    }
}

impl Default for Uncondition {
    fn default() -> Self {
        Self::new()
    }
}

impl Uncondition {
    /// Samples every observed site.
    pub fn new() -> Self {
        Uncondition { select: None }
    }

    /// Samples only the named observed sites (names as the handler sees them, i.e. with the
    /// prefixes of any [`Scope`](super::Scope) inside it).
    pub fn sites<N: Into<SiteName>>(names: impl IntoIterator<Item = N>) -> Self {
        let names: Vec<SiteName> = names.into_iter().map(Into::into).collect();
        Self::when(move |m| names.contains(&m.name))
    }

    /// Samples the observed sites for which `pred` is true.
    pub fn when(pred: impl Fn(&Message) -> bool + Send + 'static) -> Self {
        Uncondition {
            select: Some(Box::new(pred)),
        }
    }
}

impl Handler for Uncondition {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Sample
            && msg.observed
            && self.select.as_ref().is_none_or(|f| f(msg))
        {
            msg.observed = false;
            msg.was_observed = true;
            msg.value = None;
        }
        Ok(())
    }
}
