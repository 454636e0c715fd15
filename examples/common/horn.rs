//! The conditional "horn" shared by `ebm_conditional_horn` and `bench_ebm`: data
//! `x ~ U(0, 1)`, `θ ~ U(0, 2π)`, `y = ρ(x) ∘ (cos θ, sin θ) + N(0, 1/20²)`, and the energy
//! model `E = (y₁ − f₁(x) cos z)² + (y₂ − f₂(x) sin z)²` with an MLP predictor `f`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};
use ppl::prelude::*;
use std::f64::consts::PI;

/// The true radii `ρ(x)`.
pub fn rho(x: f64) -> [f64; 2] {
    let g = (2.0 * x).exp();
    [
        (1.5 * x + 2.0 * (1.0 - x)) * g,
        (2.0 * x + 1.5 * (1.0 - x)) * g,
    ]
}

/// `n` horn points `(x [n, 1], y [n, 2])` from `ctx`'s generator.
pub fn horn(ctx: &mut Ctx, n: usize) -> Result<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    let u = Uniform::new(
        &Tensor::zeros(n, DType::F64, &dev)?,
        &Tensor::ones(n, DType::F64, &dev)?,
    )?;
    let x = u.sample(ctx.rng(), &[])?.to_vec1::<f64>()?;
    let th = u.sample(ctx.rng(), &[])?.to_vec1::<f64>()?;
    let eps = Normal::standard(&[n, 2], DType::F64, &dev)?
        .sample(ctx.rng(), &[])?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut y = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (r, t) = (rho(x[i]), 2.0 * PI * th[i]);
        y.push(r[0] * t.cos() + eps[2 * i] / 20.0);
        y.push(r[1] * t.sin() + eps[2 * i + 1] / 20.0);
    }
    Ok((
        Tensor::from_vec(x, (n, 1), &dev)?.to_dtype(DType::F32)?,
        Tensor::from_vec(y, (n, 2), &dev)?.to_dtype(DType::F32)?,
    ))
}

/// The predictor `f: 1-8-8-2` (ReLU); its weights live in the context's parameter store.
pub struct Predictor {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Predictor {
    pub fn new(ctx: &mut Ctx) -> Result<Self> {
        let lin =
            |ctx: &mut Ctx, name: &str, a, b| ctx.module(name, |vb| candle_nn::linear(a, b, vb));
        Ok(Predictor {
            l1: lin(ctx, "f/fc1", 1, 8)?,
            l2: lin(ctx, "f/fc2", 8, 8)?,
            l3: lin(ctx, "f/fc3", 8, 2)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.l1.forward(x)?.relu()?;
        let h = self.l2.forward(&h)?.relu()?;
        Ok(self.l3.forward(&h)?)
    }

    /// The energy model on `(x, y)`, `batch` points per run when subsampling.
    pub fn model(&self, ctx: &mut Ctx, x: &Tensor, y: &Tensor, batch: Option<usize>) -> Result<()> {
        let dev = Device::Cpu;
        let opts = PlateOpts {
            subsample_size: batch,
            ..Default::default()
        };
        ctx.plate("data", x.dim(0)?, opts, |ctx, p| {
            let idx = p.indices()?;
            let (xb, yb) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
            let f = self.forward(&xb)?; // [B, 2]
            let (lo, hi) = (
                Tensor::new(0f32, &dev)?,
                Tensor::new(2.0 * PI as f32, &dev)?,
            );
            // [B] in a plain run, [G, B] when the engine searches G candidates at once.
            let z = ctx.sample("z", Uniform::new(&lo, &hi)?)?;
            let d1 = yb
                .get_on_dim(1, 0)?
                .broadcast_sub(&z.cos()?.broadcast_mul(&f.get_on_dim(1, 0)?)?)?;
            let d2 = yb
                .get_on_dim(1, 1)?
                .broadcast_sub(&z.sin()?.broadcast_mul(&f.get_on_dim(1, 1)?)?)?;
            ctx.factor("energy", &(d1.sqr()? + d2.sqr()?)?.neg()?)
        })
    }
}
