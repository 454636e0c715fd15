use super::common::{check_expand, common_methods, out_shape, prepare_value, tiny};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::rng::{upload, PplRng};
use crate::special::{digamma, lgamma};
use crate::tensor::{broadcast_params, host_f64};
use crate::validation::check_param;
use candle_core::Tensor;
use rand_distr::Distribution as _;
use statrs::function::gamma::{digamma as digamma_f64, ln_gamma};
use std::sync::Arc;

/// The gamma distribution with shape (`concentration`) α and `rate` β.
///
/// Density: `p(x) = β^α x^{α-1} e^{-βx} / Γ(α)` for `x > 0`.
/// Parameters: `concentration` α > 0, `rate` β > 0. Support: `x > 0`.
///
/// Reparameterised by implicit differentiation (Figurnov et al. 2018): a standard gamma
/// draw `z ~ Gamma(α, 1)` is made on the host and `dz/dα = -(∂F/∂α)(z; α) / p(z; α)`, with
/// `F` the CDF; the sample is `z / β`. See [`standard_gamma_rsample`].
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Gamma::new(&Tensor::new(3.0f64, &Device::Cpu)?, &Tensor::new(2.0f64, &Device::Cpu)?)?;
/// assert!((d.mean()?.to_scalar::<f64>()? - 1.5).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Gamma {
    concentration: Tensor,
    rate: Tensor,
    batch_shape: Vec<usize>,
}

impl Gamma {
    /// `Gamma(concentration, rate)`; both must be positive and finite.
    pub fn new(concentration: &Tensor, rate: &Tensor) -> Result<Self> {
        check_param(
            "Gamma",
            "concentration",
            concentration,
            &Constraint::Positive,
        )?;
        check_param("Gamma", "rate", rate, &Constraint::Positive)?;
        let ([concentration, rate], batch_shape) =
            broadcast_params("Gamma", [("concentration", concentration), ("rate", rate)])?;
        Ok(Self {
            concentration,
            rate,
            batch_shape,
        })
    }
    /// α.
    pub fn concentration(&self) -> &Tensor {
        &self.concentration
    }
    /// β.
    pub fn rate(&self) -> &Tensor {
        &self.rate
    }
}

impl Distribution for Gamma {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        Some(self)
    }
    common_methods!("Gamma", concentration);
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let z = standard_gamma_rsample(rng, &self.concentration, sample_shape)?;
        Ok(z.broadcast_div(&self.rate)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let a = &self.concentration;
        let norm = ((a * self.rate.log()?)? - lgamma(a)?)?;
        let kernel =
            (x.log()?.broadcast_mul(&a.affine(1.0, -1.0)?)? - x.broadcast_mul(&self.rate)?)?;
        Ok(kernel.broadcast_add(&norm)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok((&self.concentration / &self.rate)?)
    }
    fn variance(&self) -> Result<Tensor> {
        Ok((&self.concentration / self.rate.sqr()?)?)
    }
    fn entropy(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let t = ((a - self.rate.log()?)? + lgamma(a)?)?;
        Ok((t + (a.affine(-1.0, 1.0)? * digamma(a)?)?)?)
    }
    fn support(&self) -> Constraint {
        Constraint::Positive
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        Ok(Arc::new(Self {
            concentration: self.concentration.broadcast_as(batch_shape)?,
            rate: self.rate.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        }))
    }
}

/// Above this shape, `dz/dα` uses the Wilson–Hilferty approximation instead of the series.
const SERIES_MAX_ALPHA: f64 = 2000.0;

/// `∂P(a, x)/∂a` for the regularised lower incomplete gamma function `P`, from the series
/// `P(a, x) = Σₙ tₙ`, `tₙ = exp(-x + (a+n) ln x - ln Γ(a+n+1))`, differentiated term by term:
/// `∂P/∂a = Σₙ tₙ (ln x - ψ(a+n+1))`.
fn d_gamma_cdf_d_shape(a: f64, x: f64) -> f64 {
    let lx = x.ln();
    let mut t = (-x + a * lx - ln_gamma(a + 1.0)).exp();
    let mut psi = digamma_f64(a + 1.0);
    let mut sum = t * (lx - psi);
    let mut n = 1.0;
    loop {
        t *= x / (a + n);
        psi += 1.0 / (a + n);
        let term = t * (lx - psi);
        sum += term;
        if (n > x - a && term.abs() <= 1e-17 * sum.abs()) || n > 1e6 {
            break;
        }
        n += 1.0;
    }
    sum
}

/// `dz/dα` for `z ~ Gamma(α, 1)` at fixed quantile (implicit reparameterisation).
pub(crate) fn standard_gamma_grad(a: f64, z: f64) -> f64 {
    if a > SERIES_MAX_ALPHA {
        // Wilson–Hilferty: z ≈ a (1 - 1/(9a) + ε / (3√a))³ with ε fixed by z.
        let w = (z / a).cbrt();
        let eps = 3.0 * a.sqrt() * (w - 1.0 + 1.0 / (9.0 * a));
        return w * w * w + 3.0 * a * w * w * (1.0 / (9.0 * a * a) - eps / (6.0 * a.powf(1.5)));
    }
    let log_pdf = (a - 1.0) * z.ln() - z - ln_gamma(a);
    -d_gamma_cdf_d_shape(a, z) / log_pdf.exp()
}

/// Draws `z ~ Gamma(α, 1)` of shape `sample_shape + α.shape` with gradients with respect
/// to `α` by implicit reparameterisation.
///
/// The values are drawn on the host (Marsaglia–Tsang, from the library's RNG) together
/// with `g = dz/dα`, and returned as `z + (α - stop_grad(α)) · g`: the value is exactly `z`
/// and the gradient with respect to `α` is `g`, on any device and without a custom op.
/// Samples are clamped below at the smallest positive normal number of the dtype.
pub fn standard_gamma_rsample(
    rng: &mut PplRng,
    alpha: &Tensor,
    sample_shape: &[usize],
) -> Result<Tensor> {
    let a = host_f64(alpha)?;
    let shape = out_shape(sample_shape, alpha.dims(), &[]);
    let ns: usize = sample_shape.iter().product();
    let floor = tiny(alpha.dtype());
    let mut z = Vec::with_capacity(ns * a.len());
    let mut g = Vec::with_capacity(ns * a.len());
    for _ in 0..ns {
        for &ai in &a {
            let zi = match rand_distr::Gamma::new(ai, 1.0) {
                Ok(d) => d.sample(rng.inner_mut()).max(floor),
                Err(_) => f64::NAN,
            };
            z.push(zi);
            g.push(standard_gamma_grad(ai, zi));
        }
    }
    let (dtype, device) = (alpha.dtype(), alpha.device().clone());
    let z = upload(z, &shape, dtype, &device)?;
    let g = upload(g, &shape, dtype, &device)?;
    let a_b = alpha.broadcast_as(shape.as_slice())?;
    let surrogate = (&a_b - a_b.detach())?;
    Ok((z + (surrogate * g)?)?)
}

impl super::ExponentialFamily for Gamma {
    fn natural_params(&self) -> Result<Tensor> {
        let b = self.batch_shape.as_slice();
        let (a, r) = (
            self.concentration.broadcast_as(b)?,
            self.rate.broadcast_as(b)?,
        );
        super::exp_family::stack_last(&[a.affine(1.0, -1.0)?, r.neg()?])
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        super::exp_family::stack_last(&[x.log()?, x.clone()])
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        let b = self.batch_shape.as_slice();
        let (a, r) = (
            self.concentration.broadcast_as(b)?,
            self.rate.broadcast_as(b)?,
        );
        Ok((lgamma(&a)? - (&a * r.log()?)?)?)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.zeros_like()?)
    }
}
