//! Every validation error path: a typed error naming the family, parameter and shapes.

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use ppl_core::prelude::*;

const F: DType = DType::F64;

fn invalid<T: std::fmt::Debug>(r: Result<T>, family: &str, param: &str, needle: &str) {
    match r {
        Err(PplError::InvalidParameter {
            family: f,
            param: p,
            reason,
        }) => {
            assert_eq!(f, family);
            assert_eq!(p, param);
            assert!(
                reason.contains(needle),
                "reason `{reason}` lacks `{needle}`"
            );
        }
        other => panic!("{family}.{param}: expected InvalidParameter, got {other:?}"),
    }
}

fn shape<T: std::fmt::Debug>(r: Result<T>, family: &str, needles: &[&str]) {
    match r {
        Err(e @ PplError::Shape { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(family), "`{msg}` does not name {family}");
            for n in needles {
                assert!(msg.contains(n), "`{msg}` lacks `{n}`");
            }
        }
        other => panic!("{family}: expected Shape error, got {other:?}"),
    }
}

fn outside<T: std::fmt::Debug>(r: Result<T>, family: &str) {
    match r {
        Err(PplError::OutsideSupport { family: f, .. }) => assert_eq!(f, family),
        other => panic!("{family}: expected OutsideSupport, got {other:?}"),
    }
}

fn v(x: &[f64]) -> Tensor {
    t1(x, F)
}

#[test]
fn scale_and_rate_parameters() {
    let ok = v(&[0.0, 1.0]);
    invalid(
        Normal::new(&v(&[0.0, f64::NAN]), &v(&[1.0, 1.0])),
        "Normal",
        "loc",
        "finite",
    );
    invalid(
        Normal::new(&ok, &v(&[1.0, -1.0])),
        "Normal",
        "scale",
        "positive",
    );
    invalid(
        Normal::new(&ok, &v(&[1.0, f64::INFINITY])),
        "Normal",
        "scale",
        "finite",
    );
    invalid(
        Normal::new(&ok, &v(&[0.0, 1.0])),
        "Normal",
        "scale",
        "index [0]",
    );
    invalid(
        LogNormal::new(&ok, &v(&[1.0, 0.0])),
        "LogNormal",
        "scale",
        "positive",
    );
    invalid(
        HalfNormal::new(&v(&[-1.0])),
        "HalfNormal",
        "scale",
        "positive",
    );
    invalid(
        Laplace::new(&ok, &v(&[f64::NAN, 1.0])),
        "Laplace",
        "scale",
        "finite",
    );
    invalid(
        Cauchy::new(&ok, &v(&[-2.0, 1.0])),
        "Cauchy",
        "scale",
        "positive",
    );
    invalid(
        Exponential::new(&v(&[0.0])),
        "Exponential",
        "rate",
        "positive",
    );
    invalid(Poisson::new(&v(&[-1.0])), "Poisson", "rate", "positive");
    invalid(
        StudentT::new(&v(&[-1.0]), &ok, &ok.ones_like().unwrap()),
        "StudentT",
        "df",
        "positive",
    );
    invalid(
        Gamma::new(&v(&[0.0]), &v(&[1.0])),
        "Gamma",
        "concentration",
        "positive",
    );
    invalid(
        Gamma::new(&v(&[1.0]), &v(&[-1.0])),
        "Gamma",
        "rate",
        "positive",
    );
    invalid(
        InverseGamma::new(&v(&[1.0]), &v(&[0.0])),
        "InverseGamma",
        "scale",
        "positive",
    );
    invalid(
        Beta::new(&v(&[1.0]), &v(&[-0.5])),
        "Beta",
        "concentration0",
        "positive",
    );
    invalid(
        VonMises::new(&v(&[0.0]), &v(&[-1.0])),
        "VonMises",
        "concentration",
        "non-negative",
    );
    invalid(
        RelaxedBernoulli::from_probs(&v(&[0.0]), &v(&[0.5])),
        "RelaxedBernoulli",
        "temperature",
        "positive",
    );
    invalid(
        RelaxedOneHotCategorical::from_logits(&v(&[-1.0]), &v(&[0.0, 1.0])),
        "RelaxedOneHotCategorical",
        "temperature",
        "positive",
    );
    invalid(
        Uniform::new(&v(&[0.0, 2.0]), &v(&[1.0, 2.0])),
        "Uniform",
        "high",
        "greater than `low`",
    );
    invalid(
        Uniform::new(&v(&[f64::NAN]), &v(&[1.0])),
        "Uniform",
        "low",
        "finite",
    );
}

#[test]
fn probability_parameters() {
    invalid(
        Bernoulli::from_probs(&v(&[0.5, 1.5])),
        "Bernoulli",
        "probs",
        "in [0, 1]",
    );
    invalid(
        Bernoulli::from_logits(&v(&[f64::NAN])),
        "Bernoulli",
        "logits",
        "finite",
    );
    invalid(
        Binomial::from_probs(&v(&[2.5]), &v(&[0.5])),
        "Binomial",
        "total_count",
        "integer",
    );
    invalid(
        Binomial::from_probs(&v(&[-1.0]), &v(&[0.5])),
        "Binomial",
        "total_count",
        "integer",
    );
    invalid(
        Binomial::from_probs(&v(&[3.0]), &v(&[-0.1])),
        "Binomial",
        "probs",
        "in [0, 1]",
    );
    invalid(
        Geometric::from_probs(&v(&[0.0])),
        "Geometric",
        "probs",
        "(0, 1]",
    );
    invalid(
        Categorical::from_probs(&v(&[0.5, 0.6])),
        "Categorical",
        "probs",
        "simplex",
    );
    invalid(
        Categorical::from_probs(&v(&[1.5, -0.5])),
        "Categorical",
        "probs",
        "simplex",
    );
    invalid(
        Categorical::from_logits(&v(&[0.0, f64::INFINITY])),
        "Categorical",
        "logits",
        "finite",
    );
    invalid(
        OneHotCategorical::from_probs(&v(&[0.2, 0.2])),
        "OneHotCategorical",
        "probs",
        "simplex",
    );
    invalid(
        Dirichlet::new(&v(&[1.0, -1.0])),
        "Dirichlet",
        "concentration",
        "positive",
    );
    shape(Dirichlet::new(&s(1.0)), "Dirichlet", &["[..., K]", "[]"]);
    shape(
        Categorical::from_probs(&s(1.0)),
        "Categorical",
        &["[..., K]"],
    );
}

#[test]
fn matrix_parameters() {
    let loc = v(&[0.0, 0.0]);
    let upper = t(&[1.0, 0.5, 0.0, 1.0], &[2, 2], F);
    invalid(
        MultivariateNormal::new(&loc, &upper),
        "MultivariateNormal",
        "scale_tril",
        "lower-triangular",
    );
    let neg_diag = t(&[1.0, 0.0, 0.3, -1.0], &[2, 2], F);
    invalid(
        MultivariateNormal::new(&loc, &neg_diag),
        "MultivariateNormal",
        "scale_tril",
        "index [1, 1]",
    );
    let not_pd = t(&[1.0, 2.0, 2.0, 1.0], &[2, 2], F);
    invalid(
        MultivariateNormal::from_covariance(&loc, &not_pd),
        "MultivariateNormal",
        "covariance_matrix",
        "not positive definite",
    );
    shape(
        MultivariateNormal::new(&v(&[0.0, 0.0, 0.0]), &t(&[1.0, 0.0, 0.0, 1.0], &[2, 2], F)),
        "MultivariateNormal",
        &["[3]", "[2, 2]"],
    );
    invalid(
        MultivariateNormal::diagonal(&loc, &v(&[1.0, 0.0])),
        "MultivariateNormal",
        "scale_diag",
        "positive",
    );
    let w = t(&[1.0, 1.0], &[2, 1], F);
    invalid(
        LowRankMultivariateNormal::new(&loc, &w, &v(&[1.0, 0.0])),
        "LowRankMultivariateNormal",
        "cov_diag",
        "positive",
    );
    shape(
        LowRankMultivariateNormal::new(&loc, &t(&[1.0, 1.0, 1.0], &[3, 1], F), &v(&[1.0, 1.0])),
        "LowRankMultivariateNormal",
        &["`cov_factor` [3, 1]"],
    );
}

#[test]
fn shapes_dtypes_and_wrappers() {
    shape(
        Normal::new(&v(&[0.0, 0.0, 0.0]), &v(&[1.0, 1.0])),
        "Normal",
        &["`loc` [3]", "`scale` [2]"],
    );
    let f32s = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
    shape(Normal::new(&v(&[0.0]), &f32s), "Normal", &["dtype"]);
    let ints = Tensor::new(&[1u32], &Device::Cpu).unwrap();
    shape(Normal::new(&ints, &ints), "Normal", &["floating-point"]);

    let n = Normal::new(&t(&[0.0; 6], &[2, 3], F), &t(&[1.0; 6], &[2, 3], F)).unwrap();
    shape(
        n.clone().to_event(3),
        "Independent",
        &["3 batch dims", "[2, 3]"],
    );
    shape(
        n.clone().mask(&v(&[1.0, 0.0])),
        "Masked",
        &["mask shape [2]", "[2, 3]"],
    );
    shape(
        n.expand(&[4, 3]),
        "Normal",
        &["cannot expand", "[2, 3]", "[4, 3]"],
    );
    shape(Delta::new(&v(&[1.0]), 2), "Delta", &["event_dim 2"]);
    invalid(Delta::new(&v(&[f64::NAN]), 0), "Delta", "v", "finite");

    let mix = Categorical::from_probs(&v(&[0.5, 0.5])).unwrap();
    let comp = Normal::new(&v(&[0.0, 0.0, 0.0]), &v(&[1.0, 1.0, 1.0])).unwrap();
    shape(
        MixtureSameFamily::new(mix, comp.into_dyn()),
        "MixtureSameFamily",
        &["[3]", "[2]"],
    );
}

#[test]
fn log_prob_values_are_checked() {
    let n = Normal::new(&t(&[0.0; 4], &[4], F), &t(&[1.0; 4], &[4], F)).unwrap();
    shape(
        n.log_prob(&t(&[0.0; 6], &[2, 3], F)),
        "Normal",
        &["value shape [2, 3]", "batch shape [4]"],
    );
    let ind = n.clone().to_event(1).unwrap();
    shape(
        ind.log_prob(&v(&[0.0; 3])),
        "Normal",
        &["value shape [3]", "event shape [4]"],
    );
    outside(
        Normal::new(&v(&[0.0]), &v(&[1.0]))
            .unwrap()
            .log_prob(&v(&[f64::NAN])),
        "Normal",
    );
    outside(
        Gamma::new(&v(&[1.0]), &v(&[1.0]))
            .unwrap()
            .log_prob(&v(&[-1.0])),
        "Gamma",
    );
    outside(
        Beta::new(&v(&[1.0]), &v(&[1.0]))
            .unwrap()
            .log_prob(&v(&[1.5])),
        "Beta",
    );
    outside(
        Bernoulli::from_probs(&v(&[0.3]))
            .unwrap()
            .log_prob(&v(&[0.5])),
        "Bernoulli",
    );
    outside(
        Poisson::new(&v(&[1.0])).unwrap().log_prob(&v(&[1.5])),
        "Poisson",
    );
    outside(
        Categorical::from_probs(&v(&[0.5, 0.5]))
            .unwrap()
            .log_prob(&v(&[2.0])),
        "Categorical",
    );
    outside(
        Binomial::from_probs(&v(&[3.0]), &v(&[0.5]))
            .unwrap()
            .log_prob(&v(&[4.0])),
        "Binomial",
    );
    outside(
        Uniform::new(&v(&[0.0]), &v(&[1.0]))
            .unwrap()
            .log_prob(&v(&[1.0])),
        "Uniform",
    );
    outside(
        Dirichlet::new(&v(&[1.0, 1.0]))
            .unwrap()
            .log_prob(&v(&[0.7, 0.7])),
        "Dirichlet",
    );
    outside(
        OneHotCategorical::from_probs(&v(&[0.5, 0.5]))
            .unwrap()
            .log_prob(&v(&[1.0, 1.0])),
        "OneHotCategorical",
    );
    let msg = Gamma::new(&v(&[1.0]), &v(&[1.0]))
        .unwrap()
        .log_prob(&v(&[-1.0]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("positive") && msg.contains("-1"), "{msg}");
}

#[test]
fn unavailable_quantities_and_kl_pairs() {
    let c = Cauchy::new(&v(&[0.0]), &v(&[1.0])).unwrap();
    assert!(matches!(
        c.mean(),
        Err(PplError::NotAvailable {
            family: "Cauchy",
            quantity: "mean",
            ..
        })
    ));
    let b = Binomial::from_probs(&v(&[3.0]), &v(&[0.5])).unwrap();
    assert!(matches!(
        b.entropy(),
        Err(PplError::NotAvailable {
            family: "Binomial",
            quantity: "entropy",
            ..
        })
    ));
    let n = Normal::new(&v(&[0.0]), &v(&[1.0])).unwrap();
    match kl_divergence(&n, &c) {
        Err(PplError::NoAnalyticKl { p, q }) => {
            assert_eq!((p.as_str(), q.as_str()), ("Normal", "Cauchy"))
        }
        other => panic!("expected NoAnalyticKl, got {other:?}"),
    }
    let e = kl_divergence(&n.clone().to_event(1).unwrap(), &n.to_event(0).unwrap()).unwrap_err();
    assert!(e.to_string().contains("different numbers of dims"));
}

#[test]
fn validation_can_be_disabled_per_thread() {
    {
        let _off = ppl_core::validation::disable();
        // Accepted (and NaN-producing) while validation is off...
        let n = Normal::new(&v(&[0.0]), &v(&[-1.0])).unwrap();
        assert!(host(&n.log_prob(&v(&[0.0])).unwrap())[0].is_nan());
        // ...and another thread still validates.
        std::thread::spawn(|| assert!(Normal::new(&v(&[0.0]), &v(&[-1.0])).is_err()))
            .join()
            .unwrap();
    }
    assert!(Normal::new(&v(&[0.0]), &v(&[-1.0])).is_err());
}

#[test]
fn device_names() {
    assert!(matches!(ppl_core::device_from_name("cpu"), Ok(Device::Cpu)));
    assert!(matches!(
        ppl_core::device_from_name("tpu"),
        Err(PplError::InvalidConfig { .. })
    ));
    assert!(matches!(
        ppl_core::device_from_name("cuda:x"),
        Err(PplError::InvalidConfig { .. })
    ));
    #[cfg(not(feature = "cuda"))]
    assert!(ppl_core::best_device().unwrap().is_cpu());
}

#[test]
fn linalg_shape_errors() {
    use ppl_core::linalg::{cholesky, matvec, solve_lower_triangular};
    shape(
        cholesky(&t(&[1.0; 6], &[2, 3], F)),
        "cholesky",
        &["square", "[2, 3]"],
    );
    let l = t(&[1.0, 0.0, 0.5, 1.0], &[2, 2], F);
    shape(
        solve_lower_triangular(&l, &t(&[1.0; 3], &[3, 1], F)),
        "solve_lower_triangular",
        &["[3, 1]", "[2, 2]"],
    );
    shape(
        matvec(&l, &v(&[1.0, 2.0, 3.0])),
        "matvec",
        &["[2, 2]", "[3]"],
    );
    // Exact small cases: L = [[2, 0], [1, 3]]; L⁻¹ [2, 7] = [1, 2]; chol(L Lᵀ) = L.
    let l = t(&[2.0, 0.0, 1.0, 3.0], &[2, 2], F);
    let x = solve_lower_triangular(&l, &t(&[2.0, 7.0], &[2, 1], F)).unwrap();
    assert_eq!(host(&x), vec![1.0, 2.0]);
    let a = t(&[4.0, 2.0, 2.0, 10.0], &[2, 2], F);
    assert_eq!(host(&cholesky(&a).unwrap()), vec![2.0, 0.0, 1.0, 3.0]);
    assert_eq!(host(&matvec(&l, &v(&[1.0, 2.0])).unwrap()), vec![2.0, 7.0]);
}

/// Issue 11: a non-symmetric covariance was accepted (only its lower triangle is read).
#[test]
fn mvn_from_covariance_rejects_asymmetry_beyond_a_relative_tolerance() {
    let loc = t1(&[0.0, 0.0], F);
    let bad = t(&[2.0, 0.5, 0.2, 1.0], &[2, 2], F);
    invalid(
        MultivariateNormal::from_covariance(&loc, &bad),
        "MultivariateNormal",
        "covariance_matrix",
        "largest asymmetry |Σ[1][0] - Σ[0][1]| = |0.2 - 0.5|",
    );
    // A batch: the second matrix is the bad one, and its batch index is named.
    let batch = t(&[2.0, 0.5, 0.5, 1.0, 2.0, 0.5, 0.2, 1.0], &[2, 2, 2], F);
    invalid(
        MultivariateNormal::from_covariance(&t(&[0.0; 4], &[2, 2], F), &batch),
        "MultivariateNormal",
        "covariance_matrix",
        "at batch index [1]",
    );
    // Rounding-level asymmetry relative to the matrix scale is accepted, at any scale:
    // 1e-9 relative passes in f64 (tolerance √ε ≈ 1.5e-8), 1e-7 relative fails.
    for scale in [1e-6, 1.0, 1e8] {
        let near = t(
            &[2.0 * scale, 0.5 * scale, 0.5 * scale * (1.0 + 1e-9), scale],
            &[2, 2],
            F,
        );
        assert!(MultivariateNormal::from_covariance(&loc, &near).is_ok());
        let off = t(
            &[
                2.0 * scale,
                0.5 * scale,
                0.5 * scale + 2.0 * scale * 1e-7,
                scale,
            ],
            &[2, 2],
            F,
        );
        assert!(MultivariateNormal::from_covariance(&loc, &off).is_err());
    }
    // f32: tolerance √ε_f32 ≈ 3.5e-4 relative.
    let f32_near = t(&[2.0, 0.5, 0.5001, 1.0], &[2, 2], DType::F32);
    assert!(MultivariateNormal::from_covariance(&t1(&[0.0, 0.0], DType::F32), &f32_near).is_ok());
    // With validation off the check is skipped (the lower triangle is used, as documented).
    let _off = ppl_core::validation::disable();
    assert!(MultivariateNormal::from_covariance(&loc, &bad).is_ok());
}

fn config_error<T: std::fmt::Debug>(r: Result<T>, needles: &[&str]) {
    match r {
        Err(PplError::InvalidConfig { context, message }) => {
            assert_eq!(context, "plate");
            for n in needles {
                assert!(message.contains(n), "`{message}` lacks `{n}`");
            }
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// Issue 11: explicit subsample indices were not checked against the plate size, nor for
/// duplicates.
#[test]
fn plate_subsample_indices_are_checked() {
    let mut ctx = Ctx::new(0);
    let opts = |idx: &[u32]| PlateOpts {
        subsample: Some(Tensor::new(idx, &Device::Cpu).unwrap()),
        ..PlateOpts::default()
    };
    config_error(
        ctx.plate("data", 5, opts(&[0, 7, 2]), |_, _| Ok(())),
        &["plate `data`", "index 7 at position 1", "size 5"],
    );
    config_error(
        ctx.plate("data", 5, opts(&[3, 1, 3]), |_, _| Ok(())),
        &[
            "plate `data`",
            "index 3 is repeated",
            "positions 0 and 2",
            "size 5",
        ],
    );
    let neg = PlateOpts {
        subsample: Some(Tensor::new(&[1i64, -1], &Device::Cpu).unwrap()),
        ..PlateOpts::default()
    };
    config_error(
        ctx.plate("rows", 4, neg, |_, _| Ok(())),
        &["plate `rows`", "index -1 at position 1", "size 4"],
    );
    // Valid indices (last one included) still work, and no plate was left active.
    let got = ctx
        .plate("data", 5, opts(&[4, 0, 2]), |_, g| g.indices())
        .unwrap();
    assert_eq!(got.to_vec1::<u32>().unwrap(), vec![4, 0, 2]);
}

/// Issue 11: `factor` with a NaN or +inf log weight was accepted and the log joint became
/// NaN. -inf (a zero weight) stays legitimate.
#[test]
fn factor_rejects_nan_and_positive_infinity() {
    for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let mut ctx = Ctx::new(0);
        let w = t1(&[0.0, -1.0, bad], F);
        let r = ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
            ctx.factor("penalty", &w)
        });
        match r {
            Err(PplError::Site {
                site,
                plates,
                message,
            }) => {
                assert_eq!(site, "penalty");
                assert!(plates.contains("`data` (size 3)"), "{plates}");
                assert!(
                    message.contains(&format!("is {shown} at index [2]")),
                    "{message}"
                );
            }
            other => panic!("expected a site error, got {other:?}"),
        }
    }
    let mut ctx = Ctx::new(0);
    let w = t1(&[0.0, f64::NEG_INFINITY], F);
    let trace = ctx.trace(|ctx| ctx.factor("zero_weight", &w)).unwrap().1;
    assert_eq!(scalar(&trace.log_joint().unwrap()), f64::NEG_INFINITY);
}
