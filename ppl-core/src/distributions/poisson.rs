use super::common::{check_expand, common_methods, host_sample, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{lgamma, xlogy};
use crate::tensor::log_prob_shape;
use crate::validation::check_param;
use candle_core::Tensor;
use rand_distr::Distribution as _;
use std::sync::Arc;

/// The Poisson distribution with rate λ.
///
/// Mass: `P(k) = λᵏ e^{-λ} / k!`. Parameter: `rate` λ > 0. Support: `{0, 1, 2, ...}`.
/// Not reparameterised.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Poisson::new(&Tensor::new(2.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(0.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + 2.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Poisson {
    rate: Tensor,
    batch_shape: Vec<usize>,
}

impl Poisson {
    /// `Poisson(rate)`; `rate` must be positive and finite.
    pub fn new(rate: &Tensor) -> Result<Self> {
        check_param("Poisson", "rate", rate, &Constraint::Positive)?;
        Ok(Self {
            rate: rate.clone(),
            batch_shape: rate.dims().to_vec(),
        })
    }
}

impl Distribution for Poisson {
    common_methods!("Poisson", rate);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        host_sample(
            rng,
            [&self.rate],
            &self.batch_shape,
            sample_shape,
            |r, [lam]| match rand_distr::Poisson::new(lam) {
                Ok(d) => d.sample(r.inner_mut()),
                Err(_) => f64::NAN,
            },
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let k = prepare_value(self, value)?;
        // xlogy needs both operands at the result shape (already checked by prepare_value).
        let shape = log_prob_shape(self.family(), k.dims(), &self.batch_shape, &[])?;
        let rate = self.rate.broadcast_as(shape.as_slice())?;
        let kb = k.broadcast_as(shape.as_slice())?;
        Ok(((xlogy(&kb, &rate)? - &rate)? - lgamma(&kb.affine(1.0, 1.0)?)?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.rate.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.rate.clone())
    }
    fn support(&self) -> Constraint {
        Constraint::NonNegativeInteger
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            rate: self.rate.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
