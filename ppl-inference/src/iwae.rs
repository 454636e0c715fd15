//! The importance-weighted bound (IWAE, Burda et al. 2016).
//!
//! With `K` particles `z_k ~ q` and weights `w_k = p(x, z_k) / q(z_k)`:
//!
//! `L_K = E[log (1/K) Σ_k w_k] ≤ log p(x)`, with `L_1 = ELBO`, `L_K` non-decreasing in `K`
//! and `L_K → log p(x)` as `K → ∞`. The particles run vectorised in the `"__particles"`
//! plate at dim `−(max_plate_nesting + 1)`; [`log_weights`] returns the `K` values
//! `log w_k` (global latents only: local latents inside data plates need one bound per
//! data point, which the full engine of issue 4 adds).

use crate::trace_elbo::PARTICLES;
use candle_core::{Tensor, D};
use ppl_core::ctx::{Ctx, PlateOpts};
use ppl_core::error::Result;
use ppl_core::handlers::Replay;
use ppl_core::model::Model;
use ppl_core::trace::Trace;

fn total_per_particle(t: &Trace, latent_only: bool, axis_from_right: usize) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for s in t
        .sites()
        .iter()
        .filter(|s| s.has_density() && (!latent_only || s.is_latent()))
    {
        let lp = s.log_prob()?;
        let axis = lp.rank() - axis_from_right;
        let mut out = lp;
        for d in (0..out.rank()).rev() {
            if d != axis {
                out = out.sum(d)?;
            }
        }
        total = Some(match total {
            None => out,
            Some(acc) => (acc + out)?,
        });
    }
    total.ok_or_else(|| ppl_core::PplError::InvalidArgument {
        context: "iwae",
        message: "no site with a density".into(),
    })
}

/// `log w_k = log p(x, z_k) − log q(z_k)` for `k` particles drawn from the guide in one
/// vectorised run; a `[k]` tensor.
pub fn log_weights<M: Model + ?Sized, G: Model + ?Sized>(
    ctx: &mut Ctx,
    model: &M,
    guide: &G,
    k: usize,
    max_plate_nesting: usize,
) -> Result<Tensor> {
    let opts = || PlateOpts {
        dim: Some(-(max_plate_nesting as isize) - 1),
        ..Default::default()
    };
    let ((), g) =
        ctx.trace(|ctx| ctx.plate(PARTICLES, k, opts(), |ctx, _| guide.run(ctx).map(|_| ())))?;
    let ((), m) = ctx.trace(|ctx| {
        ctx.handle(Replay::new(&g), |ctx| {
            ctx.plate(PARTICLES, k, opts(), |ctx, _| model.run(ctx).map(|_| ()))
        })
        .map(|(r, _)| r)
    })?;
    let log_p = total_per_particle(&m, false, max_plate_nesting + 1)?;
    let log_q = total_per_particle(&g, true, max_plate_nesting + 1)?;
    Ok((log_p - log_q)?)
}

/// `log (1/K) Σ_k exp(log w_k)`, computed stably; a scalar tensor.
pub fn log_mean_exp(log_w: &Tensor) -> Result<Tensor> {
    let k = log_w.dim(D::Minus1)? as f64;
    let m = log_w.max_keepdim(D::Minus1)?.detach();
    let s = log_w
        .broadcast_sub(&m)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?;
    Ok((s + m)?.squeeze(D::Minus1)?.affine(1.0, -k.ln())?)
}
