"""Cold and warm timings of the engine on a cached real set (no anchors).

    python -m bench.hull_timing --set pos_train_L6 [--rtol 1e-4]

Prints, for ``label_distances`` (distances) and ``overlaps`` (decisions) over
all label pairs: the first call (includes JAX compiles) and a second call in
the same process, with pair statuses, median/max iterations and escalations.
The anchors and ground truth are in ``bench/test_hull_bench.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import geomcore
from bench.cache import cache_dir as default_cache
from bench.cache import load_set


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", default="pos_train_L6")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    X, y = load_set(default_cache(), args.set)
    uniq, inv = np.unique(y, return_inverse=True)
    iu, ju = np.triu_indices(uniq.size, 1)
    pairs = np.stack([iu, ju], 1)
    print(
        f"{args.set}: {X.shape[0]} points, d={X.shape[1]}, {uniq.size} labels, {len(pairs)} pairs"
    )
    for run in ("cold", "warm"):
        t = time.perf_counter()
        r = geomcore.label_distances(X, y, rtol=args.rtol).results
        td = time.perf_counter() - t
        t = time.perf_counter()
        ov = geomcore.overlaps(X, inv, pairs)
        to = time.perf_counter() - t
        print(
            f"{run}: distances {td:.2f} s "
            f"(status counts {np.bincount(r.status, minlength=5).tolist()}, "
            f"iterations median {np.median(r.iterations):.0f} max {r.iterations.max()}, "
            f"escalated {r.n_escalated}); decisions {to:.2f} s ({int(ov.sum())} overlapping)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
