use super::{prototype_trace, AutoNormal, LatentSite};
use candle_core::{Tensor, D};
use candle_nn::{Linear, Module};
use ppl_core::special::softplus;
use ppl_core::Model;
use ppl_core::{ChoiceMap, SiteName, Trace};
use ppl_core::{Ctx, PlateOpts};
use ppl_core::{PplError, Result};

/// An amortised mean-field guide built from the model's trace: an MLP encoder maps each
/// data point `x_i` of a plate to the Gaussian parameters of every local latent of that
/// point, `q(z_i | x_i) = Π_s T_s(N(μ_s(x_i), diag σ_s(x_i)²))`, `σ = softplus(·) + 10⁻⁵`.
///
/// The encoder's input is every observed site inside the plate, flattened per point and
/// concatenated (read from the prototype run, which must cover the whole plate), or
/// tensors given with [`AutoAmortized::with_inputs`]. Its output width is
/// `2 Σ_s d_s`, with `d_s` the unconstrained size of site `s` per point. Latents outside
/// the plate (globals) get an [`AutoNormal`]. A subsampled plate draws its minibatch in the
/// guide; the encoder sees only those rows, so a step costs `O(batch)`. Weights live under
/// `auto_amortized/encoder/…`.
///
/// **New or simulated data without rebuilding.** The guide reads its encoder input through
/// the input site [`AutoAmortized::INPUT`] (see `Ctx::input`), so a handler can hand it
/// other rows: `Condition`/`Substitute` with [`AutoAmortized::input_choices`] of a trace of
/// the model run on other data, or of the model run under `Uncondition` (the sleep phase
/// of wake-sleep: `q(z | x)` scored at simulated `(z, x)`). Inputs with another number of
/// rows than the plate run the plate at that size, without subsampling.
pub struct AutoAmortized {
    plate: (String, usize, isize),
    local: Vec<(LatentSite, usize, usize, Vec<usize>)>,
    out_dim: usize,
    globals: Option<AutoNormal>,
    inputs: Tensor,
    /// The model's observed sites that form the encoder input, in order (empty when the
    /// inputs were given with `with_inputs`).
    observed: Vec<SiteName>,
    layers: Vec<Linear>,
}

impl std::fmt::Debug for AutoAmortized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoAmortized")
            .field("plate", &self.plate)
            .field("out_dim", &self.out_dim)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl AutoAmortized {
    /// Builds the guide from one run of `model` (over the whole plate `plate`), with hidden
    /// layer widths `hidden` (ReLU).
    pub fn new<M: Model + ?Sized>(
        ctx: &mut Ctx,
        model: &M,
        plate: &str,
        hidden: &[usize],
    ) -> Result<Self> {
        let (trace, sites) = prototype_trace(ctx, model)?;
        let in_plate = |s: &LatentSite| s.plates.iter().any(|f| f.name.matches(plate));
        let (local, global): (Vec<_>, Vec<_>) = sites.into_iter().partition(in_plate);
        let first = local.first().ok_or_else(|| {
            PplError::config(
                "AutoAmortized",
                format!("the model has no latent inside plate `{plate}`"),
            )
        })?;
        let frame = first
            .plates
            .iter()
            .find(|f| f.name.matches(plate))
            .cloned()
            .ok_or_else(|| {
                PplError::config("AutoAmortized", format!("plate `{plate}` not found"))
            })?;
        let mut layout = Vec::new();
        let mut off = 0;
        for s in local {
            if s.plates.len() != 1 || s.plate_axis(&frame) != Some(0) {
                return Err(PplError::guide_mismatch(
                    &s.name,
                    format!(
                        "AutoAmortized needs local latents whose only plate is `{plate}`, on \
                         the value's first axis"
                    ),
                ));
            }
            let per_point = s.transform().unconstrained_shape(&s.init.dims()[1..]);
            let d: usize = per_point.iter().product();
            layout.push((s, off, d, per_point));
            off += d;
        }
        let mut inputs = Vec::new();
        let mut observed = Vec::new();
        for o in trace.observed_sites() {
            let Some(f) = o.plates.iter().find(|f| f.name.matches(plate)) else {
                continue;
            };
            let batch_rank = o.dist.as_ref().map_or(0, |d| d.batch_shape().len());
            if f.subsample_size != f.size || batch_rank as isize + f.dim != 0 {
                return Err(PplError::config(
                    "AutoAmortized",
                    format!(
                        "observed site `{}` cannot be an encoder input (subsampled prototype, \
                         or plate `{plate}` not its first axis): pass inputs with \
                         `with_inputs`",
                        o.name
                    ),
                ));
            }
            inputs.push(per_row(&o.value)?.to_dtype(ctx.dtype())?);
            observed.push(o.name.clone());
        }
        if inputs.is_empty() {
            return Err(PplError::config(
                "AutoAmortized",
                format!("no observed site inside plate `{plate}` to encode"),
            ));
        }
        let inputs = Tensor::cat(&inputs, 1)?;
        let globals = if global.is_empty() {
            None
        } else {
            Some(AutoNormal::from_sites(global)?)
        };
        let mut s = AutoAmortized {
            plate: (plate.to_string(), frame.size, frame.dim),
            local: layout,
            out_dim: 2 * off,
            globals,
            inputs,
            observed,
            layers: Vec::new(),
        };
        s.layers = s.build(ctx, hidden)?;
        Ok(s)
    }

    /// Uses `inputs` `[N, …]` (one row per element of the plate) as the encoder's input,
    /// rebuilding the encoder for its width.
    pub fn with_inputs(mut self, ctx: &mut Ctx, inputs: &Tensor, hidden: &[usize]) -> Result<Self> {
        if inputs.rank() == 0 || inputs.dim(0)? != self.plate.1 {
            return Err(PplError::config(
                "AutoAmortized::with_inputs",
                format!(
                    "inputs of shape {:?} do not have one row per element of plate `{}` (size {})",
                    inputs.dims(),
                    self.plate.0,
                    self.plate.1
                ),
            ));
        }
        self.inputs = per_row(inputs)?.to_dtype(ctx.dtype())?;
        self.observed.clear();
        self.layers = self.build(ctx, hidden)?;
        Ok(self)
    }

    /// The name of the input site through which the guide reads its encoder input.
    pub const INPUT: &'static str = "auto_amortized/input";

    /// The encoder input `[N, F]` built from a trace of the model (on other data, or under
    /// `Uncondition`): the same observed sites as the prototype, flattened per point and
    /// concatenated, whether they were observed or sampled in that trace.
    pub fn inputs_from(&self, model_trace: &Trace) -> Result<Tensor> {
        if self.observed.is_empty() {
            return Err(PplError::config(
                "AutoAmortized::inputs_from",
                "the encoder inputs were given with `with_inputs`, not read from model sites",
            ));
        }
        let mut cols = Vec::with_capacity(self.observed.len());
        for name in &self.observed {
            let v = model_trace.value(name.clone())?;
            cols.push(per_row(&v)?.to_dtype(self.inputs.dtype())?);
        }
        Ok(Tensor::cat(&cols, 1)?)
    }

    /// `{ INPUT: inputs_from(model_trace) }`: the choices that make the guide encode the
    /// data of `model_trace` (give them to a `Condition` or `Substitute` handler).
    pub fn input_choices(&self, model_trace: &Trace) -> Result<ChoiceMap> {
        Ok(ChoiceMap::new().with(Self::INPUT, self.inputs_from(model_trace)?))
    }

    fn build(&self, ctx: &mut Ctx, hidden: &[usize]) -> Result<Vec<Linear>> {
        let mut widths = vec![self.inputs.dim(1)?];
        widths.extend_from_slice(hidden);
        widths.push(self.out_dim);
        let mut layers = Vec::new();
        for (i, w) in widths.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            layers.push(ctx.module(&format!("auto_amortized/encoder/{i}"), |vb| {
                candle_nn::linear(a, b, vb)
            })?);
        }
        Ok(layers)
    }

    /// The encoder's output `[n, 2 Σ d_s]` for input rows `x` `[n, F]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// `[N, …]` data as `[N, F]` rows (a scalar per point is one column).
fn per_row(v: &Tensor) -> Result<Tensor> {
    Ok(match v.rank() {
        1 => v.unsqueeze(1)?,
        _ => v.flatten_from(1)?,
    })
}

impl Model for AutoAmortized {
    type Output = ();

    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        if let Some(g) = &self.globals {
            g.run(ctx)?;
        }
        let (name, size, dim) = &self.plate;
        let all = ctx.input(Self::INPUT, &self.inputs)?;
        let rows = all.dim(0)?;
        let first = &self.local[0].0;
        // Other data than the prototype's (a different number of rows): the whole plate.
        let sub = if rows == *size {
            first.plates[0].subsample_size
        } else {
            rows
        };
        let opts = PlateOpts {
            subsample_size: (sub != rows).then_some(sub),
            dim: Some(*dim),
            ..Default::default()
        };
        ctx.plate(name.clone(), rows, opts, |ctx, guard| {
            let x = if sub != rows {
                all.index_select(&guard.indices()?, 0)?
            } else {
                all
            };
            let out = self.encode(&x)?;
            let n = x.dim(0)?;
            let half = self.out_dim / 2;
            for (s, off, d, shape) in &self.local {
                let mut full = vec![n];
                full.extend_from_slice(shape);
                let loc = out.narrow(D::Minus1, *off, *d)?.reshape(full.as_slice())?;
                let raw = out
                    .narrow(D::Minus1, half + off, *d)?
                    .reshape(full.as_slice())?;
                let scale = (softplus(&raw)? + 1e-5)?;
                let q = AutoNormal::site_dist(s, &loc, &scale)?;
                ctx.sample(s.name.clone(), q)?;
            }
            Ok(())
        })
    }
}
