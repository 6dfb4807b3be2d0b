"""The pair driver: working sets, batched iterations, float64 verification, LP escalation.

For each pair (A, B) the solver keeps a working set: a few points of each side.
A round solves the nearest-point problem on the working sets of all active
pairs at once (:func:`geomcore.solvers.nearest_point.solve_padded`, padded
into bucketed shapes so compiles stay few), then verifies the resulting w in
float64 on *all* points of both sets (:func:`certificates.certify`). The
certificates are valid whatever the working set: U is the distance between
two actual hull points and L the width of the slab that w defines on the full
sets. A pair ends when

- ``decide`` mode: L > 0 (separable) or U <= tol * scale (overlap);
- ``distance`` mode: U <= tol * scale (overlap) or (U - L) <= rtol * U;

otherwise the points that violate w's slab are added to its working set and
the round repeats, warm-started. The optimum depends only on the support
points, which are few, so working sets stay small next to the sets
(DESIGN.md section 5: "solve on the support plus violators, verify on all
points"). Pairs still undecided after ``max_iter`` iterations or
``max_rounds`` rounds are decided by the exact LP (:mod:`exact_lp`) and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from geomcore.results import PAIR_FIELDS, HullResults, Status
from geomcore.solvers.certificates import (add_violators, certificate, convex_weights, hull_points,
                                           most_violating)
from geomcore.solvers.exact_lp import lp_decide
from geomcore.solvers.nearest_point import solve_padded, solve_padded_gram, use_gram
from geomcore.solvers.svm_ipm import svm_ipm

__all__ = ["solve_pairs", "DEFAULT_TOL", "DEFAULT_RTOL"]

log = logging.getLogger(__name__)

DEFAULT_TOL = 1e-6
DEFAULT_RTOL = 1e-4
_MIN_K = 8


def _batch_floats() -> int:
    """Padded floats per batch. On CPU the iteration is bound by memory
    bandwidth, so batches are kept within the last-level cache (8 MB in
    float32); accelerators want large batches (256 MB)."""
    return (1 << 21) if jax.default_backend() == "cpu" else (1 << 26)


def _bucket(n: int, floor: int = 1) -> int:
    """Smallest power of 2 >= n (and >= floor): working-set sizes."""
    return max(floor, 1 << (max(int(n), 1) - 1).bit_length())


def _bucket4(n: int) -> int:
    """Smallest power of 4 >= n: batch sizes (fewer shapes, fewer compiles)."""
    b = 1
    while b < n:
        b *= 4
    return b


def _floor4(n: int) -> int:
    """Largest power of 4 <= n (at least 1)."""
    b = 1
    while b * 4 <= n:
        b *= 4
    return b


@dataclass
class _SetStats:
    mean: np.ndarray
    radius: float


@dataclass(eq=False)
class _Pair:
    i: int
    j: int
    center: np.ndarray
    radius: float  # R: every point of A u B lies within R of center
    ia: np.ndarray
    ib: np.ndarray
    a: np.ndarray
    b: np.ndarray
    dtype: type = np.float32
    iterations: int = 0
    rounds: int = 0
    status: int = -1
    cert: object = None
    stalls: int = 0
    lp_checked: bool = False
    lp_separable: bool = False
    lp_w: np.ndarray | None = field(default=None)
    lp_upper: float = np.inf
    qp_tried: bool = False
    round_iter: int = 500  # iterations per round (set by _solve_general: cold or warm start)


def _shared_point(rows: dict, sets, i: int, j: int):
    """Indices (in A, in B) of a point present in both sets, or None.

    Each set's rows are hashed once (64 bits of their float64 bytes, cached in
    ``rows``); a common hash is confirmed by comparing the rows exactly, and
    in the (astronomically unlikely) case that no common hash is a real
    match, the rows are compared exactly through one sort of their bytes.
    """
    for s in (i, j):
        if s not in rows:
            rows[s] = _row_hashes(sets[s])
    common, ka, kb = np.intersect1d(rows[i], rows[j], assume_unique=False, return_indices=True)
    if common.size == 0:
        return None
    A, B = sets[i], sets[j]
    for a, b in zip(ka, kb):
        if np.array_equal(A[a], B[b]):
            return int(a), int(b)
    exact = [np.ascontiguousarray(X).view(np.dtype((np.void, 8 * X.shape[1]))).ravel() for X in (A, B)]
    common, ka, kb = np.intersect1d(*exact, return_indices=True)
    return (int(ka[0]), int(kb[0])) if common.size else None


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """(n,) uint64 hash of each row's float64 bytes (equal rows, equal hashes).

    -0.0 and 0.0 differ in bytes and hash differently, as in the exact
    comparison the engine used before (equal bytes).
    """
    V = np.ascontiguousarray(X, dtype=np.float64).view(np.uint64)
    # Odd multipliers per column, summed with wrap-around, then mixed.
    mult = (np.arange(1, V.shape[1] + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (V * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


def _stats(X: np.ndarray) -> _SetStats:
    mu = X.mean(axis=0)
    r = float(np.sqrt(((X - mu) ** 2).sum(axis=1).max()))
    return _SetStats(mu, r)


def _pair_frame(si: _SetStats, sj: _SetStats) -> tuple[np.ndarray, float]:
    """The pair's centre (midpoint of the means) and radius R (every point of
    both sets lies within R of it; 1.0 for two identical points). The scale
    of ``tol`` is 2R."""
    center = 0.5 * (si.mean + sj.mean)
    radius = max(si.radius + float(np.linalg.norm(si.mean - center)),
                 sj.radius + float(np.linalg.norm(sj.mean - center)))
    return center, radius if radius > 0 else 1.0


def _initial_working_set(X: np.ndarray, direction: np.ndarray, k: int, lowest: bool) -> np.ndarray:
    if X.shape[0] <= k:
        return np.arange(X.shape[0])
    s = X @ direction
    idx = np.argpartition(s if lowest else -s, k - 1)[:k]
    return np.sort(idx)


def valid_support(start, na: int, nb: int):
    """An earlier support ``(ia, a, ib, b)`` checked against sets of na and nb
    points (distinct in-range integer indices, positive weights), with the
    weights normalised to sum 1 per side; None if it does not fit (or is None)."""
    if start is None:
        return None
    ia, a, ib, b = (np.asarray(x) for x in start)
    for idx, wt, n in ((ia, a, na), (ib, b, nb)):
        if (idx.ndim != 1 or idx.shape != wt.shape or idx.size == 0 or idx.dtype.kind not in "iu"
                or idx.min() < 0 or idx.max() >= n or np.unique(idx).size != idx.size
                or not np.all(wt > 0)):
            return None
    return ia, a / a.sum(), ib, b / b.sum()


def _warm_working_set(A: np.ndarray, B: np.ndarray, start, k: int):
    """A working set and weights started from an earlier solution, or None.

    ``start`` = (ia, a, ib, b): support indices into A and B and their convex
    weights (for instance the supports of the same pair at an earlier
    checkpoint of a model). Weights mean the same in any coordinates, so the
    new hull points u = a @ A[ia], v = b @ B[ib] start near the optimum when
    the points moved little. The working set adds the points of each side most
    extreme along w = u - v, up to k per side. None (start cold) if the
    support does not fit these sets.
    """
    start = valid_support(start, A.shape[0], B.shape[0])
    if start is None:
        return None
    ia0, a0, ib0, b0 = start
    w = a0 @ A[ia0] - b0 @ B[ib0]
    if not np.any(w):
        return None
    ia = np.union1d(ia0, _initial_working_set(A, w, max(_MIN_K, k - ia0.size), lowest=True))
    ib = np.union1d(ib0, _initial_working_set(B, w, max(_MIN_K, k - ib0.size), lowest=False))
    a = np.zeros(ia.size)
    a[np.searchsorted(ia, ia0)] = a0
    b = np.zeros(ib.size)
    b[np.searchsorted(ib, ib0)] = b0
    return ia, a, ib, b


def _pad_block(sets, pairs: list[_Pair], K: int, b: int, dtype):
    """Pad a chunk of pairs into (b, K, d) arrays (centred at each pair's centre, divided by R)."""
    d = sets[pairs[0].i].shape[1]
    Za = np.zeros((b, K, d), dtype)
    Zb = np.zeros((b, K, d), dtype)
    ma = np.zeros((b, K), bool)
    mb = np.zeros((b, K), bool)
    a0 = np.zeros((b, K), dtype)
    b0 = np.zeros((b, K), dtype)
    for r, p in enumerate(pairs):
        A, B = sets[p.i], sets[p.j]
        na, nb = p.ia.size, p.ib.size
        Za[r, :na] = (A[p.ia] - p.center) / p.radius
        Zb[r, :nb] = (B[p.ib] - p.center) / p.radius
        ma[r, :na] = True
        mb[r, :nb] = True
        a0[r, :na] = p.a
        b0[r, :nb] = p.b
    # Padding pairs: one point at the origin on both sides: w = 0, done at once.
    ma[len(pairs):, 0] = True
    mb[len(pairs):, 0] = True
    a0[len(pairs):, 0] = 1
    b0[len(pairs):, 0] = 1
    return Za, ma, Zb, mb, a0, b0


def _run_batch(sets, chunks: list[list[_Pair]], K: int, d: int, *, tol, rtol, decide, iters, sharding):
    """Iterate the chunks, one per device, each padded to the same block size.

    Every device gets a block of the same shape (b, K, d) whether there is one
    device or many, so each pair meets exactly the same XLA computation and the
    results are bitwise identical across device counts.
    """
    dtype = chunks[0][0].dtype
    n_dev = sharding.num_devices if sharding is not None else 1
    b = _bucket4(max(len(c) for c in chunks))
    blocks = [_pad_block(sets, c, K, b, dtype) for c in chunks]
    blocks += [_empty_block(b, K, d, dtype) for _ in range(n_dev - len(chunks))]
    arrays = tuple(np.concatenate(parts, axis=0) for parts in zip(*blocks))
    if sharding is not None:
        arrays = tuple(jax.device_put(x, sharding) for x in arrays)
    # tol on U is relative to scale = 2R; the padded coordinates are divided by R.
    solver = solve_padded_gram if use_gram(K, d) else solve_padded
    out = solver(
        *arrays,
        tol=jnp.asarray(2.0 * tol, dtype),
        rtol=jnp.asarray(rtol, dtype),
        decide=jnp.asarray(decide),
        max_iter=jnp.asarray(iters, jnp.int32),
    )
    a = np.asarray(out.a, np.float64)
    bw = np.asarray(out.b, np.float64)
    it = np.asarray(out.iterations)
    done = np.asarray(out.done)
    for c, chunk in enumerate(chunks):
        for r, p in enumerate(chunk):
            row = c * b + r
            p.a = a[row, : p.ia.size]
            p.b = bw[row, : p.ib.size]
            p.iterations += int(it[row])
            p.rounds += 1
            p.stall_round = not bool(done[row])


def _empty_block(b, K, d, dtype):
    Za = np.zeros((b, K, d), dtype)
    ma = np.zeros((b, K), bool)
    ma[:, 0] = True
    a0 = np.zeros((b, K), dtype)
    a0[:, 0] = 1
    return Za, ma, Za.copy(), ma.copy(), a0, a0.copy()


def _certify_all(sets, plist: list[_Pair]) -> None:
    """Float64 certificates for every pair in ``plist`` (sets ``p.cert``).

    The scores <w, x> on all points are computed per set: one matrix product
    ``X_s @ W^T`` with the w of every pair that involves set s, so each set is
    read once per round however many pairs it is in (chunked over pairs to
    bound memory).
    """
    ws, levels = [], []
    for p in plist:
        u, v = hull_points(sets[p.i], sets[p.j], p.ia, p.a, p.ib, p.b)
        ws.append(u - v)
        levels.append((u, v))
    by_set: dict[int, list[tuple[int, int]]] = {}
    for k, p in enumerate(plist):
        by_set.setdefault(p.i, []).append((k, 0))
        by_set.setdefault(p.j, []).append((k, 1))
    scores: list[list] = [[None, None] for _ in plist]
    for s, cols in by_set.items():
        X = sets[s]
        chunk = max(1, (1 << 24) // max(X.shape[0], 1))
        for c0 in range(0, len(cols), chunk):
            part = cols[c0 : c0 + chunk]
            W = np.stack([ws[k] for k, _ in part], axis=1)
            S = X @ W
            for col, (k, side) in enumerate(part):
                scores[k][side] = S[:, col]
    for k, p in enumerate(plist):
        u, v = levels[k]
        p.cert = certificate(u, v, scores[k][0], scores[k][1])


def _update(sets, p: _Pair, *, tol, rtol, decide, grow_floor) -> bool:
    """Decide p from its certificate, or grow its working set.

    Returns True if the pair is finished.
    """
    A, B = sets[p.i], sets[p.j]
    c = p.cert
    scale = 2.0 * p.radius
    if c.upper <= tol * scale:
        p.status = Status.OVERLAP
        return True
    if decide and c.lower > 0:
        p.status = Status.SEPARABLE
        return True
    if not decide and c.lower > 0 and (c.upper - c.lower) <= rtol * c.upper:
        p.status = Status.CERTIFIED
        return True
    ma = np.zeros(A.shape[0], bool)
    ma[p.ia] = True
    mb = np.zeros(B.shape[0], bool)
    mb[p.ib] = True
    k = max(grow_floor, p.ia.size // 2, p.ib.size // 2)
    # Points below u's level (A side) or above v's (B side) violate the
    # working-set optimality conditions <w, a_i> >= <w, u>, <w, b_j> <= <w, v>.
    slack = 1e-12 * (abs(c.level_a) + abs(c.level_b) + c.upper * p.radius)
    new_a = most_violating(c.scores_a, ma, k, below=c.level_a - slack)
    new_b = most_violating(c.scores_b, mb, k, above=c.level_b + slack)
    if new_a.size or new_b.size:
        # Shrink: working-set points with zero weight that sit well inside
        # their side of w's slab (beyond 5% of ||w||^2 past the level) are
        # unlikely to become support points; dropping them keeps K, and so
        # the cost of an iteration, near the support size. A dropped point
        # that matters comes back as a violator, and verification is always
        # on all points, so this changes speed only, never the certificates.
        gap2 = c.upper * c.upper
        keep_a = (p.a > 0) | (c.scores_a[p.ia] - c.level_a <= 0.05 * gap2)
        keep_b = (p.b > 0) | (c.level_b - c.scores_b[p.ib] <= 0.05 * gap2)
        if keep_a.sum() >= _MIN_K:
            p.ia, p.a = p.ia[keep_a], p.a[keep_a]
        if keep_b.sum() >= _MIN_K:
            p.ib, p.b = p.ib[keep_b], p.b[keep_b]
        p.ia = np.concatenate([p.ia, new_a])
        p.ib = np.concatenate([p.ib, new_b])
        p.a = np.concatenate([p.a, np.zeros(new_a.size)])
        p.b = np.concatenate([p.b, np.zeros(new_b.size)])
        p.stalls = 0
    elif getattr(p, "stall_round", False):
        # Working set complete but the sub-problem did not converge: float32
        # may be at its limit on a thin margin; continue in float64 if x64 is
        # available to this process.
        p.stalls += 1
        if p.stalls >= 2 and p.dtype == np.float32:
            p.dtype = np.float64
    return False


# A hull meeting fewer single points than this goes to the small-pair solver
# (when the pair is small enough for it).
_POINTS_PER_HULL = 8


def solve_pairs(
    sets: Sequence[np.ndarray],
    pairs: np.ndarray,
    *,
    mode: str = "distance",
    tol: float = DEFAULT_TOL,
    rtol: float = DEFAULT_RTOL,
    any_only: bool = False,
    dtype=np.float32,
    sharding=None,
    progress: bool = False,
    warm: Sequence | None = None,
    **budget,
) -> HullResults:
    """Hull distances or overlap decisions for many pairs of point sets.

    Pairs with a single point on one side (test points, singleton clusters)
    are solved together per hull by the shared-Gram solver
    (:mod:`geomcore.solvers.point_hull`); pairs of at most SMALL_MAX points in
    all are solved whole, in batches (:mod:`geomcore.solvers.small_pairs`);
    both give the same certificates, scale and statuses. The rest, and any
    pair those cannot certify within their budgets, go through the
    working-set engine (:func:`_solve_general`, whose docstring lists
    ``budget``'s keys). With ``any_only`` every pair takes the
    general path, which can stop at the first overlap. ``warm`` (one entry
    per pair, see :func:`_solve_general`) starts the working-set engine's and
    the small-pair solver's pairs from earlier supports; ``supports`` of the
    result are None for the pairs the point-to-hull solver finished.
    """
    if mode not in ("distance", "decide"):
        raise ValueError(f"mode must be 'distance' or 'decide', got {mode!r}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    kw = dict(mode=mode, tol=tol, rtol=rtol, any_only=any_only, dtype=dtype, sharding=sharding,
              progress=progress, **budget)
    if warm is not None and len(warm) != pairs.shape[0]:
        raise ValueError(f"`warm` has {len(warm)} entries for {pairs.shape[0]} pairs.")
    if any_only or pairs.shape[0] == 0:
        return _solve_general(sets, pairs, warm=warm, **kw)
    from geomcore.solvers.small_pairs import SMALL_MAX, solve_small_pairs

    sizes = np.array([sets[int(i)].shape[0] for i in range(len(sets))])
    single = (sizes[pairs[:, 0]] == 1) | (sizes[pairs[:, 1]] == 1)
    fits = sizes[pairs[:, 0]] + sizes[pairs[:, 1]] <= SMALL_MAX
    if single.any():
        # The point-to-hull solver pays off when many points meet one hull
        # (test points against clusters); a hull that meets only a few single
        # points (a singleton label among labels) is cheaper in the batches of
        # the small-pair solver.
        hull = np.where(sizes[pairs[:, 0]] == 1, pairs[:, 1], pairs[:, 0])
        per_hull = np.bincount(hull[single], minlength=len(sets))
        single &= ~(fits & (per_hull[hull] < _POINTS_PER_HULL))
    small = ~single & fits
    if not (single.any() or small.any()):
        return _solve_general(sets, pairs, warm=warm, **kw)
    fast = {}
    n_escalated = 0
    if single.any():
        fast.update(_point_pairs(sets, pairs, np.flatnonzero(single), tol=tol, rtol=rtol,
                                 decide=mode == "decide"))
    if small.any():
        solved, n_escalated = solve_small_pairs(sets, pairs, np.flatnonzero(small), tol=tol, rtol=rtol,
                                                decide=mode == "decide", warm=warm)
        fast.update(solved)
    rest = np.setdiff1d(np.arange(pairs.shape[0]), np.fromiter(fast, np.int64, len(fast)))
    d = sets[0].shape[1]
    m = pairs.shape[0]
    out = HullResults(np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m, bool), np.zeros((m, d)),
                      np.zeros(m), np.zeros(m, np.int64), np.zeros(m, np.int8), np.zeros(m), 0)
    supports = [None] * m
    for k, row in fast.items():
        for f, v in zip(PAIR_FIELDS, row):
            getattr(out, f)[k] = v
        if len(row) > len(PAIR_FIELDS):
            supports[k] = row[len(PAIR_FIELDS)]
    if rest.size:
        res = _solve_general(sets, pairs[rest], warm=None if warm is None else [warm[k] for k in rest],
                             **kw)
        for f in PAIR_FIELDS:
            getattr(out, f)[rest] = getattr(res, f)
        n_escalated += res.n_escalated
        for k, sup in zip(rest, res.supports):
            supports[k] = sup
    return out._replace(n_escalated=n_escalated, supports=tuple(supports))


def _point_pairs(sets, pairs: np.ndarray, idx: np.ndarray, *, tol, rtol, decide) -> dict:
    """Pairs ``pairs[idx]`` (one side a single point), solved per hull.

    Returns {pair index: (distance, lower, upper, separable, w, b, iterations,
    status, scale)} for the pairs certified; the others are left out.
    """
    from geomcore.solvers.point_hull import solve_point_hull

    by_hull: dict[int, list[tuple[int, int, bool]]] = {}
    for k in idx:
        i, j = int(pairs[k, 0]), int(pairs[k, 1])
        # The point is A (w = p - q) or B (w = q - p); a point-point pair puts the hull on B.
        point_is_a = sets[i].shape[0] == 1
        hull, point = (j, i) if point_is_a else (i, j)
        by_hull.setdefault(hull, []).append((int(k), point, point_is_a))
    out: dict = {}
    for hull, items in by_hull.items():
        X = sets[hull]
        P = np.concatenate([sets[p] for _, p, _ in items], axis=0)
        res = solve_point_hull(P, X, tol=tol, rtol=rtol, decide=decide)
        S = X @ res.w.T  # (n, m) scores of the hull on each pair's w = p - q
        sp = np.einsum("md,md->m", P, res.w)
        for r, (k, _, point_is_a) in enumerate(items):
            if not res.done[r]:
                continue
            inside = res.distance[r] == 0.0
            U, L = float(res.upper[r]), float(res.lower[r])
            sign = 1.0 if point_is_a else -1.0
            w = sign * res.w[r]
            # Slab of w: min over A of <w, a> and max over B of <w, b>.
            if point_is_a:
                smin, smax = sign * sp[r], sign * S[:, r].max()
            else:
                smin, smax = sign * S[:, r].min(), sign * sp[r]
            if inside:
                status = Status.OVERLAP
            else:
                status = Status.SEPARABLE if decide else Status.CERTIFIED
            out[k] = (0.0 if inside else U, 0.0 if inside else L, U, not inside, w, 0.5 * (smin + smax),
                      int(res.iterations[r]), int(status), float(res.scale[r]))
    return out


def _solve_general(
    sets: Sequence[np.ndarray],
    pairs: np.ndarray,
    *,
    mode: str = "distance",
    tol: float = DEFAULT_TOL,
    rtol: float = DEFAULT_RTOL,
    any_only: bool = False,
    max_iter: int = 20000,
    max_rounds: int | None = None,
    round_iter: int | None = None,
    working_set: int = 64,
    lp_after: int | None = None,
    qp_after: int = 3000,
    dtype=np.float32,
    sharding=None,
    progress: bool = False,
    warm: Sequence | None = None,
) -> HullResults:
    """Hull distances or overlap decisions for many pairs of point sets.

    Args:
      sets: float64 (n_i, d) arrays, already validated (finite, same d, n_i >= 1).
      pairs: (m, 2) int indices into ``sets``.
      mode: "distance" (certify (U - L) <= rtol U) or "decide" (stop at the
        first certificate of separability or overlap).
      tol: overlap threshold, relative to the pair's scale (a bound on the
        diameter of A u B: diam <= scale <= 4 diam).
      rtol: relative gap for distances.
      any_only: "decide" only: stop the whole call at the first overlapping
        pair; pairs not finished get Status.SKIPPED.
      max_iter: iteration budget per pair (checked between rounds, so a pair
        may overrun it by up to ``round_iter``); max_rounds: working-set rounds
        per pair (default 40 in "decide" mode, 100 in "distance" mode). Pairs
        over budget are decided by the exact LP (Status.EXACT_LP).
      round_iter: iterations per round before the working set is re-verified
        (default 500 in "decide" mode and for pairs started from ``warm``,
        200 for the others in "distance" mode). A distance is certified on a
        working set that has grown to hold the support, and a round that
        iterates on an incomplete one is mostly wasted: from a cold start,
        shorter rounds let the violators in sooner (PUD POS label
        distances, all 136 pairs: layer 6 204,586 -> 125,674 iterations,
        7.8-10.1 s -> 6.0-6.7 s; layer 1 162,594 -> 111,323, 9.8-10.3 s ->
        7.1-8.2 s). A warm start's working set already holds most of the
        support, and there rounds of 200 cost more than they save (full PUD
        POS, 7 layers from a checkpoint 60 steps earlier: 22.5-26.1 s against
        19.0-20.5 s with rounds of 500).
      lp_after: a pair not yet certified separable after this many iterations
        (default 1000 in "decide" mode, 4000 in "distance" mode: a decision
        costs the interior-point LP about 0.1 s, less than thousands of
        iterations; PUD POS L6 DirectProbe 147 s -> 131 s with the same
        clusters) is decided by the exact LP (counted in ``n_escalated``); in "distance" mode a
        separable one then goes on iterating to refine its distance. Nearly
        touching or thinly overlapping hulls are where first-order iterations
        slow down, and where the LP is decisive.
      qp_after: "distance" mode: a pair known to be separable whose distance
        is not certified after this many iterations is solved by the
        interior-point SVM (:mod:`svm_ipm`) on its working set, verified on all
        points like any other iterate (cutting planes: violators join, the
        solve repeats). Thin separable pairs need thousands of first-order
        iterations and 7-16 interior-point ones.
      working_set: initial points per side.
      dtype: np.float32 (default) or np.float64 for the iterations
        (certificates are always float64).
      sharding: optional ``jax.sharding.Sharding`` for the pair axis.
      warm: optional, one entry per pair: None or ``(ia, a, ib, b)``, support
        indices and weights of an earlier solution (``HullResults.supports``
        of the same pairs on earlier coordinates of the same points). The pair
        starts from those weights (:func:`_warm_working_set`) instead of the
        centroid direction. Only the speed depends on it: the stopping rules
        and certificates are the same.

    Returns:
      :class:`HullResults`, distances in the units of ``sets``, with
      ``supports``.
    """
    if mode not in ("distance", "decide"):
        raise ValueError(f"mode must be 'distance' or 'decide', got {mode!r}")
    decide = mode == "decide"
    if lp_after is None:
        lp_after = 1000 if decide else 4000
    # Rounds per pair (see ``round_iter`` above); an explicit value sets both.
    cold_round = (500 if decide else 200) if round_iter is None else round_iter
    warm_round = 500 if round_iter is None else round_iter
    if max_rounds is None:
        max_rounds = 40 if decide else 100
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = pairs.shape[0]
    d = sets[0].shape[1] if len(sets) else 0
    stats: dict[int, _SetStats] = {}
    rows: dict[int, np.ndarray] = {}
    work: list[_Pair] = []
    for k, (i, j) in enumerate(pairs):
        for s in (i, j):
            if s not in stats:
                stats[s] = _stats(sets[s])
        si, sj = stats[i], stats[j]
        center, radius = _pair_frame(si, sj)
        shared = _shared_point(rows, sets, int(i), int(j))
        start = None
        if warm is not None and shared is None:
            start = _warm_working_set(sets[i], sets[j], warm[k], working_set)
        if start is not None:
            ia, a0, ib, b0 = start
            work.append(_Pair(int(i), int(j), center, radius, ia, ib, a0, b0, dtype,
                              round_iter=warm_round))
            continue
        direction = si.mean - sj.mean
        if not np.any(direction):
            direction = np.zeros(d)
            direction[0] = 1.0
        if shared is not None:
            # An identical point in both sets: u = v, an exact overlap
            # certificate that first-order iterations only approach as O(1/k).
            ia, ib = np.array([shared[0]]), np.array([shared[1]])
        else:
            ia = _initial_working_set(sets[i], direction, working_set, lowest=True)
            ib = _initial_working_set(sets[j], direction, working_set, lowest=False)
        p = _Pair(int(i), int(j), center, radius, ia, ib,
                  np.full(ia.size, 1.0 / ia.size), np.full(ib.size, 1.0 / ib.size), dtype,
                  round_iter=cold_round)
        work.append(p)

    # Round 0: the uniform weights already certify many pairs (centroid-like
    # directions), at no iteration cost.
    active = []
    _certify_all(sets, work)
    for p in work:
        if not _update(sets, p, tol=tol, rtol=rtol, decide=decide, grow_floor=working_set):
            active.append(p)
    found_overlap = any(p.status == Status.OVERLAP for p in work)
    n_escalated = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=m, desc="hull pairs", unit="pair", initial=m - len(active))

    while active and not (any_only and found_overlap):
        over = {id(p) for p in active if p.iterations >= max_iter or p.rounds >= max_rounds}
        due = [p for p in active if not p.lp_checked
               and (id(p) in over or (p.iterations >= lp_after and p.cert.lower <= 0))]
        finished = set()
        for p in due:
            _escalate(sets, p, decide, tol)
            n_escalated += 1
            found_overlap |= not p.lp_separable
            if decide or not p.lp_separable:
                finished.add(id(p))
        finished |= over  # out of budget: decided by the LP, bounds as they are
        if finished and bar is not None:
            bar.update(len(finished))
        active = [p for p in active if id(p) not in finished]
        if not decide:
            thin = [p for p in active if not p.qp_tried and p.iterations >= qp_after
                    and (p.cert.lower > 0 or p.lp_separable)]
            if thin:
                for p in thin:
                    _finish_qp(sets, p, rtol)
                _certify_all(sets, thin)
                done = {id(p) for p in thin
                        if _update(sets, p, tol=tol, rtol=rtol, decide=False, grow_floor=working_set)}
                if done and bar is not None:
                    bar.update(len(done))
                active = [p for p in active if id(p) not in done]
        runnable = active
        if not active or (any_only and found_overlap):
            break
        # Bucket by (dtype, K); chunk by memory.
        groups: dict[tuple, list[_Pair]] = {}
        for p in runnable:
            K = _bucket(max(p.ia.size, p.ib.size), _MIN_K)
            groups.setdefault((np.dtype(p.dtype).name, K, p.round_iter), []).append(p)
        n_dev = sharding.num_devices if sharding is not None else 1
        for (dt, K, iters), plist in sorted(groups.items()):
            per_batch = _floor4(max(1, _batch_floats() // (2 * K * d)))
            chunks = [plist[s : s + per_batch] for s in range(0, len(plist), per_batch)]
            # Full chunks go n_dev at a time; a partial chunk (another block
            # size) goes alone, so that block shapes never depend on n_dev.
            full = [c for c in chunks if len(c) == per_batch]
            supers = [full[s : s + n_dev] for s in range(0, len(full), n_dev)]
            supers += [[c] for c in chunks if len(c) < per_batch]
            for sb in supers:
                # The iterations aim at half the final gap on the working set:
                # room for the points outside it, without the extra
                # iterations of a tighter aim (PUD POS L6 label distances
                # with rtol / 4 here: 204,586 -> 213,094 iterations, 15% slower).
                kw = dict(tol=tol, rtol=rtol / 2, decide=decide, iters=iters, sharding=sharding)
                if dt == "float64":
                    with jax.enable_x64(True):
                        _run_batch(sets, sb, K, d, **kw)
                else:
                    _run_batch(sets, sb, K, d, **kw)
        still = []
        _certify_all(sets, runnable)
        for p in runnable:
            if _update(sets, p, tol=tol, rtol=rtol, decide=decide, grow_floor=working_set):
                found_overlap |= p.status == Status.OVERLAP
            else:
                still.append(p)
        if bar is not None:
            bar.update(len(active) - len(still))
        active = still
    if bar is not None:
        bar.close()
    for p in active:  # any_only stopped early
        p.status = Status.SKIPPED
    return _collect(work, m, d, n_escalated)


# Points per side, extreme along the solver's current direction, added to an
# escalated pair's first LP (bench: the escalations of PUD POS DirectProbe).
_LP_SEED = 384


def _scaled(sets, p: _Pair) -> tuple[np.ndarray, np.ndarray]:
    """p's two sets centred and scaled into the unit ball, so that the host
    solvers' absolute tolerances mean the same on any data."""
    return (sets[p.i] - p.center) / p.radius, (sets[p.j] - p.center) / p.radius


def _escalate(sets, p: _Pair, decide: bool, tol: float) -> None:
    A, B = sets[p.i], sets[p.j]
    As, Bs = _scaled(sets, p)
    support_a = p.ia[p.a > 1e-9] if p.a.size else p.ia
    support_b = p.ib[p.b > 1e-9] if p.b.size else p.ib
    ia = np.union1d(p.ia, support_a)
    ib = np.union1d(p.ib, support_b)
    if p.cert is not None and np.any(p.cert.w):
        # Seed the cutting planes with the points most extreme along the
        # solver's direction: on PUD POS's escalated pairs this takes a
        # separable pair from 4-5 LP rounds to 1-2 (LP time -31% in all).
        ia = np.union1d(ia, _initial_working_set(As, p.cert.w, _LP_SEED, lowest=True))
        ib = np.union1d(ib, _initial_working_set(Bs, p.cert.w, _LP_SEED, lowest=False))
    # scale = 2 * radius, so tol * scale is 2 * tol in the scaled frame.
    res = lp_decide(As, Bs, ia, ib, overlap_tol=2.0 * tol)
    p.lp_checked = True
    log.info("pair (%d, %d) escalated to the exact LP after %d iterations: %s "
             "(%d of %d LP rounds by HiGHS)", p.i, p.j, p.iterations,
             "separable" if res.separable else "overlap", res.highs_rounds, res.rounds)
    p.status = Status.EXACT_LP
    if res.separable:
        c = p.cert
        # Keep the solver's hull points for U; take the LP's hyperplane for L if
        # it gives the wider certified slab.
        sa, sb = A @ res.w, B @ res.w
        nrm = float(np.linalg.norm(res.w))
        lp_lower = (sa.min() - sb.max()) / nrm
        if c is None or lp_lower > c.lower:
            p.lp_w = res.w / nrm
            p.lp_lower = float(lp_lower)
            p.lp_offset = float(0.5 * (sa.min() + sb.max()) / nrm)
    p.lp_separable = bool(res.separable)
    # The interior-point LP certifies an overlap with two hull points (in the
    # scaled frame): a far tighter U than the iterative solver's.
    p.lp_upper = float(res.upper) * p.radius


# Extreme points per side along the current direction that seed the
# interior-point SVM's working set, and the violators added per round.
_QP_SEED = 256
_QP_ROUNDS = 20


def _finish_qp(sets, p: _Pair, rtol: float) -> None:
    """Replace p's weights by the interior-point SVM's on a growing working set.

    The working set starts from p's support plus the points most extreme along
    its current w and grows by the points that violate the SVM's slab on the
    full sets, until the slab certifies (U - L) <= rtol U on all points or the
    solver stops converging. p keeps its old weights if no round converged;
    its certificates are recomputed by the caller either way.
    """
    p.qp_tried = True
    As, Bs = _scaled(sets, p)
    w = p.cert.w
    ia = np.union1d(p.ia[p.a > 0], _initial_working_set(As, w, _QP_SEED, lowest=True))
    ib = np.union1d(p.ib[p.b > 0], _initial_working_set(Bs, w, _QP_SEED, lowest=False))
    for _ in range(_QP_ROUNDS):
        r = svm_ipm(As[ia], Bs[ib], rtol=rtol / 4)
        p.iterations += r.iterations
        if not r.converged:
            return
        p.ia, p.a, p.ib, p.b = ia, r.lam, ib, r.mu
        sa, sb = As @ r.w, Bs @ r.w
        nrm = float(np.linalg.norm(r.w))
        if (sa.min() - sb.max()) / nrm >= r.upper * (1.0 - rtol / 2):
            return
        ia, ib = add_violators(sa, sb, ia, ib, float(sa[ia].min()), float(sb[ib].max()), _QP_SEED)
    log.info("pair (%d, %d): interior-point SVM did not close in %d rounds", p.i, p.j, _QP_ROUNDS)


def _support(p: _Pair) -> tuple:
    """(ia, a, ib, b): p's points with weight and their weights, normalised as
    in its certificate (:func:`certificates.convex_weights`)."""
    a, b = convex_weights(p.a), convex_weights(p.b)
    return p.ia[a > 0], a[a > 0], p.ib[b > 0], b[b > 0]


def _collect(work: list[_Pair], m: int, d: int, n_escalated: int) -> HullResults:
    distance = np.zeros(m)
    lower = np.zeros(m)
    upper = np.zeros(m)
    separable = np.zeros(m, bool)
    w = np.zeros((m, d))
    b = np.zeros(m)
    iterations = np.zeros(m, np.int64)
    status = np.zeros(m, np.int8)
    scale = np.zeros(m)
    for k, p in enumerate(work):
        c = p.cert
        status[k] = p.status
        iterations[k] = p.iterations
        scale[k] = 2.0 * p.radius
        upper[k] = c.upper if p.status != Status.EXACT_LP else min(c.upper, p.lp_upper)
        w[k] = c.w
        b[k] = c.offset
        if p.status == Status.EXACT_LP:
            sep = p.lp_separable
            lo = max(c.lower, getattr(p, "lp_lower", -np.inf)) if sep else 0.0
            if sep and getattr(p, "lp_w", None) is not None and p.lp_lower >= c.lower:
                w[k] = p.lp_w
                b[k] = p.lp_offset
        else:
            sep = p.status in (Status.CERTIFIED, Status.SEPARABLE)
            lo = c.lower
        separable[k] = sep
        lower[k] = max(lo, 0.0) if sep else 0.0
        distance[k] = c.upper if sep else 0.0
    supports = tuple(_support(p) for p in work)
    return HullResults(distance, lower, upper, separable, w, b, iterations, status, scale,
                       n_escalated, supports)
