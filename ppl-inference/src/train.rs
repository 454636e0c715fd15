//! The training loop every engine shares (argmin style: the loop is here, everything else
//! is an [`Observer`]).
//!
//! Each step: `engine.loss(ctx)`; a non-finite value is skipped (counted; more than
//! `max_non_finite` in a row is [`PplError::NonFiniteLoss`]); otherwise `backward`, optional
//! global-norm gradient clipping (`g ← g · min(1, c/‖g‖)`), the optimiser step at the
//! schedule's learning rate, then every observer sees the step and may stop the run.

use crate::engine::Engine;
use crate::optim::Optimizer;
use crate::schedule::{Constant, Schedule};
use candle_core::Tensor;
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};

/// What observers see after each step.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// 0-based step index.
    pub step: u64,
    /// The loss value (finite).
    pub loss: f64,
    /// Exponential moving average of the loss (decay 0.95).
    pub average: f64,
    /// The learning rate used.
    pub lr: f64,
    /// Non-finite steps skipped so far.
    pub skipped: usize,
}

/// An observer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this step.
    Stop,
}

/// Watches training: progress bars, logs, plots, early stopping.
pub trait Observer {
    /// Called after every applied step.
    fn on_step(&mut self, info: &StepInfo) -> Result<Control>;
    /// Called once at the end.
    fn on_end(&mut self, _report: &TrainReport) -> Result<()> {
        Ok(())
    }
}

/// The outcome of [`Trainer::run`].
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The engine's name.
    pub engine: String,
    /// Loss of every applied step.
    pub losses: Vec<f64>,
    /// Non-finite steps skipped.
    pub skipped: usize,
    /// Whether an observer stopped the run early.
    pub stopped_early: bool,
    /// The trained parameters (constrained values), sorted by name.
    pub params: Vec<(String, Tensor)>,
}

/// The shared training loop. See the [module docs](self).
pub struct Trainer<O: Optimizer> {
    /// The optimiser (its state goes into checkpoints).
    pub optimizer: O,
    schedule: Box<dyn Schedule>,
    clip_norm: Option<f64>,
    max_non_finite: usize,
    observers: Vec<Box<dyn Observer>>,
}

impl<O: Optimizer> Trainer<O> {
    /// A trainer with a constant learning rate `lr`, no clipping, at most 10 non-finite
    /// losses in a row.
    pub fn new(optimizer: O, lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::InvalidArgument {
                context: "Trainer",
                message: format!("learning rate must be finite and positive, got {lr}"),
            });
        }
        Ok(Trainer {
            optimizer,
            schedule: Box::new(Constant(lr)),
            clip_norm: None,
            max_non_finite: 10,
            observers: Vec::new(),
        })
    }

    /// Replaces the learning-rate schedule.
    pub fn with_schedule(mut self, s: impl Schedule + 'static) -> Self {
        self.schedule = Box::new(s);
        self
    }

    /// Clips the global gradient norm to `c > 0`.
    pub fn with_clip_norm(mut self, c: f64) -> Result<Self> {
        if !(c.is_finite() && c > 0.0) {
            return Err(PplError::InvalidArgument {
                context: "Trainer",
                message: format!("clip norm must be finite and positive, got {c}"),
            });
        }
        self.clip_norm = Some(c);
        Ok(self)
    }

    /// How many non-finite losses in a row are tolerated before an error.
    pub fn with_max_non_finite(mut self, n: usize) -> Self {
        self.max_non_finite = n;
        self
    }

    /// Adds an observer.
    pub fn observe(mut self, o: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(o));
        self
    }

    /// One step outside [`Trainer::run`] (e.g. with a new minibatch engine per step):
    /// returns the loss value, or `None` when it was non-finite and nothing was updated.
    /// Observers are not called.
    pub fn step(
        &mut self,
        ctx: &mut Ctx,
        engine: &mut dyn Engine,
        step: u64,
    ) -> Result<Option<f64>> {
        let out = engine.loss(ctx)?;
        if !out.value.is_finite() {
            return Ok(None);
        }
        self.apply(ctx, &out.loss, step)?;
        Ok(Some(out.value))
    }

    /// Backward, clipping and the optimiser step; returns the learning rate used.
    fn apply(&mut self, ctx: &mut Ctx, loss: &Tensor, step: u64) -> Result<f64> {
        let mut grads = loss.backward()?;
        if let Some(c) = self.clip_norm {
            clip(ctx, &mut grads, c)?;
        }
        let lr = self.schedule.lr(step);
        self.optimizer.step(ctx.params(), &grads, lr)?;
        Ok(lr)
    }

    /// Runs up to `steps` steps of `engine`.
    pub fn run(
        &mut self,
        ctx: &mut Ctx,
        engine: &mut dyn Engine,
        steps: u64,
    ) -> Result<TrainReport> {
        let mut report = TrainReport {
            engine: engine.name().to_string(),
            losses: Vec::new(),
            skipped: 0,
            stopped_early: false,
            params: Vec::new(),
        };
        let (mut in_row, mut average) = (0usize, f64::NAN);
        for step in 0..steps {
            let out = engine.loss(ctx)?;
            if !out.value.is_finite() {
                report.skipped += 1;
                in_row += 1;
                if in_row > self.max_non_finite {
                    return Err(PplError::NonFiniteLoss {
                        step,
                        count: in_row,
                    });
                }
                continue;
            }
            in_row = 0;
            let lr = self.apply(ctx, &out.loss, step)?;
            average = if average.is_nan() {
                out.value
            } else {
                0.95 * average + 0.05 * out.value
            };
            report.losses.push(out.value);
            let info = StepInfo {
                step,
                loss: out.value,
                average,
                lr,
                skipped: report.skipped,
            };
            let mut stop = false;
            for o in &mut self.observers {
                stop |= o.on_step(&info)? == Control::Stop;
            }
            if stop {
                report.stopped_early = true;
                break;
            }
        }
        report.params = ctx
            .params()
            .names()
            .into_iter()
            .map(|n| ctx.params().get(&n).map(|t| (n, t)))
            .collect::<Result<_>>()?;
        for o in &mut self.observers {
            o.on_end(&report)?;
        }
        Ok(report)
    }
}

/// Scales the store's gradients so their global L2 norm is at most `c`.
fn clip(ctx: &Ctx, grads: &mut candle_core::backprop::GradStore, c: f64) -> Result<()> {
    let vars = ctx.params().vars();
    let mut sq = 0.0;
    for (_, v) in &vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm > c {
        let scale = c / norm;
        for (_, v) in &vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(())
}
