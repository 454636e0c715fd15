//! [`ChoiceMap`]: values keyed by site name, for conditioning, substituting, `generate` and
//! `assess`.

use crate::site::SiteName;
use crate::trace::Trace;
use candle_core::Tensor;
use std::collections::HashMap;

/// Values keyed by site name. Built by hand (`ChoiceMap::new().with("z", t)`), from a
/// trace ([`ChoiceMap::latents_of`]) or by a `#[model]`'s generated latents struct.
#[derive(Debug, Clone, Default)]
pub struct ChoiceMap {
    map: HashMap<SiteName, Tensor>,
}

impl ChoiceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a value, builder style.
    pub fn with(mut self, name: impl Into<SiteName>, value: Tensor) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds (or replaces) a value.
    pub fn insert(&mut self, name: impl Into<SiteName>, value: Tensor) -> Option<Tensor> {
        self.map.insert(name.into(), value)
    }

    /// The value for `name`.
    pub fn get(&self, name: &SiteName) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// Whether `name` has a value.
    pub fn contains(&self, name: &SiteName) -> bool {
        self.map.contains_key(name)
    }

    /// The names with a value (in no particular order).
    pub fn names(&self) -> impl Iterator<Item = &SiteName> {
        self.map.keys()
    }

    /// `(name, value)` pairs (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&SiteName, &Tensor)> {
        self.map.iter()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The values of the latent sample sites of `trace`.
    pub fn latents_of(trace: &Trace) -> Self {
        ChoiceMap {
            map: trace
                .latent_sites()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
        }
    }
}
