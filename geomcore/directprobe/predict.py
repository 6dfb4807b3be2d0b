"""Nearest-hull prediction for DirectProbe clusters.

A test point p gets the label of the cluster whose convex hull is nearest:
``argmin_k dist(p, conv X[members_k])``, with the hull distance computed by the
engine (``point_hull_distances``; 0 inside a hull up to ``tol``). Ties (equal
distances, e.g. a point inside two hulls) go to the lower cluster id, the
cluster order of the Probe (label index, then smallest member index).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from geomcore._validate import as_labels, as_points

__all__ = ["cluster_distances", "nearest_clusters", "rank_clusters", "unseen_labels", "accuracy"]

logger = logging.getLogger(__name__)


def cluster_distances(
    P: Any, X: np.ndarray, cluster_of: np.ndarray, n_clusters: int, *, tol=None, rtol=None
) -> np.ndarray:
    """(p, K) float64 hull distances from each test point to each cluster, in X's units."""
    from geomcore.distances import point_hull_distances

    Pv = as_points(P, "P", width=X.shape[1], min_rows=0)
    if Pv.shape[0] == 0:
        return np.zeros((0, n_clusters))
    res = point_hull_distances(Pv, X, cluster_of, tol=tol, rtol=rtol)
    groups = np.asarray(res.groups)
    if not np.array_equal(groups, np.arange(n_clusters)):
        raise RuntimeError(
            f"point_hull_distances returned groups {groups}; expected 0..{n_clusters - 1}."
        )
    return np.asarray(res.distances, dtype=np.float64)


def nearest_clusters(
    P: Any,
    X: np.ndarray,
    members: tuple,
    centroids: np.ndarray,
    *,
    tol: float | None = None,
    rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cluster hull per test point, computing only the distances that can matter.

    The centroid lies in its hull, so ``||p - c_k||`` bounds ``dist(p, hull_k)``
    from above, and ``||p - c_k|| - r_k`` (r_k: the cluster's bounding radius)
    from below. A cluster whose lower bound exceeds the smallest upper bound
    cannot be nearest and is not solved. The others are solved per hull with
    the shared-Gram solver (:func:`geomcore.solvers.point_hull.point_hull_matrix`),
    anything it cannot certify by the pair engine.

    Returns:
      (nearest (p,) int cluster ids, distance (p,) float64 hull distances).
      Ties go to the lower cluster id.
    """
    from geomcore.distances import _check_options

    tol, rtol, _ = _check_options(tol, rtol, None)
    Pv = as_points(P, "P", width=X.shape[1], min_rows=0)
    p, K = Pv.shape[0], len(members)
    if p == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    radii = np.array(
        [np.sqrt(np.max(np.sum((X[m] - c) ** 2, axis=1))) for m, c in zip(members, centroids)]
    )
    # (p, K) centroid distances (K clusters, never p x n points).
    dc = np.sqrt(
        np.maximum(
            np.sum(Pv**2, 1)[:, None] - 2 * Pv @ centroids.T + np.sum(centroids**2, 1)[None, :],
            0.0,
        )
    )
    # Guard the bounds against the rounding of the expanded square.
    slack = 1e-7 * (np.abs(dc) + radii[None, :] + 1.0)
    lower = dc - radii[None, :] - slack
    upper = dc + slack
    # A test point equal to a training point is in that point's hull: distance 0.
    D = np.full((p, K), np.inf)
    own = _member_cluster(Pv, X, members)
    has = own >= 0
    D[np.flatnonzero(has), own[has]] = 0.0
    upper[np.flatnonzero(has), own[has]] = 0.0
    cand = (lower <= upper.min(axis=1, keepdims=True)) & ~np.isfinite(D)
    if cand.any():
        from geomcore.distances import _point_hull_matrix

        Dc, _ = _point_hull_matrix(Pv, [X[m] for m in members], tol=tol, rtol=rtol, candidates=cand)
        D[cand] = Dc[cand]
    nearest = np.argmin(D, axis=1)  # first minimum: the lower id on ties
    return nearest.astype(np.int64), D[np.arange(p), nearest]


def _member_cluster(P: np.ndarray, X: np.ndarray, members: tuple) -> np.ndarray:
    """Per test point, the lowest cluster id holding an identical training point, or -1."""
    cluster_of = np.empty(X.shape[0], np.int64)
    for k, m in enumerate(members):
        cluster_of[m] = k
    first: dict[bytes, int] = {}
    for i in range(X.shape[0]):
        key = X[i].tobytes()
        k = int(cluster_of[i])
        if key not in first or k < first[key]:
            first[key] = k
    return np.array([first.get(P[j].tobytes(), -1) for j in range(P.shape[0])], dtype=np.int64)


def rank_clusters(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clusters sorted nearest first per row (ties: lower id first) and their distances."""
    order = np.argsort(distances, axis=1, kind="stable")
    return order.astype(np.int64), np.take_along_axis(distances, order, axis=1)


def unseen_labels(y_test: Any, labels: np.ndarray) -> np.ndarray:
    """Sorted unique test labels that never occur in training."""
    yt = np.asarray(y_test)
    if yt.size == 0:
        return yt[:0]
    return np.setdiff1d(np.unique(yt), labels)


def accuracy(pred: np.ndarray, y_test: Any, labels: np.ndarray) -> float:
    """Fraction of exact matches; test labels never seen in training count as wrong.

    Logs a warning naming the unseen labels. An empty test set raises
    ValueError (the accuracy of nothing is undefined).
    """
    yt = as_labels(y_test, pred.shape[0], "y", points_name="P")
    if yt.shape[0] == 0:
        raise ValueError("`P` and `y` are empty: the accuracy of an empty test set is undefined.")
    unseen = unseen_labels(yt, labels)
    if unseen.size:
        n_bad = int(np.isin(yt, unseen).sum())
        logger.warning(
            "%d test points carry labels never seen in training (%s); they count as errors.",
            n_bad,
            ", ".join(map(str, unseen.tolist())),
        )
    try:
        hits = pred == yt
    except (TypeError, ValueError):
        hits = np.array([p == t for p, t in zip(pred.tolist(), yt.tolist())], dtype=bool)
    return float(np.mean(hits))
