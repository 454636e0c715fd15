use super::common::{common_methods, prepare_value, LocScale};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::HALF_LN_2PI;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// The normal (Gaussian) distribution `N(loc, scale²)`.
///
/// Density: `p(x) = exp(-(x - μ)² / (2σ²)) / (σ √(2π))`.
/// Parameters: `loc` μ real, `scale` σ > 0, broadcast together. Support: the reals.
/// Reparameterised: `x = μ + σ ε`, `ε ~ N(0, 1)` drawn from the library's RNG.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, DType, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Normal::new(&Tensor::new(1.0f64, &Device::Cpu)?, &Tensor::new(2.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp - (-(2.0f64).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln())).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Normal {
    p: LocScale,
    /// Built by [`Normal::standard`]: `loc = 0` and `scale = 1` are known, so `log_prob`
    /// skips standardising (two ops and their backward fewer on the VAE prior).
    standard: bool,
}

impl Normal {
    /// `N(loc, scale²)`; errors on non-finite `loc`, non-positive or non-finite `scale`, or
    /// shapes that do not broadcast.
    pub fn new(loc: &Tensor, scale: &Tensor) -> Result<Self> {
        Ok(Self {
            p: LocScale::new("Normal", loc, scale)?,
            standard: false,
        })
    }

    /// The standard normal `N(0, 1)` with the given batch shape. Sampling returns the noise
    /// itself and `log_prob` skips standardising.
    pub fn standard(batch_shape: &[usize], dtype: DType, device: &Device) -> Result<Self> {
        let loc = Tensor::zeros(batch_shape, dtype, device)?;
        let scale = Tensor::ones(batch_shape, dtype, device)?;
        Ok(Self {
            standard: true,
            ..Self::new(&loc, &scale)?
        })
    }

    /// The location μ.
    pub fn loc(&self) -> &Tensor {
        &self.p.loc
    }

    /// The scale σ.
    pub fn scale(&self) -> &Tensor {
        &self.p.scale
    }
}

impl Distribution for Normal {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Normal", p.loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        if self.standard {
            return self.p.noise(rng, sample_shape, PplRng::standard_normal);
        }
        self.p
            .sample_with(rng, sample_shape, PplRng::standard_normal)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        if self.standard {
            // −x²/2 − ln √(2π), broadcast to the batch shape like the general case.
            let lp = x.sqr()?.affine(-0.5, -HALF_LN_2PI)?;
            let shape = crate::tensor::broadcast_shapes(lp.dims(), &self.p.batch_shape)
                .unwrap_or_else(|| lp.dims().to_vec());
            return Ok(if shape == lp.dims() {
                lp
            } else {
                lp.broadcast_as(shape)?.contiguous()?
            });
        }
        // On the CPU (f32/f64, value, loc and scale of one shape) one fused node each way.
        if let Some(lp) = crate::fused::normal_log_prob(&x, &self.p.loc, &self.p.scale)? {
            return Ok(lp);
        }
        let z = self.p.standardize(&x)?;
        let lp = z.sqr()?.affine(-0.5, -HALF_LN_2PI)?;
        Ok(lp.broadcast_sub(&self.p.scale.log()?)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.p.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.p.scale.sqr()?)
    }
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(Normal {
            standard: self.standard,
            p: LocScale {
                loc: self.p.loc.detach(),
                scale: self.p.scale.detach(),
                batch_shape: self.p.batch_shape.clone(),
            },
        }))
    }
    fn entropy(&self) -> Result<Tensor> {
        Ok(self.p.scale.log()?.affine(1.0, 0.5 + HALF_LN_2PI)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Ok(Arc::new(Self {
            p: self.p.expand(self.family(), batch_shape)?,
            standard: self.standard,
        }))
    }
}

impl super::ExponentialFamily for Normal {
    fn natural_params(&self) -> Result<Tensor> {
        let b = self.p.batch_shape.as_slice();
        let (loc, scale) = (self.p.loc.broadcast_as(b)?, self.p.scale.broadcast_as(b)?);
        let prec = scale.sqr()?.recip()?;
        super::exp_family::stack_last(&[(&loc * &prec)?, prec.affine(-0.5, 0.0)?])
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        super::exp_family::stack_last(&[x.clone(), x.sqr()?])
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        let b = self.p.batch_shape.as_slice();
        let (loc, scale) = (self.p.loc.broadcast_as(b)?, self.p.scale.broadcast_as(b)?);
        Ok(((loc.sqr()? / scale.sqr()?.affine(2.0, 0.0)?)? + scale.log()?)?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?.affine(1.0, -HALF_LN_2PI)?)
    }
}
