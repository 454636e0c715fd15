use super::Transform;
use crate::constraints::Constraint;
use crate::error::Result;
use candle_core::Tensor;

/// `y = a + exp(x)`, onto `(a, ∞)`; `log |dy/dx| = x`.
///
/// Also the bijection for a non-negative support `[0, ∞)` (HalfNormal, Exponential), as in
/// Pyro: `exp` reaches every point but 0, a set of measure zero, so densities and
/// expectations are unchanged ([`ExpTransform::non_negative`] reports that codomain).
#[derive(Debug, Clone, Copy)]
pub struct ExpTransform {
    lower: f64,
    non_negative: bool,
}

impl ExpTransform {
    /// Onto `(lower, ∞)`.
    pub fn new(lower: f64) -> Self {
        ExpTransform {
            lower,
            non_negative: false,
        }
    }

    /// `y = exp(x)` for a non-negative support; its codomain is
    /// [`Constraint::NonNegative`], so a guide built with it has the model's support.
    pub fn non_negative() -> Self {
        ExpTransform {
            lower: 0.0,
            non_negative: true,
        }
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
        if self.non_negative {
            Constraint::NonNegative
        } else if self.lower == 0.0 {
            Constraint::Positive
        } else {
            Constraint::GreaterThan(self.lower)
        }
    }
}
