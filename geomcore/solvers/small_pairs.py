"""Many pairs of small hulls at once: every point of both sides in one batched QP.

For a pair (A, B) with few points the whole problem fits in memory as the
signed Gram matrix of Z = [A; -B] (rows centred at the pair's centre and
divided by its radius R, the pair engine's convention):

    min_z 1/2 z^T G z,  G = Z Z^T,  z = (a, b), a and b each on a simplex,

whose value is 1/2 ||A^T a - B^T b||^2 (in units of R). Pairs are grouped by
their padded sizes (powers of 2 per side) and solved together: FISTA with
adaptive restart, and at every check a Newton step on each pair's support
(the exact minimiser over the affine hulls of the points with weight, kept if
it stays feasible and lowers f). No working sets are needed, so there is no
per-pair Python in the iterations: this is what makes the label-distance
matrices of the streamed geometry (hundreds of label pairs of a few to a few
dozen points per layer) cheap. Each iteration costs one batched matvec (G y
is carried along with y).

Most pairs finish in under 100 iterations; the few that do not (thin gaps,
slivers of overlap, where FISTA's O(1/k^2) crawls) are finished one by one
by a primal active-set method started from FISTA's iterate, which is exact
after a few support changes. The exact LP only sees what that cannot certify.

Every answer is certified on the caller's points in float64 exactly as in the
pair engine (:mod:`certificates`): U = ||u - v||, L the slab of w = u - v.
Pairs not certified at all are returned as undone for the working-set engine
(which escalates to the exact LP).
"""

from __future__ import annotations

import numpy as np

from geomcore.results import Status
from geomcore.solvers.certificates import certificate, decision, result_row
from geomcore.solvers.exact_lp import lp_decide
from geomcore.solvers.buckets import bucket
from geomcore.solvers.frames import pair_frame, set_stats, shared_point, valid_support
from geomcore.solvers.projections import project_simplex_rows
from geomcore.solvers.spectral import step_lipschitz

__all__ = ["SMALL_MAX", "solve_small_pairs"]

# Pairs with at most this many points in all go through this solver.
SMALL_MAX = 256
# Active-set steps from a warm start before FISTA takes over (PUD POS test
# words, 7 layers, checkpoints 40 steps apart: most pairs need 5-30).
_WARM_STEPS = 30
_NEG = -1e30  # fill for padded entries before a simplex projection (data are O(1))


def _project_blocks(Y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Project both halves of every row of Y onto their simplices (padded entries stay 0).

    Both sides of a pair are padded to the same size, so the halves are the
    rows of one (2m, K/2) array and take one projection call.
    """
    m, K = Y.shape
    # Padded entries are filled far below any real one, so they fall outside
    # the support and project to 0.
    out = project_simplex_rows(np.where(mask, Y, _NEG).reshape(2 * m, K // 2)).reshape(m, K)
    return np.where(mask, out, 0.0)


def _matvec(G: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise G_r x_r for a stack (m, K, K) x (m, K)."""
    # einsum's own loop beats batched BLAS gemv for large K, not for small.
    if G.shape[1] >= 128:
        return np.einsum("akj,aj->ak", G, x)
    return np.matmul(G, x[:, :, None])[:, :, 0]


def _polish(G, x, gx, f, ka):
    """Newton step on each row's support with the two constraints sum a = sum b = 1.

    The KKT system is built on the support only (members first, padded to the
    largest support in the batch): supports hold a few points where K may be
    hundreds, and the solve is cubic in its size. Returns x, G x and f with
    the step taken where it stays feasible and lowers f, and where it was.
    """
    m, K = x.shape
    S = x > 0
    ns = S.sum(axis=1)
    s = int(ns.max()) if m else 0
    if s == 0:
        return x, gx, f, np.zeros(m, bool)
    # Support indices first (stable: in index order), padded with non-support.
    idx = np.argsort(~S, axis=1, kind="stable")[:, :s]
    valid = np.take_along_axis(S, idx, axis=1)
    Gs = np.take_along_axis(np.take_along_axis(G, idx[:, :, None], axis=1), idx[:, None, :], axis=2)
    M = np.zeros((m, s + 2, s + 2))
    M[:, :s, :s] = np.where(valid[:, :, None] & valid[:, None, :], Gs, 0.0)
    diag = np.arange(s)
    ridge = 1e-12 * np.maximum(np.einsum("akk->a", G), 1e-300)
    M[:, diag, diag] += np.where(valid, ridge[:, None], 1.0)
    on_a = idx < ka
    for r, side in ((s, on_a), (s + 1, ~on_a)):
        c = (valid & side).astype(float)
        M[:, r, :s] = c
        M[:, :s, r] = c
    has = ns > 0
    M[:, s, s] = np.where(has, 0.0, 1.0)
    M[:, s + 1, s + 1] = np.where(has, 0.0, 1.0)
    rhs = np.zeros((m, s + 2))
    rhs[:, s] = has
    rhs[:, s + 1] = has
    sol = np.linalg.solve(M, rhs[:, :, None])[:, :s, 0]
    cand = np.zeros_like(x)
    np.put_along_axis(cand, idx, np.where(valid, sol, 0.0), axis=1)
    Gc = _matvec(G, cand)
    fc = 0.5 * np.einsum("ak,ak->a", cand, Gc)
    ok = has & np.all(cand >= 0, axis=1) & (fc < f)
    return np.where(ok[:, None], cand, x), np.where(ok[:, None], Gc, gx), np.where(ok, fc, f), ok


def _kkt_solve(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """A solution of the KKT system M sol = rhs: LU when it is well posed
    (the residual confirms it), least squares when the support is affinely
    dependent (M singular). LU costs a tenth of the SVD behind lstsq."""
    try:
        sol = np.linalg.solve(M, rhs)
        if np.all(np.isfinite(sol)) and np.linalg.norm(M @ sol - rhs) <= 1e-10 * (
            1.0 + np.abs(M).max() * np.abs(sol).max()
        ):
            return sol
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(M, rhs, rcond=None)[0]


def _active_set(
    G: np.ndarray, x: np.ndarray, on_a: np.ndarray, *, max_steps: int
) -> tuple[np.ndarray, int]:
    """Primal active-set method for one pair: min 1/2 z^T G z, z >= 0, sum_A z = sum_B z = 1.

    Started from a feasible z (FISTA's iterate), it solves the equality-
    constrained problem on the free set (the KKT system, least squares when
    the support is affinely dependent), steps back to the boundary when that
    minimiser leaves z >= 0 (dropping the blocking points), and otherwise adds
    the point with the most negative reduced gradient g_i - nu_side (g = G z,
    nu the side's multiplier). It ends in finitely many steps at the exact
    minimiser, where first-order methods crawl (thin gaps, slivers of
    overlap). Only unpadded entries are passed in. Returns the last feasible
    z and the number of steps; the caller certifies z on the points, so
    stopping early is safe.
    """
    z = x.copy()
    free = z > 0
    scale = max(float(np.trace(G)), 1e-300)
    steps = 0
    while steps < max_steps:
        steps += 1
        F = np.flatnonzero(free)
        s = F.size
        M = np.zeros((s + 2, s + 2))
        M[:s, :s] = G[np.ix_(F, F)]
        M[s, :s] = M[:s, s] = on_a[F]
        M[s + 1, :s] = M[:s, s + 1] = ~on_a[F]
        rhs = np.zeros(s + 2)
        rhs[s:] = 1.0
        sol = _kkt_solve(M, rhs)
        zf = sol[:s]
        if np.all(zf >= 0):
            z = np.zeros_like(z)
            z[F] = zf
            g = G @ z
            # nu_side = <z, g> on that side (sum z = 1 there), the side's multiplier.
            nu = np.where(on_a, z[on_a] @ g[on_a], z[~on_a] @ g[~on_a])
            r = np.where(free, np.inf, g - nu)
            i = int(np.argmin(r))
            if not r[i] < -1e-15 * scale:
                break
            free[i] = True
        else:
            cur = z[F]
            neg = zf < 0
            alpha = np.min(cur[neg] / (cur[neg] - zf[neg]))
            z[F] = np.maximum(cur + alpha * (zf - cur), 0.0)
            # The blocking points (and any at zero) leave the free set; each
            # side keeps at least one point because its weights sum to 1.
            z[F[z[F] <= 1e-15 * np.abs(cur).max()]] = 0.0
            free = z > 0
    return z, steps


def _centroid_weights(mask: np.ndarray, ka: int) -> np.ndarray:
    """(m, K) uniform weights on each side's real points: the two centroids."""
    side = np.arange(mask.shape[1]) < ka
    return mask / np.where(
        side, mask[:, :ka].sum(1, keepdims=True), mask[:, ka:].sum(1, keepdims=True)
    )


def _solve_group(
    Z, mask, ka, *, tol_s, rtol, decide, max_iter, finish=True, check_every=25, x0=None
):
    """Batched FISTA on (m, K, d) signed, scaled pairs. Returns z (m, K) and iterations (m,).

    Rows that finish leave the batch at each check, so a hard pair does not
    keep the easy ones iterating. ``x0`` (m, K): feasible starting weights
    (default: the two centroids); with it, a check (Newton polish on the
    start's support, then the stopping test) runs before the first
    iteration, so a start on the right support finishes at no iteration cost.
    """
    m, K, _ = Z.shape
    G_all = Z @ np.swapaxes(Z, 1, 2)
    ia = np.zeros(K, bool)
    ia[:ka] = True
    x_all = _centroid_weights(mask, ka) if x0 is None else np.where(mask, x0, 0.0)
    iters = np.zeros(m, np.int64)
    act = np.arange(m)
    G, msk, x = G_all, mask, x_all.copy()
    # G x is kept alongside x (and G y alongside y: a linear combination of
    # G x and the previous G x), so each iteration costs one batched matvec.
    gx = _matvec(G, x)
    f = 0.5 * np.einsum("ak,ak->a", x, gx)

    def check(x, gx, f, last):
        """Polish, then the stopping test; returns x, gx, f, polished, finished, extra steps."""
        x, gx, f, pol = _polish(G, x, gx, f, ka)
        # With w = Z^T x and g = G x, g_i = <w, z_i>: on A rows <w, a_i>,
        # on B rows -<w, b_j>; so min_A <w,a> - max_B <w,b> = ga + gb = L U
        # and U^2 = 2 f: the certificate's gap is U (U - L) = u2 - (ga + gb).
        u2 = np.maximum(2.0 * f, 0.0)
        ga = np.where(msk & ia[None, :], gx, np.inf).min(axis=1)
        gb = np.where(msk & ~ia[None, :], gx, np.inf).min(axis=1)
        sep = (ga + gb) > 0
        fin = (u2 <= tol_s**2) | ((u2 - (ga + gb) <= rtol * u2 / 2.0) & sep) | (decide & sep)
        extra = np.zeros(x.shape[0], np.int64)
        if last:
            # Out of budget: the active-set method finishes what is left
            # (exactly, in a few support changes), from FISTA's iterate.
            if finish:
                extra = active_set_rows(x, ~fin, None)
            fin[:] = True
        return x, gx, f, pol, fin, extra

    def active_set_rows(x, rows, max_steps):
        """The active-set method on the rows ``rows`` of x, in place; its steps per row."""
        steps = np.zeros(x.shape[0], np.int64)
        for r in np.flatnonzero(rows):
            mk = msk[r]
            x[r, mk], steps[r] = _active_set(
                G[r][np.ix_(mk, mk)], x[r, mk], ia[mk], max_steps=max_steps or 4 * int(mk.sum())
            )
        return steps

    done_steps = np.zeros(m, np.int64)  # steps before FISTA (warm starts)
    if x0 is not None:
        x, gx, f, _, fin, done_steps = check(x, gx, f, max_iter == 0)
        if finish and not fin.all():
            # A start near the optimum differs from it by a few support
            # changes: the active-set method makes them exactly, where FISTA
            # would begin again from a step size and a momentum of zero.
            done_steps = active_set_rows(x, ~fin, _WARM_STEPS)
            gx = _matvec(G, x)
            f = 0.5 * np.einsum("ak,ak->a", x, gx)
            x, gx, f, _, fin, _ = check(x, gx, f, False)
        x_all[act] = x
        iters[act] = done_steps
        keep = ~fin
        act, G, msk, x, gx, f, done_steps = (v[keep] for v in (act, G, msk, x, gx, f, done_steps))
    if act.size:
        # Only the rows still running need their step size.
        step = 1.0 / step_lipschitz(G)
    y, gy = x.copy(), gx.copy()
    t = np.ones(act.size)
    f_prev = np.full(act.size, np.inf)
    it = 0
    while it < max_iter and act.size:
        x_new = _project_blocks(y - step[:, None] * gy, msk)
        gx_new = _matvec(G, x_new)
        f = 0.5 * np.einsum("ak,ak->a", x_new, gx_new)
        restart = f > f_prev
        t_new = np.where(restart, 1.0, 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t)))
        beta = np.where(restart, 0.0, (t - 1.0) / t_new)[:, None]
        y = x_new + beta * (x_new - x)
        gy = gx_new + beta * (gx_new - gx)
        x, gx, t, f_prev = x_new, gx_new, t_new, f
        it += 1
        if it % check_every == 0 or it == max_iter:
            x, gx, f, pol, fin, extra = check(x, gx, f, it >= max_iter)
            y[pol], gy[pol], t[pol] = x[pol], gx[pol], 1.0
            f_prev = f
            x_all[act] = x
            iters[act] = done_steps + it + extra
            if fin.any():
                # Copy the batch down only when rows leave it (G is m x K x K).
                keep = ~fin
                act, G, step, msk, x, gx, y, gy, t, f_prev, done_steps = (
                    v[keep] for v in (act, G, step, msk, x, gx, y, gy, t, f_prev, done_steps)
                )
    return x_all, iters


def _warm_row(start, na: int, nb: int, ka: int) -> np.ndarray | None:
    """A (2 ka,) weight row from an earlier support (ia, a, ib, b), or None if
    it does not fit sets of na and nb points."""
    start = valid_support(start, na, nb)
    if start is None:
        return None
    ia, a, ib, b = start
    row = np.zeros(2 * ka)
    row[ia] = a
    row[ka + ib] = b
    return row


def solve_small_pairs(
    sets,
    pairs: np.ndarray,
    idx: np.ndarray,
    *,
    tol: float,
    rtol: float,
    decide: bool,
    max_iter: int = 150,
    finish: bool = True,
    escalate: bool = True,
    warm=None,
) -> tuple[dict, int]:
    """Pairs ``pairs[idx]`` with at most SMALL_MAX points in all, solved in batches.

    Returns ({pair index: (distance, lower, upper, separable, w, b,
    iterations, status, scale, support)}, n_escalated): the pair engine's
    fields in the caller's units for every pair decided here, and the support
    ``(ia, a, ib, b)`` of its hull points u, v. ``warm`` (None, or one entry
    per row of ``pairs``: None or an earlier support of that pair) starts a
    pair from those weights instead of the centroids. Pairs not certified within
    ``max_iter`` FISTA iterations are finished by the active-set method
    (``finish``; ``iterations`` then counts its steps too). What that cannot
    certify is decided by the exact LP (``Status.EXACT_LP``, counted); in "distance"
    mode the separable ones among them get 30x the iterations, and any still
    not certified are left out for the working-set engine. ``escalate=False``
    leaves every uncertified pair out.
    """
    stats: dict = {}

    def frame(i: int, j: int) -> tuple[np.ndarray, float]:
        for t in (i, j):
            if t not in stats:
                stats[t] = set_stats(sets[t])
        return pair_frame(stats[i], stats[j])

    out: dict = {}
    n_escalated = 0
    retry: list[int] = []
    groups: dict[int, list[int]] = {}
    rows: dict[int, np.ndarray] = {}
    for k in idx:
        i, j = int(pairs[k, 0]), int(pairs[k, 1])
        shared = shared_point(rows, sets, i, j)
        if shared is not None:
            # An identical point on both sides: u = v, an exact overlap.
            one = np.ones(1)
            out[int(k)] = (
                0.0,
                0.0,
                0.0,
                False,
                np.zeros(sets[i].shape[1]),
                0.0,
                0,
                int(Status.OVERLAP),
                2.0 * frame(i, j)[1],
                (np.array([shared[0]]), one, np.array([shared[1]]), one),
            )
            continue
        # One padded size for both sides: few groups, at most 2x padding.
        kk = bucket(max(sets[i].shape[0], sets[j].shape[0]))
        groups.setdefault(kk, []).append(int(k))
    d = sets[int(pairs[idx[0], 0])].shape[1] if len(idx) else 0
    for ka, ks in sorted(groups.items()):
        K = 2 * ka
        chunk = max(1, (1 << 22) // (K * max(d, K)))
        for c0 in range(0, len(ks), chunk):
            part = ks[c0 : c0 + chunk]
            m = len(part)
            Z = np.zeros((m, K, d))
            mask = np.zeros((m, K), bool)
            centers, radii = [], []
            starts: dict[int, np.ndarray] = {}
            for r, k in enumerate(part):
                i, j = int(pairs[k, 0]), int(pairs[k, 1])
                c, R = frame(i, j)
                A, B = sets[i], sets[j]
                Z[r, : A.shape[0]] = (A - c) / R
                Z[r, ka : ka + B.shape[0]] = -(B - c) / R
                mask[r, : A.shape[0]] = True
                mask[r, ka : ka + B.shape[0]] = True
                centers.append(c)
                radii.append(R)
                start = _warm_row(warm[k], A.shape[0], B.shape[0], ka) if warm is not None else None
                if start is not None:
                    starts[r] = start
            x0 = None
            if starts:
                # Rows without a start begin at the two centroids.
                x0 = _centroid_weights(mask, ka)
                for r, start in starts.items():
                    x0[r] = start
            # tol is relative to scale = 2R; in units of R that is 2 tol.
            x, it = _solve_group(
                Z,
                mask,
                ka,
                tol_s=2.0 * tol,
                rtol=rtol,
                decide=decide,
                max_iter=max_iter,
                finish=finish,
                x0=x0,
            )
            for r, k in enumerate(part):
                i, j = int(pairs[k, 0]), int(pairs[k, 1])
                A, B = sets[i], sets[j]
                a = np.maximum(x[r, : A.shape[0]], 0.0)
                b = np.maximum(x[r, ka : ka + B.shape[0]], 0.0)
                a, b = a / a.sum(), b / b.sum()
                ka_, kb_ = np.flatnonzero(a), np.flatnonzero(b)
                support = (ka_, a[ka_], kb_, b[kb_])
                u, v = a @ A, b @ B
                w = u - v
                cert = certificate(u, v, A @ w, B @ w)
                scale = 2.0 * radii[r]
                status = decision(cert, scale, tol=tol, rtol=rtol, decide=decide)
                if status is not None:
                    out[k] = result_row(cert, status, int(it[r]), scale, support)
                    continue
                if not escalate:
                    continue
                # Not certified within the budget: the exact LP decides (small LPs).
                # Nearly touching or thinly overlapping pairs are where
                # first-order iterations crawl and the LP is decisive.
                c, R = centers[r], radii[r]
                lp = lp_decide(
                    (A - c) / R,
                    (B - c) / R,
                    np.arange(A.shape[0]),
                    np.arange(B.shape[0]),
                    overlap_tol=2.0 * tol,
                )
                n_escalated += 1
                if lp.separable and not decide:
                    retry.append(k)  # separable but thin: more iterations below
                    continue
                w, off, lower = cert.w, cert.offset, 0.0
                if lp.separable:
                    sa, sb = A @ lp.w, B @ lp.w
                    nrm = float(np.linalg.norm(lp.w))
                    lower = max(float((sa.min() - sb.max()) / nrm), max(cert.lower, 0.0))
                    w, off = lp.w / nrm, float(0.5 * (sa.min() + sb.max()) / nrm)
                upper = cert.upper if lp.separable else min(cert.upper, lp.upper * R)
                out[k] = (
                    cert.upper if lp.separable else 0.0,
                    lower,
                    upper,
                    bool(lp.separable),
                    w,
                    off,
                    int(it[r]),
                    int(Status.EXACT_LP),
                    scale,
                    support,
                )
                continue
    if retry:
        # Thin separable pairs: their distance converges, only slowly. A
        # longer run on these few rows is cheaper than the working-set
        # engine; what still fails goes there.
        more, _ = solve_small_pairs(
            sets,
            pairs,
            np.array(retry),
            tol=tol,
            rtol=rtol,
            decide=decide,
            max_iter=30 * max_iter,
            finish=finish,
            escalate=False,
            warm=warm,
        )
        for k, row in more.items():
            out[k] = row[:7] + (int(Status.EXACT_LP),) + row[8:]
    return out, n_escalated
