use super::common::{check_expand, common_methods, host_sample, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::PplRng;
use crate::special::{log_bessel_i0, log_bessel_i1};
use crate::tensor::broadcast_params;
use crate::validation::check_param;
use candle_core::Tensor;
use std::f64::consts::PI;
use std::sync::Arc;

/// The von Mises distribution: a circular analogue of the normal, for angle-valued latents.
///
/// Density: `p(x) = exp(κ cos(x - μ)) / (2π I₀(κ))` on `[-π, π]`.
/// Parameters: `loc` μ real, `concentration` κ >= 0 (κ = 0 is uniform on the circle).
/// Support: `[-π, π]`. `mean` is μ (the circular mean); `variance` is the circular
/// variance `1 - I₁(κ)/I₀(κ)`. Entropy `ln(2π I₀(κ)) - κ I₁(κ)/I₀(κ)`. Sampling uses Best &
/// Fisher's (1979) rejection scheme on the host (its constant ρ computed without
/// cancellation, so small concentrations sample too); κ below 1e-16 draws from the uniform
/// on the circle (total-variation error below κ) and κ above 1e6 from `N(μ, 1/κ)` wrapped
/// (error O(1/κ)). Not reparameterised. `ln I₀` and `ln I₁`
/// come from [`log_bessel_i0`] (relative accuracy about 5e-7).
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = VonMises::new(&Tensor::new(0.0f64, &Device::Cpu)?, &Tensor::new(0.0f64, &Device::Cpu)?)?;
/// let lp = d.log_prob(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?;
/// assert!((lp + (2.0 * std::f64::consts::PI).ln()).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct VonMises {
    loc: Tensor,
    concentration: Tensor,
    batch_shape: Vec<usize>,
}

impl VonMises {
    /// `VonMises(loc, concentration)`; `concentration` must be non-negative and finite.
    pub fn new(loc: &Tensor, concentration: &Tensor) -> Result<Self> {
        check_param("VonMises", "loc", loc, &Constraint::Real)?;
        check_param(
            "VonMises",
            "concentration",
            concentration,
            &Constraint::NonNegative,
        )?;
        let ([loc, concentration], batch_shape) =
            broadcast_params("VonMises", [("loc", loc), ("concentration", concentration)])?;
        Ok(Self {
            loc,
            concentration,
            batch_shape,
        })
    }
    fn bessel_ratio(&self) -> Result<Tensor> {
        let k = &self.concentration;
        Ok((log_bessel_i1(k)? - log_bessel_i0(k)?)?.exp()?)
    }
}

/// Below this concentration a draw is uniform on the circle: the total-variation distance
/// between VonMises(μ, κ) and the uniform is below κ, under the resolution of the draws.
const UNIFORM_BELOW: f64 = 1e-16;
/// Above this concentration a draw is `N(0, 1/κ)` (error O(1/κ) in the CDF).
const NORMAL_ABOVE: f64 = 1e6;

/// Best & Fisher's `ρ = (τ - √(2τ)) / (2κ)` with `τ = 1 + √(1 + 4κ²)`, written without the
/// cancellation of `τ - √(2τ)` (which rounds to 0 for κ below about 1e-8 and loses all
/// accuracy well above that): `τ - 2 = 4κ² / (s + 1)` with `s = √(1 + 4κ²)`, so
/// `ρ = 2κτ / ((s + 1)(τ + √(2τ)))`.
fn best_fisher_rho(kappa: f64) -> f64 {
    let s = (1.0 + 4.0 * kappa * kappa).sqrt();
    let tau = 1.0 + s;
    2.0 * kappa * tau / ((s + 1.0) * (tau + (2.0 * tau).sqrt()))
}

/// One draw from VonMises(0, κ) by Best & Fisher's algorithm.
fn best_fisher(rng: &mut PplRng, kappa: f64) -> f64 {
    if kappa < UNIFORM_BELOW {
        return PI * (2.0 * rng.uniform_open() - 1.0);
    }
    if kappa > NORMAL_ABOVE {
        return rng.standard_normal() / kappa.sqrt();
    }
    let rho = best_fisher_rho(kappa);
    let r = (1.0 + rho * rho) / (2.0 * rho);
    loop {
        let u1 = rng.uniform_open();
        let u2 = rng.uniform_open();
        let z = (PI * u1).cos();
        let f = (1.0 + r * z) / (r + z);
        let c = kappa * (r - f);
        if c * (2.0 - c) - u2 > 0.0 || (c / u2).ln() + 1.0 - c >= 0.0 {
            let u3 = rng.uniform_open();
            let theta = f.clamp(-1.0, 1.0).acos();
            return if u3 > 0.5 { theta } else { -theta };
        }
    }
}

/// Wraps an angle into `[-π, π]`.
fn wrap(x: f64) -> f64 {
    let y = (x + PI).rem_euclid(2.0 * PI) - PI;
    y.clamp(-PI, PI)
}

impl Distribution for VonMises {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("VonMises", loc);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let params = [&self.loc, &self.concentration];
        host_sample(
            rng,
            params,
            &self.batch_shape,
            sample_shape,
            |r, [mu, k]| wrap(mu + best_fisher(r, k)),
        )
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let c = x
            .broadcast_sub(&self.loc)?
            .cos()?
            .broadcast_mul(&self.concentration)?;
        let norm = log_bessel_i0(&self.concentration)?.affine(1.0, (2.0 * PI).ln())?;
        Ok(c.broadcast_sub(&norm)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.loc.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.bessel_ratio()?.affine(-1.0, 1.0)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let norm = log_bessel_i0(&self.concentration)?.affine(1.0, (2.0 * PI).ln())?;
        Ok((norm - (&self.concentration * self.bessel_ratio()?)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Circular
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            loc: self.loc.broadcast_as(batch_shape)?,
            concentration: self.concentration.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}

impl super::ExponentialFamily for VonMises {
    fn natural_params(&self) -> Result<Tensor> {
        let b = self.batch_shape.as_slice();
        let (m, k) = (
            self.loc.broadcast_as(b)?,
            self.concentration.broadcast_as(b)?,
        );
        super::exp_family::stack_last(&[(&k * m.cos()?)?, (&k * m.sin()?)?])
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        super::exp_family::stack_last(&[x.cos()?, x.sin()?])
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        let k = self
            .concentration
            .broadcast_as(self.batch_shape.as_slice())?
            .contiguous()?;
        Ok(log_bessel_i0(&k)?.affine(1.0, (2.0 * PI).ln())?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?)
    }
}
