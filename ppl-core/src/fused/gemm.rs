//! Dense matrix products on host slices for the fused kernels: the `gemm` crate's kernels
//! (the ones candle's CPU matmul uses), split by output rows over the thread pool.
//!
//! Products of at least 2^20 multiply-adds per thread are split into one row block per thread
//! (`RAYON_NUM_THREADS`, as candle's matmul), each a single-threaded `gemm` call on a scoped
//! thread: no persistent pool whose idle workers spin while the next element-wise op runs.
//! On the project's two-vCPU machine two threads give no speed-up for these products (two
//! single-threaded processes slow each other down 1.65x: the vCPUs share execution units),
//! so the split only pays on machines with independent cores.

use candle_core::Result;

/// A read-only strided matrix over a slice: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> View<'a, T> {
    /// A view, checked to stay inside `data`.
    pub(crate) fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            if last >= data.len() {
                candle_core::bail!(
                    "fused gemm: a {rows}×{cols} view with strides ({rs}, {cs}) needs {} \
                     elements, the slice has {}",
                    last + 1,
                    data.len()
                );
            }
        }
        Ok(View {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A row-major `rows × cols` matrix.
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        View::new(data, rows, cols, cols, 1)
    }

    /// The transpose (no copy).
    pub(crate) fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `r0..r0 + n` (in bounds by construction of the callers: `r0 + n ≤ rows`).
    fn row_block(self, r0: usize, n: usize) -> Self {
        let start = (r0 * self.rs).min(self.data.len());
        View {
            data: &self.data[start..],
            rows: n,
            ..self
        }
    }
}

/// The fewest multiply-adds a thread gets (smaller products run on one thread).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, for `dst` row-major
/// `lhs.rows × rhs.cols`; f32 or f64 (any other `T` is an error).
pub(crate) fn matmul_into<T>(
    dst: &mut [T],
    lhs: View<T>,
    rhs: View<T>,
    accumulate: bool,
) -> Result<()>
where
    T: 'static + Copy + Send + Sync + From<u8>,
{
    let threads = candle_core::utils::get_num_threads();
    matmul_into_threads(dst, lhs, rhs, accumulate, threads)
}

/// [`matmul_into`] with an explicit thread count.
fn matmul_into_threads<T>(
    dst: &mut [T],
    lhs: View<T>,
    rhs: View<T>,
    accumulate: bool,
    threads: usize,
) -> Result<()>
where
    T: 'static + Copy + Send + Sync + From<u8>,
{
    let is_float = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        || std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>();
    if !is_float {
        candle_core::bail!("fused gemm: only f32 and f64");
    }
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.len() != m * n {
        candle_core::bail!(
            "fused gemm: ({m}×{k}) · ({}×{n}) into {} elements",
            rhs.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = T::from(0u8));
        }
        return Ok(());
    }
    // At least 2^20 multiply-adds and 16 output rows per thread: each block re-packs the
    // right-hand matrix, which only pays for itself on blocks of that size.
    let threads = threads.min(m / 16).min((m * n * k) / PARALLEL_MIN_MACS);
    if threads <= 1 {
        block(dst, lhs, rhs, accumulate);
        return Ok(());
    }
    let rows_per = m.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, d) in dst.chunks_mut(rows_per * n).enumerate() {
            let r0 = i * rows_per;
            s.spawn(move || block(d, lhs.row_block(r0, d.len() / n), rhs, accumulate));
        }
    });
    Ok(())
}

/// One single-threaded product into a row-major block `dst` of `lhs.rows × rhs.cols`.
fn block<T: 'static + Copy + From<u8>>(
    dst: &mut [T],
    lhs: View<T>,
    rhs: View<T>,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert_eq!(dst.len(), m * n);
    let one = T::from(1u8);
    let alpha = if accumulate { one } else { T::from(0u8) };
    // SAFETY: `View::new` checked that every (i, j) of each operand maps inside its slice,
    // and `row_block` only narrows the rows (r0 + rows ≤ the checked rows); `dst` holds
    // exactly m·n elements, written row-major with strides (n, 1), and is exclusively
    // borrowed, so it aliases no input. T is f32 or f64 (checked by `matmul_into`), as the
    // `gemm` crate requires. With `read_dst = accumulate`, gemm reads `dst` only when it
    // is to be accumulated into (initialised memory in every caller).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            alpha,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook triple loop.
    fn naive(lhs: View<f64>, rhs: View<f64>) -> Vec<f64> {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    out[i * n + j] +=
                        lhs.data[i * lhs.rs + p * lhs.cs] * rhs.data[p * rhs.rs + j * rhs.cs];
                }
            }
        }
        out
    }

    #[test]
    fn products_match_the_triple_loop_for_every_layout_and_thread_count() {
        // 130×90 · 90×100 = 1.17M multiply-adds: above the threshold, so 2 and 3 threads
        // take the row-block split (with an uneven last block for 3).
        let (m, k, n) = (130, 90, 100);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0)
            .collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 53 % 97) as f64 - 48.0) / 30.0)
            .collect();
        let lhs_rm = View::row_major(&a, m, k).unwrap();
        let lhs_t = View::row_major(&a, k, m).unwrap().t(); // m×k read transposed
        let rhs_rm = View::row_major(&b, k, n).unwrap();
        let rhs_t = View::row_major(&b, n, k).unwrap().t();
        for (lhs, rhs) in [
            (lhs_rm, rhs_rm),
            (lhs_t, rhs_rm),
            (lhs_rm, rhs_t),
            (lhs_t, rhs_t),
        ] {
            let want = naive(lhs, rhs);
            for threads in [1, 2, 3] {
                let mut got = vec![0.0; m * n];
                matmul_into_threads(&mut got, lhs, rhs, false, threads).unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-10, "threads {threads}: {worst}");
                // Accumulating adds the product once more.
                matmul_into_threads(&mut got, lhs, rhs, true, threads).unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - 2.0 * w).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-10, "threads {threads} accumulate: {worst}");
            }
        }
    }

    #[test]
    fn views_and_products_reject_bad_sizes() {
        let a = vec![0.0f32; 6];
        assert!(View::row_major(&a, 2, 4).is_err());
        assert!(View::new(&a, 2, 3, 3, 1).is_ok());
        let v = View::row_major(&a, 2, 3).unwrap();
        let mut dst = vec![0.0f32; 5];
        assert!(matmul_into(&mut dst, v, v.t(), false).is_err());
        let ints = vec![0u8; 4];
        let iv = View::row_major(&ints, 2, 2).unwrap();
        let mut idst = vec![0u8; 4];
        assert!(matmul_into(&mut idst, iv, iv, false).is_err());
    }
}
