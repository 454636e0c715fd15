use super::Transform;
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::special::{log_sigmoid, logit};
use candle_core::Tensor;

/// `y = a + (b − a)·sigmoid(x)`, onto `(a, b)`;
/// `log |dy/dx| = log(b − a) + log σ(x) + log σ(−x)`.
#[derive(Debug, Clone, Copy)]
pub struct IntervalTransform {
    low: f64,
    high: f64,
}

impl IntervalTransform {
    /// Onto `(low, high)`; needs finite `low < high`.
    pub fn new(low: f64, high: f64) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(PplError::invalid_argument(
                "IntervalTransform",
                format!("needs finite low < high, got [{low}, {high}]"),
            ));
        }
        Ok(IntervalTransform { low, high })
    }
}

impl Transform for IntervalTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = candle_nn::ops::sigmoid(x)?;
        Ok(s.affine(self.high - self.low, self.low)?)
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let u = y.affine(
            1.0 / (self.high - self.low),
            -self.low / (self.high - self.low),
        )?;
        logit(&u)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let l = (log_sigmoid(x)? + log_sigmoid(&x.neg()?)?)?;
        Ok((l + (self.high - self.low).ln())?)
    }
    fn codomain(&self) -> Constraint {
        if self.low == 0.0 && self.high == 1.0 {
            Constraint::UnitInterval
        } else {
            Constraint::Interval(self.low, self.high)
        }
    }
}
