use super::{prototype, LatentSite};
use candle_core::Tensor;
use ppl_core::ctx::Ctx;
use ppl_core::distributions::Delta;
use ppl_core::error::Result;
use ppl_core::model::Model;

/// MAP estimation: every latent `z` gets a point mass `q(z) = δ(z − ẑ)` at a parameter
/// `ẑ` kept in the latent's support. `log q = 0`, so the ELBO is `log p(x, ẑ)` and SVI
/// maximises the joint density: the MAP estimate.
#[derive(Debug, Clone)]
pub struct AutoDelta {
    sites: Vec<LatentSite>,
}

impl AutoDelta {
    /// Builds the guide from one run of `model` (values initialise the parameters).
    pub fn new<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<Self> {
        Ok(AutoDelta {
            sites: prototype(ctx, model)?,
        })
    }

    /// The MAP estimate of site `name` (the current parameter value).
    pub fn value(&self, ctx: &Ctx, name: &str) -> Result<Tensor> {
        ctx.params().get(&format!("auto_delta/{name}"))
    }
}

impl Model for AutoDelta {
    type Output = ();

    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        for s in &self.sites {
            let init = s.init.clone();
            let v = ctx.param(
                format!("auto_delta/{}", s.name),
                || Ok(init.clone()),
                s.support.clone(),
            )?;
            let rank = v.rank();
            ctx.sample(
                &s.name,
                Delta::new(&v, rank)?.with_support(s.support.clone()),
            )?;
        }
        Ok(())
    }
}
