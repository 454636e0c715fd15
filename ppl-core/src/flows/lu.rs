//! An invertible linear layer in LU form (Glow's 1×1 convolution, for vectors).

use super::bijector::{impl_bijector_by_pass, Pass};
use super::shapes::{batch_broadcast, check_pass, index_tensor, invert_permutation, take_last};
use crate::error::{PplError, Result};
use crate::linalg::solve_lower_triangular;
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};

/// `x = W z + b` with `W = P L U`: `P` a fixed permutation (`(P y)_i = y_{perm[i]}`), `L`
/// unit lower-triangular, `U` upper-triangular with diagonal `exp(log_s)` (so `W` is
/// always invertible). `ladj = Σ log_s` (to data).
///
/// To base: `z = U⁻¹ L⁻¹ Pᵀ (x − b)`, two triangular solves ([`solve_lower_triangular`],
/// differentiable, O(D) tensor ops over the whole batch). Both directions are one pass.
///
/// Parameters under `vb`: `lower` `[D, D]` (its strict lower triangle is used), `upper`
/// `[D, D]` (strict upper triangle), `log_s` `[D]`, `bias` `[D]`, all starting at zero (the
/// layer starts as `P`).
#[derive(Debug, Clone)]
pub struct LuLinear {
    lower: Tensor,
    upper: Tensor,
    log_s: Tensor,
    bias: Tensor,
    perm: Tensor,
    perm_inv: Tensor,
    /// The reversal `D−1…0` (turns the upper solve into a lower one).
    rev: Tensor,
    strict_lower: Tensor,
    eye: Tensor,
    dim: usize,
}

impl LuLinear {
    /// An LU linear layer on events of size `dim`; `perm` is `P` (`None`: the identity).
    pub fn new(vb: VarBuilder, dim: usize, perm: Option<Vec<usize>>) -> Result<Self> {
        if dim == 0 {
            return Err(PplError::invalid_argument(
                "LuLinear",
                "dim must be positive",
            ));
        }
        let perm = perm.unwrap_or_else(|| (0..dim).collect());
        let inv = invert_permutation(&perm)
            .filter(|_| perm.len() == dim)
            .ok_or_else(|| {
                PplError::invalid_argument(
                    "LuLinear",
                    format!("perm {perm:?} is not a permutation of 0..{dim}"),
                )
            })?;
        let dev = vb.device().clone();
        let dt = vb.dtype();
        let zero = Init::Const(0.0);
        let eye = Tensor::eye(dim, dt, &dev)?;
        Ok(LuLinear {
            lower: vb.get_with_hints((dim, dim), "lower", zero)?,
            upper: vb.get_with_hints((dim, dim), "upper", zero)?,
            log_s: vb.get_with_hints(dim, "log_s", zero)?,
            bias: vb.get_with_hints(dim, "bias", zero)?,
            perm: index_tensor(&perm, &dev)?,
            perm_inv: index_tensor(&inv, &dev)?,
            rev: index_tensor(&(0..dim).rev().collect::<Vec<_>>(), &dev)?,
            strict_lower: (Tensor::tril2(dim, dt, &dev)? - &eye)?,
            eye,
            dim,
        })
    }

    /// `(L, U)` as dense matrices, in `dtype`.
    fn factors(&self, dtype: candle_core::DType) -> Result<(Tensor, Tensor)> {
        let sl = self.strict_lower.to_dtype(dtype)?;
        let eye = self.eye.to_dtype(dtype)?;
        let l = (self.lower.to_dtype(dtype)?.mul(&sl)? + &eye)?;
        let su = sl.t()?;
        let diag = eye.broadcast_mul(&self.log_s.to_dtype(dtype)?.exp()?.unsqueeze(0)?)?;
        let u = (self.upper.to_dtype(dtype)?.mul(&su)? + diag)?;
        Ok((l, u))
    }

    /// The weight `W = P L U` `[D, D]`.
    pub fn weight(&self) -> Result<Tensor> {
        let (l, u) = self.factors(self.lower.dtype())?;
        Ok(l.index_select(&self.perm, 0)?.matmul(&u)?)
    }

    /// `y W ᵀ` for row vectors `y` `[..., D]` (any number of batch axes).
    fn apply_w(&self, y: &Tensor) -> Result<Tensor> {
        let (l, u) = self.factors(y.dtype())?;
        let w = l.index_select(&self.perm, 0)?.matmul(&u)?;
        // candle's matmul needs a matrix and rejects some broadcast (zero-stride)
        // layouts: a single event goes through as `[1, D]`, other layouts are copied.
        if y.rank() == 1 {
            return Ok(y.unsqueeze(0)?.matmul(&w.t()?)?.squeeze(0)?);
        }
        Ok(y.contiguous()?.broadcast_matmul(&w.t()?)?)
    }

    /// `W⁻¹ y` for row vectors `y` `[..., D]`: `U⁻¹ L⁻¹ Pᵀ y`.
    fn solve_w(&self, y: &Tensor) -> Result<Tensor> {
        let (l, u) = self.factors(y.dtype())?;
        let dims = y.dims().to_vec();
        let n = y.elem_count() / self.dim;
        // Columns: B [D, n].
        let b = take_last(y, &self.perm_inv)?.reshape((n, self.dim))?.t()?;
        let c = solve_lower_triangular(&l, &b)?;
        // U z = c  ⇔  (R U R)(R z) = R c with R the reversal; R U R is lower-triangular.
        let rur = u.index_select(&self.rev, 0)?.index_select(&self.rev, 1)?;
        let rc = c.index_select(&self.rev, 0)?;
        let rz = solve_lower_triangular(&rur, &rc)?;
        let z = rz.index_select(&self.rev, 0)?.t()?.reshape(dims)?;
        Ok(z)
    }

    fn ladj(&self, like: &Tensor) -> Result<Tensor> {
        batch_broadcast(&self.log_s.to_dtype(like.dtype())?.sum(D::Minus1)?, like)
    }
}

impl Pass for LuLinear {
    const LAYER: &'static str = "LuLinear";

    fn pass_dim(&self) -> usize {
        self.dim
    }

    fn pass(
        &self,
        input: &Tensor,
        _context: Option<&Tensor>,
        v: Option<&Tensor>,
        to_data: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        check_pass(Self::LAYER, input, v, self.dim, to_data)?;
        let bias = self.bias.to_dtype(input.dtype())?;
        if to_data {
            let x = self.apply_w(input)?.broadcast_add(&bias)?;
            let t = v.map(|v| self.apply_w(v)).transpose()?;
            Ok((x, self.ladj(input)?, t))
        } else {
            let z = self.solve_w(&input.broadcast_sub(&bias)?)?;
            let t = v.map(|v| self.solve_w(v)).transpose()?;
            Ok((z, self.ladj(input)?.neg()?, t))
        }
    }
}

impl_bijector_by_pass!(LuLinear);
