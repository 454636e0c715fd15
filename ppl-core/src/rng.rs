//! The random-number generator the library owns.
//!
//! candle's CPU RNG cannot be seeded, so every sampler in this library draws its base
//! noise from a [`PplRng`] on the host and uploads it. The stream is a ChaCha8 generator:
//! the same seed gives bit-identical draws on every run and thread count, and on CUDA the
//! same stream as on CPU (the noise is drawn on the host either way). Its full state
//! ([`RngState`]) can be saved in a checkpoint and restored.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Exp1, StandardNormal};

/// A seedable, serialisable random-number generator (ChaCha8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PplRng {
    inner: ChaCha8Rng,
}

/// The complete state of a [`PplRng`]: restoring it continues the stream exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngState {
    /// The 32-byte ChaCha key.
    pub seed: [u8; 32],
    /// The stream (nonce) number.
    pub stream: u64,
    /// Position in the stream, in 32-bit words.
    pub word_pos: u128,
}

impl PplRng {
    /// A generator seeded from a `u64`.
    pub fn seed_from_u64(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The generator's full state.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.inner.get_seed(),
            stream: self.inner.get_stream(),
            word_pos: self.inner.get_word_pos(),
        }
    }

    /// A generator continuing exactly from `state`.
    pub fn from_state(state: &RngState) -> Self {
        let mut inner = ChaCha8Rng::from_seed(state.seed);
        inner.set_stream(state.stream);
        inner.set_word_pos(state.word_pos);
        Self { inner }
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates), e.g. for subsampling.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let mut v: Vec<usize> = (0..n).collect();
        v.shuffle(&mut self.inner);
        v
    }

    /// An independent child generator (seeded from this one's stream), for handing to a
    /// worker thread without sharing state.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.inner.fill_bytes(&mut seed);
        Self {
            inner: ChaCha8Rng::from_seed(seed),
        }
    }

    /// The underlying generator, for use with `rand_distr` samplers.
    pub fn inner_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.inner
    }

    /// A uniform draw in the open interval (0, 1) (never exactly 0 or 1, so its log and
    /// the log of its complement are finite).
    pub fn uniform_open(&mut self) -> f64 {
        ((self.inner.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard-normal draw.
    pub fn standard_normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.inner)
    }

    /// A standard-exponential draw.
    pub fn standard_exponential(&mut self) -> f64 {
        Exp1.sample(&mut self.inner)
    }

    /// `n` standard-normal draws.
    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.standard_normal()).collect()
    }

    /// `n` uniform draws in (0, 1).
    pub fn uniforms(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform_open()).collect()
    }

    /// A tensor of standard-normal noise of the given shape, dtype and device.
    pub fn normal_tensor(
        &mut self,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let n = shape.iter().product();
        let v = self.normals(n);
        upload(v, shape, dtype, device)
    }

    /// A tensor of uniform (0, 1) noise of the given shape, dtype and device.
    pub fn uniform_tensor(
        &mut self,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let n = shape.iter().product();
        let v = self.uniforms(n);
        upload(v, shape, dtype, device)
    }
}

/// Uploads host values to a tensor of `dtype` on `device` (converting on the host for
/// f32/f64, so no f64 tensor is allocated on the device).
pub fn upload(values: Vec<f64>, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let t = match dtype {
        DType::F64 => Tensor::from_vec(values, shape, device)?,
        DType::F32 => {
            let v: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
            Tensor::from_vec(v, shape, device)?
        }
        other => Tensor::from_vec(values, shape, device)?.to_dtype(other)?,
    };
    Ok(t)
}
