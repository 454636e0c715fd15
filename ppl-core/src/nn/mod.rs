//! Neural-network layers for models and guides, with fused CPU kernels.
//!
//! | file | contents |
//! |---|---|
//! | `linear.rs` | [`Linear`]: a dense layer with an optional activation, running as one fused op on the CPU ([`crate::fused::linear`]) and as candle ops elsewhere |
//!
//! Any candle module works in a model (`candle_nn::Linear` included); these layers are the
//! fast path for dense networks on the CPU, with the same initialisation as candle-nn's.

mod linear;

pub use crate::fused::Activation;
pub use linear::Linear;
