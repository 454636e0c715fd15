//! Hybrid models with deep invertible features (DIGLM): the objective against separately
//! computed densities and likelihoods (λ, semi-supervised, minibatches, f32), the Bayesian
//! linear head against direct linear algebra, AUROC against brute-force pair counts,
//! training on two moons, typed errors.

use candle_core::{DType, Device, Tensor};
use ppl_core::flows::{Bijector, FlowDistribution, RealNvp, RealNvpOptions};
use ppl_core::prelude::*;
use ppl_inference::engines::{
    auroc, log_px, selective_accuracy, BayesianLinear, GlmHead, Hybrid, HybridOptions,
    LinearGaussian, Logistic, Softmax,
};
use ppl_inference::{Adam, Engine, Trainer};
use std::sync::Arc;

const DEV: Device = Device::Cpu;

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

fn vec1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// Two interleaved half circles (noise sd `noise`), labels 0/1, from a fixed seed.
fn moons(n: usize, noise: f64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let t = std::f64::consts::PI * rng.uniform_open();
        let (x, y, label) = if i % 2 == 0 {
            (t.cos(), t.sin(), 0.0)
        } else {
            (1.0 - t.cos(), 0.5 - t.sin(), 1.0)
        };
        xs.push(x + noise * rng.standard_normal() - 0.5);
        xs.push(y + noise * rng.standard_normal() - 0.25);
        ys.push(label);
    }
    (
        Tensor::from_vec(xs, (n, 2), &DEV).unwrap(),
        Tensor::from_vec(ys, n, &DEV).unwrap(),
    )
}

/// Moves every parameter of the store away from its (identity / zero) start, so that the
/// checks below see a non-trivial flow and head.
fn perturb(ctx: &Ctx, seed: u64, scale: f64) {
    let mut rng = PplRng::seed_from_u64(seed);
    for (_, v) in ctx.params().vars() {
        if v.dims().is_empty() || v.elem_count() == 1 && v.dims() == [1] {
            continue; // ActNorm's flag and scalar hyperparameters stay
        }
        let noise = rng.normals(v.elem_count());
        let noise = Tensor::from_vec(noise, v.dims(), &DEV)
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap();
        v.set(&(v.as_tensor() + (noise * scale).unwrap()).unwrap())
            .unwrap();
    }
}

fn flow_and_logistic(ctx: &mut Ctx) -> (Arc<dyn Bijector>, Logistic) {
    let opts = RealNvpOptions::default();
    let flow = ctx
        .try_module("flow", |vb| RealNvp::build(vb, 2, 0, 4, &[16], &opts))
        .unwrap();
    let head = ctx.try_module("head", |vb| Logistic::new(vb, 2)).unwrap();
    (Arc::new(flow), head)
}

#[test]
fn objective_equals_separately_computed_log_likelihoods() {
    // loss = −[(N_l/N) mean_l(log p(y|x) + λ log p(x)) + λ (N_u/N) mean_u log p(x)], with
    // log p(x) from FlowDistribution (another code path) and log p(y|x) = log σ(±(z·w+b))
    // written out by hand: agreement to 1e-12 for λ = 1, 0.5, 0 with and without
    // unlabelled points.
    let mut ctx = Ctx::new(3).with_dtype(DType::F64);
    let (flow, head) = flow_and_logistic(&mut ctx);
    perturb(&ctx, 1, 0.3);
    let (x, y) = moons(40, 0.1, 5);
    let (u, _) = moons(25, 0.1, 6);
    let dist = FlowDistribution::standard_normal(flow.clone(), None, DType::F64, &DEV).unwrap();
    let lpx = vec1(&dist.log_prob(&x).unwrap());
    let lpu = vec1(&dist.log_prob(&u).unwrap());
    let (z, _) = flow.to_base(&x, None).unwrap();
    let w = vec1(
        &ctx.params()
            .get("head.weight")
            .unwrap()
            .flatten_all()
            .unwrap(),
    );
    let b = vec1(&ctx.params().get("head.bias").unwrap())[0];
    let zr: Vec<Vec<f64>> = z.to_vec2().unwrap();
    let ys = vec1(&y);
    let lpy: Vec<f64> = zr
        .iter()
        .zip(&ys)
        .map(|(zi, yi)| {
            let a = zi[0] * w[0] + zi[1] * w[1] + b;
            let p1 = 1.0 / (1.0 + (-a).exp());
            if *yi == 1.0 {
                p1.ln()
            } else {
                (1.0 - p1).ln()
            }
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for lambda in [1.0, 0.5, 0.0] {
        for semi in [false, true] {
            let mut e = Hybrid::new(
                &*flow,
                &head,
                &x,
                &y,
                HybridOptions::default().lambda(lambda),
            );
            if semi {
                e = e.with_unlabelled(&u);
            }
            e.init(&mut ctx).unwrap();
            let out = e.step(&mut ctx).unwrap();
            let (nl, nu) = (40.0, if semi { 25.0 } else { 0.0 });
            let labelled: Vec<f64> = lpy.iter().zip(&lpx).map(|(a, b)| a + lambda * b).collect();
            let mut want = nl / (nl + nu) * mean(&labelled);
            if semi {
                want += lambda * nu / (nl + nu) * mean(&lpu);
            }
            assert!(
                (out.value + want).abs() < 1e-12,
                "λ {lambda} semi {semi}: {} vs {}",
                out.value,
                -want
            );
            assert!((scalar(&out.loss) - out.value).abs() < 1e-15);
            assert!((out.metrics.get("log_py").unwrap() - mean(&lpy)).abs() < 1e-12);
            assert!((out.metrics.get("log_px").unwrap() - mean(&lpx)).abs() < 1e-12);
            assert_eq!(out.metrics.get("log_px_unlabelled").is_some(), semi);
        }
    }
    // the per-point evaluation and log_px agree with the same quantities
    let ev = Hybrid::new(&*flow, &head, &x, &y, HybridOptions::default())
        .evaluate(&x, &y)
        .unwrap();
    for (a, b) in vec1(&ev.log_py).iter().zip(&lpy) {
        assert!((a - b).abs() < 1e-12);
    }
    for (a, b) in vec1(&log_px(&*flow, &x).unwrap()).iter().zip(&lpx) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn minibatch_objective_is_unbiased_and_f32_agrees() {
    // The mean of the minibatch loss over 4000 draws (batch 8 of 40 labelled, 5 of 25
    // unlabelled) equals the full-batch loss within 4 standard errors.
    let mut ctx = Ctx::new(8).with_dtype(DType::F64);
    let (flow, head) = flow_and_logistic(&mut ctx);
    perturb(&ctx, 2, 0.3);
    let (x, y) = moons(40, 0.1, 5);
    let (u, _) = moons(25, 0.1, 6);
    let opts = HybridOptions::default().lambda(0.7);
    let mut full = Hybrid::new(&*flow, &head, &x, &y, opts.clone()).with_unlabelled(&u);
    full.init(&mut ctx).unwrap();
    let exact = full.step(&mut ctx).unwrap().value;
    let mut mb = Hybrid::new(
        &*flow,
        &head,
        &x,
        &y,
        opts.batch_size(8).unlabelled_batch(5),
    )
    .with_unlabelled(&u);
    mb.init(&mut ctx).unwrap();
    let draws: Vec<f64> = (0..4000)
        .map(|_| mb.step(&mut ctx).unwrap().value)
        .collect();
    let m = draws.iter().sum::<f64>() / draws.len() as f64;
    let sd = (draws.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (draws.len() - 1) as f64).sqrt();
    let se = sd / (draws.len() as f64).sqrt();
    assert!(sd > 0.0);
    assert!(
        (m - exact).abs() < 4.0 * se,
        "minibatch mean {m} vs full {exact} (se {se})"
    );

    // f32: the same weights in an f32 store give the same loss to f32 precision.
    let mut ctx32 = Ctx::new(8).with_dtype(DType::F32);
    let (flow32, head32) = flow_and_logistic(&mut ctx32);
    for (name, v) in ctx.params().vars() {
        let target = ctx32
            .params()
            .vars()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        target
            .set(&v.as_tensor().to_dtype(DType::F32).unwrap())
            .unwrap();
    }
    let (x32, y32, u32_) = (
        x.to_dtype(DType::F32).unwrap(),
        y.to_dtype(DType::F32).unwrap(),
        u.to_dtype(DType::F32).unwrap(),
    );
    let mut e32 = Hybrid::new(
        &*flow32,
        &head32,
        &x32,
        &y32,
        HybridOptions::default().lambda(0.7),
    )
    .with_unlabelled(&u32_);
    e32.init(&mut ctx32).unwrap();
    let v32 = e32.step(&mut ctx32).unwrap().value;
    assert!(
        (v32 - exact).abs() < 1e-4 * (1.0 + exact.abs()),
        "f32 {v32} vs f64 {exact}"
    );
}

#[test]
fn training_on_two_moons_classifies_and_models_the_density() {
    // RealNvp (4 couplings) + logistic head, λ = 1, 600 Adam steps on 400 points: test
    // accuracy above 0.95 (the moons are separable at noise 0.1), and the test log p(x)
    // rises well above a standard normal's on the same data.
    let mut ctx = Ctx::new(1).with_dtype(DType::F64);
    let (flow, head) = flow_and_logistic(&mut ctx);
    let (x, y) = moons(400, 0.1, 11);
    let (xt, yt) = moons(400, 0.1, 12);
    let start = scalar(&log_px(&*flow, &xt).unwrap().mean_all().unwrap());
    let mut engine = Hybrid::new(
        &*flow,
        &head,
        &x,
        &y,
        HybridOptions::default().batch_size(128),
    );
    let mut trainer = Trainer::new(Adam::new(), 0.01).unwrap();
    let report = trainer.run(&mut ctx, &mut engine, 600).unwrap();
    assert_eq!(report.losses.len(), 600);
    let ev = engine.evaluate(&xt, &yt).unwrap();
    let p = vec1(&head.prob(&ev.features).unwrap());
    let acc = p
        .iter()
        .zip(vec1(&yt))
        .filter(|(p, y)| (**p > 0.5) == (*y == 1.0))
        .count() as f64
        / p.len() as f64;
    let end = scalar(&ev.log_px.mean_all().unwrap());
    eprintln!("accuracy {acc}, test log p(x) {start:.3} -> {end:.3}");
    assert!(acc > 0.95, "accuracy {acc}");
    assert!(end > start + 0.5, "test log p(x) {start} -> {end}");
    // Out-of-distribution points (a ring of radius 3..4) have lower log p(x): AUROC > 0.95.
    let mut rng = PplRng::seed_from_u64(4);
    let ring: Vec<f64> = (0..200)
        .flat_map(|_| {
            let (r, t) = (
                3.0 + rng.uniform_open(),
                2.0 * std::f64::consts::PI * rng.uniform_open(),
            );
            [r * t.cos(), r * t.sin()]
        })
        .collect();
    let ring = Tensor::from_vec(ring, (200, 2), &DEV).unwrap();
    let ood = vec1(&log_px(&*flow, &ring).unwrap());
    let a = auroc(&vec1(&ev.log_px), &ood).unwrap();
    assert!(a > 0.95, "AUROC {a}");
}

#[test]
fn heads_match_their_closed_forms() {
    // Linear-Gaussian: log N(y; zW + b, σ²) summed over outputs; softmax: log_softmax
    // at the label; both against host formulas (1e-12).
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let lg = ctx
        .try_module("lg", |vb| LinearGaussian::new(vb, 3, 2))
        .unwrap();
    let sm = ctx.try_module("sm", |vb| Softmax::new(vb, 3, 4)).unwrap();
    perturb(&ctx, 5, 0.5);
    let z = Tensor::new(&[[0.1f64, -0.4, 1.2], [2.0, 0.3, -0.7]], &DEV).unwrap();
    let y = Tensor::new(&[[0.5f64, -1.0], [1.5, 0.2]], &DEV).unwrap();
    let get = |n: &str| -> Vec<Vec<f64>> {
        let t = ctx.params().get(n).unwrap();
        if t.rank() == 1 {
            vec![vec1(&t)]
        } else {
            t.to_vec2().unwrap()
        }
    };
    let (w, b, ls) = (
        get("lg.weight"),
        get("lg.bias")[0].clone(),
        get("lg.log_sigma")[0].clone(),
    );
    let zr: Vec<Vec<f64>> = z.to_vec2().unwrap();
    let yr: Vec<Vec<f64>> = y.to_vec2().unwrap();
    let got = vec1(&lg.log_prob(&z, &y).unwrap());
    for i in 0..2 {
        let mut want = 0.0;
        for o in 0..2 {
            let m: f64 = (0..3).map(|d| zr[i][d] * w[d][o]).sum::<f64>() + b[o];
            let s = ls[o].exp();
            want += -0.5 * ((yr[i][o] - m) / s).powi(2)
                - s.ln()
                - 0.5 * (2.0 * std::f64::consts::PI).ln();
        }
        assert!((got[i] - want).abs() < 1e-12, "{} vs {want}", got[i]);
    }
    let (w, b) = (get("sm.weight"), get("sm.bias")[0].clone());
    let labels = Tensor::new(&[3u32, 1], &DEV).unwrap();
    let got = vec1(&sm.log_prob(&z, &labels).unwrap());
    for (i, k) in [3usize, 1].iter().enumerate() {
        let a: Vec<f64> = (0..4)
            .map(|c| (0..3).map(|d| zr[i][d] * w[d][c]).sum::<f64>() + b[c])
            .collect();
        let lse = a.iter().map(|v| v.exp()).sum::<f64>().ln();
        assert!((got[i] - (a[*k] - lse)).abs() < 1e-12);
    }
    // labels as floats work; out-of-range labels are typed errors naming the label
    let got_f = vec1(
        &sm.log_prob(&z, &Tensor::new(&[3.0f64, 1.0], &DEV).unwrap())
            .unwrap(),
    );
    assert_eq!(got, got_f);
    let e = sm
        .log_prob(&z, &Tensor::new(&[4.0f64, 1.0], &DEV).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Softmax") && e.contains("0..4") && e.contains('4'),
        "{e}"
    );
    let e = lg
        .log_prob(&z, &y.narrow(1, 0, 1).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("LinearGaussian") && e.contains("[2, 2]"), "{e}");
}

/// Solves `A x = b` by Gaussian elimination with partial pivoting (host, for checks).
#[allow(clippy::needless_range_loop)]
fn gauss(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    x
}

#[test]
fn bayesian_linear_head_matches_direct_linear_algebra() {
    // Posterior mean = ridge solution (ΦᵀΦ + ασ²I)⁻¹Φᵀy; predictive variance
    // σ² + φᵀ(αI + ΦᵀΦ/σ²)⁻¹φ; evidence = log N(y; 0, σ²I + ΦΦᵀ/α) by brute force.
    let mut rng = PplRng::seed_from_u64(9);
    let (n, d, alpha, sigma) = (12, 2, 0.5, 0.3);
    let zs = rng.normals(n * d);
    let ys: Vec<f64> = (0..n)
        .map(|i| 1.5 * zs[i * d] - 0.5 * zs[i * d + 1] + 0.2 + sigma * rng.standard_normal())
        .collect();
    let z = Tensor::from_vec(zs.clone(), (n, d), &DEV).unwrap();
    let y = Tensor::from_vec(ys.clone(), n, &DEV).unwrap();
    let head = BayesianLinear::fit(&z, &y, alpha, sigma).unwrap();
    let phi: Vec<Vec<f64>> = (0..n)
        .map(|i| vec![zs[i * d], zs[i * d + 1], 1.0])
        .collect();
    let p = d + 1;
    let gram = |extra: f64| -> Vec<Vec<f64>> {
        (0..p)
            .map(|i| {
                (0..p)
                    .map(|j| {
                        (0..n).map(|r| phi[r][i] * phi[r][j]).sum::<f64>()
                            + if i == j { extra } else { 0.0 }
                    })
                    .collect()
            })
            .collect()
    };
    let rhs: Vec<f64> = (0..p)
        .map(|i| (0..n).map(|r| phi[r][i] * ys[r]).sum())
        .collect();
    let ridge = gauss(gram(alpha * sigma * sigma), rhs);
    for (a, b) in head.posterior_mean().iter().zip(&ridge) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
    let zq = Tensor::new(&[[0.3f64, -2.0], [5.0, 5.0]], &DEV).unwrap();
    let (m, v) = head.predict(&zq).unwrap();
    let (m, v) = (vec1(&m), vec1(&v));
    let prec: Vec<Vec<f64>> = gram(alpha * sigma * sigma)
        .into_iter()
        .map(|r| r.into_iter().map(|x| x / (sigma * sigma)).collect())
        .collect();
    for (k, q) in [[0.3, -2.0, 1.0], [5.0, 5.0, 1.0]].iter().enumerate() {
        let s = gauss(prec.clone(), q.to_vec());
        let want_v = sigma * sigma + q.iter().zip(&s).map(|(a, b)| a * b).sum::<f64>();
        let want_m: f64 = q.iter().zip(&ridge).map(|(a, b)| a * b).sum();
        assert!((m[k] - want_m).abs() < 1e-10);
        assert!(
            (v[k] - want_v).abs() < 1e-10 * want_v,
            "{} vs {want_v}",
            v[k]
        );
    }
    // far from the training features the epistemic part of the variance grows
    let s2 = sigma * sigma;
    assert!(v[1] - s2 > 4.0 * (v[0] - s2), "{v:?}");
    // evidence: log N(y; 0, C), C = σ²I + ΦΦᵀ/α, via Cholesky of C
    let c: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            (0..p).map(|t| phi[i][t] * phi[j][t]).sum::<f64>() / alpha
                + if i == j { sigma * sigma } else { 0.0 }
        })
        .collect();
    let c = Tensor::from_vec(c, (n, n), &DEV).unwrap();
    let l = ppl_core::linalg::cholesky(&c).unwrap();
    let w = ppl_core::linalg::solve_lower_triangular(&l, &y.unsqueeze(1).unwrap()).unwrap();
    let logdet = 2.0
        * scalar(
            &ppl_core::linalg::diagonal(&l)
                .unwrap()
                .log()
                .unwrap()
                .sum_all()
                .unwrap(),
        );
    let want = -0.5 * scalar(&w.sqr().unwrap().sum_all().unwrap())
        - 0.5 * logdet
        - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    assert!(
        (head.log_evidence() - want).abs() < 1e-9,
        "{} vs {want}",
        head.log_evidence()
    );
    // typed errors
    let e = BayesianLinear::fit(&z, &y, 0.0, sigma)
        .unwrap_err()
        .to_string();
    assert!(e.contains("alpha"), "{e}");
    let e = BayesianLinear::fit(&z, &y.narrow(0, 0, 5).unwrap(), alpha, sigma)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[12]"), "{e}");
    let e = head
        .predict(&Tensor::zeros((2, 3), DType::F64, &DEV).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[M, 2]"), "{e}");
}

#[test]
fn auroc_and_selective_accuracy_match_brute_force() {
    let mut rng = PplRng::seed_from_u64(2);
    let inside: Vec<f64> = (0..57)
        .map(|_| (rng.standard_normal() * 4.0).round() / 2.0 + 1.0)
        .collect();
    let outside: Vec<f64> = (0..43)
        .map(|_| (rng.standard_normal() * 4.0).round() / 2.0)
        .collect();
    let mut pairs = 0.0;
    for a in &inside {
        for b in &outside {
            pairs += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    let brute = pairs / (57.0 * 43.0);
    let fast = auroc(&inside, &outside).unwrap();
    assert!((fast - brute).abs() < 1e-12, "{fast} vs {brute}");
    assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]).unwrap(), 1.0);
    assert_eq!(auroc(&[0.0, 1.0], &[2.0, 3.0]).unwrap(), 0.0);
    assert_eq!(auroc(&[1.0, 1.0], &[1.0]).unwrap(), 0.5);
    assert!(auroc(&[], &[1.0]).is_err());
    assert!(auroc(&[f64::NAN], &[1.0]).is_err());
    // keep the 50% most likely points: here exactly the correct ones
    let score = [5.0, 1.0, 4.0, 0.0];
    let correct = [true, false, true, false];
    assert_eq!(selective_accuracy(&score, &correct, 0.5).unwrap(), 1.0);
    assert_eq!(selective_accuracy(&score, &correct, 1.0).unwrap(), 0.5);
    assert!(selective_accuracy(&score, &correct, 0.0).is_err());
    assert!(selective_accuracy(&score, &correct[..3], 0.5).is_err());
}

#[test]
fn configuration_errors_are_typed() {
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let (flow, head) = flow_and_logistic(&mut ctx);
    let (x, y) = moons(10, 0.1, 1);
    let run = |ctx: &mut Ctx, mut e: Hybrid| e.init(ctx).unwrap_err().to_string();
    let e = run(
        &mut ctx,
        Hybrid::new(&*flow, &head, &x, &y, HybridOptions::default().lambda(-1.0)),
    );
    assert!(e.contains("lambda"), "{e}");
    let e = run(
        &mut ctx,
        Hybrid::new(
            &*flow,
            &head,
            &x,
            &y,
            HybridOptions::default().batch_size(0),
        ),
    );
    assert!(e.contains("batch_size"), "{e}");
    let e = run(
        &mut ctx,
        Hybrid::new(
            &*flow,
            &head,
            &x,
            &y.narrow(0, 0, 9).unwrap(),
            HybridOptions::default(),
        ),
    );
    assert!(e.contains("leading dim 10"), "{e}");
    let x3 = Tensor::zeros((10, 3), DType::F64, &DEV).unwrap();
    let e = run(
        &mut ctx,
        Hybrid::new(&*flow, &head, &x3, &y, HybridOptions::default()),
    );
    assert!(e.contains("[N ≥ 1, 2]") && e.contains("[10, 3]"), "{e}");
    let wide = ctx.try_module("wide", |vb| Logistic::new(vb, 3)).unwrap();
    let e = run(
        &mut ctx,
        Hybrid::new(&*flow, &wide, &x, &y, HybridOptions::default()),
    );
    assert!(e.contains("head takes 3"), "{e}");
    let e = run(
        &mut ctx,
        Hybrid::new(&*flow, &head, &x, &y, HybridOptions::default()).with_unlabelled(&x3),
    );
    assert!(e.contains("unlabelled"), "{e}");
    let e = log_px(&*flow, &x3).unwrap_err().to_string();
    assert!(e.contains("[B, 2]"), "{e}");
    // a NaN-free objective at extreme inputs: the soft clamp bounds the log-scales
    let far = Tensor::new(&[[1e6f64, -1e6], [0.0, 1e6]], &DEV).unwrap();
    let lp = vec1(&log_px(&*flow, &far).unwrap());
    assert!(lp.iter().all(|v| !v.is_nan()), "{lp:?}");
}

#[test]
fn trained_hybrid_checkpoints_restore_densities_and_resume_bit_identically() {
    // 20 minibatch steps, a checkpoint (parameters with ActNorm's initialised flag, Adam,
    // RNG), then a fresh context that rebuilds the flow and head from the checkpoint:
    // identical log p(x) and log p(y|x), no ActNorm re-initialisation, and 20 more steps
    // equal to the straight 40-step run bit for bit.
    use ppl_inference::{load_checkpoint, save_checkpoint};
    let (x, y) = moons(200, 0.1, 21);
    let build = |ctx: &mut Ctx| -> (Arc<dyn Bijector>, Logistic) {
        let opts = RealNvpOptions {
            actnorm: true,
            ..RealNvpOptions::default()
        };
        let flow = ctx
            .try_module("flow", |vb| RealNvp::build(vb, 2, 0, 3, &[16], &opts))
            .unwrap();
        let head = ctx.try_module("head", |vb| Logistic::new(vb, 2)).unwrap();
        (Arc::new(flow), head)
    };
    let opts = HybridOptions::default().lambda(0.5).batch_size(32);
    let train =
        |ctx: &mut Ctx, trainer: &mut Trainer, flow: &dyn Bijector, head: &Logistic, steps| {
            let mut e = Hybrid::new(flow, head, &x, &y, opts.clone());
            trainer.run(ctx, &mut e, steps).unwrap().losses
        };
    let mut a = Ctx::new(4).with_dtype(DType::F64);
    let (fa, ha) = build(&mut a);
    let mut ta = Trainer::new(Adam::new(), 0.01).unwrap();
    let straight = train(&mut a, &mut ta, &*fa, &ha, 40);

    let dir = std::env::temp_dir().join(format!("ppl-hybrid-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hybrid.ckpt");
    let mut b = Ctx::new(4).with_dtype(DType::F64);
    let (fb, hb) = build(&mut b);
    let mut tb = Trainer::new(Adam::new(), 0.01).unwrap();
    let mut resumed = train(&mut b, &mut tb, &*fb, &hb, 20);
    {
        let e = Hybrid::new(&*fb, &hb, &x, &y, opts.clone());
        save_checkpoint(&path, &mut b, &tb, &e).unwrap();
    }
    let before = Hybrid::new(&*fb, &hb, &x, &y, opts.clone())
        .evaluate(&x, &y)
        .unwrap();

    let mut c = Ctx::new(99).with_dtype(DType::F64);
    let mut tc = Trainer::new(Adam::new(), 0.01).unwrap();
    {
        let mut e = Hybrid::new(&*fb, &hb, &x, &y, opts.clone());
        assert_eq!(load_checkpoint(&path, &mut c, &mut tc, &mut e).unwrap(), 20);
    }
    let (fc, hc) = build(&mut c);
    assert_eq!(
        vec1(&c.params().get("flow.actnorm0.initialized").unwrap()),
        vec![1.0]
    );
    let after = Hybrid::new(&*fc, &hc, &x, &y, opts.clone())
        .evaluate(&x, &y)
        .unwrap();
    assert_eq!(vec1(&before.log_px), vec1(&after.log_px));
    assert_eq!(vec1(&before.log_py), vec1(&after.log_py));
    resumed.extend(train(&mut c, &mut tc, &*fc, &hc, 20));
    assert_eq!(straight, resumed);
    let _ = std::fs::remove_dir_all(&dir);
}
