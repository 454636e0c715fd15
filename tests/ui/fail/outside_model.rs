use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn not_a_model() -> Result<Tensor> {
    let z = sample!(Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?);
    Ok(z)
}

fn main() {}
