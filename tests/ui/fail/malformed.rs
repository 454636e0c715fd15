use candle_core::{Device, Tensor};
use ppl::prelude::*;

#[model]
fn bad(x: &Tensor) -> Result<()> {
    let d = Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?;
    sample!(d.clone());
    let _a = sample!("a", d.clone(), 3);
    observe!("x", d.clone());
    plate!("data", 3, subsamples = 2, {});
    plate!("data");
    Ok(())
}

fn main() {}
