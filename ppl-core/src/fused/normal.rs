//! The Normal log-density as one fused CPU op.

use crate::error::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

/// `½ ln 2π`.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// `log N(x | μ, σ) = −½((x − μ)/σ)² − ln σ − ½ ln 2π` element-wise for `x`, `μ`, `σ` of one
/// shape, as one node forward and one backward (`∂/∂x = −z/σ`, `∂/∂μ = z/σ`,
/// `∂/∂σ = (z² − 1)/σ` with `z = (x − μ)/σ`, each only for a tracked argument) instead of
/// six candle ops and their backward nodes: what dominates models with many small sites.
///
/// `None` when the fused kernel does not apply (see [`super`]) or the shapes differ or an
/// operand is not contiguous: the caller then uses candle ops.
pub(crate) fn normal_log_prob(x: &Tensor, loc: &Tensor, scale: &Tensor) -> Result<Option<Tensor>> {
    if !(super::applies(&[x, loc, scale])
        && x.dims() == loc.dims()
        && x.dims() == scale.dims()
        && x.is_contiguous()
        && loc.is_contiguous()
        && scale.is_contiguous())
    {
        return Ok(None);
    }
    Ok(Some(x.apply_op3(loc, scale, NormalLogProb)?))
}

struct NormalLogProb;

/// An operand's elements (see [`super::contiguous_slice`]).
fn slice<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    super::contiguous_slice(s, l, "normal-log-prob", "an input")
}

/// Host slices of three same-dtype CPU tensors, for the backward pass.
macro_rules! with_host {
    ($x:expr, $m:expr, $s:expr, |$xs:ident, $ms:ident, $ss:ident, $variant:ident| $body:expr) => {{
        let (xg, xl) = $x.storage_and_layout();
        let (mg, ml) = $m.storage_and_layout();
        let (sg, sl) = $s.storage_and_layout();
        match (&*xg, &*mg, &*sg) {
            (
                candle_core::Storage::Cpu(CpuStorage::$variant(xs)),
                candle_core::Storage::Cpu(CpuStorage::$variant(ms)),
                candle_core::Storage::Cpu(CpuStorage::$variant(ss)),
            ) => {
                let ($xs, $ms, $ss) = (slice(xs, xl)?, slice(ms, ml)?, slice(ss, sl)?);
                $body
            }
            _ => candle_core::bail!("normal-log-prob: operands of mixed dtypes or devices"),
        }
    }};
}

impl CustomOp3 for NormalLogProb {
    fn name(&self) -> &'static str {
        "normal-log-prob"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = l1.shape().clone();
        macro_rules! fwd {
            ($t:ty, $variant:ident, $x:expr, $m:expr, $s:expr) => {{
                let (x, m, s) = (slice($x, l1)?, slice($m, l2)?, slice($s, l3)?);
                let c = HALF_LN_2PI as $t;
                let out: Vec<$t> = x
                    .iter()
                    .zip(m)
                    .zip(s)
                    .map(|((&x, &m), &s)| {
                        let z = (x - m) / s;
                        -0.5 * z * z - s.ln() - c
                    })
                    .collect();
                CpuStorage::$variant(out)
            }};
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(m), CpuStorage::F32(s)) => fwd!(f32, F32, x, m, s),
            (CpuStorage::F64(x), CpuStorage::F64(m), CpuStorage::F64(s)) => fwd!(f64, F64, x, m, s),
            _ => candle_core::bail!("normal-log-prob: needs three f32 or three f64 tensors"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        loc: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (want_x, want_m, want_s) = (x.track_op(), loc.track_op(), scale.track_op());
        let dims = x.shape().clone();
        let cpu = candle_core::Device::Cpu;
        macro_rules! bwd {
            ($t:ty, $variant:ident) => {{
                let (gg, gl) = grad.storage_and_layout();
                let candle_core::Storage::Cpu(CpuStorage::$variant(gs)) = &*gg else {
                    candle_core::bail!("normal-log-prob: gradient of another dtype");
                };
                let gs = slice(gs, gl)?;
                with_host!(x, loc, scale, |xs, ms, ss, $variant| {
                    let n = xs.len();
                    // a = g·z/σ is ∂/∂μ and −∂/∂x; ∂/∂σ = g·(z² − 1)/σ.
                    let (mut dm, mut ds) = (Vec::with_capacity(n), Vec::with_capacity(n));
                    for i in 0..n {
                        let z = (xs[i] - ms[i]) / ss[i];
                        dm.push(gs[i] * z / ss[i]);
                        if want_s {
                            ds.push(gs[i] * (z * z - 1.0) / ss[i]);
                        }
                    }
                    let dx = if want_x {
                        let v: Vec<$t> = dm.iter().map(|a| -a).collect();
                        Some(Tensor::from_vec(v, dims.clone(), &cpu)?)
                    } else {
                        None
                    };
                    let ds = if want_s {
                        Some(Tensor::from_vec(ds, dims.clone(), &cpu)?)
                    } else {
                        None
                    };
                    let dm = if want_m {
                        Some(Tensor::from_vec(dm, dims.clone(), &cpu)?)
                    } else {
                        None
                    };
                    (dx, dm, ds)
                })
            }};
        }
        Ok(match x.dtype() {
            candle_core::DType::F32 => bwd!(f32, F32),
            candle_core::DType::F64 => bwd!(f64, F64),
            d => candle_core::bail!("normal-log-prob: unsupported dtype {d:?}"),
        })
    }
}
