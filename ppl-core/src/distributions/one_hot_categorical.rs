use super::common::{
    categorical_probs_logits, check_expand, common_methods, out_shape, prepare_value,
};
use super::{Categorical, Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::{upload, PplRng};
use candle_core::{Tensor, D};
use std::sync::Arc;

/// The categorical distribution over one-hot vectors of length K.
///
/// Mass: `P(x) = Πₖ pₖ^{xₖ}` for one-hot `x`. Parameters: `probs` or `logits` `[..., K]`,
/// as for [`Categorical`]; the event shape is `[K]`. Mean `p`, variance `p(1-p)`.
/// Not reparameterised.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = OneHotCategorical::from_probs(&Tensor::new(&[0.2f64, 0.8], &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(&[0.0f64, 1.0], &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - 0.8f64.ln()).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OneHotCategorical {
    inner: Categorical,
    batch_shape: Vec<usize>,
    event_shape: [usize; 1],
}

impl OneHotCategorical {
    /// From probabilities `[..., K]`.
    pub fn from_probs(probs: &Tensor) -> Result<Self> {
        let (p, l) = categorical_probs_logits("OneHotCategorical", Some(probs), None)?;
        Ok(Self::wrap(Categorical::build(p, l)))
    }
    /// From logits `[..., K]`.
    pub fn from_logits(logits: &Tensor) -> Result<Self> {
        let (p, l) = categorical_probs_logits("OneHotCategorical", None, Some(logits))?;
        Ok(Self::wrap(Categorical::build(p, l)))
    }
    fn wrap(inner: Categorical) -> Self {
        let batch_shape = inner.batch_shape().to_vec();
        let event_shape = [inner.num_categories()];
        Self {
            inner,
            batch_shape,
            event_shape,
        }
    }
    /// The equivalent [`Categorical`] over indices.
    pub fn categorical(&self) -> &Categorical {
        &self.inner
    }
}

impl Distribution for OneHotCategorical {
    common_methods!("OneHotCategorical", inner);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let k = self.event_shape[0];
        let idx = self.inner.sample_indices(rng, sample_shape)?;
        let mut v = vec![0.0; idx.len() * k];
        for (row, &i) in idx.iter().enumerate() {
            v[row * k + i] = 1.0;
        }
        let shape = out_shape(sample_shape, &self.batch_shape, &self.event_shape);
        upload(v, &shape, self.dtype(), &self.device())
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        Ok(x.broadcast_mul(self.inner.logits())?.sum(D::Minus1)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.inner.probs().clone())
    }
    fn variance(&self) -> Result<Tensor> {
        let p = self.inner.probs();
        Ok((p * p.affine(-1.0, 1.0)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        self.inner.entropy()
    }
    fn support(&self) -> Constraint {
        Constraint::OneHot
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let full = [batch_shape, &self.event_shape[..]].concat();
        Ok(Arc::new(Self::wrap(Categorical::build(
            self.inner.probs().broadcast_as(full.as_slice())?,
            self.inner.logits().broadcast_as(full.as_slice())?,
        ))))
    }
}
