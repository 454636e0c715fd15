use super::Optimizer;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor, Var};
use ppl_core::{PplError, Result};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// Adam / AdamW.
///
/// Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW, Loshchilov & Hutter 2019):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
/// `θ ← θ − lr·(m̂/(√v̂ + ε) + λθ)`.
///
/// On the CPU (f32 and f64) the update of one variable is a single in-place pass over θ,
/// g and the moments (kept as host vectors), with no temporaries; on other devices and
/// dtypes it is written with candle tensor ops. Both paths perform the same floating-point
/// operations in the same order and so give the same bits (tested).
#[derive(Debug, Clone)]
pub struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: u64,
    moments: BTreeMap<String, Moments>,
    fused: bool,
}

/// First and second moments of one variable.
#[derive(Debug, Clone)]
enum Moments {
    /// Candle tensors (any device and dtype; also what a checkpoint restores).
    Tensor { m: Tensor, v: Tensor },
    /// Host vectors updated in place by the fused CPU kernel.
    F32 {
        m: Vec<f32>,
        v: Vec<f32>,
        shape: Vec<usize>,
    },
    /// Host vectors updated in place by the fused CPU kernel.
    F64 {
        m: Vec<f64>,
        v: Vec<f64>,
        shape: Vec<usize>,
    },
}

impl Moments {
    /// The number of elements of each moment.
    fn len(&self) -> usize {
        match self {
            Moments::Tensor { m, .. } => m.elem_count(),
            Moments::F32 { m, .. } => m.len(),
            Moments::F64 { m, .. } => m.len(),
        }
    }

    fn tensors(&self) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::Tensor { m, v } => (m.clone(), v.clone()),
            Moments::F32 { m, v, shape } => (
                Tensor::from_slice(m, shape.as_slice(), &Device::Cpu)?,
                Tensor::from_slice(v, shape.as_slice(), &Device::Cpu)?,
            ),
            Moments::F64 { m, v, shape } => (
                Tensor::from_slice(m, shape.as_slice(), &Device::Cpu)?,
                Tensor::from_slice(v, shape.as_slice(), &Device::Cpu)?,
            ),
        })
    }
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            t: 0,
            moments: BTreeMap::new(),
            fused: true,
        }
    }
}

impl Adam {
    /// Adam with β = (0.9, 0.999), ε = 1e-8, no weight decay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets β₁, β₂ (each in [0, 1)) and ε (> 0).
    pub fn with_betas(mut self, beta1: f64, beta2: f64, eps: f64) -> Result<Self> {
        if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) {
            return Err(PplError::config(
                "Adam",
                format!("need β₁, β₂ in [0, 1) and ε > 0, got {beta1}, {beta2}, {eps}"),
            ));
        }
        (self.beta1, self.beta2, self.eps) = (beta1, beta2, eps);
        Ok(self)
    }

    /// Decoupled weight decay λ ≥ 0 (AdamW).
    pub fn with_weight_decay(mut self, lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(PplError::config(
                "Adam",
                format!("weight decay must be finite and non-negative, got {lambda}"),
            ));
        }
        self.weight_decay = lambda;
        Ok(self)
    }

    /// Turns the fused in-place CPU kernel on (the default) or off (every update written
    /// with candle tensor ops, as on other devices). Both give the same bits; the switch
    /// exists for tests and comparisons.
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }
}

/// The scalars of one step.
#[derive(Debug, Clone, Copy)]
struct Hyper {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    lr: f64,
    c1: f64,
    c2: f64,
}

/// A restored state must match its variable's shape (a checkpoint of another model).
fn check_state_shape(name: &str, m: &Tensor, theta: &Tensor) -> Result<()> {
    if m.dims() == theta.dims() {
        return Ok(());
    }
    Err(PplError::config(
        "Adam",
        format!(
            "the state of `{name}` has shape {:?} but the variable has {:?}",
            m.dims(),
            theta.dims()
        ),
    ))
}

/// The update with candle tensor ops (any device, any float dtype).
fn step_tensor(
    name: &str,
    var: &Var,
    g: &Tensor,
    prev: Option<&Moments>,
    hp: &Hyper,
) -> Result<Moments> {
    let (b1, b2) = (hp.beta1, hp.beta2);
    let theta = var.as_tensor();
    let prev = match prev {
        Some(p) => {
            let (m, v) = p.tensors()?;
            check_state_shape(name, &m, theta)?;
            Some((m, v))
        }
        None => None,
    };
    let m = match &prev {
        Some((m, _)) => ((m * b1)? + (g * (1.0 - b1))?)?,
        None => (g * (1.0 - b1))?,
    };
    let v = match &prev {
        Some((_, v)) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
        None => (g.sqr()? * (1.0 - b2))?,
    };
    let update = ((&m / hp.c1)? / ((&v / hp.c2)?.sqrt()? + hp.eps)?)?;
    let mut next = (theta - (update * hp.lr)?)?;
    if hp.weight_decay > 0.0 {
        next = (next - (theta * (hp.lr * hp.weight_decay))?)?;
    }
    var.set(&next)?;
    Ok(Moments::Tensor { m, v })
}

/// The fused CPU kernel: θ (the in-place destination), g (the source) and the moments.
/// The moments are host vectors behind a `RefCell` because candle's in-place op trait
/// takes `&self`.
struct FusedAdam<'a> {
    hp: Hyper,
    moments: RefCell<&'a mut Moments>,
    first: bool,
}

/// One element-wise pass, in exactly the operation order of [`step_tensor`] (candle's
/// `x * c` is `x·c + 0`, `x / c` is `x·(1/c) + 0`, `x + c` is `x·1 + c`, constants
/// converted from f64 to the element type), compiled per SIMD level by `pulp` so that the
/// loop vectorises to the widest the CPU has.
struct AdamPass<'a, T> {
    theta: &'a mut [T],
    g: &'a [T],
    m: &'a mut [T],
    v: &'a mut [T],
    hp: Hyper,
    first: bool,
}

macro_rules! adam_pass {
    ($t:ty) => {
        impl pulp::WithSimd for AdamPass<'_, $t> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                let hp = self.hp;
                let (b1, b2) = (hp.beta1 as $t, hp.beta2 as $t);
                let (ob1, ob2) = ((1.0 - hp.beta1) as $t, (1.0 - hp.beta2) as $t);
                let (ic1, ic2) = ((1.0 / hp.c1) as $t, (1.0 / hp.c2) as $t);
                let (one, zero, eps, lr) = (1.0 as $t, 0.0 as $t, hp.eps as $t, hp.lr as $t);
                let wd = (hp.lr * hp.weight_decay) as $t;
                let decay = hp.weight_decay > 0.0;
                let first = self.first;
                let step = |th: &mut $t, g: $t, m: &mut $t, v: &mut $t| {
                    let gm = g * ob1 + zero;
                    let gv = (g * g) * ob2 + zero;
                    let mi = if first { gm } else { (*m * b1 + zero) + gm };
                    let vi = if first { gv } else { (*v * b2 + zero) + gv };
                    let den = (vi * ic2 + zero).sqrt() * one + eps;
                    let upd = (mi * ic1 + zero) / den;
                    let mut next = *th - (upd * lr + zero);
                    if decay {
                        next -= *th * wd + zero;
                    }
                    *th = next;
                    *m = mi;
                    *v = vi;
                };
                // A plain index loop over slices of one known length: the form the loop
                // vectoriser handles well (fixed-size blocks gave shuffles and spills).
                let n = self.theta.len();
                let theta = &mut self.theta[..n];
                let (g, m, v) = (&self.g[..n], &mut self.m[..n], &mut self.v[..n]);
                for i in 0..n {
                    step(&mut theta[i], g[i], &mut m[i], &mut v[i]);
                }
            }
        }
    };
}
adam_pass!(f32);
adam_pass!(f64);

fn contiguous<'s, T>(s: &'s [T], l: &Layout, what: &str) -> candle_core::Result<&'s [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("fused Adam: {what} is not contiguous"),
    }
}

impl InplaceOp2 for FusedAdam<'_> {
    fn name(&self) -> &'static str {
        "fused-adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (a, b) = match l1.contiguous_offsets() {
            Some(o) => o,
            None => candle_core::bail!("fused Adam: the variable is not contiguous"),
        };
        let mut moments = self.moments.borrow_mut();
        let n = b - a;
        let (gn, mn) = (l2.shape().elem_count(), moments.len());
        if gn != n || mn != n {
            candle_core::bail!(
                "fused Adam: the variable has {n} elements, its gradient {gn} and its moments {mn}"
            );
        }
        match (s1, s2, &mut **moments) {
            (CpuStorage::F32(theta), CpuStorage::F32(g), Moments::F32 { m, v, .. }) => {
                pulp::Arch::new().dispatch(AdamPass {
                    theta: &mut theta[a..b],
                    g: contiguous(g, l2, "the gradient")?,
                    m,
                    v,
                    hp: self.hp,
                    first: self.first,
                });
            }
            (CpuStorage::F64(theta), CpuStorage::F64(g), Moments::F64 { m, v, .. }) => {
                pulp::Arch::new().dispatch(AdamPass {
                    theta: &mut theta[a..b],
                    g: contiguous(g, l2, "the gradient")?,
                    m,
                    v,
                    hp: self.hp,
                    first: self.first,
                });
            }
            _ => candle_core::bail!("fused Adam: dtype mismatch"),
        }
        Ok(())
    }
}

/// Whether the fused kernel applies: CPU, f32/f64, contiguous variable, gradient of the
/// same dtype and element count.
fn fusable(theta: &Tensor, g: &Tensor) -> bool {
    matches!(theta.device(), Device::Cpu)
        && matches!(
            theta.dtype(),
            candle_core::DType::F32 | candle_core::DType::F64
        )
        && g.dtype() == theta.dtype()
        && g.dims() == theta.dims()
        && theta.is_contiguous()
}

/// Whether `mo` are host moments the fused kernel can use for `theta` as they are (same
/// dtype and shape).
fn host_ready(mo: &Moments, theta: &Tensor) -> bool {
    match (mo, theta.dtype()) {
        (Moments::F32 { shape, .. }, candle_core::DType::F32)
        | (Moments::F64 { shape, .. }, candle_core::DType::F64) => shape.as_slice() == theta.dims(),
        _ => false,
    }
}

/// Host moments for the fused kernel: zeros on the first step (not read), converted once
/// from tensors after a checkpoint restore.
fn host_moments(name: &str, prev: Option<Moments>, theta: &Tensor) -> Result<(Moments, bool)> {
    let n = theta.elem_count();
    let shape = theta.dims().to_vec();
    let f64s = theta.dtype() == candle_core::DType::F64;
    Ok(match prev {
        Some(mo @ (Moments::F32 { .. } | Moments::F64 { .. })) if host_ready(&mo, theta) => {
            (mo, false)
        }
        // Host moments of another shape or dtype (the variable was replaced): through
        // tensors, which checks the shape and converts the dtype.
        Some(mo @ (Moments::F32 { .. } | Moments::F64 { .. })) => {
            let (m, v) = mo.tensors()?;
            return host_moments(name, Some(Moments::Tensor { m, v }), theta);
        }
        Some(Moments::Tensor { m, v }) => {
            check_state_shape(name, &m, theta)?;
            let (m, v) = (m.flatten_all()?, v.flatten_all()?);
            let mo = if f64s {
                Moments::F64 {
                    m: m.to_dtype(candle_core::DType::F64)?.to_vec1()?,
                    v: v.to_dtype(candle_core::DType::F64)?.to_vec1()?,
                    shape,
                }
            } else {
                Moments::F32 {
                    m: m.to_dtype(candle_core::DType::F32)?.to_vec1()?,
                    v: v.to_dtype(candle_core::DType::F32)?.to_vec1()?,
                    shape,
                }
            };
            (mo, false)
        }
        None if f64s => (
            Moments::F64 {
                m: vec![0.0; n],
                v: vec![0.0; n],
                shape,
            },
            true,
        ),
        None => (
            Moments::F32 {
                m: vec![0.0; n],
                v: vec![0.0; n],
                shape,
            },
            true,
        ),
    })
}

impl Optimizer for Adam {
    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        // The step counter advances only when the step succeeds.
        let t = self.t + 1;
        let hp = Hyper {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            lr,
            c1: 1.0 - self.beta1.powi(t as i32),
            c2: 1.0 - self.beta2.powi(t as i32),
        };
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // candle leaves a variable's gradient attached to the graph of the step that
            // produced it; state built from it (moments, momentum) would keep every past
            // step's graph alive (memory grows by one graph per step). Detach it.
            // Contiguous before any state is touched (a clone when it already is).
            let g = &g.detach().contiguous()?;
            let theta = var.as_tensor();
            // On any error the variable's stored moments stay as they were.
            let prev = self.moments.remove(name);
            let next = if self.fused && fusable(theta, g) {
                let ready = prev.as_ref().is_some_and(|mo| host_ready(mo, theta));
                // Only converted state (cheap tensor handles) or no state is kept aside;
                // host moments ready for the kernel are not copied.
                let backup = if ready { None } else { prev.clone() };
                let (mut mo, first) = match host_moments(name, prev, theta) {
                    Ok(v) => v,
                    Err(e) => {
                        if let Some(b) = backup {
                            self.moments.insert(name.clone(), b);
                        }
                        return Err(e);
                    }
                };
                let run = theta.inplace_op2(
                    g,
                    &FusedAdam {
                        hp,
                        moments: RefCell::new(&mut mo),
                        first,
                    },
                );
                if let Err(e) = run {
                    // The kernel checks sizes and dtypes before writing anything.
                    let keep = if ready { Some(mo) } else { backup };
                    if let Some(k) = keep {
                        self.moments.insert(name.clone(), k);
                    }
                    return Err(e.into());
                }
                mo
            } else {
                match step_tensor(name, var, g, prev.as_ref(), &hp) {
                    Ok(next) => next,
                    Err(e) => {
                        if let Some(p) = prev {
                            self.moments.insert(name.clone(), p);
                        }
                        return Err(e);
                    }
                }
            };
            self.moments.insert(name.clone(), next);
        }
        self.t = t;
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.t
    }

    fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut ms: Vec<(String, Tensor)> = Vec::new();
        let mut vs: Vec<(String, Tensor)> = Vec::new();
        for (k, mo) in &self.moments {
            // Host vectors always convert (a CPU tensor of their own length).
            if let Ok((m, v)) = mo.tensors() {
                ms.push((format!("m/{k}"), m));
                vs.push((format!("v/{k}"), v));
            }
        }
        ms.extend(vs);
        (ms, self.t)
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let (mut m, mut v) = (BTreeMap::new(), BTreeMap::new());
        for (k, t) in tensors {
            match k.split_once('/') {
                Some(("m", name)) => m.insert(name.to_string(), t),
                Some(("v", name)) => v.insert(name.to_string(), t),
                _ => {
                    return Err(PplError::config(
                        "Adam::load_state",
                        format!("unexpected state tensor `{k}`"),
                    ))
                }
            };
        }
        let mut moments = BTreeMap::new();
        for (name, mt) in m {
            let Some(vt) = v.remove(&name) else {
                return Err(PplError::config(
                    "Adam::load_state",
                    format!("state `m/{name}` has no matching `v/{name}`"),
                ));
            };
            if mt.dims() != vt.dims() {
                return Err(PplError::config(
                    "Adam::load_state",
                    format!(
                        "`m/{name}` has shape {:?} but `v/{name}` has {:?}",
                        mt.dims(),
                        vt.dims()
                    ),
                ));
            }
            moments.insert(name, Moments::Tensor { m: mt, v: vt });
        }
        if let Some(name) = v.keys().next() {
            return Err(PplError::config(
                "Adam::load_state",
                format!("state `v/{name}` has no matching `m/{name}`"),
            ));
        }
        (self.moments, self.t) = (moments, steps);
        Ok(())
    }
}
