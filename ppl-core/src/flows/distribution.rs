//! [`FlowDistribution`]: a base distribution pushed through a flow.

use super::bijector::Bijector;
use crate::constraints::Constraint;
use crate::distributions::{Distribution, DistributionExt, DynDistribution, Normal};
use crate::error::{shape_err, PplError, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::tensor::{broadcast_shapes, concat_shapes, log_prob_shape};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// The distribution of `x = f(z)`, `z ~ base`, for a flow `f` ([`Bijector`]) on events of
/// size `D`, optionally conditioned on a fixed context (a conditional flow at one context;
/// build a new distribution per context, which is cheap).
///
/// - `sample`: `z` from the base, then [`Bijector::to_data`]: reparameterised when the
///   base is (gradients reach the flow's parameters and the context);
/// - `log_prob(x) = log p_base(z) + ladj` with `(z, ladj) = to_base(x)`.
///
/// The base has event shape `[D]` (a standard normal by [`FlowDistribution::standard_normal`],
/// or any [`DynDistribution`]). The batch shape is the base's broadcast with the context's
/// batch shape (every axis of the context but the last); the base is expanded to it, so
/// every batch element gets its own draw. Support: real vectors. Mean, variance and
/// entropy have no closed form (typed errors).
///
/// ```
/// use ppl_core::prelude::*;
/// use ppl_core::flows::{FlowDistribution, RealNvp, RealNvpOptions};
/// use candle_core::{DType, Device, Tensor};
/// use std::sync::Arc;
/// # fn main() -> ppl_core::Result<()> {
/// let store = ParamStore::new();
/// let vb = store.var_builder(DType::F64, &Device::Cpu, 0);
/// // 3 coupling layers on R^4, conditioned on a context of size 2.
/// let flow = RealNvp::build(vb, 4, 2, 3, &[32, 32], &RealNvpOptions::default())?;
/// let context = Tensor::zeros((5, 2), DType::F64, &Device::Cpu)?;
/// let d = FlowDistribution::standard_normal(Arc::new(flow), Some(context), DType::F64, &Device::Cpu)?;
/// let mut rng = PplRng::seed_from_u64(0);
/// let x = d.sample(&mut rng, &[10])?;          // [10, 5, 4], reparameterised
/// assert_eq!(d.log_prob(&x)?.dims(), &[10, 5]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FlowDistribution {
    base: DynDistribution,
    flow: Arc<dyn Bijector>,
    context: Option<Tensor>,
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
}

impl FlowDistribution {
    /// `flow` applied to `base` (event shape `[flow.dim()]`), with an optional `context`
    /// `[..., C]` whose batch axes broadcast with the base's batch shape.
    pub fn new(
        base: DynDistribution,
        flow: Arc<dyn Bijector>,
        context: Option<Tensor>,
    ) -> Result<Self> {
        let d = flow.dim();
        if base.event_shape() != [d] {
            return Err(shape_err(
                "FlowDistribution",
                format!(
                    "the base {} has event shape {} but the flow acts on events of size {d} \
                     (the base needs event shape [{d}]; use `to_event(1)`)",
                    base.family(),
                    ShapeFmt(base.event_shape())
                ),
            ));
        }
        let batch_shape = match &context {
            None => base.batch_shape().to_vec(),
            Some(c) => {
                if c.rank() == 0 {
                    return Err(PplError::invalid_argument(
                        "FlowDistribution",
                        "the context must have at least one axis ([..., C])",
                    ));
                }
                let cb = &c.dims()[..c.rank() - 1];
                broadcast_shapes(base.batch_shape(), cb).ok_or_else(|| {
                    shape_err(
                        "FlowDistribution",
                        format!(
                            "the context's batch shape {} does not broadcast with the base's \
                             batch shape {}",
                            ShapeFmt(cb),
                            ShapeFmt(base.batch_shape())
                        ),
                    )
                })?
            }
        };
        let base = if base.batch_shape() == batch_shape.as_slice() {
            base
        } else {
            base.expand(&batch_shape)?
        };
        Ok(FlowDistribution {
            base,
            flow,
            context,
            batch_shape,
            event_shape: vec![d],
        })
    }

    /// `flow` applied to a standard normal of event size `flow.dim()` (batch shape `[]`
    /// before the context's), in `dtype` on `device`.
    pub fn standard_normal(
        flow: Arc<dyn Bijector>,
        context: Option<Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let base = Normal::standard(&[flow.dim()], dtype, device)?.to_event(1)?;
        Self::new(base.into_dyn(), flow, context)
    }

    /// The base distribution (expanded to the batch shape).
    pub fn base(&self) -> &DynDistribution {
        &self.base
    }

    /// The flow.
    pub fn flow(&self) -> &Arc<dyn Bijector> {
        &self.flow
    }

    /// The context, if any.
    pub fn context(&self) -> Option<&Tensor> {
        self.context.as_ref()
    }

    /// Draws `x` and returns it with `log p(x)`, computed from the sampling pass
    /// (`log p_base(z) − ladj_to_data`) without inverting the flow: the cheap way to score
    /// samples of a flow whose `to_base` is slow (IAF guides).
    pub fn sample_with_log_prob(
        &self,
        rng: &mut PplRng,
        sample_shape: &[usize],
    ) -> Result<(Tensor, Tensor)> {
        let z = self.base.sample(rng, sample_shape)?;
        let lp = self.base.log_prob(&z)?;
        let (x, ladj) = self.flow.to_data(&z, self.context.as_ref())?;
        Ok((x, lp.broadcast_sub(&ladj)?))
    }
}

impl Distribution for FlowDistribution {
    fn family(&self) -> &'static str {
        "FlowDistribution"
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        self.base.has_rsample()
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let z = self.base.sample(rng, sample_shape)?;
        Ok(self.flow.to_data(&z, self.context.as_ref())?.0)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        log_prob_shape(
            self.family(),
            value.dims(),
            &self.batch_shape,
            &self.event_shape,
        )?;
        let (z, ladj) = self.flow.to_base(value, self.context.as_ref())?;
        Ok(self.base.log_prob(&z)?.broadcast_add(&ladj)?)
    }
    fn support(&self) -> Constraint {
        Constraint::RealVector
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        let context = match &self.context {
            None => None,
            Some(c) => {
                let cd = c.dims()[c.rank() - 1];
                Some(c.broadcast_as(concat_shapes(&[batch_shape, &[cd]]))?)
            }
        };
        Ok(Arc::new(Self::new(
            self.base.expand(batch_shape)?,
            self.flow.clone(),
            context,
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
