//! The four ways of getting the gradient of the volume term `½ log det(JᵀJ)`.

use super::cg::{conjugate_gradients, CgInfo};
use super::gram::{check_latents, exact_pass};
use super::vjp::Vjp;
use candle_core::{Tensor, D};
use ppl_core::flows::Injective;
use ppl_core::{PplError, PplRng, Result};

/// The distribution of the probe vectors of a stochastic trace estimator (both have
/// `E[ε εᵀ] = I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    /// Standard normal entries.
    #[default]
    Gaussian,
    /// ±1 with equal probability (lower variance for the same number of probes).
    Rademacher,
}

/// How [`volume_term`] gets the gradient of `½ log det(J_g(z)ᵀ J_g(z))`.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeEstimator {
    /// Exact: `J` from `d` forward-mode tangents, `JᵀJ`, `log det` by a Cholesky factorisation
    /// with the backward `A⁻¹` ([`log_det_spd`](super::log_det_spd), with a growing jitter where
    /// it fails), ordinary backward. Cost ≈ `(1 + d)` forward passes.
    Exact,
    /// Hutchinson (Caterini et al. 2021): probes `ε`, `u = (JᵀJ)⁻¹ ε` by conjugate gradients
    /// from Jacobian-vector (forward tangents) and vector-Jacobian (backward) products only,
    /// then the surrogate `½ mean_k stopgrad(u_k)ᵀ (JᵀJ) ε_k`, whose gradient is an unbiased
    /// estimate of `∇ ½ log det(JᵀJ)` (when CG has converged).
    Hutchinson {
        /// Probes per point `K ≥ 1`.
        probes: usize,
        /// Probe distribution.
        probe: Probe,
        /// CG stops at this relative residual (0: run `cg_max_iter` iterations).
        cg_tol: f64,
        /// CG iteration limit (`None`: `2d + 10`).
        cg_max_iter: Option<usize>,
    },
    /// Free-form injective flows (Sorrenson et al., ICLR 2024): the encoder's Jacobian
    /// stands in for the pseudo-inverse in `∇ ½ log det(JᵀJ) = tr(J⁺ ∇J)`, giving the
    /// surrogate `mean_k stopgrad(v_kᵀ J_{g†}(x)) J_g(z) v_k`: one forward-mode pass through
    /// the decoder and one backward pass through the encoder, no solve. Unbiased only
    /// where `J_{g†}(x) = J_g(z)⁺`; otherwise biased.
    FreeForm {
        /// Probes per point `K ≥ 1`.
        probes: usize,
        /// Probe distribution.
        probe: Probe,
    },
    /// The two-step baseline: no volume term. In [`Rectangular`](super::Rectangular) the
    /// codes' likelihood is also detached from the square flow, so the manifold is learnt
    /// from the reconstruction alone and the latent flow fits the codes.
    NoLogDet,
}

impl VolumeEstimator {
    /// Hutchinson with `probes` Gaussian probes, CG to a relative residual of `1e-6`.
    pub fn hutchinson(probes: usize) -> Self {
        VolumeEstimator::Hutchinson {
            probes,
            probe: Probe::Gaussian,
            cg_tol: 1e-6,
            cg_max_iter: None,
        }
    }

    /// The free-form estimator with `probes` Gaussian probes.
    pub fn free_form(probes: usize) -> Self {
        VolumeEstimator::FreeForm {
            probes,
            probe: Probe::Gaussian,
        }
    }

    /// A short name: `exact`, `hutchinson`, `fif`, `no_logdet`.
    pub fn name(&self) -> &'static str {
        match self {
            VolumeEstimator::Exact => "exact",
            VolumeEstimator::Hutchinson { .. } => "hutchinson",
            VolumeEstimator::FreeForm { .. } => "fif",
            VolumeEstimator::NoLogDet => "no_logdet",
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let probes = match self {
            VolumeEstimator::Hutchinson {
                probes,
                cg_tol,
                cg_max_iter,
                ..
            } => {
                if !(*cg_tol >= 0.0 && cg_tol.is_finite()) || *cg_max_iter == Some(0) {
                    return Err(PplError::config(
                        "VolumeEstimator::Hutchinson",
                        format!(
                            "`cg_tol` must be finite and ≥ 0 and `cg_max_iter` ≥ 1, got {cg_tol} \
                             and {cg_max_iter:?}"
                        ),
                    ));
                }
                *probes
            }
            VolumeEstimator::FreeForm { probes, .. } => *probes,
            _ => 1,
        };
        if probes == 0 {
            return Err(PplError::config(
                "VolumeEstimator",
                format!("`{}` needs at least one probe", self.name()),
            ));
        }
        Ok(())
    }
}

/// The volume term of one batch, from [`volume_term`].
#[derive(Debug, Clone)]
pub struct VolumeTerm {
    /// Per-point term `[B]` to add to a loss: its gradient is (an estimate of) the gradient
    /// of `½ log det(JᵀJ)`. Its *value* is `½ log det(JᵀJ)` for
    /// [`VolumeEstimator::Exact`] and exactly `0` for the others (the surrogate minus its
    /// own detached value), so a loss never reports a surrogate as a log-density.
    pub loss_term: Tensor,
    /// `½ log det(JᵀJ)` `[B]`, only when it was computed exactly.
    pub half_log_det: Option<Tensor>,
    /// The reconstruction `g(z)` `[B, D]` from the same pass (differentiable).
    pub reconstruction: Tensor,
    /// The CG solve's statistics (Hutchinson only).
    pub cg: Option<CgInfo>,
}

/// `probes` probe vectors `[K, B, d]` of the given distribution.
fn probes(rng: &mut PplRng, probe: Probe, k: usize, like: &Tensor) -> Result<Tensor> {
    let (b, d) = like.dims2()?;
    let n = k * b * d;
    let values = match probe {
        Probe::Gaussian => rng.normals(n),
        Probe::Rademacher => (0..n)
            .map(|_| if rng.uniform_open() < 0.5 { -1.0 } else { 1.0 })
            .collect(),
    };
    ppl_core::upload(values, &[k, b, d], like.dtype(), like.device())
}

/// The zero-valued surrogate `s − stopgrad(s)`.
fn gradient_only(s: Tensor) -> Result<Tensor> {
    let d = s.detach();
    Ok((s - d)?)
}

/// The volume term `½ log det(J_g(z)ᵀ J_g(z))` of a batch, or its gradient surrogate, by
/// `estimator` ([`VolumeEstimator`]). `x` `[B, D]` are the data points and `z = g†(x)`
/// `[B, d]` their (differentiable) codes; `x` is read by the free-form estimator only.
/// Probes come from `rng`.
pub fn volume_term(
    g: &dyn Injective,
    x: &Tensor,
    z: &Tensor,
    estimator: &VolumeEstimator,
    rng: &mut PplRng,
) -> Result<VolumeTerm> {
    estimator.validate()?;
    let b = check_latents("volume_term", g, z)?;
    if x.dims() != [b, g.data_dim()] {
        return Err(PplError::invalid_argument(
            "volume_term",
            format!(
                "data points must be [{b}, {}] for latents {:?}, got {:?}",
                g.data_dim(),
                z.dims(),
                x.dims()
            ),
        ));
    }
    let d = g.latent_dim();
    match estimator {
        VolumeEstimator::Exact => {
            let (recon, ld) = exact_pass(g, z)?;
            let half = (ld * 0.5)?;
            Ok(VolumeTerm {
                loss_term: half.clone(),
                half_log_det: Some(half),
                reconstruction: recon,
                cg: None,
            })
        }
        VolumeEstimator::NoLogDet => {
            let recon = g.decode(z)?;
            Ok(VolumeTerm {
                loss_term: Tensor::zeros(b, z.dtype(), z.device())?,
                half_log_det: None,
                reconstruction: recon,
                cg: None,
            })
        }
        VolumeEstimator::Hutchinson {
            probes: k,
            probe,
            cg_tol,
            cg_max_iter,
        } => {
            let eps = probes(rng, *probe, *k, z)?;
            let zd = z.detach();
            let z_rep = zd.unsqueeze(0)?.broadcast_as((*k, b, d))?.contiguous()?;
            // A p = Jᵀ (J p): one tangent pass and one backward pass (through one decoder
            // graph built here), both detached.
            let decoder = Vjp::new(&z_rep, |zz| g.decode(zz))?;
            let apply = |p: &Tensor| -> Result<Tensor> {
                let (_, jp) = g.decode_jvp(&zd, p)?;
                decoder.apply(&jp.detach())
            };
            let max_iter = cg_max_iter.unwrap_or(2 * d + 10);
            let (u, info) = conjugate_gradients(apply, &eps, *cg_tol, max_iter)?;
            let tangents = Tensor::cat(&[&u, &eps], 0)?; // [2K, B, d]
            let (recon, jt) = g.decode_jvp(z, &tangents)?;
            let ju = jt.narrow(0, 0, *k)?;
            let je = jt.narrow(0, *k, *k)?;
            let s = ((ju * je)?.sum(D::Minus1)?.mean(0)? * 0.5)?;
            Ok(VolumeTerm {
                loss_term: gradient_only(s)?,
                half_log_det: None,
                reconstruction: recon,
                cg: Some(info),
            })
        }
        VolumeEstimator::FreeForm { probes: k, probe } => {
            let v = probes(rng, *probe, *k, z)?;
            let x_rep = x
                .detach()
                .unsqueeze(0)?
                .broadcast_as((*k, b, g.data_dim()))?
                .contiguous()?;
            // vᵀ J_{g†}(x): one backward pass through the encoder.
            let w = Vjp::new(&x_rep, |xx| g.encode(xx))?.apply(&v)?;
            let (recon, jv) = g.decode_jvp(z, &v)?;
            let s = (w * jv)?.sum(D::Minus1)?.mean(0)?;
            Ok(VolumeTerm {
                loss_term: gradient_only(s)?,
                half_log_det: None,
                reconstruction: recon,
                cg: None,
            })
        }
    }
}
