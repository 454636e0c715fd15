//! Checks every flow layer must pass (shared by the flow test files), in f64.
#![allow(dead_code, clippy::needless_range_loop)]

use candle_core::{DType, Device, Tensor};
use ppl_core::flows::{Bijector, Fast};
use ppl_core::{ParamStore, PplRng};

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

/// `log |det M|` of a small square matrix by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // rows r and c of one matrix
pub fn log_abs_det(m: &[Vec<f64>]) -> f64 {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m.to_vec();
    let mut acc = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        let piv = a[c][c];
        assert!(piv != 0.0, "singular Jacobian");
        acc += piv.abs().ln();
        for r in c + 1..n {
            let f = a[r][c] / piv;
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
        }
    }
    acc
}

/// The Jacobian `∂f(x)_i / ∂x_j` of a map on one row `[1, D]`, by central differences.
pub fn jacobian(f: impl Fn(&Tensor) -> Tensor, x: &[f64], h: f64) -> Vec<Vec<f64>> {
    let d = x.len();
    let eval = |v: &[f64]| -> Vec<f64> {
        let t = Tensor::from_vec(v.to_vec(), (1, d), &candle_core::Device::Cpu).unwrap();
        rows(&f(&t))[0].clone()
    };
    let mut jac = vec![vec![0.0; d]; d];
    for j in 0..d {
        let (mut p, mut m) = (x.to_vec(), x.to_vec());
        p[j] += h;
        m[j] -= h;
        let (fp, fm) = (eval(&p), eval(&m));
        for i in 0..d {
            jac[i][j] = (fp[i] - fm[i]) / (2.0 * h);
        }
    }
    jac
}

/// Round trips (to 1e-10), `log |det J|` of both directions against a brute-force Jacobian
/// (to `tol`), the two `ladj`s opposite, and the tangents of both directions against the
/// Jacobian (to `tol`), for every row of `x` `[B, D]` (f64). `context` is `[B, C]` or
/// `None`. Directions a layer cannot compute (planar's inverse) are skipped when
/// `to_base_available` is false.
pub fn check_bijector(
    b: &dyn Bijector,
    x: &Tensor,
    context: Option<&Tensor>,
    tol: f64,
    to_base_available: bool,
) {
    assert_eq!(x.dtype(), DType::F64);
    let (n, d) = x.dims2().unwrap();
    assert_eq!(d, b.dim());
    let (y, ladj_fwd) = b.to_data(x, context).unwrap();
    let ladj_fwd: Vec<f64> = ladj_fwd.to_vec1().unwrap();
    if to_base_available {
        let (x2, ladj_inv) = b.to_base(&y, context).unwrap();
        let err = (x2 - x).unwrap().abs().unwrap().max_all().unwrap();
        let err: f64 = err.to_scalar().unwrap();
        assert!(err < 1e-10, "{b:?}: round trip error {err}");
        let ladj_inv: Vec<f64> = ladj_inv.to_vec1().unwrap();
        for i in 0..n {
            assert!(
                (ladj_fwd[i] + ladj_inv[i]).abs() < 1e-9,
                "{b:?}: ladj to_data {} and to_base {} are not opposite at row {i}",
                ladj_fwd[i],
                ladj_inv[i]
            );
        }
    }
    let xr = rows(x);
    let yr = rows(&y);
    // One identity tangent per input coordinate: J v = J's columns.
    let eye = Tensor::eye(d, DType::F64, x.device()).unwrap();
    for i in 0..n {
        let ci = context.map(|c| c.narrow(0, i, 1).unwrap());
        let fwd = |t: &Tensor| b.to_data(t, ci.as_ref()).unwrap().0;
        let jac = jacobian(fwd, &xr[i], 1e-6);
        let brute = log_abs_det(&jac);
        assert!(
            (brute - ladj_fwd[i]).abs() < tol,
            "{b:?}: to_data ladj {} vs brute force {brute} at row {i}",
            ladj_fwd[i]
        );
        let xi = Tensor::from_vec(xr[i].clone(), (1, d), x.device()).unwrap();
        let v = eye.reshape((d, 1, d)).unwrap();
        if b.fast() != Fast::ToBase || to_base_available {
            let (_, _, jv) = b.to_data_jvp(&xi, ci.as_ref(), &v).unwrap();
            let jv = rows(&jv.reshape((d, d)).unwrap());
            for (k, row) in jv.iter().enumerate() {
                for (r, val) in row.iter().enumerate() {
                    assert!(
                        (val - jac[r][k]).abs() < tol,
                        "{b:?}: to_data tangent ∂x_{r}/∂z_{k} = {val} vs finite differences {}",
                        jac[r][k]
                    );
                }
            }
        }
        if to_base_available {
            let inv = |t: &Tensor| b.to_base(t, ci.as_ref()).unwrap().0;
            let jac_inv = jacobian(inv, &yr[i], 1e-6);
            let yi = Tensor::from_vec(yr[i].clone(), (1, d), x.device()).unwrap();
            let (_, _, jv) = b.to_base_jvp(&yi, ci.as_ref(), &v).unwrap();
            let jv = rows(&jv.reshape((d, d)).unwrap());
            for (k, row) in jv.iter().enumerate() {
                for (r, val) in row.iter().enumerate() {
                    assert!(
                        (val - jac_inv[r][k]).abs() < tol,
                        "{b:?}: to_base tangent ∂z_{r}/∂x_{k} = {val} vs finite differences {}",
                        jac_inv[r][k]
                    );
                }
            }
        }
    }
}

/// Adds `N(0, scale²)` noise from a seeded stream to every variable of the store (ActNorm's
/// `initialized` flags excepted), so that the tested layers are far from their identity
/// initialisation.
pub fn perturb(store: &ParamStore, seed: u64, scale: f64) {
    let mut rng = PplRng::seed_from_u64(seed);
    for (name, v) in store.vars() {
        if name.ends_with("initialized") {
            continue;
        }
        let n = v.elem_count();
        let noise = Tensor::from_vec(rng.normals(n), v.dims(), &Device::Cpu)
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap();
        v.set(&(v.as_tensor() + (noise * scale).unwrap()).unwrap())
            .unwrap();
    }
}

/// `N(0, scale²)` draws of the given shape and dtype from `rng`.
pub fn randn(rng: &mut PplRng, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = rng.normals(n).into_iter().map(|x| x * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}
