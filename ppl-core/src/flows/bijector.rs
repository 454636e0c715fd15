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
    /// [`Bijector::to_data`](super::Bijector::to_data) (sampling) is cheap: IAF-style layers, good for guides.
    ToData,
    /// [`Bijector::to_base`](super::Bijector::to_base) (density) is cheap: MAF-style layers, good for density
    /// estimation on data.
    ToBase,
    /// Neither direction is one pass: a [`Flow`](super::Flow) that mixes `ToData` and
    /// `ToBase` layers.
    Neither,
}

/// A learnable, invertible, batched map between a base space `z` and a data space `x` of
/// the same event size `D` (the last axis of the tensors; every axis before it is batch).
///
/// The two directions are named after where they lead, so the sampling and the density
/// directions cannot be confused:
/// - [`Bijector::to_data`](super::Bijector::to_data): `x = f(z)`, the *sampling* direction, with `log |det ∂x/∂z|`;
/// - [`Bijector::to_base`](super::Bijector::to_base): `z = f⁻¹(x)`, the *density* direction, with `log |det ∂z/∂x|`
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

    /// [`Bijector::to_data`](super::Bijector::to_data) and `J_f(z) v` for tangents `v` `[K, ..., D]`.
    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)>;

    /// [`Bijector::to_base`](super::Bijector::to_base) and `J_{f⁻¹}(x) v` for tangents `v` `[K, ..., D]`.
    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)>;
}

/// A layer written as one pass per direction with optional tangents (crate-private): the
/// four [`Bijector`] methods follow from it through `impl_bijector_by_pass!`.
pub(crate) trait Pass {
    /// The layer's name, for errors.
    const LAYER: &'static str;
    /// The event size `D`.
    fn pass_dim(&self) -> usize;
    /// Which direction is cheap.
    fn pass_fast(&self) -> Fast {
        Fast::Both
    }
    /// `to_data` (`to_data = true`) or `to_base`, and the tangents `J v` when `v` is given.
    fn pass(
        &self,
        input: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)>;
}

/// The tangents a [`Pass`] computed when asked to (an internal error otherwise).
pub(crate) fn tangents_of(layer: &'static str, t: Option<Tensor>) -> Result<Tensor> {
    t.ok_or_else(|| {
        crate::error::PplError::invalid_argument(layer, "internal: tangents were not computed")
    })
}

/// Implements [`Bijector`] for a type that implements [`Pass`].
macro_rules! impl_bijector_by_pass {
    ($ty:ty) => {
        impl $crate::flows::Bijector for $ty {
            fn dim(&self) -> usize {
                $crate::flows::bijector::Pass::pass_dim(self)
            }
            fn fast(&self) -> $crate::flows::Fast {
                $crate::flows::bijector::Pass::pass_fast(self)
            }
            fn to_data(
                &self,
                z: &candle_core::Tensor,
                context: Option<&candle_core::Tensor>,
            ) -> $crate::error::Result<(candle_core::Tensor, candle_core::Tensor)> {
                let (x, l, _) = $crate::flows::bijector::Pass::pass(self, z, context, None, true)?;
                Ok((x, l))
            }
            fn to_base(
                &self,
                x: &candle_core::Tensor,
                context: Option<&candle_core::Tensor>,
            ) -> $crate::error::Result<(candle_core::Tensor, candle_core::Tensor)> {
                let (z, l, _) = $crate::flows::bijector::Pass::pass(self, x, context, None, false)?;
                Ok((z, l))
            }
            fn to_data_jvp(
                &self,
                z: &candle_core::Tensor,
                context: Option<&candle_core::Tensor>,
                v: &candle_core::Tensor,
            ) -> $crate::error::Result<(
                candle_core::Tensor,
                candle_core::Tensor,
                candle_core::Tensor,
            )> {
                let (x, l, t) =
                    $crate::flows::bijector::Pass::pass(self, z, context, Some(v), true)?;
                let t = $crate::flows::bijector::tangents_of(
                    <$ty as $crate::flows::bijector::Pass>::LAYER,
                    t,
                )?;
                Ok((x, l, t))
            }
            fn to_base_jvp(
                &self,
                x: &candle_core::Tensor,
                context: Option<&candle_core::Tensor>,
                v: &candle_core::Tensor,
            ) -> $crate::error::Result<(
                candle_core::Tensor,
                candle_core::Tensor,
                candle_core::Tensor,
            )> {
                let (z, l, t) =
                    $crate::flows::bijector::Pass::pass(self, x, context, Some(v), false)?;
                let t = $crate::flows::bijector::tangents_of(
                    <$ty as $crate::flows::bijector::Pass>::LAYER,
                    t,
                )?;
                Ok((z, l, t))
            }
        }
    };
}
pub(crate) use impl_bijector_by_pass;
