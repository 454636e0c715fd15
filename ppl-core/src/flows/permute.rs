//! Fixed permutations of the event axis: [`Permutation`] and [`Reverse`].

use super::bijector::{impl_bijector_by_pass, Bijector, Pass};
use super::shapes::{check_pass, index_tensor, invert_permutation, take_last, zero_ladj};
use crate::error::{PplError, Result};
use crate::rng::PplRng;
use candle_core::{Device, Tensor};

/// A fixed permutation of the event axis: `x_i = z_{perm[i]}` (to data) and
/// `z_j = x_{perm⁻¹[j]}` (to base). Volume preserving (`ladj = 0`), no parameters, the
/// context is ignored. Placed between coupling layers so every coordinate gets
/// transformed.
#[derive(Debug, Clone)]
pub struct Permutation {
    perm: Vec<usize>,
    fwd: Tensor,
    inv: Tensor,
}

impl Permutation {
    /// The permutation `perm` of `0..D` (each index exactly once), with index tensors on
    /// `device`.
    pub fn new(perm: Vec<usize>, device: &Device) -> Result<Self> {
        let inv = invert_permutation(&perm)
            .filter(|_| !perm.is_empty())
            .ok_or_else(|| {
                PplError::invalid_argument(
                    "Permutation",
                    format!(
                        "{perm:?} is not a permutation of 0..{} (non-empty, each index once)",
                        perm.len()
                    ),
                )
            })?;
        Ok(Permutation {
            fwd: index_tensor(&perm, device)?,
            inv: index_tensor(&inv, device)?,
            perm,
        })
    }

    /// A uniformly random permutation of `0..dim`, drawn from a generator seeded with
    /// `seed` (the same seed gives the same permutation).
    pub fn random(dim: usize, seed: u64, device: &Device) -> Result<Self> {
        let perm = PplRng::seed_from_u64(seed).permutation(dim);
        Self::new(perm, device)
    }

    /// The permutation: `x_i = z_{perm[i]}`.
    pub fn perm(&self) -> &[usize] {
        &self.perm
    }
}

impl Pass for Permutation {
    const LAYER: &'static str = "Permutation";

    fn pass_dim(&self) -> usize {
        self.perm.len()
    }

    fn pass(
        &self,
        input: &Tensor,
        _context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        check_pass(Self::LAYER, input, v, self.perm.len(), to_data)?;
        let idx = if to_data { &self.fwd } else { &self.inv };
        let t = v.map(|v| take_last(v, idx)).transpose()?;
        Ok((take_last(input, idx)?, zero_ladj(input)?, t))
    }
}

impl_bijector_by_pass!(Permutation);

/// Reverses the event axis: `x_i = z_{D−1−i}` (its own inverse; a [`Permutation`]).
#[derive(Debug, Clone)]
pub struct Reverse(Permutation);

impl Reverse {
    /// The reversal of `0..dim`, with index tensors on `device`.
    pub fn new(dim: usize, device: &Device) -> Result<Self> {
        Ok(Reverse(Permutation::new((0..dim).rev().collect(), device)?))
    }
}

impl Bijector for Reverse {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn to_data(&self, z: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.0.to_data(z, context)
    }
    fn to_base(&self, x: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.0.to_base(x, context)
    }
    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.0.to_data_jvp(z, context, v)
    }
    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.0.to_base_jvp(x, context, v)
    }
}
