// Literal names inside closures that run at most once per run are fine: `Option::map`,
// `bool::then`, a closure called once. Closures called once per element take dynamic names.
use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn normal() -> Result<Normal> {
    Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
}

#[model]
fn once(extra: Option<f64>, flag: bool) -> Result<usize> {
    let a = extra
        .map(|_| -> Result<Tensor> { Ok(sample!("a", normal()?)) })
        .transpose()?
        .is_some();
    let b = flag
        .then(|| -> Result<Tensor> { Ok(sample!("b", normal()?)) })
        .transpose()?
        .is_some();
    let mut f = || -> Result<Tensor> { Ok(sample!("c", normal()?)) };
    let _c = f()?;
    let each = (0..3)
        .map(|i| -> Result<Tensor> { Ok(sample!(("each", i), normal()?)) })
        .collect::<Result<Vec<_>>>()?;
    Ok(usize::from(a) + usize::from(b) + each.len())
}

fn main() -> Result<()> {
    let mut ctx = Ctx::new(0);
    let (n, trace) = ctx.trace(|ctx| once(ctx, Some(1.0), true))?;
    assert_eq!(n, 5);
    assert_eq!(trace.len(), 6);
    Ok(())
}
