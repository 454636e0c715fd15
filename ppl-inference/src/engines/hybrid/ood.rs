//! Out-of-distribution detection and selective prediction by a density score.

use ppl_core::{PplError, Result};

/// The area under the ROC curve of a score that should be *higher* on `inside` than on
/// `outside` (e.g. `log p(x)` on test data vs out-of-distribution data): the probability
/// that a random inside score exceeds a random outside one, ties counting one half
/// (the Mann-Whitney statistic, by sorting: `O((n + m) log(n + m))`).
pub fn auroc(inside: &[f64], outside: &[f64]) -> Result<f64> {
    if inside.is_empty() || outside.is_empty() {
        return Err(PplError::invalid_argument(
            "auroc",
            format!(
                "needs scores on both sides, got {} and {}",
                inside.len(),
                outside.len()
            ),
        ));
    }
    if inside.iter().chain(outside).any(|s| s.is_nan()) {
        return Err(PplError::invalid_argument("auroc", "NaN score"));
    }
    let mut all: Vec<(f64, bool)> = inside
        .iter()
        .map(|s| (*s, true))
        .chain(outside.iter().map(|s| (*s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mid-ranks over ties, then U = Σ ranks(inside) − n(n+1)/2.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|e| e.1).count() as f64 * mid;
        i = j + 1;
    }
    let (n, m) = (inside.len() as f64, outside.len() as f64);
    Ok((rank_sum - n * (n + 1.0) / 2.0) / (n * m))
}

/// Selective prediction: keep the `coverage` fraction of points with the highest score
/// (`log p(x)`) and return the accuracy on those (`correct[i]` says whether point `i` was
/// predicted right). `coverage` in `(0, 1]`.
pub fn selective_accuracy(score: &[f64], correct: &[bool], coverage: f64) -> Result<f64> {
    if score.len() != correct.len() || score.is_empty() {
        return Err(PplError::invalid_argument(
            "selective_accuracy",
            format!("{} scores and {} outcomes", score.len(), correct.len()),
        ));
    }
    if !(coverage > 0.0 && coverage <= 1.0) {
        return Err(PplError::invalid_argument(
            "selective_accuracy",
            format!("coverage must be in (0, 1], got {coverage}"),
        ));
    }
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|a, b| score[*b].total_cmp(&score[*a]));
    let k = ((coverage * score.len() as f64).round() as usize).max(1);
    Ok(idx[..k].iter().filter(|i| correct[**i]).count() as f64 / k as f64)
}
