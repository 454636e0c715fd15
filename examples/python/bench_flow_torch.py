"""One Real NVP maximum-likelihood training step in plain PyTorch: the baseline of
`examples/bench_flow.rs` (same architecture, initialisation scheme, data and step).

  python bench_flow_torch.py [--dim 8] [--couplings 6] [--hidden 64,64] [--batch 256]
                             [--steps 200] [--repeats 5]

The flow: `couplings` affine coupling layers on `dim` coordinates with checkerboard masks
that alternate (even coordinates kept in layer 0, odd ones in layer 1, ...); each
conditioner is an MLP ceil(D/2) -> hidden... -> 2 floor(D/2) with ReLU, hidden weights
Kaiming-normal (fan-in, ReLU gain), biases uniform +-1/sqrt(fan_in), output layer zero;
log-scales through the soft clamp 3 tanh(s/3). Density direction (data -> base), last layer
first: z_b = (x_b - t) exp(-s), log|det| = -sum s. Base: standard normal; float32.
One step: loss = -mean log p(x) of a batch (consecutive slices of 8192 fixed points of a
correlated Gaussian), backward, torch.optim.Adam (lr 1e-3).

Timing as in the Rust side: 20 warm-up steps, then `repeats` rounds of `steps` steps, the
median of the per-round rates, then the median forward / backward / optimiser times of a
separate pass. Threads: BENCH_THREADS=n -> torch.set_num_threads(n). Prints one JSON line.
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn


class Conditioner(nn.Module):
    def __init__(self, d_in, hidden, d_out):
        super().__init__()
        widths = [d_in] + list(hidden) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        for i, lin in enumerate(self.layers):
            if i == len(self.layers) - 1:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
            else:
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
                bound = 1.0 / math.sqrt(lin.in_features)
                nn.init.uniform_(lin.bias, -bound, bound)

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


class AffineCoupling(nn.Module):
    def __init__(self, dim, flip, hidden, clamp=3.0):
        super().__init__()
        mask = [(i % 2 == 0) != flip for i in range(dim)]
        a = [i for i in range(dim) if mask[i]]
        b = [i for i in range(dim) if not mask[i]]
        order = a + b
        unsplit = [0] * dim
        for pos, i in enumerate(order):
            unsplit[i] = pos
        self.register_buffer("idx_a", torch.tensor(a))
        self.register_buffer("idx_b", torch.tensor(b))
        self.register_buffer("unsplit", torch.tensor(unsplit))
        self.n_b = len(b)
        self.clamp = clamp
        self.net = Conditioner(len(a), hidden, 2 * len(b))

    def to_base(self, x):
        x_a = x.index_select(-1, self.idx_a)
        x_b = x.index_select(-1, self.idx_b)
        h = self.net(x_a)
        s_raw, t = h[..., : self.n_b], h[..., self.n_b:]
        s = self.clamp * torch.tanh(s_raw / self.clamp)
        z_b = (x_b - t) * torch.exp(-s)
        z = torch.cat([x_a, z_b], dim=-1).index_select(-1, self.unsplit)
        return z, -s.sum(-1)


class RealNvp(nn.Module):
    def __init__(self, dim, couplings, hidden):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(AffineCoupling(dim, i % 2 == 1, hidden) for i in range(couplings))

    def log_prob(self, x):
        ladj = torch.zeros(x.shape[:-1], dtype=x.dtype)
        for layer in reversed(self.layers):
            x, l = layer.to_base(x)
            ladj = ladj + l
        base = -0.5 * (x * x).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return base + ladj


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--couplings", type=int, default=6)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    hidden = [int(h) for h in a.hidden.split(",")]
    nt = os.environ.get("BENCH_THREADS")
    if nt:
        torch.set_num_threads(int(nt))
    torch.manual_seed(0)

    n = max(8192, a.batch)
    e = torch.randn(n, a.dim)
    # x = L e with L lower-triangular: 1 on the diagonal, 0.5 below.
    L = torch.eye(a.dim) + 0.5 * torch.tril(torch.ones(a.dim, a.dim), diagonal=-1)
    data = (e @ L.T).contiguous()
    nb = n // a.batch
    batches = [data[i * a.batch:(i + 1) * a.batch] for i in range(nb)]

    flow = RealNvp(a.dim, a.couplings, hidden)
    n_params = sum(q.numel() for q in flow.parameters())
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    state = {"i": 0, "last": float("nan")}

    def step(split=False):
        x = batches[state["i"] % nb]
        state["i"] += 1
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = -flow.log_prob(x).mean()
        if split:
            state["last"] = loss.item()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    with torch.no_grad():
        first = (-flow.log_prob(batches[0]).mean()).item()
    for _ in range(20):
        step()
    rates = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        rates.append(a.steps / (time.perf_counter() - t))
    fwd, bwd, op = [], [], []
    for _ in range(a.steps):
        f, b, o = step(split=True)
        fwd.append(f * 1e6)
        bwd.append(b * 1e6)
        op.append(o * 1e6)
    med = statistics.median(rates)
    print(json.dumps({
        "bench": "flow", "lib": "torch", "version": torch.__version__,
        "dim": a.dim, "couplings": a.couplings, "hidden": hidden, "batch": a.batch,
        "params": n_params, "threads": torch.get_num_threads(),
        "steps_per_s_median": med, "steps_per_s": rates, "ms_per_step": 1000.0 / med,
        "fwd_us": statistics.median(fwd), "bwd_us": statistics.median(bwd),
        "opt_us": statistics.median(op), "first_loss": first, "last_loss": state["last"],
    }), flush=True)


if __name__ == "__main__":
    main()
