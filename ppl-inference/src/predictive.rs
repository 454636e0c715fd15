use crate::importance::{log_mean_exp0, ModelInfo, Particles, WeightBuilder};
use candle_core::Tensor;
use ppl_core::handlers::Replay;
use ppl_core::Ctx;
use ppl_core::Model;
use ppl_core::SiteKind;
use ppl_core::{PplError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Posterior predictive sampling.
///
/// Prediction through a trained guide: posterior (predictive) samples, importance-sampled
/// `log p(x_i)` per data point, and `.npz` export readable by numpy and ArviZ.
///
/// [`Predictive::sample`] draws `z ~ q` from the guide, replays it into the model and
/// records every latent, every deterministic value, and for each observed site a fresh
/// draw `x̃ ~ p(x | z)` from its likelihood: the posterior predictive. Each site's draws
/// are stacked along a new leading axis of size `num_samples`.
///
/// [`log_likelihood`] estimates `log p(x_i)` for each point of a data plate with the IWAE
/// bound of `K` particles, `log (1/K) Σ_k p(x_i, z_{k,i}) / q(z_{k,i} | x_i)`, which rises to
/// `log p(x_i)` as `K` grows; particles are drawn in chunks to bound memory.
pub struct Predictive<'a, M: ?Sized, G: ?Sized> {
    model: &'a M,
    guide: &'a G,
    num_samples: usize,
}

/// Draws per site, each with a leading axis of size `num_samples`, by site name.
pub type Samples = BTreeMap<String, Tensor>;

impl<'a, M: Model + ?Sized, G: Model + ?Sized> Predictive<'a, M, G> {
    /// `num_samples ≥ 1` draws of `model` with latents from `guide`.
    pub fn new(model: &'a M, guide: &'a G, num_samples: usize) -> Result<Self> {
        if num_samples == 0 {
            return Err(PplError::config(
                "Predictive",
                "num_samples must be at least 1",
            ));
        }
        Ok(Predictive {
            model,
            guide,
            num_samples,
        })
    }

    /// Draws the samples (detached from the autodiff graph).
    pub fn sample(&self, ctx: &mut Ctx) -> Result<Samples> {
        let mut draws: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
        for _ in 0..self.num_samples {
            let ((), g) = ctx.trace(|ctx| self.guide.run(ctx).map(|_| ()))?;
            let ((), m) = ctx.trace(|ctx| {
                ctx.handle(Replay::new(&g), |ctx| self.model.run(ctx).map(|_| ()))
                    .map(|(r, _)| r)
            })?;
            for s in m.sites() {
                let v = match s.kind {
                    SiteKind::Sample if s.observed => match &s.dist {
                        Some(d) => d.sample(ctx.rng(), &[])?,
                        None => continue,
                    },
                    SiteKind::Sample | SiteKind::Deterministic => s.value.clone(),
                    _ => continue,
                };
                draws
                    .entry(s.name.to_string())
                    .or_default()
                    .push(v.detach());
            }
        }
        draws
            .into_iter()
            .map(|(k, v)| {
                let n = v.len();
                if n != self.num_samples {
                    return Err(PplError::site(
                        &k,
                        String::new(),
                        format!(
                            "appeared in {n} of {} runs; predictive sites must appear in \
                             every run",
                            self.num_samples
                        ),
                    ));
                }
                let stacked = Tensor::stack(&v, 0).map_err(|e| {
                    PplError::site(
                        &k,
                        String::new(),
                        format!("draws of different shapes cannot be stacked: {e}"),
                    )
                })?;
                Ok((k, stacked))
            })
            .collect()
    }
}

/// The IWAE estimate of `log p(x_i)` for every point of plate `plate` (shape `[n]`),
/// with `k` particles drawn `chunk` at a time (see the [`Predictive`]). The plate
/// nesting is inferred from one probe run of the guide and model. A model whose latents
/// are not all inside `plate` has no per-point likelihood: a typed error names such a
/// latent (the plate existing or not).
pub fn log_likelihood<M: Model + ?Sized, G: Model + ?Sized>(
    ctx: &mut Ctx,
    model: &M,
    guide: &G,
    plate: &str,
    k: usize,
    chunk: usize,
) -> Result<Tensor> {
    if k == 0 || chunk == 0 {
        return Err(PplError::config(
            "log_likelihood",
            format!("k ({k}) and chunk ({chunk}) must be at least 1"),
        ));
    }
    let info = ModelInfo::probe(ctx, model, guide)?;
    let in_plate = |s: &ppl_core::Site| s.plates.iter().any(|f| f.name.matches(plate));
    if !info.model.sites().iter().any(in_plate) {
        return Err(PplError::config(
            "log_likelihood",
            format!("the model has no site inside a plate named `{plate}`"),
        ));
    }
    if let Some(s) = info.guide.latent_sites().find(|s| !in_plate(s)) {
        return Err(PplError::guide_mismatch(
            &s.name,
            format!(
                "is a latent outside plate `{plate}`: log_likelihood gives log p(x_i) per \
                 point, which needs every latent to be local to plate `{plate}` (for a \
                 global latent, estimate the joint evidence instead)"
            ),
        ));
    }
    let mut parts = Vec::new();
    let mut done = 0;
    while done < k {
        let c = chunk.min(k - done);
        let particles = Particles::new(c, info.max_plate_nesting, "log_likelihood")?;
        let w = WeightBuilder::new(particles, Some(plate.to_string()));
        let (g, m) = particles.traces(ctx, model, guide)?;
        let lw = w.log_weights(&g, &m)?;
        let local = lw.local.as_ref().ok_or_else(|| {
            PplError::config(
                "log_likelihood",
                format!("no site with a density in plate `{plate}`"),
            )
        })?;
        parts.push(local.broadcast_add(&lw.global.unsqueeze(1)?)?.detach());
        done += c;
    }
    log_mean_exp0(&Tensor::cat(&parts, 0)?)
}

/// Writes samples to `path` as `.npz` (one array per site, keyed by the site name),
/// atomically: a temporary file in the same directory, synced, then renamed.
pub fn save_npz(samples: &Samples, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let file_err = |reason: String| PplError::file(path, reason);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| file_err("not a file path".into()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let items: Vec<(&str, &Tensor)> = samples.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let result = Tensor::write_npz(&items, &tmp)
        .map_err(|e| PplError::file_io(path, "cannot write", e))
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| PplError::file_io(path, "cannot write", e))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
