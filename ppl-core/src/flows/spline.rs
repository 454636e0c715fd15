//! Rational-quadratic spline coupling (Durkin, Bekasov, Murray and Papamakarios 2019,
//! "Neural Spline Flows").

use super::bijector::{impl_bijector_by_pass, Pass};
use super::conditioner::{Activation, Conditioner};
use super::dual::Dual;
use super::shapes;
use crate::error::{PplError, Result};
use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

/// The smallest bin width, as a fraction of the interval `2B`.
pub const SPLINE_MIN_BIN_WIDTH: f64 = 1e-3;
/// The smallest bin height, as a fraction of the interval `2B`.
pub const SPLINE_MIN_BIN_HEIGHT: f64 = 1e-3;
/// The smallest derivative at an inner knot.
pub const SPLINE_MIN_DERIVATIVE: f64 = 1e-3;

/// The number of raw parameters per transformed dimension of a `bins`-bin spline:
/// `bins` widths, `bins` heights and `bins − 1` inner derivatives.
pub fn spline_params_per_dim(bins: usize) -> usize {
    3 * bins - 1
}

/// Knots `[..., n, K+1]` from raw sizes `[..., n, K]`: softmax with the minimum size, on
/// `[−B, B]`, with the end knots exactly `±B`.
fn knots(raw: &Dual, bound: f64, min: f64, bins: usize) -> Result<(Dual, Dual)> {
    let k = bins as f64;
    let sizes = raw.softmax_last()?.affine(1.0 - min * k, min)?;
    let cum = sizes.cumsum_last()?.affine(2.0 * bound, -bound)?;
    let inner = cum.narrow_last(0, bins - 1)?;
    let mut end_shape = raw.v.dims().to_vec();
    let last = end_shape.len() - 1;
    end_shape[last] = 1;
    let lo = Dual::constant(
        Tensor::full(-bound, end_shape.as_slice(), raw.v.device())?.to_dtype(raw.v.dtype())?,
    );
    let hi = Dual::constant(
        Tensor::full(bound, end_shape.as_slice(), raw.v.device())?.to_dtype(raw.v.dtype())?,
    );
    let all = Dual::cat_last(&[&lo, &inner, &hi])?;
    let widths = all.narrow_last(1, bins)?.sub(&all.narrow_last(0, bins)?)?;
    Ok((all, widths))
}

/// Picks, per element, the entry of the one-hot bin `[..., n, K]` from `[..., n, K]`.
fn pick(d: &Dual, onehot: &Tensor) -> Result<Dual> {
    d.mul(&Dual::constant(onehot.clone()))?.sum_keepdim_last()
}

/// The spline on `x` `[..., n]` with raw parameters `raw` `[..., n, 3K−1]`, with tangents:
/// `(y, log |dy/dx|)`, both `[..., n]` (for `inverse`, `x = g⁻¹(y)` and `log |dx/dy|`).
fn spline(x: &Dual, raw: &Dual, bound: f64, inverse: bool) -> Result<(Dual, Tensor)> {
    let p = raw.v.dim(D::Minus1)?;
    if p < 5 || (p + 1) % 3 != 0 {
        return Err(PplError::invalid_argument(
            "rational_quadratic_spline",
            format!(
                "raw parameters of shape {:?}: the last axis must be 3K − 1 with K ≥ 2 bins",
                raw.v.dims()
            ),
        ));
    }
    let bins = (p + 1) / 3;
    let dtype = x.v.dtype();
    let xu = x.unsqueeze_last()?;
    let inside = xu.v.ge(-bound)?.mul(&xu.v.le(bound)?)?;
    // Compute on inputs clipped into the interval; the tails select the identity below.
    let xc = xu.clamp(-bound, bound)?;
    let (kx, widths) = knots(
        &raw.narrow_last(0, bins)?,
        bound,
        SPLINE_MIN_BIN_WIDTH,
        bins,
    )?;
    let (ky, heights) = knots(
        &raw.narrow_last(bins, bins)?,
        bound,
        SPLINE_MIN_BIN_HEIGHT,
        bins,
    )?;
    // Derivatives at the knots: 1 at both ends (C¹ join to the identity tails); the inner
    // ones are min + softplus(a + shift) with the shift making a = 0 give 1 (identity).
    let shift = (1.0 - SPLINE_MIN_DERIVATIVE).exp_m1().ln();
    let mut end_shape = raw.v.dims().to_vec();
    let last = end_shape.len() - 1;
    end_shape[last] = 1;
    let one = Dual::constant(Tensor::ones(end_shape.as_slice(), dtype, raw.v.device())?);
    let inner_d = raw
        .narrow_last(2 * bins, bins - 1)?
        .affine(1.0, shift)?
        .softplus()?
        .affine(1.0, SPLINE_MIN_DERIVATIVE)?;
    let derivs = Dual::cat_last(&[&one, &inner_d, &one])?;
    // The bin: how many inner knots lie at or below the (clipped) input.
    let search = if inverse { &ky } else { &kx };
    let inner_knots = search.v.narrow(D::Minus1, 1, bins - 1)?;
    let count = inner_knots
        .broadcast_le(&xc.v)?
        .to_dtype(dtype)?
        .sum_keepdim(D::Minus1)?;
    let ids = Tensor::arange(0u32, bins as u32, raw.v.device())?.to_dtype(dtype)?;
    let onehot = count.broadcast_eq(&ids)?.to_dtype(dtype)?;
    let x_k = pick(&kx.narrow_last(0, bins)?, &onehot)?;
    let y_k = pick(&ky.narrow_last(0, bins)?, &onehot)?;
    let w_k = pick(&widths, &onehot)?;
    let h_k = pick(&heights, &onehot)?;
    let d_k = pick(&derivs.narrow_last(0, bins)?, &onehot)?;
    let d_k1 = pick(&derivs.narrow_last(1, bins)?, &onehot)?;
    let s = h_k.div(&w_k)?;
    // d_{k+1} + d_k − 2 s.
    let c2 = d_k1.add(&d_k)?.sub(&s.affine(2.0, 0.0)?)?;
    let xi = if inverse {
        // Solve a ξ² + b ξ + c = 0 with the root formula 2c / (−b − √(b² − 4ac)), stable
        // because b > 0 where c → 0.
        let dy = xc.sub(&y_k)?;
        let a = h_k.mul(&s.sub(&d_k)?)?.add(&dy.mul(&c2)?)?;
        let b = h_k.mul(&d_k)?.sub(&dy.mul(&c2)?)?;
        let c = s.mul(&dy)?.affine(-1.0, 0.0)?;
        let disc = b
            .sqr()?
            .sub(&a.mul(&c)?.affine(4.0, 0.0)?)?
            .clamp(0.0, f64::INFINITY)?;
        let den = b.affine(-1.0, 0.0)?.sub(&disc.sqrt()?)?;
        c.affine(2.0, 0.0)?.div(&den)?
    } else {
        xc.sub(&x_k)?.div(&w_k)?
    };
    let om = xi.affine(-1.0, 1.0)?;
    let t2 = xi.mul(&om)?;
    let den = s.add(&c2.mul(&t2)?)?;
    let out = if inverse {
        xi.mul(&w_k)?.add(&x_k)?
    } else {
        let num = h_k.mul(&s.mul(&xi.sqr()?)?.add(&d_k.mul(&t2)?)?)?;
        y_k.add(&num.div(&den)?)?
    };
    // log dy/dx = log(s² (d_{k+1} ξ² + 2 s ξ(1−ξ) + d_k (1−ξ)²)) − 2 log(den), on values.
    let (sv, xv, omv) = (&s.v, &xi.v, &om.v);
    let dnum = d_k1
        .v
        .mul(&xv.sqr()?)?
        .add(&(sv * 2.0)?.mul(&t2.v)?)?
        .add(&d_k.v.mul(&omv.sqr()?)?)?
        .mul(&sv.sqr()?)?;
    let logd = (dnum.log()? - (den.v.log()? * 2.0)?)?;
    let logd = if inverse { logd.neg()? } else { logd };
    let out = Dual::select(&inside, &out, &xu)?.squeeze_last()?;
    let zeros = logd.zeros_like()?;
    let logd = inside.where_cond(&logd, &zeros)?.squeeze(D::Minus1)?;
    Ok((out, logd))
}

/// The monotone rational-quadratic spline `g` of Durkin et al. on `[−bound, bound]` (the
/// identity outside), applied elementwise to `x` `[..., n]` with raw parameters `raw`
/// `[..., n, 3K−1]` (`K` bins; see [`spline_params_per_dim`]): softmax widths and heights
/// with minimum sizes [`SPLINE_MIN_BIN_WIDTH`] / [`SPLINE_MIN_BIN_HEIGHT`], inner knot
/// derivatives `min + softplus` (raw 0 gives derivative 1: all-zero parameters are the
/// identity), derivative 1 at both ends.
///
/// Returns `(g(x), log g'(x))`, or with `inverse` `(g⁻¹(x), log (g⁻¹)'(x))`, both
/// `[..., n]`. Inputs outside the interval are clipped before any spline arithmetic, so
/// gradients there are exact (identity) and never NaN.
pub fn rational_quadratic_spline(
    x: &Tensor,
    raw: &Tensor,
    bound: f64,
    inverse: bool,
) -> Result<(Tensor, Tensor)> {
    if !(bound.is_finite() && bound > 0.0) {
        return Err(PplError::invalid_argument(
            "rational_quadratic_spline",
            format!("bound must be positive and finite, got {bound}"),
        ));
    }
    if raw.rank() != x.rank() + 1 || raw.dims()[..raw.rank() - 1] != *x.dims() {
        return Err(PplError::invalid_argument(
            "rational_quadratic_spline",
            format!(
                "raw parameters of shape {:?} must be [x shape..., 3K − 1] for x of shape {:?}",
                raw.dims(),
                x.dims()
            ),
        ));
    }
    let (y, l) = spline(
        &Dual::constant(x.clone()),
        &Dual::constant(raw.to_dtype(x.dtype())?),
        bound,
        inverse,
    )?;
    Ok((y.v, l))
}

/// A rational-quadratic spline coupling layer: the coordinates marked `true` in the mask
/// are transformed elementwise by a [`rational_quadratic_spline`] whose `3K − 1` raw
/// parameters per coordinate come from a [`Conditioner`] of the other coordinates (and the
/// optional context); the others pass through. Outside `[−bound, bound]` the layer is the
/// identity (linear tails). A new layer is the identity (the conditioner's output starts
/// at zero). `log |det| = Σ log g'` over the transformed coordinates.
#[derive(Debug, Clone)]
pub struct SplineCoupling {
    conditioner: Conditioner,
    dim: usize,
    transformed: Vec<u32>,
    conditioning: Vec<u32>,
    /// The permutation putting `[conditioning, transformed]` back in place.
    inverse_perm: Vec<u32>,
    bins: usize,
    bound: f64,
}

const LAYER: &str = "SplineCoupling";

impl SplineCoupling {
    /// A layer transforming the coordinates where `mask` is `true` (at least one, and at
    /// least one not), with `bins` bins on `[−bound, bound]` and a conditioner of hidden
    /// widths `hidden` under `vb` (`conditioner.layer{i}.*`), `context_dim` context features.
    pub fn new(
        vb: VarBuilder,
        mask: &[bool],
        context_dim: usize,
        hidden: &[usize],
        activation: Activation,
        bins: usize,
        bound: f64,
    ) -> Result<Self> {
        let dim = mask.len();
        let transformed: Vec<u32> = (0..dim as u32).filter(|&i| mask[i as usize]).collect();
        let conditioning: Vec<u32> = (0..dim as u32).filter(|&i| !mask[i as usize]).collect();
        if transformed.is_empty() || conditioning.is_empty() {
            return Err(PplError::invalid_argument(
                LAYER,
                format!("mask {mask:?} must mark some coordinates true and some false"),
            ));
        }
        if bins < 2 || !(bound.is_finite() && bound > 0.0) {
            return Err(PplError::invalid_argument(
                LAYER,
                format!("need bins ≥ 2 and a positive finite bound, got {bins} and {bound}"),
            ));
        }
        let mut inverse_perm = vec![0u32; dim];
        for (pos, &i) in conditioning.iter().chain(transformed.iter()).enumerate() {
            inverse_perm[i as usize] = pos as u32;
        }
        let conditioner = Conditioner::new(
            vb.pp("conditioner"),
            conditioning.len(),
            context_dim,
            hidden,
            transformed.len() * spline_params_per_dim(bins),
            activation,
        )?;
        Ok(SplineCoupling {
            conditioner,
            dim,
            transformed,
            conditioning,
            inverse_perm,
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

    fn select(t: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let idx = Tensor::from_slice(ids, ids.len(), t.device())?;
        Ok(t.contiguous()?.index_select(&idx, t.rank() - 1)?)
    }

    fn run(
        &self,
        input: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        inverse: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        shapes::check_input(LAYER, input, self.dim)?;
        let (x, c) = shapes::with_context(LAYER, input, context, self.conditioner.context_dim())?;
        let v = match v {
            Some(v) => Some(shapes::tangents(LAYER, v, &x)?),
            None => None,
        };
        let (x, c, v, lifted) = shapes::lift(x, c, v)?;
        let xa = Self::select(&x, &self.conditioning)?;
        let xb = Self::select(&x, &self.transformed)?;
        let va = v
            .as_ref()
            .map(|v| Self::select(v, &self.conditioning))
            .transpose()?;
        let vb = v
            .as_ref()
            .map(|v| Self::select(v, &self.transformed))
            .transpose()?;
        let (h, dh) = match &va {
            Some(va) => {
                let (h, dh) = self.conditioner.forward_jvp(&xa, c.as_ref(), va)?;
                (h, Some(dh))
            }
            None => (self.conditioner.forward(&xa, c.as_ref())?, None),
        };
        let p = spline_params_per_dim(self.bins);
        let n = self.transformed.len();
        let mut shape = h.dims()[..h.rank() - 1].to_vec();
        shape.push(n);
        shape.push(p);
        let raw_v = h.reshape(shape.as_slice())?;
        let raw_t = match dh {
            Some(dh) => {
                let mut s = vec![dh.dim(0)?];
                s.extend_from_slice(&shape);
                Some(dh.reshape(s)?)
            }
            None => None,
        };
        let (yb, logd) = spline(
            &Dual::new(xb, vb),
            &Dual::new(raw_v, raw_t),
            self.bound,
            inverse,
        )?;
        let ids = Tensor::from_slice(&self.inverse_perm, self.dim, x.device())?;
        let y = Tensor::cat(&[&xa, &yb.v], D::Minus1)?;
        let y = y.index_select(&ids, y.rank() - 1)?;
        let dy = match (va, yb.t) {
            (Some(va), Some(tb)) => {
                let t = Tensor::cat(&[&va, &tb], D::Minus1)?;
                Some(t.index_select(&ids, t.rank() - 1)?)
            }
            _ => None,
        };
        shapes::lower(y, logd.sum(D::Minus1)?, dy, lifted)
    }
}

impl Pass for SplineCoupling {
    const LAYER: &'static str = LAYER;

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass(
        &self,
        input: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        self.run(input, context, v, !to_data)
    }
}

impl_bijector_by_pass!(SplineCoupling);
