//! Affine coupling layers (Real NVP, Dinh et al. 2017).

use super::bijector::{impl_bijector_by_pass, Pass};
use super::conditioner::{soft_clamp, soft_clamp_derivative, Activation, Conditioner};
use super::shapes::{check_event, check_tangents, index_tensor, take_last};
use crate::error::{PplError, Result};
use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

/// Settings of an [`AffineCoupling`] layer.
#[derive(Debug, Clone, PartialEq)]
pub struct CouplingOptions {
    /// Hidden widths of the conditioner MLP (default `[64, 64]`).
    pub hidden: Vec<usize>,
    /// Hidden activation of the conditioner (default ReLU).
    pub activation: Activation,
    /// Bound of the log-scales, through [`soft_clamp`] (default 3: each layer scales a
    /// coordinate by at most `e³ ≈ 20`).
    pub clamp: f64,
}

impl Default for CouplingOptions {
    fn default() -> Self {
        CouplingOptions {
            hidden: vec![64, 64],
            activation: Activation::Relu,
            clamp: 3.0,
        }
    }
}

/// An affine coupling layer (Real NVP): a binary mask splits the event into a kept part `a`
/// (mask `true`) and a transformed part `b`; `(s, t) = h(z_a, context)` with `h` a
/// [`Conditioner`] and `s` bounded by [`soft_clamp`]:
///
/// - to data: `x_a = z_a`, `x_b = z_b ⊙ exp(s) + t`, `ladj = Σ s`;
/// - to base: `z_a = x_a`, `z_b = (x_b − t) ⊙ exp(−s)`, `ladj = −Σ s`.
///
/// Both directions are one pass. The conditioner's output layer starts at zero, so a new
/// layer is the identity. Tangents use [`Conditioner::forward_jvp`]. The parameters live
/// under `vb` as `conditioner.layer{i}.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct AffineCoupling {
    net: Conditioner,
    dim: usize,
    clamp: f64,
    /// Indices of the kept part `a`, and of the transformed part `b`.
    idx_a: Tensor,
    idx_b: Tensor,
    /// The inverse of the order `[a…, b…]`, to put the parts back in place.
    unsplit: Tensor,
    n_b: usize,
}

impl AffineCoupling {
    /// A coupling layer on events of size `mask.len()`: entries with `mask[i] == true` are
    /// kept and condition the others. Both parts must be non-empty. `context_dim` is the
    /// size of the context (0: unconditional).
    pub fn new(
        vb: VarBuilder,
        mask: &[bool],
        context_dim: usize,
        opts: &CouplingOptions,
    ) -> Result<Self> {
        let dim = mask.len();
        let a: Vec<usize> = (0..dim).filter(|&i| mask[i]).collect();
        let b: Vec<usize> = (0..dim).filter(|&i| !mask[i]).collect();
        if a.is_empty() || b.is_empty() {
            return Err(PplError::invalid_argument(
                "AffineCoupling",
                format!(
                    "the mask {mask:?} must keep at least one coordinate (true) and transform \
                     at least one (false)"
                ),
            ));
        }
        if !(opts.clamp.is_finite() && opts.clamp > 0.0) {
            return Err(PplError::config(
                "AffineCoupling",
                format!("clamp must be positive and finite, got {}", opts.clamp),
            ));
        }
        let dev = vb.device().clone();
        let net = Conditioner::new(
            vb.pp("conditioner"),
            a.len(),
            context_dim,
            &opts.hidden,
            2 * b.len(),
            opts.activation,
        )?;
        let order: Vec<usize> = a.iter().chain(b.iter()).copied().collect();
        let unsplit = super::shapes::invert_permutation(&order).ok_or_else(|| {
            PplError::invalid_argument(
                "AffineCoupling",
                "internal: mask split is not a permutation",
            )
        })?;
        Ok(AffineCoupling {
            net,
            dim,
            clamp: opts.clamp,
            idx_a: index_tensor(&a, &dev)?,
            idx_b: index_tensor(&b, &dev)?,
            unsplit: index_tensor(&unsplit, &dev)?,
            n_b: b.len(),
        })
    }

    /// The mask `[true, …, true, false, …, false]`: the first `⌈dim/2⌉` kept (or, with
    /// `flip`, the first `⌈dim/2⌉` transformed).
    pub fn half_mask(dim: usize, flip: bool) -> Vec<bool> {
        let h = dim.div_ceil(2);
        (0..dim).map(|i| (i < h) != flip).collect()
    }

    /// The checkerboard mask: even indices kept (or, with `flip`, odd ones).
    pub fn alternating_mask(dim: usize, flip: bool) -> Vec<bool> {
        (0..dim).map(|i| (i % 2 == 0) != flip).collect()
    }

    /// The conditioner network.
    pub fn conditioner(&self) -> &Conditioner {
        &self.net
    }

    /// `(raw log-scale, shift)` from the conditioner output `h` `[..., 2 n_b]`.
    fn split_out(&self, h: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            h.narrow(D::Minus1, 0, self.n_b)?,
            h.narrow(D::Minus1, self.n_b, self.n_b)?,
        ))
    }

    /// `cat([a, b])` put back in place; `a` is broadcast to `b`'s batch shape.
    fn join(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let mut shape = b.dims().to_vec();
        let last = shape.len() - 1;
        shape[last] = a.dim(D::Minus1)?;
        let a = a.broadcast_as(shape)?;
        let x = Tensor::cat(&[&a, b], D::Minus1)?;
        take_last(&x, &self.unsplit)
    }

    /// The shared forward computation; tangents when `v` is given.
    fn run(
        &self,
        inp: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let layer = "AffineCoupling";
        check_event(
            layer,
            if to_data {
                "the input z"
            } else {
                "the input x"
            },
            inp,
            self.dim,
        )?;
        if let Some(v) = v {
            check_tangents(layer, inp, v, self.dim)?;
        }
        let in_a = take_last(inp, &self.idx_a)?;
        let in_b = take_last(inp, &self.idx_b)?;
        let (h, th) = match v {
            Some(v) => {
                let (h, th) = self
                    .net
                    .forward_jvp(&in_a, context, &take_last(v, &self.idx_a)?)?;
                (h, Some(th))
            }
            None => (self.net.forward(&in_a, context)?, None),
        };
        let (s_raw, t) = self.split_out(&h)?;
        let s = soft_clamp(&s_raw, self.clamp)?;
        let (out_b, ladj) = if to_data {
            let e = s.exp()?;
            (
                in_b.broadcast_mul(&e)?.broadcast_add(&t)?,
                s.sum(D::Minus1)?,
            )
        } else {
            let e = s.neg()?.exp()?;
            (
                in_b.broadcast_sub(&t)?.broadcast_mul(&e)?,
                s.sum(D::Minus1)?.neg()?,
            )
        };
        let out = self.join(&in_a, &out_b)?;
        let tangent = match (v, th) {
            (Some(v), Some(th)) => {
                let (ts_raw, tt) = self.split_out(&th)?;
                let ds = ts_raw.broadcast_mul(&soft_clamp_derivative(&s_raw, self.clamp)?)?;
                let v_a = take_last(v, &self.idx_a)?;
                let v_b = take_last(v, &self.idx_b)?;
                let t_b = if to_data {
                    // d(z_b e^s + t) = v_b e^s + z_b e^s ds + dt
                    let e = s.exp()?;
                    v_b.broadcast_mul(&e)?
                        .broadcast_add(&ds.broadcast_mul(&in_b.broadcast_mul(&e)?)?)?
                        .broadcast_add(&tt)?
                } else {
                    // d((x_b − t) e^{−s}) = (v_b − dt) e^{−s} − z_b ds
                    let e = s.neg()?.exp()?;
                    v_b.broadcast_sub(&tt)?
                        .broadcast_mul(&e)?
                        .broadcast_sub(&ds.broadcast_mul(&out_b)?)?
                };
                Some(self.join(&v_a, &t_b)?)
            }
            _ => None,
        };
        Ok((out, ladj, tangent))
    }
}

impl Pass for AffineCoupling {
    const LAYER: &'static str = "AffineCoupling";

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass(
        &self,
        input: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        self.run(input, context, v, to_data)
    }
}

impl_bijector_by_pass!(AffineCoupling);
