use super::common::{
    binary_probs_logits, check_expand, common_methods, dtype_max, host_sample_finite, prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::rng::PplRng;
use crate::special::softplus;
use crate::tensor::{host_f64, unravel};
use crate::validation;
use candle_core::Tensor;
use std::sync::Arc;

/// The geometric distribution: the number of failures before the first success in
/// independent Bernoulli(p) trials (Pyro's convention; `statrs` counts trials instead).
///
/// Mass: `P(k) = (1-p)ᵏ p`, computed as `-k softplus(l) - softplus(-l)` from the logits.
/// Parameters: `probs` p in `(0, 1]` or `logits` l. Support: `{0, 1, 2, ...}`.
/// Mean `(1-p)/p`, variance `(1-p)/p²`, entropy `H_Bernoulli(p) / p`. Not reparameterised.
///
/// Sampling is exact by inversion, `⌊ln u / ln(1-p)⌋`. Draws reach about `37.5/p` (u is at
/// least 2⁻⁵⁴), so `sample` returns an [`InvalidParameter`](crate::PplError::InvalidParameter)
/// error naming `probs` and the batch index where `37.5/p` would exceed the dtype's largest
/// value (p below about 2e-307 in f64, 1.1e-37 in f32, e.g. logits below -705 in f64) rather
/// than infinite counts; never NaN.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Geometric::from_probs(&Tensor::new(0.25f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 3.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Geometric {
    probs: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl Geometric {
    /// From success probabilities in `(0, 1]`.
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        if validation::is_enabled() {
            if let Some(i) = host_f64(probs)?.iter().position(|&p| p == 0.0) {
                return Err(PplError::invalid_parameter(
                    "Geometric",
                    "probs",
                    format!(
                        "must be in (0, 1], got 0 at index {:?}",
                        unravel(i, probs.dims())
                    ),
                ));
            }
        }
        let (p, l) = binary_probs_logits("Geometric", Some(probs), None)?;
        Ok(Self::build(p, l))
    }
    /// From logits.
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        let (p, l) = binary_probs_logits("Geometric", None, Some(logits))?;
        Ok(Self::build(p, l))
    }
    fn build(probs: Tensor, logits: Tensor) -> Self {
        let batch_shape = probs.dims().to_vec();
        Self {
            probs,
            logits,
            batch_shape,
        }
    }
}

impl Distribution for Geometric {
    common_methods!("Geometric", probs);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let max = dtype_max(self.probs.dtype());
        let probs = host_f64(&self.probs)?;
        // The largest draw is -ln(2⁻⁵⁴) / -ln(1 - p) ≤ 37.5 / -ln1p(-p).
        if let Some(i) = probs.iter().position(|&p| 37.5 / -(-p).ln_1p() > max) {
            return Err(PplError::invalid_parameter(
                "Geometric",
                "probs",
                format!(
                    "{} at index {:?} is too small to sample in {:?}: draws would reach {:e}, \
                     beyond the largest value {max:e}",
                    probs[i],
                    unravel(i, self.probs.dims()),
                    self.probs.dtype(),
                    37.5 / -(-probs[i]).ln_1p()
                ),
            ));
        }
        host_sample_finite(
            "Geometric",
            "probs",
            rng,
            [&self.probs],
            &self.batch_shape,
            sample_shape,
            |r, [p]| {
                if p >= 1.0 {
                    0.0
                } else {
                    (r.uniform_open().ln() / (-p).ln_1p()).floor()
                }
            },
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let k = prepare_value(self, value)?;
        let fail = k.broadcast_mul(&softplus(&self.logits)?)?;
        Ok(fail.neg()?.broadcast_sub(&softplus(&self.logits.neg()?)?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((self.probs.affine(-1.0, 1.0)? / &self.probs)?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok((self.probs.affine(-1.0, 1.0)? / self.probs.sqr()?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let h = (softplus(&self.logits)? - (&self.probs * &self.logits)?)?;
        Ok((h / &self.probs)?)
    }
    fn support(&self) -> Constraint {
        Constraint::NonNegativeInteger
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self::build(
            self.probs.broadcast_as(batch_shape)?,
            self.logits.broadcast_as(batch_shape)?,
        )))
    }
}
