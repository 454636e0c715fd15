//! `log_prob` of every family against statrs or an independent closed form, element-wise,
//! on many random parameter sets, in f64 and f32.
//!
//! Each check builds one distribution with batch shape `[R]` (R random parameter sets) and
//! scores values of shape `[M, R]` (M values per set, drawn from the family's own sampler so
//! they lie in the support), which also exercises broadcasting of values against the batch.
//! Tolerances: f64 1e-10 relative (a few dozen ops of rounding); f32 2e-4 relative (f32
//! epsilon 1.2e-7 times the ~30 ops of lgamma-based densities, with cancellation).

mod common;
use candle_core::{DType, Tensor};
use common::*;
use nalgebra::DVector;
use ppl_core::prelude::*;
use statrs::distribution as sr;
use statrs::distribution::{Continuous, Discrete};

const R: usize = 40;
const M: usize = 5;

/// Samples `[M]` values from `d` (f64), scores them in `dtype`, compares with `reference`.
fn check(
    name: &str,
    build: &dyn Fn(DType) -> Box<dyn Distribution>,
    reference: &dyn Fn(usize, f64) -> f64,
) {
    let mut rng = PplRng::seed_from_u64(7);
    let x = build(DType::F64).sample(&mut rng, &[M]).unwrap().detach();
    let xs = host(&x);
    let want: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &v)| reference(i % R, v))
        .collect();
    for (dtype, tol) in DTYPES {
        let d = build(dtype);
        let got = host(&d.log_prob(&x.to_dtype(dtype).unwrap()).unwrap());
        // f32 values are rounded before scoring: compare against the reference at the
        // rounded value.
        let want_d: Vec<f64> = if dtype == DType::F64 {
            want.clone()
        } else {
            let xr = host(&x.to_dtype(dtype).unwrap());
            xr.iter()
                .enumerate()
                .map(|(i, &v)| reference(i % R, v))
                .collect()
        };
        assert_close(&format!("{name} {dtype:?}"), &got, &want_d, tol);
    }
}

struct P {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

fn params(seed: u64, a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> P {
    let mut rng = PplRng::seed_from_u64(seed);
    P {
        a: log_unif_or_unif(&mut rng, a),
        b: log_unif_or_unif(&mut rng, b),
        c: log_unif_or_unif(&mut rng, c),
    }
}

/// Log-uniform for positive ranges, uniform otherwise.
fn log_unif_or_unif(rng: &mut PplRng, (lo, hi): (f64, f64)) -> Vec<f64> {
    if lo > 0.0 {
        log_unif(rng, R, lo, hi)
    } else {
        unif(rng, R, lo, hi)
    }
}

#[test]
fn normal_lognormal_halfnormal() {
    let p = params(1, (-5.0, 5.0), (0.05, 20.0), (0.1, 1.0));
    check(
        "Normal",
        &|dt| Box::new(Normal::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Normal::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    let p = params(2, (-2.0, 2.0), (0.05, 2.0), (0.1, 1.0));
    check(
        "LogNormal",
        &|dt| Box::new(LogNormal::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::LogNormal::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    check(
        "HalfNormal",
        &|dt| Box::new(HalfNormal::new(&t1(&p.b, dt)).unwrap()),
        &|i, x| std::f64::consts::LN_2 + sr::Normal::new(0.0, p.b[i]).unwrap().ln_pdf(x),
    );
}

#[test]
fn laplace_cauchy_student_uniform_exponential() {
    let p = params(3, (-5.0, 5.0), (0.05, 20.0), (0.3, 50.0));
    check(
        "Laplace",
        &|dt| Box::new(Laplace::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Laplace::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    check(
        "Cauchy",
        &|dt| Box::new(Cauchy::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Cauchy::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    check(
        "StudentT",
        &|dt| Box::new(StudentT::new(&t1(&p.c, dt), &t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| {
            sr::StudentsT::new(p.a[i], p.b[i], p.c[i])
                .unwrap()
                .ln_pdf(x)
        },
    );
    let high: Vec<f64> = p.a.iter().zip(&p.b).map(|(a, b)| a + b).collect();
    check(
        "Uniform",
        &|dt| Box::new(Uniform::new(&t1(&p.a, dt), &t1(&high, dt)).unwrap()),
        &|i, _| -(high[i] - p.a[i]).ln(),
    );
    check(
        "Exponential",
        &|dt| Box::new(Exponential::new(&t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Exp::new(p.b[i]).unwrap().ln_pdf(x),
    );
}

#[test]
fn gamma_family() {
    let p = params(4, (0.2, 30.0), (0.1, 10.0), (0.2, 30.0));
    check(
        "Gamma",
        &|dt| Box::new(Gamma::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Gamma::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    check(
        "InverseGamma",
        &|dt| Box::new(InverseGamma::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap()),
        &|i, x| sr::InverseGamma::new(p.a[i], p.b[i]).unwrap().ln_pdf(x),
    );
    check(
        "Beta",
        &|dt| Box::new(Beta::new(&t1(&p.a, dt), &t1(&p.c, dt)).unwrap()),
        &|i, x| sr::Beta::new(p.a[i], p.c[i]).unwrap().ln_pdf(x),
    );
}

#[test]
fn discrete_families() {
    let p = params(5, (0.02, 0.98), (0.1, 40.0), (-4.0, 4.0));
    let n: Vec<f64> = p.b.iter().map(|b| b.round()).collect();
    check(
        "Bernoulli(probs)",
        &|dt| Box::new(Bernoulli::from_probs(&t1(&p.a, dt)).unwrap()),
        &|i, x| sr::Bernoulli::new(p.a[i]).unwrap().ln_pmf(x as u64),
    );
    check(
        "Bernoulli(logits)",
        &|dt| Box::new(Bernoulli::from_logits(&t1(&p.c, dt)).unwrap()),
        &|i, x| {
            let q = 1.0 / (1.0 + (-p.c[i]).exp());
            sr::Bernoulli::new(q).unwrap().ln_pmf(x as u64)
        },
    );
    check(
        "Binomial",
        &|dt| Box::new(Binomial::from_probs(&t1(&n, dt), &t1(&p.a, dt)).unwrap()),
        &|i, x| {
            sr::Binomial::new(p.a[i], n[i] as u64)
                .unwrap()
                .ln_pmf(x as u64)
        },
    );
    check(
        "Poisson",
        &|dt| Box::new(Poisson::new(&t1(&p.b, dt)).unwrap()),
        &|i, x| sr::Poisson::new(p.b[i]).unwrap().ln_pmf(x as u64),
    );
    // statrs counts trials (support 1, 2, ...); we count failures (0, 1, ...).
    check(
        "Geometric",
        &|dt| Box::new(Geometric::from_probs(&t1(&p.a, dt)).unwrap()),
        &|i, x| sr::Geometric::new(p.a[i]).unwrap().ln_pmf(x as u64 + 1),
    );
}

#[test]
fn von_mises_and_delta_and_relaxed_bernoulli() {
    let p = params(6, (-3.0, 3.0), (0.01, 50.0), (0.2, 3.0));
    let log_i0 = |k: f64| {
        let terms: Vec<f64> = (0..400)
            .map(|j| {
                let j = j as f64;
                2.0 * j * (k / 2.0).ln() - 2.0 * statrs::function::gamma::ln_gamma(j + 1.0)
            })
            .collect();
        let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
    };
    let build = |dt| -> Box<dyn Distribution> {
        Box::new(VonMises::new(&t1(&p.a, dt), &t1(&p.b, dt)).unwrap())
    };
    let reference = |i: usize, x: f64| {
        p.b[i] * (x - p.a[i]).cos() - (2.0 * std::f64::consts::PI).ln() - log_i0(p.b[i])
    };
    // The Bessel polynomials are accurate to ~5e-7 absolute in ln I0, so f64 is held to 1e-6.
    let mut rng = PplRng::seed_from_u64(7);
    let x = build(DType::F64).sample(&mut rng, &[M]).unwrap();
    let got = host(&build(DType::F64).log_prob(&x).unwrap());
    let want: Vec<f64> = host(&x)
        .iter()
        .enumerate()
        .map(|(i, &v)| reference(i % R, v))
        .collect();
    assert_close("VonMises", &got, &want, 1e-6);

    // Delta: 0 at the point, -inf elsewhere, plus log_density, summed over event dims.
    let v = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F64);
    let d = Delta::with_log_density(&v, &t1(&[0.5, -1.0], DType::F64), 1).unwrap();
    assert_eq!(host(&d.log_prob(&v).unwrap()), vec![0.5, -1.0]);
    let off = t(&[1.0, 2.0, 3.0, 4.5], &[2, 2], DType::F64);
    assert_eq!(
        host(&d.log_prob(&off).unwrap()),
        vec![0.5, f64::NEG_INFINITY]
    );

    // Relaxed Bernoulli against its density written out directly.
    let logits = &p.a;
    let tau = &p.c;
    check(
        "RelaxedBernoulli",
        &|dt| Box::new(RelaxedBernoulli::from_logits(&t1(tau, dt), &t1(logits, dt)).unwrap()),
        &|i, y| {
            let (l, t) = (logits[i], tau[i]);
            let alpha = l.exp();
            (t * alpha * y.powf(-t - 1.0) * (1.0 - y).powf(-t - 1.0)
                / (alpha * y.powf(-t) + (1.0 - y).powf(-t)).powi(2))
            .ln()
        },
    );
}

/// Random probability vectors `[R, K]`.
fn simplex(rng: &mut PplRng, k: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(R * k);
    for _ in 0..R {
        let row: Vec<f64> = (0..k).map(|_| 0.05 + rng.uniform_open()).collect();
        let s: f64 = row.iter().sum();
        v.extend(row.iter().map(|x| x / s));
    }
    v
}

/// Samples `[M]` vectors (event size `k`) and compares with a per-row reference.
fn check_vector(
    name: &str,
    k: usize,
    build: &dyn Fn(DType) -> Box<dyn Distribution>,
    reference: &dyn Fn(usize, &[f64]) -> f64,
) {
    let mut rng = PplRng::seed_from_u64(11);
    let x = build(DType::F64).sample(&mut rng, &[M]).unwrap().detach();
    for (dtype, tol) in DTYPES {
        let xd = x.to_dtype(dtype).unwrap();
        let xs = host(&xd);
        let got = host(&build(dtype).log_prob(&xd).unwrap());
        let want: Vec<f64> = (0..M * R)
            .map(|j| reference(j % R, &xs[j * k..(j + 1) * k]))
            .collect();
        assert_close(&format!("{name} {dtype:?}"), &got, &want, tol);
    }
}

#[test]
fn categorical_family_and_dirichlet() {
    let k = 5;
    let mut rng = PplRng::seed_from_u64(12);
    let probs = simplex(&mut rng, k);
    let row = |i: usize| probs[i * k..(i + 1) * k].to_vec();
    check(
        "Categorical",
        &|dt| Box::new(Categorical::from_probs(&t(&probs, &[R, k], dt)).unwrap()),
        &|i, x| sr::Categorical::new(&row(i)).unwrap().ln_pmf(x as u64),
    );
    let logits: Vec<f64> = probs.iter().map(|p| p.ln() + 3.0).collect();
    check(
        "Categorical(logits)",
        &|dt| Box::new(Categorical::from_logits(&t(&logits, &[R, k], dt)).unwrap()),
        &|i, x| sr::Categorical::new(&row(i)).unwrap().ln_pmf(x as u64),
    );
    check_vector(
        "OneHotCategorical",
        k,
        &|dt| Box::new(OneHotCategorical::from_probs(&t(&probs, &[R, k], dt)).unwrap()),
        &|i, x| {
            let idx = x.iter().position(|&v| v == 1.0).unwrap();
            row(i)[idx].ln()
        },
    );
    let conc: Vec<f64> = log_unif(&mut rng, R * k, 0.3, 20.0);
    check_vector(
        "Dirichlet",
        k,
        &|dt| Box::new(Dirichlet::new(&t(&conc, &[R, k], dt)).unwrap()),
        &|i, x| {
            sr::Dirichlet::new(conc[i * k..(i + 1) * k].to_vec())
                .unwrap()
                .ln_pdf(&DVector::from_vec(x.to_vec()))
        },
    );
    let tau = log_unif(&mut rng, R, 0.3, 3.0);
    check_vector(
        "RelaxedOneHotCategorical",
        k,
        &|dt| {
            Box::new(
                RelaxedOneHotCategorical::from_probs(&t1(&tau, dt), &t(&probs, &[R, k], dt))
                    .unwrap(),
            )
        },
        &|i, y| {
            // (K-1)! τ^{K-1} Π(α_k y_k^{-τ-1}) / (Σ α_k y_k^{-τ})^K, in logs.
            let (tt, a) = (tau[i], row(i));
            let kf = k as f64;
            let lfact: f64 = (1..k).map(|j| (j as f64).ln()).sum();
            let num: f64 = (0..k).map(|j| a[j].ln() - (tt + 1.0) * y[j].ln()).sum();
            let den: f64 = (0..k).map(|j| a[j] * y[j].powf(-tt)).sum::<f64>().ln();
            lfact + (kf - 1.0) * tt.ln() + num - kf * den
        },
    );
}

/// A random lower-triangular matrix with positive diagonal, row-major `d × d`.
fn random_tril(rng: &mut PplRng, d: usize) -> Vec<f64> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            l[i * d + j] = if i == j {
                0.5 + rng.uniform_open()
            } else {
                rng.standard_normal() * 0.5
            };
        }
    }
    l
}

fn matmul_t(a: &[f64], d: usize, r: usize) -> Vec<f64> {
    // a is d × r; returns a aᵀ (d × d)
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = (0..r).map(|k| a[i * r + k] * a[j * r + k]).sum();
        }
    }
    out
}

#[test]
fn multivariate_normals() {
    let d = 4;
    let mut rng = PplRng::seed_from_u64(13);
    let loc: Vec<f64> = unif(&mut rng, R * d, -2.0, 2.0);
    let tril: Vec<f64> = (0..R).flat_map(|_| random_tril(&mut rng, d)).collect();
    let cov = |i: usize| matmul_t(&tril[i * d * d..(i + 1) * d * d], d, d);
    let reference = |i: usize, x: &[f64]| {
        sr::MultivariateNormal::new(loc[i * d..(i + 1) * d].to_vec(), cov(i))
            .unwrap()
            .ln_pdf(&DVector::from_vec(x.to_vec()))
    };
    check_vector(
        "MultivariateNormal",
        d,
        &|dt| {
            Box::new(
                MultivariateNormal::new(&t(&loc, &[R, d], dt), &t(&tril, &[R, d, d], dt)).unwrap(),
            )
        },
        &reference,
    );
    let covs: Vec<f64> = (0..R).flat_map(cov).collect();
    check_vector(
        "MultivariateNormal(covariance)",
        d,
        &|dt| {
            Box::new(
                MultivariateNormal::from_covariance(
                    &t(&loc, &[R, d], dt),
                    &t(&covs, &[R, d, d], dt),
                )
                .unwrap(),
            )
        },
        &reference,
    );
    let sd: Vec<f64> = log_unif(&mut rng, R * d, 0.1, 3.0);
    check_vector(
        "MultivariateNormal(diagonal)",
        d,
        &|dt| {
            Box::new(
                MultivariateNormal::diagonal(&t(&loc, &[R, d], dt), &t(&sd, &[R, d], dt)).unwrap(),
            )
        },
        &|i, x| {
            (0..d)
                .map(|j| {
                    sr::Normal::new(loc[i * d + j], sd[i * d + j])
                        .unwrap()
                        .ln_pdf(x[j])
                })
                .sum()
        },
    );
    let r = 2;
    let w: Vec<f64> = unif(&mut rng, R * d * r, -1.0, 1.0);
    let diag: Vec<f64> = log_unif(&mut rng, R * d, 0.2, 2.0);
    check_vector(
        "LowRankMultivariateNormal",
        d,
        &|dt| {
            Box::new(
                LowRankMultivariateNormal::new(
                    &t(&loc, &[R, d], dt),
                    &t(&w, &[R, d, r], dt),
                    &t(&diag, &[R, d], dt),
                )
                .unwrap(),
            )
        },
        &|i, x| {
            let mut c = matmul_t(&w[i * d * r..(i + 1) * d * r], d, r);
            for j in 0..d {
                c[j * d + j] += diag[i * d + j];
            }
            sr::MultivariateNormal::new(loc[i * d..(i + 1) * d].to_vec(), c)
                .unwrap()
                .ln_pdf(&DVector::from_vec(x.to_vec()))
        },
    );
}

#[test]
fn mixture_independent_masked() {
    let k = 3;
    let mut rng = PplRng::seed_from_u64(14);
    let w = simplex(&mut rng, k);
    let mu = unif(&mut rng, R * k, -3.0, 3.0);
    let sd = log_unif(&mut rng, R * k, 0.2, 2.0);
    check(
        "MixtureSameFamily",
        &|dt| {
            let mix = Categorical::from_probs(&t(&w, &[R, k], dt)).unwrap();
            let comp = Normal::new(&t(&mu, &[R, k], dt), &t(&sd, &[R, k], dt)).unwrap();
            Box::new(MixtureSameFamily::new(mix, comp.into_dyn()).unwrap())
        },
        &|i, x| {
            let terms: Vec<f64> = (0..k)
                .map(|j| {
                    w[i * k + j].ln()
                        + sr::Normal::new(mu[i * k + j], sd[i * k + j])
                            .unwrap()
                            .ln_pdf(x)
                })
                .collect();
            let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
        },
    );
    // Independent sums the base log_prob over the reinterpreted dims.
    let base = Normal::new(&t(&mu, &[R, k], DType::F64), &t(&sd, &[R, k], DType::F64)).unwrap();
    let x = base.sample(&mut rng, &[M]).unwrap();
    let summed = host(&base.log_prob(&x).unwrap().sum(2).unwrap());
    let ind = base.clone().to_event(1).unwrap();
    assert_eq!(ind.batch_shape(), &[R]);
    assert_eq!(ind.event_shape(), &[k]);
    assert_close(
        "Independent",
        &host(&ind.log_prob(&x).unwrap()),
        &summed,
        1e-12,
    );
    // Masked zeroes the masked-out elements and keeps the rest.
    let mask: Vec<f64> = (0..R * k).map(|i| (i % 2) as f64).collect();
    let masked = base.clone().mask(&t(&mask, &[R, k], DType::F64)).unwrap();
    let lp = host(&base.log_prob(&x).unwrap());
    let want: Vec<f64> = lp
        .iter()
        .enumerate()
        .map(|(i, v)| v * mask[i % (R * k)])
        .collect();
    assert_close("Masked", &host(&masked.log_prob(&x).unwrap()), &want, 0.0);
}

#[test]
fn integer_values_are_accepted_by_discrete_families() {
    let p = Tensor::new(&[0.2f64, 0.3, 0.5], &candle_core::Device::Cpu).unwrap();
    let d = Categorical::from_probs(&p).unwrap();
    let idx = Tensor::new(&[2u32, 0, 1], &candle_core::Device::Cpu).unwrap();
    assert_close(
        "Categorical(u32)",
        &host(&d.log_prob(&idx).unwrap()),
        &[0.5f64.ln(), 0.2f64.ln(), 0.3f64.ln()],
        1e-12,
    );
}
