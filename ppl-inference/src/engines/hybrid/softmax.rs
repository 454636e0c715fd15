//! Classification heads: softmax over `K` classes and binary logistic.

use super::head::{check_features, GlmHead};
use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};
use ppl_core::{PplError, Result};

/// Softmax regression on features: `p(y = k | z) = softmax(z W + b)_k`, labels `y` `[B]`
/// (any integer or float dtype holding `0..K`), `W` `[D, K]` and `b` `[K]` from zero.
#[derive(Debug, Clone)]
pub struct Softmax {
    w: Tensor,
    b: Tensor,
}

impl Softmax {
    /// A head for `in_dim` features and `classes ≥ 2` classes.
    pub fn new(vb: VarBuilder, in_dim: usize, classes: usize) -> Result<Self> {
        if in_dim == 0 || classes < 2 {
            return Err(PplError::invalid_argument(
                "Softmax",
                format!("need in_dim ≥ 1 and classes ≥ 2, got {in_dim} and {classes}"),
            ));
        }
        Ok(Softmax {
            w: vb.get_with_hints((in_dim, classes), "weight", Init::Const(0.0))?,
            b: vb.get_with_hints(classes, "bias", Init::Const(0.0))?,
        })
    }

    /// The logits `z W + b` `[B, K]`.
    pub fn logits(&self, z: &Tensor) -> Result<Tensor> {
        check_features("Softmax", z, self.w.dim(0)?)?;
        Ok(z.matmul(&self.w.to_dtype(z.dtype())?)?
            .broadcast_add(&self.b.to_dtype(z.dtype())?)?)
    }

    /// Class probabilities `[B, K]`.
    pub fn probs(&self, z: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.logits(z)?, D::Minus1)?)
    }

    /// The most probable class per row `[B]` (u32).
    pub fn predict(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.logits(z)?.argmax(D::Minus1)?)
    }
}

/// Labels `[B]` as u32 indices below `k`, or a typed error naming the bad label.
fn labels(head: &'static str, y: &Tensor, b: usize, k: usize) -> Result<Tensor> {
    if y.dims() != [b] {
        return Err(PplError::invalid_argument(
            head,
            format!("labels must be [{b}], got {:?}", y.dims()),
        ));
    }
    let v: Vec<f64> = y.to_dtype(DType::F64)?.to_vec1()?;
    if let Some(bad) = v
        .iter()
        .find(|l| !(l.fract() == 0.0 && **l >= 0.0 && (**l as usize) < k))
    {
        return Err(PplError::invalid_argument(
            head,
            format!("labels must be integers in 0..{k}, got {bad}"),
        ));
    }
    Ok(y.to_dtype(DType::U32)?)
}

impl GlmHead for Softmax {
    fn in_dim(&self) -> usize {
        self.w.dims()[0]
    }

    fn log_prob(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        let b = check_features("Softmax", z, self.in_dim())?;
        let k = self.w.dims()[1];
        let y = labels("Softmax", y, b, k)?;
        let logp = candle_nn::ops::log_softmax(&self.logits(z)?, D::Minus1)?;
        Ok(logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?)
    }
}

/// Binary logistic regression on features: `p(y = 1 | z) = sigmoid(z·w + b)`, labels `y`
/// `[B]` in `{0, 1}`; `w` `[D]`, `b` from zero.
#[derive(Debug, Clone)]
pub struct Logistic {
    w: Tensor,
    b: Tensor,
}

impl Logistic {
    /// A head for `in_dim` features.
    pub fn new(vb: VarBuilder, in_dim: usize) -> Result<Self> {
        if in_dim == 0 {
            return Err(PplError::invalid_argument(
                "Logistic",
                "in_dim must be positive",
            ));
        }
        Ok(Logistic {
            w: vb.get_with_hints((in_dim, 1), "weight", Init::Const(0.0))?,
            b: vb.get_with_hints(1, "bias", Init::Const(0.0))?,
        })
    }

    /// The logit `z·w + b` `[B]`.
    pub fn logit(&self, z: &Tensor) -> Result<Tensor> {
        check_features("Logistic", z, self.w.dim(0)?)?;
        Ok(z.matmul(&self.w.to_dtype(z.dtype())?)?
            .broadcast_add(&self.b.to_dtype(z.dtype())?)?
            .squeeze(1)?)
    }

    /// `p(y = 1 | z)` `[B]`.
    pub fn prob(&self, z: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::sigmoid(&self.logit(z)?)?)
    }
}

impl GlmHead for Logistic {
    fn in_dim(&self) -> usize {
        self.w.dims()[0]
    }

    fn log_prob(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        let b = check_features("Logistic", z, self.in_dim())?;
        let y = labels("Logistic", y, b, 2)?.to_dtype(z.dtype())?;
        // log sigmoid(±a) = −softplus(∓a), computed stably: −(max(u, 0) + log1p(e^{−|u|})).
        let a = self.logit(z)?;
        let signed = (a * ((y * 2.0)? - 1.0)?)?;
        let u = signed.neg()?;
        let softplus = (u.relu()? + (u.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        Ok(softplus.neg()?)
    }
}
