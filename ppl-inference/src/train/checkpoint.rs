use super::trainer::Trainer;
use crate::engine::Engine;
use candle_core::Tensor;
use ppl_core::Ctx;
use ppl_core::{read_safetensors, write_safetensors};
use ppl_core::{PplError, Result};
use ppl_core::{PplRng, RngState};
use std::collections::HashMap;
use std::path::Path;

const FORMAT_KEY: &str = "ppl.format";
const FORMAT: &str = "ppl-checkpoint-2";
const ENGINE_KEY: &str = "ppl.engine";
const GROUPS_KEY: &str = "ppl.groups";
const GROUP_STEPS: &str = "ppl.optim_steps/";
const STEP_KEY: &str = "ppl.step";
const RNG_KEY: &str = "ppl.rng";
const PARAM: &str = "param/";
const OPTIM: &str = "optim/";
const FREE: &str = "free/";
const ENGINE: &str = "engine/";

fn corrupt(path: &Path, reason: impl Into<String>) -> PplError {
    PplError::file(path, reason)
}

fn encode_rng(s: &RngState) -> String {
    let key: String = s.seed.iter().map(|b| format!("{b:02x}")).collect();
    format!("{key}:{}:{}", s.stream, s.word_pos)
}

fn decode_rng(s: &str) -> Option<RngState> {
    let mut it = s.split(':');
    let key = it.next()?;
    if key.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let stream = it.next()?.parse().ok()?;
    let word_pos = it.next()?.parse().ok()?;
    it.next().is_none().then_some(RngState {
        seed,
        stream,
        word_pos,
    })
}

/// Writes the context's parameters and RNG state, the trainer's groups (free variables,
/// optimiser states) and step count, and the engine's state to `path`.
///
/// Training checkpoints: the store's parameters, every parameter group's free variables
/// and optimiser state, the engine's state (e.g. moving-average baselines), the RNG state
/// and the trainer's step count in one safetensors file, written atomically (temporary
/// file + rename).
///
/// Restoring a checkpoint into a fresh context, trainer and engine and continuing gives the
/// same numbers, bit for bit on CPU, as a run that never stopped. A file from another
/// engine or with other parameter groups is a typed error that changes nothing.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    ctx: &mut Ctx,
    trainer: &Trainer,
    engine: &dyn Engine,
) -> Result<()> {
    let path = path.as_ref();
    let (params, mut meta) = ctx.params().export();
    let mut tensors: Vec<_> = params
        .into_iter()
        .map(|(n, t)| (format!("{PARAM}{n}"), t))
        .collect();
    let mut names = Vec::new();
    for g in trainer.groups() {
        let (state, steps) = g.optimizer.state();
        tensors.extend(
            state
                .into_iter()
                .map(|(n, t)| (format!("{OPTIM}{}/{n}", g.name), t)),
        );
        if let super::group::Select::Free(vars) = &g.select {
            for (n, v) in vars {
                tensors.push((format!("{FREE}{}/{n}", g.name), v.as_tensor().detach()));
            }
        }
        meta.insert(format!("{GROUP_STEPS}{}", g.name), steps.to_string());
        names.push(g.name.clone());
    }
    tensors.extend(
        engine
            .state()?
            .into_iter()
            .map(|(n, t)| (format!("{ENGINE}{n}"), t)),
    );
    meta.insert(FORMAT_KEY.into(), FORMAT.into());
    meta.insert(STEP_KEY.into(), trainer.steps().to_string());
    meta.insert(ENGINE_KEY.into(), engine.name().to_string());
    meta.insert(GROUPS_KEY.into(), names.join(","));
    meta.insert(RNG_KEY.into(), encode_rng(&ctx.base_rng().state()));
    write_safetensors(path, tensors, meta)
}

/// Restores a checkpoint written by [`save_checkpoint`] into `ctx` (parameters, RNG),
/// `trainer` (free variables, optimiser states, step count) and `engine` (its state).
/// Returns the trainer's step count. A corrupt or truncated file (every tensor's checksum
/// is verified), one written by another engine or with other parameter groups, one whose
/// parameters differ from those of a non-empty store (names, shapes, constraints: every
/// difference is named; an empty store takes the file's parameters), or one whose
/// optimiser state does not fit its group's variables (shape or dtype) is a typed error
/// and changes nothing.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    ctx: &mut Ctx,
    trainer: &mut Trainer,
    engine: &mut dyn Engine,
) -> Result<u64> {
    let path = path.as_ref();
    let (tensors, meta) = read_safetensors(path, ctx.device())?;
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(
            path,
            format!("not a ppl checkpoint (missing `{FORMAT_KEY}: {FORMAT}`)"),
        ));
    }
    let parse_steps = |key: &str| -> Result<u64> {
        meta.get(key)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(path, format!("missing or invalid `{key}`")))
    };
    let steps = parse_steps(STEP_KEY)?;
    let rng = meta
        .get(RNG_KEY)
        .and_then(|s| decode_rng(s))
        .ok_or_else(|| corrupt(path, "missing or invalid RNG state"))?;
    let saved_engine = meta.get(ENGINE_KEY).map(String::as_str).unwrap_or("");
    if saved_engine != engine.name() {
        return Err(corrupt(
            path,
            format!(
                "was written by engine `{saved_engine}`, not by `{}`",
                engine.name()
            ),
        ));
    }
    let names: Vec<&str> = trainer.groups().iter().map(|g| g.name.as_str()).collect();
    let saved_groups = meta.get(GROUPS_KEY).map(String::as_str).unwrap_or("");
    if saved_groups != names.join(",") {
        return Err(corrupt(
            path,
            format!(
                "has parameter groups [{saved_groups}], the trainer has [{}]",
                names.join(",")
            ),
        ));
    }
    let group_steps = names
        .iter()
        .map(|n| parse_steps(&format!("{GROUP_STEPS}{n}")))
        .collect::<Result<Vec<u64>>>()?;
    let mut params = HashMap::new();
    let mut engine_state = HashMap::new();
    let mut optim: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); names.len()];
    let mut free: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); names.len()];
    let group_of = |rest: &str| -> Option<(usize, String)> {
        let (g, n) = rest.split_once('/')?;
        Some((names.iter().position(|x| *x == g)?, n.to_string()))
    };
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix(PARAM) {
            params.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(ENGINE) {
            engine_state.insert(n.to_string(), t);
        } else if let Some((i, n)) = name.strip_prefix(OPTIM).and_then(group_of) {
            optim[i].insert(n, t);
        } else if let Some((i, n)) = name.strip_prefix(FREE).and_then(group_of) {
            free[i].insert(n, t);
        } else {
            return Err(corrupt(path, format!("unexpected tensor `{name}`")));
        }
    }
    // A non-empty store must hold exactly the file's parameters (same names, shapes and
    // constraints); an empty one (a fresh context) takes them all.
    ctx.params().check_matches(&params, &meta, path)?;
    // Optimiser states: each state tensor `<slot>/<variable>` belongs to a variable of its
    // group and has that variable's shape and dtype.
    let store_vars: HashMap<String, candle_core::Var> = ctx.params().vars().into_iter().collect();
    let mut layout: Vec<HashMap<&str, (Vec<usize>, candle_core::DType)>> =
        vec![HashMap::new(); names.len()];
    for (n, t) in &params {
        if let Some(i) = super::group::owner(trainer.groups(), n)? {
            let dtype = store_vars.get(n).map_or(t.dtype(), |v| v.dtype());
            layout[i].insert(n.as_str(), (t.dims().to_vec(), dtype));
        }
    }
    for (i, g) in trainer.groups().iter().enumerate() {
        if let super::group::Select::Free(vars) = &g.select {
            for (n, v) in vars {
                layout[i].insert(n.as_str(), (v.dims().to_vec(), v.dtype()));
            }
        }
    }
    for ((g, state), vars) in trainer.groups().iter().zip(&optim).zip(&layout) {
        let mut keys: Vec<&String> = state.keys().collect();
        keys.sort();
        for key in keys {
            let t = &state[key];
            let var = key.split_once('/').map(|(_, v)| v).unwrap_or(key);
            let Some((dims, dtype)) = vars.get(var) else {
                return Err(corrupt(
                    path,
                    format!(
                        "optimiser state `{key}` of group `{}` is for variable `{var}`, which \
                         the group does not have",
                        g.name
                    ),
                ));
            };
            if t.dims() != dims.as_slice() || t.dtype() != *dtype {
                return Err(corrupt(
                    path,
                    format!(
                        "optimiser state `{key}` of group `{}` is {:?} {:?} in the file, but \
                         variable `{var}` is {:?} {:?}",
                        g.name,
                        t.dtype(),
                        t.dims(),
                        dtype,
                        dims
                    ),
                ));
            }
        }
    }
    // Free variables: the same names and shapes as the trainer's, checked before anything
    // changes.
    let mut free_sets = Vec::new();
    for (g, saved) in trainer.groups().iter().zip(&mut free) {
        let vars = match &g.select {
            super::group::Select::Free(v) => v.as_slice(),
            _ => &[],
        };
        for (n, v) in vars {
            let t = saved.remove(n).ok_or_else(|| {
                corrupt(
                    path,
                    format!("has no value for free variable `{n}` of group `{}`", g.name),
                )
            })?;
            if t.dims() != v.dims() || t.dtype() != v.dtype() {
                return Err(corrupt(
                    path,
                    format!(
                        "free variable `{n}` of group `{}` is {:?} {:?} in the file, {:?} {:?} \
                         in the trainer",
                        g.name,
                        t.dtype(),
                        t.dims(),
                        v.dtype(),
                        v.dims()
                    ),
                ));
            }
            free_sets.push((v.clone(), t));
        }
        if let Some(extra) = saved.keys().next() {
            return Err(corrupt(
                path,
                format!(
                    "has free variable `{extra}` that group `{}` does not have",
                    g.name
                ),
            ));
        }
    }
    // Each load validates before it changes anything; on a later failure, put back what
    // was loaded before it.
    let old_engine = engine.state()?;
    engine.load_state(engine_state)?;
    let mut old_optim = Vec::new();
    let mut failure = None;
    for ((g, state), s) in trainer.groups_mut().iter_mut().zip(optim).zip(&group_steps) {
        let old = g.optimizer.state();
        if let Err(e) = g.optimizer.load_state(state, *s) {
            failure = Some(e);
            break;
        }
        old_optim.push(old);
    }
    if failure.is_none() {
        if let Err(e) = ctx
            .params()
            .import(params, &meta, &path.display().to_string())
        {
            failure = Some(e);
        }
    }
    if let Some(e) = failure {
        for (g, (state, s)) in trainer.groups_mut().iter_mut().zip(old_optim) {
            g.optimizer.load_state(state.into_iter().collect(), s)?;
        }
        engine.load_state(old_engine.into_iter().collect())?;
        return Err(e);
    }
    for (v, t) in free_sets {
        v.set(&t)?;
    }
    trainer.set_steps(steps);
    *ctx.base_rng() = PplRng::from_state(&rng);
    Ok(steps)
}
