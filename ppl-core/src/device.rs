//! Run-time device selection.
//!
//! Built without the `cuda` feature, everything runs on the CPU. Built with it, the first
//! CUDA device is used when one is present and the CPU otherwise.

use crate::error::{PplError, Result};
use candle_core::Device;

/// The best device available at run time: CUDA device 0 when the crate was built with the
/// `cuda` feature and a GPU is present, else the CPU.
pub fn best_device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        Ok(Device::cuda_if_available(0)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

/// A device chosen by name: `"cpu"`, `"cuda"` (device 0) or `"cuda:N"`.
///
/// Errors ([`PplError::InvalidConfig`]): an unknown name; `cuda` in a build without this
/// library's `cuda` feature (the message says to build with `--features cuda` on `ppl`);
/// a CUDA device that cannot be opened (the message names it and gives candle's reason).
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let ordinal = match name.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    PplError::config(
                        "device_from_name",
                        format!("bad device name `{name}`: expected cuda:N"),
                    )
                })?,
                None => 0,
            };
            cuda(name, ordinal)
        }
        _ => Err(PplError::config(
            "device_from_name",
            format!("unknown device `{name}`: expected cpu, cuda or cuda:N"),
        )),
    }
}

#[cfg(feature = "cuda")]
fn cuda(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        PplError::config(
            "device_from_name",
            format!("cannot open CUDA device {ordinal} (`{name}`): {e}"),
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(name: &str, _ordinal: usize) -> Result<Device> {
    Err(PplError::config(
        "device_from_name",
        format!(
            "device `{name}` asked for, but this build has no CUDA support: enable the `cuda` \
             feature of this library (`cargo build --features cuda` on the `ppl` crate, or \
             `ppl = {{ version = \"...\", features = [\"cuda\"] }}` in Cargo.toml)"
        ),
    ))
}
