use super::particles::Particles;
use ppl_core::check_guide;
use ppl_core::handlers::Seed;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::Result;
use ppl_core::Trace;

/// What one traced run of the guide, and of the model replaying it, tells an engine.
///
/// The one-time probe of a model/guide pair that engines run in
/// [`Engine::init`](crate::Engine::init).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The number of batch dims the model and guide use (plates and any other batch dims
    /// of a site's distribution): vectorised particles go in a plate left of them.
    pub max_plate_nesting: usize,
    /// The guide's trace of the probe run (empty for [`ModelInfo::probe_model`]).
    pub guide: Trace,
    /// The model's trace of the probe run (replaying the guide's values).
    pub model: Trace,
}

impl ModelInfo {
    /// Runs `guide` once, then `model` replaying its values, and checks that the guide
    /// fits the model ([`check_guide`]). The run draws from a clone of the context's
    /// generator, so the context's random stream does not advance (a resumed run stays
    /// bit-identical); parameters the two create are added to the store as usual.
    pub fn probe<M: Model + ?Sized, G: Model + ?Sized>(
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<Self> {
        let rng = ctx.base_rng().clone();
        let ((g, m), _) = ctx.handle(Seed::from_rng(rng), |ctx| {
            Particles::single().traces(ctx, model, guide)
        })?;
        check_guide(&m, &g)?;
        Ok(ModelInfo {
            max_plate_nesting: plate_nesting(&[&g, &m]),
            guide: g,
            model: m,
        })
    }

    /// Runs `model` alone once (engines without a guide), like [`ModelInfo::probe`].
    pub fn probe_model<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<Self> {
        let rng = ctx.base_rng().clone();
        let (((), m), _) = ctx.handle(Seed::from_rng(rng), |ctx| {
            ctx.trace(|ctx| model.run(ctx).map(|_| ()))
        })?;
        Ok(ModelInfo {
            max_plate_nesting: plate_nesting(&[&m]),
            guide: Trace::new(),
            model: m,
        })
    }
}

/// The number of batch dims used by the sites of `traces`: the deepest plate dim, or the
/// batch rank of a site's distribution where that is larger (a batch dim no plate
/// declares). Vectorised particles go in a plate at dim `−(nesting + 1)`.
pub fn plate_nesting(traces: &[&Trace]) -> usize {
    let mut n = 0usize;
    for t in traces {
        for s in t.sites() {
            for f in &s.plates {
                n = n.max(f.dim.unsigned_abs());
            }
            if let Some(d) = &s.dist {
                n = n.max(d.batch_shape().len());
            }
        }
    }
    n
}
