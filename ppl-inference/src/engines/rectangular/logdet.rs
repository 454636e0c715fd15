//! `log det A` for a batch of small symmetric positive-definite matrices as a candle custom
//! op: faer's Cholesky per matrix on the host forward (a per-matrix jitter where it fails),
//! `∂ log det A / ∂A = A⁻¹` backward.

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

/// Relative jitters tried, in order, when a matrix's Cholesky factorisation fails (times its
/// own mean diagonal entry).
const JITTERS: [f64; 6] = [0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2];

/// The Cholesky factorisation of matrix `k` of the batch, symmetrised (`(A + Aᵀ)/2`), with
/// the smallest jitter from [`JITTERS`] that makes it succeed; `None` if none does or the
/// matrix is not finite.
fn factor(v: &[f64], k: usize, d: usize) -> Option<faer::linalg::solvers::Llt<f64>> {
    let a = &v[k * d * d..(k + 1) * d * d];
    if a.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let m = Mat::from_fn(d, d, |i, j| 0.5 * (a[i * d + j] + a[j * d + i]));
    let scale = ((0..d).map(|i| m[(i, i)]).sum::<f64>() / d.max(1) as f64)
        .abs()
        .max(f64::MIN_POSITIVE);
    JITTERS.iter().find_map(|&j| {
        let mut mj = m.clone();
        for i in 0..d {
            mj[(i, i)] += j * scale;
        }
        mj.llt(Side::Lower).ok()
    })
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
            .map(|k| match factor(&v, k, d) {
                Some(llt) => {
                    let lf = llt.L();
                    2.0 * (0..d).map(|i| lf[(i, i)].ln()).sum::<f64>()
                }
                None => f64::NAN,
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
            let llt = factor(&v, k, d).ok_or_else(|| {
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

/// `log det A_k` `[B]` of a batch `[B, d, d]` (f32 or f64) by faer's Cholesky on the host,
/// each matrix with the smallest jitter `ε_k I` (`ε_k` from `1e-10` to `1e-2` times its mean
/// diagonal) that makes the factorisation succeed (NaN where none does or the matrix is not
/// finite), differentiable: `∂/∂A_k = (A_k + ε_k I)⁻¹`. `A` is read as `(A + Aᵀ)/2`. Tensors on another device make a round trip through the host.
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
