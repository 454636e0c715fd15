//! The planar flow of Rezende and Mohamed (2015), "Variational Inference with Normalizing
//! Flows".

use super::bijector::{impl_bijector_by_pass, Fast, Pass};
use super::shapes;
use crate::error::{PplError, Result};
use crate::special::softplus;
use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};

const LAYER: &str = "Planar";

/// `x = z + û tanh(wᵀz + b)`, with `û = u + (m(wᵀu) − wᵀu) w / ‖w‖²` and
/// `m(a) = −1 + softplus(a)`, so that `wᵀû = m(wᵀu) > −1`: the map is then invertible and
/// `log |det ∂x/∂z| = log(1 + wᵀû tanh'(wᵀz + b)) > −∞`.
///
/// The sampling direction is the closed form ([`Fast::ToData`]). The density direction has
/// no closed form; it is computed exactly by a 1-D root solve: `α = wᵀz` solves
/// `α + m tanh(α + b) = wᵀx` (strictly increasing in `α`), found on the host by safeguarded
/// Newton iterations in f64 and then refined by one Newton step in candle ops from the
/// detached root, which makes the result differentiable (implicit-function gradients).
/// The layer has no conditioner and ignores any context.
#[derive(Debug, Clone)]
pub struct Planar {
    w: Tensor,
    u: Tensor,
    b: Tensor,
    dim: usize,
}

/// `û` `[D]`, `m = wᵀû` `[1]`, `w` `[D]`, `b` `[1]` in the input's dtype.
struct Coeffs {
    uhat: Tensor,
    m: Tensor,
    w: Tensor,
    b: Tensor,
}

impl Planar {
    /// A planar layer on `dim` features under `vb` (`w`, `u`, `b`): `w` starts at
    /// `N(0, 1/dim)`, `u` at `N(0, 0.01²)` and `b` at 0.
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(PplError::invalid_argument(LAYER, "dim must be positive"));
        }
        let w = vb.get_with_hints(
            dim,
            "w",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (dim as f64).sqrt(),
            },
        )?;
        let u = vb.get_with_hints(
            dim,
            "u",
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        )?;
        let b = vb.get_with_hints(1, "b", Init::Const(0.0))?;
        Ok(Planar { w, u, b, dim })
    }

    fn coeffs(&self, dtype: DType) -> Result<Coeffs> {
        let w = self.w.to_dtype(dtype)?;
        let u = self.u.to_dtype(dtype)?;
        let b = self.b.to_dtype(dtype)?;
        let wu = (&w * &u)?.sum_keepdim(0)?;
        let m = (softplus(&wu)? - 1.0)?;
        // ‖w‖² floored so that w = 0 gives û = u instead of a division by zero.
        let ww = w.sqr()?.sum_keepdim(0)?.maximum(1e-30)?;
        let uhat = (&u + w.broadcast_mul(&(&m - &wu)?.div(&ww)?)?)?;
        Ok(Coeffs { uhat, m, w, b })
    }

    /// `input · w` `[..., 1]`.
    fn dot(t: &Tensor, w: &Tensor) -> Result<Tensor> {
        Ok(t.broadcast_mul(w)?.sum_keepdim(D::Minus1)?)
    }

    fn forward(&self, z: &Tensor, v: Option<&Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        shapes::check_input(LAYER, z, self.dim)?;
        let k = self.coeffs(z.dtype())?;
        let a = Self::dot(z, &k.w)?.broadcast_add(&k.b)?;
        let h = a.tanh()?;
        let hp = (1.0 - h.sqr()?)?;
        let x = z.broadcast_add(&h.broadcast_mul(&k.uhat)?)?;
        let ladj = (hp.broadcast_mul(&k.m)? + 1.0)?.log()?.squeeze(D::Minus1)?;
        let dx = match v {
            Some(v) => {
                let v = shapes::tangents(LAYER, v, z)?;
                let wv = Self::dot(&v, &k.w)?;
                Some((&v + wv.broadcast_mul(&hp)?.broadcast_mul(&k.uhat)?)?)
            }
            None => None,
        };
        Ok((x, ladj, dx))
    }

    fn inverse(&self, x: &Tensor, v: Option<&Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        shapes::check_input(LAYER, x, self.dim)?;
        let k = self.coeffs(x.dtype())?;
        let wx = Self::dot(x, &k.w)?;
        // Host root solve of g(α) = α + m tanh(α + b) − wᵀx, increasing with g' ≥ 1 + min(m, 0).
        let m0: f64 = k.m.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        let b0: f64 = k.b.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        let targets = wx.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let roots: Vec<f64> = targets.iter().map(|&y| solve(y, m0, b0)).collect();
        let alpha0 = crate::rng::upload(roots, wx.dims(), x.dtype(), x.device())?;
        // One Newton step from the detached root carries the gradients.
        let t0 = alpha0.broadcast_add(&k.b)?.tanh()?;
        let g = (&alpha0 + t0.broadcast_mul(&k.m)?)?.sub(&wx)?;
        let gp = ((1.0 - t0.sqr()?)?.broadcast_mul(&k.m)? + 1.0)?;
        let alpha = (&alpha0 - g.div(&gp)?)?;
        let h = alpha.broadcast_add(&k.b)?.tanh()?;
        let hp = (1.0 - h.sqr()?)?;
        let z = x.broadcast_sub(&h.broadcast_mul(&k.uhat)?)?;
        let one_plus = (hp.broadcast_mul(&k.m)? + 1.0)?;
        let ladj = one_plus.log()?.neg()?.squeeze(D::Minus1)?;
        // (I + û h' wᵀ)⁻¹ v = v − û h' (wᵀv) / (1 + h' m)  (Sherman–Morrison).
        let dz = match v {
            Some(v) => {
                let v = shapes::tangents(LAYER, v, x)?;
                let coef = hp.div(&one_plus)?;
                let wv = Self::dot(&v, &k.w)?;
                Some((&v - wv.broadcast_mul(&coef)?.broadcast_mul(&k.uhat)?)?)
            }
            None => None,
        };
        Ok((z, ladj, dz))
    }
}

/// The root of `α + m tanh(α + b) = y` (`m > −1`): bisection-safeguarded Newton inside the
/// bracket `[y − |m|, y + |m|]`.
fn solve(y: f64, m: f64, b: f64) -> f64 {
    if !y.is_finite() {
        return y;
    }
    let (mut lo, mut hi) = (y - m.abs(), y + m.abs());
    let mut a = y;
    for _ in 0..200 {
        let t = (a + b).tanh();
        let g = a + m * t - y;
        if g == 0.0 {
            return a;
        }
        if g > 0.0 {
            hi = a;
        } else {
            lo = a;
        }
        let gp = 1.0 + m * (1.0 - t * t);
        let mut next = a - g / gp;
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if (next - a).abs() <= 1e-15 * (1.0 + a.abs()) || hi - lo <= 1e-15 * (1.0 + a.abs()) {
            return next;
        }
        a = next;
    }
    a
}

impl Pass for Planar {
    const LAYER: &'static str = LAYER;

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass_fast(&self) -> Fast {
        Fast::ToData
    }

    fn pass(
        &self,
        input: &Tensor,
        _context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        if to_data {
            self.forward(input, v)
        } else {
            self.inverse(input, v)
        }
    }
}

impl_bijector_by_pass!(Planar);
