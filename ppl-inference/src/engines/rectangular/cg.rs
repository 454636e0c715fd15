//! Batched conjugate gradients from matrix-vector products only.

use candle_core::{DType, Tensor, D};
use ppl_core::{PplError, Result};

/// How a [`conjugate_gradients`] solve went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgInfo {
    /// Iterations run (matrix-vector products made).
    pub iterations: usize,
    /// The largest relative residual `‖b − A x‖ / ‖b‖` over the systems at the end
    /// (as tracked by the recurrence).
    pub max_relative_residual: f64,
    /// Whether every system reached the tolerance.
    pub converged: bool,
}

/// `t` with exact zeros replaced by ones (a safe denominator: the numerators are zero there).
fn safe(t: &Tensor) -> Result<Tensor> {
    Ok((t + t.eq(0.0)?.to_dtype(t.dtype())?)?)
}

fn max_scalar(t: &Tensor) -> Result<f64> {
    Ok(t.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Solves `A_s x_s = b_s` for a batch of symmetric positive-definite systems by conjugate
/// gradients, using only the products `apply(p) = A p` (`p` and the result `[..., n]`, one
/// system per leading index; `A` is never formed). Starts at `x = 0` and stops when every
/// system's relative residual is at most `tol` (`tol = 0`: run all `max_iter` iterations)
/// or after `max_iter` iterations. In exact arithmetic CG solves an `n × n` system in at
/// most `n` iterations. A non-positive curvature `pᵀAp` in a system not yet solved (an
/// indefinite `A`) is a typed error. Everything is detached: the solution carries no
/// gradient.
pub fn conjugate_gradients<F>(
    mut apply: F,
    b: &Tensor,
    tol: f64,
    max_iter: usize,
) -> Result<(Tensor, CgInfo)>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    if !(tol >= 0.0 && tol.is_finite()) || b.rank() == 0 {
        return Err(PplError::invalid_argument(
            "conjugate_gradients",
            format!(
                "need a finite tolerance ≥ 0 and right-hand sides [..., n]; got tol {tol} and \
                 shape {:?}",
                b.dims()
            ),
        ));
    }
    let b = b.detach();
    let mut x = b.zeros_like()?;
    let mut r = b.clone();
    let mut p = r.clone();
    let mut rr = r.sqr()?.sum_keepdim(D::Minus1)?;
    let b_norm = safe(&rr.sqrt()?)?;
    let mut rel = max_scalar(&(rr.sqrt()? / &b_norm)?)?;
    let mut iterations = 0;
    while iterations < max_iter && rel > tol {
        let ap = apply(&p)?.detach();
        if ap.dims() != p.dims() {
            return Err(PplError::invalid_argument(
                "conjugate_gradients",
                format!(
                    "the product A p has shape {:?}, expected {:?}",
                    ap.dims(),
                    p.dims()
                ),
            ));
        }
        let pap = (&p * &ap)?.sum_keepdim(D::Minus1)?;
        // Curvature pᵀAp must be positive wherever the system is not yet solved.
        let active = rr.gt(0.0)?.to_dtype(pap.dtype())?;
        let worst = (&pap * &active + (1.0 - &active)?)?.min_all()?;
        let worst = worst.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if worst.is_nan() || worst <= 0.0 {
            return Err(PplError::Linalg {
                op: "conjugate_gradients",
                reason: format!(
                    "pᵀAp = {worst:e} ≤ 0 at iteration {iterations} of systems {:?}: A is not \
                     positive definite (or lost definiteness to rounding)",
                    b.dims()
                ),
            });
        }
        let alpha = (&rr / safe(&pap)?)?;
        x = (x + p.broadcast_mul(&alpha)?)?;
        r = (r - ap.broadcast_mul(&alpha)?)?;
        let rr_new = r.sqr()?.sum_keepdim(D::Minus1)?;
        let beta = (&rr_new / safe(&rr)?)?;
        p = (&r + p.broadcast_mul(&beta)?)?;
        rr = rr_new;
        iterations += 1;
        rel = max_scalar(&(rr.sqrt()? / &b_norm)?)?;
        if !rel.is_finite() {
            return Err(PplError::Linalg {
                op: "conjugate_gradients",
                reason: format!(
                    "non-finite residual after {iterations} iterations (is A positive definite?)"
                ),
            });
        }
    }
    Ok((
        x,
        CgInfo {
            iterations,
            max_relative_residual: rel,
            converged: rel <= tol,
        },
    ))
}
