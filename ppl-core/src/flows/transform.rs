//! A [`Bijector`] seen as a [`Transform`] (the library's bijection abstraction).

use super::bijector::Bijector;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::transforms::Transform;
use candle_core::Tensor;
use std::sync::Arc;

/// Adapts a flow to [`Transform`]: `forward` is [`Bijector::to_data`], `inverse` is
/// [`Bijector::to_base`], `log_abs_det_jacobian(x, y)` is the `ladj` of `to_data` at `x`
/// (recomputed: one more pass), event dim 1, codomain [`Constraint::RealVector`]. An
/// optional context is fixed at construction (a conditional flow at one context), so the
/// flow can go wherever a `Transform` goes, e.g. in a
/// [`TransformedDistribution`](crate::distributions::TransformedDistribution).
#[derive(Debug, Clone)]
pub struct BijectorTransform {
    flow: Arc<dyn Bijector>,
    context: Option<Tensor>,
}

impl BijectorTransform {
    /// `flow` as a transform, with `context` (`[..., C]`) passed to every call.
    pub fn new(flow: Arc<dyn Bijector>, context: Option<Tensor>) -> Self {
        BijectorTransform { flow, context }
    }

    /// The wrapped flow.
    pub fn flow(&self) -> &Arc<dyn Bijector> {
        &self.flow
    }
}

impl Transform for BijectorTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.flow.to_data(x, self.context.as_ref())?.0)
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(self.flow.to_base(y, self.context.as_ref())?.0)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(self.flow.to_data(x, self.context.as_ref())?.1)
    }
    fn codomain(&self) -> Constraint {
        Constraint::RealVector
    }
    fn event_dim(&self) -> usize {
        1
    }
}
