//! The inverse-autoregressive-flow autoguide.

use super::continuous::Layout;
use super::prototype;
use candle_core::Tensor;
use ppl_core::distributions::{Delta, DistributionExt, Normal};
use ppl_core::flows::{Activation, AutoregressiveMode, Bijector, MaskedAffineAutoregressive};
use ppl_core::Constraint;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::{PplError, Result};
use std::sync::Arc;

/// Name of the auxiliary base site of [`AutoIaf`].
pub const IAF_BASE: &str = "_auto_iaf_base";

/// An inverse-autoregressive-flow guide over all latents (Pyro's `AutoIAFNormal`, with a
/// learnable Gaussian base): the unconstrained latents are flattened into one vector as in
/// [`AutoMultivariateNormal`](super::AutoMultivariateNormal), and
/// `x = f_L ∘ … ∘ f_1(z)`, `z ~ N(μ, diag σ²)`, with each `f_l` a
/// [`MaskedAffineAutoregressive`] layer in [`AutoregressiveMode::Iaf`] (sampling is one
/// pass per layer) whose autoregressive order alternates between natural and reversed.
///
/// `log q(x) = log N(z; μ, σ²) − Σ_l log |det ∂f_l|`, computed on the guide's own sample
/// (no inversion): the base is the auxiliary site `_auto_iaf_base`, and `x` is the auxiliary
/// site `_auto_latent`, a point mass carrying `−Σ log |det|`. Model latents are then
/// `T_s(x_s)` as in the other joint guides. Parameters: `auto_iaf/loc` (prototype values),
/// `auto_iaf/scale` (`init_scale`, default 0.1) and the MADEs under `auto_iaf/layer{l}/…`.
/// The flow layers start as the identity, so the guide starts as a mean-field Gaussian and
/// learns correlations and non-Gaussian shape from there.
#[derive(Debug, Clone)]
pub struct AutoIaf {
    layout: Layout,
    layers: usize,
    hidden: Vec<usize>,
    activation: Activation,
    init_scale: f64,
}

impl AutoIaf {
    /// Builds the guide from one run of `model`, with `layers ≥ 1` IAF layers whose MADEs
    /// have hidden widths `hidden` (tanh).
    pub fn new<M: Model + ?Sized>(
        ctx: &mut Ctx,
        model: &M,
        layers: usize,
        hidden: &[usize],
    ) -> Result<Self> {
        if layers == 0 || hidden.contains(&0) {
            return Err(PplError::config(
                "AutoIaf",
                format!("need at least one layer and positive widths, got {layers} layers and hidden {hidden:?}"),
            ));
        }
        Ok(AutoIaf {
            layout: Layout::new("AutoIaf", prototype(ctx, model)?)?,
            layers,
            hidden: hidden.to_vec(),
            activation: Activation::Tanh,
            init_scale: 0.1,
        })
    }

    /// The initial base scale `σ₀ > 0` (default 0.1).
    pub fn with_init_scale(mut self, s: f64) -> Result<Self> {
        if !(s.is_finite() && s > 0.0) {
            return Err(PplError::config(
                "AutoIaf",
                format!("init_scale must be positive and finite, got {s}"),
            ));
        }
        self.init_scale = s;
        Ok(self)
    }

    /// The MADEs' hidden activation (default tanh).
    pub fn with_activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }

    /// The dimension `D` of the joint unconstrained space.
    pub fn dim(&self) -> usize {
        self.layout.dim
    }

    /// The flow layers (their parameters come from the context's store, in `like`'s dtype
    /// and device; new ones are initialised from a seed drawn from the context's generator).
    fn flow(&self, ctx: &mut Ctx, like: &Tensor) -> Result<Vec<MaskedAffineAutoregressive>> {
        let d = self.layout.dim;
        let natural: Vec<usize> = (0..d).collect();
        let reversed: Vec<usize> = (0..d).rev().collect();
        (0..self.layers)
            .map(|l| {
                let path = format!("auto_iaf/layer{l}");
                let exists = ctx.params().names().iter().any(|n| n.starts_with(&path));
                let seed = if exists {
                    0
                } else {
                    (ctx.rng().uniform_open() * (1u64 << 53) as f64) as u64
                };
                let vb = ctx
                    .params()
                    .var_builder(like.dtype(), like.device(), seed)
                    .pp(path);
                let order = if l % 2 == 0 { &natural } else { &reversed };
                MaskedAffineAutoregressive::new(
                    vb,
                    AutoregressiveMode::Iaf,
                    d,
                    0,
                    &self.hidden,
                    self.activation,
                    Some(order),
                )
            })
            .collect()
    }

    /// `x = f(z)` and `Σ log |det ∂f|` through every layer.
    fn push(&self, ctx: &mut Ctx, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut x = z.clone();
        let mut ladj: Option<Tensor> = None;
        for layer in self.flow(ctx, z)? {
            let (y, l) = layer.to_data(&x, None)?;
            x = y;
            ladj = Some(match ladj {
                Some(a) => (a + l)?,
                None => l,
            });
        }
        let ladj = ladj.ok_or_else(|| PplError::config("AutoIaf", "no layers"))?;
        Ok((x, ladj))
    }

    /// `n` draws of the flattened unconstrained latents `[n, D]` from the current guide
    /// (base noise from the context's generator), without recording any site.
    pub fn sample_unconstrained(&self, ctx: &mut Ctx, n: usize) -> Result<Tensor> {
        let loc = ctx.params().get("auto_iaf/loc")?;
        let scale = ctx.params().get("auto_iaf/scale")?;
        let d = self.layout.dim;
        let eps = ctx.rng().normals(n * d);
        let eps = ppl_core::upload(eps, &[n, d], loc.dtype(), loc.device())?;
        let z = eps.broadcast_mul(&scale)?.broadcast_add(&loc)?;
        Ok(self.push(ctx, &z)?.0)
    }

    /// Each site's value at the flow's image of the base mean, mapped onto its support.
    pub fn median(&self, ctx: &mut Ctx) -> Result<Vec<(String, Tensor)>> {
        let loc = ctx.params().get("auto_iaf/loc")?;
        let (x, _) = self.push(ctx, &loc.unsqueeze(0)?)?;
        self.layout.unpack(&x.squeeze(0)?)
    }
}

impl Model for AutoIaf {
    type Output = ();

    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let d = self.layout.dim;
        let loc = ctx.param("auto_iaf/loc", || self.layout.init(), Constraint::Real)?;
        let s0 = self.init_scale;
        let scale = ctx.param(
            "auto_iaf/scale",
            || Ok((Tensor::ones(d, loc.dtype(), loc.device())? * s0)?),
            Constraint::Positive,
        )?;
        let base = Normal::new(&loc, &scale)?.to_event(1)?;
        let z = ctx.sample_auxiliary(IAF_BASE, base)?;
        let (x, ladj) = self.push(ctx, &z)?;
        let q = Delta::with_log_density(&x, &ladj.neg()?, 1)?;
        self.layout.run(ctx, Arc::new(q))
    }
}
