use super::Handler;
use crate::error::Result;
use crate::message::Message;
use crate::site::SiteKind;
use crate::trace::Trace;

/// Records every site that reaches it into a [`Trace`] (in its `postprocess`, so the
/// value is final). A repeated sample/observe/factor/deterministic name is a
/// [`PplError::DuplicateSite`](crate::PplError::DuplicateSite) error.
#[derive(Debug, Default)]
pub struct TraceHandler {
    trace: Trace,
}

impl TraceHandler {
    /// An empty trace recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded trace.
    pub fn into_trace(self) -> Trace {
        self.trace
    }
}

impl Handler for TraceHandler {
    /// A plate subsampled twice in one run reuses its first indices.
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Subsample && msg.value.is_none() {
            if let Some(s) = self.trace.get(&msg.name) {
                msg.value = Some(s.value.clone());
            }
        }
        Ok(())
    }

    fn postprocess(&mut self, msg: &mut Message) -> Result<()> {
        self.trace.add(msg)
    }
}
