use super::Handler;
use crate::error::Result;
use crate::message::Message;
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
    fn postprocess(&mut self, msg: &mut Message) -> Result<()> {
        self.trace.add(msg)
    }
}
