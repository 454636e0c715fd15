use crate::constraints::Constraint;
use crate::error::{PplError, Result};
use crate::transforms::biject_to;
use crate::validation;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

const FORMAT_KEY: &str = "ppl.format";
const FORMAT: &str = "ppl-params-1";
const CONSTRAINT_PREFIX: &str = "ppl.constraint.";
const CHECKSUM_PREFIX: &str = "ppl.fnv1a64.";

/// 64-bit FNV-1a of `bytes` (the checksum files carry per tensor).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Learnable parameters by path.
///
/// [`ParamStore`]: learnable tensors by path, on candle-nn's `VarMap`.
///
/// Each parameter is stored as an unconstrained `Var`; reading it maps the var through
/// [`biject_to`] of its constraint, so gradient steps on the var never leave the support.
/// Neural modules built with [`ParamStore::var_builder`] put their weights in the same map
/// (under `path.weight`, `path.bias`, ...), like Pyro's `pyro.module`. The store is a cheap
/// handle (`Clone` shares it) and is safe to use from several threads.
///
/// Files are safetensors: one tensor per parameter (unconstrained), with each constraint in
/// the metadata. [`ParamStore::save`] writes a temporary file and renames it, so a crash
/// never leaves a half-written file under the target name.
#[derive(Clone)]
pub struct ParamStore {
    vars: VarMap,
    constraints: Arc<Mutex<HashMap<String, Constraint>>>,
}

impl Default for ParamStore {
    fn default() -> Self {
        ParamStore {
            vars: VarMap::new(),
            constraints: Arc::default(),
        }
    }
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore")
            .field("names", &self.names())
            .finish()
    }
}

fn param_err(name: &str, reason: impl Into<String>) -> PplError {
    PplError::param(name, reason)
}

/// Encodes the constraints a parameter may have (the ones [`biject_to`] supports).
fn encode(c: &Constraint) -> Option<String> {
    Some(match c {
        Constraint::Real => "real".into(),
        Constraint::Positive => "positive".into(),
        Constraint::NonNegative => "non_negative".into(),
        Constraint::UnitInterval => "unit_interval".into(),
        Constraint::Simplex => "simplex".into(),
        Constraint::LowerCholesky => "lower_cholesky".into(),
        Constraint::ScaledUnitLowerCholesky => "scaled_unit_lower_cholesky".into(),
        Constraint::GreaterThan(a) => format!("greater_than:{a:e}"),
        Constraint::Interval(a, b) => format!("interval:{a:e}:{b:e}"),
        _ => return None,
    })
}

/// Whether two parameter constraints are the same (the common ones compared directly,
/// without building their text forms).
fn same_constraint(a: &Constraint, b: &Constraint) -> bool {
    use Constraint::*;
    match (a, b) {
        (Real, Real)
        | (Positive, Positive)
        | (NonNegative, NonNegative)
        | (UnitInterval, UnitInterval)
        | (Simplex, Simplex)
        | (LowerCholesky, LowerCholesky)
        | (ScaledUnitLowerCholesky, ScaledUnitLowerCholesky) => true,
        _ => encode(a) == encode(b),
    }
}

fn decode(s: &str) -> Option<Constraint> {
    let mut parts = s.split(':');
    let head = parts.next()?;
    let mut num = || -> Option<f64> { parts.next()?.parse().ok() };
    Some(match head {
        "real" => Constraint::Real,
        "positive" => Constraint::Positive,
        "non_negative" => Constraint::NonNegative,
        "unit_interval" => Constraint::UnitInterval,
        "simplex" => Constraint::Simplex,
        "lower_cholesky" => Constraint::LowerCholesky,
        "scaled_unit_lower_cholesky" => Constraint::ScaledUnitLowerCholesky,
        "greater_than" => Constraint::GreaterThan(num()?),
        "interval" => {
            let a = num()?;
            Constraint::Interval(a, num()?)
        }
        _ => return None,
    })
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn constraints(&self) -> MutexGuard<'_, HashMap<String, Constraint>> {
        self.constraints.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn var(&self, name: &str) -> Option<Var> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        data.get(name).cloned()
    }

    fn constraint_of(&self, name: &str) -> Constraint {
        self.constraints()
            .get(name)
            .cloned()
            .unwrap_or(Constraint::Real)
    }

    /// Whether parameter `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.var(name).is_some()
    }

    /// The constrained value of parameter `name`, or an error if it does not exist.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let var = self.var(name).ok_or_else(|| {
            param_err(
                name,
                format!(
                    "not in the parameter store and no initial value was given (have: {})",
                    self.names().join(", ")
                ),
            )
        })?;
        biject_to(&self.constraint_of(name))?.forward(var.as_tensor())
    }

    /// The constrained value of `name`, creating it from `init()` (a value in the support
    /// of `constraint`) on first use. A later call must use the same constraint.
    pub fn get_or_init(
        &self,
        name: &str,
        init: &mut dyn FnMut() -> Result<Tensor>,
        constraint: &Constraint,
    ) -> Result<Tensor> {
        if let Some(var) = self.var(name) {
            // One store lookup per read (this runs for every parameter of every step).
            let have = self.constraint_of(name);
            if !same_constraint(&have, constraint) {
                return Err(param_err(
                    name,
                    format!(
                        "used with constraint `{}` but stored with `{}`",
                        constraint.describe(),
                        have.describe()
                    ),
                ));
            }
            return biject_to(&have)?.forward(var.as_tensor());
        }
        let value = init()?;
        self.insert(name, &value, constraint)?;
        self.get(name)
    }

    /// Creates or overwrites parameter `name` with the constrained `value`.
    pub fn insert(&self, name: &str, value: &Tensor, constraint: &Constraint) -> Result<()> {
        if encode(constraint).is_none() {
            return Err(param_err(
                name,
                format!(
                    "constraint `{}` is not supported for parameters (use real, positive, \
                     non-negative, unit interval, interval, greater than, simplex, lower Cholesky or \
                     scaled unit lower Cholesky)",
                    constraint.describe()
                ),
            ));
        }
        if validation::is_enabled() {
            validation::check_value("param", value, constraint)
                .map_err(|e| param_err(name, format!("initial value: {e}")))?;
        }
        let raw = biject_to(constraint)?.inverse(&value.detach())?;
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        match data.get(name) {
            Some(v) if v.dims() == raw.dims() => v.set(&raw.to_dtype(v.dtype())?)?,
            _ => {
                data.insert(name.to_string(), Var::from_tensor(&raw)?);
            }
        }
        drop(data);
        self.constraints()
            .insert(name.to_string(), constraint.clone());
        Ok(())
    }

    /// The unconstrained variable behind `name` (what an optimiser updates).
    pub fn unconstrained(&self, name: &str) -> Result<Var> {
        self.var(name)
            .ok_or_else(|| param_err(name, "not in the parameter store"))
    }

    /// Every variable (parameters and module weights), sorted by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        let sorted: BTreeMap<&String, &Var> = data.iter().collect();
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every parameter name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.vars().into_iter().map(|(k, _)| k).collect()
    }

    /// Number of stored variables.
    pub fn len(&self) -> usize {
        self.vars.data().lock().map(|d| d.len()).unwrap_or(0)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every parameter.
    pub fn clear(&self) {
        self.vars
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.constraints().clear();
    }

    /// The underlying candle-nn `VarMap`.
    pub fn var_map(&self) -> &VarMap {
        &self.vars
    }

    /// A `VarBuilder` whose variables live in this store (get-or-create by path); new
    /// variables are initialised from a [`PplRng`](crate::PplRng) seeded with `seed` (with
    /// candle-nn's `Init` semantics), so the same seed gives the same weights. (candle-nn's
    /// own `VarMap` initialisation draws from candle's generator, which cannot be seeded.)
    pub fn var_builder(&self, dtype: DType, device: &Device, seed: u64) -> VarBuilder<'static> {
        let backend = crate::seeded_init::SeededBackend::new(self.vars.clone(), seed);
        VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
    }

    /// Every variable (unconstrained, detached) and the metadata entries recording the
    /// constraints: what [`ParamStore::save`] writes, for files that hold more (checkpoints).
    pub fn export(&self) -> (Vec<(String, Tensor)>, HashMap<String, String>) {
        let vars = self.vars();
        let constraints = self.constraints().clone();
        let mut meta = HashMap::new();
        for (name, _) in &vars {
            if let Some(code) = constraints.get(name).and_then(encode) {
                meta.insert(format!("{CONSTRAINT_PREFIX}{name}"), code);
            }
        }
        let tensors = vars
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().detach()))
            .collect();
        (tensors, meta)
    }

    /// Restores what [`ParamStore::export`] produced. Existing variables are updated in
    /// place (so modules built from this store see the new weights) and must keep their
    /// shape and constraint; new names are added. Everything is validated before anything
    /// changes. `source` names the origin in errors.
    pub fn import(
        &self,
        tensors: HashMap<String, Tensor>,
        meta: &HashMap<String, String>,
        source: &str,
    ) -> Result<()> {
        let mut planned = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            let c = match meta.get(&format!("{CONSTRAINT_PREFIX}{name}")) {
                Some(code) => decode(code).ok_or_else(|| {
                    PplError::file(
                        Path::new(source),
                        format!("parameter `{name}`: unknown constraint `{code}`"),
                    )
                })?,
                None => Constraint::Real,
            };
            if let Some(v) = self.var(&name) {
                if v.dims() != t.dims() {
                    return Err(param_err(
                        &name,
                        format!(
                            "{source} holds shape {:?} but the store has shape {:?}",
                            t.dims(),
                            v.dims()
                        ),
                    ));
                }
                let have = self.constraint_of(&name);
                if encode(&have) != encode(&c) {
                    return Err(param_err(
                        &name,
                        format!(
                            "{source} has constraint `{}` but the store has `{}`",
                            c.describe(),
                            have.describe()
                        ),
                    ));
                }
            }
            planned.push((name, t, c));
        }
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, t, c) in planned {
            match data.get(&name) {
                Some(v) => v.set(&t.to_dtype(v.dtype())?)?,
                None => {
                    data.insert(name.clone(), Var::from_tensor(&t)?);
                }
            }
            self.constraints().insert(name, c);
        }
        Ok(())
    }

    /// Checks that `tensors` (with the constraints recorded in `meta`, as
    /// [`ParamStore::export`] writes them) hold exactly the store's parameters: the same
    /// names, shapes and constraints. An empty store matches anything. Otherwise every
    /// difference is listed in one [`PplError::File`] about `path`: parameters missing from
    /// the file, extra ones in it, other shapes, other constraints.
    pub fn check_matches(
        &self,
        tensors: &HashMap<String, Tensor>,
        meta: &HashMap<String, String>,
        path: &Path,
    ) -> Result<()> {
        let vars = self.vars();
        if vars.is_empty() {
            return Ok(());
        }
        let source = path.display();
        let mut diffs = Vec::new();
        for (name, v) in &vars {
            let Some(t) = tensors.get(name) else {
                diffs.push(format!("missing `{name}` (in the store, not in the file)"));
                continue;
            };
            if v.dims() != t.dims() {
                diffs.push(format!(
                    "`{name}`: {source} holds shape {:?} but the store has shape {:?}",
                    t.dims(),
                    v.dims()
                ));
            }
            let file_c = meta
                .get(&format!("{CONSTRAINT_PREFIX}{name}"))
                .cloned()
                .unwrap_or_else(|| "real".into());
            let have = encode(&self.constraint_of(name)).unwrap_or_default();
            if file_c != have {
                diffs.push(format!(
                    "`{name}`: constraint `{file_c}` in the file but `{have}` in the store"
                ));
            }
        }
        let mut extra: Vec<&String> = tensors
            .keys()
            .filter(|n| !vars.iter().any(|(k, _)| k == *n))
            .collect();
        extra.sort();
        for name in extra {
            diffs.push(format!("extra `{name}` (in the file, not in the store)"));
        }
        if diffs.is_empty() {
            return Ok(());
        }
        Err(PplError::file(
            path,
            format!(
                "its parameters do not match the parameter store (another model?): {}",
                diffs.join("; ")
            ),
        ))
    }

    /// Writes every parameter to a safetensors file, atomically (temporary file in the
    /// same directory, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let (tensors, mut meta) = self.export();
        meta.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        write_safetensors(path.as_ref(), tensors, meta)
    }

    /// Loads parameters from a file written by [`ParamStore::save`] onto `device` (see
    /// [`ParamStore::import`]). A corrupt or mismatched file gives a typed error and leaves
    /// the store unchanged.
    pub fn load(&self, path: impl AsRef<Path>, device: &Device) -> Result<()> {
        let path = path.as_ref();
        let (tensors, meta) = read_safetensors(path, device)?;
        if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(PplError::file(
                path,
                format!("not a ppl parameter file (missing `{FORMAT_KEY}: {FORMAT}` metadata)"),
            ));
        }
        self.import(tensors, &meta, &path.display().to_string())
    }
}

/// Serialises tensors and string metadata as safetensors and writes them atomically, with
/// a 64-bit FNV-1a checksum of each tensor's data in the metadata (verified by
/// [`read_safetensors`]).
pub fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    mut meta: HashMap<String, String>,
) -> Result<()> {
    for (name, t) in &tensors {
        let data = safetensors::View::data(t);
        meta.insert(
            format!("{CHECKSUM_PREFIX}{name}"),
            format!("{:016x}", fnv1a64(&data)),
        );
    }
    let bytes = safetensors::tensor::serialize(tensors, Some(meta))
        .map_err(|e| PplError::file_io(path, "cannot serialise tensors", e))?;
    atomic_write(path, &bytes)
}

/// Reads a safetensors file onto `device`: its tensors and its metadata. Unreadable,
/// truncated or corrupt files give [`PplError::FileIo`] with the underlying I/O,
/// safetensors or candle error as its source. Each tensor's data is checked against the
/// checksum [`write_safetensors`] recorded: a mismatch (corrupted bytes), or a tensor
/// without a checksum in a file written by this library (`ppl.format` metadata), is a
/// [`PplError::File`] naming the tensor. The checksum entries are not returned.
pub fn read_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| PplError::file_io(path, "cannot read", e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| PplError::file_io(path, "not a valid safetensors file", e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| PplError::file_io(path, "not a valid safetensors file", e))?;
    let mut meta = meta.metadata().clone().unwrap_or_default();
    let ours = meta.get(FORMAT_KEY).is_some_and(|f| f.starts_with("ppl-"));
    for (name, view) in st.tensors() {
        match meta.remove(&format!("{CHECKSUM_PREFIX}{name}")) {
            Some(want) => {
                let got = format!("{:016x}", fnv1a64(view.data()));
                if got != want {
                    return Err(PplError::file(
                        path,
                        format!(
                            "tensor `{name}` is corrupted: its data has checksum {got}, the \
                             file recorded {want}"
                        ),
                    ));
                }
            }
            None if ours => {
                return Err(PplError::file(
                    path,
                    format!("tensor `{name}` has no checksum (`{CHECKSUM_PREFIX}{name}`)"),
                ))
            }
            None => {}
        }
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| PplError::file_io(path, "corrupt tensor data", e))?;
    Ok((tensors, meta))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers see either the old file or the complete new one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| PplError::file(path, "not a file path"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PplError::file_io(path, "cannot write", e)
    })
}

/// What `param!` accepts as an initial value: a tensor, or a candle or ppl `Result` of one.
pub trait ParamInit {
    /// The initial value.
    fn into_init(self) -> Result<Tensor>;
}

impl ParamInit for Tensor {
    fn into_init(self) -> Result<Tensor> {
        Ok(self)
    }
}

impl ParamInit for &Tensor {
    fn into_init(self) -> Result<Tensor> {
        Ok(self.clone())
    }
}

impl ParamInit for candle_core::Result<Tensor> {
    fn into_init(self) -> Result<Tensor> {
        Ok(self?)
    }
}

impl ParamInit for Result<Tensor> {
    fn into_init(self) -> Result<Tensor> {
        self
    }
}
