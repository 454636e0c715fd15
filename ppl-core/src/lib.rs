//! # ppl-core
//!
//! The foundation of the `ppl` probabilistic programming library: distributions over
//! candle tensors, the random-number generator the library owns, special functions and
//! linear algebra candle lacks, constraints, and the error type.
//!
//! A map of the crate:
//!
//! | module | what lives there |
//! |---|---|
//! | [`distributions`] | the [`Distribution`](distributions::Distribution) trait, one file per family, `Independent`/`Masked` wrappers, analytic KL |
//! | [`rng`] | [`PplRng`](rng::PplRng): seedable ChaCha8 stream; all noise is drawn here and uploaded |
//! | [`special`] | differentiable `lgamma`, `digamma`, `log1p`, `softplus`, `logit`, Bessel functions |
//! | [`linalg`] | differentiable Cholesky and triangular solve |
//! | [`constraints`] | supports and parameter domains |
//! | [`validation`] | argument checks (on by default) and the scoped opt-out |
//! | [`tensor`] | broadcasting and host-transfer helpers |
//! | [`device`] | run-time device selection (CPU, or CUDA with the `cuda` feature) |
//! | [`error`] | [`PplError`] and [`Result`] |
//!
//! ```
//! use ppl_core::prelude::*;
//! use candle_core::{DType, Device, Tensor};
//! # fn main() -> ppl_core::Result<()> {
//! let mut rng = PplRng::seed_from_u64(42);
//! let prior = Normal::standard(&[3], DType::F64, &Device::Cpu)?;
//! let z = prior.sample(&mut rng, &[])?;
//! let lp = prior.log_prob(&z)?.sum_all()?.to_scalar::<f64>()?;
//! assert!(lp.is_finite());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod constraints;
pub mod device;
pub mod distributions;
pub mod error;
pub mod linalg;
pub mod rng;
pub mod special;
pub mod tensor;
pub mod validation;

pub use error::{PplError, Result};

/// The names most programs need.
pub mod prelude {
    pub use crate::constraints::Constraint;
    pub use crate::distributions::{
        kl_divergence, Bernoulli, Beta, Binomial, Categorical, Cauchy, Delta, Dirichlet,
        Distribution, DistributionExt, DynDistribution, Exponential, Gamma, Geometric, HalfNormal,
        Independent, InverseGamma, Laplace, LogNormal, LowRankMultivariateNormal, Masked,
        MixtureSameFamily, MultivariateNormal, Normal, OneHotCategorical, Poisson,
        RelaxedBernoulli, RelaxedOneHotCategorical, StudentT, Uniform, VonMises,
    };
    pub use crate::error::{PplError, Result};
    pub use crate::rng::PplRng;
}
