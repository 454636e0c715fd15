//! The inference engines, one folder each. Every engine implements
//! [`Engine`](crate::Engine) and runs under the shared [`Trainer`](crate::Trainer); no
//! engine imports another: shared pieces live in `importance/` ([`crate::ModelInfo`],
//! [`crate::Particles`], [`crate::LogWeights`]), [`crate::guides`] and `train/`, and a test
//! checks this.
//!
//! | engine | algorithm |
//! |---|---|
//! | [`Ebm`] | latent-variable energy-based models: free energies by grid search, gradient refinement or sampling ([`EnergyModel`], [`Inference`]), trained by energy, hinge or log [`Loss`] |
//! | [`Svi`] | stochastic variational inference over an [`Objective`]: [`TraceElbo`] (with [`Baseline`]s), [`Iwae`] (IWAE, Rényi-α, DReG) |

mod ebm;
mod svi;

pub use ebm::{
    encoder_loss, relaxed_min, Contrastive, Data, Ebm, Encoder, EnergyModel, FreeEnergy, Grid,
    Inference, Loss, Method, Penalty, Refine, Starts, Temperature, EBM_PLATE,
};
pub use svi::{Baseline, Iwae, Objective, ObjectiveOutput, Svi, TraceElbo};
