"""The device path: batched FISTA on padded working sets (JAX), float64 verification, LP escalation.

For each pair (A, B) the solver keeps a working set: a few points of each side.
A round solves the nearest-point problem on the working sets of all active
pairs at once (:func:`geomcore.solvers.nearest_point.solve_padded`, padded
into bucketed shapes so compiles stay few), then verifies the resulting w in
float64 on *all* points of both sets (:func:`certificates.certificate`, one
product per set: :mod:`pricing`). The certificates are valid whatever the
working set: U is the distance between two actual hull points and L the width
of the slab that w defines on the full sets. A pair ends when

- ``decide`` mode: L > 0 (separable) or U <= tol * scale (overlap);
- ``distance`` mode: U <= tol * scale (overlap) or (U - L) <= rtol * U;

otherwise the points that violate w's slab are added to its working set and
the round repeats, warm-started. Pairs still undecided after ``max_iter``
iterations or ``max_rounds`` rounds are decided by the exact LP
(:mod:`exact_lp`) and counted.

Every device gets blocks of the same shape whether there is one device or
many, so results are bitwise identical across device counts. This is the
path for accelerators and for sharded runs; on a CPU without sharding the
router sends these pairs to the host path (:mod:`working_set`), which needs
far fewer passes (see docs/design.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from geomcore.progress import progress_bar
from geomcore.results import HullResults, Status
from geomcore.solvers.buckets import batch_floats, bucket, bucket4, floor4
from geomcore.solvers.certificates import (
    add_violators,
    convex_weights,
    decision,
    hull_points,
    most_violating,
)
from geomcore.solvers.exact_lp import lp_decide
from geomcore.solvers.frames import (
    initial_working_set,
    pair_frame,
    set_stats,
    shared_point,
    valid_support,
)
from geomcore.solvers.nearest_point import solve_padded, solve_padded_gram, use_gram
from geomcore.solvers.params import DEFAULT_RTOL, DEFAULT_TOL, DeviceParams
from geomcore.solvers.pricing import certify_all
from geomcore.solvers.svm_ipm import svm_ipm

__all__ = ["solve_device"]

log = logging.getLogger(__name__)

_MIN_K = 8


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
    round_iter: int = 500  # iterations per round (cold or warm start)


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
    ia = np.union1d(ia0, initial_working_set(A, w, max(_MIN_K, k - ia0.size), lowest=True))
    ib = np.union1d(ib0, initial_working_set(B, w, max(_MIN_K, k - ib0.size), lowest=False))
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
    ma[len(pairs) :, 0] = True
    mb[len(pairs) :, 0] = True
    a0[len(pairs) :, 0] = 1
    b0[len(pairs) :, 0] = 1
    return Za, ma, Zb, mb, a0, b0


def _run_batch(
    sets, chunks: list[list[_Pair]], K: int, d: int, *, tol, rtol, decide, iters, sharding
):
    """Iterate the chunks, one per device, each padded to the same block size.

    Every device gets a block of the same shape (b, K, d) whether there is one
    device or many, so each pair meets exactly the same XLA computation and the
    results are bitwise identical across device counts.
    """
    dtype = chunks[0][0].dtype
    n_dev = sharding.num_devices if sharding is not None else 1
    b = bucket4(max(len(c) for c in chunks))
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
    """Float64 certificates of every pair in ``plist`` on all its points (``p.cert``)."""
    certify_all(sets, plist, lambda p: hull_points(sets[p.i], sets[p.j], p.ia, p.a, p.ib, p.b))


def _update(sets, p: _Pair, *, tol, rtol, decide, grow_floor) -> bool:
    """Decide p from its certificate, or grow its working set.

    Returns True if the pair is finished.
    """
    A, B = sets[p.i], sets[p.j]
    c = p.cert
    status = decision(c, 2.0 * p.radius, tol=tol, rtol=rtol, decide=decide)
    if status is not None:
        p.status = status
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


def solve_device(
    sets: Sequence[np.ndarray],
    pairs: np.ndarray,
    *,
    mode: str = "distance",
    tol: float = DEFAULT_TOL,
    rtol: float = DEFAULT_RTOL,
    any_only: bool = False,
    max_iter: int = 20000,
    dtype=np.float32,
    sharding=None,
    progress: bool = False,
    warm: Sequence | None = None,
    params: DeviceParams = DeviceParams(),
) -> HullResults:
    """Hull distances or overlap decisions for many pairs of point sets (device path).

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
        may overrun it by up to one round).
      dtype: np.float32 (default) or np.float64 for the iterations
        (certificates are always float64).
      sharding: optional ``jax.sharding.Sharding`` for the pair axis.
      warm: optional, one entry per pair: None or ``(ia, a, ib, b)``, support
        indices and weights of an earlier solution. The pair starts from those
        weights instead of the centroid direction; only the speed depends on it.
      params: the path's budgets (:class:`DeviceParams`).

    Returns:
      :class:`HullResults`, distances in the units of ``sets``, with
      ``supports``.
    """
    max_rounds, round_iter, working_set = params.max_rounds, params.round_iter, params.working_set
    lp_after, qp_after = params.lp_after, params.qp_after
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
    stats: dict = {}
    rows: dict[int, np.ndarray] = {}
    work: list[_Pair] = []
    for k, (i, j) in enumerate(pairs):
        for s in (i, j):
            if s not in stats:
                stats[s] = set_stats(sets[s])
        si, sj = stats[i], stats[j]
        center, radius = pair_frame(si, sj)
        shared = shared_point(rows, sets, int(i), int(j))
        start = None
        if warm is not None and shared is None:
            start = _warm_working_set(sets[i], sets[j], warm[k], working_set)
        if start is not None:
            ia, a0, ib, b0 = start
            work.append(
                _Pair(int(i), int(j), center, radius, ia, ib, a0, b0, dtype, round_iter=warm_round)
            )
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
            ia = initial_working_set(sets[i], direction, working_set, lowest=True)
            ib = initial_working_set(sets[j], direction, working_set, lowest=False)
        p = _Pair(
            int(i),
            int(j),
            center,
            radius,
            ia,
            ib,
            np.full(ia.size, 1.0 / ia.size),
            np.full(ib.size, 1.0 / ib.size),
            dtype,
            round_iter=cold_round,
        )
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
        bar = progress_bar(m, "hull pairs", unit="pair")
        bar.update(m - len(active))

    while active and not (any_only and found_overlap):
        over = {id(p) for p in active if p.iterations >= max_iter or p.rounds >= max_rounds}
        due = [
            p
            for p in active
            if not p.lp_checked
            and (id(p) in over or (p.iterations >= lp_after and p.cert.lower <= 0))
        ]
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
            thin = [
                p
                for p in active
                if not p.qp_tried
                and p.iterations >= qp_after
                and (p.cert.lower > 0 or p.lp_separable)
            ]
            if thin:
                for p in thin:
                    _finish_qp(sets, p, rtol)
                _certify_all(sets, thin)
                done = {
                    id(p)
                    for p in thin
                    if _update(sets, p, tol=tol, rtol=rtol, decide=False, grow_floor=working_set)
                }
                if done and bar is not None:
                    bar.update(len(done))
                active = [p for p in active if id(p) not in done]
        runnable = active
        if not active or (any_only and found_overlap):
            break
        # Bucket by (dtype, K); chunk by memory.
        groups: dict[tuple, list[_Pair]] = {}
        for p in runnable:
            K = bucket(max(p.ia.size, p.ib.size), _MIN_K)
            groups.setdefault((np.dtype(p.dtype).name, K, p.round_iter), []).append(p)
        n_dev = sharding.num_devices if sharding is not None else 1
        for (dt, K, iters), plist in sorted(groups.items()):
            per_batch = floor4(max(1, (params.batch_floats or batch_floats()) // (2 * K * d)))
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
        ia = np.union1d(ia, initial_working_set(As, p.cert.w, _LP_SEED, lowest=True))
        ib = np.union1d(ib, initial_working_set(Bs, p.cert.w, _LP_SEED, lowest=False))
    # scale = 2 * radius, so tol * scale is 2 * tol in the scaled frame.
    res = lp_decide(As, Bs, ia, ib, overlap_tol=2.0 * tol)
    p.lp_checked = True
    log.info(
        "pair (%d, %d) escalated to the exact LP after %d iterations: %s "
        "(%d of %d LP rounds by HiGHS)",
        p.i,
        p.j,
        p.iterations,
        "separable" if res.separable else "overlap",
        res.highs_rounds,
        res.rounds,
    )
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
    ia = np.union1d(p.ia[p.a > 0], initial_working_set(As, w, _QP_SEED, lowest=True))
    ib = np.union1d(p.ib[p.b > 0], initial_working_set(Bs, w, _QP_SEED, lowest=False))
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
    return HullResults(
        distance, lower, upper, separable, w, b, iterations, status, scale, n_escalated, supports
    )
