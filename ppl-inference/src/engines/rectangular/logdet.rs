//! `log det A` for a batch of small symmetric positive-definite matrices as a candle custom
//! op: faer's Cholesky per matrix on the host forward, `∂ log det A / ∂A = A⁻¹` backward.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ppl_core::{PplError, Result};

/// The batch of matrices `[B, d, d]` of an op's input as host f64 values.
fn host(s: &CpuStorage, l: &Layout) -> candle_core::Result<(usize, usize, Vec<f64>)> {
    let (b, d, d2) = l.shape().dims3()?;
    if d != d2 {
        return Err(candle_core::Error::Msg(format!(
            "spd_log_det: matrices must be square, got {d}×{d2}"
        )));
    }
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("spd_log_det: non-contiguous input".into()))?;
    let v = match s {
        CpuStorage::F64(v) => v[start..end].to_vec(),
        CpuStorage::F32(v) => v[start..end].iter().map(|x| *x as f64).collect(),
        _ => {
            return Err(candle_core::Error::Msg(
                "spd_log_det: f32 or f64 only".into(),
            ))
        }
    };
    Ok((b, d, v))
}

/// Matrix `k` of the batch, symmetrised: `(A + Aᵀ)/2`.
fn matrix(v: &[f64], k: usize, d: usize) -> Mat<f64> {
    let a = &v[k * d * d..(k + 1) * d * d];
    Mat::from_fn(d, d, |i, j| 0.5 * (a[i * d + j] + a[j * d + i]))
}

fn storage(like: &CpuStorage, out: Vec<f64>) -> CpuStorage {
    match like {
        CpuStorage::F32(_) => CpuStorage::F32(out.into_iter().map(|v| v as f32).collect()),
        _ => CpuStorage::F64(out),
    }
}

/// `log det A_k` `[B]` (NaN where the factorisation fails).
struct SpdLogDet;

/// `A_k⁻¹` `[B, d, d]` (no gradient; used by [`SpdLogDet`]'s backward).
struct SpdInverse;

impl CustomOp1 for SpdLogDet {
    fn name(&self) -> &'static str {
        "spd_log_det"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, d, v) = host(s, l)?;
        let out = (0..b)
            .map(|k| match matrix(&v, k, d).llt(Side::Lower) {
                Ok(llt) => {
                    let lf = llt.L();
                    2.0 * (0..d).map(|i| lf[(i, i)].ln()).sum::<f64>()
                }
                Err(_) => f64::NAN,
            })
            .collect();
        Ok((storage(s, out), Shape::from(b)))
    }

    /// `∂L/∂A_k = g_k A_k⁻¹` (symmetric, the gradient of the symmetrised forward).
    fn bwd(&self, a: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let inv = a.detach().apply_op1_no_bwd(&SpdInverse)?;
        let b = g.dim(0)?;
        Ok(Some(inv.broadcast_mul(&g.reshape((b, 1, 1))?)?))
    }
}

impl CustomOp1 for SpdInverse {
    fn name(&self) -> &'static str {
        "spd_inverse"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, d, v) = host(s, l)?;
        let mut out = Vec::with_capacity(b * d * d);
        for k in 0..b {
            let llt = matrix(&v, k, d).llt(Side::Lower).map_err(|_| {
                candle_core::Error::Msg(format!("spd_inverse: matrix {k} is not positive definite"))
            })?;
            let inv = llt.solve(Mat::<f64>::identity(d, d));
            for i in 0..d {
                for j in 0..d {
                    out.push(inv[(i, j)]);
                }
            }
        }
        Ok((storage(s, out), Shape::from((b, d, d))))
    }
}

/// `log det A_k` `[B]` of a batch `[B, d, d]` (f32 or f64) by faer's Cholesky on the host
/// (NaN where a matrix is not positive definite), differentiable: `∂/∂A_k = A_k⁻¹`. `A` is
/// read as `(A + Aᵀ)/2`. Tensors on another device make a round trip through the host.
pub(crate) fn spd_log_det_host(a: &Tensor) -> Result<Tensor> {
    if a.rank() != 3 || !matches!(a.dtype(), DType::F32 | DType::F64) {
        return Err(PplError::invalid_argument(
            "log_det_spd",
            format!(
                "need f32/f64 matrices [B, d, d], got {:?} {:?}",
                a.dims(),
                a.dtype()
            ),
        ));
    }
    let device = a.device().clone();
    let ah = if device.is_cpu() {
        a.contiguous()?
    } else {
        a.to_device(&Device::Cpu)?
    };
    Ok(ah.apply_op1(SpdLogDet)?.to_device(&device)?)
}
