//! [`ElementwiseSpline`]: an unconditional rational-quadratic spline per dimension (a flow
//! layer for any `D ≥ 1`, in particular 1-D data, where couplings cannot be used).

use super::bijector::{impl_bijector_by_pass, Pass};
use super::shapes::check_pass;
use super::spline::{rational_quadratic_spline, spline_params_per_dim};
use crate::error::{PplError, Result};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};

const LAYER: &str = "ElementwiseSpline";

/// A monotone rational-quadratic spline ([`rational_quadratic_spline`], Durkin et al. 2019)
/// applied to each coordinate of `[..., D]` with its own learned raw parameters `[D, 3K−1]`
/// (stored under `raw` of the `VarBuilder`, zero at start: a new layer is the identity).
/// Each coordinate is mapped monotonically on `[−bound, bound]` and left unchanged outside
/// (linear tails), so standardise the data (e.g. with an [`ActNorm`](super::ActNorm) in
/// front) to make the interval cover it.
///
/// The Jacobian is diagonal: `log |det| = Σ_d log g_d'(x_d)`, and the tangents are
/// `J v = g'(x) ⊙ v`. Both directions are one pass ([`Fast::Both`](super::Fast::Both)).
/// There is no conditioner, so a context is ignored.
#[derive(Debug, Clone)]
pub struct ElementwiseSpline {
    raw: Tensor,
    dim: usize,
    bins: usize,
    bound: f64,
}

impl ElementwiseSpline {
    /// A layer on events of size `dim ≥ 1` with `bins ≥ 2` bins on `[−bound, bound]`
    /// (`bound` positive and finite), its raw parameters `[dim, 3·bins − 1]` under `vb`.
    pub fn new(vb: VarBuilder, dim: usize, bins: usize, bound: f64) -> Result<Self> {
        if dim == 0 || bins < 2 || !(bound.is_finite() && bound > 0.0) {
            return Err(PplError::invalid_argument(
                LAYER,
                format!(
                    "need dim ≥ 1, bins ≥ 2 and a positive finite bound, got dim {dim}, \
                     bins {bins}, bound {bound}"
                ),
            ));
        }
        let raw = vb.get_with_hints((dim, spline_params_per_dim(bins)), "raw", Init::Const(0.0))?;
        Ok(ElementwiseSpline {
            raw,
            dim,
            bins,
            bound,
        })
    }

    /// The number of bins.
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// The half-width of the spline interval.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// The raw parameters `[D, 3K − 1]` (widths, heights, inner derivatives per dimension).
    pub fn raw(&self) -> &Tensor {
        &self.raw
    }

    /// `(output, per-coordinate log-derivative [..., D])` of the spline or its inverse.
    fn apply(&self, x: &Tensor, inverse: bool) -> Result<(Tensor, Tensor)> {
        let mut shape = x.dims().to_vec();
        shape.push(spline_params_per_dim(self.bins));
        let raw = self
            .raw
            .to_dtype(x.dtype())?
            .broadcast_as(shape.as_slice())?
            .contiguous()?;
        rational_quadratic_spline(x, &raw, self.bound, inverse)
    }
}

impl Pass for ElementwiseSpline {
    const LAYER: &'static str = LAYER;

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass(
        &self,
        input: &Tensor,
        _context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        check_pass(LAYER, input, v, self.dim, to_data)?;
        let (y, logd) = self.apply(input, !to_data)?;
        // Diagonal Jacobian: each tangent is scaled by g'(x) per coordinate.
        let jv = v
            .map(|v| v.to_dtype(input.dtype())?.broadcast_mul(&logd.exp()?))
            .transpose()?;
        Ok((y, logd.sum(D::Minus1)?, jv))
    }
}

impl_bijector_by_pass!(ElementwiseSpline);
