use super::common::{
    binary_logits, binary_probs_logits, check_expand, clamp_probs, common_methods, out_shape,
    prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::{upload, PplRng};
use crate::special::log1p;
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use std::sync::Arc;

/// The relaxed Bernoulli (binary Concrete) distribution of Maddison et al. (2017) and
/// Jang et al. (2017): a continuous, reparameterisable relaxation of a Bernoulli.
///
/// Sample: `y = sigmoid((l + L) / τ)` with logistic noise `L = ln u - ln(1 - u)`.
/// Density on `(0, 1)`: `p(y) = τ α y^{-τ-1} (1-y)^{-τ-1} / (α y^{-τ} + (1-y)^{-τ})²`, `α = eˡ`.
/// Parameters: `temperature` τ > 0 and `probs` or `logits` (broadcast together).
/// As τ → 0 samples approach Bernoulli draws; samples are clamped to `[ε, 1-ε]`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let t = Tensor::new(0.5f64, &Device::Cpu)?;
/// let d = RelaxedBernoulli::from_logits(&t, &Tensor::new(0.0f64, &Device::Cpu)?)?;
/// let y = d.sample(&mut PplRng::seed_from_u64(0), &[4])?;
/// assert_eq!(y.dims(), &[4]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RelaxedBernoulli {
    temperature: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl RelaxedBernoulli {
    /// From a temperature and probabilities.
    pub fn from_probs(temperature: &Tensor, probs: &Tensor) -> Result<Self> {
        let (_, l) = binary_probs_logits("RelaxedBernoulli", Some(probs), None)?;
        Self::build(temperature, &l)
    }
    /// From a temperature and logits.
    pub fn from_logits(temperature: &Tensor, logits: &Tensor) -> Result<Self> {
        Self::build(temperature, &binary_logits("RelaxedBernoulli", logits)?)
    }
    fn build(temperature: &Tensor, logits: &Tensor) -> Result<Self> {
        check_param(
            "RelaxedBernoulli",
            "temperature",
            temperature,
            &Constraint::Positive,
        )?;
        let ([temperature, logits], batch_shape) = broadcast_params(
            "RelaxedBernoulli",
            [("temperature", temperature), ("logits", logits)],
        )?;
        Ok(Self {
            temperature,
            logits,
            batch_shape,
        })
    }
}

impl Distribution for RelaxedBernoulli {
    common_methods!("RelaxedBernoulli", logits);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let n = shape.iter().product();
        let l: Vec<f64> = (0..n)
            .map(|_| {
                let u = rng.uniform_open();
                u.ln() - (-u).ln_1p()
            })
            .collect();
        let l = upload(l, &shape, self.dtype(), &self.device())?;
        let z = l
            .broadcast_add(&self.logits)?
            .broadcast_div(&self.temperature)?;
        clamp_probs(&candle_nn::ops::sigmoid(&z)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let y = prepare_value(self, value)?;
        let tau = &self.temperature;
        let ly = y.log()?;
        let l1y = log1p(&y.neg()?)?;
        let a = self.logits.broadcast_sub(&ly.broadcast_mul(tau)?)?;
        let b = l1y.broadcast_mul(&tau.neg()?)?;
        let m = a.maximum(&b)?;
        let lse = ((a - &m)?.exp()? + (b - &m)?.exp()?)?.log()?.add(&m)?;
        let t = (&ly + &l1y)?.broadcast_mul(&tau.affine(1.0, 1.0)?)?;
        let head = (tau.log()? + &self.logits)?;
        Ok((t.neg()?.broadcast_add(&head)? - lse.affine(2.0, 0.0)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::UnitInterval
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            temperature: self.temperature.broadcast_as(batch_shape)?,
            logits: self.logits.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}
