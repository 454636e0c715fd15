use candle_core::{Device, Tensor};
use ppl::prelude::*;

#[model]
fn looped() -> Result<()> {
    let d = Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?;
    for _ in 0..3 {
        sample!("x", d.clone());
    }
    plate!("data", 3, {
        if true {
            return Ok(());
        }
    });
    Ok(())
}

fn main() {}
