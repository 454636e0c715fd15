//! Injective flows: generators `g: R^d → R^D` (`d < D`) with a left inverse, and
//! [`RectangularFlow`], the padded square flow of Caterini et al. (2021).

use super::bijector::Bijector;
use super::shapes::{check_event, check_tangents};
use crate::error::{PplError, Result};
use crate::rng::PplRng;
use candle_core::{DType, Device, Tensor, D};
use std::fmt::Debug;
use std::sync::Arc;

const LAYER: &str = "RectangularFlow";

/// An injective map `g: R^d → R^D` (`d < D`, the *decoder*) with a left inverse
/// `g†: R^D → R^d` (the *encoder*, `g†(g(z)) = z`). Its image is a `d`-dimensional
/// manifold in `R^D`; a density `p_Z` on `R^d` pushed through `g` has the density on the
/// manifold (per unit of `d`-dimensional volume)
/// `log p_X(x) = log p_Z(z) − ½ log det(J_g(z)ᵀ J_g(z))`, `z = g†(x)`.
///
/// Tensors are batched like [`Bijector`]s: `z` `[..., d]`, `x` `[..., D]`, every axis
/// before the last is batch. Tangents `v` `[K, ..., d]` are pushed forward by
/// [`Injective::decode_jvp`] (forward-mode, which candle lacks): every output is
/// differentiable by ordinary backward, so Jacobian-based objectives need only first-order
/// autodiff.
pub trait Injective: Debug + Send + Sync {
    /// The latent size `d`.
    fn latent_dim(&self) -> usize;
    /// The data size `D > d`.
    fn data_dim(&self) -> usize;
    /// `x = g(z)`: `[..., d]` → `[..., D]`.
    fn decode(&self, z: &Tensor) -> Result<Tensor>;
    /// `(g(z), J_g(z) v)` for tangents `v` `[K, ..., d]` (output `[K, ..., D]`).
    fn decode_jvp(&self, z: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)>;
    /// `z = g†(x)`: `[..., D]` → `[..., d]`, a left inverse of [`Injective::decode`].
    fn encode(&self, x: &Tensor) -> Result<Tensor>;
}

/// A rectangular flow (Caterini, Loaiza-Ganem, Pleiss & Cunningham, *Rectangular Flows for
/// Manifold Learning*, NeurIPS 2021): pad `z ∈ R^d` into `D` coordinates (`z` at fixed
/// positions, zeros elsewhere) and apply a square flow `f` ([`Bijector::to_data`]):
/// `g(z) = f(pad(z))`. The left inverse inverts the square flow and keeps the `d`
/// positions: `g†(x) = keep(f⁻¹(x))`, so `g†(g(z)) = z` exactly, and `g(g†(x))` is a
/// projection of `x` onto the manifold (not the orthogonal one).
///
/// An optional low-dimensional flow `h` on `R^d` shapes the latent density:
/// `z = h(u)`, `u ~ N(0, I_d)`; without it `z ~ N(0, I_d)`
/// ([`RectangularFlow::log_prior`]).
///
/// ```
/// use ppl_core::prelude::*;
/// use ppl_core::flows::{Injective, RealNvp, RealNvpOptions, RectangularFlow};
/// use candle_core::{DType, Device, Tensor};
/// use std::sync::Arc;
/// # fn main() -> ppl_core::Result<()> {
/// let store = ParamStore::new();
/// let vb = store.var_builder(DType::F64, &Device::Cpu, 0);
/// let square = RealNvp::build(vb, 3, 0, 4, &[16], &RealNvpOptions::default())?;
/// let g = RectangularFlow::new(Arc::new(square), 2)?; // a surface in R^3
/// let z = Tensor::new(&[[0.3f64, -1.0], [0.0, 0.5]], &Device::Cpu)?;
/// let x = g.decode(&z)?;                               // [2, 3]
/// let back = g.encode(&x)?;                            // = z
/// assert!(back.sub(&z)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RectangularFlow {
    flow: Arc<dyn Bijector>,
    prior: Option<Arc<dyn Bijector>>,
    latent: usize,
    positions: Vec<usize>,
}

impl RectangularFlow {
    /// `g(z) = flow(pad(z))` with `z` in the first `latent` coordinates.
    pub fn new(flow: Arc<dyn Bijector>, latent: usize) -> Result<Self> {
        Self::with_positions(flow, (0..latent).collect())
    }

    /// `g(z) = flow(pad(z))` with `z_i` at coordinate `positions[i]` (distinct, below
    /// `flow.dim()`, at least one and fewer than `flow.dim()`).
    pub fn with_positions(flow: Arc<dyn Bijector>, positions: Vec<usize>) -> Result<Self> {
        let big = flow.dim();
        let d = positions.len();
        if d == 0 || d >= big {
            return Err(PplError::invalid_argument(
                LAYER,
                format!(
                    "the latent size must be in 1..{big} (below the square flow's dimension \
                     {big}), got {d}"
                ),
            ));
        }
        let mut seen = vec![false; big];
        for &p in &positions {
            if p >= big || seen[p] {
                return Err(PplError::invalid_argument(
                    LAYER,
                    format!(
                        "latent positions {positions:?} must be distinct coordinates below {big}"
                    ),
                ));
            }
            seen[p] = true;
        }
        Ok(RectangularFlow {
            flow,
            prior: None,
            latent: d,
            positions,
        })
    }

    /// Adds a flow `h` on `R^d` for the latent density: `z = h(u)`, `u ~ N(0, I_d)`.
    pub fn with_prior(mut self, prior: Arc<dyn Bijector>) -> Result<Self> {
        if prior.dim() != self.latent {
            return Err(PplError::invalid_argument(
                LAYER,
                format!(
                    "the prior flow acts on R^{} but the latent size is {}",
                    prior.dim(),
                    self.latent
                ),
            ));
        }
        self.prior = Some(prior);
        Ok(self)
    }

    /// The square flow `f`.
    pub fn square_flow(&self) -> &Arc<dyn Bijector> {
        &self.flow
    }

    /// The latent flow `h`, if any.
    pub fn prior(&self) -> Option<&Arc<dyn Bijector>> {
        self.prior.as_ref()
    }

    /// Where `z` sits among the `D` coordinates.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// The selection matrix `P` `[d, D]` (`P[i, positions[i]] = 1`): `pad(z) = z P`.
    fn selection(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let big = self.flow.dim();
        let mut p = vec![0f64; self.latent * big];
        for (i, &j) in self.positions.iter().enumerate() {
            p[i * big + j] = 1.0;
        }
        Ok(Tensor::from_vec(p, (self.latent, big), device)?.to_dtype(dtype)?)
    }

    /// `pad(z)`: `[..., d]` → `[..., D]`.
    fn pad(&self, z: &Tensor) -> Result<Tensor> {
        let p = self.selection(z.dtype(), z.device())?;
        let dims = z.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = self.flow.dim();
        }
        Ok(z.reshape((rows, self.latent))?.matmul(&p)?.reshape(out)?)
    }

    /// `log p_Z(z)` `[...]` of latents `z` `[..., d]`: `log N(z; 0, I)` or, with a prior flow
    /// `h`, `log N(h⁻¹(z); 0, I) + log |det ∂h⁻¹/∂z|`.
    pub fn log_prior(&self, z: &Tensor) -> Result<Tensor> {
        check_event(LAYER, "the latent", z, self.latent)?;
        let (u, ladj) = match &self.prior {
            Some(h) => {
                let (u, l) = h.to_base(z, None)?;
                (u, Some(l))
            }
            None => (z.clone(), None),
        };
        let c = 0.5 * self.latent as f64 * (2.0 * std::f64::consts::PI).ln();
        let lp = ((u.sqr()?.sum(D::Minus1)? * -0.5)? - c)?;
        Ok(match ladj {
            Some(l) => (lp + l)?,
            None => lp,
        })
    }

    /// `n` latents from the prior (`[n, d]`) and their images on the manifold (`[n, D]`).
    pub fn sample(
        &self,
        rng: &mut PplRng,
        n: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let u = rng.normal_tensor(&[n, self.latent], dtype, device)?;
        let z = match &self.prior {
            Some(h) => h.to_data(&u, None)?.0,
            None => u,
        };
        let x = self.decode(&z)?;
        Ok((z, x))
    }
}

impl Injective for RectangularFlow {
    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn data_dim(&self) -> usize {
        self.flow.dim()
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        check_event(LAYER, "the latent", z, self.latent)?;
        Ok(self.flow.to_data(&self.pad(z)?, None)?.0)
    }

    fn decode_jvp(&self, z: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        check_event(LAYER, "the latent", z, self.latent)?;
        check_tangents(LAYER, z, v, self.latent)?;
        // pad is linear: its tangents are the padded tangents.
        let (x, _, jv) = self.flow.to_data_jvp(&self.pad(z)?, None, &self.pad(v)?)?;
        Ok((x, jv))
    }

    fn encode(&self, x: &Tensor) -> Result<Tensor> {
        check_event(LAYER, "the data point", x, self.flow.dim())?;
        let (base, _) = self.flow.to_base(x, None)?;
        let idx: Vec<u32> = self.positions.iter().map(|&p| p as u32).collect();
        let idx = Tensor::from_vec(idx, self.latent, x.device())?;
        Ok(base.index_select(&idx, base.rank() - 1)?)
    }
}
