use super::Transform;
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::special::{expm1, log1p, log_sigmoid, softplus};
use candle_core::{Tensor, D};

/// Onto lower-triangular matrices with a positive diagonal, as a positive diagonal scale
/// times a unit lower-triangular matrix: `y = diag(s) · (I + tril(x, −1))` with
/// `s_i = softplus(x_ii)`, so `y_ii = s_i` and `y_ij = s_i x_ij` for `j < i` (the upper
/// part of `x` is ignored). NumPyro's `ScaledUnitLowerCholeskyTransform` and Pyro's
/// `scale · unit_lower_cholesky` parameterise a Cholesky factor the same way.
///
/// Why it exists: the strict lower part is stored *relative to its row's scale*, so an
/// optimiser step of a given size changes every entry of row `i` by an amount proportional
/// to `s_i`. With [`LowerCholeskyTransform`](super::LowerCholeskyTransform) the off-diagonal
/// entries are absolute: Adam moves each of the `n(n−1)/2` of them by about the learning
/// rate per step whatever the scale, which for a small scale (say 0.1) swamps the diagonal
/// with noise and stalls training (see `AutoMultivariateNormal`).
///
/// `log |det J| = Σ_i [log σ(x_ii) + i · log s_i]` over the `n(n+1)/2` free coordinates
/// (row `i`, counted from 0, has `i` strict-lower entries, each scaled by `s_i`).
#[derive(Debug, Clone, Copy)]
pub struct ScaledUnitLowerCholeskyTransform;

/// `(strict lower mask, identity)` for square matrices `x`.
fn masks(x: &Tensor) -> Result<(Tensor, Tensor)> {
    if x.rank() < 2 || x.dim(D::Minus2)? != x.dim(D::Minus1)? {
        return Err(PplError::invalid_argument(
            "ScaledUnitLowerCholeskyTransform",
            format!("needs square matrices, got shape {:?}", x.dims()),
        ));
    }
    let n = x.dim(D::Minus1)?;
    let eye = Tensor::eye(n, x.dtype(), x.device())?;
    let lower = Tensor::tril2(n, x.dtype(), x.device())?.sub(&eye)?;
    Ok((lower, eye))
}

/// The diagonal `[..., n]` of `x` `[..., n, n]`.
fn diag(x: &Tensor, eye: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(eye)?.sum(D::Minus1)?)
}

/// `softplus⁻¹(y) = log(expm1(y))` for `y > 0`, as `y + log1p(−exp(−y))` above 1 (no
/// overflow of `expm1`).
fn softplus_inv(y: &Tensor) -> Result<Tensor> {
    let one = y.ones_like()?;
    let small = y.minimum(&one)?;
    let big = y.maximum(&one)?;
    let a = expm1(&small)?.log()?;
    let b = (&big + log1p(&big.neg()?.exp()?.neg()?)?)?;
    Ok(y.lt(&one)?.where_cond(&a, &b)?)
}

impl Transform for ScaledUnitLowerCholeskyTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (lower, eye) = masks(x)?;
        let s = softplus(&diag(x, &eye)?)?;
        let unit = x.broadcast_mul(&lower)?.broadcast_add(&eye)?;
        Ok(unit.broadcast_mul(&s.unsqueeze(D::Minus1)?)?)
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let (lower, eye) = masks(y)?;
        let s = diag(y, &eye)?;
        let off = y
            .broadcast_div(&s.unsqueeze(D::Minus1)?)?
            .broadcast_mul(&lower)?;
        let d = softplus_inv(&s)?
            .unsqueeze(D::Minus1)?
            .broadcast_mul(&eye)?;
        Ok((off + d)?)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let (_, eye) = masks(x)?;
        let n = x.dim(D::Minus1)?;
        let xd = diag(x, &eye)?;
        let rows = Tensor::arange(0u32, n as u32, x.device())?.to_dtype(x.dtype())?;
        let scaled = softplus(&xd)?.log()?.broadcast_mul(&rows)?;
        Ok((log_sigmoid(&xd)? + scaled)?.sum(D::Minus1)?)
    }
    fn codomain(&self) -> Constraint {
        Constraint::ScaledUnitLowerCholesky
    }
    fn event_dim(&self) -> usize {
        2
    }
}
