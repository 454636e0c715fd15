//! Stochastic variational inference: minimise `−ELBO` over the parameter store.

use crate::optim::Optimizer;
use crate::trace_elbo::TraceElbo;
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};
use ppl_core::model::Model;

/// SVI with the Trace ELBO and any [`Optimizer`]. Parameters are created by the first run
/// of the model and guide; every variable in the store with a gradient is updated.
pub struct Svi<O: Optimizer> {
    elbo: TraceElbo,
    /// The optimiser (its state is what checkpoints save).
    pub optimizer: O,
    lr: f64,
}

impl<O: Optimizer> Svi<O> {
    /// SVI with learning rate `lr`.
    pub fn new(elbo: TraceElbo, optimizer: O, lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::InvalidArgument {
                context: "Svi",
                message: format!("learning rate must be finite and positive, got {lr}"),
            });
        }
        Ok(Svi {
            elbo,
            optimizer,
            lr,
        })
    }

    /// One gradient step; returns the ELBO estimate before the step.
    pub fn step<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<f64> {
        let out = self.elbo.loss(ctx, model, guide)?;
        let grads = out.loss.backward()?;
        self.optimizer.step(ctx.params(), &grads, self.lr)?;
        Ok(out.elbo)
    }
}
