use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, PplError, Result};
use crate::rng::PplRng;
use crate::tensor::log_prob_shape;
use candle_core::{DType, Device, Tensor};
use std::any::Any;
use std::sync::Arc;

/// The flat improper density on the reals (or real vectors): `log p(x) = 0` everywhere.
///
/// A latent that only declares its shape and leaves its value to the rest of the model:
/// the latent code of an energy-based model with no regularisation, a parameter-like
/// latent optimised by MAP. It cannot be sampled (there is no normalised distribution to
/// draw from): give the site a value (`Substitute`, `Condition`, `Replay`, an engine's
/// search) instead. Batch shape and event shape are given explicitly; support: the reals
/// (real vectors with a non-empty event shape).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = ImproperUniform::new(&[3], &[2], DType::F64, &Device::Cpu)?;
/// let lp = d.log_prob(&Tensor::ones((3, 2), DType::F64, &Device::Cpu)?)?;
/// assert_eq!(lp.to_vec1::<f64>()?, vec![0.0; 3]);
/// assert!(d.sample(&mut PplRng::seed_from_u64(0), &[]).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ImproperUniform {
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
    dtype: DType,
    device: Device,
}

impl ImproperUniform {
    /// A flat density with the given batch and event shapes, in `dtype` (a float type) on
    /// `device`.
    pub fn new(
        batch_shape: &[usize],
        event_shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !dtype.is_float() {
            return Err(PplError::invalid_parameter(
                "ImproperUniform",
                "dtype",
                format!("must be a float type, got {dtype:?}"),
            ));
        }
        Ok(ImproperUniform {
            batch_shape: batch_shape.to_vec(),
            event_shape: event_shape.to_vec(),
            dtype,
            device: device.clone(),
        })
    }
}

impl Distribution for ImproperUniform {
    fn family(&self) -> &'static str {
        "ImproperUniform"
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, _rng: &mut PplRng, _sample_shape: &[usize]) -> Result<Tensor> {
        Err(not_available(
            "ImproperUniform",
            "sample",
            "is an improper density with nothing to draw from: give the site a value \
             (Substitute, Condition, Replay, or an engine's search) or a proper prior",
        ))
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let shape = log_prob_shape(
            "ImproperUniform",
            value.dims(),
            &self.batch_shape,
            &self.event_shape,
        )?;
        Ok(Tensor::zeros(shape, self.dtype, &self.device)?)
    }
    fn support(&self) -> Constraint {
        if self.event_shape.is_empty() {
            Constraint::Real
        } else {
            Constraint::Independent(Box::new(Constraint::Real), self.event_shape.len())
        }
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        super::common::check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(ImproperUniform {
            batch_shape: batch_shape.to_vec(),
            ..self.clone()
        }))
    }
    fn device(&self) -> Device {
        self.device.clone()
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
