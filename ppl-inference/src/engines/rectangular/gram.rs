//! The exact volume term: the Jacobian of an injective map from `d` forward-mode tangents,
//! and `log det(JᵀJ)` by a differentiable Cholesky with a growing jitter.

use super::logdet::spd_log_det_host;
use candle_core::Tensor;
use ppl_core::flows::Injective;
use ppl_core::{PplError, Result};

/// Checks that `z` is `[B, d]` for the map's latent size.
pub(crate) fn check_latents(op: &'static str, g: &dyn Injective, z: &Tensor) -> Result<usize> {
    match z.dims() {
        [b, d] if *d == g.latent_dim() => Ok(*b),
        dims => Err(PplError::invalid_argument(
            op,
            format!(
                "latents must be [B, {}] for a map R^{} → R^{}, got {dims:?}",
                g.latent_dim(),
                g.latent_dim(),
                g.data_dim()
            ),
        )),
    }
}

/// The `d` basis tangents `[d, B, d]` (`v[i, b] = e_i`).
pub(crate) fn basis_tangents(d: usize, b: usize, z: &Tensor) -> Result<Tensor> {
    let eye = Tensor::eye(d, z.dtype(), z.device())?;
    Ok(eye
        .reshape((d, 1, d))?
        .broadcast_as((d, b, d))?
        .contiguous()?)
}

/// `(g(z), J)`: the decoder's output `[B, D]` and its Jacobian `J_g(z)` `[B, D, d]` at latents
/// `z` `[B, d]`, from `d` forward-mode tangents (one pass; differentiable).
pub fn jacobian(g: &dyn Injective, z: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = check_latents("jacobian", g, z)?;
    let (x, jv) = g.decode_jvp(z, &basis_tangents(g.latent_dim(), b, z)?)?;
    // jv [d, B, D] → [B, D, d]
    Ok((x, jv.permute((1, 2, 0))?.contiguous()?))
}

/// `log det(JᵀJ)` `[B]` from the transposed Jacobian `Jᵀ` `[B, d, D]`
/// (the layout the tangents come in).
pub(crate) fn log_det_of_rows(jt: &Tensor) -> Result<Tensor> {
    let gram = jt.matmul(&jt.transpose(1, 2)?.contiguous()?)?; // [B, d, d]
    log_det_spd(&gram)
}

/// `log det A` `[B]` of a batch of symmetric positive-definite `A` `[B, d, d]` through
/// faer's Cholesky factorisation per matrix on the host (a candle custom op, differentiable:
/// `∂ log det A / ∂A = A⁻¹`). A matrix whose factorisation fails gets the smallest jitter
/// `ε I` that makes it succeed (`ε` from `1e-10` to `1e-2` times its own mean diagonal; the
/// others are untouched); a matrix that fails even so, or holds non-finite values, is a
/// typed error.
pub fn log_det_spd(a: &Tensor) -> Result<Tensor> {
    let ld = spd_log_det_host(a)?;
    let host: Vec<f64> = ld.to_dtype(candle_core::DType::F64)?.to_vec1()?;
    if let Some(k) = host.iter().position(|v| !v.is_finite()) {
        return Err(PplError::Linalg {
            op: "log_det_spd",
            reason: format!(
                "matrix {k} of {:?} is not positive definite even with a jitter of 1e-2 × its                  mean diagonal, or holds non-finite values: the map is not injective there (or                  produced NaN)",
                a.dims()
            ),
        });
    }
    Ok(ld)
}

/// `log det(J_g(z)ᵀ J_g(z))` `[B]` at latents `z` `[B, d]`, exactly: `J` from `d`
/// forward-mode tangents, then a differentiable Cholesky (with a growing jitter where it
/// fails, [`log_det_spd`]). Differentiable in the map's parameters and in `z` by ordinary
/// (first-order) backward.
pub fn log_det_gram(g: &dyn Injective, z: &Tensor) -> Result<Tensor> {
    Ok(exact_pass(g, z)?.1)
}

/// `(g(z), log det(JᵀJ))` from one tangent pass.
pub(crate) fn exact_pass(g: &dyn Injective, z: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = check_latents("log_det_gram", g, z)?;
    let (x, jv) = g.decode_jvp(z, &basis_tangents(g.latent_dim(), b, z)?)?;
    let jt = jv.transpose(0, 1)?.contiguous()?; // [B, d, D]
    Ok((x, log_det_of_rows(&jt)?))
}
