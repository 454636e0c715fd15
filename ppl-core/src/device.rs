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
            Ok(Device::new_cuda(ordinal)?)
        }
        _ => Err(PplError::config(
            "device_from_name",
            format!("unknown device `{name}`: expected cpu, cuda or cuda:N"),
        )),
    }
}
