//! The contract of the generalised linear model on top of the flow features.

use candle_core::Tensor;
use ppl_core::Result;
use std::fmt::Debug;

/// A generalised linear model `p(y | z)` on features `z` `[B, D]` (the flow's output).
pub trait GlmHead: Debug {
    /// The feature width `D` it expects.
    fn in_dim(&self) -> usize;
    /// `log p(y_b | z_b)` per row `[B]`, differentiable in the head's and (through `z`) the
    /// flow's parameters. `y`'s layout is the head's (labels, or `[B, O]` targets).
    fn log_prob(&self, z: &Tensor, y: &Tensor) -> Result<Tensor>;
}

/// A typed error naming the head and the shapes, for heads' input checks.
pub(crate) fn check_features(head: &'static str, z: &Tensor, d: usize) -> Result<usize> {
    match z.dims() {
        [b, dz] if *dz == d => Ok(*b),
        dims => Err(ppl_core::PplError::invalid_argument(
            head,
            format!("features must be [B, {d}], got {dims:?}"),
        )),
    }
}
