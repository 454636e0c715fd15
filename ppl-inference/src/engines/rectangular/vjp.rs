//! Vector-Jacobian products of an injective map's decoder and encoder, by ordinary
//! (first-order) backward through a fresh, detached graph.

use candle_core::{Tensor, Var};
use ppl_core::{PplError, Result};

/// A map `f` evaluated once at a detached copy of its input, ready for any number of
/// vector-Jacobian products `wᵀ J_f(input)` (each one backward pass through the same graph).
pub(crate) struct Vjp {
    input: Var,
    output: Tensor,
}

impl Vjp {
    /// Evaluates `f` at a fresh variable holding `input` (no other gradient is kept).
    pub(crate) fn new<F>(input: &Tensor, f: F) -> Result<Self>
    where
        F: FnOnce(&Tensor) -> Result<Tensor>,
    {
        let input = Var::from_tensor(&input.detach())?;
        let output = f(input.as_tensor())?;
        Ok(Vjp { input, output })
    }

    /// `wᵀ J_f(input)` (the input's shape): the gradient of `Σ f(input) ⊙ w`, detached.
    pub(crate) fn apply(&self, w: &Tensor) -> Result<Tensor> {
        if self.output.dims() != w.dims() {
            return Err(PplError::invalid_argument(
                "vjp",
                format!(
                    "the map's output has shape {:?} but the cotangents are {:?}",
                    self.output.dims(),
                    w.dims()
                ),
            ));
        }
        let grads = (&self.output * w.detach())?.sum_all()?.backward()?;
        match grads.get(self.input.as_tensor()) {
            Some(g) => Ok(g.detach()),
            None => Ok(self.input.as_tensor().zeros_like()?), // no dependence on the input
        }
    }
}
