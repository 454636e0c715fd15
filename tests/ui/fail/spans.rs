use candle_core::{Device, Tensor};
use ppl::prelude::*;

fn normal() -> Result<Normal> {
    Normal::new(&Tensor::new(0.0, &Device::Cpu)?, &Tensor::new(1.0, &Device::Cpu)?)
}

// A site name of a type that is no site name.
#[model]
fn wrong_name_type() -> Result<()> {
    sample!(4.5, normal()?);
    Ok(())
}

// An observed value that is not a tensor.
#[model]
fn non_tensor_value() -> Result<()> {
    observe!("x", normal()?, 3.0);
    Ok(())
}

// A return type that cannot take the primitives' `?`.
#[model]
fn not_a_result() -> f64 {
    let _z = sample!(Normal::standard(&[], candle_core::DType::F64, &Device::Cpu).unwrap());
    1.0
}


// A closure whose return type cannot take the primitive's `?`.
#[model]
fn closure_without_result() -> Result<()> {
    let draw = || sample!("y", Normal::standard(&[], candle_core::DType::F64, &Device::Cpu).unwrap());
    let _ = draw;
    Ok(())
}

fn main() {}
