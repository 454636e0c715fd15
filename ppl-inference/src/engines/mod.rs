//! The inference engines, one folder each. Every engine implements
//! [`Engine`](crate::Engine) and runs under the shared [`Trainer`](crate::Trainer); no
//! engine imports another: shared pieces live in `importance/` ([`crate::ModelInfo`],
//! [`crate::Particles`], [`crate::LogWeights`]), [`crate::guides`] and `train/`, and a test
//! checks this.
//!
//! | engine | algorithm |
//! |---|---|
//! | [`Svi`] | stochastic variational inference over an [`Objective`]: [`TraceElbo`] (with [`Baseline`]s), [`Iwae`] (IWAE, Rényi-α, DReG) |

mod svi;

pub use svi::{Baseline, Iwae, Objective, ObjectiveOutput, Svi, TraceElbo};
