use candle_core::{Device, Tensor};
use ppl::prelude::*;

struct Owner;

impl Owner {
    // A struct cannot be declared inside an `impl` block.
    #[model(latents)]
    fn model(&self) -> Result<Tensor> {
        let z = sample!(Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?);
        Ok(z)
    }

    // An associated function without `self` needs `#[model(no_latents)]`.
    #[model]
    fn assoc() -> Result<Tensor> {
        let z = sample!(Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)?);
        Ok(z)
    }
}

#[model(latents, no_latents)]
fn twice() -> Result<()> {
    Ok(())
}

fn main() {}
