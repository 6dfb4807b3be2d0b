"""Per-set statistics and per-pair frames shared by every path of the engine.

A pair's *frame* is its centre (the midpoint of the two sets' means) and its
radius R (every point of A u B lies within R of the centre). Solvers work in
the frame's coordinates ``(x - centre) / R`` so that absolute tolerances mean
the same on any data, and ``tol`` is relative to the scale 2R (a bound on the
diameter of A u B: diam <= 2R <= 4 diam).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "SetStats",
    "set_stats",
    "pair_frame",
    "shared_point",
    "row_hashes",
    "initial_working_set",
    "valid_support",
]


class SetStats(NamedTuple):
    mean: np.ndarray
    radius: float  # max distance of a point to the mean


def set_stats(X: np.ndarray) -> SetStats:
    mu = X.mean(axis=0)
    r = float(np.sqrt(((X - mu) ** 2).sum(axis=1).max()))
    return SetStats(mu, r)


def pair_frame(si: SetStats, sj: SetStats) -> tuple[np.ndarray, float]:
    """The pair's centre (midpoint of the means) and radius R (every point of
    both sets lies within R of it; 1.0 for two identical points)."""
    center = 0.5 * (si.mean + sj.mean)
    radius = max(
        si.radius + float(np.linalg.norm(si.mean - center)),
        sj.radius + float(np.linalg.norm(sj.mean - center)),
    )
    return center, radius if radius > 0 else 1.0


def row_hashes(X: np.ndarray) -> np.ndarray:
    """(n,) uint64 hash of each row's float64 bytes (equal rows, equal hashes).

    -0.0 and 0.0 differ in bytes and hash differently, as in an exact
    comparison of bytes.
    """
    V = np.ascontiguousarray(X, dtype=np.float64).view(np.uint64)
    # Odd multipliers per column, summed with wrap-around, then mixed.
    mult = (
        np.arange(1, V.shape[1] + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    ) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (V * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


def shared_point(rows: dict, sets, i: int, j: int, hashes=row_hashes):
    """Indices (in A, in B) of a point present in both sets, or None.

    Each set's rows are hashed once (cached in ``rows``); a common hash is
    confirmed by comparing the rows exactly, and in the (astronomically
    unlikely) case that no common hash is a real match, the rows are compared
    exactly through one sort of their bytes.
    """
    for s in (i, j):
        if s not in rows:
            rows[s] = hashes(sets[s])
    common, ka, kb = np.intersect1d(rows[i], rows[j], assume_unique=False, return_indices=True)
    if common.size == 0:
        return None
    A, B = sets[i], sets[j]
    for a, b in zip(ka, kb):
        if np.array_equal(A[a], B[b]):
            return int(a), int(b)
    exact = [
        np.ascontiguousarray(X).view(np.dtype((np.void, 8 * X.shape[1]))).ravel() for X in (A, B)
    ]
    common, ka, kb = np.intersect1d(*exact, return_indices=True)
    return (int(ka[0]), int(kb[0])) if common.size else None


def initial_working_set(
    X: np.ndarray, direction: np.ndarray, k: int, lowest: bool, scores: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of the k points of X lowest (or highest) along ``direction``."""
    if X.shape[0] <= k:
        return np.arange(X.shape[0])
    s = X @ direction if scores is None else scores
    idx = np.argpartition(s if lowest else -s, k - 1)[:k]
    return np.sort(idx)


def valid_support(start, na: int, nb: int):
    """An earlier support ``(ia, a, ib, b)`` checked against sets of na and nb
    points (distinct in-range integer indices, positive weights), with the
    weights normalised to sum 1 per side; None if it does not fit (or is None)."""
    if start is None:
        return None
    ia, a, ib, b = (np.asarray(x) for x in start)
    for idx, wt, n in ((ia, a, na), (ib, b, nb)):
        if (
            idx.ndim != 1
            or idx.shape != wt.shape
            or idx.size == 0
            or idx.dtype.kind not in "iu"
            or idx.min() < 0
            or idx.max() >= n
            or np.unique(idx).size != idx.size
            or not np.all(wt > 0)
        ):
            return None
    return ia, a / a.sum(), ib, b / b.sum()
