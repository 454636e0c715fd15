use candle_core::{DType, Device, Tensor};
use ppl::prelude::*;

#[model]
fn everything(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    let w = param!(Tensor::zeros(3, DType::F32, dev));
    let s = param!("s", Tensor::ones((), DType::F32, dev), Constraint::Positive);
    let lin = module!("net", |vb| candle_nn::linear(3, 3, vb));
    let z = sample!(Normal::new(&w, &s)?.to_event(1)?);
    let h = candle_core::Module::forward(&lin, &z.unsqueeze(0)?)?;
    let y = deterministic!(h.sum_all()?);
    plate!("data", x.dim(0)?, dim = -1, |idx| {
        let xs = x.index_select(&idx, 0)?;
        observe!("x", Normal::new(&Tensor::zeros((), DType::F32, dev)?, &s)?, &xs);
        factor!("energy", xs.sqr()?.neg()?);
    });
    for i in 0..2 {
        sample!(("noise", i), Normal::new(&y, &s)?);
    }
    Ok(y)
}

fn main() {
    let x = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(0);
    let (_, tr) = ctx.trace(|ctx| everything(ctx, &x)).unwrap();
    let lat = EverythingLatents::from_trace(&tr).unwrap();
    assert_eq!(lat.z.dims(), &[3]);
    assert_eq!(EverythingLatents::SITES, ["z"]);
    assert!(tr.get("noise[1]").is_some());
}
