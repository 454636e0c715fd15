use super::energy::{select_per_point, subsamples_of, Data, EnergyModel};
use super::free_energy::{relaxed_min, FreeEnergy};
use candle_core::Tensor;
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result};

impl<M: Model + ?Sized> EnergyModel<'_, M> {
    /// Monte Carlo relaxed free energy for latents too many for a grid, in one run of `s`
    /// vectorised samples per point.
    ///
    /// With the latents' prior `π` as the base measure,
    /// `F_β = −(1/β) log E_{z∼π}[exp(−β E'(z))] ≈ −(1/β)(logsumexp_s(−βE'_s) − log S)`,
    /// where `E'` is the energy without the latent prior terms (they are the measure now).
    /// For a `Uniform` prior this is exactly `−(1/β) log((1/|Z|) ∫ exp(−βE) dz)`. With a
    /// `proposal` — draws `[S, …site shape]` per latent and their log densities
    /// `log q` `[S, B]` — the samples are importance-weighted by `π(z)/q(z)`. Also returns
    /// the best sample per point as `z`/`energy` (`E'` there), and the samples' `E'`
    /// and soft-argmin weights `[S, B]`. Differentiable in the model's parameters.
    pub fn sample_free_energy(
        &mut self,
        ctx: &mut Ctx,
        s: usize,
        beta: f64,
        proposal: Option<(&ChoiceMap, &Tensor)>,
        data: &Data,
    ) -> Result<FreeEnergy> {
        self.ensure_init(ctx)?;
        let (ev, log_w) = match proposal {
            None => {
                if s == 0 {
                    return Err(PplError::config(
                        "EnergyModel::sample_free_energy",
                        "need at least one sample",
                    ));
                }
                (self.evaluate(ctx, s, None, data)?, None)
            }
            Some((draws, log_q)) => {
                let s = self.leading(draws)?;
                let ev = self.evaluate(ctx, s, Some(draws), data)?;
                if log_q.dims() != ev.log_prior.dims() {
                    return Err(PplError::config(
                        "EnergyModel::sample_free_energy",
                        format!(
                            "log q has shape {:?}, the samples' log prior {:?}: need [S, B]",
                            log_q.dims(),
                            ev.log_prior.dims()
                        ),
                    ));
                }
                let lw = (&ev.log_prior - log_q.to_dtype(ev.log_prior.dtype())?)?;
                (ev, Some(lw))
            }
        };
        let e = &ev.energy_no_prior;
        let (f, weights) = relaxed_min(e, beta, log_w.as_ref())?;
        let idx = e.argmin(0)?;
        let e_min = e.gather(&idx.unsqueeze(0)?, 0)?.squeeze(0)?;
        let mut zhat = ChoiceMap::new();
        for l in &self.latents {
            let v = ev.trace.value(l.name.clone())?.detach();
            let axis = v.rank() - l.rank + l.data_axis;
            let mut z = select_per_point(&v, &idx, axis)?;
            while z.rank() > l.rank {
                z = z.squeeze(0)?;
            }
            zhat.insert(l.name.clone(), z);
        }
        Ok(FreeEnergy {
            f,
            energy: e_min,
            z: zhat,
            energies: Some(e.clone()),
            weights: Some(weights),
            subsamples: subsamples_of(&ev.trace),
        })
    }
}
