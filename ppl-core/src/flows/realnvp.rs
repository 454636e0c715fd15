//! [`RealNvp`]: a ready-made stack of affine coupling layers.

use super::actnorm::ActNorm;
use super::bijector::Bijector;
use super::compose::Flow;
use super::conditioner::Activation;
use super::coupling::{AffineCoupling, CouplingOptions};
use super::lu::LuLinear;
use super::permute::{Permutation, Reverse};
use crate::error::{PplError, Result};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// The layer put between two coupling layers of a [`RealNvp`] stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mixing {
    /// Nothing: the alternating masks alone decide which coordinates interact.
    None,
    /// [`Reverse`] the event axis.
    Reverse,
    /// A random [`Permutation`] (one per gap, from the given seed and the gap's index).
    Permutation(u64),
    /// A learnable [`LuLinear`] (starts as the identity).
    #[default]
    LuLinear,
}

/// Settings of a [`RealNvp`] stack.
#[derive(Debug, Clone, PartialEq)]
pub struct RealNvpOptions {
    /// Hidden activation of the conditioners (default ReLU).
    pub activation: Activation,
    /// Log-scale bound of each coupling (default 3).
    pub clamp: f64,
    /// An [`ActNorm`] before each coupling layer (default `false`).
    pub actnorm: bool,
    /// What goes between coupling layers (default [`Mixing::LuLinear`]).
    pub mixing: Mixing,
}

impl Default for RealNvpOptions {
    fn default() -> Self {
        RealNvpOptions {
            activation: Activation::Relu,
            clamp: 3.0,
            actnorm: false,
            mixing: Mixing::LuLinear,
        }
    }
}

/// Builds Real NVP flows (Dinh et al. 2017).
#[derive(Debug, Clone, Copy)]
pub struct RealNvp;

impl RealNvp {
    /// A [`Flow`] of `n_couplings` [`AffineCoupling`] layers on events of size `dim ≥ 2`
    /// with checkerboard masks that alternate (even coordinates kept, then odd ones, …),
    /// conditioners of hidden widths `hidden` taking a context of `context_dim` (0:
    /// unconditional), optionally an [`ActNorm`] before each coupling and a [`Mixing`]
    /// layer between couplings. Parameters under `vb`: `coupling{i}`, `actnorm{i}`,
    /// `lu{i}`. A new flow is the identity (zero-initialised conditioner outputs, identity
    /// LU and ActNorm before its data-dependent initialisation).
    pub fn build(
        vb: VarBuilder,
        dim: usize,
        context_dim: usize,
        n_couplings: usize,
        hidden: &[usize],
        opts: &RealNvpOptions,
    ) -> Result<Flow> {
        if dim < 2 || n_couplings == 0 {
            return Err(PplError::invalid_argument(
                "RealNvp",
                format!(
                    "needs dim ≥ 2 (a coupling splits the event) and at least one coupling \
                     layer, got dim {dim}, n_couplings {n_couplings}"
                ),
            ));
        }
        let copts = CouplingOptions {
            hidden: hidden.to_vec(),
            activation: opts.activation,
            clamp: opts.clamp,
        };
        let dev = vb.device().clone();
        let mut layers: Vec<Arc<dyn Bijector>> = Vec::new();
        for i in 0..n_couplings {
            if opts.actnorm {
                layers.push(Arc::new(ActNorm::new(vb.pp(format!("actnorm{i}")), dim)?));
            }
            let mask = AffineCoupling::alternating_mask(dim, i % 2 == 1);
            layers.push(Arc::new(AffineCoupling::new(
                vb.pp(format!("coupling{i}")),
                &mask,
                context_dim,
                &copts,
            )?));
            if i + 1 < n_couplings {
                match opts.mixing {
                    Mixing::None => {}
                    Mixing::Reverse => layers.push(Arc::new(Reverse::new(dim, &dev)?)),
                    Mixing::Permutation(seed) => layers.push(Arc::new(Permutation::random(
                        dim,
                        seed.wrapping_add(i as u64),
                        &dev,
                    )?)),
                    Mixing::LuLinear => {
                        layers.push(Arc::new(LuLinear::new(vb.pp(format!("lu{i}")), dim, None)?))
                    }
                }
            }
        }
        Flow::new(layers)
    }
}
