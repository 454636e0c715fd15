//! The conditioner network of coupling layers: an MLP with forward-mode tangents.

use crate::error::{PplError, Result};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};

/// The hidden activation of a [`Conditioner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(0, a)` (derivative 0 or 1).
    #[default]
    Relu,
    /// `tanh a` (smooth: use it where second derivatives of the flow matter).
    Tanh,
    /// `a · sigmoid(a)` (smooth).
    Silu,
}

impl Activation {
    pub(crate) fn apply(&self, a: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => a.relu()?,
            Activation::Tanh => a.tanh()?,
            Activation::Silu => a.silu()?,
        })
    }

    /// `σ'(a)`, differentiable where `σ'` is (ReLU's step has zero gradient).
    pub(crate) fn derivative(&self, a: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => a.gt(0.0)?.to_dtype(a.dtype())?,
            Activation::Tanh => (1.0 - a.tanh()?.sqr()?)?,
            Activation::Silu => {
                let s = candle_nn::ops::sigmoid(a)?;
                (&s * (1.0 + (a * (1.0 - &s)?)?)?)?
            }
        })
    }
}

/// An MLP `h(x, c)`: input `x` `[..., in_dim]` and an optional context `c` `[..., C]`
/// (batch axes broadcast; the context is concatenated to the input), hidden layers with
/// [`Activation`], a linear output `[..., out_dim]` initialised at zero so that a new
/// coupling layer is the identity (the usual stable start).
///
/// [`Conditioner::forward_jvp`] also pushes tangents of `x` forward (the context is held
/// fixed): linear layers map `T ← T Wᵀ` (no bias), activations `T ← T ⊙ σ'(a)`.
#[derive(Debug, Clone)]
pub struct Conditioner {
    /// `(weight [out, in], bias [out])` per layer.
    layers: Vec<(Tensor, Tensor)>,
    in_dim: usize,
    context_dim: usize,
    out_dim: usize,
    activation: Activation,
}

impl Conditioner {
    /// Builds the MLP under `vb` (`layer{i}.weight`, `layer{i}.bias`): widths
    /// `in_dim + context_dim → hidden… → out_dim`. Hidden weights use candle-nn's default
    /// (Kaiming-uniform) initialisation from the store's seeded generator; the output layer
    /// starts at zero.
    pub fn new(
        vb: VarBuilder,
        in_dim: usize,
        context_dim: usize,
        hidden: &[usize],
        out_dim: usize,
        activation: Activation,
    ) -> Result<Self> {
        if in_dim + context_dim == 0 || out_dim == 0 || hidden.contains(&0) {
            return Err(PplError::invalid_argument(
                "Conditioner",
                format!(
                    "widths must be positive: in {in_dim} + context {context_dim}, hidden \
                     {hidden:?}, out {out_dim}"
                ),
            ));
        }
        let mut widths = vec![in_dim + context_dim];
        widths.extend_from_slice(hidden);
        widths.push(out_dim);
        let last = widths.len() - 2;
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (i, w) in widths.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            layers.push(linear_layer(&vb.pp(format!("layer{i}")), a, b, i == last)?);
        }
        Ok(Conditioner {
            layers,
            in_dim,
            context_dim,
            out_dim,
            activation,
        })
    }

    /// The input width (without the context).
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }
    /// The context width (0: unconditional).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }
    /// The output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `x` with the context broadcast to its batch axes and concatenated on the last axis.
    fn input(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        super::shapes::check_input("Conditioner", x, self.in_dim)?;
        match super::shapes::with_context("Conditioner", x, context, self.context_dim)? {
            (xb, None) => Ok(xb),
            // cat on the last axis can return a strided layout that candle's matmul rejects
            // for rank > 3 batches: make it contiguous.
            (xb, Some(cb)) => Ok(Tensor::cat(&[&xb, &cb], D::Minus1)?.contiguous()?),
        }
    }

    /// `h(x, c)` `[..., out_dim]`.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let h = self.input(x, context)?;
        // candle's matmul needs a matrix: a single event `[in]` goes through as `[1, in]`.
        let single = h.rank() == 1;
        let mut h = if single { h.unsqueeze(0)? } else { h };
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.broadcast_matmul(&w.t()?)?.broadcast_add(b)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(if single { h.squeeze(0)? } else { h })
    }

    /// `h(x, c)` and `∂h/∂x · v` for tangents `v` `[K, ..., in_dim]` (→ `[K, ..., out_dim]`).
    pub fn forward_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let h = self.input(x, context)?;
        let single = h.rank() == 1;
        let mut h = if single { h.unsqueeze(0)? } else { h };
        let mut t = v.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let wt = w.t()?;
            let tw = if i == 0 {
                // Tangents of the context are zero: only the input's columns act.
                wt.narrow(0, 0, self.in_dim)?
            } else {
                wt.clone()
            };
            h = h.broadcast_matmul(&wt)?.broadcast_add(b)?;
            t = t.broadcast_matmul(&tw)?;
            if i + 1 < self.layers.len() {
                t = t.broadcast_mul(&self.activation.derivative(&h)?)?;
                h = self.activation.apply(&h)?;
            }
        }
        Ok((if single { h.squeeze(0)? } else { h }, t))
    }
}

/// A smooth clamp `bound · tanh(a / bound)` into `(−bound, bound)`: the identity near 0,
/// with a nonzero gradient everywhere (a hard clamp has none beyond the bound). Coupling
/// layers pass their log-scales through it.
pub fn soft_clamp(a: &Tensor, bound: f64) -> Result<Tensor> {
    Ok(((a / bound)?.tanh()? * bound)?)
}

/// The derivative of [`soft_clamp`] with respect to `a`: `1 − tanh²(a / bound)`.
pub fn soft_clamp_derivative(a: &Tensor, bound: f64) -> Result<Tensor> {
    Ok((1.0 - (a / bound)?.tanh()?.sqr()?)?)
}

/// The weights `[out, in]` and bias `[out]` of one MLP layer under `vb` (`weight`, `bias`):
/// candle-nn's Kaiming-normal weights and `U(±1/√in)` biases from the store's seeded
/// generator, or zeros for the output layer (`zero`), so that a new flow layer is the
/// identity.
pub(crate) fn linear_layer(
    vb: &VarBuilder,
    in_dim: usize,
    out_dim: usize,
    zero: bool,
) -> Result<(Tensor, Tensor)> {
    let (wi, bi) = if zero {
        (Init::Const(0.0), Init::Const(0.0))
    } else {
        let bound = 1.0 / (in_dim as f64).sqrt();
        (
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )
    };
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", wi)?;
    let bias = vb.get_with_hints(out_dim, "bias", bi)?;
    Ok((weight, bias))
}
