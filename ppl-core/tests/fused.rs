//! The fused CPU kernels (`ppl_core::fused`, `ppl_core::nn::Linear`, the Bernoulli and
//! Normal log-densities) against the same maths in plain candle ops and against finite differences:
//! values and gradients for f32 and f64, 2-D and 3-D inputs, data and tracked inputs,
//! activations, and the fallbacks (non-contiguous operands, no bias, broadcasting values).
//!
//! Tolerances: f64 sides agree to ~1e-12 (same maths, different summation order in the
//! GEMM); f32 to 2e-5 relative to the magnitude (sums of up to 64 products of O(1) terms).
//! Central differences (f64, h = 1e-6) have ~1e-9 error; their tolerance is 1e-6.

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use ppl_core::fused::{self, Activation};
use ppl_core::nn::Linear;
use ppl_core::prelude::*;

fn randn(rng: &mut PplRng, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = rng.normals(n).into_iter().map(|x| x * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let (g, w) = (host(got), host(want));
    let scale = w.iter().fold(1.0f64, |a, v| a.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol * scale,
            "{what}[{i}]: {a} vs {b} (scale {scale})"
        );
    }
}

/// y = linear(x) under the current fused setting, loss Σ y ⊙ R, and its gradients.
fn layer_and_grads(
    x: &Tensor,
    w: &Var,
    b: &Var,
    act: Activation,
    r: &Tensor,
) -> (Tensor, GradStore) {
    let y = fused::linear(x, w.as_tensor(), Some(b.as_tensor()), act).unwrap();
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    (y, g)
}

#[test]
fn fused_linear_matches_plain_candle_values_and_gradients() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        for act in [Activation::Identity, Activation::Relu] {
            for x_shape in [vec![5usize, 8], vec![2, 3, 8]] {
                for x_tracked in [false, true] {
                    let mut rng = PplRng::seed_from_u64(3);
                    let x = randn(&mut rng, &x_shape, 1.0, dtype);
                    let xv = Var::from_tensor(&x).unwrap();
                    let x_in = if x_tracked {
                        xv.as_tensor().clone()
                    } else {
                        x.clone()
                    };
                    let w = Var::from_tensor(&randn(&mut rng, &[6, 8], 0.5, dtype)).unwrap();
                    let b = Var::from_tensor(&randn(&mut rng, &[6], 0.5, dtype)).unwrap();
                    let mut out_shape = x_shape.clone();
                    *out_shape.last_mut().unwrap() = 6;
                    let r = randn(&mut rng, &out_shape, 1.0, dtype);
                    let what = format!("{dtype:?} {act:?} x {x_shape:?} tracked {x_tracked}");

                    let (yf, gf) = layer_and_grads(&x_in, &w, &b, act, &r);
                    let (yp, gp) = {
                        let _plain = fused::disable();
                        layer_and_grads(&x_in, &w, &b, act, &r)
                    };
                    assert_close(&format!("{what}: y"), &yf, &yp, tol);
                    for (name, t) in [("W", w.as_tensor()), ("b", b.as_tensor())] {
                        let (a, p) = (gf.get(t).unwrap(), gp.get(t).unwrap());
                        assert_close(&format!("{what}: d{name}"), a, p, tol);
                    }
                    if x_tracked {
                        let (a, p) = (gf.get(&x_in).unwrap(), gp.get(&x_in).unwrap());
                        assert_close(&format!("{what}: dx"), a, p, tol);
                    } else {
                        // No gradient is computed for data.
                        assert!(gf.get(&x_in).is_none(), "{what}: gradient for data");
                    }
                    if act == Activation::Relu {
                        assert!(host(&yf).iter().all(|v| *v >= 0.0));
                        assert!(host(&yf).contains(&0.0), "{what}: no unit off");
                    }
                }
            }
        }
    }
}

#[test]
fn fused_linear_gradients_match_finite_differences() {
    let mut rng = PplRng::seed_from_u64(5);
    let x0 = randn(&mut rng, &[4, 5], 1.0, DType::F64);
    let w0 = randn(&mut rng, &[3, 5], 0.7, DType::F64);
    let b0 = randn(&mut rng, &[3], 0.7, DType::F64);
    let r = randn(&mut rng, &[4, 3], 1.0, DType::F64);
    // loss = Σ sin(relu(x Wᵀ + b)) ⊙ R: a non-linear upstream gradient.
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| -> Tensor {
        let y = fused::linear(x, w, Some(b), Activation::Relu).unwrap();
        (y.sin().unwrap() * &r).unwrap().sum_all().unwrap()
    };
    let (xv, wv, bv) = (
        Var::from_tensor(&x0).unwrap(),
        Var::from_tensor(&w0).unwrap(),
        Var::from_tensor(&b0).unwrap(),
    );
    let grads = loss(xv.as_tensor(), wv.as_tensor(), bv.as_tensor())
        .backward()
        .unwrap();
    let h = 1e-6;
    for (which, base) in [("x", &x0), ("W", &w0), ("b", &b0)] {
        let analytic = host(
            grads
                .get(
                    [xv.as_tensor(), wv.as_tensor(), bv.as_tensor()][match which {
                        "x" => 0,
                        "W" => 1,
                        _ => 2,
                    }],
                )
                .unwrap(),
        );
        let flat = host(base);
        for i in 0..flat.len() {
            let shift = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                Tensor::from_vec(v, base.dims(), &Device::Cpu).unwrap()
            };
            let f = |t: Tensor| -> f64 {
                let (x, w, b) = match which {
                    "x" => (t, w0.clone(), b0.clone()),
                    "W" => (x0.clone(), t, b0.clone()),
                    _ => (x0.clone(), w0.clone(), t),
                };
                loss(&x, &w, &b).to_scalar::<f64>().unwrap()
            };
            let fd = (f(shift(h)) - f(shift(-h))) / (2.0 * h);
            assert!(
                (fd - analytic[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "d{which}[{i}]: finite difference {fd}, fused {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn fused_linear_falls_back_to_candle_ops_where_it_does_not_apply() {
    let mut rng = PplRng::seed_from_u64(9);
    let w = randn(&mut rng, &[3, 4], 1.0, DType::F32);
    let b = randn(&mut rng, &[3], 1.0, DType::F32);
    // A non-contiguous input (a transpose), no bias: both take the plain path and agree
    // with candle's matmul.
    let xt = randn(&mut rng, &[4, 5], 1.0, DType::F32).t().unwrap();
    assert!(!xt.is_contiguous());
    let y = fused::linear(&xt, &w, Some(&b), Activation::Identity).unwrap();
    let want = xt
        .matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&b)
        .unwrap();
    assert_close("non-contiguous", &y, &want, 1e-6);
    let y = fused::linear(&xt, &w, None, Activation::Relu).unwrap();
    let want = xt.matmul(&w.t().unwrap()).unwrap().relu().unwrap();
    assert_close("no bias", &y, &want, 1e-6);
}

#[test]
fn linear_layer_initialises_as_candle_nn_and_rejects_bad_inputs() {
    let (s1, s2) = (ParamStore::new(), ParamStore::new());
    let ours = Linear::build(
        6,
        4,
        Activation::Relu,
        s1.var_builder(DType::F32, &Device::Cpu, 7).pp("fc"),
    )
    .unwrap();
    let theirs =
        candle_nn::linear(6, 4, s2.var_builder(DType::F32, &Device::Cpu, 7).pp("fc")).unwrap();
    assert_eq!(host(ours.weight()), host(theirs.weight()));
    assert_eq!(host(ours.bias().unwrap()), host(theirs.bias().unwrap()));
    let x = Tensor::ones((3, 6), DType::F32, &Device::Cpu).unwrap();
    let want = candle_core::Module::forward(&theirs, &x)
        .unwrap()
        .relu()
        .unwrap();
    assert_close("layer", &ours.forward(&x).unwrap(), &want, 1e-6);
    assert_eq!(ours.activation(), Activation::Relu);

    let bad = Tensor::ones((3, 5), DType::F32, &Device::Cpu).unwrap();
    let e = ours.forward(&bad).unwrap_err().to_string();
    assert!(e.contains("[3, 5]") && e.contains("6"), "{e}");
    let f64_in = Tensor::ones((3, 6), DType::F64, &Device::Cpu).unwrap();
    let e = ours.forward(&f64_in).unwrap_err().to_string();
    assert!(e.contains("F64") && e.contains("F32"), "{e}");
    let w = Tensor::ones((4, 6), DType::F32, &Device::Cpu).unwrap();
    let e = Linear::new(
        w.clone(),
        Some(Tensor::ones(5, DType::F32, &Device::Cpu).unwrap()),
        Activation::Identity,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[4]") && e.contains("[5]"), "{e}");
    assert!(Linear::new(
        Tensor::ones(4, DType::F32, &Device::Cpu).unwrap(),
        None,
        Activation::Identity
    )
    .is_err());
}

/// Σ log Bernoulli(x | logits) and its gradient with respect to the logits.
fn bernoulli_and_grad(logits: &Var, x: &Tensor) -> (Tensor, Tensor) {
    let lp = Bernoulli::from_logits(logits.as_tensor())
        .unwrap()
        .log_prob(x)
        .unwrap();
    let g = lp.sum_all().unwrap().backward().unwrap();
    (lp, g.get(logits.as_tensor()).unwrap().clone())
}

#[test]
fn fused_bernoulli_log_prob_matches_plain_ops_and_closed_forms() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-6 } else { 1e-13 };
        let mut rng = PplRng::seed_from_u64(1);
        // Logits from −60 to 60 (both tails, where e^{−|l|} underflows in f32) and exact 0.
        let mut l: Vec<f64> = rng.normals(200).into_iter().map(|v| v * 8.0).collect();
        l.extend([-60.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 60.0, 0.0]);
        let n = l.len();
        let logits = Var::from_tensor(
            &Tensor::from_vec(l.clone(), n, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let xs: Vec<f64> = (0..n).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
        let x = Tensor::from_vec(xs.clone(), n, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let (lpf, gf) = bernoulli_and_grad(&logits, &x);
        let (lpp, gp) = {
            let _plain = fused::disable();
            bernoulli_and_grad(&logits, &x)
        };
        assert_close(&format!("{dtype:?} log_prob"), &lpf, &lpp, tol);
        assert_close(&format!("{dtype:?} dlogits"), &gf, &gp, tol);
        // Closed forms, in f64: x·l − softplus(l) and x − σ(l).
        let (lpf, gf) = (host(&lpf), host(&gf));
        for i in 0..n {
            let li = host(logits.as_tensor())[i];
            let softplus = li.max(0.0) + (-li.abs()).exp().ln_1p();
            let want = xs[i] * li - softplus;
            assert!(
                (lpf[i] - want).abs() <= tol * (1.0 + want.abs()) * 4.0,
                "lp l={li}"
            );
            let sig = 1.0 / (1.0 + (-li).exp());
            assert!((gf[i] - (xs[i] - sig)).abs() <= 4.0 * tol, "grad l={li}");
        }
    }
}

#[test]
fn fused_bernoulli_under_plates_to_event_and_broadcast_values() {
    let _v = ppl_core::validation::disable();
    let mut rng = PplRng::seed_from_u64(4);
    let logits = Var::from_tensor(&randn(&mut rng, &[3, 5], 2.0, DType::F32)).unwrap();
    let x = randn(&mut rng, &[3, 5], 1.0, DType::F32)
        .ge(0.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    // Values with an extra leading sample dim broadcast against the logits (plain path),
    // and an event dim through `to_event`: both agree with the plain computation.
    let xs = Tensor::stack(&[&x, &x.affine(-1.0, 1.0).unwrap()], 0).unwrap();
    for value in [&x, &xs] {
        let d = Bernoulli::from_logits(logits.as_tensor())
            .unwrap()
            .to_event(1)
            .unwrap();
        let lp = d.log_prob(value).unwrap();
        let g = lp.sum_all().unwrap().backward().unwrap();
        let (lpp, gp) = {
            let _plain = fused::disable();
            let lp = d.log_prob(value).unwrap();
            let g = lp.sum_all().unwrap().backward().unwrap();
            (lp, g)
        };
        assert_close("to_event log_prob", &lp, &lpp, 2e-6);
        assert_close(
            "to_event grad",
            g.get(logits.as_tensor()).unwrap(),
            gp.get(logits.as_tensor()).unwrap(),
            2e-6,
        );
    }
}

#[test]
fn fused_normal_log_prob_matches_plain_ops_and_finite_differences() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-6 } else { 1e-13 };
        let mut rng = PplRng::seed_from_u64(8);
        let x = Var::from_tensor(&randn(&mut rng, &[4, 3], 2.0, dtype)).unwrap();
        let loc = Var::from_tensor(&randn(&mut rng, &[4, 3], 1.0, dtype)).unwrap();
        let scale = Var::from_tensor(
            &randn(&mut rng, &[4, 3], 0.3, dtype)
                .abs()
                .unwrap()
                .affine(1.0, 0.2)
                .unwrap(),
        )
        .unwrap();
        let r = randn(&mut rng, &[4, 3], 1.0, dtype);
        let run = || {
            let lp = Normal::new(loc.as_tensor(), scale.as_tensor())
                .unwrap()
                .log_prob(x.as_tensor())
                .unwrap();
            let g = (&lp * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (lp, g)
        };
        let (lpf, gf) = run();
        let (lpp, gp) = {
            let _plain = fused::disable();
            run()
        };
        assert_close(&format!("{dtype:?} normal lp"), &lpf, &lpp, tol);
        for (name, t) in [
            ("x", x.as_tensor()),
            ("loc", loc.as_tensor()),
            ("scale", scale.as_tensor()),
        ] {
            assert_close(
                &format!("{dtype:?} d{name}"),
                gf.get(t).unwrap(),
                gp.get(t).unwrap(),
                tol,
            );
        }
        // Closed form of the value, and finite differences of the scale gradient (f64).
        let (xs, ms, ss, lps) = (
            host(x.as_tensor()),
            host(loc.as_tensor()),
            host(scale.as_tensor()),
            host(&lpf),
        );
        for i in 0..xs.len() {
            let z = (xs[i] - ms[i]) / ss[i];
            let want = -0.5 * z * z - ss[i].ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            assert!(
                (lps[i] - want).abs() <= 4.0 * tol * (1.0 + want.abs()),
                "lp[{i}]"
            );
        }
        if dtype == DType::F64 {
            let rs = host(&r);
            let ds = host(gf.get(scale.as_tensor()).unwrap());
            let f = |s: f64, i: usize| {
                let z = (xs[i] - ms[i]) / s;
                rs[i] * (-0.5 * z * z - s.ln())
            };
            for i in 0..xs.len() {
                let fd = (f(ss[i] + 1e-6, i) - f(ss[i] - 1e-6, i)) / 2e-6;
                assert!(
                    (fd - ds[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "dscale[{i}]: {fd} vs {}",
                    ds[i]
                );
            }
        }
    }
    // Broadcast parameters (a scalar scale) take the plain path and agree with it.
    let x = Tensor::new(&[0.5f64, -1.0, 2.0], &Device::Cpu).unwrap();
    let d = Normal::new(
        &Tensor::new(&[0.0f64, 1.0, 0.5], &Device::Cpu).unwrap(),
        &Tensor::new(2.0f64, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let lp = d.log_prob(&x).unwrap();
    let lpp = {
        let _plain = fused::disable();
        d.log_prob(&x).unwrap()
    };
    assert_close("broadcast scale", &lp, &lpp, 1e-14);
}
