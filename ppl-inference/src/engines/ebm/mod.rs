//! Latent-variable energy-based models: inference by energy minimisation and the
//! [`Ebm`] training engine.
//!
//! | file | contents |
//! |---|---|
//! | `energy.rs` | [`EnergyModel`]: a model read as `E(x, y, z)` per data point, evaluated for `G` candidate latents in one vectorised run; [`Penalty`], [`Data`] |
//! | `free_energy.rs` | [`FreeEnergy`] (per point `F`, `ž`, energies, soft-argmin weights), [`Temperature`], [`relaxed_min`] |
//! | `grid.rs` | [`Grid`] (linspace, periodic, from a tensor, products) and `EnergyModel::grid_search` |
//! | `refine.rs` | [`Refine`] ([`Method`]: gradient descent, Adam, L-BFGS), [`Starts`] (restarts), `EnergyModel::refine`, `prior_starts` |
//! | `lbfgs.rs` | L-BFGS vectorised over points and restarts (two-loop recursion, per-point Armijo backtracking) |
//! | `sampling.rs` | `EnergyModel::sample_free_energy`: Monte Carlo / importance-sampled `F_β` |
//! | `inference.rs` | [`Inference`]: the recipe (candidates, temperature, refinement, restarts, [`Encoder`]) and `EnergyModel::infer` |
//! | `loss.rs` | [`Loss`] (energy, hinge, log), [`encoder_loss`] |
//! | `engine.rs` | [`Ebm`]: the engine (maths in its doc comment), [`Contrastive`] |

mod energy;
mod engine;
mod free_energy;
mod grid;
mod inference;
mod lbfgs;
mod loss;
mod refine;
mod sampling;

pub use energy::{Data, EnergyModel, Penalty, EBM_PLATE};
pub use engine::{Contrastive, Ebm};
pub use free_energy::{relaxed_min, FreeEnergy, Temperature};
pub use grid::Grid;
pub use inference::{Encoder, Inference};
pub use loss::{encoder_loss, Loss};
pub use refine::{Method, Refine, Starts};
