use super::Handler;
use crate::choices::ChoiceMap;
use crate::error::Result;
use crate::message::Message;
use crate::site::{SiteKind, SiteName};
use std::collections::HashSet;

/// Turns latent sample sites into observed ones with the given values:
/// `condition(model, {"z": z0})` scores `z0` under the site's distribution. The shape of
/// each value is checked against the site's batch + event shape. An input site
/// ([`Ctx::input`](crate::ctx::Ctx::input)) named in the data reads that value instead
/// (new data; dtype and device must match the original).
#[derive(Debug, Clone)]
pub struct Condition {
    data: ChoiceMap,
    used: HashSet<SiteName>,
}

impl Condition {
    /// Conditions on `data`.
    pub fn new(data: ChoiceMap) -> Self {
        Condition {
            data,
            used: HashSet::new(),
        }
    }

    /// The names in the data that no site used (typos, sites the model never reached).
    pub fn unused(&self) -> Vec<SiteName> {
        self.data
            .names()
            .filter(|n| !self.used.contains(*n))
            .cloned()
            .collect()
    }
}

impl Handler for Condition {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if matches!(msg.kind, SiteKind::Sample | SiteKind::Input) {
            if let Some(v) = self.data.get(&msg.name) {
                msg.value = Some(v.clone());
                msg.observed = msg.kind == SiteKind::Sample;
                self.used.insert(msg.name.clone());
            }
        }
        Ok(())
    }
}
