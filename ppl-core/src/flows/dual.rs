//! Dual numbers on tensors: a value and (optionally) its tangents `[K, value shape]`, for
//! layers whose forward-mode Jacobian-vector products are too long to write by hand (the
//! rational-quadratic spline). Every operation maps tangents by its derivative, so a
//! formula written once gives its value and its tangents; `None` tangents mean "constant"
//! and cost nothing (the path without tangents runs the same code).
//!
//! All values combined by one operation must have the same rank (use `unsqueeze_last`), so
//! that the tangents' leading `K` axis stays in front under broadcasting.

use crate::error::Result;
use candle_core::{Tensor, D};

/// A value and its optional tangents `[K, value.dims()...]`.
#[derive(Debug, Clone)]
pub(crate) struct Dual {
    pub v: Tensor,
    pub t: Option<Tensor>,
}

/// Broadcasts tangents to `[K, shape...]` when the value's shape grew under broadcasting.
fn fit(t: Tensor, shape: &[usize]) -> Result<Tensor> {
    if &t.dims()[1..] == shape {
        return Ok(t);
    }
    let mut s = vec![t.dim(0)?];
    s.extend_from_slice(shape);
    Ok(t.broadcast_as(s)?.contiguous()?)
}

/// `a + b` for optional tangents.
fn add_opt(a: Option<Tensor>, b: Option<Tensor>) -> Result<Option<Tensor>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(a.broadcast_add(&b)?),
        (Some(a), None) => Some(a),
        (None, b) => b,
    })
}

impl Dual {
    /// A value with tangents.
    pub fn new(v: Tensor, t: Option<Tensor>) -> Self {
        Dual { v, t }
    }

    /// A constant (zero tangents).
    pub fn constant(v: Tensor) -> Self {
        Dual { v, t: None }
    }

    fn with(v: Tensor, t: Option<Tensor>) -> Result<Self> {
        let t = match t {
            Some(t) => Some(fit(t, v.dims())?),
            None => None,
        };
        Ok(Dual { v, t })
    }

    /// Maps the tangents by the elementwise derivative `d` (same rank as the value).
    fn chain(&self, v: Tensor, d: &Tensor) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some(t.broadcast_mul(d)?),
            None => None,
        };
        Dual::with(v, t)
    }

    pub fn add(&self, o: &Dual) -> Result<Self> {
        Dual::with(
            self.v.broadcast_add(&o.v)?,
            add_opt(self.t.clone(), o.t.clone())?,
        )
    }

    pub fn sub(&self, o: &Dual) -> Result<Self> {
        let ot = match &o.t {
            Some(t) => Some(t.neg()?),
            None => None,
        };
        Dual::with(self.v.broadcast_sub(&o.v)?, add_opt(self.t.clone(), ot)?)
    }

    pub fn mul(&self, o: &Dual) -> Result<Self> {
        let a = match &self.t {
            Some(t) => Some(t.broadcast_mul(&o.v)?),
            None => None,
        };
        let b = match &o.t {
            Some(t) => Some(t.broadcast_mul(&self.v)?),
            None => None,
        };
        Dual::with(self.v.broadcast_mul(&o.v)?, add_opt(a, b)?)
    }

    pub fn div(&self, o: &Dual) -> Result<Self> {
        let q = self.v.broadcast_div(&o.v)?;
        // d(a/b) = (da − q db) / b.
        let b = match &o.t {
            Some(t) => Some(t.broadcast_mul(&q)?.neg()?),
            None => None,
        };
        let t = match add_opt(self.t.clone(), b)? {
            Some(t) => Some(t.broadcast_div(&o.v)?),
            None => None,
        };
        Dual::with(q, t)
    }

    /// `m · self + a` for scalars.
    pub fn affine(&self, m: f64, a: f64) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some((t * m)?),
            None => None,
        };
        Dual::with(self.v.affine(m, a)?, t)
    }

    pub fn sqr(&self) -> Result<Self> {
        self.chain(self.v.sqr()?, &(&self.v * 2.0)?)
    }

    /// `√v` (the caller keeps `v` away from 0).
    pub fn sqrt(&self) -> Result<Self> {
        let r = self.v.sqrt()?;
        let d = (r.recip()? * 0.5)?;
        self.chain(r, &d)
    }

    /// `softmax` over the last axis: `dp = p ⊙ (dr − Σ p dr)`.
    pub fn softmax_last(&self) -> Result<Self> {
        let p = candle_nn::ops::softmax(&self.v, D::Minus1)?;
        let t = match &self.t {
            Some(t) => {
                let pt = t.broadcast_mul(&p)?;
                let s = pt.sum_keepdim(D::Minus1)?;
                Some(pt.broadcast_sub(&s.broadcast_mul(&p)?)?)
            }
            None => None,
        };
        Dual::with(p, t)
    }

    /// `softplus(v)` with derivative `sigmoid(v)`.
    pub fn softplus(&self) -> Result<Self> {
        let y = crate::special::softplus(&self.v)?;
        let d = candle_nn::ops::sigmoid(&self.v)?;
        self.chain(y, &d)
    }

    /// Cumulative sum over the last axis.
    pub fn cumsum_last(&self) -> Result<Self> {
        let r = self.v.rank();
        let t = match &self.t {
            Some(t) => Some(t.cumsum(r)?),
            None => None,
        };
        Dual::with(self.v.cumsum(r - 1)?, t)
    }

    /// Sum over the last axis, kept as size 1.
    pub fn sum_keepdim_last(&self) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some(t.sum_keepdim(D::Minus1)?),
            None => None,
        };
        Dual::with(self.v.sum_keepdim(D::Minus1)?, t)
    }

    /// A slice of the last axis.
    pub fn narrow_last(&self, start: usize, len: usize) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some(t.narrow(D::Minus1, start, len)?),
            None => None,
        };
        Dual::with(self.v.narrow(D::Minus1, start, len)?, t)
    }

    /// A new unit last axis.
    pub fn unsqueeze_last(&self) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some(t.unsqueeze(t.rank())?),
            None => None,
        };
        Dual::with(self.v.unsqueeze(self.v.rank())?, t)
    }

    /// Removes a unit last axis.
    pub fn squeeze_last(&self) -> Result<Self> {
        let t = match &self.t {
            Some(t) => Some(t.squeeze(D::Minus1)?),
            None => None,
        };
        Dual::with(self.v.squeeze(D::Minus1)?, t)
    }

    /// Concatenation on the last axis (constants get zero tangents when others have some).
    pub fn cat_last(parts: &[&Dual]) -> Result<Self> {
        let vs: Vec<&Tensor> = parts.iter().map(|p| &p.v).collect();
        let v = Tensor::cat(&vs, D::Minus1)?;
        let k = parts
            .iter()
            .find_map(|p| p.t.as_ref().map(|t| t.dim(0)))
            .transpose()?;
        let t = match k {
            Some(k) => {
                let ts = parts
                    .iter()
                    .map(|p| match &p.t {
                        Some(t) => Ok(t.clone()),
                        None => {
                            let mut s = vec![k];
                            s.extend_from_slice(p.v.dims());
                            Ok(Tensor::zeros(s, p.v.dtype(), p.v.device())?)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(Tensor::cat(&ts, D::Minus1)?)
            }
            None => None,
        };
        Dual::with(v, t)
    }

    /// `where(mask, self, other)` for a `u8` mask broadcasting to both.
    pub fn select(mask: &Tensor, a: &Dual, b: &Dual) -> Result<Self> {
        let shape = crate::tensor::broadcast_shapes(a.v.dims(), b.v.dims())
            .and_then(|s| crate::tensor::broadcast_shapes(&s, mask.dims()))
            .ok_or_else(|| {
                crate::error::PplError::invalid_argument(
                    "Dual::select",
                    format!(
                        "mask {:?} and branches {:?}, {:?} do not broadcast",
                        mask.dims(),
                        a.v.dims(),
                        b.v.dims()
                    ),
                )
            })?;
        let m = mask.broadcast_as(shape.as_slice())?;
        let v = m.where_cond(
            &a.v.broadcast_as(shape.as_slice())?,
            &b.v.broadcast_as(shape.as_slice())?,
        )?;
        let k =
            a.t.as_ref()
                .or(b.t.as_ref())
                .map(|t| t.dim(0))
                .transpose()?;
        let t = match k {
            Some(k) => {
                let mut ts = vec![k];
                ts.extend_from_slice(&shape);
                let tan = |d: &Dual| -> Result<Tensor> {
                    Ok(match &d.t {
                        Some(t) => t.broadcast_as(ts.as_slice())?,
                        None => Tensor::zeros(ts.as_slice(), d.v.dtype(), d.v.device())?,
                    })
                };
                Some(
                    m.broadcast_as(ts.as_slice())?
                        .where_cond(&tan(a)?, &tan(b)?)?,
                )
            }
            None => None,
        };
        Dual::with(v, t)
    }

    /// The value clamped to `[lo, hi]`; tangents (and backward gradients) are zeroed where
    /// it was clamped and passed in full inside, the ends included (candle's `clamp` splits
    /// the gradient in half at a tie with the bound).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Self> {
        let inside = self.v.ge(lo)?.mul(&self.v.le(hi)?)?;
        let bounded = self.v.clamp(lo, hi)?.detach();
        let v = inside.where_cond(&self.v, &bounded)?;
        self.chain(v, &inside.to_dtype(self.v.dtype())?)
    }
}
