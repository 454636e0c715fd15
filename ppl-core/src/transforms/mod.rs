//! Bijections from unconstrained real space onto constrained supports.
//!
//! Parameters are stored unconstrained and mapped through [`biject_to`] of their
//! constraint; autoguides (issue 4) use the same transforms for constrained latents, with
//! [`Transform::log_abs_det_jacobian`] for the change of variables
//! `log q_Y(y) = log q_X(x) − log |det ∂y/∂x|`.
//!
//! | constraint | transform | unconstrained shape |
//! |---|---|---|
//! | real | identity | same |
//! | positive, greater than `a` | `a + exp(x)` | same |
//! | non-negative | `exp(x)` (misses only 0, a null set) | same |
//! | unit interval, interval `[a, b]` | `a + (b − a)·sigmoid(x)` | same |
//! | simplex (K) | stick-breaking | K − 1 |
//! | lower Cholesky (n×n) | strict lower part of `x` + `diag(exp(diag x))` | n×n |
//! | scaled unit lower Cholesky (n×n) | `diag(softplus(diag x)) · (I + strict lower part of x)` | n×n |

mod exp;
mod identity;
mod interval;
mod lower_cholesky;
mod scaled_unit_lower_cholesky;
mod stick_breaking;

pub use exp::ExpTransform;
pub use identity::IdentityTransform;
pub use interval::IntervalTransform;
pub use lower_cholesky::LowerCholeskyTransform;
pub use scaled_unit_lower_cholesky::ScaledUnitLowerCholeskyTransform;
pub use stick_breaking::StickBreakingTransform;

use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use candle_core::Tensor;
use std::fmt::Debug;
use std::sync::Arc;

/// A differentiable bijection `y = f(x)` from unconstrained `x` to a constrained `y`.
pub trait Transform: Debug + Send + Sync {
    /// `y = f(x)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// `x = f⁻¹(y)`.
    fn inverse(&self, y: &Tensor) -> Result<Tensor>;
    /// `log |det ∂f(x)/∂x|`, summed over the transform's event dims (so its shape is the
    /// shape of `x` without its last [`Transform::event_dim`] dims).
    fn log_abs_det_jacobian(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// The constraint of `y`.
    fn codomain(&self) -> Constraint;
    /// How many rightmost dims form one event (0 elementwise, 1 simplex, 2 matrices).
    fn event_dim(&self) -> usize {
        0
    }
    /// The unconstrained shape for a constrained shape (they differ for the simplex).
    fn unconstrained_shape(&self, constrained: &[usize]) -> Vec<usize> {
        constrained.to_vec()
    }
    /// The constrained shape for an unconstrained shape (inverse of
    /// [`Transform::unconstrained_shape`]).
    fn constrained_shape(&self, unconstrained: &[usize]) -> Vec<usize> {
        unconstrained.to_vec()
    }
}

/// The transform from unconstrained space onto `constraint`, or a typed error for
/// constraints without one (discrete supports).
pub fn biject_to(constraint: &Constraint) -> Result<Arc<dyn Transform>> {
    Ok(match constraint {
        Constraint::Real | Constraint::RealVector => Arc::new(IdentityTransform),
        Constraint::Positive => Arc::new(ExpTransform::new(0.0)),
        Constraint::NonNegative => Arc::new(ExpTransform::non_negative()),
        Constraint::GreaterThan(a) => Arc::new(ExpTransform::new(*a)),
        Constraint::UnitInterval => Arc::new(IntervalTransform::new(0.0, 1.0)?),
        Constraint::Interval(a, b) => Arc::new(IntervalTransform::new(*a, *b)?),
        Constraint::Simplex => Arc::new(StickBreakingTransform),
        Constraint::LowerCholesky => Arc::new(LowerCholeskyTransform),
        Constraint::ScaledUnitLowerCholesky => Arc::new(ScaledUnitLowerCholeskyTransform),
        Constraint::Independent(c, _) => biject_to(c)?,
        other => {
            return Err(PplError::invalid_argument(
                "biject_to",
                format!(
                    "no bijection from the reals onto a support that is {}",
                    other.describe()
                ),
            ))
        }
    })
}
