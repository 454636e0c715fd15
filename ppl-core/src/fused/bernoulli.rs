//! The Bernoulli log-density from logits as one fused CPU op.

use super::math;
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

/// `log p(x | l) = x·l − softplus(l)` element-wise for logits `l` and values `x` of one
/// shape, as one pass forward and one pass backward (`∂/∂l = x − σ(l)`; `∂/∂x = l` only
/// when `x` is tracked), instead of about ten candle ops and their backward nodes.
///
/// `None` when the fused kernel does not apply (see [`super`]: CPU, f32/f64, enabled) or
/// the tensors differ in shape or are not contiguous: the caller then uses candle ops.
pub(crate) fn bernoulli_logits_log_prob(logits: &Tensor, x: &Tensor) -> Result<Option<Tensor>> {
    if !(super::applies(&[logits, x])
        && logits.dims() == x.dims()
        && logits.is_contiguous()
        && x.is_contiguous())
    {
        return Ok(None);
    }
    Ok(Some(logits.apply_op2(x, BernoulliLogProb)?))
}

/// The op: arguments (logits, values), result the element-wise log-density.
struct BernoulliLogProb;

/// An operand's elements (see [`super::contiguous_slice`]).
fn slice<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    super::contiguous_slice(s, l, "bernoulli-log-prob", "an input")
}

impl CustomOp2 for BernoulliLogProb {
    fn name(&self) -> &'static str {
        "bernoulli-log-prob"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = l1.shape().clone();
        Ok(match (s1, s2) {
            (CpuStorage::F32(l), CpuStorage::F32(x)) => {
                let (l, x) = (slice(l, l1)?, slice(x, l2)?);
                (CpuStorage::F32(math::bernoulli_log_prob_f32(l, x)), shape)
            }
            (CpuStorage::F64(l), CpuStorage::F64(x)) => {
                let (l, x) = (slice(l, l1)?, slice(x, l2)?);
                (CpuStorage::F64(math::bernoulli_log_prob_f64(l, x)), shape)
            }
            _ => candle_core::bail!("bernoulli-log-prob: needs two f32 or two f64 tensors"),
        })
    }

    fn bwd(
        &self,
        logits: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dl = if logits.track_op() {
            let (l, x) = (logits.detach(), x.detach());
            Some(l.apply_op3_no_bwd(&x, &grad, &BernoulliDLogits)?)
        } else {
            None
        };
        let dx = if x.track_op() {
            Some(logits.detach().mul(&grad)?)
        } else {
            None
        };
        Ok((dl, dx))
    }
}

/// The logits' gradient `g·(x − σ(l))` from (logits, values, upstream gradient `g`);
/// forward only.
struct BernoulliDLogits;

impl CustomOp3 for BernoulliDLogits {
    fn name(&self) -> &'static str {
        "bernoulli-log-prob-grad"
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
        Ok(match (s1, s2, s3) {
            (CpuStorage::F32(l), CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let (l, x, g) = (slice(l, l1)?, slice(x, l2)?, slice(g, l3)?);
                (CpuStorage::F32(math::bernoulli_dlogits_f32(l, x, g)), shape)
            }
            (CpuStorage::F64(l), CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let (l, x, g) = (slice(l, l1)?, slice(x, l2)?, slice(g, l3)?);
                (CpuStorage::F64(math::bernoulli_dlogits_f64(l, x, g)), shape)
            }
            _ => candle_core::bail!("bernoulli-log-prob-grad: dtype mismatch"),
        })
    }
}
