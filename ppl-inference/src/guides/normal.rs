use super::{prototype, LatentSite};
use candle_core::Tensor;
use ppl_core::distributions::{DistributionExt, DynDistribution, Normal, TransformedDistribution};
use ppl_core::Constraint;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::SiteName;
use ppl_core::{PplError, Result};

/// Mean-field Gaussian on unconstrained space (Pyro's `AutoNormal`): every latent `z_s`
/// gets `q(z_s) = T_s(N(μ_s, diag σ_s²))`, with `T_s` the bijection onto its support, so
/// `log q(z) = Σ_s [log N(T_s⁻¹(z_s); μ_s, σ_s²) − log |det J_{T_s}|]`. Parameters:
/// `auto_normal/<site>.loc` (initialised at the prototype value) and
/// `auto_normal/<site>.scale` (initialised at `init_scale`, default 0.1), over the full
/// size of every plate; a subsampled plate selects the minibatch's rows.
#[derive(Debug, Clone)]
pub struct AutoNormal {
    sites: Vec<LatentSite>,
    /// Each site's parameter names (`auto_normal/<site>.loc`, `.scale`), built once: a
    /// step clones them (a reference count) instead of formatting two strings per site.
    param_names: Vec<(SiteName, SiteName)>,
    init_scale: f64,
}

impl AutoNormal {
    /// Builds the guide from one run of `model`.
    pub fn new<M: Model + ?Sized>(ctx: &mut Ctx, model: &M) -> Result<Self> {
        Self::from_sites(prototype(ctx, model)?)
    }

    /// A guide over the given prototype sites only (e.g. the global latents, next to an
    /// amortised guide for the local ones).
    pub fn from_sites(sites: Vec<LatentSite>) -> Result<Self> {
        let param_names = sites
            .iter()
            .map(|s| {
                (
                    SiteName::from(format!("auto_normal/{}.loc", s.name)),
                    SiteName::from(format!("auto_normal/{}.scale", s.name)),
                )
            })
            .collect();
        Ok(AutoNormal {
            sites,
            param_names,
            init_scale: 0.1,
        })
    }

    /// The initial scale `σ₀ > 0` of every site (default 0.1).
    pub fn with_init_scale(mut self, s: f64) -> Result<Self> {
        if !(s.is_finite() && s > 0.0) {
            return Err(PplError::config(
                "AutoNormal",
                format!("init_scale must be finite and positive, got {s}"),
            ));
        }
        self.init_scale = s;
        Ok(self)
    }

    /// The unconstrained location `μ_s` of site `name`.
    pub fn loc(&self, ctx: &Ctx, name: &str) -> Result<Tensor> {
        ctx.params().get(&format!("auto_normal/{name}.loc"))
    }

    /// The unconstrained scale `σ_s` of site `name`.
    pub fn scale(&self, ctx: &Ctx, name: &str) -> Result<Tensor> {
        ctx.params().get(&format!("auto_normal/{name}.scale"))
    }

    /// The posterior median of site `name` on its support: `T_s(μ_s)`.
    pub fn median(&self, ctx: &Ctx, name: &str) -> Result<Tensor> {
        let s = self
            .sites
            .iter()
            .find(|s| s.name.matches(name))
            .ok_or_else(|| {
                PplError::config(
                    "AutoNormal::median",
                    format!("the guide has no site `{name}`"),
                )
            })?;
        s.transform().forward(&self.loc(ctx, name)?)
    }

    /// `q(z_s)` for one site from its full-plate parameters (minibatch rows selected).
    pub(crate) fn site_dist(
        s: &LatentSite,
        loc: &Tensor,
        scale: &Tensor,
    ) -> Result<DynDistribution> {
        let base = Normal::new(loc, scale)?.to_event(s.event_dim)?.into_dyn();
        let t = s.transform();
        Ok(
            if matches!(s.support, Constraint::Real | Constraint::RealVector) {
                base
            } else {
                TransformedDistribution::new(base, t.clone())?.into_dyn()
            },
        )
    }
}

impl Model for AutoNormal {
    type Output = ();

    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let init_scale = self.init_scale;
        for (s, (loc_name, scale_name)) in self.sites.iter().zip(&self.param_names) {
            let loc = ctx.param(
                loc_name.clone(),
                || s.unconstrained_init(),
                Constraint::Real,
            )?;
            let scale = ctx.param(
                scale_name.clone(),
                || Ok((loc.ones_like()? * init_scale)?.detach()),
                Constraint::Positive,
            )?;
            s.in_plates(ctx, |ctx, guards| {
                let d = Self::site_dist(s, &s.select(&loc, guards)?, &s.select(&scale, guards)?)?;
                ctx.sample(s.name.clone(), d).map(|_| ())
            })?;
        }
        Ok(())
    }
}
