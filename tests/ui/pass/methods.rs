use candle_core::{Device, Tensor};
use ppl::prelude::*;

struct Prior {
    loc: f64,
    calls: usize,
}

impl Prior {
    fn normal(&self, loc: f64) -> Result<Normal> {
        Normal::new(&Tensor::new(loc, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
    }

    // `&self`: the context comes right after the receiver.
    #[model]
    fn model(&self, x: &Tensor) -> Result<Tensor> {
        let z = sample!(self.normal(self.loc)?);
        plate!("data", x.dim(0)?, {
            observe!("x", Normal::new(&z, &Tensor::new(1.0, &Device::Cpu)?)?, x);
        });
        Ok(z)
    }

    // `&mut self` with the context named explicitly (first parameter after `self`).
    #[model]
    fn counted(&mut self, ctx: &mut Ctx) -> Result<Tensor> {
        self.calls += 1;
        let depth = ctx.depth();
        let z = sample!(self.normal(depth as f64)?);
        Ok(z)
    }

    // An associated function without `self` opts out of the latents struct.
    #[model(no_latents)]
    fn standalone(loc: f64) -> Result<Tensor> {
        let u = sample!(Normal::new(&Tensor::new(loc, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?);
        Ok(u)
    }
}

fn main() {
    let x = Tensor::new(&[1f64, 2.0], &Device::Cpu).unwrap();
    let mut prior = Prior { loc: 0.5, calls: 0 };
    let mut ctx = Ctx::new(0);
    let (z, tr) = ctx.trace(|ctx| prior.model(ctx, &x)).unwrap();
    assert_eq!(tr.value("z").unwrap().to_scalar::<f64>().unwrap(), z.to_scalar::<f64>().unwrap());
    let (_, tr) = ctx.trace(|ctx| prior.counted(ctx)).unwrap();
    assert!(tr.get("z").is_some());
    assert_eq!(prior.calls, 1);
    let (_, tr) = ctx.trace(|ctx| Prior::standalone(ctx, 1.0)).unwrap();
    assert!(tr.get("u").is_some());
}
