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
//! | [`WakeSleep`] | classic wake-sleep (Helmholtz machine): wake-phase model update with guide samples, sleep-phase guide update on dreams |
//! | [`ReweightedWakeSleep`] | reweighted wake-sleep: wake-θ, wake-φ and sleep-φ with per-data-point weights |
//! | [`Hybrid`] | hybrid models with deep invertible features (DIGLM): a flow's exact `log p(x)` and a GLM head on its features ([`GlmHead`]: [`LinearGaussian`], [`Softmax`], [`Logistic`]; [`BayesianLinear`]), trained on `log p(y \| x) + λ log p(x)`, semi-supervised |
//! | [`Rectangular`] | injective (rectangular) flows by maximum likelihood on a learned manifold: `log p_Z(g†(x)) − ½ log det(JᵀJ)` with the volume gradient by a [`VolumeEstimator`] (exact, Hutchinson + CG, free-form, none) |
//! | [`KrrWakeSleep`] | amortised learning by wake-sleep: maximum likelihood from kernel ridge regression of `log p(x, z)` on sleep samples ([`KrrOptions`], [`KernelRidge`]) |

mod ebm;
mod hybrid;
mod krr;
mod rectangular;
mod svi;
mod wake_sleep;

pub use ebm::{
    encoder_loss, relaxed_min, Contrastive, Data, Ebm, Encoder, EnergyModel, FreeEnergy, Grid,
    Inference, Loss, Method, Penalty, Refine, Starts, Temperature, EBM_PLATE,
};
pub use hybrid::{
    auroc, log_px, selective_accuracy, BayesianLinear, GlmHead, Hybrid, HybridEval, HybridOptions,
    LinearGaussian, Logistic, Softmax,
};
pub use krr::{
    median_bandwidth, spd_solve, FeatureMap, Features, KernelApprox, KernelRidge, KrrEstimate,
    KrrOptions, KrrWakeSleep, LearnedFeatures, Tuning,
};
pub use rectangular::{
    conjugate_gradients, evaluate_injective, jacobian, log_det_gram, log_det_spd, volume_term,
    CgInfo, Probe, Rectangular, RectangularEval, RectangularOptions, VolumeEstimator, VolumeTerm,
};
pub use svi::{Baseline, Iwae, Objective, ObjectiveOutput, Svi, TraceElbo};
pub use wake_sleep::{GuideInputs, ReweightedWakeSleep, WakeSleep};
