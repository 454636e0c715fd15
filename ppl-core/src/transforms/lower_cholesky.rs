use super::Transform;
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use candle_core::{Tensor, D};

/// Onto lower-triangular matrices with a positive diagonal: `y = tril(x, −1) +
/// diag(exp(diag x))`; `log |det| = Σ_i x_ii` (the strict lower part is the identity, the
/// upper part of `x` is ignored).
#[derive(Debug, Clone, Copy)]
pub struct LowerCholeskyTransform;

fn masks(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = x.dim(D::Minus1)?;
    if x.rank() < 2 || x.dim(D::Minus2)? != n {
        return Err(PplError::invalid_argument(
            "LowerCholeskyTransform",
            format!("needs square matrices, got shape {:?}", x.dims()),
        ));
    }
    let eye = Tensor::eye(n, x.dtype(), x.device())?;
    let lower = Tensor::tril2(n, x.dtype(), x.device())?.sub(&eye)?;
    Ok((lower, eye))
}

impl Transform for LowerCholeskyTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (lower, eye) = masks(x)?;
        let diag = x.broadcast_mul(&eye)?.exp()?.broadcast_mul(&eye)?;
        Ok((x.broadcast_mul(&lower)? + diag)?)
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let (lower, eye) = masks(y)?;
        let off = eye.affine(-1.0, 1.0)?;
        let diag = y
            .broadcast_mul(&eye)?
            .broadcast_add(&off)?
            .log()?
            .broadcast_mul(&eye)?;
        Ok((y.broadcast_mul(&lower)? + diag)?)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let (_, eye) = masks(x)?;
        Ok(x.broadcast_mul(&eye)?.sum(D::Minus1)?.sum(D::Minus1)?)
    }
    fn codomain(&self) -> Constraint {
        Constraint::LowerCholesky
    }
    fn event_dim(&self) -> usize {
        2
    }
}
