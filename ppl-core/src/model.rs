use crate::choices::ChoiceMap;
use crate::ctx::Ctx;
use crate::error::{PplError, Result};
use crate::handlers::Condition;
use crate::trace::Trace;
use candle_core::Tensor;

/// A generative model: runs against a context, returns a value.
///
/// The [`Model`] trait and the Gen-style vocabulary every model gets:
/// [`simulate`], [`generate`] and [`assess`].
///
/// A model is anything that runs against a [`Ctx`]: a `#[model]` function (called through
/// a closure `|ctx| my_model(ctx, &x)`), any closure `Fn(&mut Ctx) -> Result<R>`, or a
/// hand-written type implementing [`Model`].
///
/// Writing `t` for the trace of one run, `c` for a choice map of constrained sites and
/// `p(t) = Π_sites p(site value | parents)` (times the factors):
///
/// - `simulate` draws `t ~ p` (every latent from its prior) and returns the trace, whose
///   `log_joint()` is `log p(t)`.
/// - `generate(c)` runs the model with the sites in `c` fixed to their values and every
///   other latent drawn from its prior, and returns the log importance weight
///   `log w = Σ_{s ∈ c} log p(c_s | parents)` (the sites that were constrained, including
///   `observe!` data). `E[w] = p(c)`, the marginal likelihood of the constrained values,
///   so averaging `w` over runs is importance sampling with the prior as proposal.
/// - `assess(c)` returns `log p(t)` for a complete assignment: every latent must be in
///   `c` (a missing one is an error naming it).
pub trait Model {
    /// What one run returns.
    type Output;
    /// Runs the model once.
    fn run(&self, ctx: &mut Ctx) -> Result<Self::Output>;
}

impl<F, R> Model for F
where
    F: Fn(&mut Ctx) -> Result<R>,
{
    type Output = R;
    fn run(&self, ctx: &mut Ctx) -> Result<R> {
        self(ctx)
    }
}

/// Runs `model` once from its prior; returns its output and trace. See the
/// [`Model`].
pub fn simulate<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<(M::Output, Trace)> {
    ctx.trace(|ctx| model.run(ctx))
}

/// Runs `model` with the sites in `constraints` fixed; returns its output, the trace and
/// the log importance weight `Σ_{constrained} log p` (a scalar). Every name in
/// `constraints` must be a sample site of the model. See the [`Model`].
pub fn generate<M: Model + ?Sized>(
    ctx: &mut Ctx,
    model: &M,
    constraints: &ChoiceMap,
) -> Result<(M::Output, Trace, Tensor)> {
    let ((out, cond), trace) =
        ctx.trace(|ctx| ctx.handle(Condition::new(constraints.clone()), |ctx| model.run(ctx)))?;
    if let Some(name) = cond.unused().first() {
        return Err(PplError::guide_mismatch(
            name,
            "a constrained value names no sample or input site of the model",
        ));
    }
    let weight = if trace.sites().iter().any(|s| s.observed && s.has_density()) {
        trace.log_prob_sum(|s| s.observed)?
    } else {
        Tensor::new(0f64, ctx.device())?
    };
    Ok((out, trace, weight))
}

/// `log p(choices)` for a complete assignment of the model's latents (a scalar). A latent
/// missing from `choices`, or a name that is no site, is an error naming it.
pub fn assess<M: Model + ?Sized>(ctx: &mut Ctx, model: &M, choices: &ChoiceMap) -> Result<Tensor> {
    let (_, trace, _) = generate(ctx, model, choices)?;
    if let Some(s) = trace.latent_sites().next() {
        return Err(PplError::guide_mismatch(
            &s.name,
            "assess needs a value for every latent site, but this one has none",
        ));
    }
    trace.log_joint()
}
