use super::particles::{log_mean_exp0, Particles};
use candle_core::{Tensor, D};
use ppl_core::PlateFrame;
use ppl_core::{PplError, Result};
use ppl_core::{Site, Trace};

/// Log weights, split into terms shared by every data point and per-point terms.
///
/// Log importance weights `log w_k = log p(x, z_k) − log q(z_k)` of vectorised particles,
/// split into terms shared by every data point and per-data-point terms of a data plate,
/// and their effective sample size.
///
/// With a data plate `i = 1..N` subsampled to `n` points, `log w_{k,i}` holds point `i`'s
/// own sites (scaled back to one point, not by `N/n`), and the global part the sites
/// outside the plate (scaled as the site says). A multi-sample bound is then taken per
/// point and summed with the factor `N/n`, an unbiased estimate of the full-data bound.
#[derive(Debug, Clone)]
pub struct LogWeights {
    /// Terms outside the data plate, one per particle: `[K]`.
    pub global: Tensor,
    /// Terms of each data point in the batch: `[K, n]` (`None` without a data plate).
    pub local: Option<Tensor>,
    /// The data plate's subsampling scale `N / n` (1 without a data plate).
    pub scale: f64,
}

impl LogWeights {
    /// The Rényi-α bound (`α = 0`: IWAE) of these weights; a scalar tensor:
    /// `1/(1−α) · log (1/K) Σ_k w_k^{1−α}`, per data point and summed with `N/n` when
    /// there is a data plate.
    pub fn bound(&self, alpha: f64) -> Result<Tensor> {
        let a = 1.0 - alpha;
        match &self.local {
            None => Ok((log_mean_exp0(&(&self.global * a)?)? / a)?),
            Some(local) => {
                let per_point = (log_mean_exp0(&(local * a)?)? / a)?;
                let g = self.global.mean(0)?;
                Ok((g + (per_point.sum_all()? * self.scale)?)?)
            }
        }
    }

    /// The IWAE estimate of `log p(x_i)` for each data point of the batch, `[n]`
    /// (requires a data plate; the global terms, if any, are added to every point).
    pub fn per_point(&self) -> Result<Tensor> {
        log_mean_exp0(&self.joint_local()?)
    }

    /// `log w_{k,i}` with the global terms added to every point: `[K, n]`.
    fn joint_local(&self) -> Result<Tensor> {
        let local = self.local.as_ref().ok_or_else(|| {
            PplError::config(
                "LogWeights::per_point",
                "these weights have no data plate (see Iwae::with_local_plate)",
            )
        })?;
        Ok(local.broadcast_add(&self.global.unsqueeze(1)?)?)
    }

    /// The effective sample size `(Σ_k w_k)² / Σ_k w_k²` of the normalised weights, in
    /// `[1, K]`: one value, or one per data point (`[n]`) with a data plate.
    pub fn ess(&self) -> Result<Tensor> {
        let lw = match &self.local {
            Some(_) => self.joint_local()?,
            None => self.global.clone(),
        };
        let lw = lw.detach();
        let two_lse = (log_mean_exp0(&lw)? * 2.0)?;
        let lse_sq = log_mean_exp0(&(&lw * 2.0)?)?;
        let k = lw.dim(0)? as f64;
        Ok(((two_lse - lse_sq)?.exp()? * k)?)
    }
}

/// Which guide densities enter the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuideLogQ {
    /// `log q` as traced (gradients flow into the guide's parameters).
    Attached,
    /// `log q` under the guide's distributions with their parameters detached (DReG).
    Detached,
}

/// The summed densities of one trace: `(global [K], local [K, n], scale N/n)`.
pub type WeightParts = (Option<Tensor>, Option<Tensor>, Option<f64>);

/// Builds [`LogWeights`] from traces of vectorised particles.
#[derive(Debug, Clone)]
pub struct WeightBuilder {
    /// The particles the traces were run with.
    pub particles: Particles,
    /// The data plate whose points get their own weights, if any.
    pub data_plate: Option<String>,
}

impl WeightBuilder {
    /// Weights of `particles`, per point of `data_plate` when given.
    pub fn new(particles: Particles, data_plate: Option<String>) -> Self {
        WeightBuilder {
            particles,
            data_plate,
        }
    }

    /// The data-plate frame of site `s`, if it is inside the data plate.
    pub fn frame<'a>(&self, s: &'a Site) -> Option<&'a PlateFrame> {
        let name = self.data_plate.as_deref()?;
        s.plates.iter().find(|f| f.name.matches(name))
    }

    /// `log p(x, z)` weights of the guide trace `g` and the model trace `m` replaying it.
    pub fn log_weights(&self, g: &Trace, m: &Trace) -> Result<LogWeights> {
        let mp = self.parts(m, |_| true, GuideLogQ::Attached)?;
        let gq = self.parts(g, |s| s.is_latent(), GuideLogQ::Attached)?;
        self.combine(g, mp, gq)
    }

    /// Sums the densities of the sites `keep` selects into `(global [K], local [K, n], scale)`.
    pub fn parts(
        &self,
        t: &Trace,
        keep: impl Fn(&Site) -> bool,
        logq: GuideLogQ,
    ) -> Result<WeightParts> {
        let (mut global, mut local, mut scale) = (None::<Tensor>, None::<Tensor>, None);
        let add = |acc: Option<Tensor>, v: Tensor| -> Result<Option<Tensor>> {
            Ok(Some(match acc {
                None => v,
                Some(a) => {
                    let v = v.to_dtype(a.dtype())?;
                    (a + v)?
                }
            }))
        };
        for s in t.sites().iter().filter(|s| s.has_density() && keep(s)) {
            let lp = match logq {
                GuideLogQ::Attached => s.masked_log_prob()?,
                GuideLogQ::Detached => {
                    let d = s.dist.as_ref().ok_or_else(|| {
                        PplError::site(&s.name, String::new(), "has no distribution")
                    })?;
                    let lp = d.detach()?.log_prob(&s.value)?;
                    match &s.mask {
                        Some(m) => lp.broadcast_mul(&m.to_dtype(lp.dtype())?)?,
                        None => lp,
                    }
                }
            };
            match self.frame(s) {
                Some(f) => {
                    let lp = (lp * (s.scale / f.scale()))?;
                    let (mut r, dims) = self.particles.reduce(s, &lp, |g| g.name == f.name)?;
                    if dims.is_empty() {
                        r = r.unsqueeze(r.rank())?; // plate of size 1 folded away
                    }
                    if self.particles.k == 1 {
                        r = r.unsqueeze(0)?;
                    }
                    local = add(local, r)?;
                    scale = Some(f.scale());
                }
                None => {
                    let lp = (lp * s.scale)?;
                    let r = self.particles.per_particle(s, &lp)?;
                    let r = if self.particles.k == 1 {
                        r.reshape(1)?
                    } else {
                        r
                    };
                    global = add(global, r)?;
                }
            }
        }
        Ok((global, local, scale))
    }

    /// `model − guide`, folding the data plate into the global weight when the guide has
    /// latents outside it (an error when that plate is subsampled: no per-point form).
    pub fn combine(&self, g: &Trace, model: WeightParts, guide: WeightParts) -> Result<LogWeights> {
        let sub = |a: Option<Tensor>, b: Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match (a, b) {
                (Some(a), Some(b)) => {
                    let b = b.to_dtype(a.dtype())?;
                    Some((a - b)?)
                }
                (Some(a), None) => Some(a),
                (None, Some(b)) => Some(b.neg()?),
                (None, None) => None,
            })
        };
        let scale = model.2.or(guide.2).unwrap_or(1.0);
        let mut global = sub(model.0, guide.0)?;
        let mut local = sub(model.1, guide.1)?;
        if let Some(name) = &self.data_plate {
            if local.is_none() {
                return Err(PplError::config(
                    "importance weights",
                    format!("no site with a density is inside the data plate `{name}`"),
                ));
            }
            if let Some(s) = g.latent_sites().find(|s| self.frame(s).is_none()) {
                if scale != 1.0 {
                    return Err(PplError::guide_mismatch(
                        &s.name,
                        format!(
                            "is a latent outside the subsampled plate `{name}`: the \
                             multi-sample bound has no per-point form with global latents \
                             (use the full batch, or TraceElbo)"
                        ),
                    ));
                }
                let l = local.take().map(|l| l.sum(D::Minus1)).transpose()?;
                global = sub(global, l.map(|l| l.neg()).transpose()?)?;
            }
        }
        let global = match global {
            Some(g) => g,
            None => {
                let l = local.as_ref().ok_or_else(|| {
                    PplError::config(
                        "importance weights",
                        "the traces have no site with a density",
                    )
                })?;
                Tensor::zeros(l.dim(0)?, l.dtype(), l.device())?
            }
        };
        Ok(LogWeights {
            global,
            local,
            scale: if self.data_plate.is_some() {
                scale
            } else {
                1.0
            },
        })
    }
}
