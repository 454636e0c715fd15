//! Argument validation, on by default, with a scoped opt-out for speed.
//!
//! Constructors check their parameters (finite, positive, in `[0, 1]`, on the simplex, ...)
//! and `log_prob` checks that values lie in the support. Checks read the tensors back to
//! the host; inside a hot loop whose inputs are known to be valid, turn them off for the
//! current thread with [`disable`] (like Pyro's `validate_args=False`). The setting is
//! thread-local, so one thread's opt-out never changes another's behaviour.
//!
//! ```
//! let _guard = ppl_core::validation::disable();
//! assert!(!ppl_core::validation::is_enabled());
//! drop(_guard);
//! assert!(ppl_core::validation::is_enabled());
//! ```

use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::tensor::{host_f64, unravel};
use candle_core::Tensor;
use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether validation is on for the current thread.
pub fn is_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Turns validation on or off for the current thread; returns the previous setting.
pub fn set_enabled(on: bool) -> bool {
    ENABLED.with(|e| e.replace(on))
}

/// Restores the previous validation setting when dropped.
#[derive(Debug)]
#[must_use = "validation is restored when the guard is dropped"]
pub struct ValidationGuard {
    previous: bool,
}

impl Drop for ValidationGuard {
    fn drop(&mut self) {
        set_enabled(self.previous);
    }
}

/// Turns validation off for the current thread until the guard is dropped.
pub fn disable() -> ValidationGuard {
    ValidationGuard {
        previous: set_enabled(false),
    }
}

/// Checks a constructor parameter: every element finite and in `constraint`.
pub(crate) fn check_param(
    family: &'static str,
    param: &'static str,
    t: &Tensor,
    constraint: &Constraint,
) -> Result<()> {
    if !is_enabled() {
        return Ok(());
    }
    let v = host_f64(t)?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(PplError::invalid_parameter(
            family,
            param,
            format!(
                "must be finite, got {} at index {:?}",
                v[i],
                unravel(i, t.dims())
            ),
        ));
    }
    if let Some((i, x)) = constraint.first_violation(&v, t.dims())? {
        return Err(PplError::invalid_parameter(
            family,
            param,
            format!(
                "must be {}, got {} at index {:?}",
                constraint.describe(),
                x,
                unravel(i, t.dims())
            ),
        ));
    }
    Ok(())
}

/// Checks that every element of a `log_prob` argument lies in the support.
pub(crate) fn check_value(
    family: &'static str,
    value: &Tensor,
    support: &Constraint,
) -> Result<()> {
    if !is_enabled() {
        return Ok(());
    }
    let v = host_f64(value)?;
    if let Some((i, x)) = support.first_violation(&v, value.dims())? {
        return Err(PplError::OutsideSupport {
            family,
            support: support.describe(),
            detail: format!("got {} at index {:?}", x, unravel(i, value.dims())),
        });
    }
    Ok(())
}
