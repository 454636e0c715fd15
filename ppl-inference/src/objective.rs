//! What a variational objective is: given a model and a guide, one differentiable
//! surrogate loss and the value of the bound it estimates. [`Svi`](crate::svi::Svi) turns
//! any objective into an [`Engine`](crate::engine::Engine).

use candle_core::Tensor;
use ppl_core::ctx::Ctx;
use ppl_core::error::Result;
use ppl_core::model::Model;

/// One evaluation of an objective.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput {
    /// The differentiable loss; its gradient is an estimate of `−∇ bound`. Its value may
    /// differ from `−bound` (surrogate terms).
    pub loss: Tensor,
    /// The estimate of the bound (ELBO, IWAE bound, Rényi bound) on `log p(x)`.
    pub bound: f64,
}

/// A variational objective: [`TraceElbo`](crate::trace_elbo::TraceElbo),
/// [`Iwae`](crate::iwae::Iwae) (IWAE, Rényi-α, DReG).
pub trait Objective {
    /// Short name for logs, e.g. `"trace_elbo"`.
    fn name(&self) -> &'static str;
    /// Runs the guide and model as the objective needs and returns loss and bound.
    fn loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput>;
}
