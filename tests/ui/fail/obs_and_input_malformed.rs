use candle_core::{Device, Tensor};
use ppl::prelude::*;

#[model]
fn bad(x: &Tensor) -> Result<()> {
    let d = Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?;
    sample!("a", d.clone(), ob = None);
    sample!("b", d.clone(), obs = None, obs = None);
    sample!("c", d.clone(), x.dims()[0] = 1);
    input!(x);
    let _e = input!("e", x, x);
    Ok(())
}

fn not_a_model(x: &Tensor) -> Result<Tensor> {
    let y = input!(x);
    Ok(y)
}

// `obs` takes an `Option<&Tensor>`.
#[model]
fn wrong_type(x: &Tensor) -> Result<()> {
    let d = Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?;
    sample!("f", d, obs = x);
    Ok(())
}

fn main() {}
