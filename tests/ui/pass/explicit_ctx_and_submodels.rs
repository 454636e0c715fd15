use candle_core::{Device, Tensor};
use ppl::handlers::Scope;
use ppl::prelude::*;

#[model]
fn encoder(loc: f64) -> Result<Tensor> {
    let z = sample!(Normal::new(&Tensor::new(loc, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?);
    Ok(z)
}

// The first parameter `ctx: &mut Ctx` is used as the model's context.
#[model]
fn two_encoders(ctx: &mut Ctx) -> Result<Tensor> {
    let (a, _) = ctx.handle(Scope::new("left"), |ctx| encoder(ctx, -1.0))?;
    let (b, _) = ctx.handle(Scope::new("right"), |ctx| encoder(ctx, 1.0))?;
    let total = deterministic!((a + b)?);
    Ok(total)
}

fn main() {
    let mut ctx = Ctx::new(0);
    let (_, tr) = ctx.trace(two_encoders).unwrap();
    let names: Vec<String> = tr.sites().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["left/z", "right/z", "total"]);
}
