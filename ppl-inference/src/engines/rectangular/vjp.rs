//! Vector-Jacobian products of an injective map's decoder and encoder, by ordinary
//! (first-order) backward through a fresh, detached graph.

use candle_core::{Tensor, Var};
use ppl_core::{PplError, Result};

/// `wᵀ J_f(input)` `[..., n]`: the gradient of `Σ f(input) ⊙ w` with respect to `input`
/// (detached; `input` is copied into a fresh variable, so no other gradient is kept).
pub(crate) fn vjp<F>(input: &Tensor, w: &Tensor, f: F) -> Result<Tensor>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let var = Var::from_tensor(&input.detach())?;
    let y = f(var.as_tensor())?;
    if y.dims() != w.dims() {
        return Err(PplError::invalid_argument(
            "vjp",
            format!(
                "the map's output has shape {:?} but the cotangents are {:?}",
                y.dims(),
                w.dims()
            ),
        ));
    }
    let grads = (y * w.detach())?.sum_all()?.backward()?;
    match grads.get(var.as_tensor()) {
        Some(g) => Ok(g.detach()),
        None => Ok(input.zeros_like()?), // the output does not depend on the input
    }
}
