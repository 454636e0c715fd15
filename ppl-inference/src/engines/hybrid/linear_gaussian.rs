//! The linear-Gaussian regression head.

use super::head::{check_features, GlmHead};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use ppl_core::{PplError, Result};

/// Linear-Gaussian regression on features: `y ~ N(z W + b, diag σ²)`, `y` `[B, O]`, with
/// `W` `[D, O]` and `b` `[O]` starting at zero and `log σ` `[O]` at zero (weights under
/// `weight`, `bias`, `log_sigma` of the given `VarBuilder`).
#[derive(Debug, Clone)]
pub struct LinearGaussian {
    w: Tensor,
    b: Tensor,
    log_sigma: Tensor,
}

impl LinearGaussian {
    /// A head for `in_dim` features and `out_dim` targets.
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        if in_dim == 0 || out_dim == 0 {
            return Err(PplError::invalid_argument(
                "LinearGaussian",
                format!("widths must be positive, got in {in_dim}, out {out_dim}"),
            ));
        }
        Ok(LinearGaussian {
            w: vb.get_with_hints((in_dim, out_dim), "weight", Init::Const(0.0))?,
            b: vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?,
            log_sigma: vb.get_with_hints(out_dim, "log_sigma", Init::Const(0.0))?,
        })
    }

    /// The predictive mean `z W + b` `[B, O]`.
    pub fn mean(&self, z: &Tensor) -> Result<Tensor> {
        check_features("LinearGaussian", z, self.w.dim(0)?)?;
        Ok(z.matmul(&self.w.to_dtype(z.dtype())?)?
            .broadcast_add(&self.b.to_dtype(z.dtype())?)?)
    }

    /// The noise scale `σ` `[O]`.
    pub fn sigma(&self) -> Result<Tensor> {
        Ok(self.log_sigma.exp()?)
    }
}

impl GlmHead for LinearGaussian {
    fn in_dim(&self) -> usize {
        self.w.dims()[0]
    }

    fn log_prob(&self, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        let b = check_features("LinearGaussian", z, self.in_dim())?;
        let o = self.w.dims()[1];
        if y.dims() != [b, o] {
            return Err(PplError::invalid_argument(
                "LinearGaussian",
                format!(
                    "targets must be [{b}, {o}] for features {:?}, got {:?}",
                    z.dims(),
                    y.dims()
                ),
            ));
        }
        let ls = self.log_sigma.to_dtype(z.dtype())?;
        let r = (y.to_dtype(z.dtype())? - self.mean(z)?)?.broadcast_div(&ls.exp()?)?;
        let per =
            ((r.sqr()? * -0.5)?.broadcast_sub(&ls)? - 0.5 * (2.0 * std::f64::consts::PI).ln())?;
        Ok(per.sum(D::Minus1)?)
    }
}
