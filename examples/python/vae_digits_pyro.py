"""The flagship digits VAE in Pyro, for comparing test ELBO and test log-likelihood with
`cargo run --release --example vae_digits` on the same data, split, architecture, optimiser
and number of steps.

    python examples/python/vae_digits_pyro.py [--epochs 1000] [--seed 0] [--threads 1]

Needs torch, pyro-ppl and numpy (see ../shared/bench/README.md for a virtualenv). Data:
examples/data/digits.csv.gz, intensities / 16, every fifth image (row i with i % 5 == 4)
held out, exactly as `load_digits` in examples/vae_digits.rs. Model, guide and training as
the Rust example: encoder 64-128-(8, 8) with scale exp(logvar / 2), decoder 8-128-64
Bernoulli logits, z ~ N(0, I); Trace_ELBO with the data plate subsampled to 128 images per
step; Adam lr 3e-3; ceil(epochs * n_train / 128) steps. Evaluation per test image: the
ELBO with 100 particles and the IWAE estimate of log p(x) with K = 1000. Ends with one JSON
line with the same keys as the Rust example.
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "data", "digits.csv.gz")


def load_digits():
    with gzip.open(DIGITS, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = rows[:, :64] / 16.0
    test = np.arange(len(x)) % 5 == 4
    return torch.from_numpy(x[~test].copy()), torch.from_numpy(x[test].copy())


class Encoder(nn.Module):
    def __init__(self, d, h, z):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(d, h), nn.Linear(h, z), nn.Linear(h, z)

    def forward(self, x):
        hid = F.relu(self.fc1(x))
        return self.fc21(hid), torch.exp(0.5 * self.fc22(hid))


class Decoder(nn.Module):
    def __init__(self, d, h, z):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(z, h), nn.Linear(h, d)

    def forward(self, z):
        return self.fc2(F.relu(self.fc1(z)))


class Vae(nn.Module):
    def __init__(self, d=64, h=128, z=8):
        super().__init__()
        self.encoder, self.decoder, self.z = Encoder(d, h, z), Decoder(d, h, z), z

    def model(self, xs, batch):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", xs.shape[0], subsample_size=batch) as idx:
            x = xs[idx]
            zeros = x.new_zeros((x.shape[0], self.z))
            z = pyro.sample("latent", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, xs, batch):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", xs.shape[0], subsample_size=batch) as idx:
            loc, scale = self.encoder(xs[idx])
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def log_weights(self, x, k):
        """log p(x, z_k) - log q(z_k | x) for k particles per image: [k, n]."""
        loc, scale = self.encoder(x)
        q = dist.Normal(loc, scale).to_event(1)
        z = q.sample((k,))
        prior = dist.Normal(torch.zeros_like(z), torch.ones_like(z)).to_event(1)
        like = dist.Bernoulli(logits=self.decoder(z)).to_event(1)
        return like.log_prob(x) + prior.log_prob(z) - q.log_prob(z)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test-k", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(a.threads)
    pyro.set_rng_seed(a.seed)
    pyro.enable_validation(False)  # Bernoulli on intensities in [0, 1], as in the Rust example
    pyro.clear_param_store()
    train, test = load_digits()
    vae = Vae()
    steps = math.ceil(a.epochs * train.shape[0] / a.batch)
    svi = SVI(vae.model, vae.guide, Adam({"lr": a.lr}), loss=Trace_ELBO())
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        losses.append(svi.step(train, a.batch))
    train_seconds = time.perf_counter() - t0

    test_elbo = vae.log_weights(test, 100).mean().item()
    chunks = []
    for c in range(0, a.test_k, 100):
        chunks.append(vae.log_weights(test, min(100, a.test_k - c)))
    lw = torch.cat(chunks, 0)
    test_ll = (torch.logsumexp(lw, 0) - math.log(a.test_k)).mean().item()
    last = losses[-100:]
    print(json.dumps({
        "example": "vae_digits_pyro", "pyro": pyro.__version__, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "shape": [64, 128, 8], "batch": a.batch,
        "epochs": a.epochs, "steps": steps,
        "train_loss_per_image": sum(last) / len(last) / train.shape[0],
        "test_elbo": test_elbo, "test_log_likelihood": test_ll, "test_k": a.test_k,
        "n_train": train.shape[0], "n_test": test.shape[0],
        "steps_per_sec": steps / train_seconds,
        "seconds": time.perf_counter() - start, "seed": a.seed,
    }))


if __name__ == "__main__":
    main()
