//! The inference engines, one folder each. Every engine implements
//! [`Engine`](crate::Engine) and runs under the shared [`Trainer`](crate::Trainer); no
//! engine imports another: shared pieces live in `importance/` ([`crate::ModelInfo`],
//! [`crate::Particles`], [`crate::LogWeights`]), [`crate::guides`] and `train/`, and a test
//! checks this.
//!
//! | engine | algorithm |
//! |---|---|
//! | [`Svi`] | stochastic variational inference over an [`Objective`]: [`TraceElbo`] (with [`Baseline`]s), [`Iwae`] (IWAE, Rényi-α, DReG) |
//! | [`WakeSleep`] | classic wake-sleep (Helmholtz machine): wake-phase model update with guide samples, sleep-phase guide update on dreams |
//! | [`ReweightedWakeSleep`] | reweighted wake-sleep: wake-θ, wake-φ and sleep-φ with per-data-point weights |

mod svi;
mod wake_sleep;

pub use svi::{Baseline, Iwae, Objective, ObjectiveOutput, Svi, TraceElbo};
pub use wake_sleep::{GuideInputs, ReweightedWakeSleep, WakeSleep};
