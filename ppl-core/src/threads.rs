//! The CPU thread policy: how many threads run matrix products and how many run
//! element-wise ops.
//!
//! candle runs matrix products on rayon's pool (`RAYON_NUM_THREADS`) and large element-wise
//! ops on a second pool of its own (`CANDLE_NUM_THREADS`, default: all cores) whose workers
//! spin between ops. On a small machine the two pools compete for the same cores: on the
//! project's two-vCPU machine a 128×784→400 dense layer's forward and backward
//! (`bench_kernels`) took 3.6-4.1 ms with both pools at two threads against 2.7-2.8 ms with
//! one thread each (back-to-back runs, not one process: the pools' sizes are fixed per
//! process). The element-wise work of a training step is memory-bound and mostly
//! inside the fused kernels (`crate::fused`), which run on the calling thread.
//!
//! [`configure`] therefore sets `RAYON_NUM_THREADS` to the requested count and
//! `CANDLE_NUM_THREADS` to 1, each only where the environment does not set it already.
//! Both pools read their variable once, when they start: call it first thing in `main`,
//! before any tensor op and before other threads exist.
//!
//! ```
//! let policy = ppl_core::threads::configure(Some(1));
//! assert!(policy.matmul_threads >= 1 && policy.elementwise_threads >= 1);
//! ```

/// The thread counts in effect after [`configure`] (from the environment where it was
/// set, else the policy's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPolicy {
    /// Threads for matrix products (`RAYON_NUM_THREADS`).
    pub matmul_threads: usize,
    /// Threads for candle's element-wise ops (`CANDLE_NUM_THREADS`).
    pub elementwise_threads: usize,
}

/// Sets the thread policy for this process (see the module docs): `threads` matrix-product
/// threads (`None`: all cores) and one element-wise thread, leaving any variable the
/// environment already sets to a positive integer untouched (an empty, zero or unparsable
/// value is replaced). Returns the counts in effect.
///
/// It writes environment variables, which is only sound while no other thread reads the
/// environment: call it at the start of `main`, before spawning threads or running tensor
/// ops (the thread pools read these variables when they start).
pub fn configure(threads: Option<usize>) -> ThreadPolicy {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = threads.filter(|&t| t > 0).unwrap_or(cores);
    ThreadPolicy {
        matmul_threads: set_default("RAYON_NUM_THREADS", want),
        elementwise_threads: set_default("CANDLE_NUM_THREADS", 1),
    }
}

/// `var`'s value if it is set to a positive integer, else sets it to `value`.
fn set_default(var: &str, value: usize) -> usize {
    match std::env::var(var)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        Some(v) if v > 0 => v,
        _ => {
            std::env::set_var(var, value.to_string());
            value
        }
    }
}
