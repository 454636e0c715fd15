//! Special functions against statrs / high-precision host references, in f64 and f32,
//! and their gradients against central finite differences.

use candle_core::{DType, Device, Tensor, Var};
use ppl_core::special::*;
use statrs::function::gamma::{digamma as digamma_ref, ln_gamma};

fn grid() -> Vec<f64> {
    // 1e-3 .. 1e4 log-spaced plus a few integers and half-integers.
    let mut v: Vec<f64> = (0..80)
        .map(|i| 10f64.powf(-3.0 + 7.0 * i as f64 / 79.0))
        .collect();
    v.extend([0.5, 1.0, 1.5, 2.0, 3.0, 5.5, 6.0, 10.0]);
    v
}

fn eval(f: fn(&Tensor) -> ppl_core::Result<Tensor>, xs: &[f64], dtype: DType) -> Vec<f64> {
    let t = Tensor::new(xs, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    f(&t)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Max relative error, measured against max(|ref|, 1) so that values near zero are judged
/// by absolute error.
fn max_err(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn lgamma_matches_statrs() {
    let xs = grid();
    let want: Vec<f64> = xs.iter().map(|&x| ln_gamma(x)).collect();
    // f64: Stirling truncation < 1e-13 at z >= 6, plus a few ulps of cancellation.
    let e64 = max_err(&eval(lgamma, &xs, DType::F64), &want);
    assert!(e64 < 1e-12, "f64 lgamma error {e64}");
    // f32: ~25 f32 ops, each 6e-8 relative; cancellation near x = 1, 2 loses a few bits.
    let e32 = max_err(&eval(lgamma, &xs, DType::F32), &want);
    assert!(e32 < 5e-6, "f32 lgamma error {e32}");
}

#[test]
fn digamma_matches_statrs() {
    let xs = grid();
    let want: Vec<f64> = xs.iter().map(|&x| digamma_ref(x)).collect();
    let e64 = max_err(&eval(digamma, &xs, DType::F64), &want);
    assert!(e64 < 1e-12, "f64 digamma error {e64}");
    let e32 = max_err(&eval(digamma, &xs, DType::F32), &want);
    assert!(e32 < 5e-6, "f32 digamma error {e32}");
}

#[test]
fn elementary_functions_are_accurate() {
    let xs: Vec<f64> = vec![
        -0.9, -1e-3, -1e-10, -1e-300, 0.0, 1e-300, 1e-10, 1e-3, 0.5, 3.0, 50.0, 700.0,
    ];
    let l: Vec<f64> = xs.iter().map(|x| x.ln_1p()).collect();
    assert!(max_err(&eval(log1p, &xs, DType::F64), &l) < 1e-15);
    let small: Vec<f64> = vec![-30.0, -1e-3, -1e-12, 0.0, 1e-12, 1e-3, 0.7, 20.0];
    let e: Vec<f64> = small.iter().map(|x| x.exp_m1()).collect();
    let got = eval(expm1, &small, DType::F64);
    for (g, w) in got.iter().zip(&e) {
        assert!(
            (g - w).abs() <= 1e-15 * w.abs().max(1e-300),
            "expm1 {g} vs {w}"
        );
    }
    let sp_x: Vec<f64> = vec![-800.0, -40.0, -5.0, 0.0, 1e-8, 5.0, 36.9, 37.1, 800.0];
    let sp: Vec<f64> = sp_x
        .iter()
        .map(|&x: &f64| {
            if x > 30.0 {
                x + (-x).exp()
            } else {
                x.exp().ln_1p()
            }
        })
        .collect();
    let got = eval(softplus, &sp_x, DType::F64);
    for (g, w) in got.iter().zip(&sp) {
        assert!(
            (g - w).abs() <= 1e-15 * w.abs().max(1e-300),
            "softplus {g} vs {w}"
        );
    }
    let ps: Vec<f64> = vec![1e-9, 0.1, 0.5, 0.9, 1.0 - 1e-9];
    let lg: Vec<f64> = ps.iter().map(|p| (p / (1.0 - p)).ln()).collect();
    assert!(max_err(&eval(logit, &ps, DType::F64), &lg) < 1e-7 * 1e-1);
}

/// `I_n(x)` by its power series `Σ (x/2)^{2k+n} / (k! (k+n)!)`, summed in log space to
/// double precision (enough terms for x <= 700).
fn log_bessel_ref(x: f64, n: u32) -> f64 {
    if x == 0.0 {
        return if n == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let terms: Vec<f64> = (0..4000)
        .map(|k| {
            let k = k as f64;
            (2.0 * k + n as f64) * (x / 2.0).ln() - ln_gamma(k + 1.0) - ln_gamma(k + n as f64 + 1.0)
        })
        .collect();
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

#[test]
fn log_bessel_matches_series() {
    let xs: Vec<f64> = vec![
        0.0, 1e-4, 0.1, 1.0, 2.5, 3.7, 3.75, 3.8, 5.0, 10.0, 50.0, 300.0,
    ];
    for (f, n) in [
        (log_bessel_i0 as fn(&Tensor) -> ppl_core::Result<Tensor>, 0),
        (log_bessel_i1, 1),
    ] {
        let got = eval(f, &xs, DType::F64);
        for (i, &x) in xs.iter().enumerate() {
            let want = log_bessel_ref(x, n);
            if want.is_infinite() {
                assert!(got[i].is_infinite() && got[i] < 0.0);
                continue;
            }
            // Abramowitz & Stegun's polynomials: |relative error| < 2.2e-7 in I_n, so
            // < 5e-7 absolute in ln I_n (with margin for the coefficient rounding).
            assert!(
                (got[i] - want).abs() < 5e-7,
                "log I{n}({x}) = {} vs {want}",
                got[i]
            );
        }
    }
}

/// Central finite-difference derivative check of an elementwise tensor function (f64).
fn check_grad(f: fn(&Tensor) -> ppl_core::Result<Tensor>, xs: &[f64], tol: f64) {
    let v = Var::new(xs, &Device::Cpu).unwrap();
    let y = f(v.as_tensor()).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    let grad = g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
    for (i, &x) in xs.iter().enumerate() {
        let h = 1e-6 * x.abs().max(1e-2);
        let fp = eval(f, &[x + h], DType::F64)[0];
        let fm = eval(f, &[x - h], DType::F64)[0];
        let fd = (fp - fm) / (2.0 * h);
        assert!(
            (grad[i] - fd).abs() <= tol * fd.abs().max(1.0),
            "gradient at {x}: autodiff {} vs finite difference {fd}",
            grad[i]
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    // Central differences with h ~ 1e-6 x are accurate to ~1e-8 relative here.
    check_grad(lgamma, &[0.01, 0.3, 1.0, 2.5, 7.0, 100.0], 1e-6);
    check_grad(digamma, &[0.05, 0.3, 1.0, 2.5, 7.0, 100.0], 1e-6);
    check_grad(log1p, &[-0.5, -1e-4, 0.0, 1e-4, 2.0], 1e-6);
    check_grad(expm1, &[-3.0, -1e-4, 1e-4, 2.0], 1e-6);
    check_grad(softplus, &[-30.0, -2.0, 0.0, 2.0, 16.5, 17.5, 40.0], 1e-6);
    check_grad(log_bessel_i0, &[0.1, 1.0, 3.0, 4.5, 20.0], 1e-6);
    check_grad(log_bessel_i1, &[0.1, 1.0, 3.0, 4.5, 20.0], 1e-6);
    // digamma is the derivative of lgamma: the composite's own gradient must agree.
    let xs = [0.2, 1.3, 9.0];
    let v = Var::new(&xs, &Device::Cpu).unwrap();
    let g = lgamma(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grad = g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
    for (i, &x) in xs.iter().enumerate() {
        assert!((grad[i] - digamma_ref(x)).abs() < 1e-10, "d lgamma at {x}");
    }
}

#[test]
fn softplus_gradient_at_zero_is_one_half() {
    let v = Var::new(&[0.0f64], &Device::Cpu).unwrap();
    let g = softplus(v.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let d = g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
    assert!((d - 0.5).abs() < 1e-15);
}
