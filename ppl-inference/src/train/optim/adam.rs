use super::Optimizer;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use ppl_core::{PplError, Result};
use std::collections::{BTreeMap, HashMap};

/// Adam / AdamW.
///
/// Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
/// `θ ← θ − lr·(m̂/(√v̂ + ε) + λθ)`.
#[derive(Debug, Clone)]
pub struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }
}

impl Adam {
    /// Adam with β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets β₁, β₂ (each in [0, 1)) and ε (> 0).
    pub fn with_betas(mut self, beta1: f64, beta2: f64, eps: f64) -> Result<Self> {
        if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) {
            return Err(PplError::config(
                "Adam",
                format!("need β₁, β₂ in [0, 1) and ε > 0, got {beta1}, {beta2}, {eps}"),
            ));
        }
        (self.beta1, self.beta2, self.eps) = (beta1, beta2, eps);
        Ok(self)
    }

    /// Decoupled weight decay λ ≥ 0 (AdamW).
    pub fn with_weight_decay(mut self, lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(PplError::config(
                "Adam",
                format!("weight decay must be finite and non-negative, got {lambda}"),
            ));
        }
        self.weight_decay = lambda;
        Ok(self)
    }
}

impl Optimizer for Adam {
    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // candle leaves a variable's gradient attached to the graph of the step that
            // produced it; state built from it (moments, momentum) would keep every past
            // step's graph alive (memory grows by one graph per step). Detach it.
            let g = &g.detach();
            let m = match self.m.get(name) {
                Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
                None => (g * (1.0 - b1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            let theta = var.as_tensor();
            let mut next = (theta - (update * lr)?)?;
            if self.weight_decay > 0.0 {
                next = (next - (theta * (lr * self.weight_decay))?)?;
            }
            var.set(&next)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.t
    }

    fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (k, t) in &self.m {
            out.push((format!("m/{k}"), t.clone()));
        }
        for (k, t) in &self.v {
            out.push((format!("v/{k}"), t.clone()));
        }
        (out, self.t)
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let (mut m, mut v) = (BTreeMap::new(), BTreeMap::new());
        for (k, t) in tensors {
            match k.split_once('/') {
                Some(("m", name)) => m.insert(name.to_string(), t),
                Some(("v", name)) => v.insert(name.to_string(), t),
                _ => {
                    return Err(PplError::config(
                        "Adam::load_state",
                        format!("unexpected state tensor `{k}`"),
                    ))
                }
            };
        }
        (self.m, self.v, self.t) = (m, v, steps);
        Ok(())
    }
}
