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

__all__ = ["cluster_distances", "rank_clusters", "unseen_labels", "accuracy"]

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
        raise RuntimeError(f"point_hull_distances returned groups {groups}; expected 0..{n_clusters - 1}.")
    return np.asarray(res.distances, dtype=np.float64)


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
