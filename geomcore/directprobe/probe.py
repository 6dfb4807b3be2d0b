"""The frozen result of DirectProbe: clusters, what it took to find them, prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geomcore.directprobe import predict as _predict

__all__ = ["Probe", "ProbeStats", "STEP_DTYPE"]

#: One row per merge decision, in the order taken. phase 1: accepted by the
#: merge-to-the-end-then-search-back speed-up; phase 2: decided by a check.
#: ``a``/``b`` are the clusters' representatives (smallest member index).
STEP_DTYPE = np.dtype(
    [("phase", np.int8), ("label", np.int64), ("a", np.int64), ("b", np.int64), ("accepted", bool)]
)


@dataclass(frozen=True)
class ProbeStats:
    """Work counters of one clustering run.

    n_checks: overlap questions asked (checked merges + search-back states).
    n_sphere: cluster pairs certified separable by disjoint bounding spheres.
    n_cached: pairs certified by re-verifying a cached separating hyperplane.
    n_engine_calls / n_engine_pairs: batched engine calls and pairs they decided.
    n_escalated: pairs the engine sent to its exact LP.
    unchecked_merges: length of the merge-to-the-end run (0 if not used).
    first_error_step: first merge of that run that created an overlap (-1: none).
    n_rooted: pairs certified because they lie inside two end clusters of the
      unchecked run that were decided separable.
    n_centroid: pairs certified by the direction between their centroids.
    n_pooled: pairs certified by a recent solver hyperplane of the same labels.
    n_warm: engine pairs started from the nearest points of an earlier
      decision (a part of the union against the same cluster).
    """

    n_checks: int
    n_sphere: int
    n_cached: int
    n_engine_calls: int
    n_engine_pairs: int
    n_escalated: int
    unchecked_merges: int
    first_error_step: int
    n_rooted: int = 0
    n_centroid: int = 0
    n_pooled: int = 0
    n_warm: int = 0


@dataclass(frozen=True, eq=False)
class Probe:
    """DirectProbe clusters of labelled points (see :func:`geomcore.directprobe.directprobe`).

    Attributes:
      X: (n, d) float64 training points (kept for prediction).
      labels: (L,) sorted unique training labels: the label order used everywhere.
      y: (n,) int, index into ``labels`` per training point.
      cluster_of: (n,) int cluster id per point, 0..K-1, numbered by (label
        index, smallest member index).
      cluster_label: (K,) int label index per cluster.
      members: K sorted index arrays.
      centroids: (K, d) member means.
      n_merges: merges accepted.
      n_checks: overlap checks made.
      steps: structured array (``STEP_DTYPE``) of merge decisions in order.
      stats: :class:`ProbeStats`.
      conflicts: (k, 2) point index pairs i < j with identical vectors and
        different labels (empty if none); such points stay singletons.
    """

    X: np.ndarray
    labels: np.ndarray
    y: np.ndarray
    cluster_of: np.ndarray
    cluster_label: np.ndarray
    members: tuple
    centroids: np.ndarray
    n_merges: int
    n_checks: int
    steps: np.ndarray
    stats: ProbeStats
    conflicts: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_label.shape[0])

    @property
    def is_linear(self) -> bool:
        """One cluster per label: the labels are linearly separable (pairwise)."""
        return self.n_clusters == int(self.labels.shape[0])

    @property
    def has_overlapping_input(self) -> bool:
        """Some identical vectors were given different labels."""
        return bool(self.conflicts.shape[0] > 0)

    @property
    def history(self) -> np.ndarray:
        """Alias of ``steps``."""
        return self.steps

    # -- prediction ------------------------------------------------------
    def distances(
        self, P: Any, *, tol: float | None = None, rtol: float | None = None
    ) -> np.ndarray:
        """(p, K) hull distances from test points to every cluster (cluster id order)."""
        return _predict.cluster_distances(
            P, self.X, self.cluster_of, self.n_clusters, tol=tol, rtol=rtol
        )

    def rank(self, P: Any, **kw) -> tuple[np.ndarray, np.ndarray]:
        """Clusters nearest first: ``(clusters (p, K) int, distances (p, K) float64)``.

        As the original's prediction.txt: per test point, every cluster ordered by
        hull distance, ties by lower cluster id.
        """
        return _predict.rank_clusters(self.distances(P, **kw))

    def nearest(self, P: Any, **kw) -> tuple[np.ndarray, np.ndarray]:
        """(p,) nearest cluster id per test point and its hull distance.

        Solves only the clusters that can be nearest (bounding-sphere bounds),
        so it is much cheaper than :meth:`rank` on many clusters.
        """
        return _predict.nearest_clusters(P, self.X, self.members, self.centroids, **kw)

    def predict(self, P: Any, **kw) -> np.ndarray:
        """(p,) label values (from ``labels``) of the nearest cluster hull."""
        nearest, _ = self.nearest(P, **kw)
        return self.labels[self.cluster_label[nearest]]

    def unseen_labels(self, y: Any) -> np.ndarray:
        """Test labels that never occur in training (they are always mispredicted)."""
        return _predict.unseen_labels(y, self.labels)

    def score(self, P: Any, y: Any, **kw) -> float:
        """Nearest-hull accuracy in [0, 1]; unseen test labels count as wrong (logged)."""
        return _predict.accuracy(self.predict(P, **kw), y, self.labels)
