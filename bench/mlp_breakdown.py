"""Where an MLP probe's time goes: grid and retrain, first and second call, trace and compile.

    python -m bench.mlp_breakdown --task ps-role [--sizes 32,64,128,256] [--alphas ...] [--seeds 5]

Runs ``geomcore.mlp_probe`` twice in this process (the persistent compilation
cache on, as the command lines have it) and times every ``train_mlps`` call
inside it (the grid, then the retrained seeds), with JAX's own counters of
tracing, lowering and backend compile time. The first call is what a fresh
process pays on top of the second.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import jax

from bench.cache import load_layer
from bench.mlp_grid import _floats, _ints


def main(argv=None) -> int:
    import geomcore.mlp as mlp
    from geomcore.compile_cache import enable_compilation_cache

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--sizes", type=_ints, default=mlp.DEFAULT_HIDDEN_SIZES)
    ap.add_argument("--alphas", type=_floats, default=mlp.DEFAULT_ALPHAS)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    enable_compilation_cache()

    events: dict = collections.defaultdict(float)

    def listen(event, seconds, **_):
        events[event.rsplit("/", 1)[-1]] += seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    calls: list = []
    inner = mlp.train_mlps

    def timed(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        out = inner(*a, **k)
        calls.append({"stage": k.get("desc"), "models": len(a[3]), "points": int(a[0].shape[0]),
                      "seconds": round(time.perf_counter() - t, 2),
                      "cpu_seconds": round(time.process_time() - c, 2),
                      "max_epochs": int(out.n_iter.max())})
        return out

    mlp.train_mlps = timed  # mlp_probe looks the trainer up in its module
    Xtr, ytr = load_layer(args.task, "train", args.layer)
    Xte, yte = load_layer(args.task, "test", args.layer)
    try:
        for call in ("first", "second"):
            calls.clear()
            events.clear()
            t = time.perf_counter()
            res = mlp.mlp_probe(Xtr, ytr, Xte, yte, hidden_sizes=args.sizes, alphas=args.alphas,
                                n_seeds=args.seeds, progress=False)
            print(json.dumps({
                "call": call, "seconds": round(time.perf_counter() - t, 2), "stages": calls,
                "jax_seconds": {k: round(v, 2) for k, v in events.items()},
                "mean": res.mean,
            }), flush=True)
    finally:
        mlp.train_mlps = inner
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
