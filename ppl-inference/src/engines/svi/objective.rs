use crate::engine::Metrics;
use crate::importance::ModelInfo;
use candle_core::Tensor;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::{PplError, Result};
use std::collections::HashMap;

/// One evaluation of an objective.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput {
    /// The differentiable loss; its gradient is an estimate of `−∇ bound`. Its value may
    /// differ from `−bound` (surrogate terms).
    pub loss: Tensor,
    /// The estimate of the bound (ELBO, IWAE bound, Rényi bound) on `log p(x)`.
    pub bound: f64,
    /// Named metrics (e.g. the effective sample size of multi-sample objectives).
    pub metrics: Metrics,
}

/// A variational objective: [`TraceElbo`](super::TraceElbo), [`Iwae`](super::Iwae)
/// (IWAE, Rényi-α, DReG).
///
/// What a variational objective is: given a model and a guide, one differentiable
/// surrogate loss and the value of the bound it estimates. [`Svi`](super::Svi) turns any
/// objective into an [`Engine`](crate::Engine).
pub trait Objective {
    /// Short name for logs, e.g. `"trace_elbo"`.
    fn name(&self) -> &'static str;
    /// One-time set-up from the probe of the model/guide pair (plate nesting, checks the
    /// objective needs). [`Svi`](super::Svi) calls it; call it yourself with
    /// [`ModelInfo::probe`] when using an objective on its own.
    fn init(&mut self, info: &ModelInfo) -> Result<()>;
    /// Probes `model` and `guide` once ([`ModelInfo::probe`], which does not advance the
    /// context's random stream) and initialises the objective: for using an objective on
    /// its own, outside [`Svi`](super::Svi).
    fn init_with<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<()>
    where
        Self: Sized,
    {
        self.init(&ModelInfo::probe(ctx, model, guide)?)
    }
    /// Runs the guide and model as the objective needs and returns loss and bound.
    fn loss<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<ObjectiveOutput>;
    /// State that affects later steps (e.g. moving-average baselines), for checkpoints.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Restores [`Objective::state`]; validates before it changes anything.
    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        match state.keys().next() {
            None => Ok(()),
            Some(k) => Err(PplError::config(
                self.name(),
                format!("this objective keeps no state, but the checkpoint has `{k}`"),
            )),
        }
    }
}

/// The error of an objective used before [`Objective::init`].
pub(super) fn not_initialised(name: &'static str) -> PplError {
    PplError::config(
        name,
        "the objective is not initialised: call `init` with `ModelInfo::probe(ctx, model, \
         guide)` first (`Svi` and `Trainer::run` do this)",
    )
}
