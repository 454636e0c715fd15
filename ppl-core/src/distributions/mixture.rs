use super::common::{check_expand, upload_indices};
use super::{Categorical, Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, shape_err, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::tensor::{concat_shapes, log_prob_shape};
use candle_core::{DType, Device, Tensor, D};
use std::sync::Arc;

/// A finite mixture whose components all come from one family:
/// `p(x) = Σₖ wₖ pₖ(x)`.
///
/// Parameters: `mixing` a [`Categorical`] with batch shape `B` over K components, and
/// `components` any distribution with batch shape `B + [K]` (the last batch dim indexes
/// components) and event shape `E`. The mixture has batch shape `B` and event shape `E`.
/// `log_prob` is `logsumexp_k(ln wₖ + ln pₖ(x))`; `mean` and `variance` follow from the law
/// of total expectation and variance. Sampling picks a component, then samples it; not
/// reparameterised.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let dev = Device::Cpu;
/// let mix = Categorical::from_probs(&Tensor::new(&[0.5f64, 0.5], &dev)?)?;
/// let comp = Normal::new(&Tensor::new(&[-1.0f64, 1.0], &dev)?, &Tensor::new(&[1.0f64, 1.0], &dev)?)?;
/// let d = MixtureSameFamily::new(mix, comp.into_dyn())?;
/// assert!(d.mean()?.to_scalar::<f64>()?.abs() < 1e-12);
/// assert!((d.variance()?.to_scalar::<f64>()? - 2.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MixtureSameFamily {
    mixing: Categorical,
    components: DynDistribution,
    batch_shape: Vec<usize>,
}

impl MixtureSameFamily {
    /// A mixture of `components` (batch shape `B + [K]`) weighted by `mixing` (batch `B`).
    pub fn new(mixing: Categorical, components: DynDistribution) -> Result<Self> {
        let b = mixing.batch_shape().to_vec();
        let k = mixing.num_categories();
        let expected = concat_shapes(&[&b, &[k]]);
        if components.batch_shape() != expected.as_slice() {
            return Err(shape_err(
                "MixtureSameFamily",
                format!(
                    "components' batch shape {} must be the mixing batch shape {} plus the \
                     number of components [{k}]",
                    ShapeFmt(components.batch_shape()),
                    ShapeFmt(&b)
                ),
            ));
        }
        if components.dtype() != mixing.dtype() {
            return Err(shape_err(
                "MixtureSameFamily",
                format!(
                    "components have dtype {:?} but mixing weights {:?}",
                    components.dtype(),
                    mixing.dtype()
                ),
            ));
        }
        Ok(Self {
            mixing,
            components,
            batch_shape: b,
        })
    }

    /// The mixing distribution.
    pub fn mixing(&self) -> &Categorical {
        &self.mixing
    }

    /// The component distribution (batch shape `B + [K]`).
    pub fn components(&self) -> &DynDistribution {
        &self.components
    }

    /// Mixing probabilities shaped to broadcast against component moments `[B, K, E...]`.
    fn weights_for_moments(&self) -> Result<Tensor> {
        let mut w = self.mixing.probs().clone();
        for _ in 0..self.event_shape().len() {
            w = w.unsqueeze(D::Minus1)?;
        }
        Ok(w)
    }
}

impl Distribution for MixtureSameFamily {
    fn family(&self) -> &'static str {
        "MixtureSameFamily"
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }
    fn event_shape(&self) -> &[usize] {
        self.components.event_shape()
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let idx = self.mixing.sample_indices(rng, sample_shape)?;
        let all = self.components.sample(rng, sample_shape)?.detach(); // [S, B, K, E]
        let e = self.event_shape().to_vec();
        let lead = concat_shapes(&[sample_shape, &self.batch_shape]);
        let comp_dim = lead.len();
        let mut idx_shape = concat_shapes(&[&lead, &[1]]);
        idx_shape.extend(std::iter::repeat_n(1, e.len()));
        let idx = upload_indices(&idx, &idx_shape, &self.device())?;
        let full_idx = idx
            .broadcast_as(concat_shapes(&[&lead, &[1], &e]))?
            .contiguous()?;
        Ok(all
            .contiguous()?
            .gather(&full_idx, comp_dim)?
            .squeeze(comp_dim)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let e = self.event_shape().len();
        log_prob_shape(
            self.family(),
            value.dims(),
            &self.batch_shape,
            self.event_shape(),
        )?;
        let x = value.unsqueeze(value.rank() - e)?;
        let lp = self.components.log_prob(&x)?; // [..., B, K]
        Ok(lp
            .broadcast_add(self.mixing.logits())?
            .log_sum_exp(D::Minus1)?)
    }
    fn mean(&self) -> Result<Tensor> {
        let dim = self.batch_shape.len();
        let w = self.weights_for_moments()?;
        Ok(self.components.mean()?.broadcast_mul(&w)?.sum(dim)?)
    }
    fn variance(&self) -> Result<Tensor> {
        let dim = self.batch_shape.len();
        let w = self.weights_for_moments()?;
        let m = self.components.mean()?;
        let second = (self.components.variance()? + m.sqr()?)?;
        let mean = m.broadcast_mul(&w)?.sum(dim)?;
        Ok((second.broadcast_mul(&w)?.sum(dim)? - mean.sqr()?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Err(not_available(
            "MixtureSameFamily",
            "entropy",
            "has no closed form",
        ))
    }
    fn support(&self) -> Constraint {
        self.components.support()
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let k = self.mixing.num_categories();
        let logits = self
            .mixing
            .logits()
            .broadcast_as(concat_shapes(&[batch_shape, &[k]]))?;
        Ok(Arc::new(Self {
            mixing: Categorical::from_logits(&logits)?,
            components: self
                .components
                .expand(&concat_shapes(&[batch_shape, &[k]]))?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
    fn device(&self) -> Device {
        self.mixing.device()
    }
    fn dtype(&self) -> DType {
        self.mixing.dtype()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
