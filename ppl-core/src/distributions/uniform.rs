use super::common::{check_expand, common_methods, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::rng::PplRng;
use crate::tensor::{broadcast_params, host_f64, unravel};
use crate::validation::{self, check_param};
use candle_core::Tensor;
use std::sync::Arc;

/// The continuous uniform distribution on `[low, high)`.
///
/// Density: `p(x) = 1 / (high - low)` on `[low, high)`, 0 elsewhere.
/// Parameters: `low` < `high`, both finite. Support: `[low, high)` (element-wise).
/// Reparameterised: `x = low + (high - low) u`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Uniform::new(&Tensor::new(-1.0f64, &Device::Cpu)?, &Tensor::new(3.0f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 1.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Uniform {
    low: Tensor,
    high: Tensor,
    batch_shape: Vec<usize>,
}

impl Uniform {
    /// `Uniform(low, high)`; errors unless `low < high` element-wise and both are finite.
    pub fn new(low: &Tensor, high: &Tensor) -> Result<Self> {
        check_param("Uniform", "low", low, &Constraint::Real)?;
        check_param("Uniform", "high", high, &Constraint::Real)?;
        let ([low, high], batch_shape) =
            broadcast_params("Uniform", [("low", low), ("high", high)])?;
        if validation::is_enabled() {
            let (l, h) = (host_f64(&low)?, host_f64(&high)?);
            if let Some(i) = (0..l.len()).find(|&i| l[i] >= h[i]) {
                return Err(PplError::invalid_parameter(
                    "Uniform",
                    "high",
                    format!(
                        "must be greater than `low`, got low = {} and high = {} at index {:?}",
                        l[i],
                        h[i],
                        unravel(i, &batch_shape)
                    ),
                ));
            }
        }
        Ok(Self {
            low,
            high,
            batch_shape,
        })
    }
    fn width(&self) -> Result<Tensor> {
        Ok((&self.high - &self.low)?)
    }
}

impl Distribution for Uniform {
    common_methods!("Uniform", low);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let u = rng.uniform_tensor(&shape, self.dtype(), &self.device())?;
        Ok(u.broadcast_mul(&self.width()?)?.broadcast_add(&self.low)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let inside = x
            .broadcast_ge(&self.low)?
            .minimum(&x.broadcast_lt(&self.high)?)?;
        let lp = self.width()?.log()?.neg()?.broadcast_as(inside.shape())?;
        let neg_inf = lp.ones_like()?.affine(f64::NEG_INFINITY, 0.0)?;
        Ok(inside.where_cond(&lp, &neg_inf)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((&self.low + &self.high)?.affine(0.5, 0.0)?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.width()?.sqr()?.affine(1.0 / 12.0, 0.0)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.width()?.log()?)
    }
    fn support(&self) -> Constraint {
        Constraint::TensorInterval {
            low: self.low.clone(),
            high: self.high.clone(),
        }
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            low: self.low.broadcast_as(batch_shape)?,
            high: self.high.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
