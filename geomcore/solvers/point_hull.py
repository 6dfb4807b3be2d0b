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

from geomcore.progress import progress_bar
from geomcore.solvers.buckets import bucket
from geomcore.solvers.projections import project_simplex_rows
from geomcore.solvers.spectral import step_lipschitz

__all__ = [
    "PointHullBatch",
    "point_hull_batch",
    "point_hull_ws_batch",
    "point_hull_matrix",
    "solve_point_hull",
    "MAX_GRAM",
    "SHARED_MAX",
]

# The shared Gram matrix is at most MAX_GRAM^2 floats (128 MiB at 4096).
MAX_GRAM = 4096
# Above this many hull points one iteration of the shared-Gram solver (n^2
# per point) costs more than per-point working sets, whose supports hold a
# few dozen members: hulls this large go to point_hull_ws_batch. (PUD POS
# layer 6, 400 test points x 20 clusters: 256 -> 13.9 s, 512 -> 18.2 s.)
# The default of the solvers' ``shared_max`` (``EngineParams.shared_max``).
SHARED_MAX = 256


def solve_point_hull(
    P: np.ndarray,
    X: np.ndarray,
    *,
    tol: float,
    rtol: float,
    decide: bool = False,
    shared_max: int = SHARED_MAX,
) -> "PointHullBatch":
    """Distances from every row of P to conv X, by whichever solver suits X's size.

    With ``decide`` a point is done as soon as it is decided: inside (U <= tol
    * scale) or outside (L > 0, the slab of w separates p from every member),
    the pair engine's ``decide`` mode; its U is then a bound, not a certified
    distance. The centroid direction w = p - mean X is tried first, for all
    points in one product: it decides most points far from the hull at no
    iteration cost. Hulls of at most ``shared_max`` points share their Gram
    matrix among the points; larger ones use per-point working sets.
    """
    if not decide:
        if X.shape[0] <= shared_max:
            return point_hull_batch(P, X, tol=tol, rtol=rtol)
        return point_hull_ws_batch(P, X, tol=tol, rtol=rtol)
    P, X, Xc, Pc, scale = _frame(P, X)
    # Uniform weights: q = mean X, the origin of the centred frame.
    U, L, W = _certify(Xc, Pc, np.full((X.shape[0], P.shape[0]), 1.0))
    out = _result(L > 0, U, L, np.zeros(P.shape[0], np.int64), W, scale, tol)
    rest = np.flatnonzero(L <= 0)
    if rest.size:
        solver = point_hull_batch if X.shape[0] <= shared_max else point_hull_ws_batch
        sub = solver(P[rest], X, tol=tol, rtol=rtol, decide=True)
        for f, v in zip(PointHullBatch._fields, sub):
            getattr(out, f)[rest] = v
    return out


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


def _frame(P: np.ndarray, X: np.ndarray):
    """Float64 points centred at X's mean, and each point's scale for ``tol``:
    the pair engine's 2R for ({p}, X), R = R_X + ||p - mean X|| / 2."""
    P = np.asarray(P, np.float64)
    X = np.asarray(X, np.float64)
    mu = X.mean(axis=0)
    Xc, Pc = X - mu, P - mu
    R = float(np.sqrt((Xc**2).sum(axis=1).max())) + 0.5 * np.linalg.norm(Pc, axis=1)
    return P, X, Xc, Pc, 2.0 * np.where(R > 0, R, 1.0)


def _result(done, U, L, iters, W, scale, tol) -> "PointHullBatch":
    """The batch's answer: 0 inside the hull (U <= tol * scale), nan where not done."""
    inside = done & (U <= tol * scale)
    dist = np.where(done, np.where(inside, 0.0, U), np.nan)
    return PointHullBatch(dist, np.maximum(L, 0.0), U, done, iters, W, scale)


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
    decide: bool = False,
) -> PointHullBatch:
    """Certified distances from every row of P to conv(rows of X).

    Args:
      P: (m, d) float64 test points.
      X: (n, d) float64 hull points, n <= MAX_GRAM.
      tol: absolute tolerance for "inside", relative to scale = 2R.
      rtol: relative gap (U - L) / U at which a distance is certified.
      max_iter: FISTA iterations before the remaining points are given up.
      check_every: iterations between certificate checks.
      decide: stop a point once it is decided (inside, or L > 0).
    """
    P, X, Xc, Pc, scale = _frame(P, X)
    m, n = P.shape[0], X.shape[0]
    if n > MAX_GRAM:
        raise ValueError(
            f"point_hull_batch: {n} hull points; at most {MAX_GRAM} (use the pair engine)."
        )
    U = np.full(m, np.inf)
    L = np.full(m, -np.inf)
    done = np.zeros(m, bool)
    iters = np.zeros(m, np.int64)
    W = np.zeros_like(P)
    if n == 1:
        W = P - X[0]
        U = np.linalg.norm(W, axis=1)
        return _result(np.ones(m, bool), U, U.copy(), iters, W, scale, tol)

    G = Xc @ Xc.T
    B = Xc @ Pc.T  # (n, m)
    # f(lam) = 0.5 ||Xc^T lam - p||^2, grad = G lam - b
    step = 1.0 / float(step_lipschitz(G[None])[0])
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
        x_new = project_simplex_rows((y - step * (Gy - Bk)).T).T
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
            fin = (Uk <= tol * scale[active]) | _closed(Uk, Lk, rtol, decide)
            done[active[fin]] = True
            keep = ~fin
            active, x, y, t, f_prev = active[keep], x[:, keep], y[:, keep], t[keep], f_prev[keep]
    return _result(done, U, L, iters, W, scale, tol)


def _closed(U: np.ndarray, L: np.ndarray, rtol: float, decide: bool) -> np.ndarray:
    """Outside points that are finished: L > 0 when deciding, else U - L <= rtol U."""
    return L > 0 if decide else U - L <= rtol * U


def _fista_rows(
    G: np.ndarray,
    b: np.ndarray,
    lam: np.ndarray,
    pp: np.ndarray,
    *,
    rtol: float,
    u_abs: np.ndarray,
    max_iter: int,
    check_every: int = 50,
    decide: bool = False,
) -> tuple[np.ndarray, int]:
    """min_lam f(lam) = 1/2 lam^T G_r lam - b_r^T lam over the simplex, for every row r.

    ``check_every`` also spaces the Newton polish (a batched solve): every 50
    iterations beat 10, 25 and 200 on PUD POS prediction.

    G: (a, K, K), b: (a, K), lam: (a, K) warm start, pp: (a,) |p|^2, so that
    the squared distance of the iterate is U^2 = 2 f + pp. With w = p - q the
    Frank-Wolfe gap max_i <w, x_i> - <w, q> equals U (U - L) for the slab
    certificate L on the working set, so a row stops when it is at most
    rtol * U^2 / 2 (half the final criterion U - L <= rtol U, leaving room
    for members outside the working set), or when U <= u_abs (inside). The
    certificates on all points are the caller's; this only saves work. With
    ``decide`` a row also stops once w separates p from its working set:
    <w, p> - max_i <w, x_i> = pp - <lam, b> + min_i g_i > 0 (g = G lam - b).
    """
    step = 1.0 / step_lipschitz(G)
    x = lam
    y = lam.copy()
    # G y is carried along with y (y is a combination of two iterates whose
    # G-products are known), so an iteration costs one batched matvec; the
    # matvecs stream a K x K matrix per row and dominate the time.
    Gx = np.einsum("akj,aj->ak", G, x)
    Gy = Gx.copy()
    t = np.ones(lam.shape[0])
    f_prev = np.full(lam.shape[0], np.inf)
    live = np.ones(lam.shape[0], bool)
    it = 0
    while it < max_iter and live.any():
        x_new = project_simplex_rows(y - step[:, None] * (Gy - b))
        x_new[~live] = x[~live]
        Gx_new = np.einsum("akj,aj->ak", G, x_new)
        f = 0.5 * np.einsum("ak,ak->a", x_new, Gx_new) - np.einsum("ak,ak->a", x_new, b)
        restart = f > f_prev
        t_new = np.where(restart, 1.0, 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t)))
        beta = np.where(restart | ~live, 0.0, (t - 1.0) / t_new)[:, None]
        y = x_new + beta * (x_new - x)
        Gy = Gx_new + beta * (Gx_new - Gx)
        x, Gx, t, f_prev = x_new, Gx_new, t_new, f
        it += 1
        if it % check_every == 0:
            x, Gx, f, polished = _polish(G, b, x, Gx, f, live)
            y[polished] = x[polished]
            Gy[polished] = Gx[polished]
            t[polished] = 1.0
            f_prev = f
            g = Gx - b
            fw_gap = np.einsum("ak,ak->a", x, g) - g.min(axis=1)
            u2 = np.maximum(2.0 * f + pp, 0.0)
            live &= (fw_gap > rtol * u2 / 2.0) & (u2 > u_abs**2)
            if decide:
                live &= pp - np.einsum("ak,ak->a", x, b) + g.min(axis=1) <= 0
    return x, it


def _polish(G, b, x, Gx, f, live):
    """One Newton step on each row's support: the exact minimiser over the
    affine hull of the members with weight, taken where it stays in the
    simplex and lowers f. FISTA finds the support long before it converges
    on it; this step finishes the job (as in Wolfe's minimum-norm-point
    algorithm). A tiny ridge keeps affinely dependent supports solvable."""
    a, K = x.shape
    S_full = (x > 0) & live[:, None]
    # The system is built on the supports only, each row's support moved to
    # the front and padded to the largest support: a batched solve costs the
    # cube of its size, and supports are a fraction of the working sets.
    k = max(int(S_full.sum(axis=1).max()), 1)
    order = np.argsort(~S_full, axis=1, kind="stable")[:, :k]
    S = np.take_along_axis(S_full, order, axis=1)
    rows = np.arange(a)[:, None, None]
    Gs = G[rows, order[:, :, None], order[:, None, :]]
    bs = np.take_along_axis(b, order, axis=1)
    M = np.zeros((a, k + 1, k + 1))
    both = S[:, :, None] & S[:, None, :]
    M[:, :k, :k] = np.where(both, Gs, 0.0)
    diag = np.arange(k)
    ridge = 1e-12 * np.maximum(np.einsum("akk->a", G), 1e-300)
    M[:, diag, diag] += np.where(S, ridge[:, None], 1.0)
    M[:, k, :k] = S
    M[:, :k, k] = S
    M[:, k, k] = np.where(S.any(axis=1), 0.0, 1.0)
    rhs = np.concatenate([np.where(S, bs, 0.0), S.any(axis=1, keepdims=True).astype(float)], axis=1)
    sol = np.linalg.solve(M, rhs[:, :, None])[:, :k, 0]
    cand = np.zeros_like(x)
    np.put_along_axis(cand, order, np.where(S, sol, 0.0), axis=1)
    Gc = np.einsum("akj,aj->ak", G, cand)
    fc = 0.5 * np.einsum("ak,ak->a", cand, Gc) - np.einsum("ak,ak->a", cand, b)
    ok = live & S.any(axis=1) & np.all(cand >= 0, axis=1) & (fc < f)
    x = np.where(ok[:, None], cand, x)
    Gx = np.where(ok[:, None], Gc, Gx)
    f = np.where(ok, fc, f)
    return x, Gx, f, ok


def point_hull_ws_batch(
    P: np.ndarray,
    X: np.ndarray,
    *,
    tol: float,
    rtol: float,
    # Small working sets that grow slowly win: an iteration streams a K x K
    # Gram matrix per point, and a round only adds what the slab shows is
    # missing (PUD POS layer 6 prediction: k0 = k_add = 32 took 1.6x longer).
    k0: int = 16,
    k_add: int = 8,
    k_max: int = 1024,
    inner_iter: int = 1000,
    max_rounds: int = 30,
    block: int = 1 << 23,
    decide: bool = False,
) -> PointHullBatch:
    """Certified distances from every row of P to conv(rows of X), for large X.

    Each point keeps a working set of hull members (at first its k0 nearest);
    the small problems on them are solved for all points at once (FISTA on a
    stack of (K x K) Gram matrices, gathered from X's Gram matrix when X has
    at most MAX_GRAM points), and every answer is verified in float64 on *all*
    members (one (m x d) @ (d x n) product per round: the certificates of the
    module docstring). Then each working set becomes its support (the members
    with weight) plus the ``k_add`` members that most violate the slab, padded
    to a shared size K (power of 2) with the next most violating: the optimum
    depends only on the support (at most d + 1 points, usually a few dozen),
    so K stays far below n. Points not certified within ``max_rounds`` rounds
    or with a support beyond ``k_max`` are returned undone. ``decide``: a
    point is done once inside or L > 0 (:func:`solve_point_hull`).
    """
    P, X, Xc, Pc, scale = _frame(P, X)
    m, n = P.shape[0], X.shape[0]
    U = np.full(m, np.inf)
    L = np.full(m, -np.inf)
    W = np.zeros_like(P)
    done = np.zeros(m, bool)
    iters = np.zeros(m, np.int64)
    G_full = Xc @ Xc.T if n <= MAX_GRAM else None
    sq = (Xc**2).sum(axis=1)
    chunk = max(1, block // max(n, k_max * 8))
    for c0 in range(0, m, chunk):
        rows = np.arange(c0, min(m, c0 + chunk))
        Pa = Pc[rows]
        pp = np.einsum("ad,ad->a", Pa, Pa)
        K = min(bucket(k0), n)
        PX = Pa @ Xc.T  # (rows, n) <p, x_i>: the nearest members now, the linear terms each round
        D2 = sq[None, :] - 2.0 * PX
        idx = (
            np.argpartition(D2, K - 1, axis=1)[:, :K]
            if K < n
            else np.tile(np.arange(n), (rows.size, 1))
        )
        order = np.argsort(np.take_along_axis(D2, idx, axis=1), axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        lam = np.zeros(idx.shape)
        lam[:, 0] = 1.0  # start at the nearest member
        act = np.arange(rows.size)
        for _ in range(max_rounds):
            if G_full is not None:
                G = G_full[idx[:, :, None], idx[:, None, :]]
            else:
                Xw = Xc[idx]
                G = Xw @ np.swapaxes(Xw, 1, 2)
            bw = np.take_along_axis(PX[act], idx, axis=1)
            lam, it = _fista_rows(
                G,
                bw,
                lam,
                pp[act],
                rtol=rtol,
                u_abs=0.5 * tol * scale[rows[act]],
                max_iter=inner_iter,
                decide=decide,
            )
            g = rows[act]
            iters[g] += it
            lam = np.maximum(lam, 0.0)
            lam /= lam.sum(axis=1, keepdims=True)
            Q = np.einsum("ak,akd->ad", lam, Xc[idx])
            Wa = Pa[act] - Q
            Ua = np.linalg.norm(Wa, axis=1)
            S = Wa @ Xc.T  # (a, n): <w, x_i>
            with np.errstate(invalid="ignore", divide="ignore"):
                La = np.where(
                    Ua > 0,
                    (np.einsum("ad,ad->a", Wa, Pa[act]) - S.max(axis=1))
                    / np.where(Ua > 0, Ua, 1.0),
                    0.0,
                )
            U[g], L[g], W[g] = Ua, La, Wa
            fin = (Ua <= tol * scale[g]) | _closed(Ua, La, rtol, decide)
            done[g[fin]] = True
            keep = ~fin
            if not keep.any():
                break
            act, idx, lam, S, Q, Wa = act[keep], idx[keep], lam[keep], S[keep], Q[keep], Wa[keep]
            # New working set: the support, then members by how far they pass
            # q's level towards p (<w, x_i> - <w, q> > 0 violates optimality).
            prio = S - np.einsum("ad,ad->a", Wa, Q)[:, None]
            support = lam > 0
            n_support = int(support.sum(axis=1).max())
            if n_support + k_add > k_max:
                break
            K = min(bucket(n_support + k_add), n)
            np.put_along_axis(
                prio,
                idx,
                np.where(support, np.inf, prio[np.arange(prio.shape[0])[:, None], idx]),
                axis=1,
            )
            new = (
                np.argpartition(-prio, K - 1, axis=1)[:, :K]
                if K < n
                else np.tile(np.arange(n), (act.size, 1))
            )
            # Carry the weights of members that stay (every support member does).
            full = np.zeros((act.size, n))
            np.put_along_axis(full, idx, lam, axis=1)
            lam_new = np.take_along_axis(full, new, axis=1)
            idx, lam = new, lam_new / lam_new.sum(axis=1, keepdims=True)
    return _result(done, U, L, iters, W, scale, tol)


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
    shared_max: int = SHARED_MAX,
) -> tuple[np.ndarray, np.ndarray]:
    """(m, C) distances from every row of P to every hull in ``sets``.

    ``candidates`` (m, C) bool restricts the work to the marked entries (the
    rest stay nan). Entries these solvers cannot certify within their budgets
    are nan and listed in
    the returned (k, 2) array of (point, set) indices for the general engine.
    Hulls of at most ``shared_max`` points use the shared-Gram solver, larger ones
    per-point working sets (:func:`point_hull_ws_batch`).
    Test points are processed in chunks so the (n x chunk) iterates stay
    within ``block`` floats.
    """
    P = np.asarray(P, np.float64)
    m, C = P.shape[0], len(sets)
    D = np.full((m, C), np.nan)
    rest: list[np.ndarray] = []
    bar = progress_bar(C, "point-to-hull distances", unit="hull", enabled=progress)
    for c in range(C):
        bar.update(1)  # hulls started
        rows = np.arange(m) if candidates is None else np.flatnonzero(candidates[:, c])
        if rows.size == 0:
            continue
        X = np.asarray(sets[c], np.float64)
        if X.shape[0] > shared_max:
            out = point_hull_ws_batch(P[rows], X, tol=tol, rtol=rtol)
            D[rows, c] = out.distance
            bad = rows[~out.done]
            if bad.size:
                rest.append(np.stack([bad, np.full(bad.size, c)], axis=1))
            continue
        chunk = max(1, block // max(X.shape[0], 1))
        for s in range(0, rows.size, chunk):
            r = rows[s : s + chunk]
            out = point_hull_batch(P[r], X, tol=tol, rtol=rtol, max_iter=max_iter)
            D[r, c] = out.distance
            bad = r[~out.done]
            if bad.size:
                rest.append(np.stack([bad, np.full(bad.size, c)], axis=1))
    bar.close()
    undone = np.concatenate(rest) if rest else np.zeros((0, 2), np.int64)
    return D, undone.astype(np.int64)
