use super::common::{check_expand, common_methods, noise, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, Result};
use crate::rng::PplRng;
use crate::special::log1p;
use crate::tensor::broadcast_params;
use crate::validation::check_param;
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
    loc: Tensor,
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl Cauchy {
    /// `Cauchy(loc, scale)`; `scale` must be positive and finite.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        check_param("Cauchy", "loc", loc, &Constraint::Real)?;
        check_param("Cauchy", "scale", scale, &Constraint::Positive)?;
        let ([loc, scale], batch_shape) =
            broadcast_params("Cauchy", [("loc", loc), ("scale", scale)])?;
        Ok(Self {
            loc,
            scale,
            batch_shape,
        })
    }
}

impl Distribution for Cauchy {
    common_methods!("Cauchy", loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let n = shape.iter().product();
        let e: Vec<f64> = (0..n)
            .map(|_| (PI * (rng.uniform_open() - 0.5)).tan())
            .collect();
        let e = noise(e, &shape, self.dtype(), &self.device())?;
        Ok(e.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = x.broadcast_sub(&self.loc)?.broadcast_div(&self.scale)?;
        let lp = log1p(&z.sqr()?)?.affine(-1.0, -PI.ln())?;
        Ok(lp.broadcast_sub(&self.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Err(not_available("Cauchy", "mean", "is undefined"))
    }
    fn variance(&self) -> Result<Tensor> {
        Err(not_available("Cauchy", "variance", "is undefined"))
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, (4.0 * PI).ln())?)
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            loc: self.loc.broadcast_as(batch_shape)?,
            scale: self.scale.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
