//! Autoregressive, spline, planar and radial flows: MADE's autoregressive property, round
//! trips, log-determinants against brute-force Jacobians, tangents against finite
//! differences, batch/context broadcasting, f32, and gradients where the spline is kinked.

mod common;

use candle_core::{DType, Device, Tensor};
use common::flow_checks::check_bijector;
use common::{host, unif};
use ppl_core::flows::{
    rational_quadratic_spline, spline_params_per_dim, Activation, AutoregressiveMode, Bijector,
    Fast, Made, MaskedAffineAutoregressive, Planar, Radial, SplineCoupling,
};
use ppl_core::{ParamStore, PplRng};

/// Sets every variable of the store to `N(0, scale²)` draws from a seeded stream, so that
/// the tested layers are far from their identity initialisation.
fn randomise(store: &ParamStore, seed: u64, scale: f64) {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut vars = store.vars();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, var) in vars {
        let t = var.as_tensor();
        let n = t.elem_count();
        let vals: Vec<f64> = rng.normals(n).into_iter().map(|v| v * scale).collect();
        let new = Tensor::from_vec(vals, t.dims(), t.device())
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        var.set(&new).unwrap();
    }
}

fn tensor(v: Vec<f64>, shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    host(a)
        .iter()
        .zip(host(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------
// MADE
// ---------------------------------------------------------------------------------------

#[test]
fn made_output_block_i_depends_only_on_earlier_inputs_in_the_order() {
    let order = [2usize, 0, 3, 1];
    let (d, np, cd) = (4, 3, 2);
    for act in [Activation::Relu, Activation::Tanh] {
        let store = ParamStore::new();
        let vb = store.var_builder(DType::F64, &Device::Cpu, 1);
        let made = Made::new(vb, d, cd, &[16, 16], np, act, Some(&order)).unwrap();
        randomise(&store, 2, 0.7);
        let mut pos = [0usize; 4];
        for (p, &j) in order.iter().enumerate() {
            pos[j] = p;
        }
        let mut rng = PplRng::seed_from_u64(3);
        let x0 = unif(&mut rng, d, -1.5, 1.5);
        let c = tensor(vec![0.3, -0.8], &[1, cd], DType::F64);
        // Brute force: ∂out[i, p] / ∂x_j by central differences.
        let eval = |x: &[f64]| -> Vec<f64> {
            host(
                &made
                    .forward(&tensor(x.to_vec(), &[1, d], DType::F64), Some(&c))
                    .unwrap(),
            )
        };
        let (_, jv) = made
            .forward_jvp(
                &tensor(x0.clone(), &[1, d], DType::F64),
                Some(&c),
                &Tensor::eye(d, DType::F64, &Device::Cpu)
                    .unwrap()
                    .reshape((d, 1, d))
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(jv.dims(), &[d, 1, d, np]);
        let jv = host(&jv);
        let mut nonzero_allowed = 0;
        for j in 0..d {
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[j] += 1e-6;
            xm[j] -= 1e-6;
            let (fp, fm) = (eval(&xp), eval(&xm));
            for i in 0..d {
                for p in 0..np {
                    let o = i * np + p;
                    let fd = (fp[o] - fm[o]) / 2e-6;
                    let tangent = jv[j * d * np + o];
                    assert!(
                        (fd - tangent).abs() < 1e-6,
                        "{act:?}: tangent ∂h[{i},{p}]/∂x{j} = {tangent}, finite differences {fd}"
                    );
                    if pos[j] >= pos[i] {
                        assert_eq!(
                            tangent, 0.0,
                            "{act:?}: output {i} depends on x{j}, which is not before it"
                        );
                        assert!(fd.abs() < 1e-12, "{act:?}: ∂h[{i},{p}]/∂x{j} = {fd}");
                    } else if fd.abs() > 1e-6 {
                        nonzero_allowed += 1;
                    }
                }
            }
        }
        // Each allowed (i, j, p) with j before i: 6 pairs × 3 params. With perturbed weights
        // nearly all are nonzero (ReLU may zero a few); the masks must not cut everything.
        assert!(
            nonzero_allowed >= 12,
            "{act:?}: only {nonzero_allowed} nonzero"
        );
        // The context reaches every output block, the first one included.
        let c2 = tensor(vec![-0.4, 1.1], &[1, cd], DType::F64);
        let x0t = tensor(x0.clone(), &[1, d], DType::F64);
        let a = host(&made.forward(&x0t, Some(&c)).unwrap());
        let b = host(&made.forward(&x0t, Some(&c2)).unwrap());
        let first = order[0];
        assert!((0..np).any(|p| (a[first * np + p] - b[first * np + p]).abs() > 1e-6));
    }
}

#[test]
fn made_rejects_bad_orders_and_shapes() {
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &Device::Cpu, 1);
    let e = Made::new(
        vb.clone(),
        3,
        0,
        &[8],
        2,
        Activation::Relu,
        Some(&[0, 0, 1]),
    );
    assert!(format!("{}", e.unwrap_err()).contains("permutation"));
    let made = Made::new(vb, 3, 0, &[8], 2, Activation::Relu, None).unwrap();
    let x = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
    let e = made.forward(&x, None).unwrap_err();
    assert!(format!("{e}").contains("[2, 4]"), "{e}");
    let x = Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap();
    let c = Tensor::zeros((2, 1), DType::F64, &Device::Cpu).unwrap();
    assert!(made.forward(&x, Some(&c)).is_err());
}

// ---------------------------------------------------------------------------------------
// MAF / IAF
// ---------------------------------------------------------------------------------------

fn affine_ar(
    mode: AutoregressiveMode,
    dtype: DType,
    context_dim: usize,
    order: Option<&[usize]>,
) -> (ParamStore, MaskedAffineAutoregressive) {
    let store = ParamStore::new();
    let vb = store.var_builder(dtype, &Device::Cpu, 7);
    let layer = MaskedAffineAutoregressive::new(
        vb,
        mode,
        4,
        context_dim,
        &[12, 12],
        Activation::Tanh,
        order,
    )
    .unwrap();
    randomise(&store, 11, 0.5);
    (store, layer)
}

#[test]
fn maf_and_iaf_pass_the_bijector_checks() {
    let mut rng = PplRng::seed_from_u64(5);
    let x = tensor(unif(&mut rng, 5 * 4, -2.0, 2.0), &[5, 4], DType::F64);
    let ctx = tensor(unif(&mut rng, 5 * 3, -1.0, 1.0), &[5, 3], DType::F64);
    for mode in [AutoregressiveMode::Maf, AutoregressiveMode::Iaf] {
        let (_s, layer) = affine_ar(mode, DType::F64, 0, Some(&[1, 3, 0, 2]));
        check_bijector(&layer, &x, None, 1e-6, true);
        let (_s, layer) = affine_ar(mode, DType::F64, 3, None);
        check_bijector(&layer, &x, Some(&ctx), 1e-6, true);
        let want = match mode {
            AutoregressiveMode::Maf => Fast::ToBase,
            AutoregressiveMode::Iaf => Fast::ToData,
        };
        assert_eq!(layer.fast(), want);
    }
}

#[test]
fn new_autoregressive_layer_is_the_identity() {
    for mode in [AutoregressiveMode::Maf, AutoregressiveMode::Iaf] {
        let store = ParamStore::new();
        let vb = store.var_builder(DType::F64, &Device::Cpu, 7);
        let layer =
            MaskedAffineAutoregressive::new(vb, mode, 3, 0, &[8], Activation::Relu, None).unwrap();
        let z = tensor(vec![0.5, -1.0, 2.0, 0.1, 0.2, 0.3], &[2, 3], DType::F64);
        let (x, ladj) = layer.to_data(&z, None).unwrap();
        assert_eq!(host(&x), host(&z));
        assert_eq!(host(&ladj), vec![0.0, 0.0]);
    }
}

/// The first dimension in the order depends on nothing but the MADE's biases: its
/// `(s, t)` are known in closed form, `x = z e^s + t`, whatever the other inputs.
#[test]
fn first_dimension_in_the_order_is_an_affine_map_of_its_own_input() {
    let (_s, layer) = affine_ar(AutoregressiveMode::Iaf, DType::F64, 0, Some(&[2, 0, 3, 1]));
    let z1 = tensor(vec![0.3, -1.0, 0.7, 1.5], &[1, 4], DType::F64);
    let z2 = tensor(vec![-0.9, 2.0, 0.7, -0.4], &[1, 4], DType::F64);
    let x1 = host(&layer.to_data(&z1, None).unwrap().0);
    let x2 = host(&layer.to_data(&z2, None).unwrap().0);
    assert!((x1[2] - x2[2]).abs() < 1e-14, "{} vs {}", x1[2], x2[2]);
    assert!((x1[0] - x2[0]).abs() > 1e-6);
}

/// Batch axes `[2, 3]` with a context `[3, 2]` broadcast against them: the batched outputs
/// equal row-by-row evaluation, round trips hold, and tangents `[K, 2, 3, D]` equal the
/// per-row ones.
fn check_batched(layer: &dyn Bijector, dtype: DType, tol: f64, range: f64) {
    let d = layer.dim();
    let mut rng = PplRng::seed_from_u64(9);
    let x = tensor(unif(&mut rng, 2 * 3 * d, -range, range), &[2, 3, d], dtype);
    let c = tensor(unif(&mut rng, 3 * 2, -1.0, 1.0), &[3, 2], dtype);
    let v = tensor(
        unif(&mut rng, 2 * 2 * 3 * d, -1.0, 1.0),
        &[2, 2, 3, d],
        dtype,
    );
    for fwd in [true, false] {
        let (y, ladj, jv) = if fwd {
            layer.to_data_jvp(&x, Some(&c), &v).unwrap()
        } else {
            layer.to_base_jvp(&x, Some(&c), &v).unwrap()
        };
        assert_eq!(y.dims(), &[2, 3, d]);
        assert_eq!(ladj.dims(), &[2, 3]);
        assert_eq!(jv.dims(), &[2, 2, 3, d]);
        let (back, ladj_back) = if fwd {
            layer.to_base(&y, Some(&c)).unwrap()
        } else {
            layer.to_data(&y, Some(&c)).unwrap()
        };
        assert!(
            max_abs_diff(&back, &x) < tol * 10.0,
            "{layer:?} {dtype:?} round trip"
        );
        let sum = (&ladj + &ladj_back).unwrap();
        assert!(host(&sum).iter().all(|s| s.abs() < tol * 10.0));
        for a in 0..2 {
            for b in 0..3 {
                let xi = x.narrow(0, a, 1).unwrap().narrow(1, b, 1).unwrap();
                let xi = xi.reshape((1, d)).unwrap();
                let ci = c.narrow(0, b, 1).unwrap();
                let vi = v.narrow(1, a, 1).unwrap().narrow(2, b, 1).unwrap();
                let vi = vi.reshape((2, 1, d)).unwrap();
                let (yi, li, ji) = if fwd {
                    layer.to_data_jvp(&xi, Some(&ci), &vi).unwrap()
                } else {
                    layer.to_base_jvp(&xi, Some(&ci), &vi).unwrap()
                };
                let yb = y.narrow(0, a, 1).unwrap().narrow(1, b, 1).unwrap();
                assert!(max_abs_diff(&yi, &yb) < tol);
                let lb = ladj.narrow(0, a, 1).unwrap().narrow(1, b, 1).unwrap();
                assert!(max_abs_diff(&li, &lb) < tol);
                let jb = jv.narrow(1, a, 1).unwrap().narrow(2, b, 1).unwrap();
                assert!(max_abs_diff(&ji, &jb) < tol);
            }
        }
    }
}

#[test]
fn autoregressive_batches_broadcast_contexts_and_f32() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-4)] {
        for mode in [AutoregressiveMode::Maf, AutoregressiveMode::Iaf] {
            let (_s, layer) = affine_ar(mode, dtype, 2, None);
            check_batched(&layer, dtype, tol, 1.5);
        }
    }
}

#[test]
fn spline_coupling_batches_broadcast_contexts_and_f32() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-4)] {
        let (_s, layer) = spline_layer(dtype, 2);
        check_batched(&layer, dtype, tol, 3.0);
    }
}

/// The sequential direction is differentiable by backward: the gradient of
/// `Σ x + ladj` after MAF sampling with respect to one MADE weight matches central finite
/// differences.
#[test]
fn maf_sampling_gradient_matches_finite_differences() {
    let (store, layer) = affine_ar(AutoregressiveMode::Maf, DType::F64, 0, None);
    let z = tensor(
        vec![0.4, -1.2, 0.9, 0.3, 1.0, -0.5, 0.2, 0.8],
        &[2, 4],
        DType::F64,
    );
    let loss = || -> Tensor {
        let (x, ladj) = layer.to_data(&z, None).unwrap();
        (x.sum_all().unwrap() + ladj.sum_all().unwrap()).unwrap()
    };
    let grads = loss().backward().unwrap();
    let mut vars = store.vars();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checked = 0;
    for (name, var) in vars {
        let g = host(grads.get(var.as_tensor()).unwrap());
        let base = host(var.as_tensor());
        for idx in [0, base.len() / 2, base.len() - 1] {
            let mut p = base.clone();
            p[idx] += 1e-6;
            var.set(&tensor(p.clone(), var.dims(), DType::F64)).unwrap();
            let fp = common::scalar(&loss());
            p[idx] -= 2e-6;
            var.set(&tensor(p, var.dims(), DType::F64)).unwrap();
            let fm = common::scalar(&loss());
            var.set(&tensor(base.clone(), var.dims(), DType::F64))
                .unwrap();
            let fd = (fp - fm) / 2e-6;
            assert!(
                (fd - g[idx]).abs() < 1e-5 * fd.abs().max(1.0),
                "{name}[{idx}]: gradient {} vs finite differences {fd}",
                g[idx]
            );
            checked += 1;
        }
    }
    assert!(checked >= 18);
}

#[test]
fn autoregressive_errors_name_the_layer_and_shapes() {
    let (_s, layer) = affine_ar(AutoregressiveMode::Maf, DType::F64, 0, None);
    let x = Tensor::zeros((2, 5), DType::F64, &Device::Cpu).unwrap();
    let e = layer.to_base(&x, None).unwrap_err();
    assert!(format!("{e}").contains("[2, 5]"), "{e}");
    let x = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
    let v = Tensor::zeros((3, 5, 4), DType::F64, &Device::Cpu).unwrap();
    let e = layer.to_base_jvp(&x, None, &v).unwrap_err();
    assert!(format!("{e}").contains("tangents"), "{e}");
    let c = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
    let e = layer.to_data(&x, Some(&c)).unwrap_err();
    assert!(format!("{e}").contains("unconditional"), "{e}");
    let (_s, layer) = affine_ar(AutoregressiveMode::Iaf, DType::F64, 2, None);
    assert!(layer.to_data(&x, None).is_err());
    let c = Tensor::zeros((3, 2), DType::F64, &Device::Cpu).unwrap();
    let e = layer.to_data(&x, Some(&c)).unwrap_err();
    assert!(format!("{e}").contains("broadcast"), "{e}");
    assert!(layer.clone().with_scale_bound(0.0).is_err());
}

// ---------------------------------------------------------------------------------------
// Rational-quadratic splines
// ---------------------------------------------------------------------------------------

fn spline_layer(dtype: DType, context_dim: usize) -> (ParamStore, SplineCoupling) {
    let store = ParamStore::new();
    let vb = store.var_builder(dtype, &Device::Cpu, 3);
    let layer = SplineCoupling::new(
        vb,
        &[true, false, true, false, true],
        context_dim,
        &[16],
        Activation::Tanh,
        6,
        2.5,
    )
    .unwrap();
    randomise(&store, 4, 0.25);
    (store, layer)
}

/// Rows in (−3.5, 3.5): some coordinates fall in the identity tails of the [−2.5, 2.5]
/// spline, most inside.
#[test]
fn spline_coupling_passes_the_bijector_checks() {
    let mut rng = PplRng::seed_from_u64(21);
    let x = tensor(unif(&mut rng, 8 * 5, -3.5, 3.5), &[8, 5], DType::F64);
    let ctx = tensor(unif(&mut rng, 8 * 2, -1.0, 1.0), &[8, 2], DType::F64);
    // Perturbed conditioners give slopes from ~0.05 to ~20: central differences (h = 1e-6)
    // of entries that large carry errors ~1e-8 relative, so the absolute tolerance is 1e-5.
    let (_s, layer) = spline_layer(DType::F64, 0);
    check_bijector(&layer, &x, None, 1e-5, true);
    let (_s, layer) = spline_layer(DType::F64, 2);
    check_bijector(&layer, &x, Some(&ctx), 1e-5, true);
    // The pass-through coordinates are unchanged, the others are not.
    let (y, _) = layer.to_data(&x, Some(&ctx)).unwrap();
    let (xh, yh) = (host(&x), host(&y));
    for r in 0..8 {
        assert_eq!(xh[r * 5 + 1], yh[r * 5 + 1]);
        assert_eq!(xh[r * 5 + 3], yh[r * 5 + 3]);
    }
    assert!((0..8).any(|r| (xh[r * 5] - yh[r * 5]).abs() > 1e-3));
}

#[test]
fn new_spline_coupling_is_the_identity() {
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &Device::Cpu, 3);
    let layer = SplineCoupling::new(vb, &[false, true], 0, &[8], Activation::Relu, 5, 3.0).unwrap();
    let x = tensor(vec![0.3, -2.9, 1.0, 0.77, -4.0, 5.0], &[3, 2], DType::F64);
    let (y, ladj) = layer.to_data(&x, None).unwrap();
    assert!(max_abs_diff(&y, &x) < 1e-14);
    assert!(host(&ladj).iter().all(|l| l.abs() < 1e-14));
}

fn raw_params(
    rng: &mut PplRng,
    n: usize,
    bins: usize,
    zero_widths: bool,
    zero_heights: bool,
    scale: f64,
) -> Vec<f64> {
    let p = spline_params_per_dim(bins);
    let mut raw = Vec::with_capacity(n * p);
    for _ in 0..n {
        for j in 0..p {
            let r = scale * rng.normals(1)[0];
            let zero = (j < bins && zero_widths) || (j >= bins && j < 2 * bins && zero_heights);
            raw.push(if zero { 0.0 } else { r });
        }
    }
    raw
}

/// On a fine grid over [−4, 4] with bound 2: strictly increasing, the identity outside
/// [−2, 2] (value and log-derivative 0), ±2 mapped to ±2, and `log g'` equal to central
/// differences of `g` away from the knots.
#[test]
fn rq_spline_is_monotone_identity_in_the_tails_and_its_log_derivative_is_right() {
    let bins = 5;
    let mut rng = PplRng::seed_from_u64(8);
    let raw1 = raw_params(&mut rng, 1, bins, false, false, 1.5);
    let n = 4001;
    let grid: Vec<f64> = (0..n)
        .map(|i| -4.0 + 8.0 * i as f64 / (n - 1) as f64)
        .collect();
    let p = spline_params_per_dim(bins);
    let raw = tensor(raw1.repeat(n), &[n, 1, p], DType::F64);
    let x = tensor(grid.clone(), &[n, 1], DType::F64);
    let (y, l) = rational_quadratic_spline(&x, &raw, 2.0, false).unwrap();
    let (yh, lh) = (host(&y), host(&l));
    for i in 1..n {
        assert!(yh[i] > yh[i - 1], "not increasing at {}", grid[i]);
    }
    for i in 0..n {
        if grid[i].abs() >= 2.0 {
            assert!((yh[i] - grid[i]).abs() < 1e-12, "tail at {}", grid[i]);
            assert!(lh[i].abs() < 1e-12);
        }
    }
    let h = 1e-6;
    for i in (3..n - 3).step_by(37) {
        let xs = tensor(vec![grid[i] - h, grid[i] + h], &[2, 1], DType::F64);
        let raw2 = tensor(raw1.repeat(2), &[2, 1, p], DType::F64);
        let ys = host(&rational_quadratic_spline(&xs, &raw2, 2.0, false).unwrap().0);
        let fd = ((ys[1] - ys[0]) / (2.0 * h)).ln();
        assert!(
            (fd - lh[i]).abs() < 1e-5,
            "log g' at {}: {} vs {fd}",
            grid[i],
            lh[i]
        );
    }
    // Inverse: round trip over the grid (f64, 1e-10) and opposite log-derivatives.
    let (xb, lb) = rational_quadratic_spline(&y, &raw, 2.0, true).unwrap();
    assert!(max_abs_diff(&xb, &x) < 1e-10);
    assert!(max_abs_diff(&lb, &l.neg().unwrap()) < 1e-9);
}

#[test]
fn rq_spline_round_trips_in_f32_with_batch_axes() {
    let bins = 7;
    let p = spline_params_per_dim(bins);
    let mut rng = PplRng::seed_from_u64(12);
    let raw = raw_params(&mut rng, 2 * 3 * 4, bins, false, false, 1.5);
    let x = unif(&mut rng, 2 * 3 * 4, -3.5, 3.5);
    let raw = tensor(raw, &[2, 3, 4, p], DType::F32);
    let x = tensor(x, &[2, 3, 4], DType::F32);
    let (y, l) = rational_quadratic_spline(&x, &raw, 3.0, false).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(l.dims(), &[2, 3, 4]);
    let (xb, lb) = rational_quadratic_spline(&y, &raw, 3.0, true).unwrap();
    // f32: y carries a rounding error of a few ulps of |y| ≤ 3.5, which the inverse divides
    // by the slope g'(x): allow 1e-6 · (1 + 1/g'(x)) (about 4 ulps at the interval's end).
    let (xh, xbh, lh) = (host(&x), host(&xb), host(&l));
    for i in 0..xh.len() {
        let tol = 1e-6 * (1.0 + (-lh[i]).exp());
        assert!(
            (xh[i] - xbh[i]).abs() < tol,
            "x {} back {} slope {}",
            xh[i],
            xbh[i],
            lh[i].exp()
        );
    }
    let lbh = host(&lb);
    for i in 0..xh.len() {
        let tol = 1e-6 * (1.0 + (-lh[i]).exp());
        // log g' is computed from ξ, which carries the same error relative to the bin.
        assert!(
            (lh[i] + lbh[i]).abs() < 10.0 * tol,
            "ladj {} {} x {}",
            lh[i],
            lbh[i],
            xh[i]
        );
    }
    // Same values as f64.
    let (y64, _) = rational_quadratic_spline(
        &x.to_dtype(DType::F64).unwrap(),
        &raw.to_dtype(DType::F64).unwrap(),
        3.0,
        false,
    )
    .unwrap();
    assert!(max_abs_diff(&y, &y64) < 1e-4);
}

/// Gradients by backward against central differences with inputs exactly on the knots
/// (uniform widths/heights make the knots −2, −1, 0, 1, 2 exact), at the interval's ends,
/// and in the tails; no gradient is NaN anywhere. `g` is C¹, so its gradient is exact at
/// the knots; `log g'` is only continuous in x there, so only its parameter gradients
/// (heights and derivatives, which do not move the knots) are compared.
#[test]
fn rq_spline_gradients_at_bin_edges_and_in_the_tails() {
    let bins = 4;
    let p = spline_params_per_dim(bins);
    let xs = vec![-2.0, -1.0, 0.0, 1.0, 2.0, -3.5, 4.0, 0.37];
    let n = xs.len();
    for inverse in [false, true] {
        let mut rng = PplRng::seed_from_u64(31);
        // Forward: widths uniform (x knots exact). Inverse: heights uniform (y knots exact).
        // Raw scale 0.7: bins within a factor ~10 of each other, so that central differences
        // (h = 1e-6) across a knot, where g'' jumps, stay within the tolerances below.
        let raw0 = raw_params(&mut rng, n, bins, !inverse, inverse, 0.7);
        let f = |x: &[f64], raw: &[f64]| -> (f64, f64, Vec<f64>) {
            let xt = tensor(x.to_vec(), &[n], DType::F64);
            let rt = tensor(raw.to_vec(), &[n, p], DType::F64);
            let (y, l) = rational_quadratic_spline(&xt, &rt, 2.0, inverse).unwrap();
            (host(&y).iter().sum(), host(&l).iter().sum(), host(&y))
        };
        let xv = candle_core::Var::from_tensor(&tensor(xs.clone(), &[n], DType::F64)).unwrap();
        let rv = candle_core::Var::from_tensor(&tensor(raw0.clone(), &[n, p], DType::F64)).unwrap();
        let (y, l) =
            rational_quadratic_spline(xv.as_tensor(), rv.as_tensor(), 2.0, inverse).unwrap();
        let gy = y.sum_all().unwrap().backward().unwrap();
        let gl = l.sum_all().unwrap().backward().unwrap();
        let gyx = host(gy.get(xv.as_tensor()).unwrap());
        let gyr = host(gy.get(rv.as_tensor()).unwrap());
        let glx = host(gl.get(xv.as_tensor()).unwrap());
        let glr = host(gl.get(rv.as_tensor()).unwrap());
        for g in [&gyx, &gyr, &glx, &glr] {
            assert!(
                g.iter().all(|v| v.is_finite()),
                "inverse {inverse}: NaN gradient {g:?}"
            );
        }
        let h = 1e-6;
        for i in 0..n {
            let (mut xp, mut xm) = (xs.clone(), xs.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (f(&xp, &raw0).0 - f(&xm, &raw0).0) / (2.0 * h);
            // g is C¹ but not C² at the knots: central differences there are off by up to
            // h · |jump of g''| / 4 ≈ 1e-6 · 20.
            assert!(
                (fd - gyx[i]).abs() < 2e-5,
                "inverse {inverse}: dy/dx at {}: {} vs {fd}",
                xs[i],
                gyx[i]
            );
            if xs[i].abs() > 2.0 {
                assert_eq!(gyx[i], 1.0);
                assert_eq!(glx[i], 0.0);
                assert!(gyr[i * p..(i + 1) * p].iter().all(|&g| g == 0.0));
            }
        }
        for j in 0..n * p {
            let (mut rp, mut rm) = (raw0.clone(), raw0.clone());
            rp[j] += h;
            rm[j] -= h;
            let (yp, lp, _) = f(&xs, &rp);
            let (ym, lm, _) = f(&xs, &rm);
            let fd = (yp - ym) / (2.0 * h);
            // Same C¹ bound where a parameter moves a knot across the input.
            assert!(
                (fd - gyr[j]).abs() < 2e-5,
                "inverse {inverse}: dy/draw[{j}]: {} vs {fd}",
                gyr[j]
            );
            let moves_knots = if inverse {
                j % p >= bins && j % p < 2 * bins
            } else {
                j % p < bins
            };
            if !moves_knots || xs[j / p].fract() != 0.0 {
                let fd = (lp - lm) / (2.0 * h);
                assert!(
                    (fd - glr[j]).abs() < 1e-6,
                    "inverse {inverse}: dlog g'/draw[{j}]: {} vs {fd}",
                    glr[j]
                );
            }
        }
    }
}

#[test]
fn spline_errors_name_shapes() {
    let x = Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap();
    let raw = Tensor::zeros((2, 3, 7), DType::F64, &Device::Cpu).unwrap();
    let e = rational_quadratic_spline(&x, &raw, 1.0, false).unwrap_err();
    assert!(format!("{e}").contains("3K − 1"), "{e}");
    let raw = Tensor::zeros((2, 4, 8), DType::F64, &Device::Cpu).unwrap();
    let e = rational_quadratic_spline(&x, &raw, 1.0, false).unwrap_err();
    assert!(format!("{e}").contains("[2, 4, 8]"), "{e}");
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &Device::Cpu, 3);
    assert!(
        SplineCoupling::new(vb.clone(), &[true, true], 0, &[4], Activation::Relu, 4, 1.0).is_err()
    );
    assert!(SplineCoupling::new(vb, &[true, false], 0, &[4], Activation::Relu, 1, 1.0).is_err());
}

// ---------------------------------------------------------------------------------------
// Planar and radial
// ---------------------------------------------------------------------------------------

fn set(store: &ParamStore, name: &str, v: Vec<f64>) {
    let var = store
        .vars()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
        .1;
    let dims = var.dims().to_vec();
    let dtype = var.dtype();
    var.set(&tensor(v, &dims, dtype)).unwrap();
}

#[test]
fn planar_closed_form_in_one_dimension() {
    let store = ParamStore::new();
    let layer = Planar::new(store.var_builder(DType::F64, &Device::Cpu, 1), 1).unwrap();
    set(&store, "w", vec![2.0]);
    set(&store, "u", vec![0.5]);
    set(&store, "b", vec![0.1]);
    // w u = 1, m = softplus(1) − 1, û = m / w.
    let m = (1.0f64.exp() + 1.0).ln() - 1.0;
    let uhat = m / 2.0;
    let z = 0.3;
    let a: f64 = 2.0 * z + 0.1;
    let want_x = z + uhat * a.tanh();
    let want_l = (1.0 + m * (1.0 - a.tanh().powi(2))).ln();
    let (x, l) = layer
        .to_data(&tensor(vec![z], &[1, 1], DType::F64), None)
        .unwrap();
    assert!((host(&x)[0] - want_x).abs() < 1e-15);
    assert!((host(&l)[0] - want_l).abs() < 1e-15);
    assert_eq!(layer.fast(), Fast::ToData);
}

/// `wᵀu = −5.3` would make the unconstrained planar map non-invertible; the
/// reparameterisation keeps `wᵀû > −1`: finite ladj, exact root-solve inverse, tangents.
#[test]
fn planar_passes_the_bijector_checks_even_with_a_bad_u() {
    let mut rng = PplRng::seed_from_u64(41);
    let x = tensor(unif(&mut rng, 6 * 3, -2.0, 2.0), &[6, 3], DType::F64);
    let store = ParamStore::new();
    let layer = Planar::new(store.var_builder(DType::F64, &Device::Cpu, 1), 3).unwrap();
    set(&store, "w", vec![1.0, 0.5, -0.3]);
    set(&store, "u", vec![-4.0, -2.0, 1.0]);
    set(&store, "b", vec![0.2]);
    check_bijector(&layer, &x, None, 1e-6, true);
    let (_, l) = layer.to_data(&x, None).unwrap();
    assert!(host(&l).iter().all(|v| v.is_finite() && *v < 0.0));
    randomise(&store, 42, 1.0);
    check_bijector(&layer, &x, None, 1e-6, true);
}

/// The root-solved inverse is differentiable: the gradient of `Σ z + ladj` of `to_base`
/// with respect to `w`, `u`, `b` matches central differences.
#[test]
fn planar_inverse_gradient_matches_finite_differences() {
    let store = ParamStore::new();
    let layer = Planar::new(store.var_builder(DType::F64, &Device::Cpu, 1), 3).unwrap();
    randomise(&store, 43, 1.0);
    let x = tensor(vec![0.5, -1.0, 2.0, -0.2, 0.1, 0.9], &[2, 3], DType::F64);
    let loss = || -> Tensor {
        let (z, l) = layer.to_base(&x, None).unwrap();
        let zs = (z.sqr().unwrap() * 0.7).unwrap().sum_all().unwrap();
        (zs + l.sum_all().unwrap()).unwrap()
    };
    let grads = loss().backward().unwrap();
    for (name, var) in store.vars() {
        let g = host(grads.get(var.as_tensor()).unwrap());
        let base = host(var.as_tensor());
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] += 1e-6;
            var.set(&tensor(p.clone(), var.dims(), DType::F64)).unwrap();
            let fp = common::scalar(&loss());
            p[i] -= 2e-6;
            var.set(&tensor(p, var.dims(), DType::F64)).unwrap();
            let fm = common::scalar(&loss());
            var.set(&tensor(base.clone(), var.dims(), DType::F64))
                .unwrap();
            let fd = (fp - fm) / 2e-6;
            assert!(
                (fd - g[i]).abs() < 1e-6 * fd.abs().max(1.0),
                "{name}[{i}]: {} vs {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn radial_closed_form_and_bijector_checks() {
    let store = ParamStore::new();
    let layer = Radial::new(store.var_builder(DType::F64, &Device::Cpu, 1), 3).unwrap();
    set(&store, "z0", vec![0.5, -0.5, 1.0]);
    set(&store, "a", vec![0.3]);
    set(&store, "b", vec![-1.2]);
    let sp = |v: f64| (v.exp() + 1.0).ln();
    let (alpha, beta) = (sp(0.3), sp(-1.2) - sp(0.3));
    assert!(beta < 0.0 && beta > -alpha);
    let z = [1.5, 0.0, -1.0];
    let e: Vec<f64> = z.iter().zip([0.5, -0.5, 1.0]).map(|(a, b)| a - b).collect();
    let r = e.iter().map(|v| v * v).sum::<f64>().sqrt();
    let hh = 1.0 / (alpha + r);
    let want: Vec<f64> = z
        .iter()
        .zip(&e)
        .map(|(zi, ei)| zi + beta * hh * ei)
        .collect();
    let want_l = 2.0 * (1.0 + beta * hh).ln() + (1.0 + beta * alpha / (alpha + r).powi(2)).ln();
    let (x, l) = layer
        .to_data(&tensor(z.to_vec(), &[1, 3], DType::F64), None)
        .unwrap();
    common::assert_close("radial x", &host(&x), &want, 1e-14);
    common::assert_close("radial ladj", &host(&l), &[want_l], 1e-14);
    // At z = z0 the map is locally the scaling (1 + β/α) I.
    let (x0, l0) = layer
        .to_data(&tensor(vec![0.5, -0.5, 1.0], &[1, 3], DType::F64), None)
        .unwrap();
    common::assert_close("radial at z0", &host(&x0), &[0.5, -0.5, 1.0], 1e-14);
    common::assert_close(
        "radial ladj at z0",
        &host(&l0),
        &[3.0 * (1.0 + beta / alpha).ln()],
        1e-12,
    );
    let mut rng = PplRng::seed_from_u64(51);
    let xs = tensor(unif(&mut rng, 6 * 3, -2.5, 2.5), &[6, 3], DType::F64);
    check_bijector(&layer, &xs, None, 1e-6, true);
    randomise(&store, 52, 1.0);
    check_bijector(&layer, &xs, None, 1e-6, true);
}

/// At `z = z₀` (where `‖z − z₀‖` has no gradient) every gradient is finite, in both
/// directions.
#[test]
fn radial_gradients_are_finite_at_the_centre() {
    let store = ParamStore::new();
    let layer = Radial::new(store.var_builder(DType::F64, &Device::Cpu, 1), 2).unwrap();
    set(&store, "z0", vec![0.25, -0.75]);
    let zv =
        candle_core::Var::from_tensor(&tensor(vec![0.25, -0.75], &[1, 2], DType::F64)).unwrap();
    for inverse in [false, true] {
        let (y, l) = if inverse {
            layer.to_base(zv.as_tensor(), None).unwrap()
        } else {
            layer.to_data(zv.as_tensor(), None).unwrap()
        };
        let loss = (y.sum_all().unwrap() + l.sum_all().unwrap()).unwrap();
        let g = loss.backward().unwrap();
        let mut all = host(g.get(zv.as_tensor()).unwrap());
        for (_, var) in store.vars() {
            all.extend(host(g.get(var.as_tensor()).unwrap()));
        }
        assert!(
            all.iter().all(|v| v.is_finite()),
            "inverse {inverse}: {all:?}"
        );
    }
}

/// Planar and radial with batch axes `[2, 3]` and f32: outputs, ladj and tangents have the
/// batch shapes, round trips hold to f32 precision.
#[test]
fn planar_and_radial_batches_and_f32() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        let store = ParamStore::new();
        let planar = Planar::new(store.var_builder(dtype, &Device::Cpu, 1).pp("p"), 4).unwrap();
        let radial = Radial::new(store.var_builder(dtype, &Device::Cpu, 1).pp("r"), 4).unwrap();
        randomise(&store, 61, 0.8);
        let mut rng = PplRng::seed_from_u64(62);
        let x = tensor(unif(&mut rng, 24, -2.0, 2.0), &[2, 3, 4], dtype);
        let v = tensor(unif(&mut rng, 5 * 4, -1.0, 1.0), &[5, 1, 1, 4], dtype);
        for layer in [&planar as &dyn Bijector, &radial] {
            let (y, l, jv) = layer.to_data_jvp(&x, None, &v).unwrap();
            assert_eq!(l.dims(), &[2, 3]);
            assert_eq!(jv.dims(), &[5, 2, 3, 4]);
            let (xb, lb, jb) = layer.to_base_jvp(&y, None, &jv).unwrap();
            assert!(max_abs_diff(&xb, &x) < tol, "{layer:?} {dtype:?}");
            assert!(max_abs_diff(&(&l + &lb).unwrap(), &l.zeros_like().unwrap()) < tol);
            // J⁻¹ (J v) = v.
            let vb = v.broadcast_as((5, 2, 3, 4)).unwrap();
            assert!(max_abs_diff(&jb, &vb) < tol * 10.0, "{layer:?} {dtype:?}");
        }
    }
}

/// Unbatched inputs `[D]` (no batch axis, as a guide's first run gives) work in every layer
/// and equal the `[1, D]` results, tangents `[K, D]` included.
#[test]
fn unbatched_inputs_work_in_every_layer() {
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &Device::Cpu, 1);
    let d = 4;
    let layers: Vec<Box<dyn Bijector>> = vec![
        Box::new(
            MaskedAffineAutoregressive::new(
                vb.pp("maf"),
                AutoregressiveMode::Maf,
                d,
                0,
                &[8],
                Activation::Tanh,
                None,
            )
            .unwrap(),
        ),
        Box::new(
            MaskedAffineAutoregressive::new(
                vb.pp("iaf"),
                AutoregressiveMode::Iaf,
                d,
                0,
                &[],
                Activation::Tanh,
                None,
            )
            .unwrap(),
        ),
        Box::new(
            SplineCoupling::new(
                vb.pp("spline"),
                &[true, false, false, true],
                0,
                &[8],
                Activation::Relu,
                4,
                2.0,
            )
            .unwrap(),
        ),
        Box::new(Planar::new(vb.pp("planar"), d).unwrap()),
        Box::new(Radial::new(vb.pp("radial"), d).unwrap()),
    ];
    randomise(&store, 71, 0.5);
    let x1 = tensor(vec![0.3, -0.6, 1.2, 0.05], &[d], DType::F64);
    let x2 = x1.reshape((1, d)).unwrap();
    let v1 = tensor(
        (0..2 * d).map(|i| i as f64 * 0.1 - 0.3).collect(),
        &[2, d],
        DType::F64,
    );
    let v2 = v1.reshape((2, 1, d)).unwrap();
    for l in &layers {
        for fwd in [true, false] {
            let run = |x: &Tensor, v: &Tensor| {
                if fwd {
                    l.to_data_jvp(x, None, v).unwrap()
                } else {
                    l.to_base_jvp(x, None, v).unwrap()
                }
            };
            let (y1, l1, j1) = run(&x1, &v1);
            let (y2, l2, j2) = run(&x2, &v2);
            assert_eq!(y1.dims(), &[d], "{l:?}");
            assert_eq!(l1.dims(), &[] as &[usize], "{l:?}");
            assert_eq!(j1.dims(), &[2, d], "{l:?}");
            assert_eq!(host(&y1), host(&y2));
            assert_eq!(host(&l1), host(&l2));
            assert_eq!(host(&j1), host(&j2));
        }
    }
}
