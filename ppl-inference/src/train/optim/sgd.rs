use super::Optimizer;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use ppl_core::{PplError, Result};
use std::collections::{BTreeMap, HashMap};

/// Stochastic gradient descent with optional momentum μ ∈ [0, 1).
///
/// Stochastic gradient descent with momentum: `u ← μu + g`, `θ ← θ − lr·u`.
#[derive(Debug, Clone, Default)]
pub struct Sgd {
    momentum: f64,
    t: u64,
    u: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// SGD with momentum `momentum` (0 for plain SGD).
    pub fn new(momentum: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(PplError::config(
                "Sgd",
                format!("momentum must be in [0, 1), got {momentum}"),
            ));
        }
        Ok(Sgd {
            momentum,
            ..Default::default()
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // candle leaves a variable's gradient attached to the graph of the step that
            // produced it; state built from it (moments, momentum) would keep every past
            // step's graph alive (memory grows by one graph per step). Detach it.
            let g = &g.detach();
            let u = match (self.momentum > 0.0, self.u.get(name)) {
                (true, Some(u)) => ((u * self.momentum)? + g)?,
                _ => g.clone(),
            };
            var.set(&(var.as_tensor() - (&u * lr)?)?)?;
            if self.momentum > 0.0 {
                self.u.insert(name.clone(), u);
            }
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.t
    }

    fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let out = self
            .u
            .iter()
            .map(|(k, t)| (format!("u/{k}"), t.clone()))
            .collect();
        (out, self.t)
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let mut u = BTreeMap::new();
        for (k, t) in tensors {
            match k.strip_prefix("u/") {
                Some(name) => u.insert(name.to_string(), t),
                None => {
                    return Err(PplError::config(
                        "Sgd::load_state",
                        format!("unexpected state tensor `{k}`"),
                    ))
                }
            };
        }
        (self.u, self.t) = (u, steps);
        Ok(())
    }
}
