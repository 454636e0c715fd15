use crate::constraints::Constraint;
use crate::distributions::{DistributionExt, Unit};
use crate::error::{PplError, Result};
use crate::handlers::{Handler, Plate, TraceHandler};
use crate::message::{Message, PlateFrame};
use crate::params::ParamStore;
use crate::rng::PplRng;
use crate::site::{SiteKind, SiteName};
use crate::tensor::log_prob_shape;
use crate::trace::Trace;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The run context.
///
/// The explicit run context of a model: handler stack, RNG, parameter store, device.
///
/// There is no global state: a model receives `&mut Ctx` and every primitive goes through
/// it. Different models can run on different threads, each with its own `Ctx` (a `Ctx` is
/// `Send`); they may share one [`ParamStore`], which is internally synchronised.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let mut ctx = Ctx::new(0);
/// let (z, trace) = ctx.trace(|ctx| {
///     let z = ctx.sample("z", Normal::standard(&[2], DType::F32, &Device::Cpu)?)?;
///     ctx.observe("x", Normal::new(&z, &Tensor::new(1f32, &Device::Cpu)?)?, &z.ones_like()?)?;
///     Ok(z)
/// })?;
/// assert_eq!(trace.len(), 2);
/// assert_eq!(trace.value("z")?.dims(), z.dims());
/// # Ok(()) }
/// ```
pub struct Ctx {
    stack: Vec<Box<dyn Handler>>,
    rng: PplRng,
    params: ParamStore,
    device: Device,
    dtype: DType,
    /// Plates whose guard was dropped without [`Ctx::plate_exit`].
    abandoned: Arc<Abandoned>,
    /// The id the next plate gets (matches a dropped guard to its own plate).
    next_plate: u64,
}

/// Plates left by an early exit (`?`, `return`, `break`, a panic) between
/// [`Ctx::plate_enter`] and [`Ctx::plate_exit`]: their guard was dropped unexited. The
/// context removes them (and everything pushed above them) before its next use, so a
/// failed run never leaves a plate active for the rest of the run or the next one.
#[derive(Debug, Default)]
struct Abandoned {
    /// Set when `ids` is non-empty (a cheap check on every site).
    dirty: AtomicBool,
    ids: Mutex<Vec<u64>>,
}

/// Shared by a [`PlateGuard`] and its clones; records the plate as abandoned when the last
/// of them is dropped before the plate was exited.
#[derive(Debug)]
struct PlateToken {
    id: u64,
    exited: AtomicBool,
    abandoned: Arc<Abandoned>,
}

impl Drop for PlateToken {
    fn drop(&mut self) {
        if !self.exited.load(Ordering::Acquire) {
            let mut ids = self
                .abandoned
                .ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.push(self.id);
            self.abandoned.dirty.store(true, Ordering::Release);
        }
    }
}

/// A plate on the handler stack, tagged with the id its guard holds.
struct PlateEntry {
    id: u64,
    plate: Plate,
}

impl Handler for PlateEntry {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        self.plate.process(msg)
    }

    fn postprocess(&mut self, msg: &mut Message) -> Result<()> {
        self.plate.postprocess(msg)
    }

    fn rng(&mut self) -> Option<&mut PplRng> {
        self.plate.rng()
    }

    fn plate_frame(&self) -> Option<&PlateFrame> {
        self.plate.plate_frame()
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("handlers", &self.stack.len())
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .finish()
    }
}

/// Returned by [`Ctx::plate_enter`]; pass it back to [`Ctx::plate_exit`].
///
/// A guard dropped without `plate_exit` (its last clone, when cloned), e.g. because a `?`
/// left the code between enter and exit, abandons the plate: the context removes it, and
/// everything pushed on top of it, before its next use. So an error inside a plate never
/// leaves the plate active for the rest of the run or for the next run on the context.
/// Keep the guard alive (`let g = ...`, not `let _ = ...`) while the plate should be active.
#[derive(Debug, Clone)]
pub struct PlateGuard {
    depth: usize,
    frame: PlateFrame,
    /// `None` without subsampling: the indices are `0..size`, built only if asked for.
    indices: Option<Tensor>,
    device: Device,
    /// Dropping the last clone of an unexited guard makes the context remove the plate.
    token: Arc<PlateToken>,
}

impl PlateGuard {
    /// The indices of the (sub)sampled elements, `u32` of length `subsample_size`
    /// (`0..size` without subsampling). Use them to select the matching data rows.
    pub fn indices(&self) -> Result<Tensor> {
        match &self.indices {
            Some(t) => Ok(t.clone()),
            None => Ok(Tensor::arange(0u32, self.frame.size as u32, &self.device)?),
        }
    }

    /// The plate's frame (name, dim, sizes).
    pub fn frame(&self) -> &PlateFrame {
        &self.frame
    }
}

/// Options of a plate beyond its name and size.
#[derive(Debug, Clone, Default)]
pub struct PlateOpts {
    /// Draw a random subsample of this many elements per run (log densities are scaled by
    /// `size / subsample_size`).
    pub subsample_size: Option<usize>,
    /// Use exactly these indices as the subsample (a `u32`/`i64` vector of distinct indices
    /// in `0..size`, checked with validation on).
    pub subsample: Option<Tensor>,
    /// The batch dim (negative, from the right); the first free dim from `-1` leftwards
    /// when `None`.
    pub dim: Option<isize>,
    /// No batch dim of a site inside may lie left of this plate's dim: a site whose batch
    /// shape reaches further left is an error naming it, before its log density is
    /// computed. Vectorising plates set it (the engines' particle plate, placed left of
    /// every plate of the model): a dim left of it always means that a tensor with the
    /// vectorised dim was combined with one without it at the wrong position.
    pub outermost: bool,
}

impl Ctx {
    /// A context on the CPU with `f32` defaults and a fresh parameter store.
    pub fn new(seed: u64) -> Self {
        Self::with_store(seed, ParamStore::new(), Device::Cpu)
    }

    /// A context using an existing parameter store on `device`.
    pub fn with_store(seed: u64, params: ParamStore, device: Device) -> Self {
        Ctx {
            stack: Vec::new(),
            rng: PplRng::seed_from_u64(seed),
            params,
            device,
            dtype: DType::F32,
            abandoned: Arc::default(),
            next_plate: 0,
        }
    }

    /// Sets the default dtype (used by [`Ctx::module`]).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// The device models should put their tensors on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The default floating dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The parameter store.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The RNG in effect: the innermost [`Seed`](crate::handlers::Seed) handler's, or the
    /// context's own.
    pub fn rng(&mut self) -> &mut PplRng {
        self.unwind_abandoned();
        let pos = self.stack.iter_mut().rposition(|h| h.rng().is_some());
        match pos.and_then(|i| self.stack[i].rng()) {
            Some(r) => r,
            None => &mut self.rng,
        }
    }

    /// The context's own RNG (for checkpoints: save and restore its state).
    pub fn base_rng(&mut self) -> &mut PplRng {
        &mut self.rng
    }

    /// The number of active handlers.
    pub fn depth(&self) -> usize {
        self.abandoned_at().unwrap_or(self.stack.len())
    }

    /// The stack position of the outermost plate whose guard was dropped unexited.
    fn abandoned_at(&self) -> Option<usize> {
        if !self.abandoned.dirty.load(Ordering::Acquire) {
            return None;
        }
        let ids = self
            .abandoned
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.stack.iter().position(|h| {
            let any: &dyn std::any::Any = &**h;
            any.downcast_ref::<PlateEntry>()
                .is_some_and(|p| ids.contains(&p.id))
        })
    }

    /// Removes the plates whose guard was dropped without [`Ctx::plate_exit`] (an early
    /// `?`, `return` or `break` inside a plate), with everything pushed above them. Runs
    /// before every use of the handler stack.
    fn unwind_abandoned(&mut self) {
        if !self.abandoned.dirty.load(Ordering::Acquire) {
            return;
        }
        if let Some(at) = self.abandoned_at() {
            self.stack.truncate(at);
        }
        let mut ids = self
            .abandoned
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.clear();
        self.abandoned.dirty.store(false, Ordering::Release);
    }

    /// Runs `f` with `handler` pushed on the stack and returns `f`'s result together with
    /// the handler (e.g. a [`TraceHandler`] holding the trace). The stack is restored even
    /// when `f` fails.
    pub fn handle<H: Handler, R>(
        &mut self,
        handler: H,
        f: impl FnOnce(&mut Ctx) -> Result<R>,
    ) -> Result<(R, H)> {
        self.unwind_abandoned();
        let depth = self.stack.len();
        self.stack.push(Box::new(handler));
        let out = f(self);
        self.unwind_abandoned();
        if self.stack.len() <= depth {
            // `f` exited a plate entered outside it: the handler is gone.
            return Err(PplError::invalid_argument(
                "Ctx::handle",
                "the handler stack was unwound below this handler inside it (a plate entered \
                 outside was exited inside)",
            ));
        }
        self.stack.truncate(depth + 1);
        let any: Box<dyn std::any::Any> = self.stack.remove(depth);
        let h = *any.downcast::<H>().map_err(|_| {
            PplError::invalid_argument(
                "Ctx::handle",
                "the handler stack was rearranged inside this handler",
            )
        })?;
        out.map(|r| (r, h))
    }

    /// Runs `f` under a trace handler: returns its result and the trace of every site.
    pub fn trace<R>(&mut self, f: impl FnOnce(&mut Ctx) -> Result<R>) -> Result<(R, Trace)> {
        let (r, h) = self.handle(TraceHandler::new(), f)?;
        Ok((r, h.into_trace()))
    }

    /// Sends `msg` through the handler stack and performs the default action. `init`
    /// creates a missing parameter. Returns the processed message (its `value` is set).
    pub fn apply(
        &mut self,
        msg: Message,
        init: Option<&mut dyn FnMut() -> Result<Tensor>>,
    ) -> Result<Message> {
        self.apply_checked(msg, init, |_| Ok(()))
    }

    /// [`Ctx::apply`] with `check` run on the message after the default action and before
    /// any `postprocess` (so a rejected value is never recorded).
    fn apply_checked(
        &mut self,
        mut msg: Message,
        init: Option<&mut dyn FnMut() -> Result<Tensor>>,
        check: impl FnOnce(&Message) -> Result<()>,
    ) -> Result<Message> {
        self.unwind_abandoned();
        let n = self.stack.len();
        let mut first = n; // index of the outermost handler that processed the message
        for i in (0..n).rev() {
            self.stack[i].process(&mut msg)?;
            first = i;
            if msg.stop {
                break;
            }
        }
        self.default_action(&mut msg, init)?;
        check(&msg)?;
        for i in first..n {
            self.stack[i].postprocess(&mut msg)?;
        }
        Ok(msg)
    }

    fn default_action(
        &mut self,
        msg: &mut Message,
        init: Option<&mut dyn FnMut() -> Result<Tensor>>,
    ) -> Result<()> {
        match msg.kind {
            SiteKind::Sample => {
                let dist = msg
                    .dist
                    .clone()
                    .ok_or_else(|| msg.error("sample site without a distribution"))?;
                match &msg.value {
                    None => {
                        let v = dist
                            .sample(self.rng(), &[])
                            .map_err(|e| msg.error_from(e))?;
                        msg.value = Some(if msg.detach { v.detach() } else { v });
                    }
                    Some(v) => {
                        // The value may broadcast up to the batch shape (observed data
                        // shared across a particle plate) but never enlarge it; a latent's
                        // value must match exactly.
                        let (batch, event) = (dist.batch_shape(), dist.event_shape());
                        let fits = match log_prob_shape(dist.family(), v.dims(), batch, event) {
                            Ok(lp) => {
                                lp == batch
                                    && (msg.observed || v.rank() == batch.len() + event.len())
                            }
                            Err(_) => false,
                        };
                        if !fits {
                            return Err(msg.error(format!(
                                "value shape {:?} does not match batch shape {:?} + event shape {:?}",
                                v.dims(),
                                batch,
                                event
                            )));
                        }
                        if msg.detach {
                            msg.value = Some(v.detach());
                        }
                    }
                }
            }
            SiteKind::Param => {
                if msg.value.is_none() {
                    let name = msg.name.to_string();
                    let v = match init {
                        Some(f) => self.params.get_or_init(&name, f, &msg.constraint)?,
                        None => self.params.get(&name)?,
                    };
                    msg.value = Some(v);
                }
            }
            SiteKind::Subsample => {
                if msg.value.is_none() {
                    let (size, m) = msg
                        .subsample
                        .ok_or_else(|| msg.error("subsample site without sizes"))?;
                    let perm = self.rng().permutation(size);
                    let idx: Vec<u32> = perm[..m].iter().map(|&i| i as u32).collect();
                    msg.value = Some(Tensor::from_vec(idx, m, &self.device)?);
                }
            }
            SiteKind::Factor | SiteKind::Deterministic | SiteKind::Input => {
                if msg.value.is_none() {
                    return Err(msg.error("no value given"));
                }
            }
        }
        Ok(())
    }

    fn value_of(msg: Message) -> Result<Tensor> {
        match msg.value {
            Some(v) => Ok(v),
            None => Err(msg.error("no value after the handler stack")),
        }
    }

    /// A latent random choice `name ~ dist`; returns its value (drawn, or supplied by a
    /// handler such as `Replay`, `Substitute` or `Condition`).
    pub fn sample(
        &mut self,
        name: impl Into<SiteName>,
        dist: impl DistributionExt,
    ) -> Result<Tensor> {
        let msg = Message::new(name.into(), SiteKind::Sample, Some(dist.into_dyn()));
        Self::value_of(self.apply(msg, None)?)
    }

    /// An auxiliary latent of a guide: sampled and scored like [`Ctx::sample`], but marked
    /// so that [`check_guide`](crate::compat::check_guide) does not expect it in the model
    /// (a guide's joint variable from which it derives the model's latents).
    pub fn sample_auxiliary(
        &mut self,
        name: impl Into<SiteName>,
        dist: impl DistributionExt,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name.into(), SiteKind::Sample, Some(dist.into_dyn()));
        msg.auxiliary = true;
        Self::value_of(self.apply(msg, None)?)
    }

    /// A random choice that is observed with value `obs` when it is `Some` (exactly
    /// [`Ctx::observe`]) and latent otherwise (exactly [`Ctx::sample`]), like Pyro's
    /// `obs=` argument: one line for missing data and semi-supervised models.
    pub fn sample_with_obs(
        &mut self,
        name: impl Into<SiteName>,
        dist: impl DistributionExt,
        obs: Option<&Tensor>,
    ) -> Result<Tensor> {
        match obs {
            Some(v) => self.observe(name, dist, v),
            None => self.sample(name, dist),
        }
    }

    /// Data read by a model or guide: records an input site (no density, not latent, not
    /// a param, never part of `log_joint`) and returns the value the handlers left:
    /// `data` itself, or a replacement from [`Condition`](crate::handlers::Condition) or
    /// [`Substitute`](crate::handlers::Substitute) (whose map holds the name) or from
    /// [`Replay`](crate::handlers::Replay) (whose trace has an input of the same name).
    /// That is how a guide runs on new or simulated data without being rebuilt. A
    /// replacement may have another leading (batch) size, but a dtype or device other than
    /// `data`'s is an error naming the site.
    ///
    /// ```
    /// use ppl_core::prelude::*;
    /// use ppl_core::handlers::Condition;
    /// use candle_core::{Device, Tensor};
    /// # fn main() -> ppl_core::Result<()> {
    /// let guide = |ctx: &mut Ctx| ctx.input("x", &Tensor::zeros((4, 2), candle_core::DType::F32, &Device::Cpu)?);
    /// let new = ChoiceMap::new().with("x", Tensor::ones((7, 2), candle_core::DType::F32, &Device::Cpu)?);
    /// let mut ctx = Ctx::new(0);
    /// let ((x, _), trace) = ctx.trace(|ctx| ctx.handle(Condition::new(new), guide))?;
    /// assert_eq!(x.dims(), &[7, 2]);
    /// assert_eq!(trace.inputs().count(), 1);
    /// # Ok(()) }
    /// ```
    pub fn input(&mut self, name: impl Into<SiteName>, data: &Tensor) -> Result<Tensor> {
        let mut msg = Message::new(name.into(), SiteKind::Input, None);
        msg.value = Some(data.clone());
        let msg = self.apply_checked(msg, None, |m| check_input(m, data))?;
        Self::value_of(msg)
    }

    /// An observed random choice: `value` is data with likelihood `dist`. Its shape must
    /// equal the distribution's batch + event shape (leading dims may broadcast).
    pub fn observe(
        &mut self,
        name: impl Into<SiteName>,
        dist: impl DistributionExt,
        value: &Tensor,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name.into(), SiteKind::Sample, Some(dist.into_dyn()));
        msg.value = Some(value.clone());
        msg.observed = true;
        Self::value_of(self.apply(msg, None)?)
    }

    /// A learnable tensor in the parameter store, created from `init` on first use and
    /// kept in the unconstrained space of `constraint` (real, positive, unit interval,
    /// simplex, lower-Cholesky, greater-than, interval). Returns the constrained value.
    pub fn param(
        &mut self,
        name: impl Into<SiteName>,
        mut init: impl FnMut() -> Result<Tensor>,
        constraint: Constraint,
    ) -> Result<Tensor> {
        let mut msg = Message::new(name.into(), SiteKind::Param, None);
        msg.constraint = constraint;
        Self::value_of(self.apply(msg, Some(&mut init))?)
    }

    /// Adds `log_weight` (batch-shaped, broadcast over enclosing plates) to the model's
    /// log joint: an energy term `-E` or a penalty.
    ///
    /// With validation on ([`crate::validation`]), a log weight that is NaN or `+inf` is a
    /// [`PplError::Site`] naming the site, its plates and the first bad element's index (it
    /// would make the log joint NaN or infinite); `-inf` is accepted: a zero weight.
    pub fn factor(&mut self, name: impl Into<SiteName>, log_weight: &Tensor) -> Result<()> {
        let name = name.into();
        if crate::validation::is_enabled() {
            let host = crate::tensor::host_f64(log_weight)?;
            if let Some(i) = host.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
                let plates: Vec<PlateFrame> = self
                    .stack
                    .iter()
                    .filter_map(|h| h.plate_frame().cloned())
                    .collect();
                return Err(PplError::site(
                    &name,
                    crate::message::describe_plates(&plates),
                    format!(
                        "factor log weight is {} at index {:?} (shape {:?}); log weights must be \
                         finite or -inf (a zero weight)",
                        host[i],
                        crate::tensor::unravel(i, log_weight.dims()),
                        log_weight.dims()
                    ),
                ));
            }
        }
        let unit = Unit::new(log_weight)?;
        let mut msg = Message::new(name, SiteKind::Factor, Some(unit.into_dyn()));
        msg.value = Some(log_weight.clone());
        msg.observed = true;
        self.apply(msg, None)?;
        Ok(())
    }

    /// Records `value` in the trace under `name` (no density); returns it.
    pub fn deterministic(&mut self, name: impl Into<SiteName>, value: &Tensor) -> Result<Tensor> {
        let mut msg = Message::new(name.into(), SiteKind::Deterministic, None);
        msg.value = Some(value.clone());
        Self::value_of(self.apply(msg, None)?)
    }

    /// Enters a plate of `size` conditionally independent elements. Sites sampled until the
    /// matching [`Ctx::plate_exit`] get the plate's batch dim; with subsampling, their log
    /// densities are scaled by `size / subsample_size`.
    ///
    /// Errors ([`PplError::InvalidConfig`], naming the plate): a plate of the same name
    /// already active, a non-negative or already used `dim`, a `subsample_size` outside
    /// `1..=size`, subsample indices that are not a vector or more than `size`. With
    /// validation on ([`crate::validation`]), also explicit or replayed subsample indices
    /// that are negative, not integers, `>= size`, or repeated (each names the index, its
    /// position and the size).
    pub fn plate_enter(
        &mut self,
        name: impl Into<SiteName>,
        size: usize,
        opts: PlateOpts,
    ) -> Result<PlateGuard> {
        self.unwind_abandoned();
        let name = name.into();
        let used: SmallVec<[isize; 4]> = self
            .stack
            .iter()
            .filter_map(|h| h.plate_frame().map(|f| f.dim))
            .collect();
        if let Some(f) = self
            .stack
            .iter()
            .filter_map(|h| h.plate_frame())
            .find(|f| f.name == name)
        {
            return Err(PplError::config(
                "plate",
                format!("plate `{name}` is already active (dim {})", f.dim),
            ));
        }
        let dim = match opts.dim {
            Some(d) if d >= 0 => {
                return Err(PplError::config(
                    "plate",
                    format!("plate `{name}`: dim must be negative, got {d}"),
                ))
            }
            Some(d) if used.contains(&d) => {
                return Err(PplError::config(
                    "plate",
                    format!("plate `{name}`: dim {d} is used by an enclosing plate"),
                ))
            }
            Some(d) => d,
            None => (1..)
                .map(|k| -(k as isize))
                .find(|d| !used.contains(d))
                .unwrap_or(-1),
        };
        let indices = match (&opts.subsample, opts.subsample_size) {
            (Some(idx), _) => {
                if idx.rank() != 1 {
                    return Err(PplError::config(
                        "plate",
                        format!(
                            "plate `{name}`: subsample indices must be a vector, got shape {:?}",
                            idx.dims()
                        ),
                    ));
                }
                check_subsample_indices(&name, size, idx, "subsample")?;
                Some(idx.to_dtype(DType::U32)?)
            }
            (None, Some(m)) if m > size || m == 0 => {
                return Err(PplError::config(
                    "plate",
                    format!("plate `{name}`: subsample size {m} must be in 1..={size}"),
                ))
            }
            (None, Some(m)) if m < size => {
                let mut msg = Message::new(name.clone(), SiteKind::Subsample, None);
                msg.subsample = Some((size, m));
                let idx = Self::value_of(self.apply(msg, None)?)?;
                if idx.dims() != [m] {
                    return Err(PplError::site(
                        &name,
                        "",
                        format!(
                            "replayed subsample indices of plate `{name}` have shape {:?}, \
                             expected [{m}]",
                            idx.dims()
                        ),
                    ));
                }
                check_subsample_indices(&name, size, &idx, "replayed subsample")?;
                Some(idx.to_dtype(DType::U32)?)
            }
            _ => None,
        };
        let sub = match &indices {
            Some(t) => t.dim(0)?,
            None => size,
        };
        if sub > size {
            return Err(PplError::config(
                "plate",
                format!("plate `{name}`: {sub} subsample indices for size {size}"),
            ));
        }
        let frame = PlateFrame {
            name,
            dim,
            size,
            subsample_size: sub,
            outermost: opts.outermost,
        };
        let depth = self.stack.len();
        let id = self.next_plate;
        self.next_plate += 1;
        self.stack.push(Box::new(PlateEntry {
            id,
            plate: Plate::new(frame.clone()),
        }));
        Ok(PlateGuard {
            depth,
            frame,
            indices,
            device: self.device.clone(),
            token: Arc::new(PlateToken {
                id,
                exited: AtomicBool::new(false),
                abandoned: self.abandoned.clone(),
            }),
        })
    }

    /// Leaves the plate entered by `guard` (and anything pushed inside it).
    pub fn plate_exit(&mut self, guard: PlateGuard) -> Result<()> {
        guard.token.exited.store(true, Ordering::Release);
        self.unwind_abandoned();
        if self.stack.len() <= guard.depth {
            return Err(PplError::invalid_argument(
                "plate",
                format!("plate `{}` was already exited", guard.frame.name),
            ));
        }
        self.stack.truncate(guard.depth);
        Ok(())
    }

    /// Runs `f` inside a plate (see [`Ctx::plate_enter`]); `f` gets the plate guard for its
    /// subsample indices.
    pub fn plate<R>(
        &mut self,
        name: impl Into<SiteName>,
        size: usize,
        opts: PlateOpts,
        f: impl FnOnce(&mut Ctx, &PlateGuard) -> Result<R>,
    ) -> Result<R> {
        let guard = self.plate_enter(name, size, opts)?;
        let out = f(self, &guard);
        self.plate_exit(guard)?;
        out
    }

    /// Builds a candle-nn module whose weights live in the parameter store under `path`
    /// (like Pyro's `pyro.module`): the first call creates them, later calls reuse them.
    /// New weights are drawn from a generator seeded by the current state of the context's
    /// generator (the innermost `Seed` handler's, or the base one) and `path`, without
    /// advancing it: the same seed gives the same initial weights, bit for bit.
    pub fn module<M>(
        &mut self,
        path: &str,
        build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
    ) -> Result<M> {
        self.try_module(path, |vb| Ok(build(vb)?))
    }

    /// [`Ctx::module`] for builders that return this crate's [`Result`] (flows, GLM heads),
    /// so their typed errors reach the caller unchanged.
    pub fn try_module<M>(
        &mut self,
        path: &str,
        build: impl FnOnce(VarBuilder<'static>) -> Result<M>,
    ) -> Result<M> {
        let seed = crate::seeded_init::derive_seed(&self.rng().state(), path);
        let vb = self
            .params
            .var_builder(self.dtype, &self.device, seed)
            .pp(path);
        build(vb)
    }
}

/// A replaced input must keep the data's dtype and device (its shape may change).
fn check_input(msg: &Message, data: &Tensor) -> Result<()> {
    let Some(v) = &msg.value else {
        return Err(msg.error("input has no value after the handler stack"));
    };
    if v.dtype() != data.dtype() || !v.device().same_device(data.device()) {
        return Err(msg.error(format!(
            "input replaced by a value of dtype {:?} on {:?} with shape {:?}, but the data has \
             dtype {:?} on {:?} with shape {:?} (a replacement may change the leading batch \
             size, not the dtype or device)",
            v.dtype(),
            v.device().location(),
            v.dims(),
            data.dtype(),
            data.device().location(),
            data.dims()
        )));
    }
    Ok(())
}

/// Checks (with validation on) that the subsample indices `idx` of plate `name` are distinct
/// integers in `0..size`; `what` says where they came from.
fn check_subsample_indices(name: &SiteName, size: usize, idx: &Tensor, what: &str) -> Result<()> {
    if !crate::validation::is_enabled() {
        return Ok(());
    }
    let host = crate::tensor::host_f64(idx)?;
    if let Some((pos, &v)) = host
        .iter()
        .enumerate()
        .find(|(_, &v)| !(v >= 0.0 && v < size as f64 && v.fract() == 0.0))
    {
        return Err(PplError::config(
            "plate",
            format!(
                "plate `{name}`: {what} index {v} at position {pos} is out of range for \
                 size {size} (indices must be integers in 0..{size})"
            ),
        ));
    }
    // Duplicates: sort (index, position) pairs; no allocation proportional to the plate.
    let mut sorted: Vec<(u64, usize)> = host
        .iter()
        .enumerate()
        .map(|(p, &v)| (v as u64, p))
        .collect();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        let (v, mut a, mut b) = (w[0].0, w[0].1, w[1].1);
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        return Err(PplError::config(
            "plate",
            format!(
                "plate `{name}`: {what} index {v} is repeated (positions {a} and {b}; \
                 plate size {size}); indices must be distinct"
            ),
        ));
    }
    Ok(())
}
