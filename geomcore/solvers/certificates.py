"""Float64 certificates for a candidate hyperplane, on the full point sets.

Given hull points u = A^T a and v = B^T b (a, b on the simplex) and w = u - v:

    U = ||w||                                         (a feasible pair of points)
    L = max(0, (min_i <w, a_i> - max_j <w, b_j>) / ||w||)   (the slab w defines)

so L <= dist(conv A, conv B) <= U, and L > 0 proves strict separability with
the hyperplane {x : <w, x> = (min_i <w, a_i> + max_j <w, b_j>) / 2}. Float32
scores carry errors of order d * 2^-24 * ||x|| ||w||, so these are always
recomputed here in float64 from the original points.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from geomcore.results import Status

__all__ = [
    "Certificate",
    "add_violators",
    "certificate",
    "certify",
    "convex_weights",
    "decision",
    "hull_points",
    "most_violating",
    "result_row",
]


class Certificate(NamedTuple):
    w: np.ndarray  # (d,) u - v, caller's units
    lower: float  # L (may be negative before clipping: the slab overlaps)
    upper: float  # U
    offset: float  # b, the hyperplane's offset halfway across the slab
    scores_a: np.ndarray  # <w, a_i>
    scores_b: np.ndarray  # <w, b_j>
    level_a: float  # <w, u>
    level_b: float  # <w, v>


def convex_weights(x) -> np.ndarray:
    """x clipped at 0 and renormalised to sum 1 in float64 (uniform when
    nothing positive and finite is left): solver output is only close to the
    simplex, a certificate needs exact convex combinations."""
    x = np.clip(np.asarray(x, np.float64), 0.0, None)
    t = x.sum()
    return x / t if t > 0 and np.isfinite(t) else np.full(x.shape, 1.0 / x.size)


def hull_points(A: np.ndarray, B: np.ndarray, ia, a, ib, b):
    """u = A[ia]^T a and v = B[ib]^T b for the :func:`convex_weights` of a and
    b, so that u and v are exactly convex combinations."""
    return convex_weights(a) @ A[ia], convex_weights(b) @ B[ib]


def certificate(
    u: np.ndarray, v: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> Certificate:
    """Certificates of w = u - v given the float64 scores <w, a_i>, <w, b_j> on all points."""
    w = u - v
    upper = float(np.linalg.norm(w))
    smin, smax = float(scores_a.min()), float(scores_b.max())
    lower = (smin - smax) / upper if upper > 0 else 0.0
    return Certificate(
        w, lower, upper, 0.5 * (smin + smax), scores_a, scores_b, float(u @ w), float(v @ w)
    )


def certify(A: np.ndarray, B: np.ndarray, ia, a, ib, b) -> Certificate:
    """Certificates of the weights ``a`` on ``A[ia]`` and ``b`` on ``B[ib]`` (one pair)."""
    u, v = hull_points(A, B, ia, a, ib, b)
    w = u - v
    return certificate(u, v, A @ w, B @ w)


def most_violating(
    scores: np.ndarray,
    member: np.ndarray,
    k: int,
    *,
    below: float | None = None,
    above: float | None = None,
) -> np.ndarray:
    """Indices of up to k non-member points with the most violating scores.

    With ``below`` the points with scores < below, lowest first; with ``above``
    the points with scores > above, highest first.
    """
    if below is not None:
        cand = np.flatnonzero((scores < below) & ~member)
        order = np.argsort(scores[cand], kind="stable")
    else:
        cand = np.flatnonzero((scores > above) & ~member)
        order = np.argsort(-scores[cand], kind="stable")
    return cand[order[:k]]


def add_violators(
    sa: np.ndarray, sb: np.ndarray, ia: np.ndarray, ib: np.ndarray, lo: float, hi: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Working sets ``ia``, ``ib`` grown by up to k points per side that violate
    the slab most: scores ``sa`` of A below ``lo``, scores ``sb`` of B above
    ``hi`` (members already in are skipped). Returns sorted index arrays."""
    ma = np.zeros(sa.shape[0], bool)
    ma[ia] = True
    mb = np.zeros(sb.shape[0], bool)
    mb[ib] = True
    new_a = most_violating(sa, ma, k, below=lo)
    new_b = most_violating(sb, mb, k, above=hi)
    return np.union1d(ia, new_a), np.union1d(ib, new_b)


def decision(c: Certificate, scale: float, *, tol: float, rtol: float, decide: bool):
    """The status that certificate ``c`` proves, or None: the rules of every path.

    OVERLAP when U <= tol * scale (two hull points that close); SEPARABLE when
    deciding and L > 0 (w's slab separates all points); CERTIFIED when
    L > 0 and (U - L) <= rtol * U.
    """
    if c.upper <= tol * scale:
        return Status.OVERLAP
    if decide and c.lower > 0:
        return Status.SEPARABLE
    if not decide and c.lower > 0 and (c.upper - c.lower) <= rtol * c.upper:
        return Status.CERTIFIED
    return None


def result_row(c: Certificate, status: int, iterations: int, scale: float, support=None) -> tuple:
    """The fields of :class:`HullResults` for a pair that ``c`` decided with
    ``status`` (distance and lower bound 0 unless separable), then its support."""
    sep = status in (Status.CERTIFIED, Status.SEPARABLE)
    return (
        c.upper if sep else 0.0,
        max(c.lower, 0.0) if sep else 0.0,
        c.upper,
        sep,
        c.w,
        c.offset,
        int(iterations),
        int(status),
        float(scale),
        support,
    )
