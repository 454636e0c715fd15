use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn normal(loc: f64) -> Result<Normal> {
    Normal::new(&Tensor::new(loc, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
}

// One `z` per run, whichever branch runs; `w` in every arm of a match; `v` only in one arm.
#[model]
fn branchy(flag: bool, k: u8) -> Result<Tensor> {
    let z = if flag {
        sample!("z", normal(-1.0)?)
    } else if k > 5 {
        sample!("z", normal(0.0)?)
    } else {
        sample!("z", normal(1.0)?)
    };
    let w = match k {
        0 => sample!("w", normal(0.0)?),
        1 => {
            let v = sample!(normal(2.0)?);
            sample!("w", Normal::new(&v, &Tensor::new(1.0, &Device::Cpu)?)?)
        }
        _ => observe!("w", normal(3.0)?, &z),
    };
    Ok((z + w)?)
}

fn main() {
    assert_eq!(BranchyLatents::SITES, ["z", "w", "v"]);
    let mut ctx = Ctx::new(0);
    let (_, tr) = ctx.trace(|ctx| branchy(ctx, true, 1)).unwrap();
    let lat = BranchyLatents::from_trace(&tr).unwrap();
    let z: Option<Tensor> = lat.z;
    assert!(z.is_some() && lat.w.is_some() && lat.v.is_some());
    // the observed `w` and the unreached `v` are `None`, not an error
    let (_, tr) = ctx.trace(|ctx| branchy(ctx, false, 2)).unwrap();
    let lat = BranchyLatents::from_trace(&tr).unwrap();
    assert!(lat.z.is_some() && lat.w.is_none() && lat.v.is_none());
    assert_eq!(lat.to_choices().len(), 1);
}
