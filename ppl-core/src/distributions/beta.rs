use super::common::{check_expand, clamp_probs, common_methods, prepare_value};
use super::gamma::standard_gamma_rsample;
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{digamma, log1p, log_beta};
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use std::sync::Arc;

/// The beta distribution.
///
/// Density: `p(x) = x^{a-1} (1-x)^{b-1} / B(a, b)` on `[0, 1]`.
/// Parameters: `concentration1` a > 0, `concentration0` b > 0. Support: `[0, 1]`.
/// Reparameterised: `x = X / (X + Y)` with `X ~ Gamma(a, 1)`, `Y ~ Gamma(b, 1)` drawn with
/// implicit reparameterisation gradients, clamped to `[ε, 1-ε]` (ε the dtype's epsilon).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Beta::new(&Tensor::new(2.0f64, &Device::Cpu)?, &Tensor::new(6.0f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 0.25).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Beta {
    concentration1: Tensor,
    concentration0: Tensor,
    batch_shape: Vec<usize>,
}

impl Beta {
    /// `Beta(concentration1, concentration0)`; both must be positive and finite.
    pub fn new(concentration1: &Tensor, concentration0: &Tensor) -> Result<Self> {
        check_param(
            "Beta",
            "concentration1",
            concentration1,
            &Constraint::Positive,
        )?;
        check_param(
            "Beta",
            "concentration0",
            concentration0,
            &Constraint::Positive,
        )?;
        let ([concentration1, concentration0], batch_shape) = broadcast_params(
            "Beta",
            [
                ("concentration1", concentration1),
                ("concentration0", concentration0),
            ],
        )?;
        Ok(Self {
            concentration1,
            concentration0,
            batch_shape,
        })
    }
    /// a (the exponent of `x`).
    pub fn concentration1(&self) -> &Tensor {
        &self.concentration1
    }
    /// b (the exponent of `1 - x`).
    pub fn concentration0(&self) -> &Tensor {
        &self.concentration0
    }
    fn total(&self) -> Result<Tensor> {
        Ok((&self.concentration1 + &self.concentration0)?)
    }
}

impl Distribution for Beta {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Beta", concentration1);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let x = standard_gamma_rsample(rng, &self.concentration1, sample_shape)?;
        let y = standard_gamma_rsample(rng, &self.concentration0, sample_shape)?;
        // With a small concentration, x/(x+y) can round to exactly 0 or 1, where the
        // density may be infinite: keep samples inside the open interval (like Pyro).
        clamp_probs(&(&x / (&x + &y)?)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let (a, b) = (&self.concentration1, &self.concentration0);
        let t1 = x.log()?.broadcast_mul(&a.affine(1.0, -1.0)?)?;
        let t0 = log1p(&x.neg()?)?.broadcast_mul(&b.affine(1.0, -1.0)?)?;
        Ok((t1 + t0)?.broadcast_sub(&log_beta(a, b)?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((&self.concentration1 / self.total()?)?)
    }
    fn variance(&self) -> Result<Tensor> {
        let t = self.total()?;
        let num = (&self.concentration1 * &self.concentration0)?;
        Ok((num / (t.sqr()? * t.affine(1.0, 1.0)?)?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let (a, b) = (&self.concentration1, &self.concentration0);
        let t = self.total()?;
        let h = (log_beta(a, b)? - (a.affine(1.0, -1.0)? * digamma(a)?)?)?;
        let h = (h - (b.affine(1.0, -1.0)? * digamma(b)?)?)?;
        Ok((h + (t.affine(1.0, -2.0)? * digamma(&t)?)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::UnitInterval
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            concentration1: self.concentration1.broadcast_as(batch_shape)?,
            concentration0: self.concentration0.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}

impl super::ExponentialFamily for Beta {
    fn natural_params(&self) -> Result<Tensor> {
        let b = self.batch_shape.as_slice();
        let (a, c) = (
            self.concentration1.broadcast_as(b)?,
            self.concentration0.broadcast_as(b)?,
        );
        super::exp_family::stack_last(&[a.affine(1.0, -1.0)?, c.affine(1.0, -1.0)?])
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        super::exp_family::stack_last(&[x.log()?, log1p(&x.neg()?)?])
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        let b = self.batch_shape.as_slice();
        log_beta(
            &self.concentration1.broadcast_as(b)?,
            &self.concentration0.broadcast_as(b)?,
        )
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?)
    }
}
