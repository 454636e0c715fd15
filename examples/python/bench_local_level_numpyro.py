"""The local-level model of examples/bench_local_level.rs in NumPyro: a loop with
dynamic site names, AutoNormal, Trace_ELBO, Adam(0.01), svi.update under jax.jit.

    taskset -c 0 python bench_local_level_numpyro.py [T] [STEPS] [ROUNDS]

Prints one JSON line: jit compile time (first update), cold start (from the start of this
script, imports included, to STEPS steps done), steady-state steps/s (median of ROUNDS
rounds of 500 steps). Time the whole process from outside (/usr/bin/time) for the
process-start figure.
"""
import time

T0 = time.perf_counter()
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import Adam

T = int(sys.argv[1]) if len(sys.argv) > 1 else 100
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5

ys = jnp.array([2.0 * math.sin(t / 10.0) + 0.5 * (((37 * t) % 11) / 11.0 - 0.5) for t in range(T)],
               dtype=jnp.float32)


def model(ys):
    s_level = numpyro.sample("sigma_level", dist.LogNormal(-1.0, 1.0))
    s_obs = numpyro.sample("sigma_obs", dist.LogNormal(-1.0, 1.0))
    mu = numpyro.sample("mu_0", dist.Normal(0.0, 5.0))
    for t in range(ys.shape[0]):
        if t > 0:
            mu = numpyro.sample(f"mu_{t}", dist.Normal(mu, s_level))
        numpyro.sample(f"y_{t}", dist.Normal(mu, s_obs), obs=ys[t])


guide = AutoNormal(model)
svi = SVI(model, guide, Adam(0.01), Trace_ELBO())
state = svi.init(jax.random.PRNGKey(0), ys)
update = jax.jit(svi.update)
t = time.perf_counter()
state, loss = update(state, ys)
loss.block_until_ready()
compile_s = time.perf_counter() - t
for _ in range(STEPS - 1):
    state, loss = update(state, ys)
loss.block_until_ready()
cold = time.perf_counter() - T0

rates = []
for _ in range(ROUNDS):
    t = time.perf_counter()
    for _ in range(500):
        state, loss = update(state, ys)
    loss.block_until_ready()
    rates.append(500 / (time.perf_counter() - t))
print(json.dumps({
    "bench": "local_level", "lib": "numpyro", "version": numpyro.__version__, "jax": jax.__version__,
    "t": T, "compile_s": compile_s, "cold_start_s": cold, "cold_steps": STEPS,
    "steps_per_s_median": sorted(rates)[len(rates) // 2], "rates": rates, "final_loss": float(loss),
}))
