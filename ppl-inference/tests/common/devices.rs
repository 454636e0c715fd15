//! Writing a test once for the CPU and CUDA.
//!
//! [`test_on_devices!`] turns one test body into a module with two tests, `cpu` and
//! `cuda`:
//!
//! ```ignore
//! mod common;
//! use common::test_on_devices;
//!
//! test_on_devices!(fn log_joint_is_exact(device) {
//!     let f = common::ConjugateGaussian::new(0, 10, DType::F64, &device).unwrap();
//!     // ...
//! });
//! // or, to use `?`:
//! test_on_devices!(fn evidence(device) -> ppl_core::Result<()> { /* ... */ Ok(()) });
//! ```
//!
//! `<name>::cpu` always runs. `<name>::cuda` is `#[ignore]`d unless the test binary is
//! built with ppl-inference's `cuda` feature (`cargo test -p ppl-inference --features
//! cuda`; CI has no GPU and never sets it). Built with the feature, it runs on CUDA device 0
//! and *fails* when there is none: asking for CUDA on a machine without a GPU is a setup
//! error, not a pass. `cargo test cuda` selects just the CUDA twins.
//!
//! For a loop inside one test instead, [`devices`] lists the CPU and, with the feature and
//! a GPU present, CUDA device 0. The macro needs `mod common;` at the test crate's root.

use candle_core::{DType, Device};
use ppl_core::prelude::{Ctx, ParamStore};

/// The CPU, and CUDA device 0 when this test binary was built with the `cuda` feature and
/// one is present.
pub fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    if cfg!(feature = "cuda") {
        if let Ok(d) = Device::new_cuda(0) {
            out.push(d);
        }
    }
    out
}

/// CUDA device 0; panics (this is test code) with the reason when it cannot be opened.
pub fn cuda_device() -> Device {
    match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => panic!(
            "this test binary was built with the `cuda` feature but CUDA device 0 cannot be \
             opened: {e}"
        ),
    }
}

/// A context on `device` with default dtype `dtype` (for `module!`) and a fresh store.
pub fn ctx_on(seed: u64, device: &Device, dtype: DType) -> Ctx {
    Ctx::with_store(seed, ParamStore::new(), device.clone()).with_dtype(dtype)
}

/// One test body, two tests: `<name>::cpu` and `<name>::cuda` (see the [module
/// docs](self)). The body sees `use super::*` of the calling module and a `Device`
/// binding with the given name; attributes before `fn` go on both tests.
#[allow(unused_macros)]
macro_rules! test_on_devices {
    ($(#[$meta:meta])* fn $name:ident($device:ident) $(-> $ret:ty)? $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($device: candle_core::Device) $(-> $ret)? $body

            #[test]
            $(#[$meta])*
            fn cpu() $(-> $ret)? {
                body(candle_core::Device::Cpu)
            }

            #[test]
            #[cfg_attr(
                not(feature = "cuda"),
                ignore = "needs a GPU and `--features cuda` (CI has neither)"
            )]
            $(#[$meta])*
            fn cuda() $(-> $ret)? {
                body(crate::common::devices::cuda_device())
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use test_on_devices;
