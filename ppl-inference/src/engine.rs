//! What an inference engine is: an objective that, given the context, produces a
//! differentiable loss for one step. The shared [`Trainer`](crate::train::Trainer) turns
//! losses into parameter updates, so swapping algorithms on the same model is one line:
//! `trainer.run(&mut ctx, &mut Svi::new(model, guide, TraceElbo::new()), steps)` or
//! another engine in its place.

use candle_core::Tensor;
use ppl_core::ctx::Ctx;
use ppl_core::error::Result;

/// One step's loss: the tensor to differentiate and its value (may be non-finite; the
/// trainer skips such steps).
#[derive(Debug, Clone)]
pub struct StepLoss {
    /// Differentiable loss (a scalar) whose gradient the optimiser follows.
    pub loss: Tensor,
    /// The value reported to observers (e.g. `−ELBO`).
    pub value: f64,
}

/// An inference engine. See the [module docs](self).
pub trait Engine {
    /// Short name for logs, e.g. `"svi/trace_elbo"`.
    fn name(&self) -> &str;
    /// Computes one step's loss (runs the model/guide as the algorithm needs).
    fn loss(&mut self, ctx: &mut Ctx) -> Result<StepLoss>;
}
