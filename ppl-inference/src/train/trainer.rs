use super::group::{assign, ParamGroup};
use super::optim::Optimizer;
use super::schedule::Schedule;
use crate::engine::{Engine, Metrics};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use ppl_core::Ctx;
use ppl_core::{PplError, Result};
use std::collections::BTreeMap;

/// What observers see after each step.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// 0-based step index (counted across runs of the same trainer).
    pub step: u64,
    /// The loss value (finite).
    pub loss: f64,
    /// Exponential moving average of the loss (decay 0.95).
    pub average: f64,
    /// The learning rate of the first parameter group.
    pub lr: f64,
    /// Non-finite steps skipped so far in this run (losses and gradients).
    pub skipped: usize,
    /// The engine's named metrics of this step.
    pub metrics: Metrics,
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
    /// Every metric the engine reported, one value per applied step (NaN where a step did
    /// not report it), by name.
    pub metrics: BTreeMap<String, Vec<f64>>,
    /// Non-finite steps skipped: a non-finite loss, or a finite loss with a non-finite
    /// gradient (those are counted in [`TrainReport::skipped_gradients`] too).
    pub skipped: usize,
    /// Steps skipped because the loss was finite but a gradient was not.
    pub skipped_gradients: usize,
    /// Whether an observer stopped the run early.
    pub stopped_early: bool,
    /// The trained parameters (constrained values), sorted by name.
    pub params: Vec<(String, Tensor)>,
}

impl TrainReport {
    fn push_metrics(&mut self, m: &Metrics) {
        let n = self.losses.len();
        for (name, v) in m.iter() {
            let col = self.metrics.entry(name.to_string()).or_default();
            col.resize(n - 1, f64::NAN);
            col.push(v);
        }
        for col in self.metrics.values_mut() {
            col.resize(n, f64::NAN);
        }
    }
}

/// The shared training loop.
///
/// The training loop every engine shares (argmin style: the loop is here, everything else
/// is an [`Observer`]).
///
/// [`Trainer::run`] first calls [`Engine::init`], then each step: `engine.step(ctx)`; a
/// non-finite value is skipped (counted; more than `max_non_finite` in a row is
/// [`PplError::NonFiniteLoss`]); otherwise `backward`; a gradient with a NaN or infinite
/// entry (with a finite loss) is skipped the same way, leaving every parameter and every
/// optimiser state as it was (more than `max_non_finite` non-finite steps in a row is
/// [`PplError::NonFiniteGradient`], naming the parameters); otherwise optional global-norm
/// gradient clipping over every group (`g ← g · min(1, c/‖g‖)`), then each [parameter
/// group](super::ParamGroup)'s optimiser updates its variables at its schedule's learning
/// rate, and every observer sees the step (loss, moving average, learning rate, the
/// engine's metrics) and may stop the run.
///
/// The trainer counts steps across runs (the schedules' clock); checkpoints save the
/// count, so a resumed run continues every schedule where it stopped.
pub struct Trainer {
    groups: Vec<ParamGroup>,
    clip_norm: Option<f64>,
    max_non_finite: usize,
    observers: Vec<Box<dyn Observer>>,
    step: u64,
}

impl Trainer {
    /// A trainer with one parameter group, `"params"`, over every parameter of the store,
    /// at the constant learning rate `lr`; no clipping; at most 10 non-finite losses in a
    /// row.
    pub fn new(optimizer: impl Optimizer + 'static, lr: f64) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new("params", optimizer, lr)?])
    }

    /// A trainer over several parameter groups (see [`ParamGroup`]); names must be unique.
    pub fn with_groups(groups: Vec<ParamGroup>) -> Result<Self> {
        if groups.is_empty() {
            return Err(PplError::config(
                "Trainer",
                "needs at least one parameter group",
            ));
        }
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].iter().any(|h| h.name == g.name) {
                return Err(PplError::config(
                    "Trainer",
                    format!("two parameter groups are named `{}`", g.name),
                ));
            }
        }
        Ok(Trainer {
            groups,
            clip_norm: None,
            max_non_finite: 10,
            observers: Vec::new(),
            step: 0,
        })
    }

    /// Replaces the learning-rate schedule of the first parameter group (of the only one,
    /// for [`Trainer::new`]).
    pub fn with_schedule(mut self, s: impl Schedule + 'static) -> Self {
        self.groups[0].schedule = Box::new(s);
        self
    }

    /// Clips the global gradient norm to `c > 0`.
    pub fn with_clip_norm(mut self, c: f64) -> Result<Self> {
        if !(c.is_finite() && c > 0.0) {
            return Err(PplError::config(
                "Trainer",
                format!("clip norm must be finite and positive, got {c}"),
            ));
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

    /// The parameter groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// The optimiser of the first parameter group (of the only one, for [`Trainer::new`]).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.groups[0].optimizer.as_ref()
    }

    /// Steps taken so far (applied or skipped), across runs: the schedules' clock.
    pub fn steps(&self) -> u64 {
        self.step
    }

    pub(crate) fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    pub(crate) fn set_steps(&mut self, step: u64) {
        self.step = step;
    }

    /// One step outside [`Trainer::run`] (e.g. with a new engine per step): returns the
    /// loss value, or `None` when the loss or its gradient was non-finite and nothing was
    /// updated. Observers are not called, and [`Engine::init`] is not (the SVI engine
    /// initialises itself on its first step).
    pub fn step(&mut self, ctx: &mut Ctx, engine: &mut dyn Engine) -> Result<Option<f64>> {
        let out = engine.step(ctx)?;
        let step = self.step;
        self.step += 1;
        if !out.value.is_finite() {
            return Ok(None);
        }
        match self.apply(ctx, &out.loss, step)? {
            Applied::Updated(_) => Ok(Some(out.value)),
            _ => Ok(None),
        }
    }

    /// Backward, the finiteness check, clipping and every group's optimiser step.
    fn apply(&mut self, ctx: &mut Ctx, loss: &Tensor, step: u64) -> Result<Applied> {
        let lrs = self
            .groups
            .iter()
            .map(|g| g.lr(step))
            .collect::<Result<smallvec::SmallVec<[f64; 4]>>>()?;
        let vars = assign(&self.groups, ctx.params().vars())?;
        let mut grads = loss.backward()?;
        let bad = non_finite_gradients(&vars, &grads)?;
        if !bad.is_empty() {
            return Ok(Applied::NonFiniteGradient(bad));
        }
        if let Some(c) = self.clip_norm {
            clip(&vars, &mut grads, c)?;
        }
        for ((g, v), lr) in self.groups.iter_mut().zip(&vars).zip(&lrs) {
            g.optimizer.step(v, &grads, *lr)?;
        }
        Ok(Applied::Updated(lrs[0]))
    }

    /// Initialises `engine` ([`Engine::init`]) and runs up to `steps` steps of it.
    pub fn run(
        &mut self,
        ctx: &mut Ctx,
        engine: &mut dyn Engine,
        steps: u64,
    ) -> Result<TrainReport> {
        engine.init(ctx)?;
        let mut report = TrainReport {
            engine: engine.name().to_string(),
            losses: Vec::new(),
            metrics: BTreeMap::new(),
            skipped: 0,
            skipped_gradients: 0,
            stopped_early: false,
            params: Vec::new(),
        };
        let (mut in_row, mut average) = (0usize, f64::NAN);
        for _ in 0..steps {
            let step = self.step;
            let out = engine.step(ctx)?;
            self.step += 1;
            let applied = if out.value.is_finite() {
                self.apply(ctx, &out.loss, step)?
            } else {
                Applied::NonFiniteLoss
            };
            let lr = match applied {
                Applied::Updated(lr) => lr,
                skipped => {
                    report.skipped += 1;
                    in_row += 1;
                    let err = match skipped {
                        Applied::NonFiniteGradient(params) => {
                            report.skipped_gradients += 1;
                            PplError::NonFiniteGradient {
                                step,
                                count: in_row,
                                params,
                            }
                        }
                        _ => PplError::NonFiniteLoss {
                            step,
                            count: in_row,
                        },
                    };
                    if in_row > self.max_non_finite {
                        return Err(err);
                    }
                    continue;
                }
            };
            in_row = 0;
            average = if average.is_nan() {
                out.value
            } else {
                0.95 * average + 0.05 * out.value
            };
            report.losses.push(out.value);
            report.push_metrics(&out.metrics);
            let info = StepInfo {
                step,
                loss: out.value,
                average,
                lr,
                skipped: report.skipped,
                metrics: out.metrics,
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

/// What [`Trainer::apply`] did.
enum Applied {
    /// The optimisers stepped; the first group's learning rate.
    Updated(f64),
    /// Nothing was updated: these parameters' gradients had a NaN or infinite entry.
    NonFiniteGradient(Vec<String>),
    /// Nothing was computed: the loss was not finite.
    NonFiniteLoss,
}

/// The names of the variables whose gradient has a NaN or infinite entry. One reduction
/// per variable and a single read of the total (a sum is finite only if every entry is,
/// barring overflow of finite entries, which is as unusable); the per-variable reads
/// happen only when the total is not finite.
fn non_finite_gradients(vars: &[Vec<(String, Var)>], grads: &GradStore) -> Result<Vec<String>> {
    let mut sums = Vec::new();
    for (name, v) in vars.iter().flatten() {
        if let Some(g) = grads.get(v.as_tensor()) {
            sums.push((name, g.sum_all()?.to_dtype(candle_core::DType::F64)?));
        }
    }
    let mut total: Option<Tensor> = None;
    for (_, s) in &sums {
        total = Some(match total {
            None => s.clone(),
            Some(t) => (t + s)?,
        });
    }
    let Some(total) = total else {
        return Ok(Vec::new());
    };
    if total.to_scalar::<f64>()?.is_finite() {
        return Ok(Vec::new());
    }
    let mut bad = Vec::new();
    for (name, s) in &sums {
        if !s.to_scalar::<f64>()?.is_finite() {
            bad.push(name.to_string());
        }
    }
    Ok(bad)
}

/// Scales the gradients of `vars` so their global L2 norm is at most `c`.
fn clip(vars: &[Vec<(String, Var)>], grads: &mut GradStore, c: f64) -> Result<()> {
    let mut sq = 0.0;
    for (_, v) in vars.iter().flatten() {
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
        for (_, v) in vars.iter().flatten() {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(())
}
