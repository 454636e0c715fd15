mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use ppl_core::Result;
use std::collections::HashMap;

/// A first-order optimiser over named variables whose state can be exported.
///
/// Optimisers whose state can be saved: [`Adam`] (with decoupled weight decay: AdamW) and
/// [`Sgd`] (with momentum).
///
/// Adam (Kingma & Ba 2015), for each variable θ with gradient g at step t:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
/// `θ ← θ − lr·(m̂/(√v̂ + ε) + λθ)`. SGD: `u ← μu + g`, `θ ← θ − lr·u`.
/// State is keyed by the variables' names, so it survives a checkpoint round trip.
///
/// An optimiser updates an explicit list of named variables (a [`ParamGroup`](super::ParamGroup)'s:
/// parameters of the store, or free variables such as per-data-point latents), so each
/// group of a [`Trainer`](super::Trainer) has its own optimiser, learning rate and schedule.
pub trait Optimizer: Send {
    /// Applies one update, with learning rate `lr`, to every variable of `vars` that has a
    /// gradient in `grads` (state is keyed by the variables' names).
    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()>;
    /// The number of steps taken.
    fn steps(&self) -> u64;
    /// The state as named tensors plus the step count (for checkpoints).
    fn state(&self) -> (Vec<(String, Tensor)>, u64);
    /// Restores [`Optimizer::state`].
    fn load_state(&mut self, tensors: HashMap<String, Tensor>, steps: u64) -> Result<()>;
}
