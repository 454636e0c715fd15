use super::Handler;
use crate::error::Result;
use crate::message::Message;
use crate::site::{SiteKind, SiteName};
use crate::trace::Trace;
use candle_core::Tensor;
use std::collections::HashMap;

/// Reuses the values of a trace (typically the guide's) at the latent sites of the same
/// name: `replay(model, guide_trace)`, and its plates' subsample indices, so the model sees
/// the guide's minibatch. Observed sites keep their data; sites absent from the trace are
/// sampled as usual.
#[derive(Debug, Clone)]
pub struct Replay {
    values: HashMap<SiteName, Tensor>,
}

impl Replay {
    /// Replays the latent sample sites of `trace`.
    pub fn new(trace: &Trace) -> Self {
        let values = trace
            .sites()
            .iter()
            .filter(|s| s.is_latent() || s.kind == SiteKind::Subsample)
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        Replay { values }
    }
}

impl Handler for Replay {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.is_latent() || msg.kind == SiteKind::Subsample {
            if let Some(v) = self.values.get(&msg.name) {
                msg.value = Some(v.clone());
            }
        }
        Ok(())
    }
}
