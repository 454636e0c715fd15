use super::common::{check_expand, common_methods, host_sample_finite, prepare_value};
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
/// Not reparameterised. Sampling is exact (rand_distr) for λ up to about 1.8e19; above, where
/// that sampler stops, draws are `round(λ + √λ z)` with z standard normal: by Berry–Esseen
/// their CDF is within 0.48/√λ < 1.2e-10 of the Poisson's (and the f64 spacing there, 2048
/// and up, is far below the standard deviation √λ ≥ 4.3e9). Sampling never returns NaN: a
/// draw that is not a finite count in the dtype (only possible with validation off) is an
/// [`InvalidParameter`](crate::PplError::InvalidParameter) error.
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
    /// `Poisson(rate)`; `rate` must be positive and finite (checked with validation on).
    pub fn new(rate: &Tensor) -> Result<Self> {
        check_param("Poisson", "rate", rate, &Constraint::Positive)?;
        Ok(Self {
            rate: rate.clone(),
            batch_shape: rate.dims().to_vec(),
        })
    }
}

/// The largest rate rand_distr's exact sampler accepts (about 1.8e19).
pub(crate) const EXACT_MAX_RATE: f64 = rand_distr::Poisson::<f64>::MAX_LAMBDA;

/// One Poisson(λ) draw: exact (rand_distr) up to [`EXACT_MAX_RATE`], above it the normal
/// approximation `round(λ + √λ z)` (CDF error below 0.48/√λ < 1.2e-10 there). NaN for a
/// NaN rate (which validation rejects).
pub(crate) fn poisson_draw(r: &mut PplRng, lam: f64) -> f64 {
    if lam <= EXACT_MAX_RATE {
        match rand_distr::Poisson::new(lam) {
            Ok(d) => d.sample(r.inner_mut()),
            Err(_) => f64::NAN,
        }
    } else {
        (lam + lam.sqrt() * r.standard_normal()).round().max(0.0)
    }
}

impl Distribution for Poisson {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Poisson", rate);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        host_sample_finite(
            "Poisson",
            "rate",
            rng,
            [&self.rate],
            &self.batch_shape,
            sample_shape,
            |r, [lam]| poisson_draw(r, lam),
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

impl super::ExponentialFamily for Poisson {
    fn natural_params(&self) -> Result<Tensor> {
        Ok(self
            .rate
            .broadcast_as(self.batch_shape.as_slice())?
            .log()?
            .unsqueeze(self.batch_shape.len())?)
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.rate.dtype())?.unsqueeze(x.rank())?)
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        Ok(self
            .rate
            .broadcast_as(self.batch_shape.as_slice())?
            .contiguous()?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(lgamma(&x.to_dtype(self.rate.dtype())?.affine(1.0, 1.0)?)?.neg()?)
    }
}
