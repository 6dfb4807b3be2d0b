"""Exact separability decision by linear programming (host side).

Used for the pairs the iterative solver could not decide within its budget.
The LP is the bounded maximum-slab problem

    max t  s.t.  <w, a_i> - c >= t,  <w, b_j> - c <= -t,  -1 <= w_k <= 1,  t <= 1,

whose optimum t* is > 0 iff conv(A) and conv(B) are strictly separable. With
w in a box it stays well scaled on nearly touching hulls, where the classic
"margin >= 1, w free" feasibility LP needs ||w|| ~ 1/gap and HiGHS reports
numerical trouble (status 4) on real embeddings. On centred data scaled into
the unit ball, t* <= 1e-10 is taken as touching (overlap, far below any
``tol``); a positive t* is confirmed by verifying w on all points in float64. It is solved on a
growing subset of the points (cutting planes): infeasible on a subset proves
overlap for the full sets (hulls only grow with more points); a feasible w is
verified on all points in float64 and the most violating points are added
until it separates everything. This keeps the LP at a few thousand columns
where the full LP on 17k points fails (docs/design.md).

Each round is first solved by the dense interior-point method of
:mod:`slab_ipm`, whose answers carry float64 certificates (a hyperplane that
strictly separates the subsets, or two hull points within ``touch_tol``), at a
tenth of HiGHS's time on these dense LPs. A round it cannot certify (a gap
below its floating-point resolution) goes to scipy's HiGHS, as before; the
decision says how many rounds did.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linprog

from geomcore.solvers.certificates import add_violators
from geomcore.solvers.slab_ipm import slab_ipm

__all__ = ["LPDecision", "lp_decide"]


class LPDecision(NamedTuple):
    separable: bool
    w: np.ndarray | None  # separating normal in the coordinates given (if separable)
    rounds: int
    # U of two hull points within touch_tol when the interior-point method
    # certified the overlap (inf when HiGHS decided it or the sets separate).
    upper: float = np.inf
    highs_rounds: int = 0  # rounds the interior-point method left to HiGHS


_T_MIN = 1e-10
# Hull points this close (in the centred, unit-ball coordinates the callers
# use) count as touching: the interior-point counterpart of HiGHS's t* <= 1e-10.
_TOUCH = 2e-10


def _solve(A: np.ndarray, B: np.ndarray):
    """HiGHS on the bounded max-slab LP; variables (w, c, t), objective -t."""
    na, nb, d = A.shape[0], B.shape[0], A.shape[1]
    # -<w,a> + c + t <= 0 ;  <w,b> - c + t <= 0
    A_ub = np.vstack(
        [
            np.hstack([-A, np.ones((na, 1)), np.ones((na, 1))]),
            np.hstack([B, -np.ones((nb, 1)), np.ones((nb, 1))]),
        ]
    )
    b_ub = np.zeros(na + nb)
    cost = np.zeros(d + 2)
    cost[-1] = -1.0
    bounds = [(-1.0, 1.0)] * d + [(None, None), (None, 1.0)]
    return linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")


def lp_decide(
    A: np.ndarray,
    B: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    *,
    add: int = 256,
    max_rounds: int = 200,
    touch_tol: float = _TOUCH,
    overlap_tol: float = 0.0,
) -> LPDecision:
    """Decide exactly whether conv(A) and conv(B) intersect.

    Args:
      A, B: float64 point sets, best centred and scaled (the LP's tolerances
        are absolute).
      ia, ib: starting subsets (indices), e.g. the iterative solver's support.
      add: most violating points added per side and round.
      touch_tol: U at or below which the interior-point method calls the
        hulls touching (units of A and B).
      overlap_tol: the caller's overlap threshold (``tol * scale`` in the
        units of A and B). When the interior-point method cannot certify a
        round but has found two hull points within it, the pair overlaps by
        the engine's own definition (U <= tol * scale) and HiGHS is not asked:
        hulls that close are where HiGHS's tolerances decide either way and
        its simplex can take minutes (PUD POS layer 1, NOUN-PROPN).
    """
    ia = np.unique(np.asarray(ia, dtype=np.int64))
    ib = np.unique(np.asarray(ib, dtype=np.int64))
    if ia.size == 0:
        ia = np.arange(min(A.shape[0], add))
    if ib.size == 0:
        ib = np.arange(min(B.shape[0], add))
    full = False
    highs = 0
    for r in range(1, max_rounds + 1):
        ipm = slab_ipm(A[ia], B[ib], touch_tol=touch_tol)
        if ipm.kind == "touching":
            return LPDecision(False, None, r, ipm.upper, highs)
        if ipm.kind == "separable":
            w = ipm.w
            sa, sb = A @ w, B @ w
            if sa.min() > sb.max():
                return LPDecision(True, w, r, np.inf, highs)
            # Points beyond the subsets' own slab violate the LP's optimum.
            ia, ib = add_violators(sa, sb, ia, ib, float(sa[ia].min()), float(sb[ib].max()), add)
            continue
        if ipm.upper <= overlap_tol:
            return LPDecision(False, None, r, ipm.upper, highs)
        highs += 1
        res = _solve(A[ia], B[ib])
        if res.status != 0:
            if full:
                raise RuntimeError(
                    f"HiGHS failed on the separability LP of all {A.shape[0]} + {B.shape[0]} "
                    f"points: status {res.status}: {res.message}"
                )
            # Numerical trouble on a subset: decide on all points instead.
            ia, ib, full = np.arange(A.shape[0]), np.arange(B.shape[0]), True
            continue
        w, c, t = res.x[:-2], res.x[-2], res.x[-1]
        if t <= _T_MIN:  # the subsets' hulls touch or intersect
            return LPDecision(False, None, r, np.inf, highs)
        sa = A @ w - c
        sb = B @ w - c
        if sa.min() > 0 and sb.max() < 0:
            return LPDecision(True, w, r, np.inf, highs)
        thr = t * (1.0 - 1e-9)
        n_before = ia.size + ib.size
        ia, ib = add_violators(sa, sb, ia, ib, thr, -thr, add)
        if ia.size + ib.size == n_before:
            if full:
                raise RuntimeError(
                    "HiGHS returned a hyperplane that does not separate the points it was "
                    "given (tolerance trouble on a nearly touching pair)"
                )
            ia, ib, full = np.arange(A.shape[0]), np.arange(B.shape[0]), True
    raise RuntimeError(f"LP cutting-plane loop did not finish in {max_rounds} rounds")
