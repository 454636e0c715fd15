//! The phases both wake-sleep engines share: wake traces (guide samples with detached
//! values, model replaying them) and sleep traces (dreams from the model, guide scored at
//! them with everything from the model detached).

use crate::importance::{GuideLogQ, Particles, WeightBuilder};
use candle_core::Tensor;
use ppl_core::handlers::StopGradient;
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result, Trace};

/// How the sleep phase feeds the dreamed data to the guide: a function from the trace of
/// the model run under `Uncondition` (observed sites sampled) to the choices of the
/// guide's input sites, e.g. `|t| guide.input_choices(t)` for
/// [`AutoAmortized`](crate::guides::AutoAmortized), or
/// `|t| Ok(ChoiceMap::new().with("x", t.value("x")?))` for a guide that reads its data
/// with `ctx.input("x", ..)`.
pub type GuideInputs<'a> = Box<dyn Fn(&Trace) -> Result<ChoiceMap> + 'a>;

/// Runs `guide` with every latent value detached from the graph (`StopGradient`): the
/// densities keep their dependence on the guide's parameters, the values carry none.
pub(super) fn detached<'g, G: Model + ?Sized>(
    guide: &'g G,
) -> impl Fn(&mut Ctx) -> Result<()> + 'g {
    move |ctx: &mut Ctx| {
        ctx.handle(StopGradient::all(), |ctx| guide.run(ctx).map(|_| ()))
            .map(|(r, _)| r)
    }
}

/// Wake traces: `z_k ~ q_φ(z | x)` on the data (values detached), then the model replaying
/// them. Returns `(guide trace, model trace)`.
pub(super) fn wake<M: Model + ?Sized, G: Model + ?Sized>(
    ctx: &mut Ctx,
    particles: &Particles,
    model: &M,
    guide: &G,
) -> Result<(Trace, Trace)> {
    let g = detached(guide);
    let ((), gt) = ctx.trace(|ctx| particles.run(ctx, &g))?;
    let mt = particles.replay(ctx, model, &gt, false)?;
    Ok((gt, mt))
}

/// Sleep: dreams `(z, x) ~ p_θ` (one per particle), then the guide scored at them with
/// the dreamed latents and inputs detached. Returns `log q_φ(z | x)` per particle, `[K]`
/// (summed over the guide's latent sites, with their plate scales).
pub(super) fn sleep_log_q<M: Model + ?Sized, G: Model + ?Sized>(
    ctx: &mut Ctx,
    particles: &Particles,
    model: &M,
    guide: &G,
    inputs: &GuideInputs<'_>,
    context: &'static str,
) -> Result<Tensor> {
    let g = detached(guide);
    let (_, gt) = particles.model_then_guide(ctx, model, &g, |t| {
        let mut out = ChoiceMap::new();
        for (name, v) in inputs(t)?.iter() {
            out.insert(name.clone(), v.detach());
        }
        Ok(out)
    })?;
    let builder = WeightBuilder::new(*particles, None);
    builder
        .parts(&gt, |s| s.is_latent(), GuideLogQ::Attached)?
        .0
        .ok_or_else(|| {
            PplError::config(
                context,
                "the guide has no latent site in the sleep phase, so it has nothing to learn",
            )
        })
}

/// The plate of a probe trace's site that is subsampled, if any: `(site, plate)`.
pub(super) fn subsampled_plate(traces: &[&Trace]) -> Option<(String, String)> {
    traces.iter().flat_map(|t| t.sites()).find_map(|s| {
        s.plates
            .iter()
            .find(|f| f.subsample_size < f.size)
            .map(|f| (s.name.to_string(), f.name.to_string()))
    })
}
