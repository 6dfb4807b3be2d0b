"""The host path for pairs of large sets: exact restricted solves and shared pricing.

For each pair (A, B) a working set W holds a few points of each side. A round

1. solves the nearest-point problem on every active pair's W *exactly*
   (:mod:`geomcore.solvers.active_set`, resumed from the pair's previous
   corral and its factor, one pair per thread);
2. prices every point of every set against the new directions at once: per
   set s, one float64 product ``X_s @ [w_1 ... w_m]`` over the m active pairs
   that involve s (:mod:`geomcore.solvers.pricing`). The same product gives
   each pair's certificates on *all* its points (U = ||w||, L = the slab
   width) and its violators;
3. ends the pairs whose certificates decide them (the rules of every path:
   overlap when U <= tol * scale; separable when L > 0 in decide mode;
   certified when (U - L) <= rtol * U in distance mode), and refills the
   others' W: the points outside the corral leave, the most violating points
   of each side come in.

The optimum is supported by few points (PUD POS: 134 at the median), so W
stays near the support and a pair needs a few rounds, not thousands of
iterations. Each pair keeps its buffers between rounds: W is a set of slots
(an empty slot has side -1), so the corral's slots, factor and Gram rows stay
where they are and only the Gram rows of the newcomers are computed. Pairs
that exceed ``max_rounds``, or whose restricted solve stalls on round-off,
are handed back unfinished for the caller's next path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from geomcore.results import Status
from geomcore.solvers import active_set
from geomcore.solvers.blas import one_blas_thread
from geomcore.solvers.certificates import certificate, decision, most_violating, result_row
from geomcore.solvers.frames import pair_frame, set_stats, shared_point, valid_support
from geomcore.solvers.params import WorkingSetParams
from geomcore.solvers.pricing import pair_scores

__all__ = ["solve_working_sets"]


class _Pair:
    """One pair's state on the working-set path, in slots of capacity ``cap``.

    slot k holds point ``idx[k]`` of side ``side[k]`` (0 = A, 1 = B, -1 =
    empty); ``Z[k]`` is its row in the pair's frame ((x - centre) / R), ``G``
    the Gram matrix of the slots, ``x`` the weights, and ``L[:s, :s]`` with
    ``S[:s]`` the corral's factor and slots.
    """

    __slots__ = (
        "i",
        "j",
        "center",
        "radius",
        "cap",
        "idx",
        "side",
        "Z",
        "G",
        "x",
        "L",
        "S",
        "s",
        "member",
        "iterations",
        "rounds",
        "status",
        "cert",
        "stalled",
        "row",
        "u",
        "v",
    )

    def __init__(self, i, j, center, radius, na, nb, d, cap, row):
        self.i, self.j, self.center, self.radius, self.row = i, j, center, radius, row
        self.cap = cap
        self.idx = np.full(cap, -1, np.int64)
        self.side = np.full(cap, -1, np.int8)
        self.Z = np.zeros((cap, d))
        self.G = np.zeros((cap, cap))
        self.x = np.zeros(cap)
        self.L = np.zeros((cap, cap))
        self.S = np.zeros(cap, np.int64)
        self.s = 0
        self.member = (np.zeros(na, bool), np.zeros(nb, bool))
        self.iterations = 0
        self.rounds = 0
        self.status = -1
        self.cert = None
        self.stalled = False

    def grow_capacity(self, need: int) -> None:
        cap = self.cap
        while cap < need:
            cap *= 2
        if cap == self.cap:
            return
        old = self.cap
        for name, fill in (("idx", -1), ("side", -1), ("x", 0.0), ("S", 0)):
            a = getattr(self, name)
            b = np.full(cap, fill, a.dtype)
            b[:old] = a
            setattr(self, name, b)
        Z = np.zeros((cap, self.Z.shape[1]))
        Z[:old] = self.Z
        self.Z = Z
        for name in ("G", "L"):
            a = getattr(self, name)
            b = np.zeros((cap, cap))
            b[:old, :old] = a
            setattr(self, name, b)
        self.cap = cap

    def place(self, sets, side: int, points: np.ndarray) -> np.ndarray:
        """Put ``points`` (indices into the side's set) into empty slots; returns the slots."""
        free = np.flatnonzero(self.side < 0)
        if free.size < points.size:
            self.grow_capacity(self.cap + points.size - free.size)
            free = np.flatnonzero(self.side < 0)
        slots = free[: points.size]
        X = sets[self.i if side == 0 else self.j]
        self.Z[slots] = (X[points] - self.center) / self.radius
        self.idx[slots] = points
        self.side[slots] = side
        self.x[slots] = 0.0
        self.member[side][points] = True
        return slots

    def refresh_gram(self, slots: np.ndarray) -> None:
        """Gram rows and columns of the (new) ``slots``."""
        if slots.size:
            act = np.flatnonzero(self.side >= 0)
            rows = self.Z[slots] @ self.Z[act].T
            self.G[np.ix_(slots, act)] = rows
            self.G[np.ix_(act, slots)] = rows.T

    def drop_outside_corral(self) -> None:
        keep = np.zeros(self.cap, bool)
        keep[self.S[: self.s]] = True
        out = np.flatnonzero(~keep & (self.side >= 0))
        for side in (0, 1):
            o = out[self.side[out] == side]
            self.member[side][self.idx[o]] = False
        self.side[out] = -1
        self.idx[out] = -1
        self.x[out] = 0.0

    def weights(self, side: int):
        """(indices into the side's set, convex weights) of the corral's points on that side."""
        sl = self.S[: self.s]
        sl = sl[self.side[sl] == side]
        w = np.clip(self.x[sl], 0.0, None)
        t = w.sum()
        if not (t > 0 and np.isfinite(t)):
            w = np.full(sl.size, 1.0 / max(sl.size, 1))
        else:
            w = w / t
        keep = w > 0
        return self.idx[sl][keep], w[keep]

    def hull_points(self, sets):
        ia, a = self.weights(0)
        ib, b = self.weights(1)
        return a @ sets[self.i][ia], b @ sets[self.j][ib]


def _decide(p: _Pair, *, tol: float, rtol: float, decide: bool) -> bool:
    status = decision(p.cert, 2.0 * p.radius, tol=tol, rtol=rtol, decide=decide)
    if status is not None:
        p.status = status
    return status is not None


def _refill(sets, p: _Pair, k: int, floor: float) -> bool:
    """Replace W by the corral plus up to k violators per side; False if none.

    A point violates when its score is past its side's level by more than
    ``floor * U^2`` (and round-off): in distance mode floor = rtol / 4, since
    violations below it on both sides leave the gap (U - L) / U under rtol,
    so such points can never be what keeps a pair uncertified."""
    c = p.cert
    slack = max(1e-12 * (abs(c.level_a) + abs(c.level_b) + c.upper * p.radius),
                floor * c.upper * c.upper)
    new_a = most_violating(c.scores_a, p.member[0], k, below=c.level_a - slack)
    new_b = most_violating(c.scores_b, p.member[1], k, above=c.level_b + slack)
    if new_a.size == 0 and new_b.size == 0:
        return False
    p.drop_outside_corral()
    slots = np.concatenate([p.place(sets, 0, new_a), p.place(sets, 1, new_b)])
    p.refresh_gram(slots)
    return True


def _solve(p: _Pair, params: WorkingSetParams, overlap: float) -> None:
    code, steps, _, _, s = active_set.solve_inplace(
        p.G,
        p.side,
        p.x,
        p.L,
        p.S,
        p.s,
        rtol=params.inner_rtol,
        overlap=overlap,
        max_steps=params.max_steps,
    )
    p.s = s
    p.iterations += steps
    p.rounds += 1
    p.stalled = code in (active_set.STALLED, active_set.MAX_STEPS)


def _run(sets, work: list[_Pair], *, tol, rtol, decide, params, any_only, on_done) -> list[_Pair]:
    overlap = 2.0 * tol  # tol * scale with scale = 2R, in coordinates divided by R
    pool = active_set.thread_pool(params.threads) if params.threads > 1 else None
    active = list(work)
    left: list[_Pair] = []
    while active:
        if pool is not None and len(active) > 1:
            list(pool.map(lambda p: _solve(p, params, overlap), active))
        else:
            for p in active:
                _solve(p, params, overlap)
        if pool is not None and len(active) > 1:
            levels = list(pool.map(lambda p: p.hull_points(sets), active))
        else:
            levels = [p.hull_points(sets) for p in active]
        scores = pair_scores(
            sets, [(p.i, p.j) for p in active], [u - v for u, v in levels], pool=pool,
            block=params.price_block,
        )
        still = []
        n_done = 0
        stop = False
        grow = []
        for p, (u, v), (sa, sb) in zip(active, levels, scores):
            p.cert = certificate(u, v, sa, sb)
            if _decide(p, tol=tol, rtol=rtol, decide=decide):
                n_done += 1
                stop |= any_only and p.status == Status.OVERLAP
            elif p.rounds >= params.max_rounds or (p.stalled and p.rounds > 1):
                left.append(p)
            else:
                grow.append(p)

        # Refills are independent per pair (gathers and one small product each):
        # on the pool's threads too.
        def refill(p):
            return _refill(sets, p, params.grow, 0.0 if decide else rtol / 4)

        grown = (
            list(pool.map(refill, grow))
            if pool is not None and len(grow) > 1
            else [refill(p) for p in grow]
        )
        for p, ok in zip(grow, grown):
            # no violator left and the gap still open: round-off; hand it on
            (still if ok else left).append(p)
        if on_done is not None and n_done:
            on_done(n_done)
        active = still
        if stop:
            break
    return left + active  # active is non-empty only when any_only stopped the rounds


def _support(p: _Pair):
    ia, a = p.weights(0)
    ib, b = p.weights(1)
    return ia, a, ib, b


def _row(p: _Pair):
    """The pair's result fields (as in HullResults) and its support."""
    return result_row(p.cert, p.status, p.iterations, 2.0 * p.radius, _support(p))


def _start_pair(sets, p: _Pair, params, scores, shared, start) -> None:
    """The first W: the shared point (an exact overlap), the earlier support
    ``start`` = (ia, a, ib, b) plus the points most extreme along its w, or the
    ``params.start`` points per side most extreme along the centroid direction
    (``scores`` = (A @ w, B @ w)) with all weight on the most extreme one."""
    if shared is not None:
        slots = np.concatenate(
            [p.place(sets, 0, np.array([shared[0]])), p.place(sets, 1, np.array([shared[1]]))]
        )
        p.x[slots] = 1.0
    elif start is not None:
        # The earlier support's points, with all weight on the most extreme
        # point of each side along the earlier w: the corral is rebuilt by
        # appends only (the earlier weights are not an optimum of the moved
        # points, and starting from them costs a minor cycle per point that
        # leaves).
        ia0, a0, ib0, b0 = start
        sa, sb = scores  # on the earlier weights' direction
        ia = np.asarray(ia0, np.int64)[np.argsort(sa[ia0], kind="stable")]
        ib = np.asarray(ib0, np.int64)[np.argsort(-sb[ib0], kind="stable")]
        slots_a = p.place(sets, 0, ia)
        slots_b = p.place(sets, 1, ib)
        p.x[slots_a[0]] = 1.0
        p.x[slots_b[0]] = 1.0
        slots = np.concatenate([slots_a, slots_b])
    else:
        sa, sb = scores
        ea = _extreme(sa, params.start, lowest=True)
        eb = _extreme(sb, params.start, lowest=False)
        slots_a = p.place(sets, 0, ea)
        slots_b = p.place(sets, 1, eb)
        p.x[slots_a[0]] = 1.0  # ea, eb come most extreme first
        p.x[slots_b[0]] = 1.0
        slots = np.concatenate([slots_a, slots_b])
    p.refresh_gram(slots)


def _extreme(scores: np.ndarray, k: int, *, lowest: bool) -> np.ndarray:
    """Indices of the k lowest (highest) scores, most extreme first."""
    s = scores if lowest else -scores
    if s.size > k:
        idx = np.argpartition(s, k - 1)[:k]
    else:
        idx = np.arange(s.size)
    return idx[np.argsort(s[idx], kind="stable")]


@one_blas_thread
def solve_working_sets(
    sets: Sequence[np.ndarray],
    pairs: np.ndarray,
    *,
    mode: str,
    tol: float,
    rtol: float,
    any_only: bool = False,
    warm: Sequence | None = None,
    params: WorkingSetParams = WorkingSetParams(),
    on_done=None,
):
    """The working-set path on ``pairs`` (rows of indices into ``sets``).

    Returns ``(done, left, stopped)``: ``done`` maps a pair's row to its result
    fields and support (:func:`_row`); ``left`` lists ``(row, support)`` for
    the pairs handed on (their current support, to warm-start the next path);
    ``stopped`` is True when ``any_only`` found an overlap (pairs neither done
    nor left were not examined).

    BLAS runs on one thread here: the restricted solves use both cores, and
    OpenBLAS's idle threads would spin against them.
    """
    decide = mode == "decide"
    stats = {int(s): set_stats(sets[int(s)]) for s in np.unique(pairs)}
    hashes: dict = {}
    ij = [(int(i), int(j)) for i, j in pairs]
    shared = [shared_point(hashes, sets, i, j) for i, j in ij]
    starts = [None] * len(ij)
    if warm is not None:
        starts = [
            None
            if shared[k] is not None
            else valid_support(warm[k], sets[i].shape[0], sets[j].shape[0])
            for k, (i, j) in enumerate(ij)
        ]
    dirs = []
    for i, j in ij:
        w = stats[i].mean - stats[j].mean
        if not np.any(w):
            w = np.zeros_like(w)
            w[0] = 1.0
        dirs.append(w)
    # Round 0, one product per set: cold pairs are scored on the centroid
    # direction (their first working set), warm pairs on their earlier
    # weights' direction, which may already certify them.
    levels = {}
    for k, st in enumerate(starts):
        if st is not None:
            (i, j), (ia0, a0, ib0, b0) = ij[k], st
            levels[k] = (a0 @ sets[i][ia0], b0 @ sets[j][ib0])
            dirs[k] = levels[k][0] - levels[k][1]
    scored = [k for k in range(len(ij)) if shared[k] is None]
    scores = dict(
        zip(scored, pair_scores(sets, [ij[k] for k in scored], [dirs[k] for k in scored],
                                block=params.price_block))
    )
    d = sets[0].shape[1]
    todo, done = [], {}
    for k, (i, j) in enumerate(ij):
        center, radius = pair_frame(stats[i], stats[j])
        if k in levels:
            cert = certificate(*levels[k], *scores[k])
            status = decision(cert, 2.0 * radius, tol=tol, rtol=rtol, decide=decide)
            if status is not None:
                done[k] = result_row(cert, status, 0, 2.0 * radius, starts[k])
                continue
        if decide and k in scores:
            # The cheapest proof: the centroid direction's slab, from the
            # scores that pick the first working set anyway.
            sa, sb = scores[k]
            cert = certificate(stats[i].mean, stats[j].mean, sa, sb)
            if cert.lower > 0:
                na, nb = sa.size, sb.size
                uniform = (
                    np.arange(na),
                    np.full(na, 1.0 / na),
                    np.arange(nb),
                    np.full(nb, 1.0 / nb),
                )
                done[k] = result_row(cert, Status.SEPARABLE, 0, 2.0 * radius, uniform)
                continue
        todo.append((k, i, j, center, radius))
    if on_done is not None and done:
        on_done(len(done))
    # Pairs go through the rounds in waves: each active pair holds its Gram
    # matrix, factor and rows (a few MB at d = 768), so a wave bounds memory
    # whatever the number of pairs.
    handed, stopped = [], False
    wave = params.max_active
    if wave is None:  # a working set of 256 slots: Gram and factor, and its rows
        wave = max(16, params.wave_bytes // (8 * (2 * 256 * 256 + 256 * d)))
    for w0 in range(0, len(todo), wave):
        work = []
        for k, i, j, center, radius in todo[w0 : w0 + wave]:
            st = starts[k]
            n0 = 2 * params.start + (0 if st is None else st[0].size + st[2].size)
            cap = 1 << max(n0 - 1, 1).bit_length()
            p = _Pair(i, j, center, radius, sets[i].shape[0], sets[j].shape[0], d, cap, k)
            _start_pair(sets, p, params, scores.get(k), shared[k], st)
            work.append(p)
        left = _run(
            sets,
            work,
            tol=tol,
            rtol=rtol,
            decide=decide,
            params=params,
            any_only=any_only,
            on_done=on_done,
        )
        done.update({p.row: _row(p) for p in work if p.status >= 0})
        handed += [(p.row, _support(p)) for p in left if p.status < 0]
        stopped = any_only and any(p.status == Status.OVERLAP for p in work)
        if stopped:
            break
    return done, handed, stopped
