//! Fixtures shared by the integration tests of every inference engine: models with exact
//! answers, and a way to run one test on every device.
//!
//! Each test binary declares `mod common;` at its root and uses a subset, hence the
//! `allow(dead_code)` below (clippy's `-D warnings` would otherwise fail on the unused
//! rest). The fixtures use only ppl-core: a model is a method `model(&self, ctx)` and
//! each fixture also implements [`Model`](ppl_core::model::Model), so `&fixture` can be
//! passed wherever a model is expected.
//!
//! | fixture | latents | exact answers |
//! |---|---|---|
//! | [`ConjugateGaussian`] | global `z` `[d]` | posterior, log evidence |
//! | [`LocalGaussian`] | `z` `[n, d]` in plate `data` | encoder, posterior and evidence per point |
//! | [`LinearRegression`] | global `w` `[d]` | posterior mean and covariance, log evidence |
//! | [`GaussianMixture`] | discrete `c` `[n]` in plate `data` | responsibilities, evidence per point |
//!
//! All are built from a seed, an `n`, a dtype (F32/F64) and a device: the data are drawn
//! on the host with `PplRng`, so they are the same on every device, and the exact answers
//! are computed in f64 from the data and hyper-parameters *as stored in the dtype*, so
//! they are exact for the f32 model too. Every model takes an optional subsample of plate
//! `data` (`with_subsample(m)`) and vectorises over a particle plate at dim −2.

#![allow(dead_code)]

pub mod devices;
pub mod gaussian;
pub mod host;
pub mod linreg;
pub mod mixture;

// Re-exports for short paths; a test binary that uses only some would warn.
#[allow(unused_imports)]
pub(crate) use devices::test_on_devices;
#[allow(unused_imports)]
pub use devices::{ctx_on, devices};
#[allow(unused_imports)]
pub use gaussian::{ConjugateGaussian, GaussianConfig, LocalGaussian};
#[allow(unused_imports)]
pub use linreg::{LinRegConfig, LinearRegression};
#[allow(unused_imports)]
pub use mixture::{GaussianMixture, MixtureConfig};

use candle_core::{DType, Device, Tensor};
use ppl_core::ctx::PlateGuard;
use ppl_core::error::Result;

/// Uploads host values as a `dtype` tensor and returns it with the values it holds
/// (rounded to the dtype), so exact answers can use exactly what the model sees.
pub fn upload_rounded(
    values: Vec<f64>,
    shape: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Vec<f64>)> {
    let t = ppl_core::rng::upload(values, shape, dtype, device)?;
    let host = ppl_core::tensor::host_f64(&t)?;
    Ok((t, host))
}

/// A scalar tensor of `dtype` on `device`.
pub fn scalar(v: f64, dtype: DType, device: &Device) -> Result<Tensor> {
    ppl_core::rng::upload(vec![v], &[], dtype, device)
}

/// The rows of `data` (along dim 0) that plate guard `g` selects: all of them without
/// subsampling, else the minibatch's.
pub fn rows(data: &Tensor, g: &PlateGuard, subsample: Option<usize>) -> Result<Tensor> {
    let f = g.frame();
    if subsample.is_none() && f.subsample_size == f.size {
        return Ok(data.clone());
    }
    let idx = g.indices()?.to_device(data.device())?;
    Ok(data.index_select(&idx, 0)?)
}
