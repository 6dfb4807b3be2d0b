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
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ground_truth import highs_status, qp_distance  # noqa: E402


def default_cache() -> Path:
    env = os.environ.get("GEOMCORE_BENCH_CACHE")
    return Path(env) if env else REPO / "cache"


def load_set(cache: Path, name: str):
    """(X, labels) of a cached set named ``<task>_<split>_L<k>``."""
    x_path = cache / f"{name}.npy"
    stem = name.rsplit("_L", 1)[0]
    y_path = cache / f"{stem}.labels.txt"
    if not x_path.exists() or not y_path.exists():
        task, split = stem.rsplit("_", 1)
        raise FileNotFoundError(
            f"{x_path} or {y_path} is missing; create them with: "
            f"python -m bench.extract_layers --task {task} --split {split} --out {cache}"
        )
    X = np.load(x_path)
    y = np.array(y_path.read_text(encoding="utf-8").splitlines())
    return X, y


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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="pos_train_L6", help="cached set name <task>_<split>_L<k>")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default $GEOMCORE_BENCH_CACHE or <repo>/cache)")
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
                rec = {"a": a, "b": b, "highs_status": status, "qp_distance": q,
                       "highs_seconds": t_lp, "qp_seconds": t_qp}
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                print(f"{a:>6} {b:>6} highs={status} qp={q:.6g} ({t_lp:.1f}s, {t_qp:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
