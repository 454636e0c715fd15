//! The examples' thread-count default (included with `#[path]`).

/// Sets `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` to `threads` where the environment does
/// not set them. Call it first thing in `main`, before any tensor op: rayon and candle read
/// them once, when their thread pools start.
pub fn default_threads(threads: impl std::fmt::Display) {
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, threads.to_string());
        }
    }
}
