"""Training steps of a rectangular (injective) flow in plain PyTorch (Caterini et al. 2021,
"Rectangular Flows for Manifold Learning"), done the way the reference implementation would do
it: forward-mode Jacobian-vector products with torch.func.jvp, vector-Jacobian products with
torch.func.vjp. The PyTorch side of a same-run speed comparison with the Rust benchmark.

  python bench_rectangular_torch.py [--grid 1x2,2x3,2x8,4x8,4x32,8x32]
                                    [--estimators exact,hutchinson,fif,no_logdet]
                                    [--couplings 4] [--hidden 64,64] [--batch 128]
                                    [--steps 30] [--repeats 3] [--warmup 5] [--check]

The model: a square Real NVP f on R^D, as in bench_flow_torch.py: `couplings` affine coupling
layers with checkerboard masks that alternate (even coordinates kept in layer 0, odd ones in
layer 1, ...), no mixing layers; each conditioner is an MLP ceil(D/2) -> hidden... -> 2 floor(D/2)
with ReLU, hidden weights Kaiming-normal (fan-in, ReLU gain), biases uniform +-1/sqrt(fan_in),
output layer zero; log-scales through the soft clamp s = 3 tanh(s_raw/3); float32.
Generator g(z) = f_to_data(pad(z)), pad puts z (size d) in the FIRST d coordinates and zeros in
the rest; to_data, layers first to last: x_a = z_a, x_b = z_b exp(s) + t with (s_raw, t) = net(z_a).
Left inverse g_dagger(x) = first d coordinates of f_to_base(x) (layers last to first,
z_b = (x_b - t) exp(-s)). Latent prior N(0, I_d).

One step on a batch x [B, D] (consecutive slices of 8192 fixed standard-normal points, seed 0):
  z = g_dagger(x); xhat = g(z);
  loss = mean_batch[ -log N(z; 0, I) + vol(z) + beta ||x - xhat||^2 ], beta = 1;
  backward; torch.optim.Adam (lr 1e-3). vol by `estimator`:
  exact       J = J_g(z) [B, D, d] from d forward-mode JVPs (torch.func.jvp vmapped over the d
              basis tangents, one call; its primal output is xhat), A = J^T J, vol = 0.5 logdet A
              = sum log diag cholesky(A), differentiated through.
  hutchinson  one Gaussian probe eps [B, d]; u = A^-1 eps by batched conjugate gradients, exactly
              d iterations (no early stop), under no_grad, matvec A p = J^T (J p) = one jvp of g at
              z.detach() (tangent p) then one vjp of g at z.detach() (the vjp function is built
              once per step and reused by the d iterations); a CG step whose p^T A p is 0 (already
              converged) takes alpha = 0. Then one jvp of g at the live z, vmapped over the two
              tangents (u, eps): primal = xhat, tangents J u, J eps; surrogate
              0.5 sum_D (J u)(J eps), and vol = surrogate - surrogate.detach() (gradient, no value).
  fif         free-form injective flows (Sorrenson et al. 2024): probe v [B, d] Gaussian;
              w = v^T J_{g_dagger}(x) by one vjp of g_dagger at x.detach() (no_grad); one jvp of g at
              the live z, tangent v (primal = xhat); vol = s - s.detach(), s = sum_D w (J_g v).
  no_logdet   vol = 0, xhat = g(z).

Timing: for each (d, D, estimator) a fresh model (torch.manual_seed(0) before building it) and
Adam, `warmup` steps, then `repeats` rounds of `steps` steps; steps_per_s = median of the
per-round rates. Threads: BENCH_THREADS=n -> torch.set_num_threads(n) (otherwise torch's
default). Progress goes to stderr; stdout gets exactly one JSON line at the end.

--check (d = 2, D = 3, all parameters perturbed by 0.1 randn, 16 points x = g(z0), z0 ~ N(0, I),
i.e. on the perturbed model's manifold, where A is moderately conditioned) prints to stderr, in
float32 and float64: the exact vol against a brute-force 0.5 logdet(J^T J) with J from
torch.autograd.functional.jacobian of g per point, the jvp+vjp matvec against J^T J eps, the CG
solution against torch.linalg.solve; then the mean over 2000 probes per point of the Hutchinson
gradient of mean(vol) (all parameters, flattened) against the exact one, as a relative error, next
to the probe-noise level expected of that mean.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import jvp, vjp, vmap

LOG_2PI = math.log(2 * math.pi)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_flow_torch import AffineCoupling as _FlowCoupling  # noqa: E402


class AffineCoupling(_FlowCoupling):
    """bench_flow_torch.py's coupling layer (masks, initialisation, soft clamp), with the
    sampling direction added and the density direction without its log-determinant."""

    def _st(self, u_a):
        h = self.net(u_a)
        s_raw, t = h[..., : self.n_b], h[..., self.n_b:]
        return self.clamp * torch.tanh(s_raw / self.clamp), t

    def to_base(self, x):
        x_a = x.index_select(-1, self.idx_a)
        x_b = x.index_select(-1, self.idx_b)
        s, t = self._st(x_a)
        z_b = (x_b - t) * torch.exp(-s)
        return torch.cat([x_a, z_b], dim=-1).index_select(-1, self.unsplit)

    def to_data(self, z):
        z_a = z.index_select(-1, self.idx_a)
        z_b = z.index_select(-1, self.idx_b)
        s, t = self._st(z_a)
        x_b = z_b * torch.exp(s) + t
        return torch.cat([z_a, x_b], dim=-1).index_select(-1, self.unsplit)


class RealNvp(nn.Module):
    def __init__(self, dim, couplings, hidden):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(AffineCoupling(dim, i % 2 == 1, hidden) for i in range(couplings))

    def to_base(self, x):
        for layer in reversed(self.layers):
            x = layer.to_base(x)
        return x

    def to_data(self, z):
        for layer in self.layers:
            z = layer.to_data(z)
        return z


class RectangularFlow(nn.Module):
    """Injective flow R^d -> R^D built from the square flow f on R^D."""

    def __init__(self, d, D, couplings, hidden):
        super().__init__()
        assert 1 <= d < D and D >= 2
        self.d, self.D = d, D
        self.f = RealNvp(D, couplings, hidden)

    def g(self, z):  # generator: pad with zeros, then to data
        return self.f.to_data(F.pad(z, (0, self.D - self.d)))

    def g_dagger(self, x):  # left inverse: to base, keep the first d coordinates
        return self.f.to_base(x)[..., : self.d]


def cg_solve(g, zd, eps, iters):
    """u = (J^T J)^-1 eps, J = J_g(zd), by batched conjugate gradients: exactly `iters`
    iterations, no early stop, no graph; matvec = one jvp + one vjp (vjp function built once)."""
    with torch.no_grad():
        _, vjp_fn = vjp(g, zd)

        def matvec(p):
            return vjp_fn(jvp(g, (zd,), (p,))[1])[0]

        u = torch.zeros_like(eps)
        r = eps.clone()
        p = r.clone()
        rs = (r * r).sum(-1, keepdim=True)
        for _ in range(iters):
            Ap = matvec(p)
            pAp = (p * Ap).sum(-1, keepdim=True)
            alpha = torch.where(pAp > 0, rs / pAp, torch.zeros_like(pAp))
            u = u + alpha * p
            r = r - alpha * Ap
            rs_new = (r * r).sum(-1, keepdim=True)
            beta = torch.where(rs > 0, rs_new / rs, torch.zeros_like(rs))
            p = r + beta * p
            rs = rs_new
    return u


def vol_and_xhat(model, x, z, estimator):
    """(vol [B], xhat [B, D]) for latent codes z = g_dagger(x) (live, differentiable)."""
    g = model.g
    B, d = z.shape
    if estimator == "exact":
        basis = torch.eye(d, dtype=z.dtype).unsqueeze(1).expand(d, B, d)
        xh, cols = vmap(lambda v: jvp(g, (z,), (v,)))(basis)  # [d, B, D] each
        J = cols.permute(1, 2, 0)  # [B, D, d]
        A = J.transpose(1, 2) @ J  # [B, d, d]
        L = torch.linalg.cholesky(A)
        vol = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        return vol, xh[0]
    if estimator == "hutchinson":
        eps = torch.randn(B, d, dtype=z.dtype)
        u = cg_solve(g, z.detach(), eps, d)
        xh, T = vmap(lambda v: jvp(g, (z,), (v,)))(torch.stack([u, eps]))
        surr = 0.5 * (T[0] * T[1]).sum(-1)
        return surr - surr.detach(), xh[0]
    if estimator == "fif":
        v = torch.randn(B, d, dtype=z.dtype)
        with torch.no_grad():
            _, vjp_fn = vjp(model.g_dagger, x.detach())
            w = vjp_fn(v)[0]
        xhat, Jv = jvp(g, (z,), (v,))
        surr = (w * Jv).sum(-1)
        return surr - surr.detach(), xhat
    if estimator == "no_logdet":
        return torch.zeros(B, dtype=z.dtype), g(z)
    raise ValueError(f"unknown estimator {estimator!r}")


def loss_fn(model, x, estimator, beta=1.0):
    z = model.g_dagger(x)
    nll = 0.5 * (z * z).sum(-1) + 0.5 * model.d * LOG_2PI
    vol, xhat = vol_and_xhat(model, x, z, estimator)
    rec = ((x - xhat) ** 2).sum(-1)
    return (nll + vol + beta * rec).mean()


def make_data(D, n=8192):
    torch.manual_seed(0)
    return torch.randn(n, D)


def bench_one(d, D, estimator, a, hidden):
    data = make_data(D, max(8192, a.batch))
    nb = data.shape[0] // a.batch
    batches = [data[i * a.batch:(i + 1) * a.batch] for i in range(nb)]
    torch.manual_seed(0)
    model = RectangularFlow(d, D, a.couplings, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = {"i": 0}

    def step():
        x = batches[state["i"] % nb]
        state["i"] += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, estimator)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    rates = []
    loss = torch.tensor(float("nan"))
    for _ in range(a.repeats):
        t = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        rates.append(a.steps / (time.perf_counter() - t))
    return rates, loss.item()


def flat_grad(model, loss):
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return torch.cat([(gr if gr is not None else torch.zeros_like(q)).reshape(-1)
                      for gr, q in zip(grads, model.parameters())])


def brute_jacobians(model, z):
    return torch.stack([torch.autograd.functional.jacobian(
        lambda zi: model.g(zi.unsqueeze(0))[0], z[i].detach()) for i in range(z.shape[0])])


def check(a, hidden):
    d, D, B = 2, 3, 16
    n_chunks, per_chunk = 20, 100  # 2000 probes per point, as 20 replicated batches of 100
    n_probes = n_chunks * per_chunk
    torch.manual_seed(0)
    model32 = RectangularFlow(d, D, a.couplings, hidden)
    with torch.no_grad():
        for q in model32.parameters():
            q.add_(0.1 * torch.randn_like(q))
    # Points on the perturbed model's manifold, x = g(z0), z0 ~ N(0, I): there g_dagger(x) = z0 and
    # A = J^T J is moderately conditioned. (Standard-normal x are mapped by this wild perturbed model
    # to |z| in the thousands with cond(A) up to ~1e8, where float32 CG and a 2000-probe Hutchinson
    # mean are meaningless.)
    z0 = torch.randn(B, d, dtype=torch.float64)
    model = RectangularFlow(d, D, a.couplings, hidden).double()
    model.load_state_dict(model32.state_dict())
    with torch.no_grad():
        x64 = model.g(z0)
    x32 = x64.float()
    log(f"[check] d={d} D={D} B={B} couplings={a.couplings} hidden={hidden}; parameters + 0.1 randn;"
        f" x = g(z0) on the model manifold")

    # 1. exact vol vs brute force per point (float32 as benchmarked, and float64).
    for name, m, x in (("float32", model32, x32), ("float64", model, x64)):
        z = m.g_dagger(x)
        vol, xhat = vol_and_xhat(m, x, z, "exact")
        J = brute_jacobians(m, z)
        brute = 0.5 * torch.logdet(J.transpose(1, 2) @ J)
        log(f"[check] {name}: exact vol (first 4)       {[round(v, 6) for v in vol[:4].tolist()]}")
        log(f"[check] {name}: brute-force vol (first 4) {[round(v, 6) for v in brute[:4].tolist()]}")
        log(f"[check] {name}: max |vol - brute| = {(vol - brute).abs().max().item():.3e}"
            f" (|vol| up to {vol.abs().max().item():.3f}); max |xhat(jvp primal) - g(z)| ="
            f" {(xhat - m.g(z)).abs().max().item():.3e}; max |z - z0| = {(z - z0.to(z.dtype)).abs().max().item():.3e}")
        with torch.no_grad():
            A = J.transpose(1, 2) @ J
            eps = torch.randn(B, d, dtype=x.dtype)
            zd = z.detach()
            _, vjp_fn = vjp(m.g, zd)
            Av = vjp_fn(jvp(m.g, (zd,), (eps,))[1])[0]
            Av_ref = (A @ eps.unsqueeze(-1)).squeeze(-1)
            log(f"[check] {name}: matvec jvp+vjp vs J^T J eps: max rel diff "
                f"{((Av - Av_ref).norm(dim=-1) / Av_ref.norm(dim=-1)).max().item():.3e};"
                f" cond(A) max {torch.linalg.cond(A).max().item():.3e}")
            u = cg_solve(m.g, zd, eps, d)
            u_ref = torch.linalg.solve(A, eps)
            log(f"[check] {name}: CG ({d} iterations) vs direct solve: max rel err "
                f"{((u - u_ref).norm(dim=-1) / u_ref.norm(dim=-1)).max().item():.3e}")

    # 2. gradients of mean(vol) (float64): exact vs the mean of Hutchinson over n_probes probes
    # per point. Each chunk is the batch replicated per_chunk times, so its gradient is the mean
    # over per_chunk independent probes per point; the chunk-to-chunk spread gives a standard error.
    torch.manual_seed(1)
    g_exact = flat_grad(model, vol_and_xhat(model, x64, model.g_dagger(x64), "exact")[0].mean())
    xr = x64.repeat(per_chunk, 1)
    t = time.perf_counter()
    chunks = torch.stack([flat_grad(model, vol_and_xhat(model, xr, model.g_dagger(xr), "hutchinson")[0].mean())
                          for _ in range(n_chunks)])
    g_hut = chunks.mean(0)
    stderr = (chunks.std(0) / math.sqrt(n_chunks)).norm() / g_exact.norm()
    rel = ((g_hut - g_exact).norm() / g_exact.norm()).item()
    cos = (torch.dot(g_hut, g_exact) / (g_hut.norm() * g_exact.norm())).item()
    log(f"[check] float64: grad of mean(vol) over {g_exact.numel()} parameters, {n_probes} probes per point"
        f" ({time.perf_counter() - t:.1f}s): |exact| = {g_exact.norm().item():.4e},"
        f" |hutchinson mean| = {g_hut.norm().item():.4e}")
    log(f"[check] float64: rel err = {rel:.4f}, cos = {cos:.5f}; expected from probe noise"
        f" (norm of the standard error / |exact|) ~ {stderr.item():.4f}")
    # The same in float32 (the benchmarked precision), fewer probes.
    torch.manual_seed(2)
    g32 = flat_grad(model32, vol_and_xhat(model32, x32, model32.g_dagger(x32), "exact")[0].mean()).double()
    xr32 = x32.repeat(per_chunk, 1)
    c32 = torch.stack([flat_grad(model32, vol_and_xhat(model32, xr32, model32.g_dagger(xr32), "hutchinson")[0].mean())
                       for _ in range(n_chunks)]).double()
    log(f"[check] float32: exact grad vs float64 exact: rel diff {((g32 - g_exact).norm() / g_exact.norm()).item():.3e};"
        f" hutchinson mean rel err = {((c32.mean(0) - g32).norm() / g32.norm()).item():.4f}"
        f" (noise ~ {((c32.std(0) / math.sqrt(n_chunks)).norm() / g32.norm()).item():.4f})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grid", default="1x2,2x3,2x8,4x8,4x32,8x32")
    p.add_argument("--estimators", default="exact,hutchinson,fif,no_logdet")
    p.add_argument("--couplings", type=int, default=4)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--check", action="store_true")
    a = p.parse_args()
    hidden = [int(h) for h in a.hidden.split(",")]
    nt = os.environ.get("BENCH_THREADS")
    if nt:
        torch.set_num_threads(int(nt))

    if a.check:
        check(a, hidden)
        return

    grid = []
    for item in a.grid.split(","):
        d, D = (int(v) for v in item.lower().split("x"))
        grid.append((d, D))
    estimators = [e.strip() for e in a.estimators.split(",") if e.strip()]
    results = []
    for d, D in grid:
        for est in estimators:
            rates, last = bench_one(d, D, est, a, hidden)
            med = statistics.median(rates)
            log(f"d={d} D={D} {est:<10} {med:9.1f} steps/s  ({1000.0 / med:7.2f} ms/step)"
                f"  rates={[round(r, 1) for r in rates]}  last loss={last:.4f}")
            results.append({"d": d, "D": D, "estimator": est, "steps_per_s": med, "rates": rates})
    print(json.dumps({
        "bench": "rectangular_torch", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch": a.batch, "couplings": a.couplings,
        "hidden": hidden, "results": results,
    }), flush=True)


if __name__ == "__main__":
    main()
