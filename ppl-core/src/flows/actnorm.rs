//! Activation normalisation (Glow, Kingma & Dhariwal 2018) with data-dependent init.

use super::bijector::{impl_bijector_by_pass, Pass};
use super::shapes::{batch_broadcast, check_event, check_pass};
use crate::error::{PplError, Result};
use crate::tensor::host_f64;
use candle_core::{DType, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Serialises data-dependent initialisations (rare: once per layer and store).
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// A per-dimension affine layer `x = loc + exp(log_scale) ⊙ z` whose parameters are set
/// from the first data it sees, so that the data leave it with zero mean and unit variance
/// per dimension.
///
/// **Initialisation.** [`ActNorm::initialize`] sets `loc` to the per-dimension mean of
/// `x` `[..., D]` (over every batch axis) and `log_scale` to the log of its (population)
/// standard deviation, floored at `1e-6`. The first call to [`Bijector::to_base`](super::Bijector::to_base) (the
/// density direction, on data) does this on its input when the layer is not initialised
/// yet; inside a [`Flow`](super::Flow) that is the output of the layers above it, as in
/// Glow. [`Bijector::to_data`](super::Bijector::to_data) never initialises (it uses the current values: the identity
/// for a new layer).
///
/// The state lives in the parameter store under `vb`: `loc`, `log_scale` and a flag
/// `initialized` (`[1]`, 0 or 1). The flag never enters a computation, so it receives no
/// gradient and the optimisers leave it alone (ppl-inference's `Adam`/`Sgd` and candle-nn's
/// optimisers skip variables without a gradient); it is saved and loaded with the other
/// parameters, so a layer rebuilt from a loaded store is not initialised again.
/// Initialisation writes the variables in place under a process-wide lock (`&self`,
/// thread-safe: threads racing to initialise one layer, or several `ActNorm` values built
/// on the same store path, e.g. rebuilt by `ctx.module` in each run, do it once).
#[derive(Debug)]
pub struct ActNorm {
    loc: Var,
    log_scale: Var,
    flag: Var,
    dim: usize,
    /// Set once the flag was seen set (saves reading the flag on every call).
    seen: AtomicBool,
}

impl ActNorm {
    /// An ActNorm layer on events of size `dim`, with its state under `vb` (see the type's
    /// documentation). A new layer is the identity until initialised.
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(PplError::invalid_argument(
                "ActNorm",
                "dim must be positive",
            ));
        }
        let get = |name: &str, init: f64, n: usize| -> Result<Var> {
            let t = vb.get_with_hints(n, name, Init::Const(init))?;
            Ok(Var::from_tensor(&t)?)
        };
        Ok(ActNorm {
            loc: get("loc", 0.0, dim)?,
            log_scale: get("log_scale", 0.0, dim)?,
            flag: get("initialized", 0.0, 1)?,
            dim,
            seen: AtomicBool::new(false),
        })
    }

    /// Whether the layer's data-dependent initialisation has happened (here or in the run
    /// that saved the loaded parameters).
    pub fn is_initialized(&self) -> Result<bool> {
        if self.seen.load(Ordering::Acquire) {
            return Ok(true);
        }
        let v = host_f64(self.flag.as_tensor())?;
        let set = v.first().is_some_and(|f| *f > 0.5);
        if set {
            self.seen.store(true, Ordering::Release);
        }
        Ok(set)
    }

    /// Initialises `loc` and `log_scale` from data `x` `[..., D]` (at least two rows) unless
    /// the layer is initialised already; returns whether it did. The values are computed
    /// from `x` detached.
    pub fn initialize(&self, x: &Tensor) -> Result<bool> {
        check_event("ActNorm", "the data x", x, self.dim)?;
        let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_initialized()? {
            return Ok(false);
        }
        let n = x.elem_count() / self.dim;
        if n < 2 {
            return Err(PplError::invalid_argument(
                "ActNorm",
                format!(
                    "data-dependent initialisation needs at least 2 rows to estimate a \
                     variance, got x of shape {:?}",
                    x.dims()
                ),
            ));
        }
        let rows = x.detach().to_dtype(DType::F64)?.reshape((n, self.dim))?;
        let mean = rows.mean(0)?;
        let var = rows.broadcast_sub(&mean)?.sqr()?.mean(0)?;
        let log_sd = (var.maximum(1e-12)?.log()? * 0.5)?;
        let (m, l) = (host_f64(&mean)?, host_f64(&log_sd)?);
        if m.iter().chain(&l).any(|v| !v.is_finite()) {
            return Err(PplError::invalid_argument(
                "ActNorm",
                "data-dependent initialisation saw non-finite data (NaN or infinite entries)",
            ));
        }
        let dt = self.loc.dtype();
        self.loc
            .set(&mean.to_dtype(dt)?.to_device(self.loc.device())?)?;
        self.log_scale
            .set(&log_sd.to_dtype(dt)?.to_device(self.loc.device())?)?;
        let one = Tensor::ones(1, self.flag.dtype(), self.flag.device())?;
        self.flag.set(&one)?;
        self.seen.store(true, Ordering::Release);
        Ok(true)
    }

    /// The current `loc` `[D]`.
    pub fn loc(&self) -> &Tensor {
        self.loc.as_tensor()
    }

    /// The current `log_scale` `[D]`.
    pub fn log_scale(&self) -> &Tensor {
        self.log_scale.as_tensor()
    }

    fn params(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let dt = like.dtype();
        Ok((
            self.loc.as_tensor().to_dtype(dt)?,
            self.log_scale.as_tensor().to_dtype(dt)?,
        ))
    }
}

impl Pass for ActNorm {
    const LAYER: &'static str = "ActNorm";

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
        if !to_data && !self.is_initialized()? {
            self.initialize(input)?;
        }
        let (loc, ls) = self.params(input)?;
        // to_data: x = z e^s + loc; to_base: z = (x − loc) e^{−s}.
        let ls = if to_data { ls } else { ls.neg()? };
        let out = if to_data {
            input.broadcast_mul(&ls.exp()?)?.broadcast_add(&loc)?
        } else {
            input.broadcast_sub(&loc)?.broadcast_mul(&ls.exp()?)?
        };
        let ladj = batch_broadcast(&ls.sum(D::Minus1)?, input)?;
        let t = v.map(|v| v.broadcast_mul(&ls.exp()?)).transpose()?;
        Ok((out, ladj, t))
    }
}

impl_bijector_by_pass!(ActNorm);
