use super::common::{common_methods, prepare_value, LocScale};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, Result};
use crate::rng::PplRng;
use crate::special::log1p;
use candle_core::Tensor;
use std::f64::consts::PI;
use std::sync::Arc;

/// The Cauchy (Lorentz) distribution.
///
/// Density: `p(x) = 1 / (π γ (1 + ((x - x₀)/γ)²))`.
/// Parameters: `loc` x₀ real, `scale` γ > 0. Support: the reals. Mean and variance are
/// undefined (they return `NotAvailable`). Reparameterised: `x = x₀ + γ tan(π(u - ½))`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Cauchy::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// assert!(d.mean().is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cauchy {
    p: LocScale,
}

impl Cauchy {
    /// `Cauchy(loc, scale)`; `scale` must be positive and finite.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        Ok(Self {
            p: LocScale::new("Cauchy", loc, scale)?,
        })
    }
}

impl Distribution for Cauchy {
    common_methods!("Cauchy", p.loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        self.p
            .sample_with(rng, sample_shape, |r| (PI * (r.uniform_open() - 0.5)).tan())
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = self.p.standardize(&x)?;
        let lp = log1p(&z.sqr()?)?.affine(-1.0, -PI.ln())?;
        Ok(lp.broadcast_sub(&self.p.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Err(not_available("Cauchy", "mean", "is undefined"))
    }
    fn variance(&self) -> Result<Tensor> {
        Err(not_available("Cauchy", "variance", "is undefined"))
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.p.scale.log()?.affine(1.0, (4.0 * PI).ln())?)
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
