//! Probability distributions over candle tensors.
//!
//! Every family implements the object-safe [`Distribution`] trait, so traces can hold any
//! family as a [`DynDistribution`] (`Arc<dyn Distribution>`). Shapes follow Pyro/PyTorch:
//! a sample has shape `sample_shape + batch_shape + event_shape`; `log_prob` returns
//! `broadcast(value batch dims, batch_shape)`; parameters broadcast against each other.
//!
//! | family | reparameterised `sample` | support |
//! |---|---|---|
//! | [`Normal`], [`LogNormal`], [`HalfNormal`], [`Laplace`], [`Cauchy`], [`Uniform`], [`Exponential`] | yes (location-scale noise) | see each |
//! | [`MultivariateNormal`], [`LowRankMultivariateNormal`] | yes | real vectors |
//! | [`Gamma`], [`InverseGamma`], [`Beta`], [`Dirichlet`], [`StudentT`] | yes (implicit reparameterisation) | see each |
//! | [`RelaxedBernoulli`], [`RelaxedOneHotCategorical`] | yes (Concrete / Gumbel-softmax) | `(0,1)`, simplex |
//! | [`Delta`] | yes (gradient flows to the point) | real |
//! | [`ImproperUniform`] | no (cannot be sampled: improper; `log_prob` = 0) | reals |
//! | [`Bernoulli`], [`Categorical`], [`OneHotCategorical`], [`Binomial`], [`Poisson`], [`Geometric`], [`VonMises`], [`MixtureSameFamily`] | no (samples are detached) | see each |
//!
//! Wrappers: [`Independent`] (`to_event(n)`), [`Masked`] (`mask(m)`),
//! [`TransformedDistribution`] (`f(x)` for a bijection from [`crate::transforms`]);
//! `expand` on every family; `detach` on the Gaussian families and the wrappers. Analytic KL divergences: [`kl_divergence`].
//!
//! Discrete samples are returned in the parameters' float dtype (like NumPyro's
//! enumeration-friendly values); `log_prob` accepts float or integer dtypes.
//!
//! ```
//! use ppl_core::prelude::*;
//! use candle_core::{Device, Tensor};
//! # fn main() -> ppl_core::Result<()> {
//! let loc = Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu)?;
//! let scale = Tensor::ones(3, candle_core::DType::F64, &Device::Cpu)?;
//! let d = Normal::new(&loc, &scale)?.to_event(1)?;
//! let mut rng = PplRng::seed_from_u64(0);
//! let x = d.sample(&mut rng, &[5])?;          // shape [5, 3]
//! assert_eq!(x.dims(), &[5, 3]);
//! assert_eq!(d.log_prob(&x)?.dims(), &[5]);  // event dim summed
//! # Ok(()) }
//! ```

use crate::constraints::Constraint;
use crate::error::{not_available, Result};
use crate::rng::PplRng;
use candle_core::{DType, Device, Tensor};
use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

mod bernoulli;
mod beta;
mod binomial;
mod categorical;
mod cauchy;
pub(crate) mod common;
mod delta;
mod dirichlet;
mod exp_family;
mod exponential;
mod gamma;
mod geometric;
mod half_normal;
mod improper_uniform;
mod independent;
mod inverse_gamma;
mod kl;
mod laplace;
mod log_normal;
mod low_rank_mvn;
mod masked;
mod mixture;
mod multivariate_normal;
mod normal;
mod one_hot_categorical;
mod poisson;
mod relaxed_bernoulli;
mod relaxed_one_hot;
mod student_t;
mod transformed;
mod uniform;
mod unit;
mod von_mises;

pub use bernoulli::Bernoulli;
pub use beta::Beta;
pub use binomial::Binomial;
pub use categorical::Categorical;
pub use cauchy::Cauchy;
pub use delta::Delta;
pub use dirichlet::Dirichlet;
pub use exp_family::ExponentialFamily;
pub use exponential::Exponential;
pub use gamma::{standard_gamma_rsample, Gamma};
pub use geometric::Geometric;
pub use half_normal::HalfNormal;
pub use improper_uniform::ImproperUniform;
pub use independent::Independent;
pub use inverse_gamma::InverseGamma;
pub use kl::kl_divergence;
pub use laplace::Laplace;
pub use log_normal::LogNormal;
pub use low_rank_mvn::LowRankMultivariateNormal;
pub use masked::Masked;
pub use mixture::MixtureSameFamily;
pub use multivariate_normal::MultivariateNormal;
pub use normal::Normal;
pub use one_hot_categorical::OneHotCategorical;
pub use poisson::Poisson;
pub use relaxed_bernoulli::RelaxedBernoulli;
pub use relaxed_one_hot::RelaxedOneHotCategorical;
pub use student_t::StudentT;
pub use transformed::TransformedDistribution;
pub use uniform::Uniform;
pub use unit::Unit;
pub use von_mises::VonMises;

/// A shared, type-erased distribution, as held by traces.
pub type DynDistribution = Arc<dyn Distribution>;

/// A probability distribution over tensors. Object-safe.
pub trait Distribution: Send + Sync + Debug + Any {
    /// The family name, e.g. `"Normal"` (used in error messages).
    fn family(&self) -> &'static str;
    /// Shape of independent, not identically distributed draws.
    fn batch_shape(&self) -> &[usize];
    /// Shape of a single draw (`[]` for scalar families).
    fn event_shape(&self) -> &[usize];
    /// Whether [`sample`](Distribution::sample) is reparameterised, i.e. differentiable with
    /// respect to the parameters.
    fn has_rsample(&self) -> bool;
    /// Draws samples of shape `sample_shape + batch_shape + event_shape`, with noise from
    /// `rng`. Reparameterised families return a tensor that gradients flow through; the
    /// others return a detached tensor.
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor>;
    /// Log density (or mass) of `value`, whose shape ends with the event shape and whose
    /// other dims broadcast with the batch shape. Returns the broadcast batch shape.
    fn log_prob(&self, value: &Tensor) -> Result<Tensor>;
    /// The mean, of shape `batch_shape + event_shape`.
    fn mean(&self) -> Result<Tensor> {
        Err(not_available(self.family(), "mean", "is not implemented"))
    }
    /// The variance (element-wise), of shape `batch_shape + event_shape`.
    fn variance(&self) -> Result<Tensor> {
        Err(not_available(
            self.family(),
            "variance",
            "is not implemented",
        ))
    }
    /// The differential (or discrete) entropy, of shape `batch_shape`.
    fn entropy(&self) -> Result<Tensor> {
        Err(not_available(
            self.family(),
            "entropy",
            "has no closed form",
        ))
    }
    /// The support.
    fn support(&self) -> Constraint;
    /// The same family with parameters broadcast to a larger `batch_shape`.
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution>;
    /// The device of the parameters.
    fn device(&self) -> Device;
    /// The dtype of the parameters (and of samples).
    fn dtype(&self) -> DType;
    /// `self` as `Any`, for downcasting (used by [`kl_divergence`]).
    fn as_any(&self) -> &dyn Any;
    /// The same distribution with its parameters detached from the autodiff graph (the
    /// doubly-reparameterised IWAE gradient evaluates `log q` this way). Implemented for
    /// the families autoguides and amortised guides use; a typed error otherwise.
    fn detach(&self) -> Result<DynDistribution> {
        Err(not_available(
            self.family(),
            "detach",
            "is not implemented for this family",
        ))
    }
    /// The exponential-family form `h(x) exp(⟨η, T(x)⟩ − A(η))` when the family has one
    /// ([`ExponentialFamily`]: Normal, Bernoulli, Poisson, Categorical, Gamma, Beta,
    /// VonMises, and [`Independent`] of those); `None` otherwise.
    fn exponential_family(&self) -> Option<&dyn ExponentialFamily> {
        None
    }
}

/// Chainable conversions available on every distribution and on [`DynDistribution`].
pub trait DistributionExt: Sized {
    /// Type-erases into a shared [`DynDistribution`].
    fn into_dyn(self) -> DynDistribution;

    /// Reinterprets the rightmost `n` batch dims as event dims (an [`Independent`]).
    fn to_event(self, n: usize) -> Result<Independent> {
        Independent::new(self.into_dyn(), n)
    }

    /// Masks `log_prob` with `mask` (non-zero = keep), broadcastable to the batch shape.
    fn mask(self, mask: &Tensor) -> Result<Masked> {
        Masked::new(self.into_dyn(), mask)
    }
}

impl<T: Distribution> DistributionExt for T {
    fn into_dyn(self) -> DynDistribution {
        Arc::new(self)
    }
}

impl DistributionExt for DynDistribution {
    fn into_dyn(self) -> DynDistribution {
        self
    }
}
