//! The shared fixtures' exact answers are right, independently of any inference engine:
//! log joints against hand-written closed forms, posterior and evidence against Bayes'
//! rule at many points, evidence against importance sampling from the prior and (for the
//! mixture) explicit enumeration, and the models' shapes under a particle plate.

// Row-major host arrays are indexed as `x[i * d + j]` next to other arrays: index loops
// read better here than iterator chains.
#![allow(clippy::needless_range_loop)]

mod common;

use candle_core::{DType, Device, Tensor};
use common::host::{
    cholesky, log_det_from_cholesky, log_mean_exp, log_mean_exp_se, log_normal, logsumexp,
    solve_cholesky,
};
use common::{
    ctx_on, test_on_devices, ConjugateGaussian, GaussianConfig, GaussianMixture, LinRegConfig,
    LinearRegression, LocalGaussian,
};
use ppl_core::prelude::*;
use ppl_core::tensor::host_f64;

const DTYPES: [DType; 2] = [DType::F64, DType::F32];

/// The tolerance for a sum of log densities whose terms add up to `scale` in absolute
/// value: 1e-10 in f64 (the host and the tensors do the same arithmetic to ~1e-13 here);
/// in f32 each term is off by a few ulps (~1e-6 relative) and the errors add, so
/// `1e-5 · scale` bounds them while a wrong formula (a scale or a sign) moves the value by
/// O(1).
fn tol(dtype: DType, scale: f64) -> f64 {
    match dtype {
        DType::F64 => 1e-10 * (1.0 + scale / 100.0),
        _ => 1e-5 * (1.0 + scale),
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Non-default Gaussian hyper-parameters, so a dropped `μ0` or a swapped scale shows.
fn gauss(n: usize, d: usize) -> GaussianConfig {
    GaussianConfig {
        n,
        d,
        prior_loc: 0.5,
        prior_scale: 1.5,
        noise_scale: 0.8,
    }
}

/// Traces `model` inside a plate `particles` of `k` at dim −2 (left of plate `data`).
fn particle_trace(ctx: &mut Ctx, model: &dyn Fn(&mut Ctx) -> Result<()>, k: usize) -> Trace {
    let opts = PlateOpts {
        dim: Some(-2),
        ..Default::default()
    };
    ctx.trace(|ctx| ctx.plate("particles", k, opts, |ctx, _| model(ctx)))
        .unwrap()
        .1
}

/// Per-particle sum of the sites' log densities for which `keep` holds: `[k]`.
fn per_particle(trace: &Trace, keep: impl Fn(&Site) -> bool) -> Vec<f64> {
    let mut total: Option<Vec<f64>> = None;
    for s in trace.sites().iter().filter(|s| s.has_density() && keep(s)) {
        let lp = host_f64(&s.log_prob_along("particles").unwrap().unwrap()).unwrap();
        total = Some(match total {
            None => lp,
            Some(t) => t.iter().zip(&lp).map(|(a, b)| a + b).collect(),
        });
    }
    total.unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Log joints at fixed points against hand-written closed forms.

test_on_devices!(fn log_joints_match_hand_computed_closed_forms(device) {
    for dtype in DTYPES {
        let mut ctx = ctx_on(0, &device, dtype);
        // Global Gaussian, d = 2.
        let f = ConjugateGaussian::from_config(1, gauss(5, 2), dtype, &device).unwrap();
        let c = f.config;
        let z = [0.3, -0.7];
        let mut terms = vec![];
        for j in 0..2 {
            terms.push(log_normal(z[j], c.prior_loc, c.prior_scale));
            for i in 0..5 {
                terms.push(log_normal(f.x_host[i * 2 + j], z[j], c.noise_scale));
            }
        }
        check_assess(&mut ctx, &f, &f.choices(&z).unwrap(), &terms, dtype, "global");

        // Local Gaussian, n = 4, d = 2.
        let f = LocalGaussian::from_config(2, gauss(4, 2), dtype, &device).unwrap();
        let c = f.config;
        let z = [0.1, -0.4, 1.2, 0.0, -1.5, 0.7, 0.25, 2.0];
        let mut terms = vec![];
        for i in 0..8 {
            terms.push(log_normal(z[i], c.prior_loc, c.prior_scale));
            terms.push(log_normal(f.x_host[i], z[i], c.noise_scale));
        }
        check_assess(&mut ctx, &f, &f.choices(&z).unwrap(), &terms, dtype, "local");

        // Linear regression, n = 6, d = 3, α = 2, β = 3.
        let cfg = LinRegConfig { n: 6, d: 3, alpha: 2.0, beta: 3.0 };
        let f = LinearRegression::from_config(3, cfg, dtype, &device).unwrap();
        let (a, b) = (f.config.alpha, f.config.beta);
        let w = [0.4, -1.1, 0.8];
        let mut terms: Vec<f64> = w.iter().map(|w| log_normal(*w, 0.0, a.powf(-0.5))).collect();
        for i in 0..6 {
            let mean: f64 = (0..3).map(|j| f.x_host[i * 3 + j] * w[j]).sum();
            terms.push(log_normal(f.y_host[i], mean, b.powf(-0.5)));
        }
        check_assess(&mut ctx, &f, &f.choices(&w).unwrap(), &terms, dtype, "linreg");

        // Mixture, n = 6, every component used.
        let f = GaussianMixture::new(4, 6, dtype, &device).unwrap();
        let c = &f.config;
        let assign = [0, 1, 2, 1, 0, 2];
        let mut terms = vec![];
        for (i, k) in assign.iter().enumerate() {
            terms.push(c.weights[*k].ln());
            terms.push(log_normal(f.x_host[i], c.means[*k], c.scales[*k]));
        }
        check_assess(&mut ctx, &f, &f.choices(&assign).unwrap(), &terms, dtype, "mixture");
    }
});

fn check_assess(
    ctx: &mut Ctx,
    model: &dyn Model<Output = ()>,
    choices: &ChoiceMap,
    terms: &[f64],
    dtype: DType,
    name: &str,
) {
    let got = scalar(&assess(ctx, model, choices).unwrap());
    let want: f64 = terms.iter().sum();
    let scale: f64 = terms.iter().map(|t| t.abs()).sum();
    assert!(
        (got - want).abs() < tol(dtype, scale),
        "{name} {dtype:?}: assess {got} vs closed form {want}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Bayes' rule: log p(x, θ) − log p(θ | x) = log p(x) at every θ. With the model's log
//    joint from `assess`, a wrong posterior makes the difference vary with θ and a wrong
//    evidence offsets it, so this checks both against the model exactly.

test_on_devices!(fn posteriors_and_evidences_satisfy_bayes_rule_exactly(device) {
    for dtype in DTYPES {
        let mut ctx = ctx_on(0, &device, dtype);
        let mut rng = PplRng::seed_from_u64(10);
        let check = |got: f64, want: f64, scale: f64, what: &str| {
            assert!(
                (got - want).abs() < tol(dtype, scale),
                "{what} {dtype:?}: {got} vs {want}"
            );
        };

        let f = ConjugateGaussian::from_config(1, gauss(7, 3), dtype, &device).unwrap();
        let logz = f.exact_log_evidence();
        for _ in 0..5 {
            let z: Vec<f64> = rng.normals(3).iter().map(|e| 0.5 + 0.5 * e).collect();
            let lj = scalar(&assess(&mut ctx, &f, &f.choices(&z).unwrap()).unwrap());
            check(lj - f.exact_log_posterior(&z), logz, lj.abs() + logz.abs(), "global");
        }

        let f = LocalGaussian::from_config(2, gauss(5, 2), dtype, &device).unwrap();
        let per_point = f.exact_log_evidence_per_point();
        for _ in 0..3 {
            let z = rng.normals(10);
            let (_, trace, _) = generate(&mut ctx, &f, &f.choices(&z).unwrap()).unwrap();
            let lj = host_f64(&trace.log_prob_per("data").unwrap()).unwrap();
            let lpost = f.exact_log_posterior_per_point(&z);
            for i in 0..5 {
                let what = format!("local point {i}");
                check(lj[i] - lpost[i], per_point[i], lj[i].abs() + 10.0, &what);
            }
        }

        let f = LinearRegression::new(3, 20, 3, dtype, &device).unwrap();
        let logz = f.exact_log_evidence().unwrap();
        let (m, _) = f.exact_posterior().unwrap();
        for _ in 0..5 {
            let w: Vec<f64> = rng.normals(3).iter().zip(&m).map(|(e, m)| m + 0.3 * e).collect();
            let lj = scalar(&assess(&mut ctx, &f, &f.choices(&w).unwrap()).unwrap());
            let lp = f.exact_log_posterior(&w).unwrap();
            check(lj - lp, logz, lj.abs() + logz.abs(), "linreg");
        }

        let f = GaussianMixture::new(4, 8, dtype, &device).unwrap();
        let logz = f.exact_log_evidence();
        for _ in 0..5 {
            let c: Vec<usize> = rng.uniforms(8).iter().map(|u| (u * 3.0) as usize).collect();
            let lj = scalar(&assess(&mut ctx, &f, &f.choices(&c).unwrap()).unwrap());
            check(lj - f.exact_log_posterior(&c), logz, lj.abs() + logz.abs(), "mixture");
        }
    }
});

#[test]
fn linear_regression_evidence_equals_the_marginal_gaussian_of_y() {
    // Independent route: y ~ N(0, β⁻¹ I_n + α⁻¹ X Xᵀ), an n × n Cholesky (n = 12).
    let f = LinearRegression::from_config(
        5,
        LinRegConfig {
            n: 12,
            d: 4,
            alpha: 0.5,
            beta: 2.0,
        },
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let LinRegConfig { n, d, alpha, beta } = f.config;
    let cov: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|k| {
                    let xx: f64 = (0..d)
                        .map(|j| f.x_host[i * d + j] * f.x_host[k * d + j])
                        .sum();
                    xx / alpha + if i == k { 1.0 / beta } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let l = cholesky(&cov).unwrap();
    let sol = solve_cholesky(&l, &f.y_host);
    let quad: f64 = sol.iter().zip(&f.y_host).map(|(a, b)| a * b).sum();
    let marginal = -0.5 * quad
        - 0.5 * log_det_from_cholesky(&l)
        - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    let exact = f.exact_log_evidence().unwrap();
    assert!((exact - marginal).abs() < 1e-10, "{exact} vs {marginal}");
    // And the posterior covariance is the inverse of α I + β XᵀX: Λ Σ = I.
    let (_, s) = f.exact_posterior().unwrap();
    for i in 0..d {
        for k in 0..d {
            let mut lam_s = alpha * s[i][k];
            for j in 0..d {
                let xtx: f64 = (0..n)
                    .map(|r| f.x_host[r * d + i] * f.x_host[r * d + j])
                    .sum();
                lam_s += beta * xtx * s[j][k];
            }
            let want = if i == k { 1.0 } else { 0.0 };
            assert!((lam_s - want).abs() < 1e-10, "(ΛΣ)[{i}][{k}] = {lam_s}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Evidence by enumeration (mixture) and by importance sampling from the prior.

test_on_devices!(fn mixture_evidence_and_responsibilities_match_enumeration(device) {
    // n = 4 points, K = 3: all 81 assignments through `assess`. log p(x) is the
    // logsumexp of their log joints, and p(c_i = k | x) the normalised mass of those with
    // c_i = k: the same sums regrouped, so f64 agrees to rounding (1e-10).
    for dtype in DTYPES {
        let f = GaussianMixture::new(6, 4, dtype, &device).unwrap();
        let mut ctx = ctx_on(0, &device, dtype);
        let mut joints = vec![];
        let mut assignments = vec![];
        for code in 0..81usize {
            let c: Vec<usize> = (0..4).map(|i| (code / 3usize.pow(i)) % 3).collect();
            joints.push(scalar(&assess(&mut ctx, &f, &f.choices(&c).unwrap()).unwrap()));
            assignments.push(c);
        }
        let logz = logsumexp(&joints);
        let exact = f.exact_log_evidence();
        let t = tol(dtype, exact.abs() * 4.0);
        assert!((logz - exact).abs() < t, "{dtype:?}: {logz} vs {exact}");
        let resp = f.exact_responsibilities();
        for i in 0..4 {
            for k in 0..3 {
                let mass: f64 = joints
                    .iter()
                    .zip(&assignments)
                    .filter(|(_, c)| c[i] == k)
                    .map(|(l, _)| (l - logz).exp())
                    .sum();
                assert!((mass - resp[i][k]).abs() < t, "r[{i}][{k}] = {mass} vs {}", resp[i][k]);
            }
        }
    }
});

/// Checks `log_mean_exp(log_w)` against `exact` within 4 delta-method standard errors
/// (the estimator's bias, −Var(w)/(2 M E[w]²), is below se²/2 and negligible); the se
/// must be small enough for the check to mean something.
fn check_is(log_w: &[f64], exact: f64, max_se: f64, what: &str) {
    let (est, se) = (log_mean_exp(log_w), log_mean_exp_se(log_w));
    println!("{what}: IS {est} ± {se} vs exact {exact}");
    assert!(se < max_se, "{what}: se {se} too large to test anything");
    assert!(
        (est - exact).abs() < 4.0 * se,
        "{what}: IS {est} (se {se}) vs exact {exact}"
    );
}

test_on_devices!(fn evidence_and_posterior_mean_match_prior_importance_sampling(device) {
    // M = 20000 particles from the prior in one vectorised run (plate `particles` at dim
    // −2); the weight of a particle is the likelihood of all data, so E[w] = p(x). The
    // standard errors (from the draws) come out at 0.01-0.06; each check is at 4 se, and
    // also asserts se < 0.1 so that it could fail for an error of a few tenths.
    let m = 20_000;
    for dtype in DTYPES {
        let mut ctx = ctx_on(7, &device, dtype);

        let cfg = GaussianConfig { noise_scale: 1.0, ..gauss(5, 2) };
        let f = ConjugateGaussian::from_config(1, cfg, dtype, &device).unwrap();
        let trace = particle_trace(&mut ctx, &|c| f.model(c), m);
        let lw = per_particle(&trace, |s| s.observed);
        check_is(&lw, f.exact_log_evidence(), 0.1, &format!("global {dtype:?}"));
        // Self-normalised IS for the posterior mean; delta-method se of the ratio
        // estimator: sqrt(Σ w̄_k² (z_k − ẑ)²) with normalised weights w̄.
        let z = host_f64(&trace.value("z").unwrap()).unwrap(); // [M, 1, 2]
        let mx = lw.iter().cloned().fold(f64::MIN, f64::max);
        let w: Vec<f64> = lw.iter().map(|l| (l - mx).exp()).collect();
        let sw: f64 = w.iter().sum();
        let (mean, _) = f.exact_posterior();
        for j in 0..2 {
            let est: f64 = (0..m).map(|k| w[k] * z[k * 2 + j]).sum::<f64>() / sw;
            let se = (0..m)
                .map(|k| (w[k] / sw * (z[k * 2 + j] - est)).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(se < 0.05, "posterior-mean se {se}");
            assert!(
                (est - mean[j]).abs() < 4.0 * se,
                "posterior mean[{j}] {dtype:?}: SNIS {est} (se {se}) vs {}",
                mean[j]
            );
        }

        // Local latents: each point's evidence from its own column of weights.
        let f = LocalGaussian::from_config(2, gauss(4, 2), dtype, &device).unwrap();
        let trace = particle_trace(&mut ctx, &|c| f.model(c), m);
        let lp = host_f64(&trace.site("x").unwrap().log_prob().unwrap()).unwrap(); // [M, 4]
        for (i, exact) in f.exact_log_evidence_per_point().iter().enumerate() {
            let col: Vec<f64> = (0..m).map(|k| lp[k * 4 + i]).collect();
            check_is(&col, *exact, 0.1, &format!("local point {i} {dtype:?}"));
        }

        // Linear regression (n = 8, d = 2, α = β = 1, so the posterior is not too narrow).
        let cfg = LinRegConfig { n: 8, d: 2, alpha: 1.0, beta: 1.0 };
        let f = LinearRegression::from_config(3, cfg, dtype, &device).unwrap();
        let trace = particle_trace(&mut ctx, &|c| f.model(c), m);
        let lw = per_particle(&trace, |s| s.observed);
        check_is(&lw, f.exact_log_evidence().unwrap(), 0.1, &format!("linreg {dtype:?}"));

        // Mixture: latents are discrete and per point; the weight is the likelihood.
        let f = GaussianMixture::new(4, 5, dtype, &device).unwrap();
        let trace = particle_trace(&mut ctx, &|c| f.model(c), m);
        let lw = per_particle(&trace, |s| s.observed);
        check_is(&lw, f.exact_log_evidence(), 0.1, &format!("mixture {dtype:?}"));
    }
});

// ---------------------------------------------------------------------------------------
// 4. Shapes under a particle plate, and subsampling.

test_on_devices!(fn models_vectorise_over_a_particle_plate(device) {
    // K = 3 particles at dim −2: every particle's log joint from the vectorised trace
    // must equal `assess` of that particle's latents alone. A stray size-1 dim (e.g.
    // `matvec` in the regression) would broadcast to [K, K, n] and break both the shape
    // and the values.
    let k = 3;
    let dtype = DType::F64;
    let mut ctx = ctx_on(3, &device, dtype);
    type Case = (Box<dyn Model<Output = ()>>, &'static str, Vec<usize>);
    let cases: Vec<Case> = vec![
        (
            Box::new(ConjugateGaussian::from_config(1, gauss(5, 2), dtype, &device).unwrap()),
            "z",
            vec![k, 1, 2],
        ),
        (
            Box::new(LocalGaussian::from_config(1, gauss(5, 2), dtype, &device).unwrap()),
            "z",
            vec![k, 5, 2],
        ),
        (
            Box::new(LinearRegression::new(1, 5, 3, dtype, &device).unwrap()),
            "w",
            vec![k, 1, 3],
        ),
        (
            Box::new(GaussianMixture::new(1, 5, dtype, &device).unwrap()),
            "c",
            vec![k, 5],
        ),
    ];
    for (model, latent, shape) in cases {
        let trace = particle_trace(&mut ctx, &|c| model.run(c), k);
        let value = trace.value(latent).unwrap();
        assert_eq!(value.dims(), shape.as_slice(), "{latent}");
        let obs = trace.observed_sites().next().unwrap();
        assert_eq!(obs.log_prob().unwrap().dims(), &[k, 5], "{latent}: observed log_prob");
        let joint = per_particle(&trace, |_| true);
        for (p, lj) in joint.iter().enumerate() {
            let mine = value.get(p).unwrap();
            let single: Vec<usize> = shape[1..].iter().copied().filter(|s| *s != 1).collect();
            let mine = mine.reshape(single).unwrap();
            let choices = ChoiceMap::new().with(latent, mine);
            let want = scalar(&assess(&mut ctx, model.as_ref(), &choices).unwrap());
            assert!((lj - want).abs() < 1e-10, "{latent} particle {p}: {lj} vs {want}");
        }
    }
});

test_on_devices!(fn subsampled_log_joint_is_the_scaled_minibatch(device) {
    // n = 10, m = 3: log p = log p(globals) + (10/3) Σ_{i ∈ B} log p(locals_i, x_i), with
    // the minibatch B read from the `data` subsample site of the trace.
    let dtype = DType::F64;
    let mut ctx = ctx_on(5, &device, dtype);
    let scale = 10.0 / 3.0;
    let minibatch = |trace: &Trace| -> Vec<usize> {
        let idx = trace.site("data").unwrap().value.to_dtype(DType::F64).unwrap();
        let idx: Vec<usize> = host_f64(&idx).unwrap().iter().map(|v| *v as usize).collect();
        let mut sorted = idx.clone();
        sorted.sort();
        sorted.dedup();
        assert!(sorted.len() == 3 && sorted[2] < 10, "minibatch {idx:?}");
        idx
    };
    let check = |trace: &Trace, want: f64, what: &str| {
        let got = scalar(&trace.log_joint().unwrap());
        assert!((got - want).abs() < 1e-10, "{what}: {got} vs {want}");
    };

    let f = ConjugateGaussian::from_config(1, gauss(10, 2), dtype, &device)
        .unwrap()
        .with_subsample(3)
        .unwrap();
    let c = f.config;
    let (_, trace) = simulate(&mut ctx, &f).unwrap();
    let (b, z) = (minibatch(&trace), host_f64(&trace.value("z").unwrap()).unwrap());
    let mut want: f64 = z.iter().map(|z| log_normal(*z, c.prior_loc, c.prior_scale)).sum();
    for i in &b {
        for j in 0..2 {
            want += scale * log_normal(f.x_host[i * 2 + j], z[j], c.noise_scale);
        }
    }
    check(&trace, want, "global");

    let f = LocalGaussian::from_config(1, gauss(10, 2), dtype, &device)
        .unwrap()
        .with_subsample(3)
        .unwrap();
    let (_, trace) = simulate(&mut ctx, &f).unwrap();
    let (b, z) = (minibatch(&trace), host_f64(&trace.value("z").unwrap()).unwrap());
    assert_eq!(z.len(), 6, "only the minibatch's latents are sampled");
    let mut want = 0.0;
    for (r, i) in b.iter().enumerate() {
        for j in 0..2 {
            let zz = z[r * 2 + j];
            want += scale * log_normal(zz, c.prior_loc, c.prior_scale);
            want += scale * log_normal(f.x_host[i * 2 + j], zz, c.noise_scale);
        }
    }
    check(&trace, want, "local");

    let f = LinearRegression::new(1, 10, 2, dtype, &device).unwrap().with_subsample(3).unwrap();
    let (_, trace) = simulate(&mut ctx, &f).unwrap();
    let (b, w) = (minibatch(&trace), host_f64(&trace.value("w").unwrap()).unwrap());
    let (a, be) = (f.config.alpha, f.config.beta);
    let mut want: f64 = w.iter().map(|w| log_normal(*w, 0.0, a.powf(-0.5))).sum();
    for i in &b {
        let mean = f.x_host[i * 2] * w[0] + f.x_host[i * 2 + 1] * w[1];
        want += scale * log_normal(f.y_host[*i], mean, be.powf(-0.5));
    }
    check(&trace, want, "linreg");

    let f = GaussianMixture::new(1, 10, dtype, &device).unwrap().with_subsample(3).unwrap();
    let (_, trace) = simulate(&mut ctx, &f).unwrap();
    let (b, cs) = (minibatch(&trace), host_f64(&trace.value("c").unwrap()).unwrap());
    let mc = &f.config;
    let mut want = 0.0;
    for (r, i) in b.iter().enumerate() {
        let k = cs[r] as usize;
        want += scale * (mc.weights[k].ln() + log_normal(f.x_host[*i], mc.means[k], mc.scales[k]));
    }
    check(&trace, want, "mixture");
});

// ---------------------------------------------------------------------------------------
// 5. Data generation and configuration errors.

#[test]
fn data_are_reproducible_and_the_same_in_both_dtypes() {
    let cpu = Device::Cpu;
    let a = ConjugateGaussian::new(3, 10, DType::F64, &cpu).unwrap();
    let b = ConjugateGaussian::new(3, 10, DType::F64, &cpu).unwrap();
    let c = ConjugateGaussian::new(4, 10, DType::F64, &cpu).unwrap();
    let h = ConjugateGaussian::new(3, 10, DType::F32, &cpu).unwrap();
    assert_eq!(a.x_host, b.x_host);
    assert_ne!(a.x_host, c.x_host);
    // f32 data are the f64 data rounded, and the exact answers follow the rounded data.
    for (x64, x32) in a.x_host.iter().zip(&h.x_host) {
        assert_eq!(*x64 as f32 as f64, *x32);
    }
    assert!((a.exact_log_evidence() - h.exact_log_evidence()).abs() < 1e-5);
    let m = GaussianMixture::new(3, 200, DType::F64, &cpu).unwrap();
    let counts: Vec<usize> = (0..3)
        .map(|k| m.c_true.iter().filter(|c| **c == k).count())
        .collect();
    // Binomial(200, π_k) counts: within 4 sd of 60, 100, 40.
    for (k, (n, p)) in counts.iter().zip([0.3f64, 0.5, 0.2]).enumerate() {
        let sd: f64 = (200.0 * p * (1.0 - p)).sqrt();
        assert!(
            (*n as f64 - 200.0 * p).abs() < 4.0 * sd,
            "component {k}: {n}"
        );
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let cpu = Device::Cpu;
    let is_config = |e: PplError| matches!(e, PplError::InvalidConfig { .. });
    assert!(is_config(
        ConjugateGaussian::new(0, 0, DType::F64, &cpu).unwrap_err()
    ));
    assert!(is_config(
        LocalGaussian::new(0, 4, DType::F64, &cpu)
            .unwrap()
            .with_subsample(5)
            .unwrap_err()
    ));
    assert!(is_config(
        LinearRegression::new(0, 4, 6, DType::F64, &cpu).unwrap_err()
    ));
    let cfg = common::MixtureConfig {
        means: vec![0.0],
        ..Default::default()
    };
    assert!(is_config(
        GaussianMixture::from_config(0, cfg, DType::F64, &cpu).unwrap_err()
    ));
}
