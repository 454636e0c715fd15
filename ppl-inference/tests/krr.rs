//! The KRR wake-sleep engine (amortised learning): kernel ridge weights against a direct
//! solve, the gradient identity, gradient accuracy against exact marginal likelihoods
//! (linear-Gaussian, a discrete mixture, a latent on the circle), the exponential-family
//! split, training with a recognition network, typed errors. All f64, fixed seeds.

use candle_core::{DType, Device, Tensor, Var, D};
use ppl_core::prelude::*;
use ppl_inference::engines::{
    KernelApprox, KernelRidge, KrrOptions, KrrWakeSleep, LearnedFeatures, Tuning,
};
use ppl_inference::guides::AutoAmortized;
use ppl_inference::{Adam, Engine, Trainer};

const DEV: Device = Device::Cpu;

fn mat(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Tensor {
    let v: Vec<f64> = (0..rows * cols).map(|k| f(k / cols, k % cols)).collect();
    Tensor::from_vec(v, (rows, cols), &DEV).unwrap()
}

fn host_normals(seed: u64, n: usize) -> Vec<f64> {
    PplRng::seed_from_u64(seed).normals(n)
}

/// Solves `a y = b` by Gauss–Jordan elimination with partial pivoting (test reference).
fn gauss_solve(mut a: Vec<Vec<f64>>, mut b: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = a.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in 0..n {
            if r != c {
                let f = a[r][c] / a[c][c];
                let (ac, bc) = (a[c].clone(), b[c].clone());
                for (x, y) in a[r].iter_mut().zip(&ac) {
                    *x -= f * y;
                }
                for (x, y) in b[r].iter_mut().zip(&bc) {
                    *x -= f * y;
                }
            }
        }
    }
    (0..n)
        .map(|r| b[r].iter().map(|v| v / a[r][r]).collect())
        .collect()
}

fn kernel(a: &[Vec<f64>], b: &[Vec<f64>], bw: f64) -> Vec<Vec<f64>> {
    a.iter()
        .map(|x| {
            b.iter()
                .map(|y| {
                    let d: f64 = x.iter().zip(y).map(|(u, v)| (u - v).powi(2)).sum();
                    (-d / (2.0 * bw * bw)).exp()
                })
                .collect()
        })
        .collect()
}

#[test]
fn krr_weights_match_a_direct_solve() {
    let g = host_normals(1, 30 * 2 + 7 * 2);
    let xs = mat(30, 2, |i, j| g[i * 2 + j]);
    let xq = mat(7, 2, |i, j| g[60 + i * 2 + j]);
    let (bw, lam) = (0.8, 0.1);
    let mut rng = PplRng::seed_from_u64(0);
    let ridge = KernelRidge::fit(&xs, bw, lam, &KernelApprox::Exact, &mut rng).unwrap();
    let a: Vec<Vec<f64>> = ridge.weights(&xq).unwrap().to_vec2().unwrap();
    let xs_v: Vec<Vec<f64>> = xs.to_vec2().unwrap();
    let xq_v: Vec<Vec<f64>> = xq.to_vec2().unwrap();
    let mut k = kernel(&xs_v, &xs_v, bw);
    for (i, row) in k.iter_mut().enumerate() {
        row[i] += lam;
    }
    let direct = gauss_solve(k, kernel(&xs_v, &xq_v, bw));
    // Two f64 solves of a system with condition number < 1e3: agreement to 1e-10.
    for (r, d) in a.iter().zip(&direct) {
        for (u, v) in r.iter().zip(d) {
            assert!((u - v).abs() < 1e-10, "{u} vs {v}");
        }
    }
    // Nyström with every point a landmark is the exact regression:
    // K (KᵀK + λK)⁻¹ K_q = (K + λI)⁻¹ K_q (up to the conditioning of K, 1e-6).
    let ny = KernelRidge::fit(
        &xs,
        bw,
        lam,
        &KernelApprox::Nystrom { landmarks: 30 },
        &mut rng,
    )
    .unwrap();
    let an: Vec<Vec<f64>> = ny.weights(&xq).unwrap().to_vec2().unwrap();
    for (r, d) in an.iter().zip(&direct) {
        for (u, v) in r.iter().zip(d) {
            assert!((u - v).abs() < 1e-6, "Nyström {u} vs {v}");
        }
    }
    // Random Fourier features approximate the kernel with error O(1/√F): predictions of a
    // smooth target agree to 0.1 with F = 3000.
    let y = mat(30, 1, |i, _| xs_v[i][0].sin() + xs_v[i][1]);
    let exact: Vec<Vec<f64>> = ridge.predict(&xq, &y).unwrap().to_vec2().unwrap();
    let rff = KernelRidge::fit(
        &xs,
        bw,
        lam,
        &KernelApprox::RandomFourier { features: 3000 },
        &mut rng,
    )
    .unwrap();
    let approx: Vec<Vec<f64>> = rff.predict(&xq, &y).unwrap().to_vec2().unwrap();
    for (u, v) in exact.iter().zip(&approx) {
        assert!((u[0] - v[0]).abs() < 0.1, "RFF {} vs {}", v[0], u[0]);
    }
}

/// Factor analysis `z ~ N(0, I₂)`, `x = W z + b + 0.5 ε` in R³, learnable `W`, `b`.
fn fa(ctx: &mut Ctx, data: &Tensor, w0: &Tensor, b0: &Tensor) -> Result<()> {
    let x = ctx.input("x", data)?;
    let w = ctx.param("w", || Ok(w0.clone()), Constraint::Real)?;
    let b = ctx.param("b", || Ok(b0.clone()), Constraint::Real)?;
    let n = x.dim(0)?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        let z = ctx.sample(
            "z",
            Normal::standard(&[n, 2], DType::F64, &DEV)?.to_event(1)?,
        )?;
        let loc = z.matmul(&w.t()?)?.broadcast_add(&b)?;
        let scale = (loc.ones_like()? * 0.5)?;
        ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
        Ok(())
    })
}

fn fa_truth() -> (Tensor, Tensor) {
    let w = Tensor::new(&[[1.0f64, 0.0], [0.5, 1.0], [-0.8, 0.6]], &DEV).unwrap();
    let b = Tensor::new(&[0.5f64, -1.0, 0.2], &DEV).unwrap();
    (w, b)
}

fn fa_data(n: usize, seed: u64) -> Tensor {
    let (w, b) = fa_truth();
    let g = host_normals(seed, n * 5);
    let z = mat(n, 2, |i, j| g[i * 5 + j]);
    let e = mat(n, 3, |i, j| g[i * 5 + 2 + j]);
    (z.matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&b)
        .unwrap()
        + (e * 0.5).unwrap())
    .unwrap()
}

/// Exact mean log-likelihood of the factor-analysis data, `x ~ N(b, W Wᵀ + 0.25 I)`.
fn fa_exact(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let n = x.dim(0).unwrap() as f64;
    let c = (w.matmul(&w.t().unwrap()).unwrap()
        + (Tensor::eye(3, DType::F64, &DEV).unwrap() * 0.25).unwrap())
    .unwrap();
    let l = ppl_core::linalg::cholesky(&c).unwrap();
    let r = x
        .broadcast_sub(b)
        .unwrap()
        .t()
        .unwrap()
        .contiguous()
        .unwrap();
    let y = ppl_core::linalg::solve_lower_triangular(&l, &r).unwrap();
    let logdet = ppl_core::linalg::diagonal(&l)
        .unwrap()
        .log()
        .unwrap()
        .sum_all()
        .unwrap();
    let quad = (y.sqr().unwrap().sum_all().unwrap() * (-0.5 / n)).unwrap();
    let c0 = -1.5 * (2.0 * std::f64::consts::PI).ln();
    (quad - logdet).unwrap().affine(1.0, c0).unwrap()
}

fn grads_of(loss: &Tensor, vars: &[Var]) -> Vec<f64> {
    let g = loss.backward().unwrap();
    let mut out = Vec::new();
    for v in vars {
        let t = g
            .get(v.as_tensor())
            .cloned()
            .unwrap_or(v.as_tensor().zeros_like().unwrap());
        out.extend(t.flatten_all().unwrap().to_vec1::<f64>().unwrap());
    }
    out
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(u, v)| u * v).sum();
    let na: f64 = a.iter().map(|u| u * u).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|u| u * u).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn vars(ctx: &Ctx, names: &[&str]) -> Vec<Var> {
    names
        .iter()
        .map(|n| ctx.params().unconstrained(n).unwrap())
        .collect()
}

/// Perturbed parameters at which gradients are compared (away from the optimum, so the
/// exact gradient is not small).
fn fa_start() -> (Tensor, Tensor) {
    let (w, b) = fa_truth();
    ((w * 0.6).unwrap(), (b + 0.7).unwrap())
}

/// Cosine similarity between the KRR gradient and the exact gradient of the mean
/// log-likelihood for factor analysis at `fa_start`, with `n_sleep` sleep samples.
fn fa_cosine(n_sleep: usize, seed: u64, split: bool) -> f64 {
    let (g_krr, g_exact) = fa_gradients(n_sleep, seed, split);
    cosine(&g_krr, &g_exact)
}

#[test]
fn gradient_cosine_improves_with_sleep_samples() {
    // Mean over 3 seeds; the estimator is consistent, so more sleep samples must be closer.
    let mean = |n: usize, split: bool| (0..3).map(|s| fa_cosine(n, s, split)).sum::<f64>() / 3.0;
    let (small, large) = (mean(100, true), mean(1000, true));
    assert!(large > small, "N=1000: {large}, N=100: {small}");
    assert!(large > 0.95, "N=1000 cosine {large}");
    let plain = mean(1000, false);
    assert!(plain > 0.8, "plain regression, N=1000: {plain}");
    eprintln!("cosine split N=100 {small:.4} N=1000 {large:.4}; plain N=1000 {plain:.4}");
}

#[test]
fn krr_gradient_is_the_regression_of_per_sample_gradients() {
    // ∇θ loss = −Σ_n w_n ∇θ l_θ[n] with w = mean_m A[:, m]: one backward pass through the
    // weighted sum equals the regression applied to N per-sample backward passes
    // (linear algebra only: 1e-10 relative in f64).
    let data = fa_data(40, 3);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let mut ctx = Ctx::new(11).with_dtype(DType::F64);
    let opts = KrrOptions::default()
        .sleep_samples(30)
        .exp_family_split(false)
        .tuning(None)
        .lambda(0.05);
    let mut e = KrrWakeSleep::new(&model, "data", opts);
    e.init(&mut ctx).unwrap();
    let vs = vars(&ctx, &["w", "b"]);
    let est = e.estimate(&mut ctx).unwrap();
    assert!(!est.split);
    let g = grads_of(&est.loss, &vs);
    let w: Vec<f64> = est.weights.to_vec1().unwrap();
    let mut manual = vec![0.0; g.len()];
    for (n, wn) in w.iter().enumerate() {
        let gn = grads_of(&est.log_joint.get(n).unwrap(), &vs);
        for (m, v) in manual.iter_mut().zip(gn) {
            *m -= wn * v;
        }
    }
    let scale = g.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (u, v) in g.iter().zip(&manual) {
        assert!((u - v).abs() < 1e-10 * scale, "{u} vs {v}");
    }
}

#[test]
fn exponential_family_split_coincides_with_plain_regression_when_interpolating() {
    // Make the wake points equal to the sleep points: draw the sleep set once, then use
    // its x as the data and replay the same random stream. With λ → 0 the regression
    // interpolates (A → I at the sleep points), so both estimators give mean_n l_θ[n]
    // and its gradient: agreement to 1e-4 relative (the interpolation error at λ = 1e-10).
    let (w0, b0) = fa_start();
    let n = 60;
    let placeholder = fa_data(n, 5);
    let model0 = |ctx: &mut Ctx| fa(ctx, &placeholder, &w0, &b0);
    let mut ctx = Ctx::new(4).with_dtype(DType::F64);
    let opts = |split: bool| {
        KrrOptions::default()
            .sleep_samples(n)
            .exp_family_split(split)
            .tuning(None)
            .lambda(1e-10)
            .bandwidth_multiplier(0.3)
    };
    let saved = ctx.base_rng().clone();
    let sleep = KrrWakeSleep::new(&model0, "data", opts(false))
        .sleep(&mut ctx, n)
        .unwrap();
    let xs = sleep.value("obs").unwrap();
    let model = |ctx: &mut Ctx| fa(ctx, &xs, &w0, &b0);
    let vs = vars(&ctx, &["w", "b"]);
    let mut run = |split: bool| {
        *ctx.base_rng() = saved.clone();
        let mut e = KrrWakeSleep::new(&model, "data", opts(split));
        e.init(&mut ctx).unwrap();
        let est = e.estimate(&mut ctx).unwrap();
        assert_eq!(est.split, split);
        let x_sleep: Vec<Vec<f64>> = est.sleep.value("obs").unwrap().to_vec2().unwrap();
        assert_eq!(x_sleep, xs.to_vec2::<f64>().unwrap(), "same sleep draw");
        let mean_l = est
            .log_joint
            .mean_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        (est.value, mean_l, grads_of(&est.loss, &vs))
    };
    let (v_plain, l_plain, g_plain) = run(false);
    let (v_split, l_split, g_split) = run(true);
    assert!((l_plain - l_split).abs() < 1e-12);
    assert!(
        (v_plain + l_plain).abs() < 1e-4 * l_plain.abs(),
        "{v_plain} vs {l_plain}"
    );
    assert!(
        (v_split + l_split).abs() < 1e-4 * l_split.abs(),
        "{v_split} vs {l_split}"
    );
    let scale = g_plain.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (u, v) in g_plain.iter().zip(&g_split) {
        assert!((u - v).abs() < 1e-4 * scale, "{u} vs {v}");
    }
}

/// The cosine between the KRR gradient (1000 sleep samples, default options) and the
/// exact gradient of `exact(vars)` (the mean log-likelihood of the data).
fn cosine_for<M: Model>(
    model: &M,
    seed: u64,
    names: &[&str],
    exact: impl Fn(&[Var]) -> Tensor,
) -> f64 {
    let mut ctx = Ctx::new(seed).with_dtype(DType::F64);
    let mut e = KrrWakeSleep::new(model, "data", KrrOptions::default().sleep_samples(1000));
    e.init(&mut ctx).unwrap();
    let vs = vars(&ctx, names);
    let est = e.estimate(&mut ctx).unwrap();
    let g_krr: Vec<f64> = grads_of(&est.loss, &vs).iter().map(|g| -g).collect();
    cosine(&g_krr, &grads_of(&exact(&vs), &vs))
}

fn log_normal(x: &Tensor, loc: &Tensor, scale: f64) -> Tensor {
    let z = (x.broadcast_sub(loc).unwrap() / scale).unwrap();
    z.sqr()
        .unwrap()
        .affine(-0.5, -0.5 * (2.0 * std::f64::consts::PI).ln() - scale.ln())
        .unwrap()
}

fn logsumexp_last(t: &Tensor) -> Tensor {
    let m = t.max_keepdim(D::Minus1).unwrap().detach();
    let s = t
        .broadcast_sub(&m)
        .unwrap()
        .exp()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap();
    (s.log().unwrap() + m).unwrap().squeeze(D::Minus1).unwrap()
}

#[test]
fn discrete_latent_mixture_gradient_matches_the_exact_one() {
    // z ~ Categorical(1/4 each), x ~ N(μ_z, 0.5²): a discrete latent, no reparameterisation.
    // The exact marginal is a logsumexp over the 4 components. Tolerance: cosine > 0.9 with
    // N = 1000 (observed ~0.99 over seeds; a wrong sign or a wrong parameter gives < 0.5).
    let truth = [-3.0, -1.0, 1.0, 3.0];
    let g = host_normals(21, 200);
    let mut u = PplRng::seed_from_u64(22);
    let data = Tensor::new(
        (0..200)
            .map(|i| truth[(u.uniform_open() * 4.0) as usize % 4] + 0.5 * g[i])
            .collect::<Vec<f64>>(),
        &DEV,
    )
    .unwrap();
    let mu0 = Tensor::new(&[-2.0f64, -1.5, 0.5, 2.0], &DEV).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let x = ctx.input("x", &data)?;
        let mu = ctx.param("mu", || Ok(mu0.clone()), Constraint::Real)?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let probs = Tensor::full(0.25f64, (n, 4), &DEV)?;
            let z = ctx.sample("z", Categorical::from_probs(&probs)?)?;
            let loc = mu.index_select(&z.to_dtype(DType::U32)?, 0)?;
            ctx.observe(
                "obs",
                Normal::new(&loc, &loc.ones_like()?.affine(0.5, 0.0)?)?,
                &x,
            )?;
            Ok(())
        })
    };
    let exact = |vs: &[Var]| {
        let lp = log_normal(
            &data.unsqueeze(1).unwrap(),
            &vs[0].as_tensor().unsqueeze(0).unwrap(),
            0.5,
        );
        logsumexp_last(&lp).mean_all().unwrap()
    };
    for seed in 0..2 {
        let c = cosine_for(&model, seed, &["mu"], exact);
        eprintln!("mixture seed {seed}: cosine {c:.4}");
        assert!(c > 0.9, "seed {seed}: cosine {c}");
    }
}

#[test]
fn latent_on_the_circle_gradient_matches_the_exact_one() {
    // z ~ VonMises(0, 0) (uniform on the circle), x = r (cos z, sin z) + c + 0.3 ε. The
    // exact marginal by the trapezoid rule with 512 nodes (spectrally accurate for a smooth
    // periodic integrand). Tolerance: cosine > 0.9 with N = 1000.
    let (r_true, c_true) = (2.0, [0.5, -0.5]);
    let g = host_normals(31, 300 * 3);
    let data = mat(300, 2, |i, j| {
        let z = g[i * 3] * 2.0;
        let base = if j == 0 { z.cos() } else { z.sin() };
        r_true * base + c_true[j] + 0.3 * g[i * 3 + 1 + j]
    });
    let model = |ctx: &mut Ctx| -> Result<()> {
        let x = ctx.input("x", &data)?;
        let r = ctx.param("r", || Ok(Tensor::new(1.4f64, &DEV)?), Constraint::Real)?;
        let c = ctx.param(
            "c",
            || Ok(Tensor::new(&[0.0f64, 0.3], &DEV)?),
            Constraint::Real,
        )?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let zeros = Tensor::zeros(n, DType::F64, &DEV)?;
            let z = ctx.sample("z", VonMises::new(&zeros, &zeros)?)?;
            let circle = Tensor::stack(&[z.cos()?, z.sin()?], 1)?;
            let loc = circle.broadcast_mul(&r)?.broadcast_add(&c)?;
            let scale = loc.ones_like()?.affine(0.3, 0.0)?;
            ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
            Ok(())
        })
    };
    let exact = |vs: &[Var]| {
        let q = 512;
        let th: Vec<f64> = (0..q)
            .map(|i| std::f64::consts::TAU * i as f64 / q as f64)
            .collect();
        let cs = Tensor::new(th.iter().map(|t| t.cos()).collect::<Vec<_>>(), &DEV).unwrap();
        let sn = Tensor::new(th.iter().map(|t| t.sin()).collect::<Vec<_>>(), &DEV).unwrap();
        let (r, c) = (vs[0].as_tensor(), vs[1].as_tensor());
        let c0 = c.get(0).unwrap();
        let c1 = c.get(1).unwrap();
        let lx = cs.broadcast_mul(r).unwrap().broadcast_add(&c0).unwrap();
        let ly = sn.broadcast_mul(r).unwrap().broadcast_add(&c1).unwrap();
        let x0 = data.narrow(1, 0, 1).unwrap();
        let x1 = data.narrow(1, 1, 1).unwrap();
        let lp = (log_normal(&x0, &lx.unsqueeze(0).unwrap(), 0.3)
            + log_normal(&x1, &ly.unsqueeze(0).unwrap(), 0.3))
        .unwrap();
        logsumexp_last(&lp)
            .mean_all()
            .unwrap()
            .affine(1.0, -(q as f64).ln())
            .unwrap()
    };
    for seed in 0..2 {
        let c = cosine_for(&model, seed, &["r", "c"], exact);
        eprintln!("circle seed {seed}: cosine {c:.4}");
        assert!(c > 0.9, "seed {seed}: cosine {c}");
    }
}

#[test]
fn training_learns_factor_analysis_and_a_recognition_network() {
    // From fa_start, 150 Adam steps of the KRR engine raise the exact mean log-likelihood
    // to within 0.1 nats of its value at the data-generating parameters (the MLE on 200
    // points is at most a few hundredths above it), while the recognition network's sleep
    // loss −mean log q(z | x) falls. The engine replaces SVI in one line.
    let data = fa_data(200, 7);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let mut ctx = Ctx::new(3).with_dtype(DType::F64);
    let guide = AutoAmortized::new(&mut ctx, &model, "data", &[16]).unwrap();
    let mut engine = KrrWakeSleep::new(&model, "data", KrrOptions::default().sleep_samples(300))
        .with_amortized_guide(&guide);
    let mut trainer = Trainer::new(Adam::new(), 0.05).unwrap();
    let vs = vars(&ctx, &["w", "b"]);
    let ll = |vs: &[Var]| -> f64 {
        fa_exact(&data, vs[0].as_tensor(), vs[1].as_tensor())
            .to_scalar()
            .unwrap()
    };
    let start = ll(&vs);
    let report = trainer.run(&mut ctx, &mut engine, 150).unwrap();
    let end = ll(&vs);
    let (w, b) = fa_truth();
    let at_truth: f64 = fa_exact(&data, &w, &b).to_scalar().unwrap();
    assert!(
        end > at_truth - 0.1,
        "start {start}, end {end}, truth {at_truth}"
    );
    let sl = &report.metrics["sleep_loss"];
    let first: f64 = sl[..20].iter().sum::<f64>() / 20.0;
    let last: f64 = sl[sl.len() - 20..].iter().sum::<f64>() / 20.0;
    assert!(last < first - 0.1, "sleep loss {first} → {last}");
    for m in ["bandwidth", "lambda", "val_err"] {
        assert!(report.metrics[m].iter().all(|v| v.is_finite()), "{m}");
    }
    // the tuned kernel parameters are the engine's checkpointed state
    let state = engine.state().unwrap();
    assert_eq!(state.len(), 3);
    let mut other = KrrWakeSleep::new(&model, "data", KrrOptions::default());
    other.load_state(state.into_iter().collect()).unwrap();
    assert_eq!(other.kernel_params(), engine.kernel_params());
}

fn err_of<M: Model>(model: &M, opts: KrrOptions) -> String {
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let mut e = KrrWakeSleep::new(model, "data", opts);
    match e
        .init(&mut ctx)
        .and_then(|_| e.estimate(&mut ctx).map(|_| ()))
    {
        Ok(()) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_are_typed_and_name_the_problem() {
    let data = fa_data(20, 1);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let base = || KrrOptions::default().sleep_samples(50).tuning(None);
    let e = err_of(&model, base().sleep_samples(1));
    assert!(e.contains("sleep_samples"), "{e}");
    let e = err_of(&model, base().lambda(0.0));
    assert!(e.contains("lambda"), "{e}");
    let e = err_of(
        &model,
        base().approx(KernelApprox::Nystrom { landmarks: 51 }),
    );
    assert!(e.contains("landmarks"), "{e}");
    let e = err_of(
        &model,
        base().approx(KernelApprox::RandomFourier { features: 0 }),
    );
    assert!(e.contains("features"), "{e}");
    let bad_tuning = Tuning {
        lambdas: vec![],
        ..Tuning::default()
    };
    let e = err_of(&model, base().tuning(Some(bad_tuning)));
    assert!(e.contains("tuning"), "{e}");
    // a non-finite kernel input
    let e = err_of(&model, base().features(|x| Ok((x * f64::NAN)?)));
    assert!(e.contains("non-finite"), "{e}");
    // a wrong plate name
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let err = KrrWakeSleep::new(&model, "points", base())
        .init(&mut ctx)
        .unwrap_err();
    assert!(err.to_string().contains("no plate named `points`"), "{err}");
    // data not read through an input site: the plate cannot be re-sized
    let no_input = |ctx: &mut Ctx| -> Result<()> {
        ctx.plate("data", 20, PlateOpts::default(), |ctx, _| {
            let z = ctx.sample("z", Normal::standard(&[20], DType::F64, &DEV)?)?;
            ctx.observe(
                "obs",
                Normal::new(&z, &z.ones_like()?)?,
                &data.narrow(1, 0, 1)?.squeeze(1)?,
            )?;
            Ok(())
        })
    };
    let e = err_of(&no_input, base());
    assert!(e.contains("input"), "{e}");
    // a global latent
    let global = |ctx: &mut Ctx| -> Result<()> {
        let x = ctx.input("x", &data.narrow(1, 0, 1)?.squeeze(1)?)?;
        let m = ctx.sample("m", Normal::standard(&[], DType::F64, &DEV)?)?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            ctx.observe(
                "obs",
                Normal::new(&m.broadcast_as(n)?, &x.ones_like()?)?,
                &x,
            )?;
            Ok(())
        })
    };
    let e = err_of(&global, base());
    assert!(
        e.contains("`m`") && e.contains("outside the data plate"),
        "{e}"
    );
    // kernel ridge regression itself
    let mut rng = PplRng::seed_from_u64(0);
    let one = mat(1, 2, |_, _| 0.0);
    let e = KernelRidge::fit(&one, 1.0, 0.1, &KernelApprox::Exact, &mut rng).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
    let two = mat(2, 2, |i, _| i as f64);
    let e = KernelRidge::fit(&two, -1.0, 0.1, &KernelApprox::Exact, &mut rng).unwrap_err();
    assert!(e.to_string().contains("bandwidth"), "{e}");
}

/// Timing of one KRR step for N = 500 … 4000 on factor analysis (200 wake points, d = 3,
/// no tuning): `cargo test --release -p ppl-inference --test krr -- --ignored --nocapture`.
#[test]
#[ignore]
fn krr_step_timing() {
    use std::time::Instant;
    let data = fa_data(200, 7);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    for approx in [
        KernelApprox::Exact,
        KernelApprox::RandomFourier { features: 300 },
        KernelApprox::Nystrom { landmarks: 300 },
    ] {
        for n in [500, 1000, 2000, 4000] {
            let mut ctx = Ctx::new(0).with_dtype(DType::F64);
            let opts = KrrOptions::default()
                .sleep_samples(n)
                .tuning(None)
                .approx(approx);
            let mut e = KrrWakeSleep::new(&model, "data", opts);
            e.init(&mut ctx).unwrap();
            let mut rng = PplRng::seed_from_u64(0);
            let xs = e.sleep(&mut ctx, n).unwrap().value("obs").unwrap();
            let reps = 3;
            let t = Instant::now();
            for _ in 0..reps {
                let r = KernelRidge::fit(&xs, 2.0, 1e-3, &approx, &mut rng).unwrap();
                let b = Tensor::ones((200, 1), DType::F64, &DEV).unwrap();
                r.weights_times(&data, &b).unwrap();
            }
            let krr = t.elapsed().as_secs_f64() / reps as f64;
            let t = Instant::now();
            let mut back = 0.0;
            for _ in 0..reps {
                let est = e.estimate(&mut ctx).unwrap();
                let tb = Instant::now();
                est.loss.backward().unwrap();
                back += tb.elapsed().as_secs_f64();
            }
            let total = t.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "{approx:?} N={n}: step {:.1} ms (kernel build + solve {:.1} ms, backward {:.2} ms)",
                total * 1e3,
                krr * 1e3,
                back / reps as f64 * 1e3
            );
        }
    }
}

#[test]
fn scalable_kernels_and_wake_minibatches_estimate_the_gradient() {
    // Random Fourier features (300) and Nyström (200 landmarks) with a wake minibatch of
    // 50 of the 200 points, 1000 sleep samples: the gradient still points the right way
    // (cosine > 0.8 against the exact full-data gradient; the minibatch adds its own
    // noise, hence the looser bound than the exact kernel's 0.95).
    let data = fa_data(200, 7);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    for approx in [
        KernelApprox::RandomFourier { features: 300 },
        KernelApprox::Nystrom { landmarks: 200 },
    ] {
        let mut ctx = Ctx::new(9).with_dtype(DType::F64);
        let opts = KrrOptions::default()
            .sleep_samples(1000)
            .wake_batch(50)
            .approx(approx);
        let mut e = KrrWakeSleep::new(&model, "data", opts);
        e.init(&mut ctx).unwrap();
        let vs = vars(&ctx, &["w", "b"]);
        let est = e.estimate(&mut ctx).unwrap();
        let g: Vec<f64> = grads_of(&est.loss, &vs).iter().map(|g| -g).collect();
        let exact = grads_of(&fa_exact(&data, vs[0].as_tensor(), vs[1].as_tensor()), &vs);
        let c = cosine(&g, &exact);
        eprintln!("{approx:?}, wake batch 50: cosine {c:.4}");
        assert!(c > 0.8, "{approx:?}: cosine {c}");
    }
}

#[test]
fn works_in_f32() {
    // The host regression is f64 whatever the model's dtype; weights come back in the
    // model's dtype. z ~ N(0, 1), x ~ N(z + μ, 0.5²) in f32: μ moves towards the data mean.
    let data = Tensor::new(&[2.3f32, 1.2, 2.8, 3.0, 2.1, 1.6, 2.5, 1.9], &DEV).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let x = ctx.input("x", &data)?;
        let mu = ctx.param("mu", || Ok(Tensor::new(0f32, &DEV)?), Constraint::Real)?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let z = ctx.sample("z", Normal::standard(&[n], DType::F32, &DEV)?)?;
            let loc = z.broadcast_add(&mu)?;
            ctx.observe(
                "obs",
                Normal::new(&loc, &loc.ones_like()?.affine(0.5, 0.0)?)?,
                &x,
            )?;
            Ok(())
        })
    };
    let mut ctx = Ctx::new(2);
    let mut engine = KrrWakeSleep::new(&model, "data", KrrOptions::default().sleep_samples(300));
    let mut trainer = Trainer::new(Adam::new(), 0.1).unwrap();
    let report = trainer.run(&mut ctx, &mut engine, 30).unwrap();
    assert!(report.losses.iter().all(|l| l.is_finite()));
    let mu: f32 = ctx.params().get("mu").unwrap().to_scalar().unwrap();
    // 30 Adam steps of 0.1 from 0 towards the mean 2.18: at least 1.5 (the gradient's
    // sign is all that Adam's early steps need).
    assert!(mu > 1.5, "μ = {mu}");
}

// ---------------------------------------------------------------------------------------
// The exponential-family split in expectation.

/// KRR gradient (negated loss gradient, i.e. of the mean log-likelihood) and exact
/// gradient for factor analysis at `fa_start`, `n_sleep` sleep samples, seed `seed`.
fn fa_gradients(n_sleep: usize, seed: u64, split: bool) -> (Vec<f64>, Vec<f64>) {
    let data = fa_data(200, 7);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let mut ctx = Ctx::new(seed).with_dtype(DType::F64);
    let opts = KrrOptions::default()
        .sleep_samples(n_sleep)
        .exp_family_split(split);
    let mut e = KrrWakeSleep::new(&model, "data", opts);
    e.init(&mut ctx).unwrap();
    let vs = vars(&ctx, &["w", "b"]);
    let est = e.estimate(&mut ctx).unwrap();
    assert_eq!(est.split, split);
    let g_krr: Vec<f64> = grads_of(&est.loss, &vs).iter().map(|g| -g).collect();
    let g_exact = grads_of(&fa_exact(&data, vs[0].as_tensor(), vs[1].as_tensor()), &vs);
    (g_krr, g_exact)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|u| u * u).sum::<f64>().sqrt()
}

/// Over `r` paired seeds at `n` sleep samples (the same seed gives both estimators the
/// same sleep and validation samples): the relative distance of the split and plain mean
/// gradients to the exact one, the relative distance between the two means, the largest
/// |mean difference| / standard error over components, and the two total variances.
fn split_vs_plain(n: usize, r: usize) -> (f64, f64, f64, f64, f64, f64) {
    let runs: Vec<_> = (0..r as u64)
        .map(|s| {
            let (gs, exact) = fa_gradients(n, 100 + s, true);
            let (gp, _) = fa_gradients(n, 100 + s, false);
            (gs, gp, exact)
        })
        .collect();
    let exact = runs[0].2.clone();
    let dim = exact.len();
    let mean_of = |k: usize| -> Vec<f64> {
        (0..dim)
            .map(|j| runs.iter().map(|x| [&x.0, &x.1][k][j]).sum::<f64>() / r as f64)
            .collect()
    };
    let (m_split, m_plain) = (mean_of(0), mean_of(1));
    let var_of = |k: usize, m: &[f64]| -> f64 {
        runs.iter()
            .map(|x| {
                [&x.0, &x.1][k]
                    .iter()
                    .zip(m)
                    .map(|(u, v)| (u - v).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / (r - 1) as f64
    };
    let (var_split, var_plain) = (var_of(0, &m_split), var_of(1, &m_plain));
    let diffs: Vec<Vec<f64>> = runs
        .iter()
        .map(|x| x.0.iter().zip(&x.1).map(|(u, v)| u - v).collect())
        .collect();
    let d_mean: Vec<f64> = m_split.iter().zip(&m_plain).map(|(u, v)| u - v).collect();
    let z_max = (0..dim)
        .map(|j| {
            let v = diffs
                .iter()
                .map(|d| (d[j] - d_mean[j]).powi(2))
                .sum::<f64>()
                / (r - 1) as f64;
            d_mean[j].abs() / (v / r as f64).sqrt()
        })
        .fold(0.0, f64::max);
    let g = norm(&exact);
    let rel = |m: &[f64]| norm(&m.iter().zip(&exact).map(|(u, v)| u - v).collect::<Vec<_>>()) / g;
    (
        rel(&m_split),
        rel(&m_plain),
        norm(&d_mean) / g,
        z_max,
        var_split,
        var_plain,
    )
}

#[test]
fn exponential_family_split_equals_plain_regression_in_expectation() {
    // Both estimators regress the same conditional expectation (the split one regresses
    // η_θ(z) and r_θ(z) and plugs T(x) in exactly), so their expectations over sleep sets
    // differ only through the regressions' smoothing biases, which vanish as N grows: the
    // difference of the mean gradients must shrink from N = 250 to N = 1000, and at
    // N = 1000 both means must be near the exact gradient. The split one varies less.
    let r = 12;
    let small = split_vs_plain(250, r);
    let large = split_vs_plain(1000, r);
    for (n, s) in [(250, small), (1000, large)] {
        eprintln!(
            "N={n}: split vs exact {:.4}, plain vs exact {:.4}, split vs plain {:.4} \
             (max z {:.2}); var split {:.4e} plain {:.4e}",
            s.0, s.1, s.2, s.3, s.4, s.5
        );
    }
    // Measured: 0.175 at N = 250, 0.042 at N = 1000 (relative to |∇|).
    assert!(
        large.2 < 0.5 * small.2,
        "difference N=1000 {} vs N=250 {}",
        large.2,
        small.2
    );
    assert!(
        large.2 < 0.08,
        "split and plain means differ by {} at N=1000",
        large.2
    );
    assert!(large.0 < 0.1, "split mean vs exact {}", large.0);
    assert!(large.1 < 0.1, "plain mean vs exact {}", large.1);
    assert!(
        small.4 < small.5 && large.4 < large.5,
        "variances {small:?} {large:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The differentiable solve and learned kernel features.

#[test]
fn spd_solve_matches_a_direct_solve_and_finite_differences() {
    use ppl_inference::engines::spd_solve;
    // A = M Mᵀ + I (SPD), B random; loss = Σ X ⊙ W. Forward against Gaussian elimination
    // (1e-10), gradients in A and B against central differences of the f64 forward
    // (step 1e-6: truncation ~1e-12, rounding ~1e-10 relative).
    let n = 5;
    let g = host_normals(3, n * n + n * 2 + n * 2);
    let m = mat(n, n, |i, j| g[i * n + j]);
    let a =
        (m.matmul(&m.t().unwrap()).unwrap() + Tensor::eye(n, DType::F64, &DEV).unwrap()).unwrap();
    let b = mat(n, 2, |i, j| g[n * n + i * 2 + j]);
    let w = mat(n, 2, |i, j| g[n * n + 2 * n + i * 2 + j]);
    let x = spd_solve(&a, &b).unwrap();
    let direct = gauss_solve(a.to_vec2().unwrap(), b.to_vec2().unwrap());
    for (u, v) in x
        .to_vec2::<f64>()
        .unwrap()
        .iter()
        .flatten()
        .zip(direct.iter().flatten())
    {
        assert!((u - v).abs() < 1e-10, "{u} vs {v}");
    }
    let loss = |a: &Tensor, b: &Tensor| -> f64 {
        (spd_solve(a, b).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let (va, vb) = (Var::from_tensor(&a).unwrap(), Var::from_tensor(&b).unwrap());
    let l = (spd_solve(va.as_tensor(), vb.as_tensor()).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = l.backward().unwrap();
    let ga: Vec<Vec<f64>> = grads.get(va.as_tensor()).unwrap().to_vec2().unwrap();
    let gb: Vec<Vec<f64>> = grads.get(vb.as_tensor()).unwrap().to_vec2().unwrap();
    let h = 1e-6;
    let bump = |t: &Tensor, i: usize, j: usize, d: f64, sym: bool| -> Tensor {
        let (r, c) = t.dims2().unwrap();
        let e = mat(r, c, |p, q| {
            if (p, q) == (i, j) || (sym && (p, q) == (j, i)) {
                d
            } else {
                0.0
            }
        });
        (t + e).unwrap()
    };
    for i in 0..n {
        for (j, an) in gb[i].iter().enumerate() {
            let fd = (loss(&a, &bump(&b, i, j, h, false)) - loss(&a, &bump(&b, i, j, -h, false)))
                / (2.0 * h);
            assert!(
                (fd - an).abs() < 1e-6 * (1.0 + fd.abs()),
                "dB[{i},{j}] {fd} vs {an}"
            );
        }
        for j in 0..n {
            // A symmetric perturbation of the (i, j) and (j, i) entries moves the loss by
            // (G_ij + G_ji) h (by G_ii h on the diagonal).
            let fd = (loss(&bump(&a, i, j, h, true), &b) - loss(&bump(&a, i, j, -h, true), &b))
                / (2.0 * h);
            let an = if i == j {
                ga[i][i]
            } else {
                ga[i][j] + ga[j][i]
            };
            assert!(
                (fd - an).abs() < 1e-6 * (1.0 + fd.abs()),
                "dA[{i},{j}] {fd} vs {an}"
            );
            // The gradient is symmetric (A is read as (A + Aᵀ)/2).
            assert!((ga[i][j] - ga[j][i]).abs() < 1e-12);
        }
    }
    // f32 forward agrees with f64 to f32 precision
    let x32 = spd_solve(
        &a.to_dtype(DType::F32).unwrap(),
        &b.to_dtype(DType::F32).unwrap(),
    )
    .unwrap();
    assert_eq!(x32.dtype(), DType::F32);
    let x32: Vec<f64> = x32
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (u, v) in x32.iter().zip(direct.iter().flatten()) {
        assert!((u - v).abs() < 1e-4 * (1.0 + v.abs()), "{u} vs {v}");
    }
    // typed errors name the shapes
    let e = spd_solve(&a, &mat(n + 1, 2, |_, _| 0.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("spd_solve") && e.contains("[6, 2]"), "{e}");
    let e = spd_solve(&a, &b.to_dtype(DType::F32).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("F32"), "{e}");
}

/// `z ~ N(0, 1)`; `x ∈ R⁵`, `x₁ ~ N(w z, 0.3²)` and four nuisance coordinates
/// `x₂..₅ ~ N(0, 3²)` independent of `z`. Learnable `w`; exact marginal
/// `x₁ ~ N(0, w² + 0.09)`.
fn nuisance(ctx: &mut Ctx, data: &Tensor, w0: f64) -> Result<()> {
    let x = ctx.input("x", data)?;
    let w = ctx.param("w", || Ok(Tensor::new(w0, &DEV)?), Constraint::Real)?;
    let n = x.dim(0)?;
    let dtype = x.dtype();
    let pick = Tensor::new(&[1.0f64, 0.0, 0.0, 0.0, 0.0], &DEV)?.to_dtype(dtype)?;
    let scale = Tensor::new(&[0.3f64, 3.0, 3.0, 3.0, 3.0], &DEV)?.to_dtype(dtype)?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        let z = ctx.sample("z", Normal::standard(&[n], dtype, &DEV)?)?;
        let loc = z
            .unsqueeze(1)?
            .broadcast_mul(&pick.broadcast_mul(&w.to_dtype(dtype)?)?)?;
        let scale = scale.broadcast_as((n, 5))?.contiguous()?;
        ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
        Ok(())
    })
}

fn nuisance_data(n: usize, w: f64, seed: u64) -> Tensor {
    let g = host_normals(seed, n * 6);
    mat(n, 5, |i, j| {
        if j == 0 {
            w * g[i * 6] + 0.3 * g[i * 6 + 1]
        } else {
            3.0 * g[i * 6 + 1 + j]
        }
    })
}

/// The validation error after one tuned step and the relative error of the KRR gradient
/// of the mean log-likelihood in `w` (against `d/dw mean log N(x₁; 0, w² + 0.09)`).
fn nuisance_errors(features: Option<LearnedFeatures>, seed: u64) -> (f64, f64) {
    let data = nuisance_data(300, 1.0, 9);
    let w0 = 0.5;
    let model = |ctx: &mut Ctx| nuisance(ctx, &data, w0);
    let mut ctx = Ctx::new(seed).with_dtype(DType::F64);
    let mut opts = KrrOptions::default()
        .sleep_samples(400)
        .tuning(Some(Tuning {
            validation: 400,
            max_train: 400,
            ..Tuning::default()
        }));
    if let Some(l) = features {
        opts = opts.learned_features(l);
    }
    let mut e = KrrWakeSleep::new(&model, "data", opts);
    e.init(&mut ctx).unwrap();
    let vs = vars(&ctx, &["w"]);
    let est = e.estimate(&mut ctx).unwrap();
    let g = -grads_of(&est.loss, &vs)[0];
    let x1: Vec<f64> = data
        .narrow(1, 0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let s2 = w0 * w0 + 0.09;
    let m2 = x1.iter().map(|x| x * x).sum::<f64>() / x1.len() as f64;
    let exact = w0 * (m2 / (s2 * s2) - 1.0 / s2);
    (
        est.metrics.get("val_err").unwrap(),
        (g - exact).abs() / exact.abs(),
    )
}

#[test]
fn learned_features_ignore_nuisance_coordinates() {
    // With four nuisance coordinates of scale 3 the median-heuristic Gaussian kernel on the
    // raw x barely sees x₁, the only coordinate that carries information about z; features
    // learned through the solve down-weight the nuisance and predict the targets better.
    let learned = LearnedFeatures {
        steps: 150,
        lr: 0.02,
        ..LearnedFeatures::default()
    };
    let mut raw = (0.0, 0.0);
    let mut fit = (0.0, 0.0);
    for s in 0..2 {
        let r = nuisance_errors(None, s);
        let l = nuisance_errors(Some(learned.clone()), s);
        eprintln!(
            "seed {s}: raw val_err {:.4} grad err {:.4}; learned {:.4} {:.4}",
            r.0, r.1, l.0, l.1
        );
        raw = (raw.0 + r.0 / 2.0, raw.1 + r.1 / 2.0);
        fit = (fit.0 + l.0 / 2.0, fit.1 + l.1 / 2.0);
    }
    assert!(
        fit.0 < 0.5 * raw.0,
        "validation error: learned {} raw {}",
        fit.0,
        raw.0
    );
    assert!(
        fit.1 < 0.7 * raw.1,
        "gradient error: learned {} raw {}",
        fit.1,
        raw.1
    );
}

#[test]
fn resuming_with_learned_features_is_bit_identical() {
    // 6 steps straight against 3 steps, a checkpoint (parameters, Adam, RNG, engine state
    // with the feature network's weights), and 3 more in a fresh context and engine.
    use ppl_inference::{load_checkpoint, save_checkpoint};
    let data = fa_data(60, 2);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let opts = || {
        KrrOptions::default()
            .sleep_samples(80)
            .tuning(Some(Tuning {
                every: 2,
                validation: 60,
                max_train: 80,
                ..Tuning::default()
            }))
            .learned_features(LearnedFeatures {
                hidden: vec![8],
                out: 3,
                steps: 5,
                lr: 0.01,
            })
    };
    let params = |ctx: &Ctx| -> Vec<f64> {
        ["w", "b"]
            .iter()
            .flat_map(|n| {
                ctx.params()
                    .get(n)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    };
    let mut a = Ctx::new(5).with_dtype(DType::F64);
    let mut ta = Trainer::new(Adam::new(), 0.05).unwrap();
    let mut ea = KrrWakeSleep::new(&model, "data", opts());
    let straight = ta.run(&mut a, &mut ea, 6).unwrap().losses;

    let dir = std::env::temp_dir().join(format!("ppl-krr-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("krr.ckpt");
    let mut b = Ctx::new(5).with_dtype(DType::F64);
    let mut tb = Trainer::new(Adam::new(), 0.05).unwrap();
    let mut eb = KrrWakeSleep::new(&model, "data", opts());
    let mut resumed = tb.run(&mut b, &mut eb, 3).unwrap().losses;
    let state = eb.state().unwrap();
    assert!(state.iter().any(|(k, _)| k.starts_with("krr/features/")));
    save_checkpoint(&path, &mut b, &tb, &eb).unwrap();

    let mut c = Ctx::new(77).with_dtype(DType::F64);
    let mut tc = Trainer::new(Adam::new(), 0.05).unwrap();
    let mut ec = KrrWakeSleep::new(&model, "data", opts());
    assert_eq!(load_checkpoint(&path, &mut c, &mut tc, &mut ec).unwrap(), 3);
    resumed.extend(tc.run(&mut c, &mut ec, 3).unwrap().losses);
    assert_eq!(straight, resumed, "loss sequence");
    assert_eq!(params(&a), params(&c), "final parameters");
    let (sa, sc) = (ea.state().unwrap(), ec.state().unwrap());
    assert_eq!(sa.len(), sc.len());
    for ((ka, va), (kc, vc)) in sa.iter().zip(&sc) {
        assert_eq!(ka, kc);
        let (u, v): (Vec<f64>, Vec<f64>) = (
            va.flatten_all().unwrap().to_vec1().unwrap(),
            vc.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(u, v, "{ka}");
    }

    // A checkpoint with learned features refuses an engine on raw features, and the
    // other way round, naming the mismatch.
    let mut raw = KrrWakeSleep::new(&model, "data", opts().features(|x| Ok(x.clone())));
    let e = raw
        .load_state(state.iter().cloned().collect())
        .unwrap_err()
        .to_string();
    assert!(e.contains("krr/features"), "{e}");
    let plain: std::collections::HashMap<_, _> = state
        .iter()
        .filter(|(k, _)| !k.starts_with("krr/features/"))
        .cloned()
        .collect();
    let mut learned = KrrWakeSleep::new(&model, "data", opts());
    let e = learned.load_state(plain).unwrap_err().to_string();
    assert!(e.contains("no feature"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn learned_feature_options_are_validated() {
    let data = fa_data(20, 1);
    let (w0, b0) = fa_start();
    let model = |ctx: &mut Ctx| fa(ctx, &data, &w0, &b0);
    let base = || KrrOptions::default().sleep_samples(50);
    let e = err_of(
        &model,
        base()
            .tuning(None)
            .learned_features(LearnedFeatures::default()),
    );
    assert!(e.contains("features") && e.contains("tuning"), "{e}");
    let bad = |l: LearnedFeatures| err_of(&model, base().learned_features(l));
    let e = bad(LearnedFeatures {
        out: 0,
        ..LearnedFeatures::default()
    });
    assert!(e.contains("widths"), "{e}");
    let e = bad(LearnedFeatures {
        hidden: vec![4, 0],
        ..LearnedFeatures::default()
    });
    assert!(e.contains("widths"), "{e}");
    let e = bad(LearnedFeatures {
        lr: f64::NAN,
        ..LearnedFeatures::default()
    });
    assert!(e.contains("learning rate"), "{e}");
}
