use candle_core::{Device, Tensor};
use ppl::prelude::*;

// `obs = Option<&Tensor>`: observed when `Some`, latent when `None`; `input!` records data.
#[model]
fn missing(data: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
    let x = input!(data);
    input!(("copy", 0), &x);
    let w = sample!("w", Normal::new(&x, &Tensor::new(1.0, &Device::Cpu)?)?, obs = y);
    let v = sample!(Normal::new(&w, &Tensor::new(1.0, &Device::Cpu)?)?, obs = None);
    Ok(v)
}

fn main() {
    let data = Tensor::new(0.5, &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(0);
    let (_, tr) = ctx.trace(|ctx| missing(ctx, &data, None)).unwrap();
    let lat = MissingLatents::from_trace(&tr).unwrap();
    assert!(lat.w.is_some() && lat.v.is_some());
    assert_eq!(tr.inputs().count(), 2);
    let y = Tensor::new(2.0, &Device::Cpu).unwrap();
    let (_, tr) = ctx.trace(|ctx| missing(ctx, &data, Some(&y))).unwrap();
    let lat = MissingLatents::from_trace(&tr).unwrap();
    assert!(lat.w.is_none() && lat.v.is_some());
    assert_eq!(MissingLatents::SITES, ["w", "v"]);
}
