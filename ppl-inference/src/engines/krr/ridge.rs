//! Kernel ridge regression on the host in f64: Gaussian kernels, the median heuristic,
//! exact solves by Cholesky (faer) with a growing jitter, random Fourier features and
//! Nyström landmarks.

use super::options::KernelApprox;
use candle_core::{DType, Device, Tensor};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ppl_core::PplRng;
use ppl_core::{PplError, Result};

/// A host matrix (faer, column-major, f64).
pub(crate) type HostMat = Mat<f64>;

/// Rows of a `[n, d]` tensor as a host matrix; a non-finite entry is an error naming
/// `what`.
pub(crate) fn to_host(t: &Tensor, what: &str) -> Result<HostMat> {
    if t.rank() != 2 {
        return Err(PplError::invalid_argument(
            "KernelRidge",
            format!("{what} must be a matrix [n, d], got shape {:?}", t.dims()),
        ));
    }
    let (n, d) = t.dims2()?;
    let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(PplError::invalid_argument(
            "KernelRidge",
            format!(
                "{what} has a non-finite value {} at row {}, column {} (a kernel of it would \
                 be non-finite)",
                v[i],
                i / d.max(1),
                i % d.max(1)
            ),
        ));
    }
    Ok(Mat::from_fn(n, d, |i, j| v[i * d + j]))
}

/// A host matrix as a `[rows, cols]` tensor of `dtype` on `device`.
pub(crate) fn to_tensor(m: &HostMat, dtype: DType, device: &Device) -> Result<Tensor> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(m[(i, j)]);
        }
    }
    Ok(Tensor::from_vec(v, (r, c), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

fn row_norms(a: &HostMat) -> Vec<f64> {
    let mut out = vec![0.0; a.nrows()];
    for j in 0..a.ncols() {
        for (o, v) in out.iter_mut().zip(a.col_as_slice(j)) {
            *o += v * v;
        }
    }
    out
}

/// `f(‖a_i − b_j‖²)` `[n, m]`, from one matrix product (the expansion
/// `‖a‖² + ‖b‖² − 2 a·b`, clamped at zero) and one pass over contiguous columns.
fn map_sq_dists(a: &HostMat, b: &HostMat, f: impl Fn(f64) -> f64) -> HostMat {
    let (na, nb) = (row_norms(a), row_norms(b));
    let mut k = a * b.transpose();
    for (j, nbj) in nb.iter().enumerate() {
        for (v, nai) in k.col_as_slice_mut(j).iter_mut().zip(&na) {
            *v = f((nai + nbj - 2.0 * *v).max(0.0));
        }
    }
    k
}

/// Squared Euclidean distances `‖a_i − b_j‖²` `[n, m]`.
fn sq_dists(a: &HostMat, b: &HostMat) -> HostMat {
    map_sq_dists(a, b, |d| d)
}

/// The Gaussian kernel `exp(−‖a_i − b_j‖² / (2σ²))` `[n, m]`.
pub(crate) fn gaussian(a: &HostMat, b: &HostMat, bandwidth: f64) -> HostMat {
    let c = -0.5 / (bandwidth * bandwidth);
    map_sq_dists(a, b, |d| exp_nonpositive(c * d))
}

/// `exp(x)` for `x ≤ 0` to ~1 ulp: `2^k · e^r` with `|r| ≤ ln 2 / 2` and a degree-13
/// Taylor polynomial (truncation below 1e-17 relative); results below the smallest normal
/// number are flushed to 0. The platform's `f64::exp` measured ~125 ns a call on the
/// project's machines, which made the kernel build dominate a step; this is a few ns and
/// vectorises.
#[inline]
pub(crate) fn exp_nonpositive(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    if x < -708.0 || x.is_nan() {
        return if x.is_nan() { x } else { 0.0 };
    }
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for d in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let ki = k as i64;
    if ki < -1022 {
        return 0.0;
    }
    p * f64::from_bits(((ki + 1023) as u64) << 52)
}

/// The median heuristic: the median distance between distinct rows of `x` (of its first
/// 400 rows, which is plenty for a median). A typed error when every distance is zero.
pub fn median_bandwidth(x: &Tensor) -> Result<f64> {
    median_host(&to_host(x, "x")?)
}

pub(crate) fn median_host(x: &HostMat) -> Result<f64> {
    let n = x.nrows().min(400);
    let sub = x.subrows(0, n).to_owned();
    let d = sq_dists(&sub, &sub);
    let mut v: Vec<f64> = Vec::with_capacity(n * n / 2);
    for j in 0..n {
        for i in 0..j {
            v.push(d[(i, j)]);
        }
    }
    if v.is_empty() {
        return Err(PplError::invalid_argument(
            "median_bandwidth",
            "the median heuristic needs at least two points",
        ));
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = m.sqrt();
    if !(m > 0.0 && m.is_finite()) {
        return Err(PplError::invalid_argument(
            "median_bandwidth",
            format!("the median distance between points is {m}: the points coincide"),
        ));
    }
    Ok(m)
}

/// Cholesky factor of `a + jitter·I`, retrying with a jitter growing from 1e-10 to 1e-4
/// of the mean diagonal (×10 a try) when the factorisation fails; a typed error after.
pub(crate) fn cholesky(a: &HostMat) -> Result<faer::linalg::solvers::Llt<f64>> {
    if let Ok(l) = a.llt(Side::Lower) {
        return Ok(l);
    }
    let n = a.nrows();
    let mean_diag = (0..n).map(|i| a[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let mut jitter = 1e-10 * mean_diag.abs().max(f64::MIN_POSITIVE);
    for _ in 0..7 {
        let mut b = a.clone();
        for i in 0..n {
            b[(i, i)] += jitter;
        }
        if let Ok(l) = b.llt(Side::Lower) {
            return Ok(l);
        }
        jitter *= 10.0;
    }
    Err(PplError::invalid_argument(
        "KernelRidge",
        format!(
            "the {n}×{n} regularised kernel matrix is not positive definite even with a \
             jitter of {jitter:.3e} (non-finite or degenerate kernel; raise λ)"
        ),
    ))
}

enum Fit {
    /// `(K + λI)` factorised.
    Exact {
        llt: faer::linalg::solvers::Llt<f64>,
    },
    /// Random Fourier features `φ(x) = √(2/F) cos(x W + b)`; `Φ_s` and `(ΦᵀΦ + λI)`.
    Fourier {
        w: HostMat,
        b: Vec<f64>,
        phi: HostMat,
        llt: faer::linalg::solvers::Llt<f64>,
    },
    /// Nyström landmarks `Z`: `K_nz` and `(K_nzᵀ K_nz + λ K_zz)`.
    Nystrom {
        z: HostMat,
        knz: HostMat,
        llt: faer::linalg::solvers::Llt<f64>,
    },
}

/// Kernel ridge regression with a Gaussian kernel on training inputs `X_s` (`[N, d]`).
///
/// The regression of targets `Y` (`[N, c]`) gives predictions at query points `X_q`
/// (`[M, d]`) that are linear in the targets, `Ŷ_q = Aᵀ Y`, with weights
/// `A = (K_ss + λI)⁻¹ K_sq` (`[N, M]`) for the exact kernel, and the same form with the
/// kernel replaced by its low-rank approximation for [`KernelApprox::RandomFourier`]
/// (`A = Φ_s (Φ_sᵀΦ_s + λI)⁻¹ Φ_qᵀ`, `O(N F²)`) and [`KernelApprox::Nystrom`]
/// (`A = K_sz (K_szᵀ K_sz + λ K_zz)⁻¹ K_qzᵀ`, `O(N L²)`). Everything runs on the host in
/// f64 ([faer](https://docs.rs/faer)); the inputs and results are tensors.
pub struct KernelRidge {
    xs: HostMat,
    bandwidth: f64,
    lambda: f64,
    fit: Fit,
}

impl std::fmt::Debug for KernelRidge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRidge")
            .field("n", &self.xs.nrows())
            .field("bandwidth", &self.bandwidth)
            .field("lambda", &self.lambda)
            .finish()
    }
}

impl KernelRidge {
    /// Fits on inputs `xs` `[N, d]` with kernel bandwidth `σ` (`k(x, y) = exp(−‖x − y‖² /
    /// (2σ²))`), ridge `λ > 0` and approximation `approx` (random features and landmarks
    /// drawn from `rng`). Typed errors: `N < 2`, non-finite inputs, a non-positive or
    /// non-finite `σ` or `λ`, zero features, landmarks outside `1..=N`, a kernel matrix that
    /// stays indefinite with jitter.
    pub fn fit(
        xs: &Tensor,
        bandwidth: f64,
        lambda: f64,
        approx: &KernelApprox,
        rng: &mut PplRng,
    ) -> Result<Self> {
        let xs = to_host(xs, "the training inputs")?;
        Self::fit_host(xs, bandwidth, lambda, approx, rng)
    }

    pub(crate) fn fit_host(
        xs: HostMat,
        bandwidth: f64,
        lambda: f64,
        approx: &KernelApprox,
        rng: &mut PplRng,
    ) -> Result<Self> {
        let n = xs.nrows();
        if n < 2 {
            return Err(PplError::config(
                "KernelRidge",
                format!("kernel ridge regression needs at least 2 points, got {n}"),
            ));
        }
        check_positive("bandwidth", bandwidth)?;
        check_positive("lambda", lambda)?;
        approx.validate(n)?;
        let fit = match *approx {
            KernelApprox::Exact => {
                let mut k = gaussian(&xs, &xs, bandwidth);
                for i in 0..n {
                    k[(i, i)] += lambda;
                }
                Fit::Exact { llt: cholesky(&k)? }
            }
            KernelApprox::RandomFourier { features } => {
                let d = xs.ncols();
                let g = rng.normals(d * features);
                let w = Mat::from_fn(d, features, |i, j| g[i * features + j] / bandwidth);
                let b: Vec<f64> = rng
                    .uniforms(features)
                    .into_iter()
                    .map(|u| u * std::f64::consts::TAU)
                    .collect();
                let phi = fourier(&xs, &w, &b);
                let mut gram = phi.transpose() * &phi;
                for i in 0..features {
                    gram[(i, i)] += lambda;
                }
                let llt = cholesky(&gram)?;
                Fit::Fourier { w, b, phi, llt }
            }
            KernelApprox::Nystrom { landmarks } => {
                let idx = sample_without_replacement(rng, n, landmarks);
                let z = Mat::from_fn(landmarks, xs.ncols(), |i, j| xs[(idx[i], j)]);
                let knz = gaussian(&xs, &z, bandwidth);
                let kzz = gaussian(&z, &z, bandwidth);
                let gram = knz.transpose() * &knz + kzz * faer::Scale(lambda);
                let llt = cholesky(&gram)?;
                Fit::Nystrom { z, knz, llt }
            }
        };
        Ok(KernelRidge {
            xs,
            bandwidth,
            lambda,
            fit,
        })
    }

    /// The number of training points `N`.
    pub fn len(&self) -> usize {
        self.xs.nrows()
    }

    /// Whether there are no training points (never, after a successful fit).
    pub fn is_empty(&self) -> bool {
        self.xs.nrows() == 0
    }

    /// The kernel bandwidth `σ`.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// The ridge `λ`.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// `A B` (`[N, c]`) for query points `xq` `[M, d]` and `b` `[M, c]`, without forming
    /// `A` when `c < M`.
    pub(crate) fn weights_times_host(&self, xq: &HostMat, b: &HostMat) -> Result<HostMat> {
        if xq.ncols() != self.xs.ncols() || xq.nrows() != b.nrows() {
            return Err(PplError::invalid_argument(
                "KernelRidge",
                format!(
                    "query points [{}, {}] and right-hand side [{}, {}] do not fit training \
                     inputs of width {}",
                    xq.nrows(),
                    xq.ncols(),
                    b.nrows(),
                    b.ncols(),
                    self.xs.ncols()
                ),
            ));
        }
        Ok(match &self.fit {
            Fit::Exact { llt } => {
                let ksq = gaussian(&self.xs, xq, self.bandwidth);
                llt.solve(ksq * b)
            }
            Fit::Fourier {
                w,
                b: off,
                phi,
                llt,
            } => {
                let pq = fourier(xq, w, off);
                phi * llt.solve(pq.transpose() * b)
            }
            Fit::Nystrom { z, knz, llt } => {
                let kqz = gaussian(xq, z, self.bandwidth);
                knz * llt.solve(kqz.transpose() * b)
            }
        })
    }

    /// The weights `A` `[N, M]` for query points `xq` `[M, d]`: the prediction at `xq[m]`
    /// of targets `y` is `Σ_n A[n, m] y[n]`. Returned as an f64 tensor on the CPU.
    pub fn weights(&self, xq: &Tensor) -> Result<Tensor> {
        let xq = to_host(xq, "the query points")?;
        let eye = Mat::<f64>::identity(xq.nrows(), xq.nrows());
        to_tensor(
            &self.weights_times_host(&xq, &eye)?,
            DType::F64,
            &Device::Cpu,
        )
    }

    /// Predictions `Aᵀ y` `[M, c]` at `xq` `[M, d]` for targets `y` `[N, c]`.
    pub fn predict(&self, xq: &Tensor, y: &Tensor) -> Result<Tensor> {
        let a = self.weights(xq)?;
        Ok(a.t()?
            .matmul(&y.to_dtype(DType::F64)?.to_device(&Device::Cpu)?)?)
    }

    /// `A B` `[N, c]` for query points `xq` `[M, d]` and `b` `[M, c]` (f64, CPU).
    pub fn weights_times(&self, xq: &Tensor, b: &Tensor) -> Result<Tensor> {
        let xq = to_host(xq, "the query points")?;
        let b = to_host(b, "the right-hand side")?;
        to_tensor(&self.weights_times_host(&xq, &b)?, DType::F64, &Device::Cpu)
    }
}

fn fourier(x: &HostMat, w: &HostMat, b: &[f64]) -> HostMat {
    let s = (2.0 / b.len() as f64).sqrt();
    let xw = x * w;
    Mat::from_fn(x.nrows(), b.len(), |i, j| s * fast_cos(xw[(i, j)] + b[j]))
}

/// `(−1)^k / (2k)!` and `(−1)^k / (2k+1)!` for `k = 0..9`.
const fn taylor_coefs() -> ([f64; 9], [f64; 9]) {
    let (mut fc, mut fs) = ([0.0f64; 9], [0.0f64; 9]);
    let mut f = 1.0f64;
    let mut k = 0;
    while k < 9 {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        fc[k] = sign / f;
        f *= (2 * k + 1) as f64;
        fs[k] = sign / f;
        f *= (2 * k + 2) as f64;
        k += 1;
    }
    (fc, fs)
}
const COS_COEF: [f64; 9] = taylor_coefs().0;
const SIN_COEF: [f64; 9] = taylor_coefs().1;

/// `cos x` to ~1e-16 absolute for `|x| < 10⁶`: Cody–Waite reduction by `π/2` (a 33-bit
/// head, so `q · head` is exact) and degree-16/17 Taylor polynomials on `|r| ≤ π/4`
/// (truncation below 1e-17). Like [`exp_nonpositive`], several times faster than the
/// platform's `cos`, which dominated random-feature maps. Outside that range: `f64::cos`.
#[inline]
pub(crate) fn fast_cos(x: f64) -> f64 {
    const PIO2_HI: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
    const PIO2_LO: f64 = f64::from_bits(0x3dd0_b461_1a62_6331);
    if x.is_nan() || x.abs() >= 1e6 {
        return x.cos();
    }
    let q = (x * std::f64::consts::FRAC_2_PI).round();
    let r = (x - q * PIO2_HI) - q * PIO2_LO;
    let r2 = r * r;
    // cos r = Σ (−1)^k r^{2k}/(2k)!, sin r = r Σ (−1)^k r^{2k}/(2k+1)!, k ≤ 8.
    let (mut c, mut sn) = (0.0f64, 0.0f64);
    for k in (0..9).rev() {
        c = c * r2 + COS_COEF[k];
        sn = sn * r2 + SIN_COEF[k];
    }
    let sn = sn * r;
    match (q as i64).rem_euclid(4) {
        0 => c,
        1 => -sn,
        2 => -c,
        _ => sn,
    }
}

/// `k` distinct indices of `0..n`, drawn from `rng` (partial Fisher–Yates).
pub(crate) fn sample_without_replacement(rng: &mut PplRng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = i + ((rng.uniform_open() * (n - i) as f64) as usize).min(n - i - 1);
        idx.swap(i, j);
    }
    idx.truncate(k.min(n));
    idx
}

pub(crate) fn check_positive(what: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(PplError::config(
            "KernelRidge",
            format!("{what} must be positive and finite, got {v}"),
        ))
    }
}

/// The validation error of every `(bandwidth, λ)` on a grid: exact kernel ridge
/// regression of targets `ys` `[N, c]` on `xs`, evaluated at `xv` against `yv`; the error
/// is `Σ_c mean_v (ŷ − y)² / var_v(y_c)` over the columns with non-zero variance (each
/// target column weighs the same whatever its scale). One symmetric eigendecomposition
/// `K = U Λ Uᵀ` per bandwidth gives the predictions for every `λ` at once:
/// `Ŷ_v = K_vs U (Λ + λ)⁻¹ Uᵀ Y`. Returns `(bandwidth, λ, error)` of the best pair.
pub(crate) fn grid_search(
    xs: &HostMat,
    ys: &HostMat,
    xv: &HostMat,
    yv: &HostMat,
    bandwidths: &[f64],
    lambdas: &[f64],
) -> Result<(f64, f64, f64)> {
    let c = ys.ncols();
    let nv = yv.nrows();
    let mut inv_var = vec![0.0; c];
    for (j, iv) in inv_var.iter_mut().enumerate() {
        let mean = (0..nv).map(|i| yv[(i, j)]).sum::<f64>() / nv as f64;
        let var = (0..nv).map(|i| (yv[(i, j)] - mean).powi(2)).sum::<f64>() / nv as f64;
        if var > 1e-12 * (1.0 + mean * mean) {
            *iv = 1.0 / var;
        }
    }
    let mut best = (f64::NAN, f64::NAN, f64::INFINITY);
    for &bw in bandwidths {
        let k = gaussian(xs, xs, bw);
        let eig = k.self_adjoint_eigen(Side::Lower).map_err(|e| {
            PplError::invalid_argument(
                "KernelRidge::tune",
                format!("eigendecomposition of the kernel matrix failed: {e:?}"),
            )
        })?;
        let u = eig.U();
        let s = eig.S().column_vector();
        let p = gaussian(xv, xs, bw) * u;
        let q = u.transpose() * ys;
        for &lam in lambdas {
            let scaled = Mat::from_fn(q.nrows(), c, |i, j| q[(i, j)] / (s[i].max(0.0) + lam));
            let pred = &p * scaled;
            let mut err = 0.0;
            for (j, iv) in inv_var.iter().enumerate() {
                if *iv > 0.0 {
                    let mse = (0..nv)
                        .map(|i| (pred[(i, j)] - yv[(i, j)]).powi(2))
                        .sum::<f64>()
                        / nv as f64;
                    err += mse * iv;
                }
            }
            if err < best.2 {
                best = (bw, lam, err);
            }
        }
    }
    if !best.2.is_finite() {
        return Err(PplError::invalid_argument(
            "KernelRidge::tune",
            "no bandwidth and λ on the grid gave a finite validation error",
        ));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_cos_matches_cos() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            let x = (i as f64 - 100_000.0) * 1.37e-3 + 1e-7 * i as f64;
            worst = worst.max((fast_cos(x) - x.cos()).abs());
        }
        assert!(worst < 1e-15, "worst absolute error {worst:e}");
        assert_eq!(fast_cos(2e7), 2e7f64.cos());
    }

    #[test]
    fn fast_exp_matches_exp() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            let x = -(i as f64) * 0.0035 - 1e-9 * i as f64;
            let (a, b) = (exp_nonpositive(x), x.exp());
            if b > f64::MIN_POSITIVE {
                worst = worst.max(((a - b) / b).abs());
            } else {
                assert!(a <= f64::MIN_POSITIVE * 2.0);
            }
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(worst < 1e-15, "worst relative error {worst:e}");
    }

    /// Where the time of an exact fit goes (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn phase_timing() {
        let mut rng = PplRng::seed_from_u64(0);
        for n in [1000, 2000] {
            let g = rng.normals(n * 3);
            let x = Mat::from_fn(n, 3, |i, j| g[i * 3 + j]);
            let t = std::time::Instant::now();
            let p = &x * x.transpose();
            eprintln!("matmul {:?} {}", t.elapsed(), p[(0, 0)]);
            let t = std::time::Instant::now();
            let d = sq_dists(&x, &x);
            eprintln!("sq_dists {:?} {}", t.elapsed(), d[(0, 1)]);

            let t = std::time::Instant::now();
            let mut k = gaussian(&x, &x, 1.0);
            let build = t.elapsed();
            for i in 0..n {
                k[(i, i)] += 1e-3;
            }
            let t = std::time::Instant::now();
            let _ = cholesky(&k).map(|_| ());
            eprintln!("n={n}: kernel {:?}, cholesky {:?}", build, t.elapsed());
        }
    }
}
