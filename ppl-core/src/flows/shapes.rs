//! Shape plumbing shared by the flow layers (crate-private): event and tangent checks,
//! broadcasting an input against its context and tangents against the (broadcast) input,
//! with errors that name the layer and the shapes; small index helpers.

use crate::error::{shape_err, PplError, Result, ShapeFmt};
use crate::tensor::broadcast_shapes;
use candle_core::{Tensor, D};

/// Checks that `x` is `[..., dim]` (rank ≥ 1).
pub(crate) fn check_input(layer: &'static str, x: &Tensor, dim: usize) -> Result<()> {
    check_event(layer, "the input", x, dim)
}

/// `x` `[..., D]` and the context `[..., C]` broadcast to their common batch shape (the
/// context converted to `x`'s dtype). `context_dim == 0` means the layer is unconditional:
/// a context is then an error (as is a missing one for a conditional layer).
pub(crate) fn with_context(
    layer: &'static str,
    x: &Tensor,
    context: Option<&Tensor>,
    context_dim: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    match (context, context_dim) {
        (None, 0) => Ok((x.clone(), None)),
        (Some(c), cd) if cd > 0 => {
            if c.rank() == 0 || c.dim(D::Minus1)? != cd {
                return Err(PplError::invalid_argument(
                    layer,
                    format!(
                        "context of shape {:?} has {} features; it must be [..., {cd}]",
                        c.dims(),
                        c.dims().last().copied().unwrap_or(0)
                    ),
                ));
            }
            let d = x.dim(D::Minus1)?;
            let batch = broadcast_shapes(&x.dims()[..x.rank() - 1], &c.dims()[..c.rank() - 1])
                .ok_or_else(|| {
                    PplError::invalid_argument(
                        layer,
                        format!(
                            "context of shape {:?} does not broadcast against input of shape {:?}",
                            c.dims(),
                            x.dims()
                        ),
                    )
                })?;
            let mut xs = batch.clone();
            xs.push(d);
            let mut cs = batch;
            cs.push(cd);
            let xb = x.broadcast_as(xs)?;
            let cb = c.to_dtype(x.dtype())?.broadcast_as(cs)?;
            Ok((xb, Some(cb)))
        }
        (None, cd) => Err(PplError::invalid_argument(
            layer,
            format!("this conditional layer needs a context of {cd} features"),
        )),
        (Some(c), _) => Err(PplError::invalid_argument(
            layer,
            format!(
                "a context of shape {:?} was given to an unconditional layer (built with \
                 context_dim 0)",
                c.dims()
            ),
        )),
    }
}

/// Tangents `v` `[K, ..., D]` broadcast to `[K, x.dims()...]` (`x` already broadcast
/// against the context), converted to `x`'s dtype.
pub(crate) fn tangents(layer: &'static str, v: &Tensor, x: &Tensor) -> Result<Tensor> {
    let bad = || {
        PplError::invalid_argument(
            layer,
            format!(
                "tangents of shape {:?} must be [K, ...] with [...] broadcasting to the input \
                 shape {:?}",
                v.dims(),
                x.dims()
            ),
        )
    };
    if v.rank() < 2 || v.rank() - 1 > x.rank() {
        return Err(bad());
    }
    let k = v.dim(0)?;
    let mut target = vec![k];
    target.extend_from_slice(x.dims());
    let tail = &v.dims()[1..];
    match broadcast_shapes(tail, x.dims()) {
        Some(s) if s == x.dims() => {}
        _ => return Err(bad()),
    }
    // Insert unit axes after K so that right-aligned broadcasting keeps K in front.
    let mut shape = vec![k];
    shape.extend(std::iter::repeat_n(1, x.rank() - tail.len()));
    shape.extend_from_slice(tail);
    Ok(v.to_dtype(x.dtype())?
        .reshape(shape)?
        .broadcast_as(target)?
        .contiguous()?)
}

/// An unbatched input `[D]` (after broadcasting against the context) lifted to `[1, D]`
/// (context `[1, C]`, tangents `[K, 1, D]`) so that matmuls see a batch axis; `true` when it
/// was lifted, for [`lower`].
pub(crate) fn lift(
    x: Tensor,
    c: Option<Tensor>,
    v: Option<Tensor>,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>, bool)> {
    if x.rank() != 1 {
        return Ok((x, c, v, false));
    }
    let c = c.map(|c| c.unsqueeze(0)).transpose()?;
    let v = v.map(|v| v.unsqueeze(1)).transpose()?;
    Ok((x.unsqueeze(0)?, c, v, true))
}

/// Undoes [`lift`] on a layer's `(output [1, D], ladj [1], tangents [K, 1, D])`.
pub(crate) fn lower(
    out: Tensor,
    ladj: Tensor,
    dout: Option<Tensor>,
    lifted: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    if !lifted {
        return Ok((out, ladj, dout));
    }
    let dout = dout.map(|d| d.squeeze(1)).transpose()?;
    Ok((out.squeeze(0)?, ladj.squeeze(0)?, dout))
}

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

/// The checks at the top of a one-pass layer: the input is `[..., dim]` and the tangents, if
/// any, `[K, ..., dim]` (errors name the direction's input, `z` or `x`).
pub(crate) fn check_pass(
    layer: &'static str,
    input: &Tensor,
    v: Option<&Tensor>,
    dim: usize,
    to_data: bool,
) -> Result<()> {
    let what = if to_data {
        "the input z"
    } else {
        "the input x"
    };
    check_event(layer, what, input, dim)?;
    if let Some(v) = v {
        check_tangents(layer, input, v, dim)?;
    }
    Ok(())
}
