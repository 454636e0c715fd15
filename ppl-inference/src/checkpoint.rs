//! Training checkpoints: parameters, optimiser state, RNG state and step count in one
//! safetensors file, written atomically (temporary file + rename).
//!
//! Restoring a checkpoint into a fresh context and optimiser and continuing gives the same
//! numbers, bit for bit on CPU, as a run that never stopped.

use crate::optim::Optimizer;
use ppl_core::ctx::Ctx;
use ppl_core::error::{PplError, Result};
use ppl_core::params::{read_safetensors, write_safetensors};
use ppl_core::rng::{PplRng, RngState};
use std::collections::HashMap;
use std::path::Path;

const FORMAT_KEY: &str = "ppl.format";
const FORMAT: &str = "ppl-checkpoint-1";
const STEP_KEY: &str = "ppl.step";
const RNG_KEY: &str = "ppl.rng";
const PARAM: &str = "param/";
const OPTIM: &str = "optim/";

fn corrupt(path: &Path, reason: impl Into<String>) -> PplError {
    PplError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
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

/// Writes the context's parameters and RNG state and the optimiser's state to `path`.
pub fn save_checkpoint(path: impl AsRef<Path>, ctx: &mut Ctx, opt: &dyn Optimizer) -> Result<()> {
    let path = path.as_ref();
    let (params, mut meta) = ctx.params().export();
    let (state, steps) = opt.state();
    let mut tensors: Vec<_> = params
        .into_iter()
        .map(|(n, t)| (format!("{PARAM}{n}"), t))
        .collect();
    tensors.extend(state.into_iter().map(|(n, t)| (format!("{OPTIM}{n}"), t)));
    meta.insert(FORMAT_KEY.into(), FORMAT.into());
    meta.insert(STEP_KEY.into(), steps.to_string());
    meta.insert(RNG_KEY.into(), encode_rng(&ctx.base_rng().state()));
    write_safetensors(path, tensors, meta)
}

/// Restores a checkpoint written by [`save_checkpoint`] into `ctx` (parameters, RNG) and
/// `opt`. Returns the step count. A corrupt, truncated or mismatched file is a typed error
/// and changes nothing.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    ctx: &mut Ctx,
    opt: &mut dyn Optimizer,
) -> Result<u64> {
    let path = path.as_ref();
    let (tensors, meta) = read_safetensors(path, ctx.device())?;
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(
            path,
            format!("not a ppl checkpoint (missing `{FORMAT_KEY}: {FORMAT}`)"),
        ));
    }
    let steps: u64 = meta
        .get(STEP_KEY)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(path, "missing or invalid step count"))?;
    let rng = meta
        .get(RNG_KEY)
        .and_then(|s| decode_rng(s))
        .ok_or_else(|| corrupt(path, "missing or invalid RNG state"))?;
    let (mut params, mut state) = (HashMap::new(), HashMap::new());
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix(PARAM) {
            params.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM) {
            state.insert(n.to_string(), t);
        } else {
            return Err(corrupt(path, format!("unexpected tensor `{name}`")));
        }
    }
    // Both loads validate before they change anything; if the parameters are rejected
    // after the optimiser accepted its state, put the optimiser's old state back.
    let (old_state, old_steps) = opt.state();
    opt.load_state(state, steps)?;
    if let Err(e) = ctx
        .params()
        .import(params, &meta, &path.display().to_string())
    {
        opt.load_state(old_state.into_iter().collect(), old_steps)?;
        return Err(e);
    }
    *ctx.base_rng() = PplRng::from_state(&rng);
    Ok(steps)
}
