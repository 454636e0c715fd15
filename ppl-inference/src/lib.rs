//! # ppl-inference
//!
//! Inference engines of the `ppl` library. Work in progress (issue 4): so far the Trace
//! ELBO objective and a plain SVI driver.
//!
//! | module | contents |
//! |---|---|
//! | [`trace_elbo`] | [`TraceElbo`](trace_elbo::TraceElbo): reparameterised + score-function ELBO with vectorised particles |
//! | [`checkpoint`] | atomic checkpoints: params, optimiser state, RNG state, step |
//! | [`iwae`] | importance weights of `K` vectorised particles and the IWAE bound |
//! | [`optim`] | [`Adam`](optim::Adam) (AdamW) and [`Sgd`](optim::Sgd) with savable state |
//! | [`svi`] | [`Svi`](svi::Svi): one optimiser step on the parameter store per call |

#![warn(missing_docs)]

pub mod checkpoint;
pub mod iwae;
pub mod optim;
pub mod svi;
pub mod trace_elbo;

pub use svi::Svi;
pub use trace_elbo::{ElboOutput, TraceElbo};
