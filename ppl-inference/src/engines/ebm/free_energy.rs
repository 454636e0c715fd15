use crate::importance::log_mean_exp0;
use candle_core::Tensor;
use ppl_core::{ChoiceMap, PplError, Result};

/// Zero temperature (`F∞ = min_z E`) or inverse temperature `β` (`F_β`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Temperature {
    /// `F∞(x, y) = min_z E(x, y, z)`.
    Zero,
    /// `F_β(x, y) = −(1/β) log((1/|Z|) ∫ exp(−βE(x, y, z)) dz)`, `β > 0`.
    Beta(f64),
}

impl Temperature {
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Temperature::Beta(b) if !(b.is_finite() && *b > 0.0) => Err(PplError::config(
                "Temperature::Beta",
                format!("β must be positive and finite, got {b}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The result of inference per data point.
///
/// Free energies per data point and what produced them. Shapes: `B` is the number of data
/// points in the run (the data plate's subsample size), `G` the number of candidates (grid
/// points or samples).
#[derive(Debug, Clone)]
pub struct FreeEnergy {
    /// The free energy per point `[B]`: `F∞` or `F_β`. Differentiable in the model's
    /// parameters (for `F∞`, through the energy at the detached minimiser).
    pub f: Tensor,
    /// The energy at the minimiser `E(x, y, ž)` per point `[B]` (equal to `f` at zero
    /// temperature).
    pub energy: Tensor,
    /// The minimiser `ž` per latent site, each with the site's own shape (as a plain run
    /// of the model has it); detached.
    pub z: ChoiceMap,
    /// The candidates' energies `[G, B]` (grid or samples), when there were candidates.
    pub energies: Option<Tensor>,
    /// The soft-argmin weights `softmax_g(−βE_g)` `[G, B]` (relaxed free energies only).
    pub weights: Option<Tensor>,
    /// The subsample indices the runs used, by plate name (empty without subsampling).
    pub subsamples: ChoiceMap,
}

impl FreeEnergy {
    /// The mean free energy over the points, as `f64`.
    pub fn mean(&self) -> Result<f64> {
        Ok(self
            .f
            .to_dtype(candle_core::DType::F64)?
            .mean_all()?
            .to_scalar::<f64>()?)
    }
}

/// The relaxed minimum over axis 0 of `energies` `[G, B]`:
/// `F_β = −(1/β) log((1/G) Σ_g w_g exp(−βE_g))` computed stably (logsumexp with the
/// maximum taken out), with optional log importance weights `log_w` `[G, B]` (absent: all
/// 1); and the soft-argmin weights `softmax_g(−βE_g + log w_g)` `[G, B]`. As `β → ∞` it
/// tends to `min_g E_g`, as `β → 0` to the (weighted) mean energy.
pub fn relaxed_min(
    energies: &Tensor,
    beta: f64,
    log_w: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    Temperature::Beta(beta).check()?;
    if energies.rank() != 2 {
        return Err(PplError::invalid_argument(
            "relaxed_min",
            format!("energies must be [G, B], got shape {:?}", energies.dims()),
        ));
    }
    let mut x = energies.affine(-beta, 0.0)?;
    if let Some(w) = log_w {
        x = x.broadcast_add(&w.to_dtype(x.dtype())?)?;
    }
    let f = log_mean_exp0(&x)?.affine(-1.0 / beta, 0.0)?;
    let weights = candle_nn::ops::softmax(&x, 0)?;
    Ok((f, weights))
}
