use super::common::{common_methods, prepare_value, LocScale};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{expm1, HALF_LN_2PI};
use candle_core::Tensor;
use std::sync::Arc;

/// The log-normal distribution: `exp(Y)` with `Y ~ N(loc, scale²)`.
///
/// Density: `p(x) = exp(-(ln x - μ)² / (2σ²)) / (x σ √(2π))` for `x > 0`.
/// Parameters: `loc` μ real, `scale` σ > 0. Support: `x > 0`.
/// Reparameterised: `x = exp(μ + σ ε)`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = LogNormal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let m = d.mean()?.to_scalar::<f64>()?;
/// assert!((m - 0.5f64.exp()).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LogNormal {
    p: LocScale,
}

impl LogNormal {
    /// `LogNormal(loc, scale)`; `scale` must be positive and finite, `loc` finite.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        Ok(Self {
            p: LocScale::new("LogNormal", loc, scale)?,
        })
    }
    /// μ, the mean of `ln x`.
    pub fn loc(&self) -> &Tensor {
        &self.p.loc
    }
    /// σ, the standard deviation of `ln x`.
    pub fn scale(&self) -> &Tensor {
        &self.p.scale
    }
}

impl Distribution for LogNormal {
    common_methods!("LogNormal", p.loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        Ok(self
            .p
            .sample_with(rng, sample_shape, PplRng::standard_normal)?
            .exp()?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let lx = x.log()?;
        let z = self.p.standardize(&lx)?;
        let lp = (z.sqr()?.affine(-0.5, -HALF_LN_2PI)? - lx)?;
        Ok(lp.broadcast_sub(&self.p.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((&self.p.loc + self.p.scale.sqr()?.affine(0.5, 0.0)?)?.exp()?)
    }
    fn variance(&self) -> Result<Tensor> {
        let s2 = self.p.scale.sqr()?;
        Ok((expm1(&s2)? * (self.p.loc.affine(2.0, 0.0)? + &s2)?.exp()?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok((&self.p.loc + self.p.scale.log()?)?.affine(1.0, 0.5 + HALF_LN_2PI)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Positive
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Self {
            p: self.p.expand(self.family(), batch_shape)?,
        }))
    }
}
