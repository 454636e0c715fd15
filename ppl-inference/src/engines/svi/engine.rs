use super::objective::Objective;
use crate::engine::{Engine, StepOutput};
use crate::importance::ModelInfo;
use candle_core::Tensor;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::Result;
use std::collections::HashMap;

/// SVI on a model and guide with an objective.
///
/// Stochastic variational inference as an [`Engine`].
///
/// For a model `p_θ(x, z)` and a guide `q_φ(z)`, SVI maximises a variational objective
/// `L(θ, φ) ≤ log p_θ(x)` (the ELBO `E_q[log p_θ(x, z) − log q_φ(z)]`, or a multi-sample
/// bound) by stochastic gradient steps on `−L`, with the gradient estimated from samples
/// of the guide ([`Objective`] says how). `init` probes the pair once
/// ([`ModelInfo::probe`]): it checks that the guide fits the model and infers the plate
/// nesting the objective's vectorised particles need. Each step reports `−bound` and the
/// objective's metrics.
pub struct Svi<'a, M: ?Sized, G: ?Sized, O> {
    model: &'a M,
    guide: &'a G,
    objective: O,
    name: String,
    initialised: bool,
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
            initialised: false,
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

    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        let info = ModelInfo::probe(ctx, self.model, self.guide)?;
        self.objective.init(&info)?;
        self.initialised = true;
        Ok(())
    }

    /// One SVI step; initialises the engine first if nobody did (e.g. a step taken with
    /// [`Trainer::step`](crate::Trainer::step) on a new engine).
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        if !self.initialised {
            self.init(ctx)?;
        }
        let out = self.objective.loss(ctx, self.model, self.guide)?;
        Ok(StepOutput {
            loss: out.loss,
            value: -out.bound,
            metrics: out.metrics,
        })
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.objective.state()
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        self.objective.load_state(state)
    }
}
