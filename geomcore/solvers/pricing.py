"""Shared pricing: every pair's float64 certificates from one product per set.

For a set s that m pairs involve, the scores of all its points on all m
directions are the matrix product ``X_s @ [w_1 ... w_m]``, taken in blocks of
8 directions (X_s read m / 8 times, not m times; fixed blocks keep each pair's
scores independent of the others, see ``_BLOCK``). Each pair's certificate
(:func:`certificates.certificate`: U = ||w||, L = the slab width on all
points, and the scores that name its violators) comes from its two columns.
"""

from __future__ import annotations

import numpy as np

from geomcore.solvers.certificates import certificate
from geomcore.solvers.params import WorkingSetParams

__all__ = ["certify_all"]

# Directions go into the product in blocks of exactly this many columns
# (zero-padded). BLAS computes a column of ``X @ W`` differently for
# different widths of W (a matrix-vector kernel for one column, small-matrix
# kernels for a few), but the same way at any position of a block of a fixed
# width: with fixed blocks a pair's scores, and so its certificates, do not
# depend on which other pairs share its round, its call or its process.
_BLOCK = WorkingSetParams().price_block  # one default for the engine and this module


def pair_scores(
    sets, ij, ws, pool=None, block: int = _BLOCK
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scores ``(X_i @ w_k, X_j @ w_k)`` of each pair k = (i, j) of ``ij`` on its
    direction ``ws[k]``, from one product per set.

    With ``pool`` (an executor) the sets' products run on its threads; each
    product is the same computation either way, so the scores are too.
    ``block``: directions per product (1: every pair priced on its own, a
    matrix-vector product per set and pair; the engine's ablation baseline).
    """
    by_set: dict[int, list[tuple[int, int]]] = {}
    for k, (i, j) in enumerate(ij):
        by_set.setdefault(i, []).append((k, 0))
        by_set.setdefault(j, []).append((k, 1))
    scores: list[list] = [[None, None] for _ in ij]

    def one(s):
        X = sets[s]
        cols = by_set[s]
        for b0 in range(0, len(cols), block):
            part = cols[b0 : b0 + block]
            W = np.zeros((block, X.shape[1]))
            for row, (k, _) in enumerate(part):
                W[row] = ws[k]
            S = W @ X.T  # (block, n_s): each pair's scores contiguous
            for row, (k, side) in enumerate(part):
                scores[k][side] = S[row]

    order = sorted(by_set, key=lambda s: -sets[s].shape[0] * len(by_set[s]))  # big first
    if pool is not None and len(order) > 1:
        list(pool.map(one, order))
    else:
        for s in order:
            one(s)
    return [(a, b) for a, b in scores]


def certify_all(sets, plist, hull_points) -> None:
    """Set ``p.cert`` for every p in ``plist`` (objects with ``i``, ``j``).

    ``hull_points(p)`` returns the float64 hull points (u, v) of p's weights.
    """
    levels = [hull_points(p) for p in plist]
    ws = [u - v for u, v in levels]
    scores = pair_scores(sets, [(p.i, p.j) for p in plist], ws)
    for p, (u, v), (sa, sb) in zip(plist, levels, scores):
        p.cert = certificate(u, v, sa, sb)
