//! Wake-sleep learning of a model `p_θ(x, z)` with a recognition model (guide) `q_φ(z | x)`:
//! the classic algorithm of the Helmholtz machine ([`WakeSleep`]) and reweighted
//! wake-sleep ([`ReweightedWakeSleep`]). Neither needs reparameterised latents, so both
//! learn models with discrete latents.
//!
//! Both phases live in one [`Engine::step`](crate::Engine::step): the wake terms give
//! gradients to the model's parameters θ (and, for RWS, to φ), the sleep term to the
//! guide's φ. Each term is built with the *other* parameter set detached (the guide's
//! samples in the wake phase, the model's dreams in the sleep phase), so one backward pass
//! of their sum gives every parameter exactly its own phase's gradient. Separate
//! optimisers or learning rates for θ and φ are [`ParamGroup`](crate::ParamGroup)s with
//! prefixes.
//!
//! The sleep phase scores the guide at dreamed pairs `(z, x) ~ p_θ`; the guide must read
//! its data through input sites (`Ctx::input`) so that the engine can hand it the dreamed
//! `x`: the engines take a function from the model's dream trace to the guide's input
//! choices (for [`AutoAmortized`](crate::guides::AutoAmortized):
//! `|t| guide.input_choices(t)`).

mod classic;
mod phases;
mod reweighted;

pub use classic::WakeSleep;
pub use phases::GuideInputs;
pub use reweighted::ReweightedWakeSleep;
