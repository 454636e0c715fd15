use super::common::{common_methods, prepare_value, LocScale};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use candle_core::Tensor;
use std::sync::Arc;

/// The Laplace (double-exponential) distribution.
///
/// Density: `p(x) = exp(-|x - μ| / b) / (2b)`.
/// Parameters: `loc` μ real, `scale` b > 0. Support: the reals.
/// Reparameterised: `x = μ + b e` with standard Laplace noise `e` (inverse CDF of a uniform).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Laplace::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(2.0f64, &Device::Cpu)?)?;
/// assert!((d.variance()?.to_scalar::<f64>()? - 8.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Laplace {
    p: LocScale,
}

impl Laplace {
    /// `Laplace(loc, scale)`; `scale` must be positive and finite.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        Ok(Self {
            p: LocScale::new("Laplace", loc, scale)?,
        })
    }
}

impl Distribution for Laplace {
    common_methods!("Laplace", p.loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        // Standard Laplace noise by the inverse CDF of a uniform.
        self.p.sample_with(rng, sample_shape, |r| {
            let u = r.uniform_open();
            if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 * (1.0 - u)).ln()
            }
        })
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = x
            .broadcast_sub(&self.p.loc)?
            .abs()?
            .broadcast_div(&self.p.scale)?;
        let log2b = self.p.scale.log()?.affine(1.0, std::f64::consts::LN_2)?;
        Ok(z.neg()?.broadcast_sub(&log2b)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.p.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.p.scale.sqr()?.affine(2.0, 0.0)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self
            .p
            .scale
            .log()?
            .affine(1.0, 1.0 + std::f64::consts::LN_2)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Self {
            p: self.p.expand(self.family(), batch_shape)?,
        }))
    }
}
