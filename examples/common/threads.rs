//! The examples' thread-count default (included with `#[path]`).

/// The library's thread policy (`ppl::threads::configure`) with `threads` matrix-product
/// threads: `RAYON_NUM_THREADS = threads` and `CANDLE_NUM_THREADS = 1`, each only where the
/// environment does not set it. Call it first thing in `main`, before any tensor op: rayon
/// and candle read them once, when their thread pools start.
pub fn default_threads(threads: usize) {
    ppl::threads::configure(Some(threads));
}
