use super::Transform;
use crate::constraints::Constraint;
use crate::error::Result;
use candle_core::Tensor;

/// `y = x` (the reals).
#[derive(Debug, Clone, Copy)]
pub struct IdentityTransform;

impl Transform for IdentityTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.clone())
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?)
    }
    fn codomain(&self) -> Constraint {
        Constraint::Real
    }
}
