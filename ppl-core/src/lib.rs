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
//! | [`ctx`] | [`Ctx`](ctx::Ctx): the explicit run context (handler stack, RNG, params, device) and the primitives |
//! | [`message`] | the [`Message`](message::Message) a site sends through the handlers, plate frames |
//! | [`handlers`] | the [`Handler`](handlers::Handler) trait, one file per handler: trace, replay, condition, substitute, block, scale, mask, seed, scope, plate, stop-gradient |
//! | [`trace`] | [`Trace`](trace::Trace) and [`Site`](trace::Site): log joint, filters, per-plate log densities, shape table |
//! | [`site`] | [`SiteName`](site::SiteName) (allocation-free literal and indexed names) and [`SiteKind`](site::SiteKind) |
//! | [`choices`] | [`ChoiceMap`](choices::ChoiceMap): values by site name |
//! | [`model`] | the [`Model`](model::Model) trait; `simulate`, `generate`, `assess` |
//! | [`compat`] | [`check_guide`](compat::check_guide): model/guide compatibility |
//! | [`params`] | [`ParamStore`](params::ParamStore): constrained parameters on a `VarMap`, safetensors save/load |
//! | [`transforms`] | bijections onto constrained supports ([`biject_to`](transforms::biject_to)) |
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

pub mod choices;
pub mod compat;
pub mod constraints;
pub mod ctx;
pub mod device;
pub mod distributions;
pub mod error;
pub mod handlers;
pub mod linalg;
pub mod message;
pub mod model;
pub mod params;
pub mod rng;
pub mod site;
pub mod special;
pub mod tensor;
pub mod trace;
pub mod transforms;
pub mod validation;

pub use error::{PplError, Result};

/// The names most programs need.
pub mod prelude {
    pub use crate::choices::ChoiceMap;
    pub use crate::compat::check_guide;
    pub use crate::constraints::Constraint;
    pub use crate::ctx::{Ctx, PlateOpts};
    pub use crate::distributions::{
        kl_divergence, Bernoulli, Beta, Binomial, Categorical, Cauchy, Delta, Dirichlet,
        Distribution, DistributionExt, DynDistribution, Exponential, Gamma, Geometric, HalfNormal,
        Independent, InverseGamma, Laplace, LogNormal, LowRankMultivariateNormal, Masked,
        MixtureSameFamily, MultivariateNormal, Normal, OneHotCategorical, Poisson,
        RelaxedBernoulli, RelaxedOneHotCategorical, StudentT, Uniform, Unit, VonMises,
    };
    pub use crate::error::{PplError, Result};
    pub use crate::model::{assess, generate, simulate, Model};
    pub use crate::params::ParamStore;
    pub use crate::rng::PplRng;
    pub use crate::site::{SiteKind, SiteName};
    pub use crate::trace::{Site, Trace};
}
