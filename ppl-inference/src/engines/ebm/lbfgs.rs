//! L-BFGS for many independent small problems at once (one per data point and restart).

use super::energy::EnergyModel;
use super::refine::{per_point_mask, Run};
use candle_core::Tensor;
use ppl_core::{Ctx, Model, Result};
use std::collections::VecDeque;

/// Armijo's sufficient-decrease constant.
const C1: f64 = 1e-4;
/// Backtracking halvings per line search before a point gives up (keeps its iterate).
const TRIALS: usize = 30;

/// Per-point inner product `Σ_sites Σ_{elements of the point} a·b`: `[R, B]`.
fn pdot(a: &[Tensor], b: &[Tensor], axes: &[usize]) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for ((x, y), &axis) in a.iter().zip(b).zip(axes) {
        let mut p = (x * y)?;
        for d in (1..p.rank()).rev() {
            if d != axis {
                p = p.sum(d)?;
            }
        }
        total = Some(match total {
            None => p,
            Some(t) => (t + p)?,
        });
    }
    total.ok_or_else(|| ppl_core::PplError::config("Refine", "no latent to refine"))
}

/// `c` `[R, B]` times each site's `v`, per point.
fn pscale(c: &Tensor, v: &[Tensor], axes: &[usize]) -> Result<Vec<Tensor>> {
    v.iter()
        .zip(axes)
        .map(|(x, &axis)| {
            let mut shape = vec![1usize; x.rank()];
            shape[0] = c.dim(0)?;
            shape[axis] = c.dim(1)?;
            Ok(x.broadcast_mul(&c.reshape(shape)?)?)
        })
        .collect()
}

fn add(a: &[Tensor], b: &[Tensor]) -> Result<Vec<Tensor>> {
    a.iter().zip(b).map(|(x, y)| Ok((x + y)?)).collect()
}

fn sub(a: &[Tensor], b: &[Tensor]) -> Result<Vec<Tensor>> {
    a.iter().zip(b).map(|(x, y)| Ok((x - y)?)).collect()
}

/// `where(c > 0, a, b)` with `c` a `[R, B]` float mask, per point.
fn select(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(c.gt(0.0)?.where_cond(a, b)?)
}

/// Minimises every point's energy by L-BFGS from `us` for `steps` iterations; `run`
/// records the best iterate per point.
pub(crate) fn minimise<M: Model + ?Sized>(
    em: &EnergyModel<'_, M>,
    ctx: &mut Ctx,
    run: &mut Run,
    mut us: Vec<Tensor>,
    history: usize,
    steps: usize,
) -> Result<()> {
    let axes = run.axes.clone();
    let (mut e, mut g) = run.eval(em, ctx, &us, true)?;
    let mut hist: VecDeque<(Vec<Tensor>, Vec<Tensor>, Tensor)> = VecDeque::new();
    for _ in 0..steps {
        // Two-loop recursion: d = −H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = (rho * pdot(s, &q, &axes)?)?;
            q = sub(&q, &pscale(&a, y, &axes)?)?;
            alphas.push(a);
        }
        let gamma = match hist.back() {
            Some((s, y, _)) => {
                let sy = pdot(s, y, &axes)?;
                let yy = pdot(y, y, &axes)?;
                let ok = (sy.gt(0.0)?.to_dtype(e.dtype())? * yy.gt(0.0)?.to_dtype(e.dtype())?)?;
                let safe = select(&ok, &yy, &yy.ones_like()?)?;
                select(&ok, &(sy / safe)?, &e.ones_like()?)?
            }
            None => e.ones_like()?,
        };
        let mut r = pscale(&gamma, &q, &axes)?;
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = (rho * pdot(y, &r, &axes)?)?;
            r = add(&r, &pscale(&(a - b)?, s, &axes)?)?;
        }
        let mut d: Vec<Tensor> = r
            .iter()
            .map(|x| x.neg())
            .collect::<candle_core::Result<_>>()?;
        // Where the direction is not a descent direction, fall back to −g.
        let gd = pdot(&g, &d, &axes)?;
        let bad = gd.ge(0.0)?.to_dtype(e.dtype())?;
        let neg_g: Vec<Tensor> = g
            .iter()
            .map(|x| x.neg())
            .collect::<candle_core::Result<_>>()?;
        d = d
            .iter()
            .zip(&neg_g)
            .zip(&axes)
            .map(|((x, y), &axis)| Ok(per_point_mask(&bad.gt(0.0)?, x, axis)?.where_cond(y, x)?))
            .collect::<Result<_>>()?;
        let gd = pdot(&g, &d, &axes)?;
        // Backtracking line search per point from the unit step.
        let mut alpha = e.ones_like()?;
        let mut done = e.zeros_like()?;
        let mut u_new = us.clone();
        for _ in 0..TRIALS {
            let u_try = add(&us, &pscale(&alpha, &d, &axes)?)?;
            let (e_try, _) = run.eval(em, ctx, &u_try, false)?;
            let bound = (&e + (&alpha * &gd)?.affine(C1, 0.0)?)?;
            let ok = (e_try.le(&bound)?.to_dtype(e.dtype())? * done.affine(-1.0, 1.0)?)?;
            u_new = u_new
                .iter()
                .zip(&u_try)
                .zip(&axes)
                .map(|((old, new), &axis)| {
                    Ok(per_point_mask(&ok.gt(0.0)?, new, axis)?.where_cond(new, old)?)
                })
                .collect::<Result<_>>()?;
            done = (done + ok)?;
            if done
                .min_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?
                > 0.5
            {
                break;
            }
            alpha = select(&done, &alpha, &alpha.affine(0.5, 0.0)?)?;
        }
        let (e2, g2) = run.eval(em, ctx, &u_new, true)?;
        let s = sub(&u_new, &us)?;
        let y = sub(&g2, &g)?;
        let sy = pdot(&s, &y, &axes)?;
        // A pair without positive curvature (or no step) gets ρ = 0: it drops out of both
        // loops for that point.
        let pos = sy.gt(1e-300)?;
        let safe = pos.where_cond(&sy, &sy.ones_like()?)?;
        let rho = pos.where_cond(&safe.recip()?, &sy.zeros_like()?)?;
        hist.push_back((s, y, rho));
        if hist.len() > history {
            hist.pop_front();
        }
        us = u_new;
        g = g2;
        e = e2;
    }
    Ok(())
}
