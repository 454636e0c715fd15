//! A differentiable dense SPD solve `X = A⁻¹ B` as a candle custom op (faer Cholesky on
//! the host), for learning kernel features through the ridge regression.

use super::ridge::{cholesky, HostMat};
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use faer::linalg::solvers::Solve;
use faer::Mat;
use ppl_core::{PplError, Result};

struct SpdSolve;

fn host(s: &CpuStorage, l: &Layout) -> candle_core::Result<(usize, usize, Vec<f64>)> {
    let (r, c) = l.shape().dims2()?;
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("spd_solve: non-contiguous input".into()))?;
    let v: Vec<f64> = match s {
        CpuStorage::F64(v) => v[start..end].to_vec(),
        CpuStorage::F32(v) => v[start..end].iter().map(|x| *x as f64).collect(),
        _ => return Err(candle_core::Error::Msg("spd_solve: f32 or f64 only".into())),
    };
    Ok((r, c, v))
}

impl CustomOp2 for SpdSolve {
    fn name(&self) -> &'static str {
        "spd_solve"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, n2, a) = host(s1, l1)?;
        let (nb, k, b) = host(s2, l2)?;
        if n != n2 || nb != n {
            return Err(candle_core::Error::Msg(format!(
                "spd_solve: A is {n}×{n2} and B is {nb}×{k}"
            )));
        }
        let am: HostMat = Mat::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i]));
        let bm: HostMat = Mat::from_fn(n, k, |i, j| b[i * k + j]);
        let llt = cholesky(&am).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let x = llt.solve(&bm);
        let mut out = Vec::with_capacity(n * k);
        for i in 0..n {
            for j in 0..k {
                out.push(x[(i, j)]);
            }
        }
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(out.into_iter().map(|v| v as f32).collect()),
            _ => CpuStorage::F64(out),
        };
        Ok((storage, Shape::from((n, k))))
    }

    /// `X = A⁻¹B` with `A` read as `(A + Aᵀ)/2`: `∂L/∂B = A⁻¹ G` and
    /// `∂L/∂A = −sym((A⁻¹ G) Xᵀ)`, the gradient of the symmetrised forward.
    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        x: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gb = a.detach().apply_op2_no_bwd(&g.contiguous()?, &SpdSolve)?;
        let m = gb.matmul(&x.detach().t()?)?;
        let ga = ((&m + m.t()?)? * -0.5)?;
        Ok((Some(ga), Some(gb)))
    }
}

/// `X = A⁻¹ B` for a symmetric positive-definite `A` `[n, n]` and `B` `[n, k]` (f32 or
/// f64), differentiable in both (`∂L/∂B = A⁻¹G`, `∂L/∂A = −sym(A⁻¹G Xᵀ)`; `A` is read as
/// `(A + Aᵀ)/2`). Solved on the host
/// by faer's Cholesky (with a growing jitter when the factorisation fails); tensors on
/// another device make a round trip through the host.
pub fn spd_solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, n2) = a.dims2()?;
    let (nb, _) = b.dims2()?;
    if n != n2 || nb != n || a.dtype() != b.dtype() || !matches!(a.dtype(), DType::F32 | DType::F64)
    {
        return Err(PplError::invalid_argument(
            "spd_solve",
            format!(
                "need A [n, n] and B [n, k] of one float dtype, got A {:?} {:?} and B {:?} {:?}",
                a.dims(),
                a.dtype(),
                b.dims(),
                b.dtype()
            ),
        ));
    }
    let device = a.device().clone();
    let (ah, bh) = if device.is_cpu() {
        (a.contiguous()?, b.contiguous()?)
    } else {
        (a.to_device(&Device::Cpu)?, b.to_device(&Device::Cpu)?)
    };
    let x = ah.apply_op2(&bh, SpdSolve)?;
    Ok(x.to_device(&device)?)
}
