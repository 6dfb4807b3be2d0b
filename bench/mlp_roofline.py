"""How fast can the MLP grid be on this machine? Arithmetic of the paper's grid.

    python -m bench.mlp_roofline [--task ps-role] [--layer 6]

Runs the grid search of the 2022 paper's MLP probe (hidden sizes {32..256}^2 x 5
L2 weights, on the stratified 90% fit split) with scikit-learn's
``MLPClassifier``, one configuration at a time as the original does, and counts
the floating-point work each fit did from its ``n_iter_`` (epochs):

    per sample and epoch:  forward 2 (d H1 + H1 H2 + H2 C),
                           backward 2 d H1 (weights only) + 4 (H1 H2 + H2 C)

It then measures the float32 rate JAX reaches on this machine for the grid's
largest products (a 200-row mini-batch against the first layers of all 20
models sharing H1, as ``geomcore.mlp`` computes them) and prints both rates. A
batched float32 trainer doing the same epochs cannot beat the scikit-learn loop
by more than the ratio of the two rates; that bounds the speed-up at equal
work, whatever the implementation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def sample_flops(d: int, h1: int, h2: int, c: int) -> int:
    """Floating-point operations per training sample and epoch (see module docstring)."""
    return 2 * (d * h1 + h1 * h2 + h2 * c) + 2 * d * h1 + 4 * (h1 * h2 + h2 * c)


def grid_work(X, y, sizes, alphas, seed=0):
    """Per configuration (H1, H2, alpha, epochs, seconds, FLOP) of scikit-learn's
    grid on the stratified 90% fit split (``bench.mlp_grid.sklearn_grid``)."""
    from bench.mlp_grid import sklearn_grid
    from geomcore.mlp import validation_split

    _, codes = np.unique(y, return_inverse=True)
    fit, _ = validation_split(codes, fraction=0.1, seed=seed)
    Xf, yf = X[fit], y[fit]
    c = np.unique(yf).size
    d = X.shape[1]
    return [(h1, h2, a, clf.n_iter_, dt, clf.n_iter_ * Xf.shape[0] * sample_flops(d, h1, h2, c))
            for (h1, h2), a, clf, dt in sklearn_grid(Xf, yf, sizes=sizes, alphas=alphas,
                                                      seed=seed, max_iter=1000)]


def jax_rate(d: int, batch: int = 200, models: int = 20, h1: int = 256, reps: int = 50) -> float:
    """GFLOP/s of a float32 (batch x d) @ (d x models*h1) product and its two
    backward products, jitted, on this machine's default JAX backend."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, d)), jnp.float32)
    W = jnp.asarray(rng.normal(size=(d, models * h1)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(batch, models * h1)), jnp.float32)

    @jax.jit
    def step(x, W, g):
        return x @ W, x.T @ g

    jax.block_until_ready(step(x, W, g))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(step(x, W, g))
    dt = (time.perf_counter() - t) / reps
    return 2 * 2 * batch * d * models * h1 / dt / 1e9


def main(argv=None) -> int:
    from bench.cache import load_layer
    from geomcore.mlp import DEFAULT_ALPHAS, DEFAULT_HIDDEN_SIZES

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="ps-role")
    ap.add_argument("--layer", type=int, default=6)
    args = ap.parse_args(argv)
    X, y = load_layer(args.task, "train", args.layer)
    rows = grid_work(X, y, DEFAULT_HIDDEN_SIZES, DEFAULT_ALPHAS)
    secs = sum(r[4] for r in rows)
    flops = sum(r[5] for r in rows)
    epochs = [r[3] for r in rows]
    skl = flops / secs / 1e9
    jr = jax_rate(X.shape[1])
    print(f"{args.task} L{args.layer}: {X.shape[0]} points, d={X.shape[1]}, "
          f"{len(rows)} configurations")
    print(f"scikit-learn grid: {secs:.1f} s, {flops / 1e12:.3f} TFLOP, {skl:.1f} GFLOP/s "
          f"(float64); epochs median {np.median(epochs):.0f}, max {max(epochs)}")
    for h1 in sorted({r[0] for r in rows}):
        part = [r for r in rows if r[0] == h1]
        s, f = sum(r[4] for r in part), sum(r[5] for r in part)
        print(f"  H1={h1}: {s:.1f} s, {f / s / 1e9:.1f} GFLOP/s")
    print(f"JAX float32, the grid's largest layer-1 products (200 x {X.shape[1]} x 20*256): "
          f"{jr:.1f} GFLOP/s")
    print(f"bound on the speed-up at equal work: {jr / skl:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
