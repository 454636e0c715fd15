use super::Transform;
use crate::constraints::Constraint;
use crate::error::Result;
use candle_core::Tensor;

/// `y = a + exp(x)`, onto `(a, ∞)`; `log |dy/dx| = x`.
#[derive(Debug, Clone, Copy)]
pub struct ExpTransform {
    lower: f64,
}

impl ExpTransform {
    /// Onto `(lower, ∞)`.
    pub fn new(lower: f64) -> Self {
        ExpTransform { lower }
    }
}

impl Transform for ExpTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.exp()?;
        Ok(if self.lower == 0.0 {
            y
        } else {
            (y + self.lower)?
        })
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let s = if self.lower == 0.0 {
            y.clone()
        } else {
            (y - self.lower)?
        };
        Ok(s.log()?)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn codomain(&self) -> Constraint {
        if self.lower == 0.0 {
            Constraint::Positive
        } else {
            Constraint::GreaterThan(self.lower)
        }
    }
}
