use super::common::{
    binary_probs_logits, check_expand, common_methods, host_sample_finite, prepare_value,
};
use super::poisson::poisson_draw;
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{lgamma, softplus};
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use rand_distr::Distribution as _;
use std::sync::Arc;

/// The binomial distribution: successes in `total_count` independent Bernoulli trials.
///
/// Mass: `P(k) = C(n, k) pᵏ (1-p)^{n-k}`, computed as
/// `lnΓ(n+1) - lnΓ(k+1) - lnΓ(n-k+1) + k l - n softplus(l)` from the logits `l`.
/// Parameters: `total_count` n a non-negative integer (as a float tensor), and `probs` p in
/// `[0, 1]` or `logits` l. Support: `{0, ..., n}`. Not reparameterised.
///
/// Sampling is exact (rand_distr's BTPE) for n up to 2⁶² ≈ 4.6e18. Above, where that
/// sampler's integer arithmetic overflows, with `m = min(p, 1-p)`: when `n m (1-m) ≥
/// 1.5e12` draws are `N(n p, n p (1-p))` rounded and clamped to `[0, n]` (Berry–Esseen: CDF
/// error at most 0.48/√(n m (1-m)) < 4e-7); otherwise (then m < 4e-7) the count of the rarer
/// outcome is drawn from Poisson(n m) (total-variation error at most m < 4e-7, Barbour and
/// Hall). Sampling never returns NaN: a draw that is not a finite count in the dtype (only
/// possible with validation off) is an [`InvalidParameter`](crate::PplError::InvalidParameter)
/// error.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Binomial::from_probs(&Tensor::new(10.0f64, &Device::Cpu)?, &Tensor::new(0.3f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 3.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Binomial {
    total_count: Tensor,
    probs: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl Binomial {
    /// From `total_count` and probabilities.
    pub fn from_probs(total_count: &Tensor, probs: &Tensor) -> Result<Self> {
        let (p, l) = binary_probs_logits("Binomial", Some(probs), None)?;
        Self::build(total_count, &p, &l)
    }
    /// From `total_count` and logits.
    pub fn from_logits(total_count: &Tensor, logits: &Tensor) -> Result<Self> {
        let (p, l) = binary_probs_logits("Binomial", None, Some(logits))?;
        Self::build(total_count, &p, &l)
    }
    fn build(total_count: &Tensor, probs: &Tensor, logits: &Tensor) -> Result<Self> {
        check_param(
            "Binomial",
            "total_count",
            total_count,
            &Constraint::NonNegativeInteger,
        )?;
        let total_count = total_count.to_dtype(probs.dtype())?;
        let ([total_count, probs, logits], batch_shape) = broadcast_params(
            "Binomial",
            [
                ("total_count", &total_count),
                ("probs", probs),
                ("logits", logits),
            ],
        )?;
        Ok(Self {
            total_count,
            probs,
            logits,
            batch_shape,
        })
    }
}

/// The largest count drawn by rand_distr's exact sampler (2⁶²).
const EXACT_MAX_COUNT: f64 = 4_611_686_018_427_387_904.0;
/// Above [`EXACT_MAX_COUNT`], the variance from which the normal approximation is used.
const NORMAL_MIN_VARIANCE: f64 = 1.5e12;

/// One Binomial(n, p) draw (see the type's documentation for the regimes). NaN for a NaN
/// parameter (which validation rejects).
fn binomial_draw(r: &mut PplRng, n: f64, p: f64) -> f64 {
    if n.is_nan() || p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    if n <= EXACT_MAX_COUNT {
        return match rand_distr::Binomial::new(n as u64, p) {
            Ok(d) => d.sample(r.inner_mut()) as f64,
            Err(_) => f64::NAN,
        };
    }
    let flip = p > 0.5;
    let m = if flip { 1.0 - p } else { p };
    let var = n * m * (1.0 - m);
    let x = if var >= NORMAL_MIN_VARIANCE {
        (n * m + var.sqrt() * r.standard_normal())
            .round()
            .clamp(0.0, n)
    } else {
        poisson_draw(r, n * m).min(n)
    };
    if flip {
        n - x
    } else {
        x
    }
}

impl Distribution for Binomial {
    common_methods!("Binomial", probs);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let params = [&self.total_count, &self.probs];
        host_sample_finite(
            "Binomial",
            "total_count",
            rng,
            params,
            &self.batch_shape,
            sample_shape,
            |r, [n, p]| binomial_draw(r, n, p),
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let k = prepare_value(self, value)?;
        let n = &self.total_count;
        let log_binom = lgamma(&n.affine(1.0, 1.0)?)?
            .broadcast_sub(&lgamma(&k.affine(1.0, 1.0)?)?)?
            .broadcast_sub(&lgamma(&k.broadcast_sub(n)?.affine(-1.0, 1.0)?)?)?;
        let kl = k.broadcast_mul(&self.logits)?;
        let tail = (n * softplus(&self.logits)?)?;
        Ok((log_binom + kl)?.broadcast_sub(&tail)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((&self.total_count * &self.probs)?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(((&self.total_count * &self.probs)? * self.probs.affine(-1.0, 1.0)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::TensorIntegerInterval {
            high: self.total_count.clone(),
        }
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            total_count: self.total_count.broadcast_as(batch_shape)?,
            probs: self.probs.broadcast_as(batch_shape)?,
            logits: self.logits.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
