//! Tensor plumbing shared by the distributions: broadcasting, host transfer, reductions.

use crate::error::{shape_err, Result, ShapeFmt};
use candle_core::{DType, Tensor};

/// The broadcast of two shapes (numpy rules), or `None` when they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Broadcasts named parameters to their common shape. Errors name the family and every
/// parameter's shape when they do not broadcast, or when dtypes or devices differ.
pub fn broadcast_params<const N: usize>(
    family: &'static str,
    params: [(&'static str, &Tensor); N],
) -> Result<([Tensor; N], Vec<usize>)> {
    let mut shape: Vec<usize> = Vec::new();
    let dtype = params[0].1.dtype();
    let device = params[0].1.device().clone();
    for (name, t) in params.iter() {
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F64 | DType::F16 | DType::BF16
        ) {
            return Err(shape_err(
                family,
                format!(
                    "parameter `{name}` must be a floating-point tensor, got {:?}",
                    t.dtype()
                ),
            ));
        }
        if t.dtype() != dtype {
            return Err(shape_err(
                family,
                format!(
                    "parameter `{name}` has dtype {:?} but `{}` has {:?}",
                    t.dtype(),
                    params[0].0,
                    dtype
                ),
            ));
        }
        if !t.device().same_device(&device) {
            return Err(shape_err(
                family,
                format!(
                    "parameter `{name}` is on a different device from `{}`",
                    params[0].0
                ),
            ));
        }
        shape = broadcast_shapes(&shape, t.dims()).ok_or_else(|| {
            let all: Vec<String> = params
                .iter()
                .map(|(n, t)| format!("`{n}` {}", ShapeFmt(t.dims())))
                .collect();
            shape_err(
                family,
                format!(
                    "parameter shapes do not broadcast together: {}",
                    all.join(", ")
                ),
            )
        })?;
    }
    let mut out = Vec::with_capacity(N);
    for (_, t) in params.iter() {
        out.push(t.broadcast_as(shape.as_slice())?);
    }
    let out: [Tensor; N] = out
        .try_into()
        .map_err(|_| shape_err(family, "internal: parameter count"))?;
    Ok((out, shape))
}

/// Concatenation of shapes.
pub fn concat_shapes(parts: &[&[usize]]) -> Vec<usize> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// All elements of `t` as `f64` on the host (row-major).
pub fn host_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Sum over the rightmost `n` dimensions.
pub fn sum_rightmost(t: &Tensor, n: usize) -> Result<Tensor> {
    if n == 0 {
        return Ok(t.clone());
    }
    let r = t.rank();
    let dims: Vec<usize> = (r - n..r).collect();
    Ok(t.sum(dims)?)
}

/// Checks that a value of shape `value` can be scored by a distribution with the given
/// batch and event shapes: its rightmost dims must equal the event shape and the rest must
/// broadcast with the batch shape. Returns the shape of the result of `log_prob`.
pub fn log_prob_shape(
    family: &'static str,
    value: &[usize],
    batch: &[usize],
    event: &[usize],
) -> Result<Vec<usize>> {
    let err = || {
        shape_err(
            family,
            format!(
                "value shape {} does not match batch shape {} + event shape {}",
                ShapeFmt(value),
                ShapeFmt(batch),
                ShapeFmt(event)
            ),
        )
    };
    if value.len() < event.len() || value[value.len() - event.len()..] != *event {
        return Err(err());
    }
    let value_batch = &value[..value.len() - event.len()];
    broadcast_shapes(value_batch, batch).ok_or_else(err)
}

/// Multi-index of a flat row-major position, for error messages.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// `where(cond, on_true, on_false)` with all three broadcast to a common shape.
pub fn where_broadcast(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
    let s1 = broadcast_shapes(cond.dims(), on_true.dims())
        .and_then(|s| broadcast_shapes(&s, on_false.dims()))
        .ok_or_else(|| {
            shape_err(
                "where",
                format!(
                    "shapes {} {} {} do not broadcast",
                    ShapeFmt(cond.dims()),
                    ShapeFmt(on_true.dims()),
                    ShapeFmt(on_false.dims())
                ),
            )
        })?;
    Ok(cond.broadcast_as(s1.as_slice())?.where_cond(
        &on_true.broadcast_as(s1.as_slice())?,
        &on_false.broadcast_as(s1.as_slice())?,
    )?)
}
