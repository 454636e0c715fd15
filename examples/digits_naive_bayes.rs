//! Naive-Bayes classification of the real 8x8 handwritten digits with Binomial pixels.
//!
//! Each pixel of a digit of class `c` is `Binomial(16, p_cj)` (the digits count "on" pixels
//! in 4x4 blocks, so values are 0..16). With a Beta(1, 1) prior, the posterior mean of
//! `p_cj` is `(Σ x + 1) / (16 n_c + 2)`, and the class prior is a smoothed Categorical. The
//! test images are scored with `Binomial(..).to_event(1).log_prob` over all ten classes at
//! once (broadcasting), giving the predictive class and `log p(x)` by log-sum-exp.
//!
//! Run: `cargo run --example digits_naive_bayes`. Ends with one JSON line.

use candle_core::{DType, Device, Tensor, D};
use flate2::read::GzDecoder;
use ppl::prelude::*;
use std::io::Read;
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");

fn load() -> std::result::Result<(Vec<f64>, Vec<usize>), Box<dyn std::error::Error>> {
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(DATA)?).read_to_string(&mut text)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let vals: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("{DATA}: line {}: {e}", i + 1))?;
        if vals.len() != 65 {
            return Err(format!(
                "{DATA}: line {}: expected 65 fields, got {}",
                i + 1,
                vals.len()
            )
            .into());
        }
        pixels.extend_from_slice(&vals[..64]);
        labels.push(vals[64] as usize);
    }
    Ok((pixels, labels))
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let dev = Device::Cpu;
    let (pixels, labels) = load()?;
    let n = labels.len();

    // Seeded shuffle, then an 80/20 split.
    let mut rng = PplRng::seed_from_u64(0);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.uniform_open() * (i + 1) as f64) as usize;
        order.swap(i, j.min(i));
    }
    let n_train = n * 4 / 5;
    let (train, test) = order.split_at(n_train);

    // Closed-form posterior means of the per-class pixel probabilities.
    let mut sums = vec![0.0; 10 * 64];
    let mut counts = [0.0f64; 10];
    for &i in train {
        let c = labels[i];
        counts[c] += 1.0;
        for j in 0..64 {
            sums[c * 64 + j] += pixels[i * 64 + j];
        }
    }
    let probs: Vec<f64> = (0..640)
        .map(|k| (sums[k] + 1.0) / (16.0 * counts[k / 64] + 2.0))
        .collect();
    let prior: Vec<f64> = counts
        .iter()
        .map(|c| (c + 1.0) / (n_train as f64 + 10.0))
        .collect();

    let probs = Tensor::from_vec(probs, (10, 64), &dev)?;
    let total = Tensor::full(16.0f64, (10, 64), &dev)?;
    let likelihood = Binomial::from_probs(&total, &probs)?.to_event(1)?; // batch [10], event [64]
    let class_prior = Categorical::from_probs(&Tensor::new(prior.as_slice(), &dev)?)?;

    let test_x: Vec<f64> = test
        .iter()
        .flat_map(|&i| pixels[i * 64..(i + 1) * 64].to_vec())
        .collect();
    let x = Tensor::from_vec(test_x, (test.len(), 1, 64), &dev)?;
    let joint = likelihood
        .log_prob(&x)?
        .broadcast_add(class_prior.logits())?; // [n_test, 10]
    let log_px = joint.log_sum_exp(D::Minus1)?;
    let pred = joint
        .argmax(D::Minus1)?
        .to_dtype(DType::U32)?
        .to_vec1::<u32>()?;
    let correct = test
        .iter()
        .zip(&pred)
        .filter(|(&i, &p)| labels[i] == p as usize)
        .count();
    let accuracy = correct as f64 / test.len() as f64;
    let mean_log_px = log_px.mean_all()?.to_scalar::<f64>()?;

    println!(
        "{}",
        serde_json::json!({
            "example": "digits_naive_bayes",
            "train_images": n_train,
            "test_images": test.len(),
            "test_accuracy": accuracy,
            "test_log_likelihood_per_image": mean_log_px,
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
