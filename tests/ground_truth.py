"""Independent oracles for the tests: exact LP, high-accuracy QP, closed forms.

Nothing here imports geomcore's solvers: the code under test is never its own
oracle.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

__all__ = ["highs_status", "lp_separable", "qp_distance", "simplices_at_gap", "point_box_distance"]


def _normalise(A, B):
    """Centre on the union's mean and scale into [-1, 1] (the oracles' tolerances are absolute)."""
    A = np.asarray(A, float)
    B = np.asarray(B, float)
    c0 = np.vstack([A, B]).mean(axis=0)
    s = max(np.abs(np.vstack([A, B]) - c0).max(), 1e-300)
    return (A - c0) / s, (B - c0) / s, s


def highs_status(A: np.ndarray, B: np.ndarray) -> int:
    """HiGHS status of the feasibility LP  A w - c >= 1, B w - c <= -1  (0 separable, 2 overlap)."""
    A, B, _ = _normalise(A, B)
    d = A.shape[1]
    A_ub = np.vstack([np.hstack([-A, np.ones((len(A), 1))]), np.hstack([B, -np.ones((len(B), 1))])])
    res = linprog(np.zeros(d + 1), A_ub=A_ub, b_ub=-np.ones(len(A) + len(B)),
                  bounds=[(None, None)] * (d + 1), method="highs")
    return int(res.status)


def lp_separable(A: np.ndarray, B: np.ndarray) -> bool:
    """Strict separability by HiGHS (raises if HiGHS cannot decide)."""
    status = highs_status(A, B)
    if status not in (0, 2):
        raise RuntimeError(f"HiGHS status {status}")
    return status == 0


def qp_distance(A: np.ndarray, B: np.ndarray) -> float:
    """dist(conv A, conv B) by clarabel's interior point method, high accuracy.

    min 1/2 ||z||^2  s.t.  z = A^T a - B^T b,  a, b >= 0,  sum a = sum b = 1,
    with z as an auxiliary variable so the problem stays sparse. Solved on
    centred, scaled data and reported in the original units.
    """
    import clarabel

    A, B, s = _normalise(A, B)
    na, nb, d = A.shape[0], B.shape[0], A.shape[1]
    n = na + nb + d
    P = sp.block_diag([sp.csc_matrix((na + nb, na + nb)), sp.eye(d)], format="csc")
    q = np.zeros(n)
    # equalities: z - A^T a + B^T b = 0 ; sum a = 1 ; sum b = 1
    Aeq = sp.vstack([
        sp.hstack([-sp.csc_matrix(A.T), sp.csc_matrix(B.T), sp.eye(d)]),
        sp.hstack([sp.csc_matrix(np.ones((1, na))), sp.csc_matrix((1, nb)), sp.csc_matrix((1, d))]),
        sp.hstack([sp.csc_matrix((1, na)), sp.csc_matrix(np.ones((1, nb))), sp.csc_matrix((1, d))]),
    ])
    beq = np.concatenate([np.zeros(d), [1.0, 1.0]])
    # a, b >= 0  <=>  -[a;b] + s = 0, s in nonneg cone
    Aineq = sp.hstack([-sp.eye(na + nb), sp.csc_matrix((na + nb, d))])
    Acon = sp.vstack([Aeq, Aineq]).tocsc()
    bcon = np.concatenate([beq, np.zeros(na + nb)])
    cones = [clarabel.ZeroConeT(d + 2), clarabel.NonnegativeConeT(na + nb)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = 1e-13
    settings.tol_gap_rel = 1e-13
    settings.tol_feas = 1e-12
    settings.max_iter = 500
    sol = clarabel.DefaultSolver(P, q, Acon, bcon, cones, settings).solve()
    z = np.asarray(sol.x)[na + nb:]
    return float(np.linalg.norm(z) * s)


def simplices_at_gap(d: int, gap: float, rng: np.random.Generator, n_extra: int = 0):
    """Two point sets whose hulls are at distance exactly ``gap`` along e_0.

    A lies in the half-space x_0 >= gap/2 with a facet-touching point
    (gap/2, p) and B in x_0 <= -gap/2 with (-gap/2, p): the nearest points are
    those two, so dist = gap. Extra points stay strictly inside each side.
    """
    p = rng.normal(size=d - 1)
    a0 = np.concatenate([[gap / 2], p])
    b0 = np.concatenate([[-gap / 2], p])
    A = [a0]
    B = [b0]
    for _ in range(d + n_extra):
        A.append(np.concatenate([[gap / 2 + rng.uniform(0.1, 2.0)], p + rng.normal(size=d - 1)]))
        B.append(np.concatenate([[-gap / 2 - rng.uniform(0.1, 2.0)], p + rng.normal(size=d - 1)]))
    return np.array(A), np.array(B)


def point_box_distance(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Euclidean distance from x to the box [lo, hi] (closed form)."""
    return float(np.linalg.norm(np.maximum(0, np.maximum(lo - x, x - hi))))
