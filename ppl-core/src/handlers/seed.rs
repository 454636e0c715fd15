use super::Handler;
use crate::rng::PplRng;

/// Supplies its own seeded generator to every site inside it, so a sub-computation is
/// reproducible regardless of what ran before it.
#[derive(Debug, Clone)]
pub struct Seed {
    rng: PplRng,
}

impl Seed {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Seed {
            rng: PplRng::seed_from_u64(seed),
        }
    }

    /// Uses `rng` (e.g. a clone of the context's generator, to run something without
    /// advancing the context's stream).
    pub fn from_rng(rng: PplRng) -> Self {
        Seed { rng }
    }
}

impl Handler for Seed {
    fn rng(&mut self) -> Option<&mut PplRng> {
        Some(&mut self.rng)
    }
}
