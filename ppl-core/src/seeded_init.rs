//! candle-nn weight initialisation from the library's RNG.
//!
//! candle-nn's `VarMap` initialises new variables with candle's own generator, which cannot
//! be seeded on the CPU: two runs with the same seed would start from different weights.
//! [`SeededBackend`] is a candle-nn `SimpleBackend` over the store's `VarMap` that draws
//! every *new* variable's initial value from a [`PplRng`] seeded deterministically, with
//! candle-nn's `Init` semantics (constant, normal, uniform, Kaiming normal/uniform), and
//! returns existing variables unchanged. `Ctx::module` uses it with a seed derived, without
//! advancing any stream, from the current generator state and the module's path.

use crate::rng::{upload, PplRng, RngState};
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarMap};
use std::sync::Mutex;

/// A `VarMap` backend whose new variables are initialised from a seeded [`PplRng`].
pub(crate) struct SeededBackend {
    vars: VarMap,
    seed: u64,
    /// Created on the first missing variable (most calls only read existing ones).
    rng: Mutex<Option<PplRng>>,
}

impl SeededBackend {
    pub(crate) fn new(vars: VarMap, seed: u64) -> Self {
        SeededBackend {
            vars,
            seed,
            rng: Mutex::new(None),
        }
    }
}

/// A seed from a generator state and a path (FNV-1a over their bytes): stable across runs
/// and platforms, different for different paths, and it advances nothing.
pub(crate) fn derive_seed(state: &RngState, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&state.seed);
    eat(&state.stream.to_le_bytes());
    eat(&state.word_pos.to_le_bytes());
    eat(path.as_bytes());
    h
}

fn initial(
    init: Init,
    shape: &Shape,
    dtype: DType,
    dev: &Device,
    rng: &mut PplRng,
) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let dims = shape.dims();
    let to_candle = |e: crate::PplError| candle_core::Error::Msg(e.to_string());
    let normal = |rng: &mut PplRng, mean: f64, sd: f64| {
        let v = rng.normals(n).into_iter().map(|e| mean + sd * e).collect();
        upload(v, dims, dtype, dev).map_err(to_candle)
    };
    let uniform = |rng: &mut PplRng, lo: f64, up: f64| {
        let v = rng
            .uniforms(n)
            .into_iter()
            .map(|u| lo + (up - lo) * u)
            .collect();
        upload(v, dims, dtype, dev).map_err(to_candle)
    };
    match init {
        Init::Const(c) => Tensor::ones(shape, dtype, dev)?.affine(c, 0.0),
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

impl SimpleBackend for SeededBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape())
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let rng = rng.get_or_insert_with(|| PplRng::seed_from_u64(self.seed));
        let var = Var::from_tensor(&initial(h, &s, dtype, dev, rng)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no variable `{name}` in the parameter store"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }
}
