"""Dense interior-point solver of the hard-margin SVM: exact distances for thin separable pairs.

For strictly separable A, B (centred and scaled into the unit ball) the
hard-margin SVM

    min 1/2 ||w||^2  s.t.  <w, a_i> - c >= 1,  <w, b_j> - c <= -1              (S)

has optimum ||w*|| = 2 / dist(conv A, conv B), and its multipliers lam (on A),
mu (on B) satisfy sum(lam) = sum(mu) and w* = A^T lam - B^T mu: normalised,
they are the convex weights of the two nearest hull points. First-order
methods on the dual need thousands of iterations on thin pairs (docs/design.md:
up to 8,400 to a 1e-3 gap, and PUD POS layer 1 has pairs that do
not reach 1e-4 in 20,000); Mehrotra's predictor-corrector on (S) needs 7-16.

Each iteration costs the normal matrix Z^T diag(lam/s) Z of size (d+1)^2, formed
from the n constraint rows in O(n d^2), and its Cholesky factor. The run stops
when the iterate's certificates, computed in float64 on the points given,
close: U = ||u - v|| from the normalised multipliers (two hull points) and
L = (min <w, a_i> - max <w, b_j>) / ||w|| (the slab of the primal iterate),
(U - L) <= rtol * U. The caller re-verifies on all points (this runs on a
working set) and adds violators.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from geomcore.solvers.blas import one_blas_thread
from geomcore.solvers.certificates import convex_weights
from geomcore.solvers.slab_ipm import max_step

__all__ = ["SVMResult", "svm_ipm"]

_STEP = 0.99


class SVMResult(NamedTuple):
    """Outcome of :func:`svm_ipm` on the points given.

    Attributes:
      converged: True when (upper - lower) <= rtol * upper was reached.
      lam, mu: convex weights on A and B (each sums to 1): the hull points
        u = lam A, v = mu B.
      w: (d,) the primal normal (any scale).
      upper, lower: U = ||u - v|| and L of ``w`` on the given points.
      iterations: interior-point iterations.
    """

    converged: bool
    lam: np.ndarray
    mu: np.ndarray
    w: np.ndarray
    upper: float
    lower: float
    iterations: int


@one_blas_thread
def svm_ipm(A: np.ndarray, B: np.ndarray, *, rtol: float, max_iter: int = 60) -> SVMResult:
    """Nearest points of conv(A) and conv(B), for strictly separable sets.

    Args:
      A: (na, d), B: (nb, d) float64 points, best centred and scaled into the unit ball.
      rtol: stop when (U - L) <= rtol * U on these points.
      max_iter: iteration cap; on overlapping hulls (S) is infeasible and the
        run ends unconverged.
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    na, d = A.shape
    nb = B.shape[0]
    n = na + nb
    # Constraint rows y_i [x_i, -1] (y = +1 on A, -1 on B): Z v - s = 1, s >= 0.
    Z = np.empty((n, d + 1))
    Z[:na, :d] = A
    Z[:na, d] = -1.0
    Z[na:, :d] = -B
    Z[na:, d] = 1.0
    P = np.ones(d + 1)
    P[d] = 0.0  # the offset c is not penalised
    diag = np.arange(d + 1)

    def factor(D):
        H = (Z.T * D) @ Z
        H[diag, diag] += P
        try:
            return sla.cho_factor(H, check_finite=False)
        except np.linalg.LinAlgError:
            H[diag, diag] += 1e-13 * np.trace(H) / (d + 1)
            return sla.cho_factor(H, check_finite=False)

    def newton(F, D, rd, rp, rsl, lam, s):
        # P dv - Z^T dl = -rd, Z dv - ds = -rp, lam ds + s dl = -rsl, eliminated
        # to (P + Z^T D Z) dv = -rd + Z^T D (-rp - rsl / lam), D = lam / s.
        g = -rp - rsl / lam
        dv = sla.cho_solve(F, -rd + Z.T @ (D * g), check_finite=False)
        dl = D * (g - Z @ dv)
        ds = -(rsl + s * dl) / lam
        return dv, ds, dl

    v = np.zeros(d + 1)
    s = np.ones(n)
    lam = np.ones(n)
    # Starting point: one affine step from (0, 1, 1), shifted to >= 1.
    rd = P * v - Z.T @ lam
    rp = Z @ v - s - 1.0
    D = lam / s
    _, ds, dl = newton(factor(D), D, rd, rp, s * lam, lam, s)
    s = np.maximum(1.0, np.abs(s + ds))
    lam = np.maximum(1.0, np.abs(lam + dl))

    upper = lower = np.inf
    for it in range(max_iter + 1):
        w = v[:d]
        wa, wb = convex_weights(lam[:na]), convex_weights(lam[na:])
        upper = float(np.linalg.norm(wa @ A - wb @ B))
        nw = float(np.linalg.norm(w))
        lower = float(((A @ w).min() - (B @ w).max()) / nw) if nw > 0 else -np.inf
        if lower > 0 and upper - lower <= rtol * upper:
            return SVMResult(True, wa, wb, w, upper, lower, it)
        if it == max_iter or not (np.all(np.isfinite(v)) and np.all(np.isfinite(lam))):
            break
        rd = P * v - Z.T @ lam
        rp = Z @ v - s - 1.0
        gap = float(s @ lam) / n
        D = lam / s
        try:
            F = factor(D)
        except np.linalg.LinAlgError:
            break
        dv, ds, dl = newton(F, D, rd, rp, s * lam, lam, s)
        a = min(max_step(s, ds), max_step(lam, dl))
        gap_aff = float((s + a * ds) @ (lam + a * dl)) / n
        sigma = (gap_aff / gap) ** 3
        dv, ds, dl = newton(F, D, rd, rp, s * lam + ds * dl - sigma * gap, lam, s)
        a = _STEP * min(max_step(s, ds), max_step(lam, dl))
        v = v + a * dv
        s = s + a * ds
        lam = lam + a * dl
    wa, wb = convex_weights(lam[:na]), convex_weights(lam[na:])
    return SVMResult(False, wa, wb, v[:d], upper, lower, it)
