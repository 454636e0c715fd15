use super::common::{
    categorical_probs_logits, check_expand, common_methods, out_shape, prepare_value,
};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, Result};
use crate::rng::{upload, PplRng};
use crate::tensor::{concat_shapes, host_f64, log_prob_shape};
use candle_core::{DType, Tensor, D};
use std::sync::Arc;

/// The categorical distribution over `{0, ..., K-1}`.
///
/// Mass: `P(k) = pₖ`. Parameters: `probs` `[..., K]` on the simplex, or `logits` `[..., K]`
/// (normalised with log-softmax). The last dim indexes categories; the rest is the batch
/// shape. Support: `{0, ..., K-1}`. Samples are category indices in the parameters' float
/// dtype; `log_prob` also accepts integer tensors. Not reparameterised (see
/// [`RelaxedOneHotCategorical`](super::RelaxedOneHotCategorical)).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Categorical::from_probs(&Tensor::new(&[0.2f64, 0.5, 0.3], &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1u32, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - 0.5f64.ln()).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Categorical {
    probs: Tensor,
    logits: Tensor,
    batch_shape: Vec<usize>,
}

impl Categorical {
    /// From probabilities `[..., K]` that sum to one over the last dim.
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        let (p, l) = categorical_probs_logits("Categorical", Some(probs), None)?;
        Ok(Self::build(p, l))
    }
    /// From unnormalised log-probabilities `[..., K]`.
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        let (p, l) = categorical_probs_logits("Categorical", None, Some(logits))?;
        Ok(Self::build(p, l))
    }
    pub(super) fn build(probs: Tensor, logits: Tensor) -> Self {
        let d = probs.dims();
        let batch_shape = d[..d.len() - 1].to_vec();
        Self {
            probs,
            logits,
            batch_shape,
        }
    }
    /// Normalised probabilities `[..., K]`.
    pub fn probs(&self) -> &Tensor {
        &self.probs
    }
    /// Normalised log-probabilities `[..., K]`.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }
    /// The number of categories K.
    pub fn num_categories(&self) -> usize {
        self.probs.dims()[self.probs.rank() - 1]
    }
    /// Draws category indices of shape `sample_shape + batch_shape` on the host.
    pub(crate) fn sample_indices(
        &self,
        rng: &mut PplRng,
        sample_shape: &[usize],
    ) -> Result<Vec<usize>> {
        let k = self.num_categories();
        let p = host_f64(&self.probs)?;
        let nb = p.len() / k;
        let ns: usize = sample_shape.iter().product();
        let mut out = Vec::with_capacity(ns * nb);
        for _ in 0..ns {
            for b in 0..nb {
                let row = &p[b * k..(b + 1) * k];
                let total: f64 = row.iter().sum();
                let u = rng.uniform_open() * total;
                let mut acc = 0.0;
                let mut idx = k - 1;
                for (j, &pj) in row.iter().enumerate() {
                    acc += pj;
                    if u < acc {
                        idx = j;
                        break;
                    }
                }
                out.push(idx);
            }
        }
        Ok(out)
    }
    /// Log-probabilities of integer-valued `value` (already validated), gathered from the
    /// logits; shape `broadcast(value, batch)`.
    pub(crate) fn gather_logits(&self, value: &Tensor) -> Result<Tensor> {
        let shape = log_prob_shape(self.family(), value.dims(), &self.batch_shape, &[])?;
        let k = self.num_categories();
        let idx = value
            .broadcast_as(shape.as_slice())?
            .to_dtype(DType::U32)?
            .unsqueeze(D::Minus1)?
            .contiguous()?;
        let logits = self
            .logits
            .broadcast_as(concat_shapes(&[&shape, &[k]]))?
            .contiguous()?;
        Ok(logits.gather(&idx, D::Minus1)?.squeeze(D::Minus1)?)
    }
}

impl Distribution for Categorical {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Categorical", probs);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let idx = self.sample_indices(rng, sample_shape)?;
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        upload(
            idx.into_iter().map(|i| i as f64).collect(),
            &shape,
            self.dtype(),
            &self.device(),
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        self.gather_logits(&x)
    }
    fn mean(&self) -> Result<Tensor> {
        Err(not_available(
            "Categorical",
            "mean",
            "is undefined for category labels",
        ))
    }
    fn variance(&self) -> Result<Tensor> {
        Err(not_available(
            "Categorical",
            "variance",
            "is undefined for category labels",
        ))
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok((&self.probs * &self.logits)?.sum(D::Minus1)?.neg()?)
    }
    fn support(&self) -> Constraint {
        Constraint::IntegerInterval(0, self.num_categories() as i64 - 1)
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let full = concat_shapes(&[batch_shape, &[self.num_categories()]]);
        Ok(Arc::new(Self::build(
            self.probs.broadcast_as(full.as_slice())?,
            self.logits.broadcast_as(full.as_slice())?,
        )))
    }
}

impl super::ExponentialFamily for Categorical {
    fn natural_params(&self) -> Result<Tensor> {
        let mut shape = self.batch_shape.clone();
        shape.push(self.num_categories());
        Ok(self.logits.broadcast_as(shape)?.contiguous()?)
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.num_categories();
        let dt = self.logits.dtype();
        let cats = Tensor::arange(0u32, k as u32, x.device())?.to_dtype(dt)?;
        let x = x.to_dtype(dt)?.unsqueeze(x.rank())?;
        Ok(x.broadcast_eq(&cats)?.to_dtype(dt)?)
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        // The stored logits are normalised; logsumexp keeps A exact (and differentiable)
        // either way.
        let n = self.natural_params()?;
        let m = n.max_keepdim(D::Minus1)?.detach();
        let s = n.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()?;
        Ok((s + m)?.squeeze(D::Minus1)?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.logits.dtype())?.zeros_like()?)
    }
}
