use super::Handler;
use crate::error::Result;
use crate::message::Message;
use std::sync::Arc;

/// Prefixes the names of all sites inside it with `prefix/`, so one sub-model can be used
/// twice in a bigger model (`enc1/z`, `enc2/z`). Nested scopes give `outer/inner/name`.
#[derive(Debug, Clone)]
pub struct Scope {
    prefix: Arc<str>,
}

impl Scope {
    /// Prefixes names with `prefix/`.
    pub fn new(prefix: &str) -> Self {
        Scope {
            prefix: Arc::from(prefix),
        }
    }
}

impl Handler for Scope {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        msg.name = msg.name.with_scope(&self.prefix);
        Ok(())
    }
}
