//! Masked affine autoregressive layers: MAF (Papamakarios, Pavlakou and Murray 2017) and
//! IAF (Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling 2016).

use super::bijector::{impl_bijector_by_pass, Fast, Pass};
use super::conditioner::{soft_clamp, soft_clamp_derivative, Activation};
use super::made::Made;
use super::shapes;
use crate::error::{PplError, Result};
use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

/// Which variable the [`Made`] of a [`MaskedAffineAutoregressive`] layer reads, and so which
/// direction is one parallel pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoregressiveMode {
    /// Masked autoregressive flow: the shift and log-scale of `x_i` are functions of the
    /// data `x_{<i}`. The density direction [`Bijector::to_base`](super::Bijector::to_base) is one pass; sampling
    /// ([`Bijector::to_data`](super::Bijector::to_data)) takes `D` sequential passes. For density estimation.
    Maf,
    /// Inverse autoregressive flow: the shift and log-scale are functions of the base
    /// variable `z_{<i}`. Sampling is one pass; the density of an arbitrary `x` takes `D`
    /// sequential passes. For variational guides (which score their own samples).
    Iaf,
}

/// The default bound of the log-scales (`s = 5 tanh(a / 5)`): scales in `(e⁻⁵, e⁵)`.
pub const DEFAULT_SCALE_BOUND: f64 = 5.0;

/// An affine autoregressive layer `x_i = z_i · exp(s_i) + t_i`, with `(s_i, t_i)` produced
/// by a [`Made`] (2 outputs per dimension) from `x_{<i}` ([`AutoregressiveMode::Maf`]) or
/// from `z_{<i}` ([`AutoregressiveMode::Iaf`]) and the optional context. The raw log-scale
/// goes through [`soft_clamp`] (bound [`DEFAULT_SCALE_BOUND`], see
/// [`MaskedAffineAutoregressive::with_scale_bound`]); `log |det ∂x/∂z| = Σ s_i`.
///
/// The slow direction runs the `D` passes of the recurrence (after pass `k` the first `k`
/// dimensions in the order are exact) and pushes tangents through the same recurrence, so
/// its tangents are exact too. The layer starts as the identity (MADE's output layer is 0).
#[derive(Debug, Clone)]
pub struct MaskedAffineAutoregressive {
    made: Made,
    mode: AutoregressiveMode,
    bound: f64,
}

/// Shift, log-scale and (optionally) their tangents.
struct Params {
    s: Tensor,
    t: Tensor,
    ds: Option<Tensor>,
    dt: Option<Tensor>,
}

impl MaskedAffineAutoregressive {
    /// A layer on `dim` features with a MADE of hidden widths `hidden` under `vb`
    /// (`made.layer{i}.*`), `context_dim` context features (0: unconditional), in the given
    /// autoregressive `order` (a permutation of `0..dim`; `None`: natural order).
    pub fn new(
        vb: VarBuilder,
        mode: AutoregressiveMode,
        dim: usize,
        context_dim: usize,
        hidden: &[usize],
        activation: Activation,
        order: Option<&[usize]>,
    ) -> Result<Self> {
        let made = Made::new(
            vb.pp("made"),
            dim,
            context_dim,
            hidden,
            2,
            activation,
            order,
        )?;
        Ok(MaskedAffineAutoregressive {
            made,
            mode,
            bound: DEFAULT_SCALE_BOUND,
        })
    }

    /// The same layer with log-scales bounded by `bound` (> 0, finite) instead.
    pub fn with_scale_bound(mut self, bound: f64) -> Result<Self> {
        if !(bound.is_finite() && bound > 0.0) {
            return Err(PplError::invalid_argument(
                "MaskedAffineAutoregressive",
                format!("scale bound must be positive and finite, got {bound}"),
            ));
        }
        self.bound = bound;
        Ok(self)
    }

    /// MAF or IAF.
    pub fn mode(&self) -> AutoregressiveMode {
        self.mode
    }

    /// The conditioner network.
    pub fn made(&self) -> &Made {
        &self.made
    }

    fn pick(h: &Tensor, p: usize) -> Result<Tensor> {
        Ok(h.narrow(D::Minus1, p, 1)?.squeeze(D::Minus1)?)
    }

    /// `(s, t)` read from `y` (and their tangents when `dy` is given).
    fn params(&self, y: &Tensor, c: Option<&Tensor>, dy: Option<&Tensor>) -> Result<Params> {
        let (h, dh) = match dy {
            Some(v) => {
                let (h, dh) = self.made.forward_jvp(y, c, v)?;
                (h, Some(dh))
            }
            None => (self.made.forward(y, c)?, None),
        };
        let raw = Self::pick(&h, 0)?;
        let s = soft_clamp(&raw, self.bound)?;
        let t = Self::pick(&h, 1)?;
        let (ds, dt) = match dh {
            Some(dh) => {
                let ds =
                    Self::pick(&dh, 0)?.broadcast_mul(&soft_clamp_derivative(&raw, self.bound)?)?;
                (Some(ds), Some(Self::pick(&dh, 1)?))
            }
            None => (None, None),
        };
        Ok(Params { s, t, ds, dt })
    }

    /// `x = z e^s + t` and, with tangents `v` of `z`, `dx = (v + z ds) e^s + dt`.
    fn push(z: &Tensor, p: &Params, v: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let e = p.s.exp()?;
        let x = (z * &e)?.add(&p.t)?;
        let dx = match (v, &p.ds, &p.dt) {
            (Some(v), Some(ds), Some(dt)) => {
                Some(v.add(&ds.broadcast_mul(z)?)?.broadcast_mul(&e)?.add(dt)?)
            }
            _ => None,
        };
        Ok((x, dx))
    }

    /// `z = (x − t) e^{−s}` and, with tangents `v` of `x`, `dz = (v − dt) e^{−s} − z ds`.
    fn pull(x: &Tensor, p: &Params, v: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let e = p.s.neg()?.exp()?;
        let z = (x - &p.t)?.mul(&e)?;
        let dz = match (v, &p.ds, &p.dt) {
            (Some(v), Some(ds), Some(dt)) => {
                Some(v.sub(dt)?.broadcast_mul(&e)?.sub(&ds.broadcast_mul(&z)?)?)
            }
            _ => None,
        };
        Ok((z, dz))
    }

    /// One pass (`sequential == false`) or the `D`-pass recurrence, in the direction given
    /// by `forward` (`true`: to data), with optional tangents.
    fn run(
        &self,
        input: &Tensor,
        context: Option<&Tensor>,
        v: Option<&Tensor>,
        forward: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        const LAYER: &str = "MaskedAffineAutoregressive";
        shapes::check_input(LAYER, input, self.made.dim())?;
        let (y, c) = shapes::with_context(LAYER, input, context, self.made.context_dim())?;
        let v = match v {
            Some(v) => Some(shapes::tangents(LAYER, v, &y)?),
            None => None,
        };
        let (y, c, v, lifted) = shapes::lift(y, c, v)?;
        let step = |p: &Params| -> Result<(Tensor, Option<Tensor>)> {
            if forward {
                Self::push(&y, p, v.as_ref())
            } else {
                Self::pull(&y, p, v.as_ref())
            }
        };
        // MAF reads x: one pass to the base. IAF reads z: one pass to the data.
        let one_pass = matches!(
            (self.mode, forward),
            (AutoregressiveMode::Maf, false) | (AutoregressiveMode::Iaf, true)
        );
        let (out, dout, s) = if one_pass {
            let p = self.params(&y, c.as_ref(), v.as_ref())?;
            let (o, d) = step(&p)?;
            (o, d, p.s)
        } else {
            // Iterate out ← step(params(out)): pass k fixes the k-th dimension in the order,
            // and the tangents follow the same recurrence.
            let mut out = y.clone();
            let mut dout = v.clone();
            let mut s = None;
            for _ in 0..self.made.dim() {
                let p = self.params(&out, c.as_ref(), dout.as_ref())?;
                let (o, d) = step(&p)?;
                out = o;
                dout = d;
                s = Some(p.s);
            }
            let s = s.ok_or_else(|| PplError::invalid_argument(LAYER, "dimension 0"))?;
            (out, dout, s)
        };
        let ladj = s.sum(D::Minus1)?;
        let ladj = if forward { ladj } else { ladj.neg()? };
        shapes::lower(out, ladj, dout, lifted)
    }
}

impl Pass for MaskedAffineAutoregressive {
    const LAYER: &'static str = "MaskedAffineAutoregressive";

    fn pass_dim(&self) -> usize {
        self.made.dim()
    }

    fn pass_fast(&self) -> Fast {
        match self.mode {
            AutoregressiveMode::Maf => Fast::ToBase,
            AutoregressiveMode::Iaf => Fast::ToData,
        }
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

impl_bijector_by_pass!(MaskedAffineAutoregressive);
