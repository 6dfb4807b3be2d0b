"""Independent ground truth for the hull benchmarks on a cached real set.

    python -m bench.hull_truth --set pos_train_L6 [--cache DIR]

For every pair of labels of ``DIR/<set>.npy`` (labels from the matching
``<task>_<split>.labels.txt``), computes

- the exact separability decision of scipy's HiGHS on the full feasibility LP
  (status 0 = separable, 2 = overlap; anything else is recorded as a failure),
- the hull distance by clarabel's interior-point QP (tests/ground_truth.py),

with the seconds each took. One JSON line per pair is appended to
``DIR/<set>.truth.jsonl`` as soon as it is computed, so an interrupted run
resumes where it stopped. This takes tens of minutes for PUD POS (136 pairs);
the benchmarks read the file and never recompute it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

# default_cache and load_set are re-exported for the suites that import them from here.
from bench.cache import cache_dir as default_cache
from bench.cache import load_set
from tests.ground_truth import highs_status, qp_distance


def highs_full(A: np.ndarray, B: np.ndarray) -> int:
    """HiGHS status on the full LP (centred, scaled data): 0 separable, 2 overlap, else failure."""
    return highs_status(A, B)


def truth_path(cache: Path, name: str) -> Path:
    return cache / f"{name}.truth.jsonl"


def read_truth(cache: Path, name: str) -> dict:
    """{(label_a, label_b): record} from the truth file (empty if absent)."""
    path = truth_path(cache, name)
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[(r["a"], r["b"])] = r
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", default="pos_train_L6", help="cached set name <task>_<split>_L<k>")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache folder (default $GEOMCORE_BENCH_CACHE or <repo>/cache)",
    )
    args = ap.parse_args(argv)
    cache = args.cache or default_cache()
    X, y = load_set(cache, args.set)
    X = X.astype(np.float64)
    labels = np.unique(y)
    done = read_truth(cache, args.set)
    path = truth_path(cache, args.set)
    with path.open("a", encoding="utf-8") as fh:
        for i in range(labels.size):
            for j in range(i + 1, labels.size):
                a, b = str(labels[i]), str(labels[j])
                if (a, b) in done:
                    continue
                A, B = X[y == a], X[y == b]
                t = time.perf_counter()
                status = highs_full(A, B)
                t_lp = time.perf_counter() - t
                t = time.perf_counter()
                q = qp_distance(A, B)
                t_qp = time.perf_counter() - t
                rec = {
                    "a": a,
                    "b": b,
                    "highs_status": status,
                    "qp_distance": q,
                    "highs_seconds": t_lp,
                    "qp_seconds": t_qp,
                }
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                print(
                    f"{a:>6} {b:>6} highs={status} qp={q:.6g} ({t_lp:.1f}s, {t_qp:.1f}s)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
