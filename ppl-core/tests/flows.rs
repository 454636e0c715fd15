//! Flow layers: brute-force Jacobians, round trips, tangents, gradients, shapes, errors,
//! ActNorm persistence, and FlowDistribution against closed forms.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::flow_checks::{check_bijector, jacobian, log_abs_det, perturb, randn};
use common::{host, lnorm};
use ppl_core::distributions::TransformedDistribution;
use ppl_core::flows::{
    ActNorm, AffineCoupling, Bijector, BijectorTransform, CouplingOptions, Fast, Flow,
    FlowDistribution, Inverse, LuLinear, Mixing, Permutation, RealNvp, RealNvpOptions, Reverse,
};
use ppl_core::prelude::*;
use std::sync::Arc;

const DEV: Device = Device::Cpu;

fn opts() -> CouplingOptions {
    CouplingOptions {
        hidden: vec![8, 8],
        activation: ppl_core::flows::Activation::Tanh,
        clamp: 3.0,
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    host(&(a - b).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f64::max)
}

fn coupling(store: &ParamStore, dim: usize, ctx: usize, dtype: DType) -> AffineCoupling {
    let vb = store.var_builder(dtype, &DEV, 7);
    AffineCoupling::new(
        vb,
        &AffineCoupling::alternating_mask(dim, false),
        ctx,
        &opts(),
    )
    .unwrap()
}

#[test]
fn coupling_is_the_identity_at_init() {
    let store = ParamStore::new();
    let c = coupling(&store, 5, 2, DType::F64);
    let mut rng = PplRng::seed_from_u64(1);
    let z = randn(&mut rng, &[4, 5], 1.0, DType::F64);
    let ctx = randn(&mut rng, &[4, 2], 1.0, DType::F64);
    let (x, ladj) = c.to_data(&z, Some(&ctx)).unwrap();
    assert_eq!(max_abs_diff(&x, &z), 0.0);
    assert_eq!(host(&ladj), vec![0.0; 4]);
    let (z2, ladj2) = c.to_base(&z, Some(&ctx)).unwrap();
    assert_eq!(max_abs_diff(&z2, &z), 0.0);
    assert_eq!(host(&ladj2), vec![0.0; 4]);
}

#[test]
fn coupling_passes_the_bijector_checks() {
    for (ctx_dim, mask) in [
        (0, AffineCoupling::alternating_mask(5, false)),
        (3, AffineCoupling::half_mask(5, true)),
        (2, vec![false, true, true, false, true]),
    ] {
        let store = ParamStore::new();
        let vb = store.var_builder(DType::F64, &DEV, 3);
        let c = AffineCoupling::new(vb, &mask, ctx_dim, &opts()).unwrap();
        perturb(&store, 11, 0.5);
        let mut rng = PplRng::seed_from_u64(2);
        let x = randn(&mut rng, &[3, 5], 1.0, DType::F64);
        let ctx = (ctx_dim > 0).then(|| randn(&mut rng, &[3, ctx_dim], 1.0, DType::F64));
        // Not the identity any more.
        let (y, _) = c.to_data(&x, ctx.as_ref()).unwrap();
        assert!(max_abs_diff(&x, &y) > 1e-2);
        check_bijector(&c, &x, ctx.as_ref(), 1e-6, true);
    }
}

#[test]
fn relu_coupling_passes_the_bijector_checks() {
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &DEV, 3);
    let o = CouplingOptions {
        hidden: vec![6],
        ..CouplingOptions::default()
    };
    let c = AffineCoupling::new(vb, &AffineCoupling::half_mask(4, false), 1, &o).unwrap();
    perturb(&store, 5, 0.5);
    let mut rng = PplRng::seed_from_u64(9);
    let x = randn(&mut rng, &[3, 4], 1.0, DType::F64);
    let ctx = randn(&mut rng, &[3, 1], 1.0, DType::F64);
    check_bijector(&c, &x, Some(&ctx), 1e-6, true);
}

#[test]
fn actnorm_lu_permutations_pass_the_bijector_checks() {
    let store = ParamStore::new();
    let vb = store.var_builder(DType::F64, &DEV, 3);
    let an = ActNorm::new(vb.pp("an"), 4).unwrap();
    let lu = LuLinear::new(vb.pp("lu"), 4, Some(vec![2, 0, 3, 1])).unwrap();
    perturb(&store, 4, 0.7);
    let mut rng = PplRng::seed_from_u64(3);
    let x = randn(&mut rng, &[3, 4], 1.5, DType::F64);
    // ActNorm was perturbed but not initialised: mark it initialised so to_base keeps
    // the perturbed values (checked: to_base then does not change them).
    assert!(an
        .initialize(&randn(&mut rng, &[10, 4], 1.0, DType::F64))
        .unwrap());
    perturb(&store, 5, 0.7);
    check_bijector(&an, &x, None, 1e-6, true);
    check_bijector(&lu, &x, None, 1e-6, true);
    check_bijector(
        &Permutation::random(4, 9, &DEV).unwrap(),
        &x,
        None,
        1e-6,
        true,
    );
    check_bijector(&Reverse::new(4, &DEV).unwrap(), &x, None, 1e-6, true);
    // LU: ladj is Σ log_s, and W = P L U matches the brute-force Jacobian.
    let w = lu.weight().unwrap().to_vec2::<f64>().unwrap();
    let xr: Vec<f64> = host(&x.narrow(0, 0, 1).unwrap());
    let jac = jacobian(|t| lu.to_data(t, None).unwrap().0, &xr, 1e-6);
    for i in 0..4 {
        for j in 0..4 {
            assert!((jac[i][j] - w[i][j]).abs() < 1e-7);
        }
    }
    assert!((log_abs_det(&w) - host(&lu.to_data(&x, None).unwrap().1)[0]).abs() < 1e-10);
}

#[test]
fn permutation_values_and_errors() {
    let p = Permutation::new(vec![2, 0, 1], &DEV).unwrap();
    let z = Tensor::new(&[[10.0f64, 11.0, 12.0]], &DEV).unwrap();
    let (x, l) = p.to_data(&z, None).unwrap();
    assert_eq!(host(&x), vec![12.0, 10.0, 11.0]);
    assert_eq!(host(&l), vec![0.0]);
    assert_eq!(
        host(&p.to_base(&x, None).unwrap().0),
        vec![10.0, 11.0, 12.0]
    );
    assert!(Permutation::new(vec![0, 0, 1], &DEV).is_err());
    assert!(Permutation::new(vec![0, 3], &DEV).is_err());
    assert!(Permutation::new(vec![], &DEV).is_err());
    assert_eq!(
        Permutation::random(6, 1, &DEV).unwrap().perm(),
        Permutation::random(6, 1, &DEV).unwrap().perm()
    );
}

fn real_nvp(store: &ParamStore, dtype: DType, ctx: usize, actnorm: bool, mixing: Mixing) -> Flow {
    let vb = store.var_builder(dtype, &DEV, 21);
    let o = RealNvpOptions {
        activation: ppl_core::flows::Activation::Tanh,
        actnorm,
        mixing,
        ..RealNvpOptions::default()
    };
    RealNvp::build(vb, 5, ctx, 3, &[8], &o).unwrap()
}

#[test]
fn real_nvp_stacks_pass_the_bijector_checks() {
    for (ctx, actnorm, mixing) in [
        (0, false, Mixing::LuLinear),
        (2, true, Mixing::Reverse),
        (2, true, Mixing::Permutation(4)),
        (1, false, Mixing::None),
    ] {
        let store = ParamStore::new();
        let flow = real_nvp(&store, DType::F64, ctx, actnorm, mixing);
        assert_eq!(flow.fast(), Fast::Both);
        let mut rng = PplRng::seed_from_u64(6);
        let x = randn(&mut rng, &[3, 5], 1.0, DType::F64);
        let c = (ctx > 0).then(|| randn(&mut rng, &[3, ctx], 1.0, DType::F64));
        // Identity at start without fixed permutations (ActNorm is not initialised in the
        // sampling direction).
        let (y, l) = flow.to_data(&x, c.as_ref()).unwrap();
        if matches!(mixing, Mixing::None | Mixing::LuLinear) {
            assert!(max_abs_diff(&x, &y) < 1e-15);
        }
        assert_eq!(host(&l), vec![0.0; 3]);
        perturb(&store, 8, 0.4);
        if actnorm {
            // Initialise every ActNorm through a density pass on data.
            flow.to_base(
                &randn(&mut rng, &[50, 5], 2.0, DType::F64),
                c.as_ref().map(|c| c.narrow(0, 0, 1).unwrap()).as_ref(),
            )
            .unwrap();
        }
        check_bijector(&flow, &x, c.as_ref(), 1e-6, true);
        check_bijector(&Inverse::new(flow.clone()), &x, c.as_ref(), 1e-6, true);
    }
}

#[test]
fn f32_round_trip() {
    let store = ParamStore::new();
    let flow = real_nvp(&store, DType::F32, 2, true, Mixing::LuLinear);
    perturb(&store, 8, 0.3);
    let mut rng = PplRng::seed_from_u64(6);
    let x = randn(&mut rng, &[64, 5], 1.0, DType::F32);
    let c = randn(&mut rng, &[64, 2], 1.0, DType::F32);
    let (z, l_base) = flow.to_base(&x, Some(&c)).unwrap();
    assert_eq!(z.dtype(), DType::F32);
    let (x2, l_data) = flow.to_data(&z, Some(&c)).unwrap();
    // f32 epsilon 1.2e-7 times a few dozen ops and scales up to e^3.
    assert!(max_abs_diff(&x, &x2) < 2e-5, "{}", max_abs_diff(&x, &x2));
    assert!(max_abs_diff(&l_base.neg().unwrap(), &l_data) < 2e-5);
    // And it agrees with the same flow in f64 (same seeds, same weights up to rounding).
    let store64 = ParamStore::new();
    let flow64 = real_nvp(&store64, DType::F64, 2, true, Mixing::LuLinear);
    perturb(&store64, 8, 0.3);
    let (z64, _) = flow64
        .to_base(
            &x.to_dtype(DType::F64).unwrap(),
            Some(&c.to_dtype(DType::F64).unwrap()),
        )
        .unwrap();
    assert!(max_abs_diff(&z.to_dtype(DType::F64).unwrap(), &z64) < 1e-4);
}

#[test]
fn multi_axis_batches_and_context_broadcasting_match_row_by_row() {
    let store = ParamStore::new();
    let flow = real_nvp(&store, DType::F64, 2, false, Mixing::LuLinear);
    perturb(&store, 8, 0.4);
    let mut rng = PplRng::seed_from_u64(12);
    // x [2, 3, 5], context [3, 2] broadcast over the first axis.
    let x = randn(&mut rng, &[2, 3, 5], 1.0, DType::F64);
    let c = randn(&mut rng, &[3, 2], 1.0, DType::F64);
    let v = randn(&mut rng, &[4, 2, 3, 5], 1.0, DType::F64);
    let (z, l, jv) = flow.to_base_jvp(&x, Some(&c), &v).unwrap();
    assert_eq!(z.dims(), &[2, 3, 5]);
    assert_eq!(l.dims(), &[2, 3]);
    assert_eq!(jv.dims(), &[4, 2, 3, 5]);
    let (xd, ld, jd) = flow.to_data_jvp(&z, Some(&c), &jv).unwrap();
    assert!(max_abs_diff(&xd, &x) < 1e-10);
    assert!(max_abs_diff(&ld, &l.neg().unwrap()) < 1e-10);
    // J_f J_{f⁻¹} v = v.
    assert!(max_abs_diff(&jd, &v) < 1e-10);
    for a in 0..2 {
        for b in 0..3 {
            let xi = x
                .narrow(0, a, 1)
                .unwrap()
                .narrow(1, b, 1)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let ci = c.narrow(0, b, 1).unwrap();
            let (zi, li) = flow.to_base(&xi, Some(&ci)).unwrap();
            let want = z
                .narrow(0, a, 1)
                .unwrap()
                .narrow(1, b, 1)
                .unwrap()
                .squeeze(0)
                .unwrap();
            assert!(max_abs_diff(&zi, &want) < 1e-12);
            assert!((host(&li)[0] - host(&l)[a * 3 + b]).abs() < 1e-12);
        }
    }
    // A single event [5] (no batch axis) with one context row gives batch shape [1].
    let x1 = randn(&mut rng, &[5], 1.0, DType::F64);
    let (z1, l1) = flow
        .to_base(&x1, Some(&c.narrow(0, 0, 1).unwrap()))
        .unwrap();
    assert_eq!((z1.dims(), l1.dims()), (&[1usize, 5][..], &[1usize][..]));
    // Unconditional layers keep the input's shape: rank 1 works.
    let lu_store = ParamStore::new();
    let lu = LuLinear::new(lu_store.var_builder(DType::F64, &DEV, 0), 5, None).unwrap();
    perturb(&lu_store, 1, 0.5);
    let (z1, l1) = lu.to_base(&x1, None).unwrap();
    assert_eq!((z1.dims(), l1.dims()), (&[5usize][..], &[][..]));
    let (x2, _) = lu.to_data(&z1, None).unwrap();
    assert!(max_abs_diff(&x2, &x1) < 1e-12);
    // So do unconditional stacks (the conditioner takes a single event too).
    let s2 = ParamStore::new();
    let f2 = real_nvp(&s2, DType::F64, 0, true, Mixing::LuLinear);
    perturb(&s2, 2, 0.4);
    f2.to_base(&randn(&mut rng, &[9, 5], 1.0, DType::F64), None)
        .unwrap(); // ActNorm init
    let (z1, l1) = f2.to_base(&x1, None).unwrap();
    assert_eq!((z1.dims(), l1.dims()), (&[5usize][..], &[][..]));
    let (x2, l2) = f2.to_data(&z1, None).unwrap();
    assert!(max_abs_diff(&x2, &x1) < 1e-10);
    assert!((host(&l2)[0] + host(&l1)[0]).abs() < 1e-10);
    let v = randn(&mut rng, &[2, 5], 1.0, DType::F64);
    let (_, _, jv) = f2.to_base_jvp(&x1, None, &v).unwrap();
    assert_eq!(jv.dims(), &[2, 5]);
}

#[test]
fn huge_inputs_give_finite_values_and_gradients() {
    for dtype in [DType::F64, DType::F32] {
        let store = ParamStore::new();
        let c = coupling(&store, 4, 1, dtype);
        perturb(&store, 3, 0.5);
        let x = Tensor::new(&[[1e6f64, -1e6, 3e5, 1e6], [0.1, 1e6, -1e6, 2.0]], &DEV)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let ctx = Tensor::new(&[[1e6f64], [-1e6]], &DEV)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let (z, l) = c.to_base(xv.as_tensor(), Some(&ctx)).unwrap();
        let loss = (z.sqr().unwrap().sum_all().unwrap() * 1e-12)
            .unwrap()
            .add(&l.sum_all().unwrap())
            .unwrap();
        assert!(host(&loss)[0].is_finite());
        let grads = loss.backward().unwrap();
        for (name, v) in store.vars() {
            let g = grads
                .get(v.as_tensor())
                .expect("every weight gets a gradient");
            assert!(
                host(g).iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
        }
        assert!(host(grads.get(xv.as_tensor()).unwrap())
            .iter()
            .all(|x| x.is_finite()));
        // The log-scales stay within the clamp: |ladj| ≤ 2 · 3.
        assert!(host(&l).iter().all(|x| x.abs() <= 6.0 + 1e-6));
    }
}

#[test]
fn coupling_parameter_gradient_matches_finite_differences() {
    let store = ParamStore::new();
    let c = coupling(&store, 4, 2, DType::F64);
    perturb(&store, 13, 0.5);
    let mut rng = PplRng::seed_from_u64(4);
    let ctx = randn(&mut rng, &[3, 2], 1.0, DType::F64);
    let x = randn(&mut rng, &[3, 4], 1.0, DType::F64);
    let flow: Arc<dyn Bijector> = Arc::new(c);
    let dist = FlowDistribution::standard_normal(flow, Some(ctx), DType::F64, &DEV).unwrap();
    let objective = || dist.log_prob(&x).unwrap().sum_all().unwrap();
    let grads = objective().backward().unwrap();
    let mut checked = 0;
    for (name, v) in store.vars() {
        let g = host(grads.get(v.as_tensor()).unwrap());
        let base = host(v.as_tensor());
        // A few entries of every variable.
        for k in [0, base.len() / 2, base.len() - 1] {
            let h = 1e-6;
            let mut val = base.clone();
            val[k] = base[k] + h;
            v.set(&Tensor::from_vec(val.clone(), v.dims(), &DEV).unwrap())
                .unwrap();
            let fp = host(&objective())[0];
            val[k] = base[k] - h;
            v.set(&Tensor::from_vec(val, v.dims(), &DEV).unwrap())
                .unwrap();
            let fm = host(&objective())[0];
            v.set(&Tensor::from_vec(base.clone(), v.dims(), &DEV).unwrap())
                .unwrap();
            let fd = (fp - fm) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() < 1e-6 * fd.abs().max(1.0),
                "{name}[{k}]: {} vs {fd}",
                g[k]
            );
            checked += 1;
        }
    }
    assert!(checked >= 18);
}

#[test]
fn flow_distribution_with_an_affine_flow_is_the_normal() {
    let store = ParamStore::new();
    let an = ActNorm::new(store.var_builder(DType::F64, &DEV, 0), 3).unwrap();
    let loc = [0.5, -1.0, 2.0];
    let sd = [0.3f64, 2.0, 1.1];
    // Initialise from data with exactly that mean and (population) sd per dimension.
    let data: Vec<f64> = [-1.0, 1.0]
        .iter()
        .flat_map(|s| (0..3).map(move |j| loc[j] + s * sd[j]))
        .collect();
    assert!(an
        .initialize(&Tensor::from_vec(data, (2, 3), &DEV).unwrap())
        .unwrap());
    assert!(an.is_initialized().unwrap());
    let flow: Arc<dyn Bijector> = Arc::new(an);
    let dist = FlowDistribution::standard_normal(flow.clone(), None, DType::F64, &DEV).unwrap();
    assert_eq!(dist.event_shape(), &[3]);
    assert!(dist.batch_shape().is_empty());
    assert!(dist.has_rsample());
    let mut rng = PplRng::seed_from_u64(5);
    let x = randn(&mut rng, &[2, 4, 3], 2.0, DType::F64);
    let lp = dist.log_prob(&x).unwrap();
    assert_eq!(lp.dims(), &[2, 4]);
    let xs = host(&x);
    let want: Vec<f64> = xs
        .chunks(3)
        .map(|r| (0..3).map(|j| lnorm(r[j], loc[j], sd[j])).sum())
        .collect();
    common::assert_close("log_prob", &host(&lp), &want, 1e-10);
    // The same through the Transform adapter and TransformedDistribution.
    let base = Normal::standard(&[3], DType::F64, &DEV)
        .unwrap()
        .to_event(1)
        .unwrap();
    let td = TransformedDistribution::new(
        base.into_dyn(),
        Arc::new(BijectorTransform::new(flow.clone(), None)),
    )
    .unwrap();
    common::assert_close(
        "transformed",
        &host(&td.log_prob(&x).unwrap()),
        &want,
        1e-10,
    );
    // sample_with_log_prob agrees with log_prob of its samples.
    let (s, lps) = dist.sample_with_log_prob(&mut rng, &[6]).unwrap();
    common::assert_close(
        "sample log_prob",
        &host(&lps),
        &host(&dist.log_prob(&s).unwrap()),
        1e-10,
    );
}

#[test]
fn linear_flow_samples_have_the_right_mean_and_covariance() {
    let store = ParamStore::new();
    let lu = LuLinear::new(
        store.var_builder(DType::F64, &DEV, 0),
        3,
        Some(vec![1, 2, 0]),
    )
    .unwrap();
    perturb(&store, 17, 0.6);
    let w = lu.weight().unwrap().to_vec2::<f64>().unwrap();
    let b = host(&store.get("bias").unwrap());
    let cov: Vec<Vec<f64>> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| (0..3).map(|k| w[i][k] * w[j][k]).sum())
                .collect()
        })
        .collect();
    let dist = FlowDistribution::standard_normal(Arc::new(lu), None, DType::F64, &DEV).unwrap();
    let n = 40_000;
    let mut rng = PplRng::seed_from_u64(99);
    let s = dist.sample(&mut rng, &[n]).unwrap();
    assert_eq!(s.dims(), &[n, 3]);
    let rows: Vec<Vec<f64>> = s.to_vec2().unwrap();
    let mean: Vec<f64> = (0..3)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let nf = n as f64;
    for j in 0..3 {
        // 5 standard errors of the mean: sd = sqrt(Σ_jj / n).
        let tol = 5.0 * (cov[j][j] / nf).sqrt();
        assert!(
            (mean[j] - b[j]).abs() < tol,
            "mean[{j}] {} vs {}",
            mean[j],
            b[j]
        );
    }
    for i in 0..3 {
        for j in 0..3 {
            let c: f64 = rows
                .iter()
                .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                .sum::<f64>()
                / nf;
            // Var of a Gaussian sample covariance: (Σ_ii Σ_jj + Σ_ij²) / n; 5 sd.
            let tol = 5.0 * ((cov[i][i] * cov[j][j] + cov[i][j].powi(2)) / nf).sqrt();
            assert!(
                (c - cov[i][j]).abs() < tol,
                "cov[{i}][{j}] {c} vs {}",
                cov[i][j]
            );
        }
    }
}

#[test]
fn actnorm_initialises_once_from_data() {
    let store = ParamStore::new();
    let an = ActNorm::new(store.var_builder(DType::F64, &DEV, 0), 3).unwrap();
    assert!(!an.is_initialized().unwrap());
    let mut rng = PplRng::seed_from_u64(8);
    let x = (randn(&mut rng, &[4, 25, 3], 3.0, DType::F64) + 7.0).unwrap();
    let (z, _) = an.to_base(&x, None).unwrap();
    assert!(an.is_initialized().unwrap());
    let zr: Vec<Vec<f64>> = z.reshape((100, 3)).unwrap().to_vec2().unwrap();
    for j in 0..3 {
        let m = zr.iter().map(|r| r[j]).sum::<f64>() / 100.0;
        let v = zr.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / 100.0;
        assert!(
            m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12,
            "dim {j}: mean {m}, var {v}"
        );
    }
    // A second call on other data keeps the parameters.
    let before = host(an.loc());
    let (z2, _) = an.to_base(&(x.clone() * 5.0).unwrap(), None).unwrap();
    assert_eq!(host(an.loc()), before);
    assert!(max_abs_diff(&z2, &z) > 1.0);
    assert!(!an.initialize(&x).unwrap());
    // The flag gets no gradient from a density pass.
    let grads = an
        .to_base(&x, None)
        .unwrap()
        .1
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flag = store.unconstrained("initialized").unwrap();
    assert!(grads.get(flag.as_tensor()).is_none());
    assert!(grads
        .get(store.unconstrained("log_scale").unwrap().as_tensor())
        .is_some());
    // One row cannot be used to initialise.
    let fresh = ActNorm::new(ParamStore::new().var_builder(DType::F64, &DEV, 0), 3).unwrap();
    assert!(matches!(
        fresh.to_base(&x.narrow(1, 0, 1).unwrap().narrow(0, 0, 1).unwrap(), None),
        Err(PplError::InvalidArgument { .. })
    ));
}

#[test]
fn actnorm_initialises_once_across_threads() {
    let store = ParamStore::new();
    let an = Arc::new(ActNorm::new(store.var_builder(DType::F64, &DEV, 0), 2).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let an = an.clone();
            std::thread::spawn(move || {
                let x = Tensor::new(&[[0.0f64, 1.0], [2.0 + i as f64, 5.0]], &DEV).unwrap();
                an.initialize(&x).unwrap()
            })
        })
        .collect();
    let did: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(did.iter().filter(|d| **d).count(), 1, "{did:?}");
    // Several layers on the same store path (a model rebuilding its modules each run).
    let store = ParamStore::new();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let an = ActNorm::new(store.var_builder(DType::F64, &DEV, 0).pp("an"), 2).unwrap();
                let x = Tensor::new(&[[0.0f64, 1.0], [2.0 + i as f64, 5.0]], &DEV).unwrap();
                an.initialize(&x).unwrap()
            })
        })
        .collect();
    let did: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(did.iter().filter(|d| **d).count(), 1, "{did:?}");
}

#[test]
fn actnorm_state_survives_save_and_load() {
    let dir = std::env::temp_dir().join(format!("ppl-flows-actnorm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("params.safetensors");
    let store = ParamStore::new();
    let build = |s: &ParamStore| {
        RealNvp::build(
            s.var_builder(DType::F64, &DEV, 1),
            4,
            0,
            2,
            &[8],
            &RealNvpOptions {
                actnorm: true,
                ..RealNvpOptions::default()
            },
        )
        .unwrap()
    };
    let flow = build(&store);
    perturb(&store, 2, 0.3);
    let mut rng = PplRng::seed_from_u64(3);
    let data = (randn(&mut rng, &[64, 4], 4.0, DType::F64) - 2.0).unwrap();
    let dist = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F64, &DEV).unwrap();
    let lp = host(&dist.log_prob(&data).unwrap()); // initialises both ActNorms
    assert_eq!(host(&store.get("actnorm0.initialized").unwrap()), vec![1.0]);
    store.save(&path).unwrap();

    // Load first, then rebuild.
    let fresh = ParamStore::new();
    fresh.load(&path, &DEV).unwrap();
    let d2 =
        FlowDistribution::standard_normal(Arc::new(build(&fresh)), None, DType::F64, &DEV).unwrap();
    // Scoring other data must not re-initialise: densities identical on `data`.
    let other = (randn(&mut rng, &[64, 4], 0.1, DType::F64) + 10.0).unwrap();
    d2.log_prob(&other).unwrap();
    assert_eq!(host(&d2.log_prob(&data).unwrap()), lp);
    // Build first, then load (variables updated in place).
    let fresh2 = ParamStore::new();
    let flow3 = build(&fresh2);
    fresh2.load(&path, &DEV).unwrap();
    let d3 = FlowDistribution::standard_normal(Arc::new(flow3), None, DType::F64, &DEV).unwrap();
    d3.log_prob(&other).unwrap();
    assert_eq!(host(&d3.log_prob(&data).unwrap()), lp);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn conditional_flow_distribution_shapes_and_sampling() {
    let store = ParamStore::new();
    let flow = real_nvp(&store, DType::F64, 2, false, Mixing::LuLinear);
    perturb(&store, 3, 0.4);
    let mut rng = PplRng::seed_from_u64(1);
    let ctx = randn(&mut rng, &[3, 2], 1.0, DType::F64);
    let dist =
        FlowDistribution::standard_normal(Arc::new(flow), Some(ctx), DType::F64, &DEV).unwrap();
    assert_eq!(dist.batch_shape(), &[3]);
    let s = dist.sample(&mut rng, &[7]).unwrap();
    assert_eq!(s.dims(), &[7, 3, 5]);
    let lp = dist.log_prob(&s).unwrap();
    assert_eq!(lp.dims(), &[7, 3]);
    assert!(host(&lp).iter().all(|x| x.is_finite()));
    let e = dist.expand(&[4, 3]).unwrap();
    assert_eq!(e.batch_shape(), &[4, 3]);
    assert_eq!(e.sample(&mut rng, &[2]).unwrap().dims(), &[2, 4, 3, 5]);
    // A value whose batch does not broadcast is a shape error.
    let bad = randn(&mut rng, &[2, 5], 1.0, DType::F64);
    assert!(matches!(dist.log_prob(&bad), Err(PplError::Shape { .. })));
}

#[test]
fn typed_errors() {
    let store = ParamStore::new();
    let c = coupling(&store, 4, 2, DType::F64);
    let x = Tensor::zeros((3, 4), DType::F64, &DEV).unwrap();
    let ctx = Tensor::zeros((3, 2), DType::F64, &DEV).unwrap();
    // Wrong event size.
    let wrong = Tensor::zeros((3, 5), DType::F64, &DEV).unwrap();
    assert!(matches!(
        c.to_data(&wrong, Some(&ctx)),
        Err(PplError::Shape { .. })
    ));
    let lu = LuLinear::new(store.var_builder(DType::F64, &DEV, 0).pp("lu"), 4, None).unwrap();
    assert!(matches!(
        lu.to_base(&wrong, None),
        Err(PplError::Shape { .. })
    ));
    // Missing context.
    let e = c.to_base(&x, None).unwrap_err();
    assert!(matches!(e, PplError::InvalidArgument { .. }), "{e}");
    assert!(e.to_string().contains("needs a context"), "{e}");
    // Context of the wrong width.
    let e = c.to_base(&x, Some(&x)).unwrap_err();
    assert!(
        e.to_string().contains("has 4 features") && e.to_string().contains("[..., 2]"),
        "{e}"
    );
    // Context to an unconditional layer.
    let u = coupling(&ParamStore::new(), 4, 0, DType::F64);
    let e = u.to_data(&x, Some(&ctx)).unwrap_err();
    assert!(e.to_string().contains("unconditional"), "{e}");
    // Tangents without the K axis.
    assert!(matches!(
        c.to_data_jvp(&x, Some(&ctx), &x),
        Err(PplError::Shape { .. })
    ));
    // Bad constructions.
    let vb = store.var_builder(DType::F64, &DEV, 0);
    assert!(AffineCoupling::new(vb.pp("a"), &[true, true], 0, &opts()).is_err());
    assert!(AffineCoupling::new(
        vb.pp("b"),
        &[true, false],
        0,
        &CouplingOptions {
            clamp: 0.0,
            ..opts()
        }
    )
    .is_err());
    assert!(LuLinear::new(vb.pp("c"), 3, Some(vec![0, 1])).is_err());
    assert!(RealNvp::build(vb.pp("d"), 1, 0, 2, &[4], &RealNvpOptions::default()).is_err());
    let p3: Arc<dyn Bijector> = Arc::new(Reverse::new(3, &DEV).unwrap());
    let p4: Arc<dyn Bijector> = Arc::new(Reverse::new(4, &DEV).unwrap());
    assert!(Flow::new(vec![p3.clone(), p4]).is_err());
    assert!(Flow::new(vec![]).is_err());
    // A base of the wrong event shape.
    let base = Normal::standard(&[4], DType::F64, &DEV).unwrap().into_dyn();
    assert!(matches!(
        FlowDistribution::new(base, p3, None),
        Err(PplError::Shape { .. })
    ));
}

/// A layer that reports a given speed (to test how [`Flow`] combines them).
#[derive(Debug)]
struct Speed(Reverse, Fast);

impl Bijector for Speed {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn fast(&self) -> Fast {
        self.1
    }
    fn to_data(&self, z: &Tensor, c: Option<&Tensor>) -> ppl_core::Result<(Tensor, Tensor)> {
        self.0.to_data(z, c)
    }
    fn to_base(&self, x: &Tensor, c: Option<&Tensor>) -> ppl_core::Result<(Tensor, Tensor)> {
        self.0.to_base(x, c)
    }
    fn to_data_jvp(
        &self,
        z: &Tensor,
        c: Option<&Tensor>,
        v: &Tensor,
    ) -> ppl_core::Result<(Tensor, Tensor, Tensor)> {
        self.0.to_data_jvp(z, c, v)
    }
    fn to_base_jvp(
        &self,
        x: &Tensor,
        c: Option<&Tensor>,
        v: &Tensor,
    ) -> ppl_core::Result<(Tensor, Tensor, Tensor)> {
        self.0.to_base_jvp(x, c, v)
    }
}

#[test]
fn flow_speed_and_inverse() {
    let s = |f| -> Arc<dyn Bijector> { Arc::new(Speed(Reverse::new(2, &DEV).unwrap(), f)) };
    let flow = |fs: &[Fast]| {
        Flow::new(fs.iter().map(|f| s(*f)).collect())
            .unwrap()
            .fast()
    };
    assert_eq!(flow(&[Fast::Both, Fast::Both]), Fast::Both);
    assert_eq!(flow(&[Fast::Both, Fast::ToData]), Fast::ToData);
    assert_eq!(flow(&[Fast::ToBase, Fast::Both]), Fast::ToBase);
    assert_eq!(flow(&[Fast::ToData, Fast::ToBase]), Fast::Neither);
    assert_eq!(flow(&[Fast::Both, Fast::Neither]), Fast::Neither);
    assert_eq!(Inverse::new(s(Fast::Neither)).fast(), Fast::Neither);
    assert_eq!(Inverse::new(s(Fast::ToBase)).fast(), Fast::ToData);
    assert_eq!(Inverse::new(s(Fast::ToData)).fast(), Fast::ToBase);
    // Order: to_data applies layers[0] first.
    let store = ParamStore::new();
    let an = ActNorm::new(store.var_builder(DType::F64, &DEV, 0), 2).unwrap();
    an.initialize(&Tensor::new(&[[0.0f64, 0.0], [2.0, 4.0]], &DEV).unwrap())
        .unwrap(); // loc (1, 2), scale (1, 2)
    let rev: Arc<dyn Bijector> = Arc::new(Reverse::new(2, &DEV).unwrap());
    let f = Flow::new(vec![rev, Arc::new(an)]).unwrap();
    let (x, l) = f
        .to_data(&Tensor::new(&[[10.0f64, 20.0]], &DEV).unwrap(), None)
        .unwrap();
    assert_eq!(host(&x), vec![21.0, 22.0]);
    assert!((host(&l)[0] - 2f64.ln()).abs() < 1e-15);
    let (z, _) = Inverse::new(f.clone()).to_data(&x, None).unwrap();
    assert_eq!(host(&z), vec![10.0, 20.0]);
}

#[test]
fn optimisers_leave_the_actnorm_flag_alone() {
    use candle_nn::Optimizer;
    let store = ParamStore::new();
    let flow = RealNvp::build(
        store.var_builder(DType::F64, &DEV, 1),
        3,
        0,
        2,
        &[8],
        &RealNvpOptions {
            actnorm: true,
            ..RealNvpOptions::default()
        },
    )
    .unwrap();
    let dist = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F64, &DEV).unwrap();
    let mut rng = PplRng::seed_from_u64(2);
    let data = randn(&mut rng, &[32, 3], 2.0, DType::F64);
    let vars: Vec<Var> = store.vars().into_iter().map(|(_, v)| v).collect();
    let params = candle_nn::ParamsAdamW {
        lr: 0.05,
        weight_decay: 0.5,
        ..Default::default()
    };
    let mut adam = candle_nn::AdamW::new(vars.clone(), params).unwrap();
    let mut sgd = candle_nn::SGD::new(vars, 0.05).unwrap();
    let loc_before = host(&store.get("actnorm0.loc").unwrap());
    for _ in 0..3 {
        let loss = dist
            .log_prob(&data)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = loss.backward().unwrap();
        let flag = store.unconstrained("actnorm0.initialized").unwrap();
        assert!(grads.get(flag.as_tensor()).is_none());
        adam.step(&grads).unwrap();
        sgd.step(&grads).unwrap();
    }
    for name in ["actnorm0.initialized", "actnorm1.initialized"] {
        assert_eq!(host(&store.get(name).unwrap()), vec![1.0], "{name}");
    }
    // The ActNorm parameters themselves are trained.
    assert_ne!(host(&store.get("actnorm0.loc").unwrap()), loc_before);
}

#[test]
fn flow_distribution_at_model_sites() {
    let mut rng = PplRng::seed_from_u64(3);
    let x = randn(&mut rng, &[4, 3], 1.0, DType::F64);
    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let (lps, trace) = ctx
        .trace(|ctx| {
            let flow = ctx.module("flow", |vb| {
                RealNvp::build(vb, 3, 0, 2, &[8], &RealNvpOptions::default())
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            })?;
            let dev = ctx.device().clone();
            let d = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F64, &dev)?;
            let z = ctx.sample("z", d.clone())?;
            ctx.observe("x", d.expand(&[4])?, &x)?;
            Ok((d.log_prob(&z)?, d.log_prob(&x)?))
        })
        .unwrap();
    assert!(ctx
        .params()
        .names()
        .iter()
        .any(|n| n.starts_with("flow.coupling0.")));
    assert_eq!(trace.value("z").unwrap().dims(), &[3]);
    let want = host(&lps.0)[0] + host(&lps.1).iter().sum::<f64>();
    let got = host(&trace.log_joint().unwrap())[0];
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn maximum_likelihood_fits_a_correlated_gaussian() {
    use candle_nn::Optimizer;
    // Data from N(0, Σ), Σ = [[4, 3.6], [3.6, 4]]: x = A e with A its Cholesky factor.
    let mut rng = PplRng::seed_from_u64(10);
    let n = 512;
    let (a11, a21) = (2.0, 1.8);
    let a22 = (4.0f64 - a21 * a21).sqrt();
    let e = rng.normals(2 * n);
    let xs: Vec<f64> = e
        .chunks(2)
        .flat_map(|r| [a11 * r[0], a21 * r[0] + a22 * r[1]])
        .collect();
    let data = Tensor::from_vec(xs.clone(), (n, 2), &DEV).unwrap();
    // The true density's mean negative log-likelihood on these data.
    let logdet = (a11 * a22).ln();
    let true_nll: f64 = e
        .chunks(2)
        .map(|r| 0.5 * (r[0] * r[0] + r[1] * r[1]) + logdet + (2.0 * std::f64::consts::PI).ln())
        .sum::<f64>()
        / n as f64;
    let store = ParamStore::new();
    let flow = RealNvp::build(
        store.var_builder(DType::F64, &DEV, 4),
        2,
        0,
        2,
        &[16],
        &RealNvpOptions::default(),
    )
    .unwrap();
    let dist = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F64, &DEV).unwrap();
    let nll = || {
        dist.log_prob(&data)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap()
    };
    let start = host(&nll())[0];
    let vars: Vec<Var> = store.vars().into_iter().map(|(_, v)| v).collect();
    let params = candle_nn::ParamsAdamW {
        lr: 0.02,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(vars, params).unwrap();
    for _ in 0..300 {
        opt.backward_step(&nll()).unwrap();
    }
    let end = host(&nll())[0];
    // The identity flow starts far off (Σ has variance 4 and correlation 0.9); a linear
    // LU layer between couplings can represent the target exactly, so the fit must get
    // within 0.05 nats of the true density (on the training data it may go slightly below).
    assert!(start - true_nll > 1.0, "start {start}, true {true_nll}");
    assert!(
        (end - true_nll).abs() < 0.05,
        "end {end}, true {true_nll}, start {start}"
    );
}
