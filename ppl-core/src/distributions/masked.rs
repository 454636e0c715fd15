use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::tensor::{broadcast_shapes, where_broadcast};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// Masks a distribution's `log_prob`: where the mask is zero the log-probability is 0
/// (the element contributes nothing), elsewhere it is the base's (written `d.mask(m)`).
///
/// The mask (any dtype; non-zero = keep) must broadcast to the batch shape. Sampling,
/// moments and the support are the base's. Gradients never reach masked-out elements.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let keep = Tensor::new(&[1u8, 0, 1], &Device::Cpu)?;
/// let d = Normal::standard(&[3], DType::F64, &Device::Cpu)?.mask(&keep)?;
/// let lp = d.log_prob(&Tensor::zeros(3, DType::F64, &Device::Cpu)?)?.to_vec1::<f64>()?;
/// assert_eq!(lp[1], 0.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Masked {
    base: DynDistribution,
    mask: Tensor,
}

impl Masked {
    /// Masks `base` with `mask` (broadcastable to its batch shape).
    pub fn new(base: DynDistribution, mask: &Tensor) -> Result<Self> {
        let b = base.batch_shape();
        if broadcast_shapes(mask.dims(), b).as_deref() != Some(b) {
            return Err(shape_err(
                "Masked",
                format!(
                    "mask shape {} does not broadcast to the batch shape {} of {}",
                    ShapeFmt(mask.dims()),
                    ShapeFmt(b),
                    base.family()
                ),
            ));
        }
        let mask = mask.ne(0.0)?;
        Ok(Self { base, mask })
    }
    /// The base distribution.
    pub fn base(&self) -> &DynDistribution {
        &self.base
    }
}

impl Distribution for Masked {
    fn family(&self) -> &'static str {
        self.base.family()
    }
    fn batch_shape(&self) -> &[usize] {
        self.base.batch_shape()
    }
    fn event_shape(&self) -> &[usize] {
        self.base.event_shape()
    }
    fn has_rsample(&self) -> bool {
        self.base.has_rsample()
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        self.base.sample(rng, sample_shape)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let lp = self.base.log_prob(value)?;
        where_broadcast(&self.mask, &lp, &lp.zeros_like()?)
    }
    fn mean(&self) -> Result<Tensor> {
        self.base.mean()
    }
    fn variance(&self) -> Result<Tensor> {
        self.base.variance()
    }
    fn entropy(&self) -> Result<Tensor> {
        self.base.entropy()
    }
    fn support(&self) -> Constraint {
        self.base.support()
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Self::new(
            self.base.expand(batch_shape)?,
            &self.mask,
        )?))
    }
    fn device(&self) -> Device {
        self.base.device()
    }
    fn dtype(&self) -> DType {
        self.base.dtype()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
