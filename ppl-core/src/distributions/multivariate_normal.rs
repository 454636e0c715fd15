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

/// The multivariate normal `N(μ, Σ)` with `Σ = L Lᵀ`, parameterised by its Cholesky factor.
///
/// Density: `ln p(x) = -½ ‖L⁻¹(x - μ)‖² - Σᵢ ln Lᵢᵢ - (d/2) ln 2π`.
/// Parameters: `loc` μ `[..., d]`, `scale_tril` L `[..., d, d]` lower-triangular with a
/// positive diagonal (or a covariance via [`from_covariance`](Self::from_covariance), factored
/// by a differentiable Cholesky; or a diagonal scale via [`diagonal`](Self::diagonal), which
/// takes an O(d) fast path). `log_prob` uses a triangular solve that gradients flow through.
/// Event shape `[d]`. Reparameterised: `x = μ + L ε`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let loc = Tensor::new(&[0.0f64, 0.0], &Device::Cpu)?;
/// let cov = Tensor::new(&[[2.0f64, 0.5], [0.5, 1.0]], &Device::Cpu)?;
/// let d = MultivariateNormal::from_covariance(&loc, &cov)?;
/// let lp = d.log_prob(&loc)?.to_scalar::<f64>()?;
/// let det: f64 = 2.0 * 1.0 - 0.25;
/// assert!((lp - (-(2.0 * std::f64::consts::PI).ln() - 0.5 * det.ln())).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MultivariateNormal {
    loc: Tensor,
    /// `[..., d, d]`, or `[..., d]` holding the diagonal when `diag` is set.
    scale: Tensor,
    diag: bool,
    batch_shape: Vec<usize>,
    event_shape: [usize; 1],
}

fn split_batch(
    loc: &Tensor,
    scale: &Tensor,
    scale_event_dims: usize,
    name: &'static str,
) -> Result<(Vec<usize>, usize)> {
    let ld = loc.dims();
    let sd = scale.dims();
    let bad = || {
        shape_err(
            "MultivariateNormal",
            format!(
                "`loc` shape {} and `{name}` shape {} do not fit: expected [..., d] and [..., d{}]",
                ShapeFmt(ld),
                ShapeFmt(sd),
                if scale_event_dims == 2 { ", d" } else { "" }
            ),
        )
    };
    if ld.is_empty() || sd.len() < scale_event_dims {
        return Err(bad());
    }
    let d = ld[ld.len() - 1];
    let s_event = &sd[sd.len() - scale_event_dims..];
    if s_event.iter().any(|&x| x != d) || d == 0 {
        return Err(bad());
    }
    let batch = broadcast_shapes(&ld[..ld.len() - 1], &sd[..sd.len() - scale_event_dims])
        .ok_or_else(bad)?;
    Ok((batch, d))
}

/// Errors unless each `[d, d]` matrix of `cov` is symmetric up to `√ε · max |Σ|`.
fn check_symmetric(cov: &Tensor) -> Result<()> {
    let dims = cov.dims();
    let d = dims[dims.len() - 1];
    let eps = match cov.dtype() {
        candle_core::DType::F64 => f64::EPSILON,
        candle_core::DType::F32 => f32::EPSILON as f64,
        _ => 2f64.powi(-7), // bf16 / f16: half precision
    };
    let host = crate::tensor::host_f64(cov)?;
    for (b, m) in host.chunks(d * d).enumerate() {
        let scale = m.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let tol = eps.sqrt() * scale;
        let mut worst = (0.0f64, 0, 0);
        for i in 0..d {
            for j in 0..i {
                let gap = (m[i * d + j] - m[j * d + i]).abs();
                if gap > worst.0 {
                    worst = (gap, i, j);
                }
            }
        }
        let (gap, i, j) = worst;
        if gap > tol {
            let batch = crate::tensor::unravel(b, &dims[..dims.len() - 2]);
            return Err(crate::error::PplError::invalid_parameter(
                "MultivariateNormal",
                "covariance_matrix",
                format!(
                    "must be symmetric: largest asymmetry |Σ[{i}][{j}] - Σ[{j}][{i}]| = \
                     |{} - {}| = {gap:e} at batch index {batch:?} exceeds the tolerance \
                     √ε·max|Σ| = {tol:e}",
                    m[i * d + j],
                    m[j * d + i]
                ),
            ));
        }
    }
    Ok(())
}

impl MultivariateNormal {
    /// From `loc` `[..., d]` and a lower-triangular `scale_tril` `[..., d, d]` with positive
    /// diagonal.
    pub fn new(loc: &Tensor, scale_tril: &Tensor) -> Result<Self> {
        let (batch, d) = split_batch(loc, scale_tril, 2, "scale_tril")?;
        check_param("MultivariateNormal", "loc", loc, &Constraint::Real)?;
        check_param(
            "MultivariateNormal",
            "scale_tril",
            scale_tril,
            &Constraint::LowerCholesky,
        )?;
        Ok(Self {
            loc: loc.broadcast_as(concat_shapes(&[&batch, &[d]]))?,
            scale: scale_tril.broadcast_as(concat_shapes(&[&batch, &[d, d]]))?,
            diag: false,
            batch_shape: batch,
            event_shape: [d],
        })
    }

    /// From `loc` and a symmetric positive-definite covariance `[..., d, d]`
    /// (differentiable Cholesky factorisation).
    ///
    /// Rejects (as [`PplError::InvalidParameter`](crate::PplError::InvalidParameter) of
    /// `covariance_matrix`) shapes that do not fit `loc`, non-finite entries, and a matrix
    /// that is not positive definite. With validation on ([`crate::validation`]) it also
    /// rejects a non-symmetric matrix (the factorisation reads only the lower triangle):
    /// the largest `|Σᵢⱼ - Σⱼᵢ|` of each matrix in the batch must not exceed
    /// `√ε · max |Σ|` of that matrix, with ε the dtype's machine epsilon (about 1.5e-8
    /// relative in f64, 3.5e-4 in f32), which admits rounding from computing `A Aᵀ` or a
    /// kernel in either order; the error names the entry and the asymmetry.
    pub fn from_covariance(loc: &Tensor, covariance: &Tensor) -> Result<Self> {
        split_batch(loc, covariance, 2, "covariance_matrix")?;
        check_param(
            "MultivariateNormal",
            "covariance_matrix",
            covariance,
            &Constraint::Real,
        )?;
        if crate::validation::is_enabled() {
            check_symmetric(covariance)?;
        }
        let l = cholesky(covariance).map_err(|e| match e {
            crate::error::PplError::Linalg { reason, .. } => {
                crate::error::PplError::invalid_parameter(
                    "MultivariateNormal",
                    "covariance_matrix",
                    reason,
                )
            }
            other => other,
        })?;
        Self::new(loc, &l)
    }

    /// Independent coordinates: `Σ = diag(scale_diag²)` with `scale_diag` `[..., d]` > 0.
    /// `log_prob`, sampling and entropy take an O(d) path.
    pub fn diagonal(loc: &Tensor, scale_diag: &Tensor) -> Result<Self> {
        let (batch, d) = split_batch(loc, scale_diag, 1, "scale_diag")?;
        check_param("MultivariateNormal", "loc", loc, &Constraint::Real)?;
        check_param(
            "MultivariateNormal",
            "scale_diag",
            scale_diag,
            &Constraint::Positive,
        )?;
        let full = concat_shapes(&[&batch, &[d]]);
        Ok(Self {
            loc: loc.broadcast_as(full.as_slice())?,
            scale: scale_diag.broadcast_as(full.as_slice())?,
            diag: true,
            batch_shape: batch,
            event_shape: [d],
        })
    }

    /// μ `[..., d]`.
    pub fn loc(&self) -> &Tensor {
        &self.loc
    }

    /// The Cholesky factor L `[..., d, d]` (materialised for the diagonal form).
    pub fn scale_tril(&self) -> Result<Tensor> {
        if self.diag {
            let eye = Tensor::eye(
                self.event_shape[0],
                self.dtype(),
                &self.loc.device().clone(),
            )?;
            Ok(self.scale.unsqueeze(D::Minus1)?.broadcast_mul(&eye)?)
        } else {
            Ok(self.scale.clone())
        }
    }

    /// The covariance `Σ = L Lᵀ` `[..., d, d]`.
    pub fn covariance(&self) -> Result<Tensor> {
        let l = self.scale_tril()?.contiguous()?;
        Ok(l.matmul(&l.t()?)?)
    }

    /// `Σᵢ ln Lᵢᵢ = ½ ln det Σ`, shape `batch_shape`.
    pub fn half_log_det(&self) -> Result<Tensor> {
        let d = if self.diag {
            self.scale.clone()
        } else {
            diagonal(&self.scale)?
        };
        Ok(d.log()?.sum(D::Minus1)?)
    }

    /// `L⁻¹ v` for `v` `[..., d]` (batch dims broadcast).
    pub fn whiten(&self, v: &Tensor) -> Result<Tensor> {
        if self.diag {
            return Ok(v.broadcast_div(&self.scale)?);
        }
        Ok(solve_lower_triangular(&self.scale, &v.unsqueeze(D::Minus1)?)?.squeeze(D::Minus1)?)
    }
}

impl Distribution for MultivariateNormal {
    common_methods!("MultivariateNormal", loc);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &self.event_shape);
        let eps = rng.normal_tensor(&shape, self.dtype(), &self.device())?;
        let corr = if self.diag {
            eps.broadcast_mul(&self.scale)?
        } else {
            matvec(&self.scale, &eps)?
        };
        Ok(corr.broadcast_add(&self.loc)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let y = self.whiten(&x.broadcast_sub(&self.loc)?)?;
        let d = self.event_shape[0] as f64;
        let m = y.sqr()?.sum(D::Minus1)?.affine(-0.5, -d * HALF_LN_2PI)?;
        Ok(m.broadcast_sub(&self.half_log_det()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        if self.diag {
            return Ok(self.scale.sqr()?);
        }
        Ok(self.scale.sqr()?.sum(D::Minus1)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let d = self.event_shape[0] as f64;
        Ok(self.half_log_det()?.affine(1.0, d * (0.5 + HALF_LN_2PI))?)
    }
    fn support(&self) -> Constraint {
        Constraint::RealVector
    }
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(Self {
            loc: self.loc.detach(),
            scale: self.scale.detach(),
            ..self.clone()
        }))
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let d = self.event_shape[0];
        let scale_event: &[usize] = if self.diag { &[d] } else { &[d, d] };
        Ok(Arc::new(Self {
            loc: self.loc.broadcast_as(concat_shapes(&[batch_shape, &[d]]))?,
            scale: self
                .scale
                .broadcast_as(concat_shapes(&[batch_shape, scale_event]))?,
            diag: self.diag,
            batch_shape: batch_shape.to_vec(),
            event_shape: self.event_shape,
        }))
    }
}
