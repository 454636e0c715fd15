// Models whose names differ only by underscores get different latents structs.
use candle_core::{Device, Tensor};
use ppl::prelude::*;

#[model]
fn model_2d() -> Result<Tensor> {
    let z = sample!(Normal::new(&Tensor::new(0f64, &Device::Cpu)?, &Tensor::new(1f64, &Device::Cpu)?)?);
    Ok(z)
}

#[model]
fn model2d() -> Result<Tensor> {
    let w = sample!(Normal::new(&Tensor::new(0f64, &Device::Cpu)?, &Tensor::new(1f64, &Device::Cpu)?)?);
    Ok(w)
}

#[model]
fn my_model() -> Result<Tensor> {
    let a = sample!(Normal::new(&Tensor::new(0f64, &Device::Cpu)?, &Tensor::new(1f64, &Device::Cpu)?)?);
    Ok(a)
}

#[allow(non_snake_case)]
#[model]
fn myModel() -> Result<Tensor> {
    let b = sample!(Normal::new(&Tensor::new(0f64, &Device::Cpu)?, &Tensor::new(1f64, &Device::Cpu)?)?);
    Ok(b)
}

fn main() -> Result<()> {
    let mut ctx = Ctx::new(0);
    let (_, t1) = ctx.trace(model_2d)?;
    let (_, t2) = ctx.trace(model2d)?;
    let (_, t3) = ctx.trace(my_model)?;
    let (_, t4) = ctx.trace(myModel)?;
    assert_eq!(Model_2dLatents::SITES, &["z"]);
    assert_eq!(Model2dLatents::SITES, &["w"]);
    Model_2dLatents::from_trace(&t1)?;
    Model2dLatents::from_trace(&t2)?;
    MyModelLatents::from_trace(&t3)?;
    myModel__Latents::from_trace(&t4)?;
    Ok(())
}
