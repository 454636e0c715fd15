use super::common::{
    binary_logits, binary_probs_logits, check_expand, common_methods, host_sample, prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::softplus;
use candle_core::Tensor;
use std::sync::{Arc, OnceLock};

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
    /// `σ(logits)`, computed on first use when built from logits: the common VAE path
    /// (`from_logits` then `log_prob`) never needs it, and it costs an `exp` per element.
    probs: OnceLock<Tensor>,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl Bernoulli {
    /// From probabilities in `[0, 1]`.
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        let (probs, logits) = binary_probs_logits("Bernoulli", Some(probs), None)?;
        Ok(Self::build(OnceLock::from(probs), logits))
    }
    /// From logits (log-odds).
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        Ok(Self::build(
            OnceLock::new(),
            binary_logits("Bernoulli", logits)?,
        ))
    }
    fn build(probs: OnceLock<Tensor>, logits: Tensor) -> Self {
        let batch_shape = logits.dims().to_vec();
        Self {
            probs,
            logits,
            batch_shape,
        }
    }
    /// p (`σ(logits)`, computed once on first call when built from logits).
    pub fn probs(&self) -> Result<Tensor> {
        if let Some(p) = self.probs.get() {
            return Ok(p.clone());
        }
        let p = candle_nn::ops::sigmoid(&self.logits)?;
        Ok(self.probs.get_or_init(|| p).clone())
    }
    /// The log-odds.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }
}

impl Distribution for Bernoulli {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Bernoulli", logits);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        host_sample(
            rng,
            [&self.probs()?],
            &self.batch_shape,
            sample_shape,
            |r, [p]| f64::from(r.uniform_open() < p),
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        // On the CPU (f32/f64, same shapes) one fused pass forward and one backward.
        if let Some(lp) = crate::fused::bernoulli_logits_log_prob(&self.logits, &x)? {
            return Ok(lp);
        }
        // Elsewhere (other devices and dtypes, broadcasting values, higher-order gradients):
        // x·l − softplus(l), with softplus(l) = r·l + ln(1 + e^{c·l}) for the constants
        // s = ±1 (the sign of l, +1 at l = 0), r = (1 + s)/2 and c = −s (so r·l = max(l, 0)
        // and c·l = −|l| ≤ 0): one exp instead of the general softplus' two, and
        // x·l − r·l = (x − r)·l saves one more op. Every derivative is exact everywhere:
        // the first is r + c·σ(c·l) = σ(l), the second −σ(l)σ(−l) (s = sign(l) alone would
        // give c = 0 at l = 0 and a second derivative of 0 there instead of −1/4). s is a
        // detached constant built from contiguous unary ops (sign(sign(l) + ½)), cheaper
        // than a comparison against a broadcast scalar. Plain ln: ~1e-7 absolute error
        // where e^{−|l|} is below epsilon.
        let l = &self.logits;
        let s = (l.sign()? + 0.5)?.sign()?.detach();
        let r = s.affine(0.5, 0.5)?;
        let tail = (l * s.neg()?)?.exp()?.affine(1.0, 1.0)?.log()?;
        Ok(x.broadcast_sub(&r)?
            .broadcast_mul(l)?
            .broadcast_sub(&tail)?)
    }
    fn mean(&self) -> Result<Tensor> {
        self.probs()
    }
    fn variance(&self) -> Result<Tensor> {
        let p = self.probs()?;
        Ok((&p * p.affine(-1.0, 1.0)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok((softplus(&self.logits)? - (self.probs()? * &self.logits)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Boolean
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let probs = match self.probs.get() {
            Some(p) => OnceLock::from(p.broadcast_as(batch_shape)?),
            None => OnceLock::new(),
        };
        Ok(Arc::new(Self::build(
            probs,
            self.logits.broadcast_as(batch_shape)?,
        )))
    }
}

impl super::ExponentialFamily for Bernoulli {
    fn natural_params(&self) -> Result<Tensor> {
        Ok(self
            .logits
            .broadcast_as(self.batch_shape.as_slice())?
            .unsqueeze(self.batch_shape.len())?)
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.logits.dtype())?.unsqueeze(x.rank())?)
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        crate::special::softplus(&self.logits.broadcast_as(self.batch_shape.as_slice())?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.logits.dtype())?.zeros_like()?)
    }
}
