use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn normal() -> Result<Normal> {
    Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
}

// Literal names inside closures that iterator methods call once per element.
#[model]
fn repeated(xs: &[f64]) -> Result<()> {
    let _a = (0..3)
        .map(|_| -> Result<Tensor> { Ok(sample!("a", normal()?)) })
        .collect::<Result<Vec<_>>>()?;
    xs.iter().enumerate().try_for_each(|(_, _)| -> Result<()> {
        observe!("b", normal()?, &Tensor::new(0.0, &Device::Cpu)?);
        Ok(())
    })?;
    let _c = std::iter::repeat_with(|| -> Result<Tensor> { Ok(sample!("c", normal()?)) })
        .take(2)
        .collect::<Result<Vec<_>>>()?;
    let _d = [1, 2].map(|_| -> Result<Tensor> {
        Ok(deterministic!("d", Tensor::new(0.0, &Device::Cpu)?))
    });
    Ok(())
}

fn main() {}
