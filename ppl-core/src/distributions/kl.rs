//! Analytic KL divergences `KL(p ‖ q) = E_p[ln p(x) - ln q(x)]`.

use super::{
    Bernoulli, Beta, Categorical, Dirichlet, Distribution, Gamma, Independent, MultivariateNormal,
    Normal, OneHotCategorical,
};
use crate::error::{shape_err, PplError, Result};
use crate::linalg::solve_lower_triangular;
use crate::special::{digamma, lgamma, log_beta, softplus};
use crate::tensor::{broadcast_shapes, sum_rightmost};
use candle_core::{Tensor, D};

/// The analytic KL divergence `KL(p ‖ q)`, of the broadcast batch shape of `p` and `q`.
///
/// Closed forms are registered for Normal–Normal, MultivariateNormal–MultivariateNormal,
/// Bernoulli–Bernoulli, Categorical–Categorical, OneHotCategorical–OneHotCategorical,
/// Gamma–Gamma, Beta–Beta and Dirichlet–Dirichlet, and for `Independent` wrappers of any of
/// these with the same number of reinterpreted dims (the base KL summed over those dims).
/// Any other pair is a [`PplError::NoAnalyticKl`] naming both families. Batch shapes that do
/// not broadcast are a [`PplError::Shape`] naming both families and shapes.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let c = |v: f64| Tensor::new(v, &Device::Cpu);
/// let p = Normal::new(&c(0.0)?, &c(1.0)?)?;
/// let q = Normal::new(&c(1.0)?, &c(1.0)?)?;
/// assert!((kl_divergence(&p, &q)?.to_scalar::<f64>()? - 0.5).abs() < 1e-12);
/// # Ok(()) }
/// ```
pub fn kl_divergence(p: &dyn Distribution, q: &dyn Distribution) -> Result<Tensor> {
    if broadcast_shapes(p.batch_shape(), q.batch_shape()).is_none() {
        return Err(shape_err(
            "kl_divergence",
            format!(
                "KL({} ‖ {}): batch shapes {:?} and {:?} do not broadcast",
                describe(p),
                describe(q),
                p.batch_shape(),
                q.batch_shape()
            ),
        ));
    }
    let (pa, qa) = (p.as_any(), q.as_any());
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<Independent>(),
        qa.downcast_ref::<Independent>(),
    ) {
        if p.reinterpreted_dims() != q.reinterpreted_dims() {
            return Err(shape_err(
                "kl_divergence",
                format!(
                    "Independent wrappers reinterpret different numbers of dims ({} vs {})",
                    p.reinterpreted_dims(),
                    q.reinterpreted_dims()
                ),
            ));
        }
        let inner = kl_divergence(p.base().as_ref(), q.base().as_ref())?;
        return sum_rightmost(&inner, p.reinterpreted_dims());
    }
    if let (Some(p), Some(q)) = (pa.downcast_ref::<Normal>(), qa.downcast_ref::<Normal>()) {
        return kl_normal(p, q);
    }
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<MultivariateNormal>(),
        qa.downcast_ref::<MultivariateNormal>(),
    ) {
        return kl_mvn(p, q);
    }
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<Bernoulli>(),
        qa.downcast_ref::<Bernoulli>(),
    ) {
        return kl_bernoulli(p, q);
    }
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<Categorical>(),
        qa.downcast_ref::<Categorical>(),
    ) {
        return kl_categorical(p, q);
    }
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<OneHotCategorical>(),
        qa.downcast_ref::<OneHotCategorical>(),
    ) {
        return kl_categorical(p.categorical(), q.categorical());
    }
    if let (Some(p), Some(q)) = (pa.downcast_ref::<Gamma>(), qa.downcast_ref::<Gamma>()) {
        return kl_gamma(p, q);
    }
    if let (Some(p), Some(q)) = (pa.downcast_ref::<Beta>(), qa.downcast_ref::<Beta>()) {
        return kl_beta(p, q);
    }
    if let (Some(p), Some(q)) = (
        pa.downcast_ref::<Dirichlet>(),
        qa.downcast_ref::<Dirichlet>(),
    ) {
        return kl_dirichlet(p, q);
    }
    Err(PplError::NoAnalyticKl {
        p: describe(p),
        q: describe(q),
    })
}

fn describe(d: &dyn Distribution) -> String {
    if let Some(i) = d.as_any().downcast_ref::<Independent>() {
        format!(
            "Independent({}, {})",
            describe(i.base().as_ref()),
            i.reinterpreted_dims()
        )
    } else {
        d.family().to_string()
    }
}

/// `ln(σq/σp) + (σp² + (μp-μq)²) / (2σq²) - ½`.
fn kl_normal(p: &Normal, q: &Normal) -> Result<Tensor> {
    let var_ratio = p.scale().broadcast_div(q.scale())?.sqr()?;
    let t = p
        .loc()
        .broadcast_sub(q.loc())?
        .broadcast_div(q.scale())?
        .sqr()?;
    let a = (var_ratio.broadcast_add(&t)? - var_ratio.log()?)?;
    Ok(a.affine(0.5, -0.5)?)
}

/// `½ [tr(Σq⁻¹Σp) + ‖Lq⁻¹(μq-μp)‖² - d] + ln|Lq| - ln|Lp|`.
fn kl_mvn(p: &MultivariateNormal, q: &MultivariateNormal) -> Result<Tensor> {
    let d = p.event_shape()[0];
    if q.event_shape()[0] != d {
        return Err(shape_err(
            "kl_divergence",
            format!(
                "MultivariateNormal dims differ: {d} vs {}",
                q.event_shape()[0]
            ),
        ));
    }
    let lq = q.scale_tril()?;
    let m = solve_lower_triangular(&lq, &p.scale_tril()?)?;
    let trace = m.sqr()?.sum((D::Minus2, D::Minus1))?;
    let maha = q
        .whiten(&q.loc().broadcast_sub(p.loc())?)?
        .sqr()?
        .sum(D::Minus1)?;
    let half = (trace.broadcast_add(&maha)?).affine(0.5, -0.5 * d as f64)?;
    Ok(half
        .broadcast_add(&q.half_log_det()?)?
        .broadcast_sub(&p.half_log_det()?)?)
}

/// `pₚ (ln pₚ - ln p_q) + (1-pₚ)(ln(1-pₚ) - ln(1-p_q))`, in logits.
fn kl_bernoulli(p: &Bernoulli, q: &Bernoulli) -> Result<Tensor> {
    let (lp, lq) = (p.logits(), q.logits());
    let pos = (softplus(&lq.neg()?)?.broadcast_sub(&softplus(&lp.neg()?)?))?;
    let neg = softplus(lq)?.broadcast_sub(&softplus(lp)?)?;
    let pp = p.probs()?;
    Ok((pos.broadcast_mul(&pp)? + neg.broadcast_mul(&pp.affine(-1.0, 1.0)?)?)?)
}

/// `Σₖ pₖ (ln pₖ - ln qₖ)`.
fn kl_categorical(p: &Categorical, q: &Categorical) -> Result<Tensor> {
    if p.num_categories() != q.num_categories() {
        return Err(shape_err(
            "kl_divergence",
            format!(
                "Categorical sizes differ: {} vs {}",
                p.num_categories(),
                q.num_categories()
            ),
        ));
    }
    let diff = p.logits().broadcast_sub(q.logits())?;
    Ok(diff.broadcast_mul(p.probs())?.sum(D::Minus1)?)
}

/// `(αp-αq)ψ(αp) - lnΓ(αp) + lnΓ(αq) + αq(ln βp - ln βq) + αp(βq-βp)/βp`.
fn kl_gamma(p: &Gamma, q: &Gamma) -> Result<Tensor> {
    let (ap, bp, aq, bq) = (p.concentration(), p.rate(), q.concentration(), q.rate());
    let t1 = ap.broadcast_sub(aq)?.broadcast_mul(&digamma(ap)?)?;
    let t2 = lgamma(aq)?.broadcast_sub(&lgamma(ap)?)?;
    let t3 = aq.broadcast_mul(&bp.log()?.broadcast_sub(&bq.log()?)?)?;
    let t4 = ap.broadcast_mul(&bq.broadcast_sub(bp)?.broadcast_div(bp)?)?;
    Ok(t1
        .broadcast_add(&t2)?
        .broadcast_add(&t3)?
        .broadcast_add(&t4)?)
}

/// `ln B(aq,bq) - ln B(ap,bp) + (ap-aq)ψ(ap) + (bp-bq)ψ(bp) + (aq-ap+bq-bp)ψ(ap+bp)`.
fn kl_beta(p: &Beta, q: &Beta) -> Result<Tensor> {
    let (ap, bp) = (p.concentration1(), p.concentration0());
    let (aq, bq) = (q.concentration1(), q.concentration0());
    let sp = (ap + bp)?;
    let t = log_beta(aq, bq)?.broadcast_sub(&log_beta(ap, bp)?)?;
    let t = t.broadcast_add(&ap.broadcast_sub(aq)?.broadcast_mul(&digamma(ap)?)?)?;
    let t = t.broadcast_add(&bp.broadcast_sub(bq)?.broadcast_mul(&digamma(bp)?)?)?;
    let sq = (aq + bq)?;
    Ok(t.broadcast_add(&sq.broadcast_sub(&sp)?.broadcast_mul(&digamma(&sp)?)?)?)
}

/// `lnΓ(α₀) - Σ lnΓ(αₖ) - lnΓ(β₀) + Σ lnΓ(βₖ) + Σ (αₖ-βₖ)(ψ(αₖ) - ψ(α₀))`.
fn kl_dirichlet(p: &Dirichlet, q: &Dirichlet) -> Result<Tensor> {
    let (a, b) = (p.concentration(), q.concentration());
    if a.dim(D::Minus1)? != b.dim(D::Minus1)? {
        return Err(shape_err("kl_divergence", "Dirichlet sizes differ"));
    }
    let a0 = a.sum_keepdim(D::Minus1)?;
    let b0 = b.sum(D::Minus1)?;
    let t1 = (lgamma(&a0.squeeze(D::Minus1)?)? - lgamma(a)?.sum(D::Minus1)?)?;
    let t2 = (lgamma(b)?.sum(D::Minus1)? - lgamma(&b0)?)?;
    let dpsi = digamma(a)?.broadcast_sub(&digamma(&a0)?)?;
    let t3 = a.broadcast_sub(b)?.broadcast_mul(&dpsi)?.sum(D::Minus1)?;
    Ok(t1.broadcast_add(&t2)?.broadcast_add(&t3)?)
}
