"""Exact nearest points of two small hulls: a primal active-set method on their Gram matrix.

Given a working set of K points p_k, each on side A (sigma_k = +1) or B
(sigma_k = -1), with Gram matrix G_kl = <p_k, p_l>, the nearest-point problem

    min_x  1/2 ||w(x)||^2,   w(x) = sum_k sigma_k x_k p_k,
    s.t.   x >= 0,  sum_{k in A} x_k = 1,  sum_{k in B} x_k = 1

is solved exactly (to float64 round-off) by Wolfe's min-norm-point method,
extended to two simplices. The method keeps a *corral* S: an affinely
independent set of points whose affine minimiser y (the minimum of ||w|| over
the two affine hulls, a 2-constraint least-squares problem) is computed from a
Cholesky factor of

    R_S = Q_SS + [s_k == s_l],   Q_kl = sigma_k sigma_l G_kl,

(the Gram matrix of the columns (sigma_k p_k, e_A(k), e_B(k)), positive
definite exactly when the corral is affinely independent) as y = Z c with
Z = R_S^{-1} [e_A e_B] and the 2 x 2 system [e_A e_B]^T Z c = 1. A *major
cycle* adds the point that violates the optimality conditions most,
``<w, a_k> >= <w, u>`` on A and ``<w, b_k> <= <w, v>`` on B, and extends the
factor by one row (O(|S|^2)); a *minor cycle* moves from x toward y until a
weight reaches 0 and deletes that point from the factor with Givens rotations
(O(|S|^2)). At most d + 1 points are ever in S, and each major cycle strictly
decreases ||w||, so the method ends after about as many steps as the support
has points. Starting from an earlier corral (a warm start) it needs only the
steps for the points that changed.

The relative gap of an iterate is ``(U - L) / U = -(m_A + m_B) / ||w||^2``
where m_A, m_B are the most negative violations on each side (U = ||w||,
L = the slab width on the working set): a solve stops when it is below
``rtol`` or when ``||w|| <= overlap`` (the hulls touch up to that distance).

The kernel is compiled by numba (cached on disk) and releases the GIL:
:func:`thread_pool` runs one pair per thread (:mod:`working_set`).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "Corral",
    "Solve",
    "solve",
    "solve_inplace",
    "thread_pool",
    "OPTIMAL",
    "OVERLAP",
    "STALLED",
    "MAX_STEPS",
]

# Exit codes of a solve.
OPTIMAL = 0  # restricted gap <= rtol
OVERLAP = 1  # ||w|| <= overlap: the working-set hulls touch
STALLED = 2  # no admissible point left to add (round-off), gap still above rtol
MAX_STEPS = 3  # step budget used up

_PIVOT = 1e-12
# Reassociation lets LLVM vectorise the dot products of the triangular solves
# (strict order leaves them latency-bound: one FMA per 4 cycles); no flags
# that assume finite values. Results stay deterministic for a given machine.
_FAST = {
    "reassoc",
    "contract",
}  # a new corral point must add at least this (relative) to the factor


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _affine_min(L, s, Sidx, side, y, z, t):
    """y[:s] = affine minimiser on the corral Sidx[:s] from the factor R = L L^T."""
    for c in range(2):
        # forward: L t = e_c (rows of L are contiguous)
        for i in range(s):
            acc = 1.0 if side[Sidx[i]] == c else 0.0
            row = L[i]
            for k in range(i):
                acc -= row[k] * t[k]
            t[i] = acc / row[i]
        # backward: L^T z = t, column-oriented so that it also reads rows
        for i in range(s - 1, -1, -1):
            zi = t[i] / L[i, i]
            z[c, i] = zi
            row = L[i]
            for k in range(i):
                t[k] -= zi * row[k]
    t00 = 0.0
    t01 = 0.0
    t10 = 0.0
    t11 = 0.0
    for i in range(s):
        if side[Sidx[i]] == 0:
            t00 += z[0, i]
            t01 += z[1, i]
        else:
            t10 += z[0, i]
            t11 += z[1, i]
    det = t00 * t11 - t01 * t10
    c0 = (t11 - t01) / det
    c1 = (t00 - t10) / det
    for i in range(s):
        y[i] = z[0, i] * c0 + z[1, i] * c1


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _append(L, s, Sidx, k, G, sg, side):
    """Extend the factor by point k; returns False (factor unchanged) if k is
    affinely dependent on the corral to within _PIVOT."""
    Gk = G[k]
    row = L[s]
    for i in range(s):
        j = Sidx[i]
        acc = sg[j] * sg[k] * Gk[j] + (1.0 if side[j] == side[k] else 0.0)
        Li = L[i]
        for m in range(i):
            acc -= Li[m] * row[m]
        row[i] = acc / Li[i]
    rkk = Gk[k] + 1.0
    piv = rkk
    for i in range(s):
        piv -= row[i] * row[i]
    if piv <= _PIVOT * rkk:
        for i in range(s):
            row[i] = 0.0
        return False
    row[s] = np.sqrt(piv)
    Sidx[s] = k
    return True


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _delete(L, s, Sidx, j):
    """Remove corral position j from the factor: drop row j, then rotate
    columns (c, c+1) to zero the superdiagonal the shift leaves behind."""
    for r in range(j, s - 1):
        for c in range(s):
            L[r, c] = L[r + 1, c]
        Sidx[r] = Sidx[r + 1]
    for c in range(s):
        L[s - 1, c] = 0.0
    for c in range(j, s - 1):
        a = L[c, c]
        b = L[c, c + 1]
        h = np.hypot(a, b)
        if h == 0.0:
            continue
        cs = a / h
        sn = b / h
        for r in range(c, s - 1):
            t1 = L[r, c]
            t2 = L[r, c + 1]
            L[r, c] = cs * t1 + sn * t2
            L[r, c + 1] = -sn * t1 + cs * t2
        L[c, c + 1] = 0.0


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _gradient(G, sg, Sidx, s, xs, g):
    """g_k = sigma_k <p_k, w> for all k, with w = sum over the corral (reads rows of G)."""
    K = G.shape[0]
    for k in range(K):
        g[k] = 0.0
    for i in range(s):
        j = Sidx[i]
        coef = sg[j] * xs[i]
        Gj = G[j]
        for k in range(K):
            g[k] += coef * Gj[k]
    for k in range(K):
        g[k] *= sg[k]


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _forward_row(L, i, Sidx, side, T):
    """T[i] = row i of L^{-1} [e_A e_B] (rows before i already done)."""
    row = L[i]
    for c in range(2):
        acc = 1.0 if side[Sidx[i]] == c else 0.0
        for k in range(i):
            acc -= row[k] * T[k, c]
        T[i, c] = acc / row[i]


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _affine(L, s, T, y, t):
    """Affine minimiser y[:s] = L^{-T} (T c), with T^T T c = 1; returns c.

    R y = [e_A e_B] c, so c_side = nu_side + 1 where nu are the multipliers of
    the two sum constraints (the levels <w, u> and -<w, v>)."""
    t00 = 0.0
    t01 = 0.0
    t11 = 0.0
    for i in range(s):
        t00 += T[i, 0] * T[i, 0]
        t01 += T[i, 0] * T[i, 1]
        t11 += T[i, 1] * T[i, 1]
    det = t00 * t11 - t01 * t01
    c0 = (t11 - t01) / det
    c1 = (t00 - t01) / det
    for i in range(s):
        t[i] = T[i, 0] * c0 + T[i, 1] * c1
    for i in range(s - 1, -1, -1):
        yi = t[i] / L[i, i]
        y[i] = yi
        row = L[i]
        for k in range(i):
            t[k] -= yi * row[k]
    return c0, c1


@numba.njit(cache=True, fastmath=_FAST, nogil=True)
def _solve_one(G, side, x, L, Sidx, s, rtol, overlap, max_steps):
    """Solve one pair in place.

    On entry x holds feasible start weights and, when s > 0, L[:s, :s] and
    Sidx[:s] a factor of an affinely independent corral (an earlier solve's);
    with s == 0 the corral is built from the positive weights of x. On exit x
    holds the weights and L, Sidx the final corral.

    Returns (code, steps, ||w||^2, gap, s) with gap = -(m_A + m_B) / ||w||^2.
    """
    K = G.shape[0]
    sg = np.empty(K)
    for k in range(K):
        sg[k] = 1.0 if side[k] == 0 else -1.0
    if s == 0:
        for k in range(K):
            if x[k] > 0.0 and side[k] >= 0:
                if s == 0:
                    L[0, 0] = np.sqrt(G[k, k] + 1.0)
                    Sidx[0] = k
                    s = 1
                elif _append(L, s, Sidx, k, G, sg, side):
                    s += 1
    inS = np.zeros(K, np.bool_)
    for i in range(s):
        inS[Sidx[i]] = True
    # every side needs a point: the one with the smallest norm in the frame
    for c in range(2):
        has = False
        for i in range(s):
            if side[Sidx[i]] == c:
                has = True
        if not has:
            best = -1
            for k in range(K):
                if side[k] == c and (best < 0 or G[k, k] < G[best, best]):
                    best = k
            if s == 0:
                L[0, 0] = np.sqrt(G[best, best] + 1.0)
                Sidx[0] = best
                s = 1
            else:
                _append(L, s, Sidx, best, G, sg, side)
                s += 1
            inS[best] = True
            x[best] = 1.0
    xs = np.zeros(K)
    tot = np.zeros(2)
    for i in range(s):
        tot[side[Sidx[i]]] += max(x[Sidx[i]], 0.0)
    for i in range(s):
        xs[i] = max(x[Sidx[i]], 0.0) / tot[side[Sidx[i]]] if tot[side[Sidx[i]]] > 0 else 0.0
    T = np.empty((K, 2))
    for i in range(s):
        _forward_row(L, i, Sidx, side, T)
    y = np.empty(K)
    t = np.empty(K)
    g = np.empty(K)
    out = np.empty(K, np.int64)  # points of W outside the corral
    banned = np.zeros(K, np.bool_)
    steps = 0
    code = MAX_STEPS
    w2 = 0.0
    gap = np.inf
    need_affine = True
    c0 = 1.0
    c1 = 1.0
    while steps < max_steps:
        steps += 1
        if need_affine:
            c0, c1 = _affine(L, s, T, y, t)
            ymin = np.inf
            for i in range(s):
                if y[i] < ymin:
                    ymin = y[i]
            if ymin <= 0.0:
                # minor cycle: step toward y until a weight reaches 0
                theta = 1.0
                imin = -1
                for i in range(s):
                    if y[i] <= 0.0:
                        th = xs[i] / (xs[i] - y[i])
                        if th < theta or imin < 0:
                            theta = th
                            imin = i
                for i in range(s):
                    xs[i] = xs[i] + theta * (y[i] - xs[i])
                xs[imin] = 0.0
                # Drop the points whose weight reached 0 (the only point of a
                # side has weight 1, so no side is emptied).
                first = s
                i = s - 1
                while i >= 0:
                    if xs[i] <= 0.0:
                        inS[Sidx[i]] = False
                        _delete(L, s, Sidx, i)
                        for m in range(i, s - 1):
                            xs[m] = xs[m + 1]
                        s -= 1
                        first = i
                    i -= 1
                for i in range(first, s):
                    _forward_row(L, i, Sidx, side, T)
                continue
            for i in range(s):
                xs[i] = y[i]
        need_affine = True
        nu0 = c0 - 1.0
        nu1 = c1 - 1.0
        w2 = nu0 + nu1
        if w2 <= overlap * overlap:
            code = OVERLAP
            break
        # violations of the points outside the corral (those inside are at 0)
        n_out = 0
        for k in range(K):
            if not inS[k] and side[k] >= 0:
                out[n_out] = k
                g[n_out] = 0.0
                n_out += 1
        for i in range(s):
            j = Sidx[i]
            coef = sg[j] * xs[i]
            Gj = G[j]
            for m in range(n_out):
                g[m] += coef * Gj[out[m]]
        mv0 = 0.0
        mv1 = 0.0
        best = -1
        bestv = 0.0
        for m in range(n_out):
            k = out[m]
            if side[k] == 0:
                v = g[m] - nu0
                if v < mv0:
                    mv0 = v
            else:
                v = -g[m] - nu1
                if v < mv1:
                    mv1 = v
            if not banned[k] and v < bestv:
                bestv = v
                best = k
        gap = -(mv0 + mv1) / w2
        if gap <= rtol:
            code = OPTIMAL
            break
        if best < 0:
            code = STALLED
            break
        if _append(L, s, Sidx, best, G, sg, side):
            _forward_row(L, s, Sidx, side, T)
            xs[s] = 0.0
            inS[best] = True
            s += 1
            for k in range(K):
                banned[k] = False
        else:
            banned[best] = True
            need_affine = False
    for k in range(K):
        x[k] = 0.0
    for i in range(s):
        x[Sidx[i]] = max(xs[i], 0.0)
    return code, steps, w2, gap, s


class Corral(NamedTuple):
    """A solve's corral: positions in the working set (in factor order) and
    the lower-triangular factor L of R_S = Q_SS + [s_k == s_l] (R = L L^T)."""

    index: np.ndarray
    factor: np.ndarray


class Solve(NamedTuple):
    """Outcome of one restricted solve."""

    x: np.ndarray  # weights on the working set (each side sums to 1 up to round-off)
    code: int  # OPTIMAL, OVERLAP, STALLED or MAX_STEPS
    steps: int
    w2: float  # ||w||^2 in the frame
    gap: float  # restricted relative gap (U - L) / U on the working set
    corral: Corral


def solve(
    gram: np.ndarray,
    side: np.ndarray,
    x: np.ndarray,
    *,
    rtol: float,
    overlap: float,
    max_steps: int,
    corral: Corral | None = None,
) -> Solve:
    """Nearest points of the two hulls of one working set (see the module docstring).

    Args:
      gram: (K, K) float64 Gram matrix of the working set in the pair's
        centred, scaled frame.
      side: (K,) int8, 0 for A, 1 for B, -1 for an empty slot (ignored).
      x: (K,) float64 start weights (>= 0; a side with none starts from its
        point of smallest norm). Not modified.
      rtol: relative gap at which the solve is optimal.
      overlap: ||w|| at or below which it stops (the hulls touch).
      max_steps: budget of active-set steps.
      corral: the corral of an earlier solve on a working set that still
        holds its points (re-indexed): the solve resumes from its factor.
    """
    K = gram.shape[0]
    L = np.zeros((K, K))
    S = np.zeros(K, np.int64)
    s0 = 0
    if corral is not None and corral.index.size:
        s0 = corral.index.size
        L[:s0, :s0] = corral.factor
        S[:s0] = corral.index
    x = np.array(x, np.float64)
    code, steps, w2, gap, s = _solve_one(
        gram, side, x, L, S, s0, float(rtol), float(overlap), int(max_steps)
    )
    return Solve(
        x, int(code), int(steps), float(w2), float(gap), Corral(S[:s].copy(), L[:s, :s].copy())
    )


def solve_inplace(
    gram, side, x, factor, corral, size: int, *, rtol: float, overlap: float, max_steps: int
) -> tuple[int, int, float, float, int]:
    """The kernel on caller-owned buffers (the working-set path keeps them per
    pair between rounds): ``gram`` (K, K), ``side`` (K,) int8 (-1 = empty
    slot), ``x`` (K,) start weights, overwritten by the solution; ``factor``
    (K, K) and ``corral`` (K,) int64 hold the corral's factor and slots, valid
    in their first ``size`` rows on entry (0: build from x) and on exit.

    Returns (code, steps, ||w||^2, gap, new size)."""
    code, steps, w2, gap, s = _solve_one(
        gram, side, x, factor, corral, int(size), float(rtol), float(overlap), int(max_steps)
    )
    return int(code), int(steps), float(w2), float(gap), int(s)


@functools.cache
def thread_pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` workers for the GIL-free kernel."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="geomcore-active-set")
