use super::common::{check_expand, common_methods, noise, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::tensor::broadcast_params;
use crate::validation::check_param;
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
    loc: Tensor,
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl Laplace {
    /// `Laplace(loc, scale)`; `scale` must be positive and finite.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        check_param("Laplace", "loc", loc, &Constraint::Real)?;
        check_param("Laplace", "scale", scale, &Constraint::Positive)?;
        let ([loc, scale], batch_shape) =
            broadcast_params("Laplace", [("loc", loc), ("scale", scale)])?;
        Ok(Self {
            loc,
            scale,
            batch_shape,
        })
    }
}

impl Distribution for Laplace {
    common_methods!("Laplace", loc);
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
            .map(|_| {
                let u = rng.uniform_open();
                if u < 0.5 {
                    (2.0 * u).ln()
                } else {
                    -(2.0 * (1.0 - u)).ln()
                }
            })
            .collect();
        let e = noise(e, &shape, self.dtype(), &self.device())?;
        Ok(e.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = x
            .broadcast_sub(&self.loc)?
            .abs()?
            .broadcast_div(&self.scale)?;
        let log2b = self.scale.log()?.affine(1.0, std::f64::consts::LN_2)?;
        Ok(z.neg()?.broadcast_sub(&log2b)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?.affine(2.0, 0.0)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self
            .scale
            .log()?
            .affine(1.0, 1.0 + std::f64::consts::LN_2)?)
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
