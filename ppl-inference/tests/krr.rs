//! The KRR wake-sleep engine (amortised learning): kernel ridge weights against a direct
//! solve, the gradient identity, gradient accuracy against exact marginal likelihoods
//! (linear-Gaussian, a discrete mixture, a latent on the circle), the exponential-family
//! split, training with a recognition network, typed errors. All f64, fixed seeds.

use candle_core::{DType, Device, Tensor, Var, D};
use ppl_core::prelude::*;
use ppl_inference::engines::{KernelApprox, KernelRidge, KrrOptions, KrrWakeSleep, Tuning};
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
                for k in 0..n {
                    a[r][k] -= f * a[c][k];
                }
                for k in 0..b[0].len() {
                    b[r][k] -= f * b[c][k];
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
            .map(|t| t.clone())
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
    let g_krr: Vec<f64> = grads_of(&est.loss, &vs).iter().map(|g| -g).collect();
    let g_exact = grads_of(&fa_exact(&data, vs[0].as_tensor(), vs[1].as_tensor()), &vs);
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
