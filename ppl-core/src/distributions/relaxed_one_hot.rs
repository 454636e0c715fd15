use super::common::{
    categorical_probs_logits, check_expand, clamp_probs, common_methods, out_shape, prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result, ShapeFmt};
use crate::rng::{upload, PplRng};
use crate::tensor::{broadcast_shapes, concat_shapes};
use crate::validation::check_param;
use candle_core::{Tensor, D};
use std::sync::Arc;

/// The relaxed one-hot categorical (Concrete / Gumbel-softmax) distribution of Maddison et
/// al. (2017) and Jang et al. (2017): a reparameterisable relaxation of
/// [`OneHotCategorical`](super::OneHotCategorical) on the simplex.
///
/// Sample: `y = softmax((l + g) / τ)` with Gumbel noise `g = -ln(-ln u)`.
/// Density: `p(y) = (K-1)! τ^{K-1} Πₖ (αₖ y_k^{-τ-1}) / (Σₖ αₖ y_k^{-τ})^K`, `αₖ = e^{lₖ}`.
/// Parameters: `temperature` τ > 0 (broadcastable to the batch shape) and `probs` or
/// `logits` `[..., K]`. Event shape `[K]`. Samples are clamped to `[ε, 1]` so their logs stay
/// finite.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = RelaxedOneHotCategorical::from_logits(
///     &Tensor::new(0.5f64, &Device::Cpu)?,
///     &Tensor::new(&[0.0f64, 1.0, 2.0], &Device::Cpu)?,
/// )?;
/// let y = d.sample(&mut PplRng::seed_from_u64(0), &[2])?;
/// assert_eq!(y.dims(), &[2, 3]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RelaxedOneHotCategorical {
    temperature: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
    event_shape: [usize; 1],
}

impl RelaxedOneHotCategorical {
    /// From a temperature and probabilities `[..., K]`.
    pub fn from_probs(temperature: &Tensor, probs: &Tensor) -> Result<Self> {
        let (_, l) = categorical_probs_logits("RelaxedOneHotCategorical", Some(probs), None)?;
        Self::build(temperature, l)
    }
    /// From a temperature and logits `[..., K]`.
    pub fn from_logits(temperature: &Tensor, logits: &Tensor) -> Result<Self> {
        let (_, l) = categorical_probs_logits("RelaxedOneHotCategorical", None, Some(logits))?;
        Self::build(temperature, l)
    }
    fn build(temperature: &Tensor, logits: Tensor) -> Result<Self> {
        check_param(
            "RelaxedOneHotCategorical",
            "temperature",
            temperature,
            &Constraint::Positive,
        )?;
        let d = logits.dims();
        let (lb, k) = (&d[..d.len() - 1], d[d.len() - 1]);
        let batch_shape = broadcast_shapes(lb, temperature.dims()).ok_or_else(|| {
            shape_err(
                "RelaxedOneHotCategorical",
                format!(
                    "`temperature` shape {} does not broadcast with the logits' batch shape {}",
                    ShapeFmt(temperature.dims()),
                    ShapeFmt(lb)
                ),
            )
        })?;
        let temperature = temperature
            .to_dtype(logits.dtype())?
            .broadcast_as(batch_shape.as_slice())?
            .unsqueeze(D::Minus1)?;
        let logits = logits.broadcast_as(concat_shapes(&[&batch_shape, &[k]]))?;
        Ok(Self {
            temperature,
            logits,
            batch_shape,
            event_shape: [k],
        })
    }
}

impl Distribution for RelaxedOneHotCategorical {
    common_methods!("RelaxedOneHotCategorical", logits);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &self.event_shape);
        let n = shape.iter().product();
        let g: Vec<f64> = (0..n).map(|_| -(-rng.uniform_open().ln()).ln()).collect();
        let g = upload(g, &shape, self.dtype(), &self.device())?;
        let z = g
            .broadcast_add(&self.logits)?
            .broadcast_div(&self.temperature)?;
        clamp_probs(&candle_nn::ops::softmax(&z, D::Minus1)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let y = prepare_value(self, value)?;
        let k = self.event_shape[0] as f64;
        let tau = &self.temperature;
        let ly = y.log()?;
        let log_fact: f64 = (1..self.event_shape[0]).map(|i| (i as f64).ln()).sum();
        let head = tau.log()?.squeeze(D::Minus1)?.affine(k - 1.0, log_fact)?;
        let score = ly
            .broadcast_mul(&tau.affine(1.0, 1.0)?)?
            .neg()?
            .broadcast_add(&self.logits)?;
        let lse = ly
            .broadcast_mul(tau)?
            .neg()?
            .broadcast_add(&self.logits)?
            .log_sum_exp(D::Minus1)?;
        Ok((score.sum(D::Minus1)? - lse.affine(k, 0.0)?)?.broadcast_add(&head)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Simplex
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let full = concat_shapes(&[batch_shape, &self.event_shape]);
        Ok(Arc::new(Self {
            temperature: self
                .temperature
                .broadcast_as(concat_shapes(&[batch_shape, &[1]]))?,
            logits: self.logits.broadcast_as(full)?,
            batch_shape: batch_shape.to_vec(),
            event_shape: self.event_shape,
        }))
    }
}
