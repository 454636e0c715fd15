use super::common::{check_expand, common_methods, filled_like, out_shape, prepare_value};
use super::gamma::standard_gamma_rsample;
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{digamma, lgamma, log1p, log_beta};
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use std::f64::consts::PI;
use std::sync::Arc;

/// Student's t distribution with `df` ν degrees of freedom, location μ and scale σ.
///
/// Density: `p(x) = Γ((ν+1)/2) / (Γ(ν/2) √(νπ) σ) · (1 + z²/ν)^{-(ν+1)/2}`, `z = (x-μ)/σ`.
/// Parameters: `df` ν > 0, `loc` μ real, `scale` σ > 0. Support: the reals. The mean is μ
/// for ν > 1 (NaN otherwise); the variance is `σ²ν/(ν-2)` for ν > 2, +∞ for 1 < ν ≤ 2 and
/// NaN otherwise. Reparameterised: `x = μ + σ ε √(ν / V)`, `ε ~ N(0,1)`, `V = 2 G`,
/// `G ~ Gamma(ν/2, 1)` with implicit gradients (so `df` can be learnt too).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let c = |v: f64| Tensor::new(v, &Device::Cpu);
/// let d = StudentT::new(&c(4.0)?, &c(0.0)?, &c(1.0)?)?;
/// assert!((d.variance()?.to_scalar::<f64>()? - 2.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StudentT {
    df: Tensor,
    loc: Tensor,
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl StudentT {
    /// `StudentT(df, loc, scale)`; `df` and `scale` must be positive and finite.
    pub fn new(df: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Self> {
        check_param("StudentT", "df", df, &Constraint::Positive)?;
        check_param("StudentT", "loc", loc, &Constraint::Real)?;
        check_param("StudentT", "scale", scale, &Constraint::Positive)?;
        let ([df, loc, scale], batch_shape) =
            broadcast_params("StudentT", [("df", df), ("loc", loc), ("scale", scale)])?;
        Ok(Self {
            df,
            loc,
            scale,
            batch_shape,
        })
    }
}

impl Distribution for StudentT {
    common_methods!("StudentT", df);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let eps = rng.normal_tensor(&shape, self.dtype(), &self.device())?;
        let g = standard_gamma_rsample(rng, &self.df.affine(0.5, 0.0)?, sample_shape)?;
        // ν / V = ν / (2G)
        let t = (eps * (g.affine(2.0, 0.0)?.recip()?.broadcast_mul(&self.df)?).sqrt()?)?;
        Ok(t.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let nu = &self.df;
        let z = x.broadcast_sub(&self.loc)?.broadcast_div(&self.scale)?;
        let kernel = log1p(&z.sqr()?.broadcast_div(nu)?)?.broadcast_mul(&nu.affine(-0.5, -0.5)?)?;
        let norm = (lgamma(&nu.affine(0.5, 0.5)?)? - lgamma(&nu.affine(0.5, 0.0)?)?)?;
        let norm = (norm - nu.affine(PI, 0.0)?.log()?.affine(0.5, 0.0)?)?;
        let norm = (norm - self.scale.log()?)?;
        Ok(kernel.broadcast_add(&norm)?)
    }
    fn mean(&self) -> Result<Tensor> {
        let nan = filled_like(&self.loc, f64::NAN)?;
        Ok(self.df.gt(1.0)?.where_cond(&self.loc, &nan)?)
    }
    fn variance(&self) -> Result<Tensor> {
        let nu = &self.df;
        let v = (self.scale.sqr()? * (nu / nu.affine(1.0, -2.0)?)?)?;
        let inf = filled_like(&v, f64::INFINITY)?;
        let nan = filled_like(&v, f64::NAN)?;
        let low = nu.gt(1.0)?.where_cond(&inf, &nan)?;
        Ok(nu.gt(2.0)?.where_cond(&v, &low)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let nu = &self.df;
        let half = nu.affine(0.5, 0.0)?;
        let dpsi = (digamma(&nu.affine(0.5, 0.5)?)? - digamma(&half)?)?;
        let h = (nu.affine(0.5, 0.5)? * dpsi)?;
        let lb = log_beta(&half, &filled_like(&half, 0.5)?)?;
        let h = ((h + nu.log()?.affine(0.5, 0.0)?)? + lb)?;
        Ok((h + self.scale.log()?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            df: self.df.broadcast_as(batch_shape)?,
            loc: self.loc.broadcast_as(batch_shape)?,
            scale: self.scale.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
