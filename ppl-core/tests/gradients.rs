//! Gradients (f64) against central finite differences: of `log_prob` with respect to every
//! parameter and the value, of reparameterised samples with respect to the parameters (the
//! RNG state is replayed so both sides see the same noise), and of implicit
//! reparameterisation against the derivative of the inverse CDF.
//!
//! Central differences with step h = 1e-6·max(|x|, 0.1) have truncation error ~h² f''' and
//! rounding error ~1e-16 |f| / h, i.e. ~1e-8 relative here; tolerances are 1e-5 relative.

mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use ppl_core::prelude::*;
use ppl_core::RngState;

type Build = dyn Fn(&[Tensor]) -> Box<dyn Distribution>;

/// Checks d/dθ Σ log_prob(x) for every parameter θ (and d/dx when `value_grad`).
fn check_log_prob_grads(
    name: &str,
    params: &[Tensor],
    value: &Tensor,
    value_grad: bool,
    build: &Build,
) {
    // Finite differences step off constraint sets (e.g. the zero upper triangle of a
    // Cholesky factor); both sides then see the same function, so checks are turned off.
    let _off = ppl_core::validation::disable();
    let vars: Vec<Var> = params
        .iter()
        .map(|p| Var::from_tensor(p).unwrap())
        .collect();
    let xv = Var::from_tensor(value).unwrap();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let x = if value_grad {
        xv.as_tensor().clone()
    } else {
        value.clone()
    };
    let total = build(&tensors).log_prob(&x).unwrap().sum_all().unwrap();
    let grads = total.backward().unwrap();
    let f = |ps: &[Tensor], x: &Tensor| -> f64 {
        build(ps)
            .log_prob(x)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    for (k, p) in params.iter().enumerate() {
        let g = host(grads.get(vars[k].as_tensor()).unwrap());
        let base = host(p);
        for i in 0..base.len() {
            let h = 1e-6 * base[i].abs().max(0.1);
            let shift = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                let mut ps = params.to_vec();
                ps[k] = t(&v, p.dims(), DType::F64);
                f(&ps, value)
            };
            let fd = (shift(h) - shift(-h)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() <= 1e-5 * fd.abs().max(1.0),
                "{name}: d/dparam{k}[{i}] autodiff {} vs finite difference {fd}",
                g[i]
            );
        }
    }
    if value_grad {
        let g = host(grads.get(xv.as_tensor()).unwrap());
        let base = host(value);
        for i in 0..base.len() {
            let h = 1e-6 * base[i].abs().max(0.1);
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                f(params, &t(&v, value.dims(), DType::F64))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() <= 1e-5 * fd.abs().max(1.0),
                "{name}: d/dx[{i}] autodiff {} vs finite difference {fd}",
                g[i]
            );
        }
    }
}

fn v(x: &[f64]) -> Tensor {
    t1(x, DType::F64)
}

#[test]
fn log_prob_gradients_scalar_families() {
    let x = v(&[0.3, -1.2, 2.5]);
    let pos = v(&[0.3, 1.2, 2.5]);
    let unit = v(&[0.1, 0.55, 0.9]);
    let (a, b) = (v(&[0.5, -0.2, 1.0]), v(&[0.7, 1.5, 2.2]));
    check_log_prob_grads("Normal", &[a.clone(), b.clone()], &x, true, &|p| {
        Box::new(Normal::new(&p[0], &p[1]).unwrap())
    });
    check_log_prob_grads("LogNormal", &[a.clone(), b.clone()], &pos, true, &|p| {
        Box::new(LogNormal::new(&p[0], &p[1]).unwrap())
    });
    check_log_prob_grads("HalfNormal", std::slice::from_ref(&b), &pos, true, &|p| {
        Box::new(HalfNormal::new(&p[0]).unwrap())
    });
    check_log_prob_grads("Laplace", &[a.clone(), b.clone()], &x, true, &|p| {
        Box::new(Laplace::new(&p[0], &p[1]).unwrap())
    });
    check_log_prob_grads("Cauchy", &[a.clone(), b.clone()], &x, true, &|p| {
        Box::new(Cauchy::new(&p[0], &p[1]).unwrap())
    });
    check_log_prob_grads(
        "StudentT",
        &[v(&[1.5, 4.0, 30.0]), a.clone(), b.clone()],
        &x,
        true,
        &|p| Box::new(StudentT::new(&p[0], &p[1], &p[2]).unwrap()),
    );
    check_log_prob_grads(
        "Uniform",
        &[v(&[-2.0, -3.0, 0.0]), v(&[1.0, 0.5, 3.0])],
        &x,
        false,
        &|p| Box::new(Uniform::new(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads("Exponential", std::slice::from_ref(&b), &pos, true, &|p| {
        Box::new(Exponential::new(&p[0]).unwrap())
    });
    check_log_prob_grads(
        "Gamma",
        &[v(&[0.4, 2.0, 9.0]), b.clone()],
        &pos,
        true,
        &|p| Box::new(Gamma::new(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads(
        "InverseGamma",
        &[v(&[0.4, 2.0, 9.0]), b.clone()],
        &pos,
        true,
        &|p| Box::new(InverseGamma::new(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads(
        "Beta",
        &[v(&[0.4, 2.0, 9.0]), b.clone()],
        &unit,
        true,
        &|p| Box::new(Beta::new(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads(
        "VonMises",
        &[a.clone(), v(&[0.2, 3.0, 12.0])],
        &x,
        true,
        &|p| Box::new(VonMises::new(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads(
        "RelaxedBernoulli",
        &[v(&[0.3, 1.0, 2.0]), a.clone()],
        &unit,
        true,
        &|p| Box::new(RelaxedBernoulli::from_logits(&p[0], &p[1]).unwrap()),
    );
}

#[test]
fn log_prob_gradients_discrete_families() {
    let logits = v(&[-1.5, 0.2, 2.0]);
    check_log_prob_grads(
        "Bernoulli",
        std::slice::from_ref(&logits),
        &v(&[1.0, 0.0, 1.0]),
        false,
        &|p| Box::new(Bernoulli::from_logits(&p[0]).unwrap()),
    );
    check_log_prob_grads(
        "Bernoulli(probs)",
        &[v(&[0.2, 0.5, 0.9])],
        &v(&[1.0, 0.0, 1.0]),
        false,
        &|p| Box::new(Bernoulli::from_probs(&p[0]).unwrap()),
    );
    check_log_prob_grads(
        "Binomial",
        std::slice::from_ref(&logits),
        &v(&[3.0, 0.0, 7.0]),
        false,
        &|p| Box::new(Binomial::from_logits(&v(&[5.0, 5.0, 9.0]), &p[0]).unwrap()),
    );
    check_log_prob_grads(
        "Poisson",
        &[v(&[0.5, 3.0, 20.0])],
        &v(&[1.0, 0.0, 25.0]),
        false,
        &|p| Box::new(Poisson::new(&p[0]).unwrap()),
    );
    check_log_prob_grads(
        "Geometric",
        std::slice::from_ref(&logits),
        &v(&[3.0, 0.0, 1.0]),
        false,
        &|p| Box::new(Geometric::from_logits(&p[0]).unwrap()),
    );
    let lg = t(&[0.1, -0.5, 1.0, 2.0, 0.0, -1.0], &[2, 3], DType::F64);
    check_log_prob_grads(
        "Categorical",
        std::slice::from_ref(&lg),
        &v(&[2.0, 0.0]),
        false,
        &|p| Box::new(Categorical::from_logits(&p[0]).unwrap()),
    );
    check_log_prob_grads(
        "Categorical(probs)",
        &[v(&[0.2, 0.3, 0.5])],
        &v(&[2.0, 0.0]),
        false,
        &|p| Box::new(Categorical::from_probs(&p[0]).unwrap()),
    );
    check_log_prob_grads(
        "OneHotCategorical",
        &[lg],
        &t(&[0.0, 0.0, 1.0, 1.0, 0.0, 0.0], &[2, 3], DType::F64),
        false,
        &|p| Box::new(OneHotCategorical::from_logits(&p[0]).unwrap()),
    );
}

#[test]
fn log_prob_gradients_vector_families() {
    let x = t(&[0.3, -0.4, 1.1, 0.5, 0.0, -1.0], &[2, 3], DType::F64);
    let loc = v(&[0.1, 0.2, -0.3]);
    let tril = t(
        &[1.2, 0.0, 0.0, 0.3, 0.8, 0.0, -0.5, 0.4, 1.5],
        &[3, 3],
        DType::F64,
    );
    check_log_prob_grads("MVN", &[loc.clone(), tril], &x, true, &|p| {
        Box::new(MultivariateNormal::new(&p[0], &p[1]).unwrap())
    });
    let cov = t(
        &[2.0, 0.3, 0.1, 0.3, 1.0, -0.2, 0.1, -0.2, 1.5],
        &[3, 3],
        DType::F64,
    );
    // Symmetric perturbations are not what FD does here (it moves single entries); the
    // Cholesky reads only the lower triangle, so the gradient is with respect to that.
    check_log_prob_grads("MVN(covariance)", &[loc.clone(), cov], &x, true, &|p| {
        Box::new(MultivariateNormal::from_covariance(&p[0], &p[1]).unwrap())
    });
    check_log_prob_grads(
        "MVN(diagonal)",
        &[loc.clone(), v(&[0.5, 1.0, 2.0])],
        &x,
        true,
        &|p| Box::new(MultivariateNormal::diagonal(&p[0], &p[1]).unwrap()),
    );
    let w = t(&[0.5, -0.2, 0.3, 0.8, -0.6, 0.1], &[3, 2], DType::F64);
    check_log_prob_grads(
        "LowRankMVN",
        &[loc, w, v(&[0.5, 1.0, 2.0])],
        &x,
        true,
        &|p| Box::new(LowRankMultivariateNormal::new(&p[0], &p[1], &p[2]).unwrap()),
    );
    let simplex = t(&[0.2, 0.3, 0.5, 0.6, 0.1, 0.3], &[2, 3], DType::F64);
    check_log_prob_grads("Dirichlet", &[v(&[0.5, 2.0, 4.0])], &simplex, false, &|p| {
        Box::new(Dirichlet::new(&p[0]).unwrap())
    });
    check_log_prob_grads(
        "RelaxedOneHot",
        &[v(&[0.7]), v(&[0.1, -0.3, 0.8])],
        &simplex,
        false,
        &|p| Box::new(RelaxedOneHotCategorical::from_logits(&p[0], &p[1]).unwrap()),
    );
    check_log_prob_grads(
        "Mixture",
        &[v(&[0.3, -0.2]), v(&[-1.0, 1.0]), v(&[0.5, 1.5])],
        &v(&[0.3, -2.0, 1.7]),
        true,
        &|p| {
            let mix = Categorical::from_logits(&p[0]).unwrap();
            let comp = Normal::new(&p[1], &p[2]).unwrap();
            Box::new(MixtureSameFamily::new(mix, comp.into_dyn()).unwrap())
        },
    );
}

/// Checks d/dθ Σ w·sample(θ) against FD, replaying the RNG state for every evaluation.
fn check_sample_grads(name: &str, params: &[Tensor], build: &Build) {
    let _off = ppl_core::validation::disable();
    let state: RngState = PplRng::seed_from_u64(3).state();
    let draw = |ps: &[Tensor]| {
        build(ps)
            .sample(&mut PplRng::from_state(&state), &[4])
            .unwrap()
    };
    let shape = draw(params).dims().to_vec();
    let n: usize = shape.iter().product();
    // A fixed random weighting makes the scalar sensitive to every element.
    let wts = t(
        &unif(&mut PplRng::seed_from_u64(5), n, 0.5, 1.5),
        &shape,
        DType::F64,
    );
    let f = |ps: &[Tensor]| {
        (draw(ps) * &wts)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let vars: Vec<Var> = params
        .iter()
        .map(|p| Var::from_tensor(p).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = (draw(&tensors) * &wts)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (k, p) in params.iter().enumerate() {
        let g = host(grads.get(vars[k].as_tensor()).unwrap());
        let base = host(p);
        for i in 0..base.len() {
            let h = 1e-6 * base[i].abs().max(0.1);
            let shift = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                let mut ps = params.to_vec();
                ps[k] = t(&v, p.dims(), DType::F64);
                f(&ps)
            };
            let fd = (shift(h) - shift(-h)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() <= 1e-5 * fd.abs().max(1.0),
                "{name}: d sample / d param{k}[{i}] autodiff {} vs finite difference {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn reparameterised_sample_gradients() {
    let (a, b) = (v(&[0.5, -0.2]), v(&[0.7, 1.5]));
    check_sample_grads("Normal", &[a.clone(), b.clone()], &|p| {
        Box::new(Normal::new(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("LogNormal", &[a.clone(), b.clone()], &|p| {
        Box::new(LogNormal::new(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("HalfNormal", std::slice::from_ref(&b), &|p| {
        Box::new(HalfNormal::new(&p[0]).unwrap())
    });
    check_sample_grads("Laplace", &[a.clone(), b.clone()], &|p| {
        Box::new(Laplace::new(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("Cauchy", &[a.clone(), b.clone()], &|p| {
        Box::new(Cauchy::new(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("Uniform", &[a.clone(), v(&[1.0, 2.0])], &|p| {
        Box::new(Uniform::new(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("Exponential", std::slice::from_ref(&b), &|p| {
        Box::new(Exponential::new(&p[0]).unwrap())
    });
    // Gamma-based families: the rate/scale/location paths are exact under a replayed RNG
    // (the shape parameters go through implicit gradients, checked separately below).
    check_sample_grads("Gamma(rate)", std::slice::from_ref(&b), &|p| {
        Box::new(Gamma::new(&v(&[2.0, 0.5]), &p[0]).unwrap())
    });
    check_sample_grads("InverseGamma(scale)", std::slice::from_ref(&b), &|p| {
        Box::new(InverseGamma::new(&v(&[2.0, 0.5]), &p[0]).unwrap())
    });
    check_sample_grads("StudentT(loc, scale)", &[a.clone(), b.clone()], &|p| {
        Box::new(StudentT::new(&v(&[3.0, 8.0]), &p[0], &p[1]).unwrap())
    });
    let tril = t(&[1.2, 0.0, 0.3, 0.8], &[2, 2], DType::F64);
    check_sample_grads("MVN", &[a.clone(), tril], &|p| {
        Box::new(MultivariateNormal::new(&p[0], &p[1]).unwrap())
    });
    let w = t(&[0.5, -0.2, 0.3, 0.8], &[2, 2], DType::F64);
    check_sample_grads("LowRankMVN", &[a.clone(), w, b.clone()], &|p| {
        Box::new(LowRankMultivariateNormal::new(&p[0], &p[1], &p[2]).unwrap())
    });
    check_sample_grads("RelaxedBernoulli", &[v(&[0.6, 1.3]), a.clone()], &|p| {
        Box::new(RelaxedBernoulli::from_logits(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("RelaxedOneHot", &[v(&[0.8]), v(&[0.1, -0.3, 0.8])], &|p| {
        Box::new(RelaxedOneHotCategorical::from_logits(&p[0], &p[1]).unwrap())
    });
    check_sample_grads("Delta", &[a], &|p| Box::new(Delta::new(&p[0], 0).unwrap()));
}

/// Regularised lower incomplete gamma P(a, x) (statrs) and the quantile by Newton's method.
fn gamma_quantile(a: f64, u: f64, start: f64) -> f64 {
    use statrs::function::gamma::{gamma_lr, ln_gamma};
    let mut z = start;
    for _ in 0..100 {
        let pdf = ((a - 1.0) * z.ln() - z - ln_gamma(a)).exp();
        let step = (gamma_lr(a, z) - u) / pdf;
        z = (z - step).max(z / 10.0);
        if step.abs() < 1e-15 * z {
            break;
        }
    }
    z
}

#[test]
fn implicit_reparameterisation_matches_inverse_cdf_derivative() {
    use statrs::function::gamma::gamma_lr;
    // For each shape α, draw z ~ Gamma(α, 1) with gradient, then compare dz/dα with the
    // derivative of the quantile function at the same u = F(z; α), by central differences
    // of a Newton-refined quantile. The series path (α <= 2000) is held to 1e-5 relative;
    // the Wilson–Hilferty path (α > 2000) to 1e-3 relative (its approximation error).
    for &(alpha, tol) in &[
        (0.05f64, 1e-5f64),
        (0.3, 1e-5),
        (1.0, 1e-5),
        (4.5, 1e-5),
        (30.0, 1e-5),
        (300.0, 1e-5),
        (1999.0, 1e-5),
        (2500.0, 1e-3),
    ] {
        let va = Var::new(&[alpha; 5], &Device::Cpu).unwrap();
        let mut rng = PplRng::seed_from_u64(alpha.to_bits());
        let z =
            ppl_core::distributions::standard_gamma_rsample(&mut rng, va.as_tensor(), &[]).unwrap();
        let grads = z.sum_all().unwrap().backward().unwrap();
        let g = host(grads.get(va.as_tensor()).unwrap());
        for (i, &zi) in host(&z).iter().enumerate() {
            let u = gamma_lr(alpha, zi);
            if !(1e-10..1.0 - 1e-10).contains(&u) {
                continue; // too far in a tail for the FD reference to be accurate
            }
            let h = 1e-5 * alpha;
            let fd =
                (gamma_quantile(alpha + h, u, zi) - gamma_quantile(alpha - h, u, zi)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() <= tol * fd.abs().max(1e-3),
                "alpha {alpha}, z {zi}: implicit dz/dα {} vs quantile derivative {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn implicit_gradients_are_unbiased_for_moment_derivatives() {
    // d/dα E[z] = 1 for Gamma(α, 1): the mean of the pathwise gradients estimates it.
    // Its standard error is sd(dz/dα)/√n, estimated from the same draws; 5 standard errors.
    let n = 20_000;
    let check = |name: &str, g: &[f64], want: f64| {
        let m = g.iter().sum::<f64>() / g.len() as f64;
        let sd = (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (g.len() - 1) as f64).sqrt();
        let se = sd / (g.len() as f64).sqrt();
        assert!(
            (m - want).abs() < 5.0 * se + 1e-12,
            "{name}: mean gradient {m} vs {want} (se {se})"
        );
    };
    for alpha in [0.2, 1.7, 25.0] {
        let va = Var::new(vec![alpha; n], &Device::Cpu).unwrap();
        let z = ppl_core::distributions::standard_gamma_rsample(
            &mut PplRng::seed_from_u64(1),
            va.as_tensor(),
            &[],
        )
        .unwrap();
        let g = host(
            z.sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .get(va.as_tensor())
                .unwrap(),
        );
        check(&format!("Gamma({alpha}) d E[z]/dα"), &g, 1.0);
    }
    // Beta(a, b): d/da E[x] = b / (a + b)².
    let (a, b) = (0.7, 2.0);
    let va = Var::new(vec![a; n], &Device::Cpu).unwrap();
    let d = Beta::new(va.as_tensor(), &t1(&vec![b; n], DType::F64)).unwrap();
    let x = d.sample(&mut PplRng::seed_from_u64(2), &[]).unwrap();
    let g = host(
        x.sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(va.as_tensor())
            .unwrap(),
    );
    check("Beta d E[x]/da", &g, b / (a + b) / (a + b));
    // Dirichlet(α): d/dα₀ E[x₀] = (α_sum - α₀) / α_sum².
    let alpha = [0.5, 1.5, 3.0];
    let rows: Vec<f64> = (0..n).flat_map(|_| alpha).collect();
    let va = Var::from_tensor(&t(&rows, &[n, 3], DType::F64)).unwrap();
    let x = Dirichlet::new(va.as_tensor())
        .unwrap()
        .sample(&mut PplRng::seed_from_u64(3), &[])
        .unwrap();
    let x0 = x.narrow(1, 0, 1).unwrap().sum_all().unwrap();
    let g = host(x0.backward().unwrap().get(va.as_tensor()).unwrap());
    let g0: Vec<f64> = g.iter().step_by(3).cloned().collect();
    check("Dirichlet d E[x0]/dα0", &g0, (5.0 - 0.5) / 25.0);
}

/// `Bernoulli::log_prob` in its one-`exp` form against the closed form, and its gradient
/// against the exact `x − σ(l)`, including at l = 0 (where a kink convention of relu/abs
/// would give 0 or 1 instead of ½) and at |l| = 30 (where e^{−|l|} underflows relative to
/// 1). Values include non-binary intensities, as in the digits VAE. Also: `probs` is
/// computed lazily from logits and survives `expand`. Tolerance 1e-12: a handful of f64 ops.
#[test]
fn bernoulli_logits_exact_values_and_gradient() {
    // Intensities in (0, 1) are outside the support {0, 1}: validation must be off for them
    // (as in the VAE's hot loop); with it on they are an `OutsideSupport` error.
    let bad = Bernoulli::from_logits(&t1(&[0.0], DType::F64)).unwrap();
    assert!(matches!(
        bad.log_prob(&t1(&[0.25], DType::F64)),
        Err(PplError::OutsideSupport { .. })
    ));
    let _off = ppl_core::validation::disable();
    let ls = [-30.0, -1.5, 0.0, 0.0, 0.7, 30.0];
    let xs = [0.0, 1.0, 0.25, 1.0, 0.5, 0.0];
    let l = Var::from_tensor(&t1(&ls, DType::F64)).unwrap();
    let d = Bernoulli::from_logits(l.as_tensor()).unwrap();
    let lp = d.log_prob(&t1(&xs, DType::F64)).unwrap();
    let sig = |l: f64| 1.0 / (1.0 + (-l).exp());
    // x·l − softplus(l), softplus computed as max(l, 0) + ln_1p(e^{−|l|}).
    let want: Vec<f64> = ls
        .iter()
        .zip(&xs)
        .map(|(&l, &x)| x * l - (l.max(0.0) + (-l.abs()).exp().ln_1p()))
        .collect();
    assert_close("Bernoulli log_prob", &host(&lp), &want, 1e-12);
    let g = lp.sum_all().unwrap().backward().unwrap();
    let got = host(g.get(l.as_tensor()).unwrap());
    let want: Vec<f64> = ls.iter().zip(&xs).map(|(&l, &x)| x - sig(l)).collect();
    assert_close("d/dl Bernoulli log_prob", &got, &want, 1e-12);
    let probs: Vec<f64> = ls.iter().map(|&l| sig(l)).collect();
    assert_close("probs", &host(&d.probs().unwrap()), &probs, 1e-12);
    let var: Vec<f64> = probs.iter().map(|p| p * (1.0 - p)).collect();
    assert_close("variance", &host(&d.variance().unwrap()), &var, 1e-12);
    let e = d.expand(&[2, 6]).unwrap();
    assert_close(
        "expanded mean",
        &host(&e.mean().unwrap())[6..],
        &probs,
        1e-12,
    );
}

/// `Normal::standard` scores without standardising; it must agree with `N(0, 1)` built
/// from tensors, in value, output shape (values broadcast against the batch shape either
/// way) and gradient (−x). Tolerance 1e-12: the two paths differ by two exact ops.
#[test]
fn standard_normal_matches_general_normal() {
    let dev = Device::Cpu;
    let std = Normal::standard(&[2, 3], DType::F64, &dev).unwrap();
    let gen = Normal::new(
        &Tensor::zeros((2, 3), DType::F64, &dev).unwrap(),
        &Tensor::ones((2, 3), DType::F64, &dev).unwrap(),
    )
    .unwrap();
    let vals = [-2.0, -0.5, 0.0, 0.3, 1.0, 4.0, 0.1, -0.2];
    for shape in [vec![2, 3], vec![3], vec![4, 2, 3], vec![1, 1]] {
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n).map(|i| vals[i % vals.len()]).collect();
        let x = Var::from_tensor(&t(&data, &shape, DType::F64)).unwrap();
        let a = std.log_prob(x.as_tensor()).unwrap();
        let b = gen.log_prob(x.as_tensor()).unwrap();
        assert_eq!(a.dims(), b.dims(), "output shape for value shape {shape:?}");
        assert_close("standard log_prob", &host(&a), &host(&b), 1e-12);
        let g = a.sum_all().unwrap().backward().unwrap();
        let gb = b.sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (
            g.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert_close("d/dx standard log_prob", &host(ga), &host(gb), 1e-12);
    }
    let e = std.expand(&[5, 2, 3]).unwrap();
    let x = Tensor::ones((5, 2, 3), DType::F64, &dev).unwrap();
    let want = vec![-0.5 - 0.5 * (2.0 * std::f64::consts::PI).ln(); 30];
    assert_close(
        "expanded standard",
        &host(&e.log_prob(&x).unwrap()),
        &want,
        1e-12,
    );
}
