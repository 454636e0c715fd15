//! Small differentiable linear algebra built from candle ops (candle has none).
//!
//! Both routines loop over the matrix dimension `d` and issue O(d) tensor ops, each over
//! the whole batch, so gradients flow through them by ordinary autodiff and they run on
//! any device. They suit the small `d` of latent variables (up to a few hundred); for
//! large dense systems use a host solver (faer).

use crate::error::{shape_err, PplError, Result, ShapeFmt};
use crate::tensor::host_f64;
use crate::validation;
use candle_core::{Tensor, D};

fn square_dim(op: &'static str, m: &Tensor) -> Result<usize> {
    let dims = m.dims();
    if dims.len() < 2 || dims[dims.len() - 1] != dims[dims.len() - 2] {
        return Err(shape_err(
            op,
            format!(
                "expected a (batch of) square matrices [..., d, d], got shape {}",
                ShapeFmt(dims)
            ),
        ));
    }
    Ok(dims[dims.len() - 1])
}

/// The diagonal `[..., d]` of a batch of square matrices `[..., d, d]`.
pub fn diagonal(m: &Tensor) -> Result<Tensor> {
    let d = square_dim("diagonal", m)?;
    let eye = Tensor::eye(d, m.dtype(), m.device())?;
    Ok(m.broadcast_mul(&eye)?.sum(D::Minus1)?)
}

/// The batched matrix–vector product `M v`: `m` `[..., n, k]`, `v` `[..., k]` → `[..., n]`,
/// with batch dims broadcast (as a broadcast multiply and a sum, so any layout works,
/// including the zero-stride views that `expand` produces).
pub fn matvec(m: &Tensor, v: &Tensor) -> Result<Tensor> {
    if m.rank() < 2 || v.rank() < 1 || m.dim(D::Minus1)? != v.dim(D::Minus1)? {
        return Err(shape_err(
            "matvec",
            format!(
                "matrix shape {} and vector shape {} do not fit ([..., n, k] and [..., k])",
                ShapeFmt(m.dims()),
                ShapeFmt(v.dims())
            ),
        ));
    }
    Ok(m.broadcast_mul(&v.unsqueeze(D::Minus2)?)?.sum(D::Minus1)?)
}

/// Solves `L X = B` for `X`, with `L` lower-triangular `[..., d, d]` and `B` `[..., d, m]`
/// (forward substitution). Batch dimensions of `L` and `B` broadcast.
pub fn solve_lower_triangular(l: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = square_dim("solve_lower_triangular", l)?;
    if b.rank() < 2 || b.dim(D::Minus2)? != d {
        return Err(shape_err(
            "solve_lower_triangular",
            format!(
                "right-hand side shape {} does not match matrix shape {} (expected [..., {d}, m])",
                ShapeFmt(b.dims()),
                ShapeFmt(l.dims())
            ),
        ));
    }
    let mut rest = b.clone();
    let mut rows = Vec::with_capacity(d);
    for i in 0..d {
        let lii = l.narrow(D::Minus2, i, 1)?.narrow(D::Minus1, i, 1)?;
        let xi = rest.narrow(D::Minus2, 0, 1)?.broadcast_div(&lii)?;
        if i + 1 < d {
            let lcol = l
                .narrow(D::Minus2, i + 1, d - i - 1)?
                .narrow(D::Minus1, i, 1)?;
            rest = rest
                .narrow(D::Minus2, 1, d - i - 1)?
                .broadcast_sub(&lcol.broadcast_mul(&xi)?)?;
        }
        rows.push(xi);
    }
    // Rows may differ in broadcast batch shape only if the first row did; make them agree.
    let shape = rows[0].dims().to_vec();
    let rows = rows
        .iter()
        .map(|r| r.broadcast_as(shape.as_slice()))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&rows, D::Minus2)?)
}

/// The lower Cholesky factor `L` of a batch of symmetric positive-definite matrices
/// `A = L Lᵀ` `[..., d, d]` (column-by-column Cholesky–Banachiewicz). Only the lower
/// triangle of `A` is read. With validation on, a matrix that is not positive definite is
/// an error naming the failing pivot.
pub fn cholesky(a: &Tensor) -> Result<Tensor> {
    let d = square_dim("cholesky", a)?;
    let mut l: Option<Tensor> = None; // [..., d, j]: the columns computed so far
    for j in 0..d {
        let mut s = a.narrow(D::Minus2, j, d - j)?.narrow(D::Minus1, j, 1)?;
        if let Some(lp) = &l {
            let lp = lp.narrow(D::Minus2, j, d - j)?; // rows j.., cols ..j
            let lrow = lp.narrow(D::Minus2, 0, 1)?; // L[j, ..j]
            s = (s - lp.broadcast_mul(&lrow)?.sum_keepdim(D::Minus1)?)?;
        }
        let ljj = s.narrow(D::Minus2, 0, 1)?.sqrt()?;
        let col = if j + 1 < d {
            let below = s.narrow(D::Minus2, 1, d - j - 1)?.broadcast_div(&ljj)?;
            Tensor::cat(&[&ljj, &below], D::Minus2)?
        } else {
            ljj
        };
        let col = col.pad_with_zeros(D::Minus2, j, 0)?;
        l = Some(match l {
            None => col,
            Some(prev) => Tensor::cat(&[&prev, &col], D::Minus1)?,
        });
    }
    let l = l.ok_or_else(|| shape_err("cholesky", "empty matrix (d = 0)"))?;
    if validation::is_enabled() {
        let diag = host_f64(&diagonal(&l)?)?;
        if let Some(i) = diag.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(PplError::Linalg {
                op: "cholesky",
                reason: format!(
                    "matrix is not positive definite: pivot {} of matrix {} (shape {})",
                    i % d,
                    i / d,
                    ShapeFmt(a.dims())
                ),
            });
        }
    }
    Ok(l)
}
