use candle_core::Tensor;
use ppl_core::Ctx;
use ppl_core::Result;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;

/// Named scalar metrics of one step, in the order the engine reports them. Names are
/// usually `&'static str`, so a step with up to four metrics allocates nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    items: SmallVec<[(Cow<'static, str>, f64); 4]>,
}

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) metric `name`.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: f64) {
        let name = name.into();
        match self.items.iter_mut().find(|(n, _)| *n == name) {
            Some(item) => item.1 = value,
            None => self.items.push((name, value)),
        }
    }

    /// `self` with metric `name` added.
    pub fn with(mut self, name: impl Into<Cow<'static, str>>, value: f64) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// `(name, value)` pairs in report order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.items.iter().map(|(n, v)| (n.as_ref(), *v))
    }

    /// The number of metrics.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no metric.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What one step of an engine produces.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The differentiable scalar loss whose gradient the optimiser follows (may be a
    /// surrogate whose value is not meaningful).
    pub loss: Tensor,
    /// The value reported to observers (e.g. `−ELBO`); a non-finite value makes the
    /// trainer skip the step.
    pub value: f64,
    /// Named metrics of the step.
    pub metrics: Metrics,
}

impl StepOutput {
    /// A step with no metrics.
    pub fn new(loss: Tensor, value: f64) -> Self {
        StepOutput {
            loss,
            value,
            metrics: Metrics::new(),
        }
    }
}

/// An inference engine.
///
/// What an inference engine is, the contract every engine in [`crate::engines`] keeps.
///
/// An engine owns a model (and, for most algorithms, a guide) and knows how to turn one
/// step of its algorithm into a differentiable loss. The shared
/// [`Trainer`](crate::Trainer) does everything else (the optimiser and its parameter
/// groups, schedules, clipping, non-finite steps, observers, checkpoints), so swapping
/// algorithms on the same model is one line:
/// `trainer.run(&mut ctx, &mut Svi::new(&model, &guide, TraceElbo::new()), steps)`, or
/// another engine in its place.
///
/// The contract:
/// 1. [`Engine::init`] runs once before the first step (the trainer calls it at the start
///    of every [`run`](crate::Trainer::run); it must be idempotent and must not advance the
///    context's random stream, so a resumed run stays bit-identical). It checks the
///    model/guide pair and learns what the algorithm needs from one traced run, e.g. the
///    plate nesting ([`ModelInfo`](crate::ModelInfo)), so no user passes
///    `max_plate_nesting` by hand.
/// 2. [`Engine::step`] returns a [`StepOutput`]: the loss to differentiate, the value
///    reported to observers, and named [`Metrics`] (wake and sleep losses, inner-loop
///    energies, solver iterations, effective sample sizes, ...) that observers show as CSV
///    columns, in the progress bar and as plot panels.
/// 3. [`Engine::state`] / [`Engine::load_state`]: every piece of engine state that affects
///    later steps (e.g. moving-average baselines), saved in checkpoints.
pub trait Engine {
    /// Short name for logs and plots, e.g. `"svi/trace_elbo"`.
    fn name(&self) -> &str;

    /// One-time set-up before the first step (see the [`Engine`]).
    fn init(&mut self, ctx: &mut Ctx) -> Result<()>;

    /// One step: runs the model (and guide) as the algorithm needs and returns the loss.
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput>;

    /// The engine's state that affects later steps, as named tensors (for checkpoints).
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }

    /// Restores [`Engine::state`]. Must validate everything before changing anything.
    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        match state.keys().next() {
            None => Ok(()),
            Some(k) => Err(ppl_core::PplError::config(
                "Engine::load_state",
                format!("this engine keeps no state, but the checkpoint has `{k}`"),
            )),
        }
    }
}
