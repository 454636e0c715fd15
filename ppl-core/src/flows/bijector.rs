//! The contract every flow layer implements.

use crate::error::Result;
use candle_core::Tensor;
use std::fmt::Debug;

/// Which direction of a [`Bijector`] is cheap (one parallel pass) — the other may be a
/// sequential pass (autoregressive layers), an iterative solve, or unavailable (planar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// Both directions are one pass (coupling layers, ActNorm, permutations, LU linear).
    Both,
    /// [`Bijector::to_data`] (sampling) is cheap: IAF-style layers, good for guides.
    ToData,
    /// [`Bijector::to_base`] (density) is cheap: MAF-style layers, good for density
    /// estimation on data.
    ToBase,
}

/// A learnable, invertible, batched map between a base space `z` and a data space `x` of
/// the same event size `D` (the last axis of the tensors; every axis before it is batch).
///
/// The two directions are named after where they lead, so the sampling and the density
/// directions cannot be confused:
/// - [`Bijector::to_data`]: `x = f(z)`, the *sampling* direction, with `log |det ∂x/∂z|`;
/// - [`Bijector::to_base`]: `z = f⁻¹(x)`, the *density* direction, with `log |det ∂z/∂x|`
///   (so `log p_X(x) = log p_Z(z) + ladj`).
///
/// Each returns `(output, ladj)` with `ladj` of the batch shape (the input's shape without
/// its last axis). `context` is an optional conditioning tensor `[..., C]` whose batch axes
/// broadcast against the input's (conditional flows); layers without a conditioner ignore
/// it.
///
/// **Tangents.** The `_jvp` variants also push tangent vectors forward (forward-mode
/// Jacobian-vector products, which candle lacks): `v` is `[K, ..., D]`, `K` tangents of the
/// input, and the third output is `J v` `[K, ..., D]` with `J` the Jacobian of that
/// direction at the input. All outputs are differentiable by ordinary backward, so the
/// parameter gradient of anything built from `J v` needs only first-order autodiff.
pub trait Bijector: Debug + Send + Sync {
    /// The event size `D` this layer acts on.
    fn dim(&self) -> usize;

    /// Which direction is cheap (default both).
    fn fast(&self) -> Fast {
        Fast::Both
    }

    /// Sampling direction: `x = f(z)` and `log |det ∂x/∂z|`.
    fn to_data(&self, z: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)>;

    /// Density direction: `z = f⁻¹(x)` and `log |det ∂z/∂x|`.
    fn to_base(&self, x: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)>;

    /// [`Bijector::to_data`] and `J_f(z) v` for tangents `v` `[K, ..., D]`.
    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)>;

    /// [`Bijector::to_base`] and `J_{f⁻¹}(x) v` for tangents `v` `[K, ..., D]`.
    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)>;
}
