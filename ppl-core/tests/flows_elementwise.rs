//! ElementwiseSpline: identity at start, a closed-form value, brute-force Jacobians, round
//! trips, tangents, parameter gradients against finite differences, f32, batch shapes,
//! out-of-range inputs, typed errors.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::flow_checks::{check_bijector, perturb, randn};
use common::host;
use ppl_core::flows::{Bijector, ElementwiseSpline};
use ppl_core::prelude::*;

const DEV: Device = Device::Cpu;

fn layer(store: &ParamStore, dim: usize, bins: usize, dtype: DType) -> ElementwiseSpline {
    ElementwiseSpline::new(store.var_builder(dtype, &DEV, 1), dim, bins, 3.0).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    host(&(a - b).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f64::max)
}

#[test]
fn a_new_layer_is_the_identity() {
    let store = ParamStore::new();
    let l = layer(&store, 3, 6, DType::F64);
    let x = Tensor::new(&[[-5.0f64, -1.2, 0.3], [2.9, 0.0, 7.0]], &DEV).unwrap();
    for inverse in [false, true] {
        let (y, ladj) = if inverse {
            l.to_base(&x, None).unwrap()
        } else {
            l.to_data(&x, None).unwrap()
        };
        assert!(max_abs_diff(&y, &x) < 1e-14);
        assert!(host(&ladj).iter().all(|v| v.abs() < 1e-14));
    }
}

/// The rational-quadratic spline of one bin written out by hand (Durkin et al. eq. 4).
fn rq(xi: f64, yk: f64, h: f64, s: f64, dk: f64, dk1: f64) -> (f64, f64) {
    let t = xi * (1.0 - xi);
    let den = s + (dk1 + dk - 2.0 * s) * t;
    let y = yk + h * (s * xi * xi + dk * t) / den;
    let dy = s * s * (dk1 * xi * xi + 2.0 * s * t + dk * (1.0 - xi).powi(2)) / (den * den);
    (y, dy)
}

#[test]
fn values_match_the_closed_form_spline() {
    // Two bins on [−3, 3]: equal widths (knots −3, 0, 3), heights from softmax([a, −a])
    // with the minimum size, inner derivative min + softplus(c + shift): the layer's output
    // and log-derivative at a point of each bin equal the hand-written formula (1e-12).
    let store = ParamStore::new();
    let l = layer(&store, 1, 2, DType::F64);
    let (a, c) = (0.4, -0.7);
    let raw = Tensor::new(&[[0.0f64, 0.0, a, -a, c]], &DEV).unwrap();
    store.vars()[0].1.set(&raw).unwrap();
    let (b, min) = (3.0, 1e-3);
    let e = (2.0 * a).exp();
    let p0 = e / (e + 1.0);
    let h0 = 2.0 * b * (min + (1.0 - 2.0 * min) * p0);
    let h1 = 2.0 * b - h0;
    let shift = (1.0f64 - min).exp_m1().ln();
    let d1 = min + (1.0 + (c + shift).exp()).ln();
    for x in [-1.7, 0.0, 0.9, 2.5] {
        let (y_want, dy_want) = if x < 0.0 {
            rq((x + b) / b, -b, h0, h0 / b, 1.0, d1)
        } else {
            rq(x / b, -b + h0, h1, h1 / b, d1, 1.0)
        };
        let xt = Tensor::new(&[[x]], &DEV).unwrap();
        let (y, ladj) = l.to_data(&xt, None).unwrap();
        let (y, ladj) = (host(&y)[0], host(&ladj)[0]);
        assert!((y - y_want).abs() < 1e-12, "x {x}: {y} vs {y_want}");
        assert!(
            (ladj - dy_want.ln()).abs() < 1e-12,
            "x {x}: {ladj} vs {}",
            dy_want.ln()
        );
        let back = l
            .to_base(&Tensor::new(&[[y]], &DEV).unwrap(), None)
            .unwrap();
        assert!((host(&back.0)[0] - x).abs() < 1e-12);
    }
}

#[test]
fn perturbed_layers_pass_the_bijector_checks() {
    // Round trip 1e-10, opposite ladjs, ladj against a brute-force Jacobian and tangents
    // against finite differences (1e-6: central differences with h = 1e-6 on a spline
    // whose second derivative is O(10)), with inputs inside and outside [−3, 3].
    for (dim, bins, seed) in [(1, 4, 1u64), (3, 8, 2), (5, 5, 3)] {
        let store = ParamStore::new();
        let l = layer(&store, dim, bins, DType::F64);
        perturb(&store, seed, 0.8);
        let mut rng = PplRng::seed_from_u64(seed + 10);
        let x = randn(&mut rng, &[12, dim], 2.0, DType::F64);
        check_bijector(&l, &x, None, 1e-6, true);
    }
}

#[test]
fn f32_agrees_with_f64_and_round_trips() {
    let s64 = ParamStore::new();
    let l64 = layer(&s64, 4, 6, DType::F64);
    perturb(&s64, 4, 0.8);
    let s32 = ParamStore::new();
    let l32 = layer(&s32, 4, 6, DType::F32);
    s32.vars()[0]
        .1
        .set(&s64.vars()[0].1.as_tensor().to_dtype(DType::F32).unwrap())
        .unwrap();
    let mut rng = PplRng::seed_from_u64(5);
    let x = randn(&mut rng, &[50, 4], 2.0, DType::F64);
    let x32 = x.to_dtype(DType::F32).unwrap();
    let (y64, l64v) = l64.to_data(&x, None).unwrap();
    let (y32, l32v) = l32.to_data(&x32, None).unwrap();
    assert_eq!(y32.dtype(), DType::F32);
    assert!(max_abs_diff(&y32.to_dtype(DType::F64).unwrap(), &y64) < 1e-5);
    assert!(max_abs_diff(&l32v.to_dtype(DType::F64).unwrap(), &l64v) < 1e-4);
    let (back, _) = l32.to_base(&y32, None).unwrap();
    assert!(max_abs_diff(&back, &x32) < 1e-4);
}

#[test]
fn batch_axes_unbatched_inputs_and_tangents_match_row_by_row() {
    // [2, 3, D] inputs, [K, 2, 3, D] tangents and an unbatched [D] input give the row-wise
    // results; a context is ignored (unconditional layer).
    let store = ParamStore::new();
    let l = layer(&store, 3, 5, DType::F64);
    perturb(&store, 6, 0.8);
    let mut rng = PplRng::seed_from_u64(7);
    let x = randn(&mut rng, &[2, 3, 3], 2.0, DType::F64);
    let v = randn(&mut rng, &[4, 2, 3, 3], 1.0, DType::F64);
    let flat = x.reshape((6, 3)).unwrap();
    for inverse in [false, true] {
        let (y, ladj, jv) = if inverse {
            l.to_base_jvp(&x, None, &v).unwrap()
        } else {
            l.to_data_jvp(&x, None, &v).unwrap()
        };
        assert_eq!(y.dims(), &[2, 3, 3]);
        assert_eq!(ladj.dims(), &[2, 3]);
        assert_eq!(jv.dims(), &[4, 2, 3, 3]);
        let (yf, lf) = if inverse {
            l.to_base(&flat, None).unwrap()
        } else {
            l.to_data(&flat, None).unwrap()
        };
        assert!(max_abs_diff(&y.reshape((6, 3)).unwrap(), &yf) < 1e-14);
        assert!(max_abs_diff(&ladj.reshape(6).unwrap(), &lf) < 1e-14);
        for r in 0..6 {
            let row = flat.get(r).unwrap();
            let (yr, lr) = if inverse {
                l.to_base(&row, None).unwrap()
            } else {
                l.to_data(&row, None).unwrap()
            };
            assert_eq!(yr.dims(), &[3]);
            assert_eq!(lr.dims(), &[] as &[usize]);
            assert!(max_abs_diff(&yr, &yf.get(r).unwrap()) < 1e-14);
        }
        // diagonal Jacobian: J v = exp(per-coordinate log-derivative) ⊙ v; with one tangent
        // per coordinate, Σ log of the diagonal of J is the ladj.
        let eye = Tensor::eye(3, DType::F64, &DEV)
            .unwrap()
            .reshape((3, 1, 3))
            .unwrap();
        let (_, lrow, jrow) = if inverse {
            l.to_base_jvp(&flat.narrow(0, 0, 1).unwrap(), None, &eye)
                .unwrap()
        } else {
            l.to_data_jvp(&flat.narrow(0, 0, 1).unwrap(), None, &eye)
                .unwrap()
        };
        let j = host(&jrow);
        let diag_log: f64 = (0..3).map(|i| j[i * 3 + i].ln()).sum();
        assert!((diag_log - host(&lrow)[0]).abs() < 1e-12);
        let ctx = randn(&mut rng, &[2, 3, 2], 1.0, DType::F64);
        let (yc, _) = l.to_data(&x, Some(&ctx)).unwrap();
        let (y0, _) = l.to_data(&x, None).unwrap();
        assert!(max_abs_diff(&yc, &y0) == 0.0);
    }
}

#[test]
fn parameter_gradient_matches_finite_differences_and_is_finite_out_of_range() {
    // loss = Σ_b [½ z_b² − ladj_b] (the negative log-likelihood under a N(0, 1) base, up to
    // a constant) for z = to_base(x): the backward gradient in the raw parameters equals
    // central differences (h = 1e-5, tolerance 1e-6 relative); inputs at ±1e6 and exactly
    // on knots give finite gradients.
    let store = ParamStore::new();
    let l = layer(&store, 2, 4, DType::F64);
    perturb(&store, 8, 0.6);
    let raw: Var = store.vars()[0].1.clone();
    let x = Tensor::new(
        &[[-2.5f64, 0.4], [1.1, -0.3], [2.9, -1.9], [0.0, 1.5]],
        &DEV,
    )
    .unwrap();
    let loss = |l: &ElementwiseSpline, x: &Tensor| -> Tensor {
        let (z, ladj) = l.to_base(x, None).unwrap();
        ((z.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap() - ladj.sum_all().unwrap()).unwrap()
    };
    let grads = loss(&l, &x).backward().unwrap();
    let g = host(grads.get(raw.as_tensor()).unwrap());
    let base = host(raw.as_tensor());
    let shape = raw.dims().to_vec();
    let h = 1e-5;
    for i in 0..base.len() {
        let eval = |delta: f64| -> f64 {
            let mut p = base.clone();
            p[i] += delta;
            raw.set(&Tensor::from_vec(p, shape.as_slice(), &DEV).unwrap())
                .unwrap();
            host(&loss(&l, &x))[0]
        };
        let fd = (eval(h) - eval(-h)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "raw[{i}]: backward {} vs finite differences {fd}",
            g[i]
        );
    }
    raw.set(&Tensor::from_vec(base, shape.as_slice(), &DEV).unwrap())
        .unwrap();
    // Out of range and at the interval's ends: finite values and gradients.
    let far = Tensor::new(&[[1e6f64, -1e6], [3.0, -3.0], [-3.0, 3.0]], &DEV).unwrap();
    let xv = Var::from_tensor(&far).unwrap();
    let out = loss(&l, xv.as_tensor());
    let grads = out.backward().unwrap();
    let gx = host(grads.get(xv.as_tensor()).unwrap());
    let gr = host(grads.get(raw.as_tensor()).unwrap());
    assert!(gx.iter().chain(&gr).all(|v| v.is_finite()));
    // identity tails: ∂loss/∂x = z = x at ±1e6
    assert!((gx[0] - 1e6).abs() < 1e-6 && (gx[1] + 1e6).abs() < 1e-6);
}

#[test]
fn typed_errors_name_the_layer_and_shapes() {
    let store = ParamStore::new();
    let vb = || store.var_builder(DType::F64, &DEV, 0);
    for (dim, bins, bound) in [(0, 4, 3.0), (2, 1, 3.0), (2, 4, -1.0), (2, 4, f64::NAN)] {
        let e = ElementwiseSpline::new(vb(), dim, bins, bound)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ElementwiseSpline"), "{e}");
    }
    let l = ElementwiseSpline::new(vb(), 2, 4, 3.0).unwrap();
    let x = Tensor::zeros((5, 3), DType::F64, &DEV).unwrap();
    let e = l.to_data(&x, None).unwrap_err().to_string();
    assert!(
        e.contains("ElementwiseSpline") && e.contains("[5, 3]"),
        "{e}"
    );
    let x = Tensor::zeros((5, 2), DType::F64, &DEV).unwrap();
    let v = Tensor::zeros((5, 2), DType::F64, &DEV).unwrap();
    let e = l.to_base_jvp(&x, None, &v).unwrap_err().to_string();
    assert!(
        e.contains("ElementwiseSpline") && e.contains("tangent"),
        "{e}"
    );
}
