"""The MLP probe benchmark's shared parts: inputs, scikit-learn's grid loop, a fresh-process run.

Used by ``bench/test_mlp_bench.py`` (the timed comparison) and
``bench/mlp_roofline.py`` (the arithmetic of the grid); neither imports the other.
The inputs come from the benchmarks' cache (``bench.cache``).

Run one geomcore probe in this process and print its result as JSON (what the
benchmark does in a fresh process)::

    python -m bench.mlp_grid --task ps-role --layer 6 [--sizes 32,64,128,256] \
        [--alphas 1e-5,...] [--seeds 5] [--max-iter 1000] [--max-train N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench.cache import load_layer

REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "subsample", "sklearn_grid", "sklearn_probe", "sklearn_retrain",
    "geomcore_in_fresh_process",
]


def subsample(X, y, cap: int | None, seed: int = 0):
    """Deterministic stratified subsample of at most about ``cap`` points (all if None)."""
    if cap is None or X.shape[0] <= cap:
        return X, y
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(cap * idx.size / y.size)))
        keep.append(rng.permutation(idx)[:k])
    keep = np.sort(np.concatenate(keep))
    return X[keep], y[keep]


def _mlp(hidden, alpha, max_iter, seed):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(tuple(hidden), alpha=alpha, max_iter=max_iter, random_state=seed)


def sklearn_grid(X, y, *, sizes, alphas, seed, max_iter):
    """Fit scikit-learn's MLPClassifier on (X, y) for every (H1, H2, alpha) of
    the grid, one model at a time as the original does; yields
    ``((H1, H2), alpha, fitted model, seconds)``."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for h1 in sizes:
            for h2 in sizes:
                for a in alphas:
                    t = time.perf_counter()
                    clf = _mlp((h1, h2), a, max_iter, seed).fit(X, y)
                    yield (h1, h2), a, clf, time.perf_counter() - t


def sklearn_retrain(Xtr, ytr, Xte, yte, hidden, alpha, seeds, max_iter) -> np.ndarray:
    """Test accuracy of scikit-learn's MLPClassifier trained on (Xtr, ytr) with each seed."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return np.array([
            _mlp(hidden, alpha, max_iter, s).fit(Xtr, ytr).score(Xte, yte) for s in seeds
        ])


def sklearn_probe(Xtr, ytr, Xte, yte, *, sizes, alphas, n_seeds, seed, max_iter):
    """geomcore.mlp_probe's procedure with scikit-learn's MLPClassifier, one model at a time:
    the same stratified validation split, grid, tie rule and retrained seeds.

    Returns ((H1, H2), alpha), test accuracies (n_seeds,), validation scores (G,).
    """
    from geomcore.mlp import validation_split

    _, codes = np.unique(ytr, return_inverse=True)
    fit, val = validation_split(codes, fraction=0.1, seed=seed)
    scores = [(hs, a, clf.score(Xtr[val], ytr[val]))
              for hs, a, clf, _ in sklearn_grid(Xtr[fit], ytr[fit], sizes=sizes, alphas=alphas,
                                                 seed=seed, max_iter=max_iter)]
    best = max(range(len(scores)), key=lambda i: (scores[i][2], -i))  # first best, grid order
    hs, a, _ = scores[best]
    accs = sklearn_retrain(Xtr, ytr, Xte, yte, hs, a, range(seed, seed + n_seeds), max_iter)
    return (hs, a), accs, np.array([s for _, _, s in scores])


#: XLA flags that keep a CPU process on one thread (the one-thread comparison).
ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def geomcore_in_fresh_process(args: list[str], *, compile_cache: str | None,
                              one_thread: bool = False) -> dict:
    """Run ``python -m bench.mlp_grid ARGS`` in a new interpreter and return its JSON.

    ``compile_cache``: the persistent JAX compilation cache directory the fresh
    process uses (None: off). ``one_thread``: XLA runs on one thread. The
    process times the ``mlp_probe`` call itself (compiles included) and the
    whole process.
    """
    env = dict(os.environ, GEOMCORE_COMPILATION_CACHE=compile_cache or "0")
    if one_thread:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD_XLA_FLAGS).strip()
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bench.mlp_grid", *args], cwd=REPO, env=env,
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"bench.mlp_grid {' '.join(args)} failed:\n{out.stderr[-4000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_seconds"] = wall
    return res


def _floats(s: str) -> tuple[float, ...]:
    return tuple(float(v) for v in s.split(",") if v.strip())


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split(",") if v.strip())


def main(argv=None) -> int:
    from geomcore.mlp import DEFAULT_ALPHAS, DEFAULT_HIDDEN_SIZES

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--sizes", type=_ints, default=DEFAULT_HIDDEN_SIZES)
    ap.add_argument("--alphas", type=_floats, default=DEFAULT_ALPHAS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--max-train", type=int, default=None)
    args = ap.parse_args(argv)

    import jax

    from geomcore.compile_cache import enable_compilation_cache
    from geomcore.mlp import mlp_probe

    cache = enable_compilation_cache()  # GEOMCORE_COMPILATION_CACHE: a directory or 0
    compiles = {"n": 0, "seconds": 0.0}

    def listen(event, seconds, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles["n"] += 1
            compiles["seconds"] += seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    Xtr, ytr = load_layer(args.task, "train", args.layer)
    Xte, yte = load_layer(args.task, "test", args.layer)
    Xtr, ytr = subsample(Xtr, ytr, args.max_train)
    t, c = time.perf_counter(), time.process_time()
    res = mlp_probe(Xtr, ytr, Xte, yte, hidden_sizes=args.sizes, alphas=args.alphas,
                    n_seeds=args.seeds, seed=0, max_iter=args.max_iter, progress=False)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    print(json.dumps(dict(
        seconds=seconds, cpu_seconds=cpu, compile_cache=str(cache) if cache else None,
        backend_compiles=compiles["n"], backend_compile_seconds=compiles["seconds"],
        config=[list(res.config.hidden_sizes), res.config.alpha],
        accuracies=res.accuracies.tolist(), mean=res.mean, std=res.std,
        seeds=list(res.seeds), val_accuracy=res.grid.val_accuracy.tolist(),
        grid_epochs=res.grid.n_iter.tolist(), retrain_epochs=res.n_iter.tolist(),
        n_train=int(Xtr.shape[0]), n_test=int(Xte.shape[0]), d=int(Xtr.shape[1]),
        n_classes=int(res.classes.shape[0]),
    )))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
