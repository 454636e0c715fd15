use super::common::{check_expand, common_methods, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// The normal (Gaussian) distribution `N(loc, scale²)`.
///
/// Density: `p(x) = exp(-(x - μ)² / (2σ²)) / (σ √(2π))`.
/// Parameters: `loc` μ real, `scale` σ > 0, broadcast together. Support: the reals.
/// Reparameterised: `x = μ + σ ε`, `ε ~ N(0, 1)` drawn from the library's RNG.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, DType, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Normal::new(&Tensor::new(1.0f64, &Device::Cpu)?, &Tensor::new(2.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (-(2.0f64).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Normal {
    loc: Tensor,
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl Normal {
    /// `N(loc, scale²)`; errors on non-finite `loc`, non-positive or non-finite `scale`, or
    /// shapes that do not broadcast.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        check_param("Normal", "loc", loc, &Constraint::Real)?;
        check_param("Normal", "scale", scale, &Constraint::Positive)?;
        let ([loc, scale], batch_shape) =
            broadcast_params("Normal", [("loc", loc), ("scale", scale)])?;
        Ok(Self {
            loc,
            scale,
            batch_shape,
        })
    }

    /// The standard normal `N(0, 1)` with the given batch shape.
    pub fn standard(batch_shape: &[usize], dtype: DType, device: &Device) -> Result<Self> {
        let loc = Tensor::zeros(batch_shape, dtype, device)?;
        let scale = Tensor::ones(batch_shape, dtype, device)?;
        Self::new(&loc, &scale)
    }

    /// The location μ.
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The scale σ.
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for Normal {
    common_methods!("Normal", loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let eps = rng.normal_tensor(&shape, self.dtype(), &self.device())?;
        Ok(eps.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = x.broadcast_sub(&self.loc)?.broadcast_div(&self.scale)?;
        let lp = z.sqr()?.affine(-0.5, -HALF_LN_2PI)?;
        Ok(lp.broadcast_sub(&self.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, 0.5 + HALF_LN_2PI)?)
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
