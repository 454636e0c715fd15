//! Injective (rectangular) flows: the volume term against closed forms for a linear map,
//! conjugate gradients against a direct solve, the stochastic estimators' means and
//! variance against the exact gradient, the density on a learned curve integrating to 1,
//! finite-difference checks, f32, the engine's reported values, state and errors.

use candle_core::{DType, Device, Tensor, Var};
use ppl_core::flows::{ElementwiseSpline, Injective, RealNvp, RealNvpOptions, RectangularFlow};
use ppl_core::prelude::*;
use ppl_inference::engines::{
    conjugate_gradients, evaluate_injective, jacobian, log_det_gram, log_det_spd, volume_term,
    Probe, Rectangular, RectangularOptions, VolumeEstimator,
};
use ppl_inference::{Adam, Engine, Trainer};
use std::sync::Arc;

const DEV: Device = Device::Cpu;

fn vec1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

// ---------------------------------------------------------------------------------------
// Host linear algebra for the closed forms (small dense matrices, row-major Vec<Vec<f64>>).

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (n, k, m) = (a.len(), b.len(), b[0].len());
    (0..n)
        .map(|i| {
            (0..m)
                .map(|j| (0..k).map(|l| a[i][l] * b[l][j]).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

/// Inverse and log-determinant by Gauss–Jordan elimination with partial pivoting.
fn inverse_and_logdet(a: &[Vec<f64>]) -> (Vec<Vec<f64>>, f64) {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = r.clone();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    let mut logdet = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| m[i][c].abs().partial_cmp(&m[j][c].abs()).unwrap())
            .unwrap();
        m.swap(c, p);
        let piv = m[c][c];
        logdet += piv.abs().ln();
        for v in m[c].iter_mut() {
            *v /= piv;
        }
        for r in 0..n {
            if r != c {
                let f = m[r][c];
                let row_c = m[c].clone();
                for (v, w) in m[r].iter_mut().zip(row_c) {
                    *v -= f * w;
                }
            }
        }
    }
    (m.into_iter().map(|r| r[n..].to_vec()).collect(), logdet)
}

// ---------------------------------------------------------------------------------------
// A linear injective map g(z) = A z with a chosen left inverse as encoder.

#[derive(Debug)]
struct Linear {
    a: Var,          // [D, d]
    encoder: Tensor, // [d, D], a left inverse of A (a constant)
}

impl Linear {
    /// `A` `[D, d]` with the pseudo-inverse as encoder, plus `offset` times a matrix whose
    /// rows are orthogonal to the columns of `A` (another left inverse when `offset ≠ 0`).
    fn new(a: Vec<Vec<f64>>, offset: f64) -> Self {
        let at = transpose(&a);
        let (inv, _) = inverse_and_logdet(&matmul(&at, &a));
        let pinv = matmul(&inv, &at); // [d, D]
        let (big, d) = (a.len(), a[0].len());
        // N = I − A A⁺ projects onto the orthogonal complement; its first d rows times
        // `offset` leave N A = 0, so pinv + offset N[..d] is still a left inverse.
        let proj = matmul(&a, &pinv);
        let enc: Vec<f64> = (0..d)
            .flat_map(|i| {
                let (pinv, proj) = (&pinv, &proj);
                (0..big).map(move |j| {
                    let n_ij = if i == j { 1.0 } else { 0.0 } - proj[i][j];
                    pinv[i][j] + offset * n_ij
                })
            })
            .collect();
        let flat: Vec<f64> = a.iter().flatten().copied().collect();
        Linear {
            a: Var::from_tensor(&Tensor::from_vec(flat, (big, d), &DEV).unwrap()).unwrap(),
            encoder: Tensor::from_vec(enc, (d, big), &DEV).unwrap(),
        }
    }

    fn apply_rows(m: &Tensor, x: &Tensor) -> Tensor {
        // x [..., k] · mᵀ with m [n, k] → [..., n]
        x.broadcast_matmul(&m.t().unwrap()).unwrap()
    }
}

impl Injective for Linear {
    fn latent_dim(&self) -> usize {
        self.a.dim(1).unwrap()
    }
    fn data_dim(&self) -> usize {
        self.a.dim(0).unwrap()
    }
    fn decode(&self, z: &Tensor) -> ppl_core::Result<Tensor> {
        Ok(Self::apply_rows(self.a.as_tensor(), z))
    }
    fn decode_jvp(&self, z: &Tensor, v: &Tensor) -> ppl_core::Result<(Tensor, Tensor)> {
        Ok((self.decode(z)?, Self::apply_rows(self.a.as_tensor(), v)))
    }
    fn encode(&self, x: &Tensor) -> ppl_core::Result<Tensor> {
        Ok(Self::apply_rows(&self.encoder, x))
    }
}

fn a_matrix() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 0.3, -0.2],
        vec![0.5, -1.2, 0.4],
        vec![-0.7, 0.2, 0.9],
        vec![0.1, 0.8, 0.3],
        vec![0.6, -0.1, -1.1],
    ]
}

/// `∂/∂A ½ log det(AᵀA) = A (AᵀA)⁻¹` (half the closed form `2 A (AᵀA)⁻¹`).
fn half_logdet_gradient(a: &[Vec<f64>]) -> Vec<f64> {
    let (inv, _) = inverse_and_logdet(&matmul(&transpose(a), a));
    matmul(a, &inv).into_iter().flatten().collect()
}

/// The gradient of `Σ_b loss_term_b` with respect to `A` from one [`volume_term`] call.
fn linear_gradient(g: &Linear, x: &Tensor, est: &VolumeEstimator, rng: &mut PplRng) -> Vec<f64> {
    let z = g.encode(x).unwrap();
    let vol = volume_term(g, x, &z, est, rng).unwrap();
    let grads = vol.loss_term.sum_all().unwrap().backward().unwrap();
    let ga = grads.get(g.a.as_tensor()).unwrap();
    ga.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

fn linear_data(g: &Linear, b: usize) -> Tensor {
    let mut rng = PplRng::seed_from_u64(1);
    let z = Tensor::from_vec(rng.normals(b * 3), (b, 3), &DEV).unwrap();
    g.decode(&z).unwrap().detach()
}

#[test]
fn linear_map_log_det_and_gradient_match_closed_forms() {
    // g(z) = A z: log det(JᵀJ) = log det(AᵀA) at every z, and the exact estimator's
    // gradient of ½ Σ_b log det is B · A (AᵀA)⁻¹ (the closed form 2A(AᵀA)⁻¹, halved).
    let a = a_matrix();
    let g = Linear::new(a.clone(), 0.0);
    let (_, logdet) = inverse_and_logdet(&matmul(&transpose(&a), &a));
    let x = linear_data(&g, 4);
    let z = g.encode(&x).unwrap();
    for v in vec1(&log_det_gram(&g, &z).unwrap()) {
        assert!((v - logdet).abs() < 1e-12, "{v} vs {logdet}");
    }
    let (_, j) = jacobian(&g, &z).unwrap();
    assert_eq!(j.dims(), &[4, 5, 3]);
    let jb: Vec<f64> = j.get(2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let af: Vec<f64> = a.iter().flatten().copied().collect();
    assert_eq!(jb, af);
    let mut rng = PplRng::seed_from_u64(0);
    let grad = linear_gradient(&g, &x, &VolumeEstimator::Exact, &mut rng);
    for (gv, e) in grad.iter().zip(half_logdet_gradient(&a)) {
        assert!((gv - 4.0 * e).abs() < 1e-10, "{gv} vs {}", 4.0 * e);
    }
    // No volume term: no gradient into A from it.
    let z = g.encode(&x).unwrap();
    let vol = volume_term(&g, &x, &z, &VolumeEstimator::NoLogDet, &mut rng).unwrap();
    assert_eq!(vec1(&vol.loss_term), vec![0.0; 4]);
}

#[test]
fn conjugate_gradients_match_a_direct_solve_in_f64_and_f32() {
    // Three SPD systems A_s = M_s M_sᵀ + 0.5 I (6×6), products by batched matmul; CG reaches
    // the direct (Gauss–Jordan) solution in ≤ 6 iterations up to rounding.
    let mut rng = PplRng::seed_from_u64(3);
    let n = 6;
    let mats: Vec<Vec<Vec<f64>>> = (0..3)
        .map(|_| {
            let m: Vec<Vec<f64>> = (0..n).map(|_| rng.normals(n)).collect();
            let mut a = matmul(&m, &transpose(&m));
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += 0.5;
            }
            a
        })
        .collect();
    let rhs: Vec<Vec<f64>> = (0..3).map(|_| rng.normals(n)).collect();
    for (dtype, tol) in [(DType::F64, 1e-9), (DType::F32, 2e-3)] {
        let flat: Vec<f64> = mats.iter().flatten().flatten().copied().collect();
        let at = Tensor::from_vec(flat, (3, n, n), &DEV)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let b = Tensor::from_vec(rhs.iter().flatten().copied().collect(), (3, n), &DEV)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let apply = |p: &Tensor| -> ppl_core::Result<Tensor> {
            Ok(at.matmul(&p.unsqueeze(2)?)?.squeeze(2)?)
        };
        let target = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        let (x, info) = conjugate_gradients(apply, &b, target, 50).unwrap();
        if dtype == DType::F64 {
            assert!(info.converged && info.iterations <= n + 2, "{info:?}");
        }
        let xs = vec2(&x);
        for s in 0..3 {
            let (inv, _) = inverse_and_logdet(&mats[s]);
            for i in 0..n {
                let direct: f64 = (0..n).map(|j| inv[i][j] * rhs[s][j]).sum();
                assert!(
                    (xs[s][i] - direct).abs() < tol * (1.0 + direct.abs()),
                    "{dtype:?} system {s} entry {i}: {} vs {direct}",
                    xs[s][i]
                );
            }
        }
    }
    // Typed errors: negative tolerance, wrong product shape.
    let b = Tensor::ones((2, 3), DType::F64, &DEV).unwrap();
    assert!(conjugate_gradients(|p: &Tensor| Ok(p.clone()), &b, -1.0, 5).is_err());
    let bad = conjugate_gradients(|p: &Tensor| Ok(p.sum_keepdim(1)?), &b, 0.0, 5);
    assert!(
        matches!(bad, Err(PplError::InvalidArgument { .. })),
        "{bad:?}"
    );
    // An indefinite operator (A = −I) is refused, not silently "solved".
    let neg = conjugate_gradients(|p: &Tensor| Ok(p.neg()?), &b, 1e-8, 5);
    assert!(matches!(neg, Err(PplError::Linalg { .. })), "{neg:?}");
}

/// Mean and root-mean-square error (against `exact`) of `m` gradient estimates.
fn estimate_stats(m: usize, exact: &[f64], mut draw: impl FnMut() -> Vec<f64>) -> (Vec<f64>, f64) {
    let mut mean = vec![0.0; exact.len()];
    let mut sq = 0.0;
    for _ in 0..m {
        let g = draw();
        sq += g
            .iter()
            .zip(exact)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
        for (s, v) in mean.iter_mut().zip(&g) {
            *s += v / m as f64;
        }
    }
    (mean, (sq / m as f64).sqrt())
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn hutchinson_gradient_is_unbiased_and_its_error_falls_like_one_over_root_k() {
    // Linear map, one point: the Hutchinson gradient's mean over 1600 draws matches the
    // closed form (error of the mean < 3 RMS/√1600, itself < half the gradient's norm), for
    // Gaussian and Rademacher probes; the RMS error with K = 16 probes is 1/4 of that with K = 1 (ratio within [3, 5.3],
    // the sampling spread of an RMS over 1600 draws).
    let a = a_matrix();
    let g = Linear::new(a.clone(), 0.0);
    let x = linear_data(&g, 1);
    let exact = half_logdet_gradient(&a);
    let mut rng = PplRng::seed_from_u64(11);
    let mut rms = Vec::new();
    let m = 1600;
    let root_m = (m as f64).sqrt();
    for probe in [Probe::Gaussian, Probe::Rademacher] {
        for k in [1usize, 16] {
            let est = VolumeEstimator::Hutchinson {
                probes: k,
                probe,
                cg_tol: 1e-12,
                cg_max_iter: None,
            };
            let (mean, e) = estimate_stats(400, &exact, || linear_gradient(&g, &x, &est, &mut rng));
            let bias: Vec<f64> = mean.iter().zip(&exact).map(|(a, b)| a - b).collect();
            // Not vacuous: the mean's standard error is small against the gradient itself.
            assert!(3.0 * e / root_m < 0.5 * norm(&exact), "RMS {e}");
            assert!(
                norm(&bias) < 3.0 * e / root_m,
                "{probe:?} K={k}: |mean − exact| = {} vs RMS {e}",
                norm(&bias)
            );
            rms.push(e);
        }
    }
    for (probe, pair) in ["gaussian", "rademacher"].iter().zip(rms.chunks(2)) {
        let ratio = pair[0] / pair[1];
        assert!(
            (3.0..5.3).contains(&ratio),
            "{probe}: RMS(K=1)/RMS(K=16) = {ratio}, expected ≈ 4"
        );
    }
    // Rademacher probes have lower variance than Gaussian ones (E ε⁴ = 1 vs 3).
    assert!(rms[2] < rms[0], "{rms:?}");
}

#[test]
fn free_form_estimator_is_unbiased_with_the_pseudo_inverse_encoder_and_biased_otherwise() {
    // ∇ ½ log det(JᵀJ) = tr(J⁺ ∇J); FIF puts the encoder's Jacobian L in place of J⁺, so for
    // g(z) = A z its mean gradient with respect to A is exactly Lᵀ. With the pseudo-inverse
    // as encoder, Lᵀ = A(AᵀA)⁻¹ is the exact gradient; with another left inverse (plus a
    // component orthogonal to the manifold) the mean still matches Lᵀ but is far from exact.
    let a = a_matrix();
    let exact = half_logdet_gradient(&a);
    let mut rng = PplRng::seed_from_u64(5);
    let est = VolumeEstimator::free_form(1);
    let m = 400;
    for (offset, unbiased) in [(0.0, true), (3.0, false)] {
        let g = Linear::new(a.clone(), offset);
        let x = linear_data(&g, 1);
        let expected: Vec<f64> = vec2(&g.encoder.t().unwrap())
            .into_iter()
            .flatten()
            .collect();
        let (mean, e) = estimate_stats(m, &expected, || linear_gradient(&g, &x, &est, &mut rng));
        let se = e / (m as f64).sqrt();
        let diff =
            |u: &[f64], v: &[f64]| norm(&u.iter().zip(v).map(|(a, b)| a - b).collect::<Vec<_>>());
        assert!(
            diff(&mean, &expected) < 3.0 * se,
            "offset {offset}: {} vs se {se}",
            diff(&mean, &expected)
        );
        let gap = diff(&expected, &exact);
        if unbiased {
            assert!(gap < 1e-12, "{gap}");
        } else {
            assert!(gap > 5.0 * se, "bias {gap} vs se {se}");
        }
    }
}

/// A rectangular flow `R^d → R^D` from a Real NVP whose parameters are moved off their
/// identity start.
fn rectangular(ctx: &mut Ctx, big: usize, d: usize, seed: u64) -> RectangularFlow {
    let opts = RealNvpOptions::default();
    let flow = ctx
        .try_module("flow", |vb| RealNvp::build(vb, big, 0, 4, &[16], &opts))
        .unwrap();
    let mut rng = PplRng::seed_from_u64(seed);
    for (_, v) in ctx.params().vars() {
        let noise = Tensor::from_vec(rng.normals(v.elem_count()), v.dims(), &DEV)
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap();
        v.set(&(v.as_tensor() + (noise * 0.05).unwrap()).unwrap())
            .unwrap();
    }
    RectangularFlow::new(Arc::new(flow), d).unwrap()
}

fn params_gradient(ctx: &Ctx, loss: &Tensor) -> Vec<f64> {
    let grads = loss.backward().unwrap();
    let mut out = Vec::new();
    let mut vars = ctx.params().vars();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in vars {
        match grads.get(v.as_tensor()) {
            Some(g) => out.extend(vec1(&g.flatten_all().unwrap())),
            None => out.extend(vec![0.0; v.elem_count()]),
        }
    }
    out
}

#[test]
fn rectangular_flow_log_det_matches_finite_difference_jacobian_in_f64_and_f32() {
    // J from tangents vs central differences of decode (f64, h = 1e-6); g†(g(z)) = z;
    // batched shapes; f32 agrees with f64 to 1e-4 relative.
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let g = rectangular(&mut ctx, 4, 2, 7);
    let mut rng = PplRng::seed_from_u64(2);
    let z = Tensor::from_vec(rng.normals(10), (5, 2), &DEV).unwrap();
    let back = g.encode(&g.decode(&z).unwrap()).unwrap();
    assert!(scalar(&(back - &z).unwrap().abs().unwrap().max_all().unwrap()) < 1e-12);
    let ld = vec1(&log_det_gram(&g, &z).unwrap());
    let h = 1e-6;
    let zs = vec2(&z);
    for (b, row) in zs.iter().enumerate() {
        let mut cols = Vec::new();
        for i in 0..2 {
            let mut p = row.clone();
            let mut m = row.clone();
            p[i] += h;
            m[i] -= h;
            let xp = vec1(&g.decode(&Tensor::new(p.as_slice(), &DEV).unwrap()).unwrap());
            let xm = vec1(&g.decode(&Tensor::new(m.as_slice(), &DEV).unwrap()).unwrap());
            cols.push(
                xp.iter()
                    .zip(&xm)
                    .map(|(a, b)| (a - b) / (2.0 * h))
                    .collect::<Vec<_>>(),
            );
        }
        let gram: Vec<Vec<f64>> = (0..2)
            .map(|i| {
                (0..2)
                    .map(|j| cols[i].iter().zip(&cols[j]).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        let (_, fd) = inverse_and_logdet(&gram);
        assert!((ld[b] - fd).abs() < 1e-6, "point {b}: {} vs {fd}", ld[b]);
    }
    // Batched latents [2, 3, d] through decode_jvp.
    let zb = Tensor::from_vec(rng.normals(12), (2, 3, 2), &DEV).unwrap();
    let v = Tensor::from_vec(rng.normals(24), (2, 2, 3, 2), &DEV).unwrap();
    let (xb, jv) = g.decode_jvp(&zb, &v).unwrap();
    assert_eq!((xb.dims(), jv.dims()), (&[2, 3, 4][..], &[2, 2, 3, 4][..]));
    // ... equal to the same rows pushed through as one flat batch [6, d].
    let (xf, jf) = g
        .decode_jvp(&zb.reshape((6, 2)).unwrap(), &v.reshape((2, 6, 2)).unwrap())
        .unwrap();
    let diff = |a: &Tensor, b: &Tensor| {
        let d = (a.flatten_all().unwrap() - b.flatten_all().unwrap()).unwrap();
        scalar(&d.abs().unwrap().max_all().unwrap())
    };
    assert!(diff(&xb, &xf) < 1e-12 && diff(&jv, &jf) < 1e-12);
    // f32: the same flow with its parameters cast.
    let mut ctx32 = Ctx::new(0).with_dtype(DType::F32);
    let g32 = rectangular(&mut ctx32, 4, 2, 7);
    let ld32 = vec1(&log_det_gram(&g32, &z.to_dtype(DType::F32).unwrap()).unwrap());
    for (a, b) in ld.iter().zip(&ld32) {
        assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn density_on_a_learned_curve_integrates_to_one() {
    // D = 2, d = 1: Σ p_X(g(z_i)) ‖g(z_{i+1}) − g(z_i)‖ over a fine z grid is ∫ p_Z = 1 if
    // log p_X = log p_Z − ½ log det(JᵀJ) and g†(g(z)) = z are right; the same with z in the
    // second coordinate and a spline flow prior on z.
    for variant in 0..2 {
        let mut ctx = Ctx::new(0).with_dtype(DType::F64);
        let plain = rectangular(&mut ctx, 2, 1, 9);
        let g = if variant == 0 {
            plain
        } else {
            let prior = ctx
                .try_module("prior", |vb| ElementwiseSpline::new(vb, 1, 8, 4.0))
                .unwrap();
            let (_, v) = ctx
                .params()
                .vars()
                .into_iter()
                .find(|(n, _)| n == "prior.raw")
                .unwrap();
            let mut rng = PplRng::seed_from_u64(4);
            let noise = Tensor::from_vec(rng.normals(v.elem_count()), v.dims(), &DEV).unwrap();
            v.set(&(v.as_tensor() + (noise * 0.5).unwrap()).unwrap())
                .unwrap();
            RectangularFlow::with_positions(plain.square_flow().clone(), vec![1])
                .unwrap()
                .with_prior(Arc::new(prior))
                .unwrap()
        };
        let n = 20001;
        let zs: Vec<f64> = (0..n)
            .map(|i| -8.0 + 16.0 * i as f64 / (n - 1) as f64)
            .collect();
        let z = Tensor::from_vec(zs, (n, 1), &DEV).unwrap();
        let x = g.decode(&z).unwrap();
        let eval = evaluate_injective(&g, &x, 4096).unwrap();
        let lp = vec1(&eval.log_density);
        let xs = vec2(&x);
        let mut total = 0.0;
        for i in 0..n - 1 {
            let ds = ((xs[i + 1][0] - xs[i][0]).powi(2) + (xs[i + 1][1] - xs[i][1]).powi(2)).sqrt();
            total += 0.5 * (lp[i].exp() + lp[i + 1].exp()) * ds;
        }
        assert!(
            (total - 1.0).abs() < 1e-4,
            "variant {variant}: ∫ p_X ds = {total}"
        );
        // On-manifold points reconstruct exactly.
        assert!(vec1(&eval.reconstruction_error).iter().all(|e| *e < 1e-20));
    }
}

#[test]
fn exact_training_loss_gradient_matches_finite_differences() {
    // The engine's exact loss (likelihood with Cholesky log-det + β · reconstruction) on
    // off-manifold points: backward vs central differences in 6 parameter entries.
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let g = rectangular(&mut ctx, 3, 2, 4);
    let mut rng = PplRng::seed_from_u64(8);
    let x = Tensor::from_vec(rng.normals(18), (6, 3), &DEV).unwrap();
    let opts = RectangularOptions::default().beta(0.7);
    let mut engine = Rectangular::new(&g, &x, opts);
    engine.init(&mut ctx).unwrap();
    let loss = engine.step(&mut ctx).unwrap().loss;
    let grads = loss.backward().unwrap();
    let mut vars = ctx.params().vars();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checked = 0;
    for (name, v) in vars.iter().filter(|(n, _)| n.contains("layer0")).take(3) {
        let gv = vec1(&grads.get(v.as_tensor()).unwrap().flatten_all().unwrap());
        for idx in [0usize, v.elem_count() - 1] {
            let base = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let mut eval_at = |delta: f64| {
                let mut p = base.clone();
                p[idx] += delta;
                v.set(&Tensor::from_vec(p, v.dims(), &DEV).unwrap())
                    .unwrap();
                let mut e = Rectangular::new(&g, &x, RectangularOptions::default().beta(0.7));
                e.step(&mut ctx).unwrap().value
            };
            let h = 1e-6;
            let fd = (eval_at(h) - eval_at(-h)) / (2.0 * h);
            v.set(&Tensor::from_vec(base, v.dims(), &DEV).unwrap())
                .unwrap();
            assert!(
                (gv[idx] - fd).abs() < 1e-5 * (1.0 + fd.abs()),
                "{name}[{idx}]: backward {} vs finite differences {fd}",
                gv[idx]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn stochastic_estimators_match_the_exact_gradient_on_a_nonlinear_flow() {
    // D = 3, d = 2 Real NVP, 8 off-manifold points: the mean over 300 Hutchinson gradients
    // (K = 2, Rademacher) of the volume term equals the exact gradient, within 3 standard
    // errors of the mean in norm (‖mean − exact‖ < 3 RMS/√300).
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let g = rectangular(&mut ctx, 3, 2, 12);
    let mut rng = PplRng::seed_from_u64(13);
    let x = Tensor::from_vec(rng.normals(24), (8, 3), &DEV).unwrap();
    let grad_of = |est: &VolumeEstimator, rng: &mut PplRng| {
        let z = g.encode(&x).unwrap();
        let vol = volume_term(&g, &x, &z, est, rng).unwrap();
        params_gradient(&ctx, &vol.loss_term.sum_all().unwrap())
    };
    let exact = grad_of(&VolumeEstimator::Exact, &mut rng);
    let est = VolumeEstimator::Hutchinson {
        probes: 2,
        probe: Probe::Rademacher,
        cg_tol: 1e-10,
        cg_max_iter: None,
    };
    let m = 300;
    let (mean, e) = estimate_stats(m, &exact, || grad_of(&est, &mut rng));
    let bias = norm(
        &mean
            .iter()
            .zip(&exact)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>(),
    );
    assert!(
        bias < 3.0 * e / (m as f64).sqrt(),
        "‖mean − exact‖ = {bias}, RMS {e}, ‖exact‖ = {}",
        norm(&exact)
    );
    // Not vacuous: the mean's standard error is small against the gradient itself.
    assert!(
        3.0 * e / (m as f64).sqrt() < 0.25 * norm(&exact),
        "RMS {e} too large for ‖exact‖ = {}",
        norm(&exact)
    );
}

#[test]
fn surrogates_are_never_reported_as_densities() {
    // Hutchinson and free-form volume terms have value exactly 0 and no log-det; a step's
    // value with them equals the no-volume loss, has no `log_density` metric, and the
    // evaluation densities do not depend on the training estimator.
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let g = rectangular(&mut ctx, 3, 2, 6);
    let mut rng = PplRng::seed_from_u64(1);
    let x = Tensor::from_vec(rng.normals(30), (10, 3), &DEV).unwrap();
    let z = g.encode(&x).unwrap();
    for est in [
        VolumeEstimator::hutchinson(3),
        VolumeEstimator::free_form(3),
    ] {
        let vol = volume_term(&g, &x, &z, &est, &mut rng).unwrap();
        assert_eq!(vec1(&vol.loss_term), vec![0.0; 10]);
        assert!(vol.half_log_det.is_none());
    }
    let value_and_metrics = |est: VolumeEstimator, ctx: &mut Ctx| {
        let mut e = Rectangular::new(&g, &x, RectangularOptions::default().estimator(est));
        e.init(ctx).unwrap();
        let out = e.step(ctx).unwrap();
        (out.value, out.metrics.get("log_density"))
    };
    let (none, _) = value_and_metrics(VolumeEstimator::NoLogDet, &mut ctx);
    let (exact, ld) = value_and_metrics(VolumeEstimator::Exact, &mut ctx);
    assert!(ld.is_some());
    let eval = evaluate_injective(&g, &x, 3).unwrap();
    let mean_ld = vec1(&eval.log_density).iter().sum::<f64>() / 10.0;
    assert!((ld.unwrap() - mean_ld).abs() < 1e-10);
    for est in [
        VolumeEstimator::hutchinson(1),
        VolumeEstimator::free_form(1),
    ] {
        let (v, ld) = value_and_metrics(est, &mut ctx);
        assert!((v - none).abs() < 1e-12, "{v} vs {none}");
        assert!((v - exact).abs() > 1e-6);
        assert!(ld.is_none());
    }
}

#[test]
fn engine_trains_resumes_from_state_and_rejects_bad_input() {
    // A few Adam steps with Hutchinson + warm-up on circle data lower the exact negative
    // log-density of the training points; the step counter round-trips through state(); typed errors.
    let mut rng = PplRng::seed_from_u64(0);
    let pts: Vec<f64> = (0..128)
        .flat_map(|_| {
            let t = 2.0 * rng.standard_normal();
            [t.cos(), t.sin()]
        })
        .collect();
    let x = Tensor::from_vec(pts, (128, 2), &DEV).unwrap();
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let flow = ctx
        .try_module("flow", |vb| {
            RealNvp::build(vb, 2, 0, 3, &[16], &RealNvpOptions::default())
        })
        .unwrap();
    let g = RectangularFlow::new(Arc::new(flow), 1).unwrap();
    let opts = RectangularOptions::default()
        .estimator(VolumeEstimator::hutchinson(1))
        .batch_size(64)
        .warmup_steps(10);
    let before = -vec1(&evaluate_injective(&g, &x, 64).unwrap().log_density)
        .iter()
        .sum::<f64>();
    let mut engine = Rectangular::new(&g, &x, opts.clone());
    let mut trainer = Trainer::new(Adam::new(), 0.01).unwrap();
    let run = trainer.run(&mut ctx, &mut engine, 60).unwrap();
    assert_eq!(run.losses.len(), 60);
    let after = -vec1(&evaluate_injective(&g, &x, 64).unwrap().log_density)
        .iter()
        .sum::<f64>();
    assert!(after < before, "NLL {before} → {after}");
    let state = engine.state().unwrap();
    assert_eq!(scalar(&state[0].1), 60.0);
    let mut other = Rectangular::new(&g, &x, opts.clone());
    other.load_state(state.into_iter().collect()).unwrap();
    assert_eq!(scalar(&other.state().unwrap()[0].1), 60.0);
    let mut bad_state = std::collections::HashMap::new();
    bad_state.insert("other".to_string(), Tensor::new(1.0f64, &DEV).unwrap());
    assert!(other.load_state(bad_state).is_err());
    // Errors: wrong data width, zero probes, negative β, wrong latent shapes.
    let wrong = Tensor::zeros((4, 3), DType::F64, &DEV).unwrap();
    let mut e = Rectangular::new(&g, &wrong, RectangularOptions::default());
    assert!(matches!(
        e.init(&mut ctx),
        Err(PplError::InvalidArgument { .. })
    ));
    for o in [
        RectangularOptions::default().estimator(VolumeEstimator::hutchinson(0)),
        RectangularOptions::default().beta(-1.0),
    ] {
        let mut e = Rectangular::new(&g, &x, o);
        assert!(matches!(
            e.init(&mut ctx),
            Err(PplError::InvalidConfig { .. })
        ));
    }
    let z3 = Tensor::zeros((4, 3), DType::F64, &DEV).unwrap();
    assert!(log_det_gram(&g, &z3).is_err());
    assert!(RectangularFlow::new(g.square_flow().clone(), 2).is_err());
    assert!(RectangularFlow::with_positions(g.square_flow().clone(), vec![3]).is_err());
}

#[test]
fn spd_log_det_matches_closed_forms_and_jitters_singular_matrices() {
    // Two 3×3 SPD matrices: value against Gauss–Jordan, gradient of Σ_k c_k log det A_k
    // equal to c_k A_k⁻¹ (f64 1e-10, f32 1e-4). A singular matrix gets a jitter (finite
    // value far below the others); a NaN matrix is a typed error.
    let m = [
        vec![
            vec![2.0, 0.3, -0.4],
            vec![0.3, 1.5, 0.2],
            vec![-0.4, 0.2, 1.0],
        ],
        vec![
            vec![4.0, 1.0, 0.0],
            vec![1.0, 3.0, 0.5],
            vec![0.0, 0.5, 0.7],
        ],
    ];
    let c = [1.5, -0.5];
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        let flat: Vec<f64> = m.iter().flatten().flatten().copied().collect();
        let a = Var::from_tensor(
            &Tensor::from_vec(flat, (2, 3, 3), &DEV)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let ld = log_det_spd(a.as_tensor()).unwrap();
        let weights = Tensor::new(&c, &DEV).unwrap().to_dtype(dtype).unwrap();
        let grads = (&ld * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<f64> = vec1(&grads.get(a.as_tensor()).unwrap().flatten_all().unwrap());
        let values = vec1(&ld);
        for k in 0..2 {
            let (inv, logdet) = inverse_and_logdet(&m[k]);
            assert!((values[k] - logdet).abs() < tol * (1.0 + logdet.abs()));
            for i in 0..3 {
                for j in 0..3 {
                    let e = c[k] * inv[i][j];
                    let got = g[k * 9 + i * 3 + j];
                    assert!(
                        (got - e).abs() < tol * (1.0 + e.abs()),
                        "{dtype:?} {k} {i} {j}: {got} vs {e}"
                    );
                }
            }
        }
    }
    let singular = Tensor::new(
        &[[[1.0f64, 1.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 3.0]]],
        &DEV,
    )
    .unwrap();
    let ld = vec1(&log_det_spd(&singular).unwrap());
    assert!(ld[0].is_finite() && ld[0] < -10.0, "{ld:?}");
    assert!((ld[1] - 6f64.ln()).abs() < 1e-6, "{ld:?}");
    let nan = Tensor::new(&[[[f64::NAN, 0.0], [0.0, 1.0]]], &DEV).unwrap();
    assert!(matches!(log_det_spd(&nan), Err(PplError::Linalg { .. })));
}

#[test]
fn checkpointed_training_resumes_bit_identically() {
    // Hutchinson probes, minibatches and the warm-up counter all depend on state: 20 steps,
    // a checkpoint (parameters, Adam, RNG, the engine's step count), then a fresh context
    // and engine restored from it: 20 more steps equal the straight 40-step run bit for bit.
    use ppl_inference::{load_checkpoint, save_checkpoint};
    let mut rng = PplRng::seed_from_u64(3);
    let pts: Vec<f64> = (0..64)
        .flat_map(|_| {
            let t = rng.standard_normal();
            [t.cos(), t.sin()]
        })
        .collect();
    let x = Tensor::from_vec(pts, (64, 2), &DEV).unwrap();
    let build = |ctx: &mut Ctx| -> RectangularFlow {
        let flow = ctx
            .try_module("flow", |vb| {
                RealNvp::build(vb, 2, 0, 2, &[8], &RealNvpOptions::default())
            })
            .unwrap();
        RectangularFlow::new(Arc::new(flow), 1).unwrap()
    };
    let opts = RectangularOptions::default()
        .estimator(VolumeEstimator::hutchinson(2))
        .batch_size(16)
        .warmup_steps(30);
    let mut a = Ctx::new(4).with_dtype(DType::F64);
    let ga = build(&mut a);
    let mut ta = Trainer::new(Adam::new(), 0.01).unwrap();
    let mut ea = Rectangular::new(&ga, &x, opts.clone());
    let straight = ta.run(&mut a, &mut ea, 40).unwrap().losses;

    let dir = std::env::temp_dir().join(format!("ppl-rect-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rect.ckpt");
    let mut b = Ctx::new(4).with_dtype(DType::F64);
    let gb = build(&mut b);
    let mut tb = Trainer::new(Adam::new(), 0.01).unwrap();
    let mut eb = Rectangular::new(&gb, &x, opts.clone());
    let mut resumed = tb.run(&mut b, &mut eb, 20).unwrap().losses;
    save_checkpoint(&path, &mut b, &tb, &eb).unwrap();

    let mut c = Ctx::new(99).with_dtype(DType::F64);
    let mut tc = Trainer::new(Adam::new(), 0.01).unwrap();
    let gc = build(&mut c);
    let mut ec = Rectangular::new(&gc, &x, opts);
    assert_eq!(
        load_checkpoint(&path, &mut c, &mut tc, &mut ec).unwrap(),
        20
    );
    assert_eq!(scalar(&ec.state().unwrap()[0].1), 20.0);
    resumed.extend(tc.run(&mut c, &mut ec, 20).unwrap().losses);
    assert_eq!(straight, resumed);
    let _ = std::fs::remove_dir_all(&dir);
}
