//! Stochastic variational inference: minimise `−ELBO` over the parameter store with Adam.

use crate::trace_elbo::TraceElbo;
use candle_core::Var;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};
use ppl_core::model::Model;

/// SVI with the Trace ELBO and Adam (no weight decay). Parameters are created by the first
/// run of the model and guide; the optimiser covers every variable in the store.
pub struct Svi {
    elbo: TraceElbo,
    lr: f64,
    opt: Option<(usize, AdamW)>,
}

impl Svi {
    /// SVI with learning rate `lr`.
    pub fn new(elbo: TraceElbo, lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::InvalidArgument {
                context: "Svi",
                message: format!("learning rate must be finite and positive, got {lr}"),
            });
        }
        Ok(Svi {
            elbo,
            lr,
            opt: None,
        })
    }

    /// One gradient step; returns the ELBO estimate before the step.
    pub fn step<M: Model + ?Sized, G: Model + ?Sized>(
        &mut self,
        ctx: &mut Ctx,
        model: &M,
        guide: &G,
    ) -> Result<f64> {
        let out = self.elbo.loss(ctx, model, guide)?;
        let vars: Vec<Var> = ctx.params().vars().into_iter().map(|(_, v)| v).collect();
        let stale = self.opt.as_ref().is_none_or(|(n, _)| *n != vars.len());
        if stale {
            let params = ParamsAdamW {
                lr: self.lr,
                weight_decay: 0.0,
                ..Default::default()
            };
            self.opt = Some((vars.len(), AdamW::new(vars, params)?));
        }
        let (_, opt) = self.opt.as_mut().expect("set above");
        opt.backward_step(&out.loss)?;
        Ok(out.elbo)
    }
}
