use super::Handler;
use crate::error::{PplError, Result};
use crate::message::Message;
use crate::site::{SiteKind, SiteName};
use crate::trace::Trace;
use candle_core::Tensor;
use std::collections::HashMap;

/// Reuses the values of a trace (typically the guide's) at the sites of the same name and
/// role: `replay(model, guide_trace)`. A latent takes the trace's latent value, a plate's
/// subsample indices the trace's indices (so the model sees the guide's minibatch), and an
/// input ([`Ctx::input`](crate::ctx::Ctx::input)) the trace's input value (so the model
/// reads the data the guide read). Observed sites keep their data; sites absent from the
/// trace, or present with another role, are sampled as usual. A latent whose replayed
/// floating-point value has another dtype than the model's distribution is a
/// [`PplError::GuideMismatch`] naming the site and both dtypes.
#[derive(Debug, Clone)]
pub struct Replay {
    values: HashMap<SiteName, (SiteKind, Tensor)>,
}

impl Replay {
    /// Replays the latent sample sites, subsample indices and inputs of `trace`.
    pub fn new(trace: &Trace) -> Self {
        let values = trace
            .sites()
            .iter()
            .filter(|s| s.is_latent() || matches!(s.kind, SiteKind::Subsample | SiteKind::Input))
            .map(|s| (s.name.clone(), (s.kind, s.value.clone())))
            .collect();
        Replay { values }
    }
}

impl Handler for Replay {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.is_latent() || matches!(msg.kind, SiteKind::Subsample | SiteKind::Input) {
            if let Some((kind, v)) = self.values.get(&msg.name) {
                if *kind == msg.kind {
                    if let Some(d) = msg.dist.as_ref().filter(|_| msg.kind == SiteKind::Sample) {
                        if v.dtype().is_float() && v.dtype() != d.dtype() {
                            return Err(PplError::guide_mismatch(
                                &msg.name,
                                format!(
                                    "the guide's (replayed) value has dtype {:?} where the \
                                     model's {} distribution has dtype {:?}; use one dtype in \
                                     model and guide",
                                    v.dtype(),
                                    d.family(),
                                    d.dtype()
                                ),
                            ));
                        }
                    }
                    msg.value = Some(v.clone());
                }
            }
        }
        Ok(())
    }
}
