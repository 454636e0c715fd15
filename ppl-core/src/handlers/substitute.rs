use super::Handler;
use crate::choices::ChoiceMap;
use crate::error::Result;
use crate::message::Message;
use crate::site::SiteKind;
use candle_core::Tensor;

type ValueFn = Box<dyn FnMut(&Message) -> Option<Tensor> + Send>;

/// Replaces the values of latent sample sites and param sites without making them
/// observed: with fixed tensors, or with trainable ones (a `candle_core::Var`'s tensor)
/// so an engine can optimise latents directly (energy minimisation, MAP). A map also
/// replaces the value of an input site ([`Ctx::input`](crate::ctx::Ctx::input)) it names;
/// a function is asked about latent and param sites only.
pub struct Substitute {
    source: Source,
}

enum Source {
    Map(ChoiceMap),
    Fn(ValueFn),
}

impl std::fmt::Debug for Substitute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Map(m) => f.debug_tuple("Substitute").field(m).finish(),
            Source::Fn(_) => f.write_str("Substitute(<fn>)"),
        }
    }
}

impl Substitute {
    /// Substitutes the values in `values`.
    pub fn new(values: ChoiceMap) -> Self {
        Substitute {
            source: Source::Map(values),
        }
    }

    /// Substitutes whatever `f` returns for a site (`None` leaves it alone).
    pub fn with_fn(f: impl FnMut(&Message) -> Option<Tensor> + Send + 'static) -> Self {
        Substitute {
            source: Source::Fn(Box::new(f)),
        }
    }
}

impl Handler for Substitute {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        let eligible = msg.is_latent() || msg.kind == SiteKind::Param;
        let v = match &mut self.source {
            Source::Map(m) if eligible || msg.kind == SiteKind::Input => m.get(&msg.name).cloned(),
            Source::Fn(f) if eligible => f(msg),
            _ => None,
        };
        if v.is_some() {
            msg.value = v;
        }
        Ok(())
    }
}
