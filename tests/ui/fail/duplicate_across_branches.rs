use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn normal() -> Result<Normal> {
    Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
}

#[model]
fn sequential(c: bool, k: u8) -> Result<()> {
    // before and after an `if`: both can run
    if c {
        sample!("a", normal()?);
    }
    sample!("a", normal()?);
    // twice within one branch
    if c {
        sample!("b", normal()?);
        sample!("b", normal()?);
    } else {
        sample!("b", normal()?);
    }
    // an arm of a match and the code after it
    match k {
        0 => {
            sample!("c", normal()?);
        }
        _ => {}
    }
    observe!("c", normal()?, &Tensor::new(0.0, &Device::Cpu)?);
    // exclusive arms (accepted), then the if's condition, which always runs
    if sample!("d", normal()?).to_scalar::<f64>()? > 0.0 {
        sample!("e", normal()?);
    } else {
        sample!("e", normal()?);
        if c {
            sample!("d", normal()?);
        }
    }
    Ok(())
}

fn main() {}
