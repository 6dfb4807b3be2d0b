"""Distances from many points to one convex hull, all points at once, in float64.

For a cluster with members X (n x d) and test points P (m x d) the distance of
p to conv X is

    dist(p, conv X) = min_{lam in simplex} ||X^T lam - p||.

All m problems share the Gram matrix G = X X^T (n x n), so one accelerated
projected-gradient iteration (FISTA with adaptive restart) for all of them is
one (n x n) @ (n x m) product: for the small clusters DirectProbe produces
that is far cheaper than treating each (point, cluster) as a general pair of
hulls. Coordinates are centred at the cluster's centroid (distances do not
change under translation; the Gram matrix of centred points is better scaled).

Every answer is certified on the original points, exactly as the pair engine
does (:mod:`certificates`): with q = X^T lam and w = p - q,

    U = ||w||,  L = min_i <w, p - x_i> / ||w||  <=  dist(p, conv X)  <=  U,

(the slab w defines separates p from every member). A point is done when
U <= tol * scale (inside the hull, distance 0) or U - L <= rtol * U, with the
pair engine's scale for the pair ({p}, X): 2R, R = R_X + ||p - mean X|| / 2 the
radius of both around the midpoint of p and mean X (R_X: X's radius about its
mean).
Points not done within ``max_iter`` iterations are returned as undone, and the
caller hands them to the general engine (which escalates to HiGHS).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PointHullBatch", "point_hull_batch", "point_hull_matrix", "MAX_GRAM"]

# Clusters larger than this are left to the general engine: the shared Gram
# matrix would be MAX_GRAM^2 floats (128 MiB at 4096).
MAX_GRAM = 4096


class PointHullBatch(NamedTuple):
    """Per test point: certified bounds on its distance to one hull.

    distance: (m,) U where certified (0 inside the hull), else nan.
    lower, upper: (m,) the certificates L <= dist <= U (caller's units).
    done: (m,) bool, certified within the budget.
    iterations: (m,) iterations spent per point.
    w: (m, d) p - q for the hull point q found (the certificates' direction).
    scale: (m,) the pair engine's scale for (p, X): 2 R_X + ||p - mean X||.
    """

    distance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    done: np.ndarray
    iterations: np.ndarray
    w: np.ndarray
    scale: np.ndarray


def _project_simplex_cols(Y: np.ndarray) -> np.ndarray:
    """Euclidean projection of every column of Y (n x m) onto the simplex."""
    n = Y.shape[0]
    S = -np.sort(-Y, axis=0)
    css = np.cumsum(S, axis=0) - 1.0
    k = np.arange(1, n + 1, dtype=Y.dtype)[:, None]
    cond = S - css / k > 0
    rho = n - 1 - np.argmax(cond[::-1], axis=0)  # last index where cond holds
    tau = css[rho, np.arange(Y.shape[1])] / (rho + 1)
    return np.maximum(Y - tau[None, :], 0.0)


def _certify(X: np.ndarray, P: np.ndarray, lam: np.ndarray):
    """(U, L, W) per column of lam, recomputed from the points (not the Gram matrix)."""
    lam = np.maximum(lam, 0.0)
    lam = lam / lam.sum(axis=0, keepdims=True)
    W = P - lam.T @ X  # (m, d): p - q
    U = np.linalg.norm(W, axis=1)
    # <w, p - x_i> = <w, p> - <w, x_i>, minimum over members.
    smin = np.einsum("md,md->m", W, P) - (W @ X.T).max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        L = np.where(U > 0, smin / np.where(U > 0, U, 1.0), 0.0)
    return U, L, W


def point_hull_batch(
    P: np.ndarray,
    X: np.ndarray,
    *,
    tol: float,
    rtol: float,
    max_iter: int = 3000,
    check_every: int = 20,
) -> PointHullBatch:
    """Certified distances from every row of P to conv(rows of X).

    Args:
      P: (m, d) float64 test points.
      X: (n, d) float64 hull points, n <= MAX_GRAM.
      tol: absolute tolerance for "inside", relative to scale = 2R.
      rtol: relative gap (U - L) / U at which a distance is certified.
      max_iter: FISTA iterations before the remaining points are given up.
      check_every: iterations between certificate checks.
    """
    P = np.asarray(P, np.float64)
    X = np.asarray(X, np.float64)
    m, n = P.shape[0], X.shape[0]
    if n > MAX_GRAM:
        raise ValueError(f"point_hull_batch: {n} hull points; at most {MAX_GRAM} (use the pair engine).")
    mu = X.mean(axis=0)
    Xc = X - mu
    Pc = P - mu
    rx = float(np.sqrt((Xc**2).sum(axis=1).max()))
    R = rx + 0.5 * np.linalg.norm(Pc, axis=1)
    scale = 2.0 * np.where(R > 0, R, 1.0)  # the pair engine's convention

    U = np.full(m, np.inf)
    L = np.full(m, -np.inf)
    done = np.zeros(m, bool)
    iters = np.zeros(m, np.int64)
    W = np.zeros_like(P)
    if n == 1:
        W = P - X[0]
        U = np.linalg.norm(W, axis=1)
        inside = U <= tol * scale
        dist = np.where(inside, 0.0, U)
        return PointHullBatch(dist, U.copy(), U, np.ones(m, bool), iters, W, scale)

    G = Xc @ Xc.T
    B = Xc @ Pc.T  # (n, m)
    lip = float(np.linalg.eigvalsh(G)[-1]) if n <= 512 else _power_max_eig(G)
    step = 1.0 / max(lip, 1e-300)  # f(lam) = 0.5 ||Xc^T lam - p||^2, grad = G lam - b
    # Start at the nearest member (the best vertex).
    d2 = np.diag(G)[:, None] - 2.0 * B
    lam = np.zeros((n, m))
    lam[np.argmin(d2, axis=0), np.arange(m)] = 1.0
    active = np.arange(m)
    x = lam
    y = lam.copy()
    t = np.ones(m)
    f_prev = np.full(m, np.inf)
    it = 0
    while active.size and it < max_iter:
        Bk = B[:, active]
        Gy = G @ y
        x_new = _project_simplex_cols(y - step * (Gy - Bk))
        Gx = G @ x_new
        f = 0.5 * np.einsum("nm,nm->m", x_new, Gx) - np.einsum("nm,nm->m", x_new, Bk)
        # Adaptive restart (O'Donoghue & Candes): momentum off where f went up.
        restart = f > f_prev
        t_new = np.where(restart, 1.0, 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t)))
        beta = np.where(restart, 0.0, (t - 1.0) / t_new)
        y = x_new + beta[None, :] * (x_new - x)
        x, t, f_prev = x_new, t_new, f
        it += 1
        if it % check_every == 0 or it == max_iter:
            Uk, Lk, Wk = _certify(Xc, Pc[active], x)
            iters[active] = it
            U[active], L[active], W[active] = Uk, Lk, Wk
            fin = (Uk <= tol * scale[active]) | (Uk - Lk <= rtol * Uk)
            done[active[fin]] = True
            keep = ~fin
            active, x, y, t, f_prev = active[keep], x[:, keep], y[:, keep], t[keep], f_prev[keep]
    inside = done & (U <= tol * scale)
    dist = np.where(done, np.where(inside, 0.0, U), np.nan)
    return PointHullBatch(dist, np.maximum(L, 0.0), U, done, iters, W, scale)


def _power_max_eig(G: np.ndarray, n_iter: int = 100) -> float:
    """An upper bound on the largest eigenvalue of a PSD matrix (power iteration, padded 1%)."""
    v = np.ones(G.shape[0]) / np.sqrt(G.shape[0])
    lam = 0.0
    for _ in range(n_iter):
        z = G @ v
        lam = float(np.linalg.norm(z))
        if lam == 0:
            return 0.0
        v = z / lam
    # Power iteration approaches from below; the row-sum bound is always valid.
    return min(1.01 * lam, float(np.abs(G).sum(axis=1).max()))


def point_hull_matrix(
    P: np.ndarray,
    sets: list,
    *,
    tol: float,
    rtol: float,
    candidates: np.ndarray | None = None,
    max_iter: int = 3000,
    block: int = 1 << 22,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(m, C) distances from every row of P to every hull in ``sets``.

    ``candidates`` (m, C) bool restricts the work to the marked entries (the
    rest stay nan). Entries this solver cannot certify (hulls larger than
    MAX_GRAM, or points not done within ``max_iter``) are nan and listed in
    the returned (k, 2) array of (point, set) indices for the general engine.
    Test points are processed in chunks so the (n x chunk) iterates stay
    within ``block`` floats.
    """
    P = np.asarray(P, np.float64)
    m, C = P.shape[0], len(sets)
    D = np.full((m, C), np.nan)
    rest: list[np.ndarray] = []
    it = range(C)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="point-to-hull distances", unit="hull")
    for c in it:
        rows = np.arange(m) if candidates is None else np.flatnonzero(candidates[:, c])
        if rows.size == 0:
            continue
        X = np.asarray(sets[c], np.float64)
        if X.shape[0] > MAX_GRAM:
            rest.append(np.stack([rows, np.full(rows.size, c)], axis=1))
            continue
        chunk = max(1, block // max(X.shape[0], 1))
        for s in range(0, rows.size, chunk):
            r = rows[s : s + chunk]
            out = point_hull_batch(P[r], X, tol=tol, rtol=rtol, max_iter=max_iter)
            D[r, c] = out.distance
            bad = r[~out.done]
            if bad.size:
                rest.append(np.stack([bad, np.full(bad.size, c)], axis=1))
    undone = np.concatenate(rest) if rest else np.zeros((0, 2), np.int64)
    return D, undone.astype(np.int64)
