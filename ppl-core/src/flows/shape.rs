//! Shape checks and small tensor helpers shared by the flow layers (crate-private).

use crate::error::{shape_err, Result, ShapeFmt};
use candle_core::{Tensor, D};

/// Checks that `x`'s last axis is the layer's event size `d` (`x` `[..., d]`, rank ≥ 1).
pub(crate) fn check_event(layer: &'static str, what: &str, x: &Tensor, d: usize) -> Result<()> {
    if x.rank() == 0 || x.dim(D::Minus1)? != d {
        return Err(shape_err(
            layer,
            format!(
                "{what} has shape {} but this layer acts on events of size {d} (the last axis)",
                ShapeFmt(x.dims())
            ),
        ));
    }
    Ok(())
}

/// Checks tangents `v` `[K, ..., d]` against the input `x` `[..., d]`: one more axis, the
/// same event size.
pub(crate) fn check_tangents(layer: &'static str, x: &Tensor, v: &Tensor, d: usize) -> Result<()> {
    check_event(layer, "the tangent tensor", v, d)?;
    if v.rank() != x.rank() + 1 {
        return Err(shape_err(
            layer,
            format!(
                "tangents must be [K, ..., {d}] with one axis more than the input: got {} for \
                 input {}",
                ShapeFmt(v.dims()),
                ShapeFmt(x.dims())
            ),
        ));
    }
    Ok(())
}

/// A zero `ladj` of `x`'s batch shape (every axis but the last).
pub(crate) fn zero_ladj(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    Ok(Tensor::zeros(
        &dims[..dims.len() - 1],
        x.dtype(),
        x.device(),
    )?)
}

/// The constant `value` broadcast to `x`'s batch shape (every axis but the last); `value` is
/// a scalar tensor that stays in the autodiff graph.
pub(crate) fn batch_broadcast(value: &Tensor, x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    Ok(value.broadcast_as(&dims[..dims.len() - 1])?)
}

/// `x[..., idx]` (gathers along the last axis).
pub(crate) fn take_last(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    Ok(x.index_select(idx, D::Minus1)?)
}

/// The inverse of a permutation of `0..n`, or `None` if `perm` is not one.
pub(crate) fn invert_permutation(perm: &[usize]) -> Option<Vec<usize>> {
    let mut inv = vec![usize::MAX; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        if p >= perm.len() || inv[p] != usize::MAX {
            return None;
        }
        inv[p] = i;
    }
    Some(inv)
}

/// An index tensor (u32) on `x`'s device.
pub(crate) fn index_tensor(idx: &[usize], device: &candle_core::Device) -> Result<Tensor> {
    let v: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let n = v.len();
    Ok(Tensor::from_vec(v, n, device)?)
}
