use super::common::{check_expand, common_methods, filled_like, prepare_value};
use super::gamma::standard_gamma_rsample;
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{digamma, lgamma};
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use std::sync::Arc;

/// The inverse-gamma distribution: `1/Y` with `Y ~ Gamma(α, rate = β)`.
///
/// Density: `p(x) = β^α / Γ(α) · x^{-α-1} e^{-β/x}` for `x > 0`.
/// Parameters: `concentration` α > 0, `scale` β > 0. Support: `x > 0`. The mean is
/// `β/(α-1)` for `α > 1` (+∞ otherwise), the variance `β²/((α-1)²(α-2))` for `α > 2`
/// (+∞ otherwise). Reparameterised: `x = β / z`, `z ~ Gamma(α, 1)` (implicit gradients).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = InverseGamma::new(&Tensor::new(3.0f64, &Device::Cpu)?, &Tensor::new(4.0f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 2.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InverseGamma {
    concentration: Tensor,
    scale: Tensor,
    batch_shape: Vec<usize>,
}

impl InverseGamma {
    /// `InverseGamma(concentration, scale)`; both must be positive and finite.
    pub fn new(concentration: &Tensor, scale: &Tensor) -> Result<Self> {
        check_param(
            "InverseGamma",
            "concentration",
            concentration,
            &Constraint::Positive,
        )?;
        check_param("InverseGamma", "scale", scale, &Constraint::Positive)?;
        let ([concentration, scale], batch_shape) = broadcast_params(
            "InverseGamma",
            [("concentration", concentration), ("scale", scale)],
        )?;
        Ok(Self {
            concentration,
            scale,
            batch_shape,
        })
    }
}

impl Distribution for InverseGamma {
    common_methods!("InverseGamma", concentration);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let z = standard_gamma_rsample(rng, &self.concentration, sample_shape)?;
        Ok(z.recip()?.broadcast_mul(&self.scale)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let a = &self.concentration;
        let norm = ((a * self.scale.log()?)? - lgamma(a)?)?;
        let t1 = x.log()?.broadcast_mul(&a.affine(-1.0, -1.0)?)?;
        let t2 = x.recip()?.broadcast_mul(&self.scale)?;
        Ok((t1 - t2)?.broadcast_add(&norm)?)
    }
    fn mean(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let m = (&self.scale / a.affine(1.0, -1.0)?)?;
        Ok(a.gt(1.0)?
            .where_cond(&m, &filled_like(&m, f64::INFINITY)?)?)
    }
    fn variance(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let am1 = a.affine(1.0, -1.0)?;
        let v = (self.scale.sqr()? / (am1.sqr()? * a.affine(1.0, -2.0)?)?)?;
        Ok(a.gt(2.0)?
            .where_cond(&v, &filled_like(&v, f64::INFINITY)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let h = ((a + self.scale.log()?)? + lgamma(a)?)?;
        Ok((h - (a.affine(1.0, 1.0)? * digamma(a)?)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Positive
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            concentration: self.concentration.broadcast_as(batch_shape)?,
            scale: self.scale.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
