//! Plain f64 host arithmetic for exact answers: Gaussian densities, log-sum-exp, and a
//! small Cholesky for the few-dimensional matrices of the fixtures (d ≤ 5, or the n × n
//! marginal covariance of a small regression in a check). Nothing here touches a tensor.

use ppl_core::error::{PplError, Result};

/// `log N(x; mean, sd²)`.
pub fn log_normal(x: f64, mean: f64, sd: f64) -> f64 {
    let u = (x - mean) / sd;
    -0.5 * u * u - sd.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// `log Σ exp(v)`, stable; `-∞` for an empty slice.
pub fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `log (1/M Σ exp(v))`: the log of an importance-sampling average.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    logsumexp(v) - (v.len() as f64).ln()
}

/// The sample mean and its standard error `sd / √M`.
pub fn mean_and_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// The standard error of `log (1/M Σ w)` by the delta method,
/// `sd(w) / (mean(w) √M)`, computed from the log weights without overflow.
pub fn log_mean_exp_se(log_w: &[f64]) -> f64 {
    let m = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log_w.iter().map(|l| (l - m).exp()).collect();
    let (mean, se) = mean_and_se(&w);
    se / mean
}

/// A symmetric matrix as rows.
pub type Matrix = Vec<Vec<f64>>;

/// The lower Cholesky factor `L` with `L Lᵀ = a`; an error when `a` is not symmetric
/// positive definite (a non-positive pivot).
pub fn cholesky(a: &Matrix) -> Result<Matrix> {
    let d = a.len();
    let mut l = vec![vec![0.0; d]; d];
    for i in 0..d {
        if a[i].len() != d {
            return Err(PplError::config(
                "host::cholesky",
                format!("row {i} has {} entries, expected {d}", a[i].len()),
            ));
        }
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let p = a[i][i] - s;
                if p <= 0.0 || !p.is_finite() {
                    return Err(PplError::config(
                        "host::cholesky",
                        format!("matrix is not positive definite (pivot {i} is {p})"),
                    ));
                }
                l[i][i] = p.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Ok(l)
}

/// `log det a` from the Cholesky factor `l` of `a`.
pub fn log_det_from_cholesky(l: &Matrix) -> f64 {
    2.0 * (0..l.len()).map(|i| l[i][i].ln()).sum::<f64>()
}

/// Solves `a x = b` given the Cholesky factor `l` of `a` (forward then back substitution).
pub fn solve_cholesky(l: &Matrix, b: &[f64]) -> Vec<f64> {
    let d = l.len();
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i][i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k][i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i][i];
    }
    x
}

/// The inverse of `a` from its Cholesky factor `l` (column by column).
pub fn inverse_from_cholesky(l: &Matrix) -> Matrix {
    let d = l.len();
    let mut inv = vec![vec![0.0; d]; d];
    for j in 0..d {
        let mut e = vec![0.0; d];
        e[j] = 1.0;
        let col = solve_cholesky(l, &e);
        for i in 0..d {
            inv[i][j] = col[i];
        }
    }
    inv
}

/// `log N(x; mean, cov)` for a full covariance matrix.
pub fn log_mvn(x: &[f64], mean: &[f64], cov: &Matrix) -> Result<f64> {
    let l = cholesky(cov)?;
    let r: Vec<f64> = x.iter().zip(mean).map(|(a, b)| a - b).collect();
    let sol = solve_cholesky(&l, &r);
    let quad: f64 = r.iter().zip(&sol).map(|(a, b)| a * b).sum();
    let d = x.len() as f64;
    Ok(-0.5 * quad - 0.5 * log_det_from_cholesky(&l) - 0.5 * d * (2.0 * std::f64::consts::PI).ln())
}

/// Rounds `v` to what a tensor of `dtype` stores (f32 rounding; f64 unchanged), so exact
/// answers use the numbers the model actually sees.
pub fn round_to(dtype: candle_core::DType, v: f64) -> f64 {
    match dtype {
        candle_core::DType::F32 => v as f32 as f64,
        _ => v,
    }
}
