//! Kernel features learned by minimising the validation error of the ridge regression.

use super::options::LearnedFeatures;
use super::ridge::{median_host, to_host, HostMat};
use super::solve::spd_solve;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Optimizer, VarBuilder};
use ppl_core::{ParamStore, PplError, Result};
use std::collections::HashMap;

/// The key prefix of the network's weights in the engine's state (checkpoints).
pub(crate) const PREFIX: &str = "krr/features/";

/// A tanh MLP `φ_ψ(x) = W_L tanh(… tanh(W_1 x̃ + b_1) …) + b_L` on standardised inputs
/// `x̃ = (x − m) / s` (`m`, `s` the data's per-column mean and scale, fixed at build).
pub(crate) struct FeatureNet {
    store: ParamStore,
    layers: Vec<(Tensor, Tensor)>,
    shift: Tensor,
    scale: Tensor,
    opts: LearnedFeatures,
}

impl std::fmt::Debug for FeatureNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureNet")
            .field("layers", &self.layers.len())
            .field("opts", &self.opts)
            .finish()
    }
}

impl FeatureNet {
    /// Builds the network for data rows `x` `[n, d]` (weights from `seed`).
    pub(crate) fn new(x: &Tensor, opts: &LearnedFeatures, seed: u64) -> Result<Self> {
        let x = x.to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
        let d = x.dim(1)?;
        let shift = x.mean_keepdim(0)?;
        let scale = (x.broadcast_sub(&shift)?.sqr()?.mean_keepdim(0)?.sqrt()? + 1e-8)?;
        let store = ParamStore::new();
        let vb: VarBuilder = store.var_builder(DType::F64, &Device::Cpu, seed);
        let mut widths = vec![d];
        widths.extend_from_slice(&opts.hidden);
        widths.push(opts.out);
        let mut layers = Vec::new();
        for (i, w) in widths.windows(2).enumerate() {
            let lin = candle_nn::linear(w[0], w[1], vb.pp(format!("layer{i}")))?;
            layers.push((
                lin.weight().clone(),
                lin.bias().cloned().ok_or_else(|| {
                    PplError::config("LearnedFeatures", "linear layer without bias")
                })?,
            ));
        }
        Ok(FeatureNet {
            store,
            layers,
            shift,
            scale,
            opts: opts.clone(),
        })
    }

    /// `φ_ψ(x)` `[n, out]` (f64, host), differentiable in `ψ`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
        let mut h = x.broadcast_sub(&self.shift)?.broadcast_div(&self.scale)?;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(&w.t()?)?.broadcast_add(b)?;
            if i + 1 < self.layers.len() {
                h = h.tanh()?;
            }
        }
        Ok(h)
    }

    /// `φ_ψ(x)` as a host matrix (detached).
    pub(crate) fn features(&self, x: &Tensor) -> Result<HostMat> {
        to_host(&self.forward(x)?.detach(), "the learned features φ(x)")
    }

    /// Fits `ψ`, the bandwidth multiple and `λ` (starting from `multiplier`, `lambda`) by
    /// Adam on the validation error `Σ_c mean_v (ŷ_c − y_c)² / var_v(y_c)` of exact kernel
    /// ridge regression of `ys` on `xs`, evaluated at `xv` against `yv`; gradients flow
    /// through the solve ([`spd_solve`]). Returns the final `(multiplier, λ, error)`.
    pub(crate) fn fit(
        &mut self,
        xs: &Tensor,
        ys: &HostMat,
        xv: &Tensor,
        yv: &HostMat,
        multiplier: f64,
        lambda: f64,
    ) -> Result<(f64, f64, f64)> {
        let dev = Device::Cpu;
        let ys_t = super::ridge::to_tensor(ys, DType::F64, &dev)?;
        let yv_t = super::ridge::to_tensor(yv, DType::F64, &dev)?;
        // Per-column inverse validation variance (constant columns weigh nothing).
        let mean = yv_t.mean_keepdim(0)?;
        let var = yv_t.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
        let var_h: Vec<f64> = var.flatten_all()?.to_vec1()?;
        let mean_h: Vec<f64> = mean.flatten_all()?.to_vec1()?;
        let inv: Vec<f64> = var_h
            .iter()
            .zip(&mean_h)
            .map(|(v, m)| {
                if *v > 1e-12 * (1.0 + m * m) {
                    1.0 / v
                } else {
                    0.0
                }
            })
            .collect();
        let inv = Tensor::from_vec(inv, (1, ys.ncols()), &dev)?;
        let log_mult = Var::new(multiplier.ln(), &dev)?;
        let log_lam = Var::new(lambda.ln(), &dev)?;
        let mut vars = self.store.var_map().all_vars();
        vars.push(log_mult.clone());
        vars.push(log_lam.clone());
        let mut opt = candle_nn::AdamW::new(
            vars,
            candle_nn::ParamsAdamW {
                lr: self.opts.lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let n = ys.nrows();
        let eye = Tensor::eye(n, DType::F64, &dev)?;
        let mut err = f64::NAN;
        for it in 0..=self.opts.steps {
            let fs = self.forward(xs)?;
            let fv = self.forward(xv)?;
            let median = median_host(&to_host(&fs.detach(), "the learned features φ(x)")?)?;
            let bw = (log_mult.as_tensor().exp()? * median)?;
            let c = (bw.sqr()? * -2.0)?.recip()?;
            let kss = sq_dists(&fs, &fs)?.broadcast_mul(&c)?.exp()?;
            let kvs = sq_dists(&fv, &fs)?.broadcast_mul(&c)?.exp()?;
            let reg = (kss + eye.broadcast_mul(&log_lam.as_tensor().exp()?)?)?;
            let alpha = spd_solve(&reg, &ys_t)?;
            let pred = kvs.matmul(&alpha)?;
            let loss = (pred - &yv_t)?
                .sqr()?
                .mean(0)?
                .unsqueeze(0)?
                .mul(&inv)?
                .sum_all()?;
            err = loss.to_scalar::<f64>()?;
            if !err.is_finite() {
                return Err(PplError::diverged(
                    "KrrWakeSleep feature learning",
                    it as u64,
                    format!("the validation error became {err} at iteration {it}; lower the learning rate"),
                ));
            }
            if it < self.opts.steps {
                opt.backward_step(&loss)?;
            }
        }
        Ok((
            log_mult.as_tensor().to_scalar::<f64>()?.exp(),
            log_lam.as_tensor().to_scalar::<f64>()?.exp(),
            err,
        ))
    }

    /// The weights, named under [`PREFIX`] (for the engine's state).
    pub(crate) fn state(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .store
            .var_map()
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.as_tensor().detach()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Restores weights saved by [`FeatureNet::state`] (shapes must match).
    pub(crate) fn load(&self, state: &HashMap<String, Tensor>) -> Result<()> {
        let data = self
            .store
            .var_map()
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Check every tensor first, so that a refused checkpoint changes nothing.
        let mut found = Vec::with_capacity(data.len());
        for (k, var) in data.iter() {
            let key = format!("{PREFIX}{k}");
            let t = state.get(&key).ok_or_else(|| {
                PplError::config(
                    "KrrWakeSleep::load_state",
                    format!("the checkpoint has no `{key}` (learned kernel features)"),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(PplError::config(
                    "KrrWakeSleep::load_state",
                    format!(
                        "`{key}` has shape {:?} in the checkpoint but {:?} here",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            found.push((var, t.to_dtype(DType::F64)?.to_device(&Device::Cpu)?));
        }
        for (var, t) in found {
            var.set(&t)?;
        }
        Ok(())
    }
}

/// `‖a_i − b_j‖²` `[n, m]`, clamped at zero, differentiable.
fn sq_dists(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let na = a.sqr()?.sum_keepdim(D::Minus1)?;
    let nb = b.sqr()?.sum_keepdim(D::Minus1)?.t()?;
    let ab = a.matmul(&b.t()?)?;
    Ok(na.broadcast_add(&nb)?.broadcast_sub(&(ab * 2.0)?)?.relu()?)
}
