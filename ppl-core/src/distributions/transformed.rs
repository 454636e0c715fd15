use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result};
use crate::rng::PplRng;
use crate::tensor::sum_rightmost;
use crate::transforms::Transform;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// The distribution of `y = f(x)` for `x ~ base` and a bijection `f` (Pyro's
/// `TransformedDistribution`; autoguides use it to put a Gaussian on unconstrained space
/// and map it onto a latent's support).
///
/// Density by the change of variables: `log p(y) = log p_base(f⁻¹(y)) − log |det J_f(f⁻¹(y))|`,
/// the Jacobian term summed over the base's event dims. Reparameterised when the base is.
/// Support: the transform's codomain. Mean, variance and entropy have no closed form in
/// general and are typed errors.
///
/// ```
/// use ppl_core::prelude::*;
/// use ppl_core::distributions::TransformedDistribution;
/// use ppl_core::transforms::ExpTransform;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// // exp of a standard normal is the standard log-normal
/// let base = Normal::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(1.0f64, &Device::Cpu)?)?;
/// let d = TransformedDistribution::new(base.into_dyn(), std::sync::Arc::new(ExpTransform::new(0.0)))?;
/// let y = Tensor::new(2.0f64, &Device::Cpu)?;
/// let lp = d.log_prob(&y)?.to_scalar::<f64>()?;
/// let exact = -(2.0f64).ln() - 0.5 * (2.0f64).ln().powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln();
/// assert!((lp - exact).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TransformedDistribution {
    base: DynDistribution,
    transform: Arc<dyn Transform>,
    event_shape: Vec<usize>,
}

impl TransformedDistribution {
    /// `f(base)`; the base's event rank must cover the transform's event dims.
    pub fn new(base: DynDistribution, transform: Arc<dyn Transform>) -> Result<Self> {
        let be = base.event_shape();
        if be.len() < transform.event_dim() {
            return Err(shape_err(
                "TransformedDistribution",
                format!(
                    "the transform acts on {} rightmost dims but the base {} has event rank {} \
                     (use `to_event`)",
                    transform.event_dim(),
                    base.family(),
                    be.len()
                ),
            ));
        }
        let event_shape = transform.constrained_shape(be);
        Ok(Self {
            base,
            transform,
            event_shape,
        })
    }

    /// The base distribution.
    pub fn base(&self) -> &DynDistribution {
        &self.base
    }

    /// The transform.
    pub fn transform(&self) -> &Arc<dyn Transform> {
        &self.transform
    }
}

impl Distribution for TransformedDistribution {
    fn family(&self) -> &'static str {
        "TransformedDistribution"
    }
    fn batch_shape(&self) -> &[usize] {
        self.base.batch_shape()
    }
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        self.base.has_rsample()
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        self.transform
            .forward(&self.base.sample(rng, sample_shape)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        crate::tensor::log_prob_shape(
            self.family(),
            value.dims(),
            self.base.batch_shape(),
            &self.event_shape,
        )?;
        let x = self.transform.inverse(value)?;
        let ladj = self.transform.log_abs_det_jacobian(&x, value)?;
        let extra = self.base.event_shape().len() - self.transform.event_dim();
        let ladj = sum_rightmost(&ladj, extra)?;
        Ok(self.base.log_prob(&x)?.broadcast_sub(&ladj)?)
    }
    fn support(&self) -> Constraint {
        let extra = self.base.event_shape().len() - self.transform.event_dim();
        match extra {
            0 => self.transform.codomain(),
            n => Constraint::Independent(Box::new(self.transform.codomain()), n),
        }
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Self::new(
            self.base.expand(batch_shape)?,
            self.transform.clone(),
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
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(Self::new(
            self.base.detach()?,
            self.transform.clone(),
        )?))
    }
}
