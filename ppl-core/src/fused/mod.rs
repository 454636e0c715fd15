//! Fused CPU kernels with hand-written backward passes, and the policy for when they run.
//!
//! | file | contents |
//! |---|---|
//! | `linear.rs` | [`linear`]: `act(x Wᵀ + b)` as one candle custom op whose backward computes only the gradients that lead to variables (no gradient for data inputs), with the weight gradient written untransposed |
//! | `bernoulli.rs` | `bernoulli_logits_log_prob` (used by `Bernoulli::log_prob`): `x·l − softplus(l)` in one pass, gradient `x − σ(l)` in one pass |
//! | `normal.rs` | the Normal log-density `−½((x − μ)/σ)² − ln σ − ½ ln 2π` as one node each way (models with many small sites pay per node) |
//! | `math.rs` | branch-free `exp` of non-positive arguments and `ln(1 + u)` on `[0, 1]` that the compiler vectorises (dispatched to the widest SIMD the CPU has) |
//!
//! A fused kernel runs when all of these hold, and otherwise the same maths is written
//! with plain candle ops (so CUDA, other dtypes and higher-order gradients keep working):
//! - the tensors are on the CPU and f32 or f64;
//! - `CANDLE_GRAD_DO_NOT_DETACH` is unset for the current thread (read once per thread, as
//!   candle does): the hand-written backward passes are not themselves differentiable,
//!   so gradients of gradients must go through candle's own ops;
//! - fused kernels are not turned off for the current thread with [`disable`];
//! - and each kernel's own conditions (operands of one shape, contiguous, non-empty; a bias
//!   for [`linear`]): see each function.
//!
//! ```
//! let _plain = ppl_core::fused::disable();
//! assert!(!ppl_core::fused::is_enabled());
//! drop(_plain);
//! assert!(ppl_core::fused::is_enabled());
//! ```

mod bernoulli;
mod gemm;
mod linear;
mod math;
mod normal;

pub(crate) use bernoulli::bernoulli_logits_log_prob;
pub use linear::{linear, Activation};
pub(crate) use normal::normal_log_prob;

use candle_core::{DType, Layout, Tensor};
use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
    static HIGHER_ORDER: bool = match std::env::var("CANDLE_GRAD_DO_NOT_DETACH") {
        Ok(s) => !s.is_empty() && s != "0",
        Err(_) => false,
    };
}

/// Whether fused kernels may run on the current thread: not turned off with [`disable`]
/// and `CANDLE_GRAD_DO_NOT_DETACH` unset (higher-order gradients need candle's own ops).
pub fn is_enabled() -> bool {
    ENABLED.with(|e| e.get()) && !HIGHER_ORDER.with(|h| *h)
}

/// Turns fused kernels off for the current thread until the guard is dropped (the plain
/// candle-op paths then run; for comparisons and tests).
pub fn disable() -> FusedGuard {
    FusedGuard {
        previous: ENABLED.with(|e| e.replace(false)),
    }
}

/// Restores the previous fused-kernel setting when dropped.
#[derive(Debug)]
#[must_use = "fused kernels are restored when the guard is dropped"]
pub struct FusedGuard {
    previous: bool,
}

impl Drop for FusedGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.previous));
    }
}

/// Whether a fused CPU kernel applies to these tensors: enabled, all on the CPU, all of
/// one float dtype (f32 or f64).
pub(crate) fn applies(ts: &[&Tensor]) -> bool {
    if !is_enabled() {
        return false;
    }
    let Some(first) = ts.first() else {
        return false;
    };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::F64)
        && ts.iter().all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// The elements of a contiguous CPU storage slice that `layout` addresses (its offset
/// included), or an error naming the operand (`op`: the kernel, `what`: the operand).
pub(crate) fn contiguous_slice<'a, T>(
    storage: &'a [T],
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&storage[a..b]),
        None => candle_core::bail!("{op}: {what} is not contiguous"),
    }
}
