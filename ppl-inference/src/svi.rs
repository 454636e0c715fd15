//! Stochastic variational inference: the [`Engine`] that follows the gradient of any
//! variational [`Objective`] (ELBO, IWAE, Rényi-α, DReG).

use crate::engine::{Engine, StepLoss};
use crate::objective::Objective;
use ppl_core::ctx::Ctx;
use ppl_core::error::Result;
use ppl_core::model::Model;

/// SVI on a model and guide with an objective. Parameters are created by the first run of
/// the model and guide; the trainer updates every store variable that gets a gradient.
/// The step's reported value is `−bound`.
pub struct Svi<'a, M: ?Sized, G: ?Sized, O> {
    model: &'a M,
    guide: &'a G,
    objective: O,
    name: String,
}

impl<'a, M: Model + ?Sized, G: Model + ?Sized, O: Objective> Svi<'a, M, G, O> {
    /// SVI of `model` with variational family `guide` and `objective`.
    pub fn new(model: &'a M, guide: &'a G, objective: O) -> Self {
        let name = format!("svi/{}", objective.name());
        Svi {
            model,
            guide,
            objective,
            name,
        }
    }

    /// The objective (e.g. to read its state).
    pub fn objective(&self) -> &O {
        &self.objective
    }
}

impl<M: Model + ?Sized, G: Model + ?Sized, O: Objective> Engine for Svi<'_, M, G, O> {
    fn name(&self) -> &str {
        &self.name
    }

    fn loss(&mut self, ctx: &mut Ctx) -> Result<StepLoss> {
        let out = self.objective.loss(ctx, self.model, self.guide)?;
        Ok(StepLoss {
            loss: out.loss,
            value: -out.bound,
        })
    }
}
