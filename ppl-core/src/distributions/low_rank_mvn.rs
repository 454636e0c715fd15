use super::common::{check_expand, common_methods, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result, ShapeFmt};
use crate::linalg::{cholesky, diagonal, matvec, solve_lower_triangular};
use crate::rng::PplRng;
use crate::special::HALF_LN_2PI;
use crate::tensor::{broadcast_shapes, concat_shapes};
use crate::validation::check_param;
use candle_core::{Tensor, D};
use std::sync::Arc;

/// A multivariate normal with low-rank-plus-diagonal covariance `Σ = W Wᵀ + diag(D)`.
///
/// Parameters: `loc` `[..., d]`, `cov_factor` W `[..., d, r]`, `cov_diag` D `[..., d]` > 0.
/// `log_prob` costs O(d r²) through the Woodbury identity and the matrix determinant lemma
/// with the capacitance `C = I + Wᵀ D⁻¹ W` (`r × r`, factored by a differentiable
/// Cholesky): `ln det Σ = Σ ln D + ln det C`, `xᵀ Σ⁻¹ x = xᵀ D⁻¹ x - ‖L_C⁻¹ Wᵀ D⁻¹ x‖²`.
/// Event shape `[d]`. Reparameterised: `x = μ + W ε_r + √D ε_d`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let loc = Tensor::new(&[0.0f64, 0.0], &Device::Cpu)?;
/// let w = Tensor::new(&[[1.0f64], [1.0]], &Device::Cpu)?;
/// let diag = Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?;
/// let d = LowRankMultivariateNormal::new(&loc, &w, &diag)?;
/// assert_eq!(d.variance()?.to_vec1::<f64>()?, vec![2.0, 2.0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LowRankMultivariateNormal {
    loc: Tensor,
    cov_factor: Tensor,
    cov_diag: Tensor,
    batch_shape: Vec<usize>,
    event_shape: [usize; 1],
}

impl LowRankMultivariateNormal {
    /// From `loc` `[..., d]`, `cov_factor` `[..., d, r]` and `cov_diag` `[..., d]`.
    pub fn new(loc: &Tensor, cov_factor: &Tensor, cov_diag: &Tensor) -> Result<Self> {
        let (ld, wd, dd) = (loc.dims(), cov_factor.dims(), cov_diag.dims());
        let bad = || {
            shape_err(
                "LowRankMultivariateNormal",
                format!(
                    "shapes do not fit: `loc` {}, `cov_factor` {}, `cov_diag` {} \
                     (expected [..., d], [..., d, r], [..., d])",
                    ShapeFmt(ld),
                    ShapeFmt(wd),
                    ShapeFmt(dd)
                ),
            )
        };
        if ld.is_empty() || wd.len() < 2 || dd.is_empty() {
            return Err(bad());
        }
        let d = ld[ld.len() - 1];
        let r = wd[wd.len() - 1];
        if wd[wd.len() - 2] != d || dd[dd.len() - 1] != d || d == 0 || r == 0 {
            return Err(bad());
        }
        let batch = broadcast_shapes(&ld[..ld.len() - 1], &wd[..wd.len() - 2])
            .and_then(|b| broadcast_shapes(&b, &dd[..dd.len() - 1]))
            .ok_or_else(bad)?;
        check_param("LowRankMultivariateNormal", "loc", loc, &Constraint::Real)?;
        check_param(
            "LowRankMultivariateNormal",
            "cov_factor",
            cov_factor,
            &Constraint::Real,
        )?;
        check_param(
            "LowRankMultivariateNormal",
            "cov_diag",
            cov_diag,
            &Constraint::Positive,
        )?;
        let vec_shape = concat_shapes(&[&batch, &[d]]);
        Ok(Self {
            loc: loc.broadcast_as(vec_shape.as_slice())?,
            cov_factor: cov_factor.broadcast_as(concat_shapes(&[&batch, &[d, r]]))?,
            cov_diag: cov_diag.broadcast_as(vec_shape.as_slice())?,
            batch_shape: batch,
            event_shape: [d],
        })
    }

    /// The dense covariance `W Wᵀ + diag(D)` `[..., d, d]`.
    pub fn covariance(&self) -> Result<Tensor> {
        let d = self.event_shape[0];
        let eye = Tensor::eye(d, self.dtype(), &self.device())?;
        let w = self.cov_factor.contiguous()?;
        let ww = w.matmul(&w.t()?)?;
        Ok((ww + self.cov_diag.unsqueeze(D::Minus1)?.broadcast_mul(&eye)?)?)
    }

    /// `(Wᵀ D⁻¹ [..., r, d], cholesky(I + Wᵀ D⁻¹ W) [..., r, r])`.
    fn capacitance(&self) -> Result<(Tensor, Tensor)> {
        let r = self.cov_factor.dim(D::Minus1)?;
        let w = self.cov_factor.contiguous()?;
        let wt_dinv = w
            .broadcast_div(&self.cov_diag.unsqueeze(D::Minus1)?)?
            .t()?
            .contiguous()?;
        let eye = Tensor::eye(r, self.dtype(), &self.device())?;
        let c = wt_dinv.matmul(&w)?.broadcast_add(&eye)?;
        Ok((wt_dinv, cholesky(&c)?))
    }

    fn log_det(&self, chol_c: &Tensor) -> Result<Tensor> {
        let ld = self.cov_diag.log()?.sum(D::Minus1)?;
        Ok((ld + diagonal(chol_c)?.log()?.sum(D::Minus1)?.affine(2.0, 0.0)?)?)
    }
}

impl Distribution for LowRankMultivariateNormal {
    common_methods!("LowRankMultivariateNormal", loc);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let r = self.cov_factor.dim(D::Minus1)?;
        let shape = out_shape(sample_shape, &self.batch_shape, &self.event_shape);
        let wshape = out_shape(sample_shape, &self.batch_shape, &[r]);
        let (dt, dev) = (self.dtype(), self.device());
        let eps_w = rng.normal_tensor(&wshape, dt, &dev)?;
        let eps_d = rng.normal_tensor(&shape, dt, &dev)?;
        let low = matvec(&self.cov_factor, &eps_w)?;
        let diag = eps_d.broadcast_mul(&self.cov_diag.sqrt()?)?;
        Ok((low + diag)?.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let diff = x.broadcast_sub(&self.loc)?;
        let (wt_dinv, chol_c) = self.capacitance()?;
        let m1 = diff.sqr()?.broadcast_div(&self.cov_diag)?.sum(D::Minus1)?;
        let proj = matvec(&wt_dinv, &diff)?.unsqueeze(D::Minus1)?;
        let m2 = solve_lower_triangular(&chol_c, &proj)?
            .sqr()?
            .sum((D::Minus2, D::Minus1))?;
        let d = self.event_shape[0] as f64;
        let maha = (m1 - m2)?;
        Ok(maha
            .affine(-0.5, -d * HALF_LN_2PI)?
            .broadcast_sub(&self.log_det(&chol_c)?.affine(0.5, 0.0)?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok((self.cov_factor.sqr()?.sum(D::Minus1)? + &self.cov_diag)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let (_, chol_c) = self.capacitance()?;
        let d = self.event_shape[0] as f64;
        Ok(self
            .log_det(&chol_c)?
            .affine(0.5, d * (0.5 + HALF_LN_2PI))?)
    }
    fn support(&self) -> Constraint {
        Constraint::RealVector
    }
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(Self {
            loc: self.loc.detach(),
            cov_factor: self.cov_factor.detach(),
            cov_diag: self.cov_diag.detach(),
            ..self.clone()
        }))
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let d = self.event_shape[0];
        let r = self.cov_factor.dim(D::Minus1)?;
        Ok(Arc::new(Self {
            loc: self.loc.broadcast_as(concat_shapes(&[batch_shape, &[d]]))?,
            cov_factor: self
                .cov_factor
                .broadcast_as(concat_shapes(&[batch_shape, &[d, r]]))?,
            cov_diag: self
                .cov_diag
                .broadcast_as(concat_shapes(&[batch_shape, &[d]]))?,
            batch_shape: batch_shape.to_vec(),
            event_shape: self.event_shape,
        }))
    }
}
