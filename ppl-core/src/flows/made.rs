//! MADE: the masked autoencoder for distribution estimation (Germain, Gregor, Murray and
//! Larochelle 2015), the conditioner of autoregressive flows.

use super::conditioner::Activation;
use super::shapes;
use crate::error::{PplError, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

/// A masked MLP `h(x, c)` on `x` `[..., D]` (and an optional context `c` `[..., C]`) whose
/// output `[..., D, n_params]` is *autoregressive* in a given order: the block of
/// `n_params` outputs of dimension `i` depends only on the inputs that come before `i` in
/// the order (the first dimension's block is a function of the context alone).
///
/// Every input gets a degree (its position in the order, 1..=D), every hidden unit a degree
/// in 1..=D−1 (assigned cyclically; 0..=D−1 with a context), and a connection is kept only
/// from lower-or-equal degrees into hidden units and from strictly lower degrees into
/// outputs: each layer uses `W ⊙ M` with a fixed binary mask `M`. The context feeds every
/// unit of the first layer unmasked (it is concatenated to the input with mask columns of
/// ones); hidden units of degree 0 see only the context, which is how the first
/// dimension's block depends on it.
///
/// The output layer starts at zero, so a new autoregressive flow is the identity.
/// [`Made::forward_jvp`] pushes tangents of `x` forward (the context held fixed) through the
/// masked layers: `T ← T (W ⊙ M)ᵀ` and `T ← T ⊙ σ'(a)`.
#[derive(Debug, Clone)]
pub struct Made {
    /// `(weight [out, in], bias [out], mask [out, in])` per layer.
    layers: Vec<(Tensor, Tensor, Tensor)>,
    dim: usize,
    context_dim: usize,
    n_params: usize,
    activation: Activation,
    order: Vec<usize>,
}

fn mask_tensor(rows: &[Vec<bool>], dtype: DType, dev: &Device) -> Result<Tensor> {
    let (r, c) = (rows.len(), rows.first().map_or(0, Vec::len));
    let data: Vec<f64> = rows
        .iter()
        .flat_map(|row| row.iter().map(|&b| if b { 1.0 } else { 0.0 }))
        .collect();
    crate::rng::upload(data, &[r, c], dtype, dev)
}

impl Made {
    /// Builds a MADE under `vb` (`layer{i}.weight`, `layer{i}.bias`): `dim` inputs (plus
    /// `context_dim` context features), hidden widths `hidden`, `n_params` outputs per
    /// input dimension. `order` is a permutation of `0..dim` (the first entry is the
    /// dimension that depends on nothing); `None` is the natural order `0, 1, …, dim−1`.
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        context_dim: usize,
        hidden: &[usize],
        n_params: usize,
        activation: Activation,
        order: Option<&[usize]>,
    ) -> Result<Self> {
        if dim == 0 || n_params == 0 || hidden.contains(&0) {
            return Err(PplError::invalid_argument(
                "Made",
                format!(
                    "sizes must be positive: dim {dim}, n_params {n_params}, hidden {hidden:?}"
                ),
            ));
        }
        let order: Vec<usize> = match order {
            Some(o) => {
                let mut seen = vec![false; dim];
                let ok = o.len() == dim
                    && o.iter()
                        .all(|&i| i < dim && !std::mem::replace(&mut seen[i], true));
                if !ok {
                    return Err(PplError::invalid_argument(
                        "Made",
                        format!("order {o:?} is not a permutation of 0..{dim}"),
                    ));
                }
                o.to_vec()
            }
            None => (0..dim).collect(),
        };
        // Degrees: input j has degree (position of j in the order) + 1.
        let mut deg_in = vec![0usize; dim];
        for (pos, &j) in order.iter().enumerate() {
            deg_in[j] = pos + 1;
        }
        // With a context, hidden degrees run over 0..=D−1: degree-0 units see only the
        // context, so the first dimension's block depends on the context too. Without one,
        // degree-0 units would be constant, so degrees run over 1..=D−1.
        let hidden_deg = |k: usize| -> usize {
            if context_dim > 0 {
                k % dim
            } else if dim > 1 {
                k % (dim - 1) + 1
            } else {
                1
            }
        };
        let (dtype, dev) = (vb.dtype(), vb.device().clone());
        let mut prev_deg: Vec<usize> = deg_in.clone();
        let mut widths = vec![dim + context_dim];
        widths.extend_from_slice(hidden);
        widths.push(dim * n_params);
        let last = widths.len() - 2;
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (l, w) in widths.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            // The degrees of this layer's units, and the mask rows.
            let (out_deg, rows): (Vec<usize>, Vec<Vec<bool>>) = if l == last {
                // Output unit o = i * n_params + p belongs to dimension i.
                let out_deg: Vec<usize> = (0..b).map(|o| deg_in[o / n_params]).collect();
                let rows = out_deg
                    .iter()
                    .map(|&d| {
                        let mut r: Vec<bool> = prev_deg.iter().map(|&p| d > p).collect();
                        if l == 0 {
                            r.extend(std::iter::repeat_n(true, context_dim));
                        }
                        r
                    })
                    .collect();
                (out_deg, rows)
            } else {
                let out_deg: Vec<usize> = (0..b).map(hidden_deg).collect();
                let rows = out_deg
                    .iter()
                    .map(|&d| {
                        let mut r: Vec<bool> = prev_deg.iter().map(|&p| d >= p).collect();
                        if l == 0 {
                            r.extend(std::iter::repeat_n(true, context_dim));
                        }
                        r
                    })
                    .collect();
                (out_deg, rows)
            };
            let mask = mask_tensor(&rows, dtype, &dev)?;
            let (weight, bias) =
                super::conditioner::linear_layer(&vb.pp(format!("layer{l}")), a, b, l == last)?;
            layers.push((weight, bias, mask));
            prev_deg = out_deg;
        }
        Ok(Made {
            layers,
            dim,
            context_dim,
            n_params,
            activation,
            order,
        })
    }

    /// The event size `D`.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The context width (0: unconditional).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }
    /// The number of outputs per input dimension.
    pub fn n_params(&self) -> usize {
        self.n_params
    }
    /// The autoregressive order (a permutation of `0..D`).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The input with the context concatenated (batch axes broadcast).
    fn input(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        shapes::check_input("Made", x, self.dim)?;
        let (xb, cb) = shapes::with_context("Made", x, context, self.context_dim)?;
        Ok(match cb {
            Some(c) => Tensor::cat(&[&xb, &c], D::Minus1)?,
            None => xb,
        })
    }

    /// The output `[batch..., D * n_params]` reshaped to `[batch..., D, n_params]`.
    fn split(&self, h: Tensor) -> Result<Tensor> {
        let mut shape = h.dims()[..h.rank() - 1].to_vec();
        shape.push(self.dim);
        shape.push(self.n_params);
        Ok(h.reshape(shape)?)
    }

    /// `h(x, c)` `[..., D, n_params]` (batch axes of `x` and `c` broadcast).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.input(x, context)?;
        // An unbatched `[D]` gets a unit batch axis for the matmuls.
        let lifted = h.rank() == 1;
        if lifted {
            h = h.unsqueeze(0)?;
        }
        for (i, (w, b, m)) in self.layers.iter().enumerate() {
            let wm = (w * m)?;
            h = h.broadcast_matmul(&wm.t()?)?.broadcast_add(b)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(&h)?;
            }
        }
        if lifted {
            h = h.squeeze(0)?;
        }
        self.split(h)
    }

    /// `h(x, c)` `[..., D, n_params]` and `∂h/∂x · v` `[K, ..., D, n_params]` for tangents
    /// `v` `[K, ..., D]` of `x` (the context held fixed).
    pub fn forward_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mut h = self.input(x, context)?;
        let lifted = h.rank() == 1;
        if lifted {
            h = h.unsqueeze(0)?;
        }
        let mut t = v.clone();
        for (i, (w, b, m)) in self.layers.iter().enumerate() {
            let wt = (w * m)?.t()?;
            let tw = if i == 0 {
                // Tangents of the context are zero: only the input's columns act.
                wt.narrow(0, 0, self.dim)?
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
        if lifted {
            h = h.squeeze(0)?;
        }
        Ok((self.split(h)?, self.split(t)?))
    }
}
