//! Stochastic variational inference: the [`Engine`] that minimises `−ELBO`.

use crate::engine::{Engine, StepLoss};
use crate::trace_elbo::TraceElbo;
use ppl_core::ctx::Ctx;
use ppl_core::error::Result;
use ppl_core::model::Model;

/// SVI on a model and guide with the Trace ELBO. Parameters are created by the first run of
/// the model and guide; the trainer updates every store variable that gets a gradient.
pub struct Svi<'a, M: ?Sized, G: ?Sized> {
    model: &'a M,
    guide: &'a G,
    elbo: TraceElbo,
}

impl<'a, M: Model + ?Sized, G: Model + ?Sized> Svi<'a, M, G> {
    /// SVI of `model` with variational family `guide`.
    pub fn new(model: &'a M, guide: &'a G, elbo: TraceElbo) -> Self {
        Svi { model, guide, elbo }
    }
}

impl<M: Model + ?Sized, G: Model + ?Sized> Engine for Svi<'_, M, G> {
    fn name(&self) -> &str {
        "svi/trace_elbo"
    }

    fn loss(&mut self, ctx: &mut Ctx) -> Result<StepLoss> {
        let out = self.elbo.loss(ctx, self.model, self.guide)?;
        Ok(StepLoss {
            loss: out.loss,
            value: -out.elbo,
        })
    }
}
