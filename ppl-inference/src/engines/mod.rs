//! The inference engines, one folder each. Every engine implements
//! [`Engine`](crate::Engine) and runs under the shared [`Trainer`](crate::Trainer); no
//! engine imports another: shared pieces live in `importance/` ([`crate::ModelInfo`],
//! [`crate::Particles`], [`crate::LogWeights`]), [`crate::guides`] and `train/`, and a test
//! checks this.
//!
//! | engine | algorithm |
//! |---|---|
//! | [`Svi`] | stochastic variational inference over an [`Objective`]: [`TraceElbo`] (with [`Baseline`]s), [`Iwae`] (IWAE, Rényi-α, DReG) |
//! | [`KrrWakeSleep`] | amortised learning by wake-sleep: maximum likelihood from kernel ridge regression of `log p(x, z)` on sleep samples ([`KrrOptions`], [`KernelRidge`]) |

mod krr;
mod svi;

pub use krr::{
    median_bandwidth, FeatureMap, Features, KernelApprox, KernelRidge, KrrEstimate, KrrOptions,
    KrrWakeSleep, Tuning,
};
pub use svi::{Baseline, Iwae, Objective, ObjectiveOutput, Svi, TraceElbo};
