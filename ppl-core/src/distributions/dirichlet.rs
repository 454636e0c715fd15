use super::common::{check_expand, common_methods, prepare_value};
use super::gamma::standard_gamma_rsample;
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::special::{digamma, lgamma};
use crate::tensor::concat_shapes;
use crate::validation::check_param;
use candle_core::{Tensor, D};
use std::sync::Arc;

/// The Dirichlet distribution over the probability simplex.
///
/// Density: `p(x) = Γ(α₀) / Πₖ Γ(αₖ) · Πₖ xₖ^{αₖ-1}`, `α₀ = Σₖ αₖ`.
/// Parameter: `concentration` α `[..., K]`, all > 0 (the last dim is the event dim).
/// Support: the simplex. Reparameterised: `K` implicit-reparameterised gamma draws,
/// normalised.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Dirichlet::new(&Tensor::new(&[1.0f64, 2.0, 5.0], &Device::Cpu)?)?;
/// assert_eq!(d.event_shape(), &[3]);
/// assert!((d.mean()?.to_vec1::<f64>()?[2] - 0.625).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Dirichlet {
    concentration: Tensor,
    batch_shape: Vec<usize>,
    event_shape: [usize; 1],
}

impl Dirichlet {
    /// `Dirichlet(concentration)`; `concentration` must have at least one dimension and be
    /// positive and finite.
    pub fn new(concentration: &Tensor) -> Result<Self> {
        let dims = concentration.dims();
        if dims.is_empty() || dims[dims.len() - 1] == 0 {
            return Err(shape_err(
                "Dirichlet",
                format!(
                    "parameter `concentration` must have shape [..., K] with K >= 1, got {}",
                    ShapeFmt(dims)
                ),
            ));
        }
        check_param(
            "Dirichlet",
            "concentration",
            concentration,
            &Constraint::Positive,
        )?;
        Ok(Self {
            concentration: concentration.clone(),
            batch_shape: dims[..dims.len() - 1].to_vec(),
            event_shape: [dims[dims.len() - 1]],
        })
    }
    /// α.
    pub fn concentration(&self) -> &Tensor {
        &self.concentration
    }
    fn total(&self) -> Result<Tensor> {
        Ok(self.concentration.sum_keepdim(D::Minus1)?)
    }
}

impl Distribution for Dirichlet {
    common_methods!("Dirichlet", concentration);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let g = standard_gamma_rsample(rng, &self.concentration, sample_shape)?;
        Ok(g.broadcast_div(&g.sum_keepdim(D::Minus1)?)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let a = &self.concentration;
        let kernel = x
            .log()?
            .broadcast_mul(&a.affine(1.0, -1.0)?)?
            .sum(D::Minus1)?;
        let norm = (lgamma(&a.sum(D::Minus1)?)? - lgamma(a)?.sum(D::Minus1)?)?;
        Ok(kernel.broadcast_add(&norm)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.concentration.broadcast_div(&self.total()?)?)
    }
    fn variance(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let t = self.total()?;
        let num = a.broadcast_mul(&a.broadcast_sub(&t)?.neg()?)?;
        Ok(num.broadcast_div(&(t.sqr()? * t.affine(1.0, 1.0)?)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let k = self.event_shape[0] as f64;
        let t = a.sum(D::Minus1)?;
        let log_b = (lgamma(a)?.sum(D::Minus1)? - lgamma(&t)?)?;
        let h = (log_b + (t.affine(1.0, -k)? * digamma(&t)?)?)?;
        Ok((h - (a.affine(1.0, -1.0)? * digamma(a)?)?.sum(D::Minus1)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Simplex
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let full = concat_shapes(&[batch_shape, &self.event_shape]);
        Ok(Arc::new(Self {
            concentration: self.concentration.broadcast_as(full)?,
            batch_shape: batch_shape.to_vec(),
            event_shape: self.event_shape,
        }))
    }
}
