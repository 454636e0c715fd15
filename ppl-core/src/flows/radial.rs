//! The radial flow of Rezende and Mohamed (2015), "Variational Inference with Normalizing
//! Flows".

use super::bijector::{impl_bijector_by_pass, Fast, Pass};
use super::shapes;
use crate::error::{PplError, Result};
use crate::special::softplus;
use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};

const LAYER: &str = "Radial";

/// `x = z + β h(α, r) (z − z₀)` with `r = ‖z − z₀‖`, `h = 1 / (α + r)`,
/// `α = softplus(a) > 0` and `β = −α + softplus(b) > −α` (which makes the map invertible):
/// `log |det ∂x/∂z| = (D − 1) log(1 + β h) + log(1 + β α / (α + r)²)`.
///
/// Both directions are closed forms: along a ray from `z₀` the radius maps by
/// `ρ = r (1 + β / (α + r))`, whose inverse is the positive root of
/// `r² + (α + β − ρ) r − α ρ = 0` (computed without cancellation), and then
/// `z = z₀ + (x − z₀)(α + r) / (α + r + β)`. Radii are floored at a tiny value so that
/// gradients at `z = z₀` are finite. The layer has no conditioner and ignores any context.
#[derive(Debug, Clone)]
pub struct Radial {
    z0: Tensor,
    a: Tensor,
    b: Tensor,
    dim: usize,
}

/// `α`, `β`, `z₀` in the input's dtype.
struct Coeffs {
    alpha: Tensor,
    beta: Tensor,
    z0: Tensor,
}

fn tiny(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-200,
        _ => 1e-30,
    }
}

impl Radial {
    /// A radial layer on `dim` features under `vb` (`z0` from `N(0, 1)`, raw `a` and `b`
    /// at 0: `α = log 2`, `β = 0`, the identity).
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(PplError::invalid_argument(LAYER, "dim must be positive"));
        }
        let z0 = vb.get_with_hints(
            dim,
            "z0",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let a = vb.get_with_hints(1, "a", Init::Const(0.0))?;
        // softplus(b) = log 2 = α at b = 0, so β = 0.
        let b = vb.get_with_hints(1, "b", Init::Const(0.0))?;
        Ok(Radial { z0, a, b, dim })
    }

    fn coeffs(&self, dtype: DType) -> Result<Coeffs> {
        let alpha = softplus(&self.a.to_dtype(dtype)?)?;
        let beta = (softplus(&self.b.to_dtype(dtype)?)? - &alpha)?;
        Ok(Coeffs {
            alpha,
            beta,
            z0: self.z0.to_dtype(dtype)?,
        })
    }

    /// `‖e‖` `[..., 1]`, floored.
    fn norm(e: &Tensor) -> Result<Tensor> {
        Ok(e.sqr()?
            .sum_keepdim(D::Minus1)?
            .maximum(tiny(e.dtype()))?
            .sqrt()?)
    }

    /// `ladj` of the forward map at radius `r` `[..., 1]` → `[...]`.
    fn ladj(&self, k: &Coeffs, r: &Tensor) -> Result<Tensor> {
        let ar = r.broadcast_add(&k.alpha)?;
        let one_bh = (k.beta.broadcast_div(&ar)? + 1.0)?;
        let second = (k.beta.broadcast_mul(&k.alpha)?.broadcast_div(&ar.sqr()?)? + 1.0)?;
        let l = ((one_bh.log()? * (self.dim as f64 - 1.0))? + second.log()?)?;
        Ok(l.squeeze(D::Minus1)?)
    }

    /// The Jacobian `c I + k e eᵀ` at `e = z − z₀` (radius `r`): `(c, k)`.
    fn jac_coeffs(&self, k: &Coeffs, r: &Tensor) -> Result<(Tensor, Tensor)> {
        let ar = r.broadcast_add(&k.alpha)?;
        let c = (k.beta.broadcast_div(&ar)? + 1.0)?;
        let kk = k.beta.broadcast_div(&ar.sqr()?.mul(r)?)?.neg()?;
        Ok((c, kk))
    }

    fn forward(&self, z: &Tensor, v: Option<&Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        shapes::check_input(LAYER, z, self.dim)?;
        let k = self.coeffs(z.dtype())?;
        let e = z.broadcast_sub(&k.z0)?;
        let r = Self::norm(&e)?;
        let (c, kk) = self.jac_coeffs(&k, &r)?;
        // x = z + β h e = z₀ + c e.
        let x = e.broadcast_mul(&c)?.broadcast_add(&k.z0)?;
        let ladj = self.ladj(&k, &r)?;
        let dx = match v {
            Some(v) => {
                let v = shapes::tangents(LAYER, v, z)?;
                let ev = v.broadcast_mul(&e)?.sum_keepdim(D::Minus1)?;
                Some(
                    v.broadcast_mul(&c)?
                        .add(&ev.broadcast_mul(&kk)?.broadcast_mul(&e)?)?,
                )
            }
            None => None,
        };
        Ok((x, ladj, dx))
    }

    fn inverse(&self, x: &Tensor, v: Option<&Tensor>) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        shapes::check_input(LAYER, x, self.dim)?;
        let k = self.coeffs(x.dtype())?;
        let ex = x.broadcast_sub(&k.z0)?;
        let rho = Self::norm(&ex)?;
        // r² + q r − α ρ = 0 with q = α + β − ρ; the positive root without cancellation:
        // q ≥ 0: r = 2αρ / (q + √disc); q < 0: r = (√disc − q) / 2.
        let q = rho.neg()?.broadcast_add(&(&k.alpha + &k.beta)?)?;
        let arho = rho.broadcast_mul(&k.alpha)?;
        let sq = (q.sqr()? + (&arho * 4.0)?)?.sqrt()?;
        let pos = q.ge(0.0)?;
        // Each branch is finite where it is not selected: q + √disc > 0 when q ≥ 0 or ρ > 0.
        let den = (&q + &sq)?.maximum(tiny(x.dtype()))?;
        let r_pos = ((&arho * 2.0)? / den)?;
        let r_neg = ((&sq - &q)? * 0.5)?;
        let r = pos.where_cond(&r_pos, &r_neg)?.maximum(tiny(x.dtype()))?;
        let ar = r.broadcast_add(&k.alpha)?;
        let scale = ar.div(&ar.broadcast_add(&k.beta)?)?;
        let e = ex.broadcast_mul(&scale)?;
        let z = e.broadcast_add(&k.z0)?;
        let ladj = self.ladj(&k, &r)?.neg()?;
        // (c I + k e eᵀ)⁻¹ v = (v − k e (eᵀv) / (c + k r²)) / c.
        let dz = match v {
            Some(v) => {
                let v = shapes::tangents(LAYER, v, x)?;
                let (c, kk) = self.jac_coeffs(&k, &r)?;
                let denom = (&c + kk.mul(&r.sqr()?)?)?;
                let ev = v.broadcast_mul(&e)?.sum_keepdim(D::Minus1)?;
                let corr = ev.broadcast_mul(&kk.div(&denom)?)?.broadcast_mul(&e)?;
                Some(v.sub(&corr)?.broadcast_div(&c)?)
            }
            None => None,
        };
        Ok((z, ladj, dz))
    }
}

impl Pass for Radial {
    const LAYER: &'static str = LAYER;

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass_fast(&self) -> Fast {
        Fast::Both
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

impl_bijector_by_pass!(Radial);
