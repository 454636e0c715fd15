use super::common::{check_expand, common_methods, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::validation::check_param;
use candle_core::Tensor;
use std::f64::consts::PI;
use std::sync::Arc;

/// The half-normal distribution: `|Y|` with `Y ~ N(0, scale²)`.
///
/// Density: `p(x) = √(2/π) / σ · exp(-x² / (2σ²))` for `x >= 0`.
/// Parameter: `scale` σ > 0. Support: `x >= 0`. Reparameterised: `x = σ |ε|`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = HalfNormal::new(&Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let m = d.mean()?.to_scalar::<f64>()?;
/// assert!((m - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HalfNormal {
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl HalfNormal {
    /// `HalfNormal(scale)`; `scale` must be positive and finite.
    pub fn new(scale: &Tensor) -> Result<Self> {
        check_param("HalfNormal", "scale", scale, &Constraint::Positive)?;
        Ok(Self {
            scale: scale.clone(),
            batch_shape: scale.dims().to_vec(),
        })
    }
    /// σ.
    pub fn scale(&self) -> &Tensor {
        &self.scale
    }
}

impl Distribution for HalfNormal {
    common_methods!("HalfNormal", scale);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let eps = rng
            .normal_tensor(&shape, self.dtype(), &self.device())?
            .abs()?;
        Ok(eps.broadcast_mul(&self.scale)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let z = x.broadcast_div(&self.scale)?;
        let lp = z.sqr()?.affine(-0.5, 0.5 * (2.0 / PI).ln())?;
        Ok(lp.broadcast_sub(&self.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.scale.affine((2.0 / PI).sqrt(), 0.0)?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.scale.sqr()?.affine(1.0 - 2.0 / PI, 0.0)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.scale.log()?.affine(1.0, 0.5 * (PI / 2.0).ln() + 0.5)?)
    }
    fn support(&self) -> Constraint {
        Constraint::NonNegative
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            scale: self.scale.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
