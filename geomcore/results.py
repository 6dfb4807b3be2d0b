"""Frozen result types of the hull solvers.

Convergence and certification are part of every result: a caller never needs a
second call to know whether to trust a number.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np

__all__ = ["Status", "HullResult", "HullResults", "PAIR_FIELDS"]


class Status(enum.IntEnum):
    """How a pair was decided.

    CERTIFIED: separable, and the distance is certified to the relative gap
      ``(upper - lower) / upper <= rtol``.
    SEPARABLE: separable (``lower > 0`` verified in float64); the distance was
      not refined (decision-only calls).
    OVERLAP: the hulls intersect up to ``tol``: two hull points closer than
      ``tol * scale`` were found (``upper <= tol * scale``).
    EXACT_LP: the fast solver could not decide within its budget; the exact
      separability LP decided (a dense interior-point method whose answer is
      certified in float64: a strictly separating hyperplane, or two hull
      points within 1e-10 of the scale; scipy's HiGHS where it cannot
      certify). ``lower``/``upper`` still bracket the distance.
    SKIPPED: not examined (``overlaps(..., any_only=True)`` stopped early).
    """

    CERTIFIED = 0
    SEPARABLE = 1
    OVERLAP = 2
    EXACT_LP = 3
    SKIPPED = 4


class HullResult(NamedTuple):
    """Distance between the convex hulls of two point sets A and B.

    Attributes:
      distance: the hull distance in the caller's units (0.0 when the hulls
        overlap); when separable it is ``upper``, the length of an actual
        segment between the hulls, within ``rtol`` of the true distance.
      lower: certified lower bound L (float64 slab width of the hyperplane w).
      upper: certified upper bound U = ||u - v|| for hull points u, v.
      separable: True iff a hyperplane strictly separates A and B (L > 0, or the
        exact LP said so).
      w: (d,) normal of the separating hyperplane, oriented so that
        ``A @ w - b > 0 > B @ w - b``; the nearest-point difference u - v.
      b: offset: the hyperplane is {x : <w, x> = b}, halfway across the slab.
      iterations: solver iterations spent on this pair.
      status: a :class:`Status`.
      scale: the data scale used for ``tol`` (bound on the diameter of A u B).
    """

    distance: float
    lower: float
    upper: float
    separable: bool
    w: np.ndarray
    b: float
    iterations: int
    status: Status
    scale: float

    @property
    def overlapping(self) -> bool:
        return not self.separable


class HullResults(NamedTuple):
    """The fields of :class:`HullResult`, one row per pair (leading axis m).

    ``n_escalated`` counts the pairs decided by the exact LP. ``supports``
    (None if not recorded) holds per pair ``(ia, a, ib, b)``: the indices of
    the support points in A and in B (rows of each set) and their convex
    weights, so that ``u = a @ A[ia]`` and ``v = b @ B[ib]`` are the hull
    points whose distance is ``upper`` (for an overlap decided by the exact
    LP, ``upper`` is the LP's tighter bound); None for a pair whose solver
    keeps no weights (a single point against a hull). They can warm-start a
    later solve on moved points (see :func:`geomcore.label_distances`'
    ``warm_start``).
    """

    distance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    separable: np.ndarray
    w: np.ndarray
    b: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    scale: np.ndarray
    n_escalated: int
    supports: tuple | None = None

    @property
    def n_pairs(self) -> int:
        return int(self.distance.shape[0])

    def pair(self, i: int) -> HullResult:
        """The result of pair ``i`` as a :class:`HullResult`."""
        return HullResult(
            distance=float(self.distance[i]),
            lower=float(self.lower[i]),
            upper=float(self.upper[i]),
            separable=bool(self.separable[i]),
            w=self.w[i],
            b=float(self.b[i]),
            iterations=int(self.iterations[i]),
            status=Status(int(self.status[i])),
            scale=float(self.scale[i]),
        )

    @property
    def overlapping(self) -> np.ndarray:
        return ~self.separable


# The per-pair array fields of HullResults, in order.
PAIR_FIELDS = HullResults._fields[:9]
