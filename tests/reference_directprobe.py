"""Slow, obviously-correct DirectProbe: a plain greedy loop, one HiGHS LP per check.

Used only by the tests, as the ground truth for ``geomcore.directprobe``. It
imports nothing from geomcore. The procedure (the contract in the docstring of
``geomcore.directprobe.clustering``):

  clusters = one per point
  repeat:
    among all same-label pairs (A, B) not yet refused in their current form,
    take the smallest (||c_A - c_B||^2, min(rep), max(rep));
    if none: stop
    if conv(A u B) intersects conv(C) for some other-label cluster C (exact LP):
      refuse (A, B)
    else: replace A, B by A u B

with rep = smallest member index, centroid of a union = (n_A c_A + n_B c_B) /
(n_A + n_B), A the cluster of smaller rep (the same float64 arithmetic as the
fast path, so near-ties resolve identically). Nothing is cached across
changes: a refused pair is re-examined whenever either cluster changes; only
the other clusters growing cannot change a refusal (a superset of an
overlapping set overlaps), so a refusal of (A, B) stays valid while A and B
are unchanged.
"""

from __future__ import annotations

import numpy as np

from tests.ground_truth import lp_separable


def reference_directprobe(X, labels):
    """Return (cluster_of, cluster_label_values) with clusters numbered by
    (label order, smallest member index)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    n = X.shape[0]
    clusters = [(i,) for i in range(n)]  # sorted member tuples
    cent = {(i,): X[i].copy() for i in range(n)}
    lab = {(i,): labels[i] for i in range(n)}
    refused: set = set()
    while True:
        best = None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                A, B = clusters[i], clusters[j]
                if lab[A] != lab[B] or frozenset((A, B)) in refused:
                    continue
                d = float(np.sum((cent[A] - cent[B]) ** 2))
                key = (d, min(A[0], B[0]), max(A[0], B[0]))
                if best is None or key < best[0]:
                    best = (key, A, B)
        if best is None:
            break
        _, A, B = best
        if A[0] > B[0]:
            A, B = B, A
        U = tuple(sorted(A + B))
        XU = X[list(U)]
        overlap = any(
            not lp_separable(XU, X[list(C)]) for C in clusters if lab[C] != lab[A]
        )
        if overlap:
            refused.add(frozenset((A, B)))
            continue
        cent[U] = (len(A) * cent[A] + len(B) * cent[B]) / (len(A) + len(B))
        lab[U] = lab[A]
        clusters = [C for C in clusters if C != A and C != B] + [U]
    uniq = np.unique(labels)
    order = sorted(clusters, key=lambda C: (int(np.searchsorted(uniq, lab[C])), C[0]))
    cluster_of = np.empty(n, dtype=np.int64)
    for k, C in enumerate(order):
        cluster_of[list(C)] = k
    return cluster_of, np.array([lab[C] for C in order])


def reference_predict(X, cluster_of, P):
    """Nearest-hull labels by brute force: clarabel QP distance to every cluster."""
    from tests.ground_truth import qp_distance

    K = int(cluster_of.max()) + 1
    D = np.array(
        [[qp_distance(np.asarray(p)[None, :], X[cluster_of == k]) for k in range(K)] for p in P]
    )
    return D
