"""Engine v2's directions, each measured against the same SVC anchor in one process.

    python -m bench.hull_directions [--set pos_train_L6] [--layers pos_train] [--out F.json]

On a cached set (PUD POS layer 6 by default: 16,858 x 384, 17 labels, 136
pairs; built by ``bench.extract_layers``), every label pair, each variant timed
on its second call (the first compiles or warms caches):

* ``device``: the batched first-order path (FISTA on padded working sets,
  engine v1's cost structure): neither exact restricted solves nor shared
  pricing;
* ``host``: direction 1 (exact restricted solves, active set) with direction
  2 (shared pricing: one product per set and block of 8 pairs' directions):
  the default on a CPU;
* ``host, price_block=1``: direction 1 alone (every pair priced on its own);
* decisions (direction 4: each pair stops at its first certificate, the
  centroid direction's slab first) on the host and device paths;
* direction 3 (``--layers``): the label distances of layers 0-6 as one
  chained call (each layer starts from the supports of the layer before)
  against seven cold calls.

Anchor: scikit-learn's ``SVC(kernel="linear", C=1e6)``, one fit per pair, as
the original DirectProbe (``bench.hull_scale``). Every variant's decisions
must agree with the default's; its distances must lie in the default's
certified brackets widened by the relative gap (the ground truth against
HiGHS and the QP is the hull suite's job).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.cache import load_set

__all__ = ["run"]


def _time(fn):
    fn()  # compiles, caches
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run(set_name: str, layers: str | None) -> dict:
    from sklearn.svm import SVC

    from bench.hull_scale import _anchor
    from geomcore.distances import _label_distances
    from geomcore.solvers.params import DEFAULT_RTOL, DEFAULT_TOL, EngineParams
    from geomcore.solvers.router import solve_pairs

    X, labels = load_set(None, set_name)
    X = X.astype(np.float64)
    uniq, y = np.unique(labels, return_inverse=True)
    iu, ju = np.triu_indices(uniq.size, 1)
    pairs = np.stack([iu, ju], 1)
    sets = [X[y == k] for k in range(uniq.size)]

    def distances(params):
        return lambda: _label_distances(
            X, labels, tol=DEFAULT_TOL, rtol=DEFAULT_RTOL, dtype=np.float32, shard=False,
            progress=False, warm_start=None, params=params,
        ).results

    def decisions(params):
        return lambda: solve_pairs(
            sets, pairs, mode="decide", tol=DEFAULT_TOL, dtype=np.float32, params=params
        )

    host = EngineParams(path="host")
    variants = {
        "distances, host (1 + 2)": distances(host),
        "distances, host, price_block=1 (1 alone)": distances(
            replace(host, host=replace(host.host, price_block=1))
        ),
        "distances, device (neither)": distances(EngineParams(path="device")),
        "decisions, host (1 + 2 + 4)": decisions(host),
        "decisions, device (4 alone)": decisions(EngineParams(path="device")),
    }
    t_svc, svc_sep, _ = _anchor(
        lambda: SVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000), X, labels, uniq
    )
    rows = []
    ref = None
    for name, fn in variants.items():
        seconds, res = _time(fn)
        if ref is None:
            ref = res
        sep = np.asarray(res.separable)
        row = {
            "variant": name,
            "seconds": seconds,
            "ratio_svc": t_svc / seconds,
            "steps": int(np.asarray(res.iterations).sum()),
            "escalations": int(res.n_escalated),
            "disagree_with_host": int(np.sum(sep != ref.separable)),
        }
        if name.startswith("distances"):
            both = sep & ref.separable
            slack = DEFAULT_RTOL * ref.upper[both]
            outside = np.maximum(ref.lower[both] - slack - res.distance[both],
                                 res.distance[both] - ref.upper[both] - slack)
            row["outside_brackets"] = int(np.sum(outside > 0))
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {
        "set": set_name,
        "points": int(X.shape[0]),
        "d": int(X.shape[1]),
        "pairs": int(len(pairs)),
        "svc_s": t_svc,
        "svc_wrong_vs_host": int(np.sum(svc_sep != ref.separable)),
        "rows": rows,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": list(os.getloadavg()),
    }
    if layers:
        from geomcore import label_distances_layers

        Xs = [load_set(None, f"{layers}_L{k}")[0].astype(np.float64) for k in range(7)]
        lab = load_set(None, f"{layers}_L0")[1]
        chained, res_c = _time(lambda: label_distances_layers(Xs, lab, chain=True))
        cold, res_k = _time(lambda: label_distances_layers(Xs, lab, chain=False))
        same = all(
            np.array_equal(a.separable, b.separable) for a, b in zip(res_c, res_k)
        )
        out["layers"] = {
            "set": layers,
            "chained_s": chained,
            "cold_s": cold,
            "ratio": cold / chained,
            "same_decisions": bool(same),
            "steps_chained": int(sum(r.results.iterations.sum() for r in res_c)),
            "steps_cold": int(sum(r.results.iterations.sum() for r in res_k)),
        }
        print(json.dumps(out["layers"]), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", default="pos_train_L6")
    ap.add_argument("--layers", default="pos_train",
                    help="cached task_split whose layers 0-6 test direction 3 ('' to skip)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = run(args.set, args.layers or None)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}), flush=True)
    if args.out is not None:
        from geomcore.io import write_text_atomic

        write_text_atomic(args.out, json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
