use super::common::{
    binary_probs_logits, check_expand, common_methods, host_sample, prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::softplus;
use candle_core::Tensor;
use std::sync::Arc;

/// The Bernoulli distribution over `{0, 1}`.
///
/// Mass: `P(x) = pˣ (1-p)^{1-x}`, computed stably from the logits `l` as
/// `x l - softplus(l)`. Parameters: `probs` p in `[0, 1]` or `logits` l real (exactly one).
/// Support: `{0, 1}`. Not reparameterised (use [`RelaxedBernoulli`](super::RelaxedBernoulli)
/// for a continuous relaxation). Samples are 0.0/1.0 in the parameters' dtype.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Bernoulli::from_probs(&Tensor::new(0.25f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - 0.25f64.ln()).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Bernoulli {
    probs: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl Bernoulli {
    /// From probabilities in `[0, 1]`.
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        let (probs, logits) = binary_probs_logits("Bernoulli", Some(probs), None)?;
        Ok(Self::build(probs, logits))
    }
    /// From logits (log-odds).
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        let (probs, logits) = binary_probs_logits("Bernoulli", None, Some(logits))?;
        Ok(Self::build(probs, logits))
    }
    fn build(probs: Tensor, logits: Tensor) -> Self {
        let batch_shape = probs.dims().to_vec();
        Self {
            probs,
            logits,
            batch_shape,
        }
    }
    /// p.
    pub fn probs(&self) -> &Tensor {
        &self.probs
    }
    /// The log-odds.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }
}

impl Distribution for Bernoulli {
    common_methods!("Bernoulli", probs);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        host_sample(
            rng,
            [&self.probs],
            &self.batch_shape,
            sample_shape,
            |r, [p]| f64::from(r.uniform_open() < p),
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        // x·l − softplus(l), softplus(l) = r·l + ln(1 + e^{c·l}) with the constants
        // r = [l ≥ 0] and c = 1 − 2r (so r·l = max(l, 0) and c·l = −|l| ≤ 0): one exp
        // instead of the general softplus' two (exp dominates this op on the CPU). The
        // gradient is r + c·σ(c·l) = σ(l) everywhere, 1/2 at l = 0 included; r and c are
        // explicit constants so no kink convention of candle's relu/abs is involved. Plain
        // ln: ~1e-7 absolute error where e^{−|l|} is below epsilon.
        let l = &self.logits;
        let r = l.ge(0.0)?.to_dtype(l.dtype())?.detach();
        let c = r.affine(-2.0, 1.0)?;
        let tail = (l * &c)?.exp()?.affine(1.0, 1.0)?.log()?;
        Ok(x.broadcast_mul(l)?.broadcast_sub(&((l * r)? + tail)?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.probs.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok((&self.probs * self.probs.affine(-1.0, 1.0)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok((softplus(&self.logits)? - (&self.probs * &self.logits)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Boolean
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self::build(
            self.probs.broadcast_as(batch_shape)?,
            self.logits.broadcast_as(batch_shape)?,
        )))
    }
}
