use super::common::{check_expand, common_methods, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::{upload, PplRng};
use crate::validation::check_param;
use candle_core::Tensor;
use std::sync::Arc;

/// The exponential distribution with rate λ.
///
/// Density: `p(x) = λ e^{-λx}` for `x >= 0`.
/// Parameter: `rate` λ > 0. Support: `x >= 0`. Reparameterised: `x = E / λ`, `E ~ Exp(1)`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Exponential::new(&Tensor::new(4.0f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 0.25).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Exponential {
    rate: Tensor,
    batch_shape: Vec<usize>,
}

impl Exponential {
    /// `Exponential(rate)`; `rate` must be positive and finite.
    pub fn new(rate: &Tensor) -> Result<Self> {
        check_param("Exponential", "rate", rate, &Constraint::Positive)?;
        Ok(Self {
            rate: rate.clone(),
            batch_shape: rate.dims().to_vec(),
        })
    }
    /// λ.
    pub fn rate(&self) -> &Tensor {
        &self.rate
    }
}

impl Distribution for Exponential {
    common_methods!("Exponential", rate);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let n = shape.iter().product();
        let e: Vec<f64> = (0..n).map(|_| rng.standard_exponential()).collect();
        let e = upload(e, &shape, self.dtype(), &self.device())?;
        Ok(e.broadcast_div(&self.rate)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        Ok(x.broadcast_mul(&self.rate)?
            .neg()?
            .broadcast_add(&self.rate.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.rate.recip()?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.rate.sqr()?.recip()?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.rate.log()?.affine(-1.0, 1.0)?)
    }
    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            rate: self.rate.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
