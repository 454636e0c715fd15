//! # ppl-core
//!
//! The foundation of the `ppl` probabilistic programming library: distributions over
//! candle tensors, the random-number generator the library owns, special functions and
//! linear algebra candle lacks, constraints, and the error type.
//!
//! A map of the crate. Modules are private; their items are re-exported once, at the root
//! (`ppl_core::Ctx`, `ppl_core::Trace`, ...), except where names are many, which live in
//! public namespaces:
//!
//! | where | what lives there |
//! |---|---|
//! | root, from `ctx.rs` | [`Ctx`]: the explicit run context (handler stack, RNG, params, device) and the primitives; [`PlateOpts`], [`PlateGuard`] |
//! | root, from `trace.rs`, `site.rs`, `message.rs`, `choices.rs` | [`Trace`] and [`Site`] (log joint, filters, per-plate log densities, shape table); [`SiteName`], [`SiteKind`]; the [`Message`] a site sends through the handlers, [`PlateFrame`]; [`ChoiceMap`] |
//! | root, from `model.rs`, `compat.rs` | the [`Model`] trait; [`simulate`], [`generate`], [`assess`]; [`check_guide`] |
//! | root, from `params.rs` | [`ParamStore`]: constrained parameters on a `VarMap`, safetensors save/load, [`atomic_write`] |
//! | root, from `rng.rs`, `device.rs`, `constraints.rs`, `error.rs` | [`PplRng`] (seedable ChaCha8; all noise is drawn here and uploaded), [`best_device`], [`Constraint`], [`PplError`] and [`Result`] |
//! | [`distributions`] | the [`Distribution`](distributions::Distribution) trait, one file per family, wrappers, analytic KL |
//! | [`handlers`] | the [`Handler`](handlers::Handler) trait, one file per handler |
//! | [`transforms`] | bijections onto constrained supports ([`biject_to`](transforms::biject_to)) |
//! | [`flows`] | normalizing flows: the [`Bijector`](flows::Bijector) contract and its layers |
//! | [`special`], [`linalg`], [`tensor`] | differentiable special functions, linear algebra, broadcasting and host-transfer helpers |
//! | [`validation`] | argument checks (on by default) and the scoped opt-out |
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

mod choices;
mod compat;
mod constraints;
mod ctx;
mod device;
pub mod distributions;
mod error;
pub mod flows;
pub mod fused;
pub mod handlers;
pub mod linalg;
mod message;
mod model;
pub mod nn;
mod params;
mod rng;
mod seeded_init;
mod site;
pub mod special;
pub mod tensor;
pub mod threads;
mod trace;
pub mod transforms;
pub mod validation;

pub use choices::ChoiceMap;
pub use compat::check_guide;
pub use constraints::Constraint;
pub use ctx::{Ctx, PlateGuard, PlateOpts};
pub use device::{best_device, device_from_name};
pub use error::{PplError, Result};
pub use message::{describe_plates, Message, PlateFrame, PlateStack};
pub use model::{assess, generate, simulate, Model};
pub use params::{atomic_write, read_safetensors, write_safetensors, ParamInit, ParamStore};
pub use rng::{upload, PplRng, RngState};
pub use site::{SiteKind, SiteName};
pub use trace::{Site, Trace};

/// The names most programs need.
pub mod prelude {
    pub use crate::choices::ChoiceMap;
    pub use crate::compat::check_guide;
    pub use crate::constraints::Constraint;
    pub use crate::ctx::{Ctx, PlateOpts};
    pub use crate::distributions::{
        kl_divergence, Bernoulli, Beta, Binomial, Categorical, Cauchy, Delta, Dirichlet,
        Distribution, DistributionExt, DynDistribution, Exponential, Gamma, Geometric, HalfNormal,
        ImproperUniform, Independent, InverseGamma, Laplace, LogNormal, LowRankMultivariateNormal,
        Masked, MixtureSameFamily, MultivariateNormal, Normal, OneHotCategorical, Poisson,
        RelaxedBernoulli, RelaxedOneHotCategorical, StudentT, Uniform, Unit, VonMises,
    };
    pub use crate::error::{PplError, Result};
    pub use crate::model::{assess, generate, simulate, Model};
    pub use crate::params::ParamStore;
    pub use crate::rng::PplRng;
    pub use crate::site::{SiteKind, SiteName};
    pub use crate::trace::{Site, Trace};
}
