"""DirectProbe's measures: distances between clusters and labels, spatial similarity.

All functions take plain arrays, so they work on any clustering; the
:func:`analyze_probe` wrapper takes a DirectProbe ``Probe`` and computes them all.

Conventions (they hold everywhere in this module and in ``results.json``):

* ``labels`` (L,) are the sorted unique training labels; a label is referred to by
  its index into ``labels``.
* ``cluster_of`` (n,) gives the cluster id 0..K-1 of each training point and
  ``cluster_label`` (K,) the label index of each cluster (clusters are label-pure).
* The hull distance of two point sets is ``min ||u - v||`` over u, v in their convex
  hulls, in the units of ``X`` (DirectProbe's "distance between clusters": the
  width of the hard-margin SVM margin). It is 0 when the hulls overlap.
* **Label-pair order**: the pairs ``(labels[i], labels[j])`` with ``i < j``, row-major
  (i.e. the strict upper triangle of the L x L matrix read row by row):
  ``(0,1), (0,2), ..., (0,L-1), (1,2), ...``; there are L(L-1)/2 of them.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Sequence

import numpy as np

from geomcore._validate import as_groups, as_points

__all__ = [
    "LABEL_PAIR_ORDER",
    "ClusterDistances",
    "LabelPairDistances",
    "DistanceVector",
    "Similarity",
    "InsideDistances",
    "ProbeAnalysis",
    "cluster_pair_distances",
    "label_pair_distances",
    "distance_vector",
    "pearson_r",
    "spatial_similarity",
    "min_distance_per_label",
    "inside_distances",
    "label_centroids",
    "analyze_probe",
]

logger = logging.getLogger(__name__)

#: How distance vectors are ordered; stored verbatim in results.json.
LABEL_PAIR_ORDER = (
    "(labels[i], labels[j]) for i < j, row-major (strict upper triangle of the label matrix)"
)


class ClusterDistances(NamedTuple):
    """Hull distances between every pair of different-label clusters.

    Attributes:
      pairs: (m, 2) int cluster ids ``(i, j)``, ``i < j``, in row-major order,
        only pairs whose labels differ.
      label_pairs: (m, 2) int label indices of the two clusters
        (``cluster_label[pairs]``).
      distance: (m,) float64 hull distances in the units of X (0 = overlap).
      separable: (m,) bool, True where a hyperplane separates the two clusters.
      n_escalated: pairs the engine sent to its exact LP (reported, not hidden).
    """

    pairs: np.ndarray
    label_pairs: np.ndarray
    distance: np.ndarray
    separable: np.ndarray
    n_escalated: int

    @property
    def n_pairs(self) -> int:
        return int(self.pairs.shape[0])


class DistanceVector(NamedTuple):
    """One distance per label pair, in :data:`LABEL_PAIR_ORDER`.

    Attributes:
      pairs: tuple of ``(label_a, label_b)`` label values, ``a`` before ``b`` in
        the sorted label order.
      values: (P,) float64 distances aligned with ``pairs``.
    """

    pairs: tuple
    values: np.ndarray


class LabelPairDistances(NamedTuple):
    """Distances between labels, aggregated from cluster-pair hull distances.

    Attributes:
      labels: (L,) the label values (the order of every axis below).
      matrix: (L, L) float64, symmetric; entry (a, b) is the mean hull distance
        over all pairs (cluster of a, cluster of b); 0 on the diagonal.
        With one cluster per label it is the hull distance of the two labels.
        Overlapping cluster pairs count as 0 (they are not filtered out).
      nearest: (L, L) float64, the minimum over the same cluster pairs (the gap
        between the closest clusters of a and b); 0 on the diagonal.
      n_cluster_pairs: (L, L) int, how many cluster pairs each entry averages.
      separable: (L, L) bool, True where every cluster pair of (a, b) is
        separable; True on the diagonal.
    """

    labels: np.ndarray
    matrix: np.ndarray
    nearest: np.ndarray
    n_cluster_pairs: np.ndarray
    separable: np.ndarray

    @property
    def min_distance(self) -> np.ndarray:
        """(L,) per label, the smallest ``matrix`` entry to any other label (inf if L == 1)."""
        return min_distance_per_label(self.matrix)

    @property
    def vector(self) -> DistanceVector:
        """``matrix`` as a :class:`DistanceVector` in :data:`LABEL_PAIR_ORDER`."""
        return distance_vector(self.matrix, self.labels)


class Similarity(NamedTuple):
    """Spatial similarity of two distance vectors.

    Attributes:
      r: Pearson's correlation coefficient over the shared label pairs.
      n_shared: number of shared label pairs.
      shared: the shared pairs, in the order of the first vector.
      only_a: pairs present only in the first vector (dropped).
      only_b: pairs present only in the second vector (dropped).
    """

    r: float
    n_shared: int
    shared: tuple
    only_a: tuple
    only_b: tuple


class InsideDistances(NamedTuple):
    """Pairwise Euclidean distances between points of the same cluster.

    Only unordered pairs of distinct points (i < j) in one cluster count.

    Attributes:
      cluster_mean: (K,) mean pairwise distance in each cluster (NaN for a
        single-point cluster).
      cluster_max: (K,) max pairwise distance (the cluster's diameter; NaN for a
        single point).
      cluster_n_pairs: (K,) number of pairs, m(m-1)/2.
      label_mean: (L,) mean over all within-cluster pairs of the label's
        clusters (pairs pooled; NaN when every cluster of the label is a single
        point).
      label_max: (L,) max over the label's clusters (NaN likewise).
      label_n_pairs: (L,) number of pooled pairs.
    """

    cluster_mean: np.ndarray
    cluster_max: np.ndarray
    cluster_n_pairs: np.ndarray
    label_mean: np.ndarray
    label_max: np.ndarray
    label_n_pairs: np.ndarray


def _check_clustering(
    X: Any, cluster_of: Any, cluster_label: Any, n_labels: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (X, cluster_of, cluster_label); return float64 X and int64 ids."""
    X = as_points(X, "X")
    n = X.shape[0]
    cluster_of = as_groups(cluster_of, n, "cluster_of")
    cluster_label = np.asarray(cluster_label)
    if cluster_label.ndim != 1:
        raise ValueError(
            "`cluster_label` must be 1-D (one label index per cluster); "
            f"got shape {cluster_label.shape}."
        )
    if cluster_label.dtype.kind not in "iu":
        raise TypeError(
            f"`cluster_label` must hold integer label indices; got dtype {cluster_label.dtype}."
        )
    cluster_label = cluster_label.astype(np.int64)
    k = cluster_label.shape[0]
    if n and (cluster_of.min() < 0 or cluster_of.max() >= k):
        bad = int(np.flatnonzero((cluster_of < 0) | (cluster_of >= k))[0])
        raise ValueError(
            f"`cluster_of` has cluster id {int(cluster_of[bad])} at index {bad}, "
            "but `cluster_label` "
            f"describes {k} clusters (ids 0..{k - 1})."
        )
    if k and np.bincount(cluster_of, minlength=k).min() == 0:
        empty = int(np.flatnonzero(np.bincount(cluster_of, minlength=k) == 0)[0])
        raise ValueError(
            f"cluster {empty} has no points: `cluster_of` must use every id 0..{k - 1}."
        )
    if n_labels is not None and k and (cluster_label.min() < 0 or cluster_label.max() >= n_labels):
        bad = int(np.flatnonzero((cluster_label < 0) | (cluster_label >= n_labels))[0])
        raise ValueError(
            f"`cluster_label` has label index {int(cluster_label[bad])} for cluster {bad}, "
            "but there are "
            f"{n_labels} labels (indices 0..{n_labels - 1})."
        )
    return X, cluster_of, cluster_label


def _different_label_pairs(cluster_label: np.ndarray) -> np.ndarray:
    """(m, 2) cluster pairs (i < j, row-major) whose labels differ."""
    k = cluster_label.shape[0]
    i, j = np.triu_indices(k, 1)
    keep = cluster_label[i] != cluster_label[j]
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)


def cluster_pair_distances(
    X: Any,
    cluster_of: Any,
    cluster_label: Any,
    *,
    tol: float = 1e-6,
    rtol: float = 1e-4,
    progress: bool = False,
) -> ClusterDistances:
    """Hull distance for every pair of clusters with different labels.

    Args:
      X: (n, d) training points (numpy, JAX or DLPack array).
      cluster_of: (n,) int cluster id per point, 0..K-1.
      cluster_label: (K,) int label index per cluster.
      tol: overlap tolerance relative to the pair's diameter (see the engine).
      rtol: relative accuracy of the reported distances.
      progress: show a progress bar over the pairs.

    Returns:
      A :class:`ClusterDistances`, pairs (i, j) with i < j in row-major order.
      Cost: one batched engine call over K(K-1)/2 pairs at most.
    """
    X, cluster_of, cluster_label = _check_clustering(X, cluster_of, cluster_label)
    pairs = _different_label_pairs(cluster_label)
    if pairs.shape[0] == 0:
        return ClusterDistances(
            pairs=pairs,
            label_pairs=np.zeros((0, 2), np.int64),
            distance=np.zeros(0),
            separable=np.zeros(0, bool),
            n_escalated=0,
        )
    from geomcore.distances import hull_distances  # the engine; imported late to keep import light

    res = hull_distances(X, cluster_of, pairs, tol=tol, rtol=rtol, progress=progress)
    distance = np.asarray(res.distance, dtype=np.float64)
    separable = np.asarray(res.separable, dtype=bool)
    # An overlapping pair has distance 0 by definition; guard against a solver
    # reporting its (tiny) upper bound instead.
    distance = np.where(separable, distance, 0.0)
    logger.info(
        "hull distances of %d cluster pairs: %d separable, %d escalated to the exact LP",
        pairs.shape[0],
        int(separable.sum()),
        int(res.n_escalated),
    )
    return ClusterDistances(
        pairs=pairs,
        label_pairs=cluster_label[pairs],
        distance=distance,
        separable=separable,
        n_escalated=int(res.n_escalated),
    )


def label_pair_distances(cd: ClusterDistances, labels: Sequence[Any]) -> LabelPairDistances:
    """Aggregate cluster-pair distances into label-pair distances.

    ``matrix[a, b] = mean over cluster pairs (p of label a, q of label b) of dist(p, q)``
    and ``nearest[a, b]`` the minimum over the same pairs.

    Args:
      cd: the output of :func:`cluster_pair_distances`.
      labels: (L,) label values, indexed by ``cd.label_pairs``.
    """
    labels = np.asarray(labels)
    n_labels = labels.shape[0]
    if cd.n_pairs and cd.label_pairs.max() >= n_labels:
        raise ValueError(
            f"cluster distances refer to label index {int(cd.label_pairs.max())} but only "
            f"{n_labels} labels were given."
        )
    a = np.minimum(cd.label_pairs[:, 0], cd.label_pairs[:, 1])
    b = np.maximum(cd.label_pairs[:, 0], cd.label_pairs[:, 1])
    flat = a * n_labels + b
    size = n_labels * n_labels
    counts = np.bincount(flat, minlength=size).reshape(n_labels, n_labels)
    sums = np.bincount(flat, weights=cd.distance, minlength=size).reshape(n_labels, n_labels)
    nearest = np.full(size, np.inf)
    np.minimum.at(nearest, flat, cd.distance)
    nearest = nearest.reshape(n_labels, n_labels)
    n_overlap = np.bincount(flat, weights=~cd.separable, minlength=size).reshape(n_labels, n_labels)

    off = ~np.eye(n_labels, dtype=bool)
    missing = off & (counts + counts.T == 0)
    if missing.any():
        i, j = np.argwhere(missing)[0]
        raise ValueError(
            f"labels {labels[i]!r} and {labels[j]!r} have no cluster pair: every label in "
            "`labels` needs at least one cluster."
        )
    counts = counts + counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (sums + sums.T) / counts
    nearest = np.minimum(nearest, nearest.T)
    n_overlap = n_overlap + n_overlap.T
    np.fill_diagonal(matrix, 0.0)
    np.fill_diagonal(nearest, 0.0)
    return LabelPairDistances(
        labels=labels,
        matrix=matrix,
        nearest=nearest,
        n_cluster_pairs=counts.astype(np.int64),
        separable=n_overlap == 0,
    )


def distance_vector(matrix: Any, labels: Sequence[Any]) -> DistanceVector:
    """Flatten a symmetric (L, L) label distance matrix in :data:`LABEL_PAIR_ORDER`.

    Returns a :class:`DistanceVector` of L(L-1)/2 entries (empty when L == 1).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    labels = list(np.asarray(labels).tolist())
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(
            f"`matrix` must be ({n}, {n}) to match {n} labels; got shape {matrix.shape}."
        )
    i, j = np.triu_indices(n, 1)
    return DistanceVector(
        pairs=tuple((labels[a], labels[b]) for a, b in zip(i.tolist(), j.tolist())),
        values=matrix[i, j].copy(),
    )


def pearson_r(x: Any, y: Any) -> float:
    """Pearson's correlation coefficient of two equally long 1-D vectors.

    ``r = sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``.

    Raises:
      ValueError: different lengths, fewer than 2 entries, or a constant vector
        (r is undefined there; no value is made up).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"the two vectors differ in length ({x.shape[0]} vs {y.shape[0]}).")
    if x.shape[0] < 2:
        raise ValueError(f"Pearson's r needs at least 2 shared entries; got {x.shape[0]}.")
    for v, name in ((x, "first"), (y, "second")):
        if not np.all(np.isfinite(v)):
            raise ValueError(
                f"the {name} vector holds NaN or inf at index "
                f"{int(np.flatnonzero(~np.isfinite(v))[0])}."
            )
    xc = x - x.mean()
    yc = y - y.mean()
    sx = np.sqrt(xc @ xc)
    sy = np.sqrt(yc @ yc)
    for s, v, name in ((sx, x, "first"), (sy, y, "second")):
        # Relative test: a vector whose spread is at rounding level is constant.
        if s <= 1e-12 * max(1.0, float(np.abs(v).max())) * np.sqrt(v.shape[0]):
            raise ValueError(f"the {name} vector is constant; Pearson's r is undefined.")
    r = float((xc @ yc) / (sx * sy))
    return float(np.clip(r, -1.0, 1.0))


def spatial_similarity(a: DistanceVector, b: DistanceVector) -> Similarity:
    """Pearson's r between two distance vectors over the label pairs they share.

    Pairs are matched by label names (``(A, B)`` and ``(B, A)`` are the same pair),
    so two results with different label sets can be compared; pairs present in
    only one vector are dropped and listed in the result.

    Raises:
      ValueError: no shared pair, fewer than 2, or a constant vector.
    """

    def key(p):
        return frozenset((str(p[0]), str(p[1])))

    index_b = {key(p): k for k, p in enumerate(b.pairs)}
    keys_a = {key(p) for p in a.pairs}
    shared, xa, xb = [], [], []
    for k, p in enumerate(a.pairs):
        kb = index_b.get(key(p))
        if kb is not None:
            shared.append(tuple(p))
            xa.append(a.values[k])
            xb.append(b.values[kb])
    only_a = tuple(tuple(p) for p in a.pairs if key(p) not in index_b)
    only_b = tuple(tuple(p) for p in b.pairs if key(p) not in keys_a)
    if not shared:
        raise ValueError(
            f"the two distance vectors share no label pair (first has {len(a.pairs)} pairs, "
            f"second has {len(b.pairs)}); were they computed on the same task?"
        )
    r = pearson_r(xa, xb)
    if only_a or only_b:
        logger.info(
            "similarity over %d shared pairs; dropped %d + %d",
            len(shared),
            len(only_a),
            len(only_b),
        )
    return Similarity(r=r, n_shared=len(shared), shared=tuple(shared), only_a=only_a, only_b=only_b)


def min_distance_per_label(matrix: Any) -> np.ndarray:
    """(L,) per label a, ``min over b != a of matrix[a, b]`` (units of the matrix).

    A label with no other label (L == 1) gets ``inf``, the minimum over an empty
    set: nothing is within any finite distance of it. This is the project's one
    convention for an undefined minimum distance (``LabelDistances.min_distance``
    uses it too); JSON writers turn it into ``null``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"`matrix` must be square (L, L); got shape {matrix.shape}.")
    n = matrix.shape[0]
    if n < 2:
        return np.full(n, np.inf)
    masked = np.where(np.eye(n, dtype=bool), np.inf, matrix)
    return masked.min(axis=1)


def _pairwise_stats(P: np.ndarray, max_block: int) -> tuple[float, float, int]:
    """Sum, max and count of ||p_i - p_j|| over i < j, in row blocks.

    Memory is O(block x m): the m x m matrix is never built for large m.
    The points are centered first so that the Gram-matrix form
    ``|a|^2 + |b|^2 - 2 a.b`` loses little to cancellation (float64).
    """
    m = P.shape[0]
    if m < 2:
        return 0.0, np.nan, 0
    P = P - P.mean(axis=0)
    sq = np.einsum("ij,ij->i", P, P)
    rows = max(1, min(m, max_block // m))
    total = 0.0
    biggest = 0.0
    for s in range(0, m - 1, rows):
        e = min(m, s + rows)
        # rows s..e-1 against columns s..m-1; keep column > row (upper triangle).
        d2 = sq[s:e, None] + sq[None, s:] - 2.0 * (P[s:e] @ P[s:].T)
        np.maximum(d2, 0.0, out=d2)
        d = np.sqrt(d2, out=d2)
        d = np.triu(d, k=1)  # zero at and below the diagonal; those entries are excluded
        total += float(d.sum())
        biggest = max(biggest, float(d.max()))
    return total, biggest, m * (m - 1) // 2


def inside_distances(
    X: Any,
    cluster_of: Any,
    cluster_label: Any,
    n_labels: int,
    *,
    block_elements: int = 4_000_000,
) -> InsideDistances:
    """Mean and max pairwise Euclidean distance inside each cluster and each label.

    Args:
      X: (n, d) training points.
      cluster_of: (n,) cluster id per point.
      cluster_label: (K,) label index per cluster.
      n_labels: L.
      block_elements: the largest distance block held in memory (entries);
        large clusters are processed in row blocks of this size.

    Returns:
      An :class:`InsideDistances` (units of X).
    """
    X, cluster_of, cluster_label = _check_clustering(X, cluster_of, cluster_label, n_labels)
    k = cluster_label.shape[0]
    order = np.argsort(cluster_of, kind="stable")
    bounds = np.searchsorted(cluster_of[order], np.arange(k + 1))
    c_sum = np.zeros(k)
    c_max = np.full(k, np.nan)
    c_n = np.zeros(k, np.int64)
    for c in range(k):
        idx = order[bounds[c] : bounds[c + 1]]
        c_sum[c], c_max[c], c_n[c] = _pairwise_stats(X[idx], block_elements)
    with np.errstate(invalid="ignore", divide="ignore"):
        c_mean = np.where(c_n > 0, c_sum / np.maximum(c_n, 1), np.nan)
    l_sum = np.bincount(cluster_label, weights=c_sum, minlength=n_labels)
    l_n = np.bincount(cluster_label, weights=c_n, minlength=n_labels).astype(np.int64)
    l_max = np.full(n_labels, np.nan)
    for c in range(k):
        if c_n[c] > 0:
            lab = cluster_label[c]
            l_max[lab] = c_max[c] if np.isnan(l_max[lab]) else max(l_max[lab], c_max[c])
    with np.errstate(invalid="ignore", divide="ignore"):
        l_mean = np.where(l_n > 0, l_sum / np.maximum(l_n, 1), np.nan)
    return InsideDistances(
        cluster_mean=c_mean,
        cluster_max=c_max,
        cluster_n_pairs=c_n,
        label_mean=l_mean,
        label_max=l_max,
        label_n_pairs=l_n,
    )


def label_centroids(X: Any, y: Any, n_labels: int) -> np.ndarray:
    """(L, d) mean of the points of each label (float64); NaN rows for absent labels.

    Args:
      X: (n, d) points.
      y: (n,) int label index per point, 0..L-1.
    """
    X = as_points(X, "X")
    y = as_groups(y, X.shape[0], "y")
    if y.size and (y.min() < 0 or y.max() >= n_labels):
        bad = int(np.flatnonzero((y < 0) | (y >= n_labels))[0])
        raise ValueError(
            f"`y` has label index {int(y[bad])} at index {bad}; expected 0..{n_labels - 1}."
        )
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    sums = np.zeros((n_labels, X.shape[1]))
    np.add.at(sums, y, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


class ProbeAnalysis(NamedTuple):
    """Every measure of a DirectProbe result (see the functions that make each)."""

    cluster_distances: ClusterDistances
    label_distances: LabelPairDistances
    inside: InsideDistances
    centroids: np.ndarray

    @property
    def distance_vector(self) -> DistanceVector:
        return self.label_distances.vector

    @property
    def min_distance_per_label(self) -> np.ndarray:
        return self.label_distances.min_distance


def analyze_probe(
    probe: Any, *, tol: float = 1e-6, rtol: float = 1e-4, progress: bool = False
) -> ProbeAnalysis:
    """All measures of a DirectProbe ``Probe`` (from ``geomcore.directprobe.directprobe``).

    Uses ``probe.X``, ``probe.labels``, ``probe.y``, ``probe.cluster_of`` and
    ``probe.cluster_label``.
    """
    for attr in ("X", "labels", "y", "cluster_of", "cluster_label"):
        if not hasattr(probe, attr):
            raise TypeError(f"`probe` must be a DirectProbe Probe; it has no attribute `{attr}`.")
    labels = np.asarray(probe.labels)
    cd = cluster_pair_distances(
        probe.X, probe.cluster_of, probe.cluster_label, tol=tol, rtol=rtol, progress=progress
    )
    ld = label_pair_distances(cd, labels)
    inside = inside_distances(probe.X, probe.cluster_of, probe.cluster_label, labels.shape[0])
    cent = label_centroids(probe.X, probe.y, labels.shape[0])
    return ProbeAnalysis(cluster_distances=cd, label_distances=ld, inside=inside, centroids=cent)
