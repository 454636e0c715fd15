use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, Result};
use crate::rng::PplRng;
use crate::tensor::log_prob_shape;
use candle_core::{DType, Device, Tensor};
use std::any::Any;
use std::sync::Arc;

/// The density behind `factor!`: a batch of fixed log weights with an empty event.
///
/// `log_prob(x) = log_weight` for any `x` whose shape broadcasts with the batch shape. It
/// is only ever observed; sampling returns the log weights themselves.
#[derive(Debug, Clone)]
pub struct Unit {
    log_weight: Tensor,
}

impl Unit {
    /// A unit density with the given (batch-shaped) log weights.
    pub fn new(log_weight: &Tensor) -> Result<Self> {
        Ok(Unit {
            log_weight: log_weight.clone(),
        })
    }
}

impl Distribution for Unit {
    fn family(&self) -> &'static str {
        "Unit"
    }
    fn batch_shape(&self) -> &[usize] {
        self.log_weight.dims()
    }
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, _rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let mut shape = sample_shape.to_vec();
        shape.extend_from_slice(self.log_weight.dims());
        Ok(self.log_weight.broadcast_as(shape)?.contiguous()?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let shape = log_prob_shape("Unit", value.dims(), self.batch_shape(), &[])?;
        Ok(self.log_weight.broadcast_as(shape)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Err(not_available(
            "Unit",
            "entropy",
            "is not defined for a factor",
        ))
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Unit {
            log_weight: self.log_weight.broadcast_as(batch_shape)?,
        }))
    }
    fn device(&self) -> Device {
        self.log_weight.device().clone()
    }
    fn dtype(&self) -> DType {
        self.log_weight.dtype()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
