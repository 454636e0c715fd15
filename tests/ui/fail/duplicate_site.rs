use candle_core::{Device, Tensor};
use ppl::prelude::*;

#[model]
fn twice() -> Result<()> {
    let d = Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?;
    let z = sample!(d.clone());
    sample!("z", d);
    let _ = z;
    Ok(())
}

fn main() {}
