"""Hull distances and overlap decisions: geomcore against SVC, LinearSVC and HiGHS.

Anchors, run in the same process on the same pairs:
  * ``SVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000)`` used as the
    original DirectProbe's ``hull2hull``: overlap iff training accuracy != 1,
    distance = min over points of 2 |w.x + b| / ||w||;
  * ``LinearSVC(C=1e6, tol=1e-5, max_iter=50000)`` (liblinear), the same way;
  * Intel's oneDAL SVC (``sklearnex.svm.SVC``, the same parameters as SVC),
    which users pick to speed up scikit-learn, the same way (distances only;
    on the real set it ran for over 20 minutes: ``GEOMCORE_BENCH_INTEL=0``
    leaves it out);
  * scipy's HiGHS on the full separability LP (decisions only; timed per pair
    on the real set from the ground-truth file, on all pairs otherwise).
Ground truth: HiGHS decisions and clarabel QP distances (tests/ground_truth.py;
for the real set, the file written by ``python -m bench.hull_truth``).

Workloads: synthetic Gaussian label clusters, and the real PUD POS words, layer
6 of the default model (``cache/pos_train_L6.npy`` from
``python -m bench.extract_layers --task pos --split train``). CI runs the
smallest synthetic configuration; ``GEOMCORE_BENCH_FULL=1`` adds the whole grid
(17 and 50 labels; 100 to 20,000 points; d = 384 and 768) and the real set.

    GEOMCORE_BENCH_FULL=1 .venv/bin/python -m pytest bench/test_hull_bench.py \\
        --benchmark-enable --benchmark-json=bench_hull.json -s
    .venv/bin/python -m bench.report bench_hull.json
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC, LinearSVC

import geomcore
from bench.cache import cache_dir as default_cache
from bench.cache import load_set
from bench.hull_truth import highs_full, read_truth
from tests.ground_truth import qp_distance

FULL = os.environ.get("GEOMCORE_BENCH_FULL") == "1"
# oneDAL's SVC anchor: on by default; GEOMCORE_BENCH_INTEL=0 leaves it out.
INTEL = os.environ.get("GEOMCORE_BENCH_INTEL", "1") != "0"


def synthetic(n_labels: int, n: int, d: int, seed: int = 0):
    """Gaussian label clusters: unit noise, centres spread so that most label
    pairs are separable with a range of margins and a few overlap."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n - 2 * n_labels, np.ones(n_labels) / n_labels) + 2
    centres = (
        rng.normal(size=(n_labels, d)) * (6.0 / np.sqrt(d)) * np.sqrt(max(n / n_labels, 2) / 4)
    )
    X = np.vstack(
        [rng.normal(size=(s, d)) * (1.0 / np.sqrt(d)) * 4 + c for s, c in zip(sizes, centres)]
    )
    y = np.repeat([f"L{k:02d}" for k in range(n_labels)], sizes)
    return X.astype(np.float32), y


def _svm_anchor(make, A, B):
    X = np.vstack([A, B]).astype(np.float64)
    t = np.r_[np.ones(len(A)), -np.ones(len(B))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make().fit(X, t)
    w, b = clf.coef_.ravel(), float(clf.intercept_[0])
    separable = clf.score(X, t) == 1.0
    dist = float(np.min(2 * np.abs(X @ w + b)) / np.linalg.norm(w)) if separable else 0.0
    return separable, dist


def svc(A, B):
    return _svm_anchor(lambda: SVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000), A, B)


def intel_svc(A, B):
    from sklearnex.svm import SVC as IntelSVC

    return _svm_anchor(lambda: IntelSVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000), A, B)


def linear_svc(A, B):
    return _svm_anchor(lambda: LinearSVC(C=1e6, tol=1e-5, max_iter=50000), A, B)


def _pairs(y):
    labels = np.unique(y)
    iu, ju = np.triu_indices(labels.size, 1)
    return labels, iu, ju


_TRUTH: dict = {}


def _truth(name, X, y):
    """HiGHS decisions and QP distances per label pair (k-th pair i < j), once per workload."""
    if name not in _TRUTH:
        _TRUTH[name] = _compute_truth(name, X, y)
    return _TRUTH[name]


def _compute_truth(name, X, y):
    labels, iu, ju = _pairs(y)
    if name.startswith("real:"):
        # Pairs not yet in the truth file (it takes hours on 2 busy cores) get
        # status -1 and are left out of the error and agreement counts; the
        # table reports how many pairs had ground truth.
        rec = read_truth(default_cache(), name[5:])
        if not rec:
            pytest.fail(f"no ground truth yet; run: python -m bench.hull_truth --set {name[5:]}")
        rows = [rec.get((labels[i], labels[j])) for i, j in zip(iu, ju)]
        status = np.array([r["highs_status"] if r else -1 for r in rows])
        q = np.array([r["qp_distance"] if r else np.nan for r in rows])
        per_pair = float(np.mean([r["highs_seconds"] for r in rows if r]))
        return status, q, per_pair
    status, q, t = [], [], 0.0
    for i, j in zip(iu, ju):
        A, B = X[y == labels[i]].astype(float), X[y == labels[j]].astype(float)
        t0 = time.perf_counter()
        status.append(highs_full(A, B))
        t += time.perf_counter() - t0
        q.append(qp_distance(A, B))
    return np.array(status), np.array(q), t / len(iu)


def _anchor_run(fn, X, y):
    labels, iu, ju = _pairs(y)
    t0 = time.perf_counter()
    out = [fn(X[y == labels[i]], X[y == labels[j]]) for i, j in zip(iu, ju)]
    return time.perf_counter() - t0, np.array([o[0] for o in out]), np.array([o[1] for o in out])


def _workloads():
    small = [pytest.param(("synthetic", 17, 600, 384), id="synth-17x600x384")]
    if not FULL:
        return small
    grid = [
        pytest.param(("synthetic", L, n, d), id=f"synth-{L}x{n}x{d}")
        for L in (17, 50)
        for n in (100, 2000, 20000)
        for d in (384, 768)
        if not (L == 50 and n == 100)  # fewer than 2 points per label
    ]
    return small + grid + [pytest.param(("real", "pos_train_L6"), id="real-pos-L6")]


def _load(w):
    if w[0] == "synthetic":
        _, L, n, d = w
        return f"synthetic:{L}x{n}x{d}", *synthetic(L, n, d)
    X, y = load_set(default_cache(), w[1])
    return f"real:{w[1]}", X, y


@pytest.mark.parametrize("workload", _workloads())
def test_distances(benchmark, workload):
    name, X, y = _load(workload)
    n_pairs = len(_pairs(y)[1])
    geomcore.label_distances(X, y)  # compile
    ld = benchmark.pedantic(
        lambda: geomcore.label_distances(X, y), rounds=1, iterations=1, warmup_rounds=0
    )
    t0 = time.perf_counter()
    ld = geomcore.label_distances(X, y)
    t_geo = time.perf_counter() - t0
    r = ld.results
    t_svc, svc_sep, svc_dist = _anchor_run(svc, X, y)
    big = X.shape[0] > 5000 and not name.startswith("real:")
    if big:
        status, q, highs_pp = None, None, None
    else:
        status, q, highs_pp = _truth(name, X, y)
    t_lsvc, lsvc_sep, lsvc_dist = _anchor_run(linear_svc, X, y)
    if INTEL:
        t_isvc, isvc_sep, isvc_dist = _anchor_run(intel_svc, X, y)
    else:  # oneDAL's SVC at C = 1e6 runs for tens of minutes on the real set
        t_isvc, isvc_sep, isvc_dist = np.nan, np.zeros(n_pairs, bool), np.zeros(n_pairs)
    info = {
        "workload": name,
        "kind": "distances",
        "pairs": n_pairs,
        "points": int(X.shape[0]),
        "geomcore_s": t_geo,
        "svc_s": t_svc,
        "linearsvc_s": t_lsvc,
        "ratio_svc": t_svc / t_geo,
        "ratio_linearsvc": t_lsvc / t_geo,
        "intel_svc_s": t_isvc if INTEL else None,
        "ratio_intel_svc": t_isvc / t_geo if INTEL else None,
        "escalations": int(r.n_escalated),
        "median_iterations": float(np.median(r.iterations)),
    }
    if status is not None:
        ok = np.isin(status, (0, 2))
        truth_sep = status == 0
        sep = ok & truth_sep & r.separable
        rel = np.abs(r.distance[sep] - q[sep]) / q[sep]
        svc_rel = np.abs(svc_dist[sep & svc_sep] - q[sep & svc_sep]) / q[sep & svc_sep]
        lsvc_rel = np.abs(lsvc_dist[sep & lsvc_sep] - q[sep & lsvc_sep]) / q[sep & lsvc_sep]
        isvc_rel = np.abs(isvc_dist[sep & isvc_sep] - q[sep & isvc_sep]) / q[sep & isvc_sep]
        info.update(
            {
                "max_rel_err": float(rel.max()) if rel.size else 0.0,
                "svc_max_rel_err": float(svc_rel.max()) if svc_rel.size else 0.0,
                "linearsvc_max_rel_err": float(lsvc_rel.max()) if lsvc_rel.size else 0.0,
                "intel_svc_max_rel_err": (float(isvc_rel.max()) if isvc_rel.size else 0.0)
                if INTEL
                else None,
                "intel_svc_disagree_highs": int(np.sum(ok & (isvc_sep != truth_sep)))
                if INTEL
                else None,
                "disagree_highs": int(np.sum(ok & (r.separable != truth_sep))),
                "svc_disagree_highs": int(np.sum(ok & (svc_sep != truth_sep))),
                "linearsvc_disagree_highs": int(np.sum(ok & (lsvc_sep != truth_sep))),
                "highs_failed": int(np.sum(~ok & (status != -1))),
                "truth_pairs": int(np.sum(status != -1)),
            }
        )
        assert info["disagree_highs"] == 0
        assert info["max_rel_err"] <= 1e-4
    benchmark.extra_info.update(info)
    print(info)


@pytest.mark.parametrize("workload", _workloads())
def test_decisions(benchmark, workload):
    name, X, y = _load(workload)
    labels, iu, ju = _pairs(y)
    uniq, inv = np.unique(y, return_inverse=True)
    pairs = np.stack([iu, ju], 1)
    geomcore.overlaps(X, inv, pairs)  # compile
    benchmark.pedantic(
        lambda: geomcore.overlaps(X, inv, pairs), rounds=1, iterations=1, warmup_rounds=0
    )
    t0 = time.perf_counter()
    ov = geomcore.overlaps(X, inv, pairs)
    t_geo = time.perf_counter() - t0
    t_svc, svc_sep, _ = _anchor_run(svc, X, y)
    info = {
        "workload": name,
        "kind": "decisions",
        "pairs": len(iu),
        "points": int(X.shape[0]),
        "geomcore_s": t_geo,
        "svc_s": t_svc,
        "ratio_svc": t_svc / t_geo,
        "geomcore_per_pair_s": t_geo / len(iu),
    }
    if not (X.shape[0] > 5000 and not name.startswith("real:")):
        status, _, highs_pp = _truth(name, X, y)
        ok = np.isin(status, (0, 2))
        info.update(
            {
                "highs_per_pair_s": highs_pp,
                "ratio_highs_per_pair": highs_pp / (t_geo / len(iu)),
                "disagree_highs": int(np.sum(ok & (ov != (status == 2)))),
                "svc_disagree_highs": int(np.sum(ok & (svc_sep != (status == 0)))),
                "highs_failed": int(np.sum(~ok & (status != -1))),
                "truth_pairs": int(np.sum(status != -1)),
            }
        )
        assert info["disagree_highs"] == 0
    benchmark.extra_info.update(info)
    print(info)
