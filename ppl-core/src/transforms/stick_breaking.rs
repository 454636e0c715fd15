use super::Transform;
use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::special::log_sigmoid;
use candle_core::{DType, Tensor, D};

/// Stick-breaking map from `R^{K−1}` onto the K-simplex (as in Pyro/Stan).
///
/// With `x'_i = x_i − ln(K − 1 − i)`, `z_i = σ(x'_i)` and `c_i = Σ_{j≤i} ln(1 − z_j)`:
/// `y_i = z_i·exp(c_{i−1})` for `i < K − 1`, `y_{K−1} = exp(c_{K−2})`. The Jacobian of
/// `x ↦ y_{0..K−2}` is triangular, so `log |det| = Σ_i [ln σ(x'_i) + ln σ(−x'_i) + c_{i−1}]`.
/// The offset makes `x = 0` map to the uniform point.
#[derive(Debug, Clone, Copy)]
pub struct StickBreakingTransform;

fn offsets(k1: usize, like: &Tensor) -> Result<Tensor> {
    let v: Vec<f64> = (0..k1).map(|i| ((k1 - i) as f64).ln()).collect();
    Ok(Tensor::from_vec(v, k1, like.device())?.to_dtype(like.dtype())?)
}

fn shifted_cumsum(c: &Tensor) -> Result<Tensor> {
    // c_{i-1} with c_{-1} = 0
    let k1 = c.dim(D::Minus1)?;
    let zero = c.narrow(D::Minus1, 0, 1)?.zeros_like()?;
    Ok(Tensor::cat(
        &[&zero, &c.narrow(D::Minus1, 0, k1 - 1)?],
        D::Minus1,
    )?)
}

impl Transform for StickBreakingTransform {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k1 = x.dim(D::Minus1)?;
        let xs = x.broadcast_sub(&offsets(k1, x)?)?;
        let log_z = log_sigmoid(&xs)?;
        let c = log_sigmoid(&xs.neg()?)?.cumsum(D::Minus1)?;
        let log_head = (log_z + shifted_cumsum(&c)?)?;
        let last = c.narrow(D::Minus1, k1 - 1, 1)?;
        Ok(Tensor::cat(&[&log_head, &last], D::Minus1)?.exp()?)
    }
    fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let k = y.dim(D::Minus1)?;
        if k < 2 {
            return Err(PplError::invalid_argument(
                "StickBreakingTransform",
                format!("needs at least 2 categories, got shape {:?}", y.dims()),
            ));
        }
        let crop = y.narrow(D::Minus1, 0, k - 1)?;
        let tiny = if y.dtype() == DType::F64 {
            1e-300
        } else {
            1e-30
        };
        let sf = crop
            .cumsum(D::Minus1)?
            .affine(-1.0, 1.0)?
            .clamp(tiny, 1.0)?;
        Ok((crop.log()? - sf.log()?)?.broadcast_add(&offsets(k - 1, y)?)?)
    }
    fn log_abs_det_jacobian(&self, x: &Tensor, _y: &Tensor) -> Result<Tensor> {
        let k1 = x.dim(D::Minus1)?;
        let xs = x.broadcast_sub(&offsets(k1, x)?)?;
        let l1m = log_sigmoid(&xs.neg()?)?;
        let c = shifted_cumsum(&l1m.cumsum(D::Minus1)?)?;
        Ok((log_sigmoid(&xs)? + l1m + c)?.sum(D::Minus1)?)
    }
    fn codomain(&self) -> Constraint {
        Constraint::Simplex
    }
    fn event_dim(&self) -> usize {
        1
    }
    fn unconstrained_shape(&self, constrained: &[usize]) -> Vec<usize> {
        let mut s = constrained.to_vec();
        if let Some(last) = s.last_mut() {
            *last = last.saturating_sub(1);
        }
        s
    }
    fn constrained_shape(&self, unconstrained: &[usize]) -> Vec<usize> {
        let mut s = unconstrained.to_vec();
        if let Some(last) = s.last_mut() {
            *last += 1;
        }
        s
    }
}
