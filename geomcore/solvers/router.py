"""The router: which path solves which pair.

Paths (one module each):

- point-to-hull (:mod:`point_hull`): pairs with a single point on one side,
  when many single points meet the same hull (test points against clusters):
  the hull's Gram matrix is shared among them;
- host working sets (:mod:`working_set`): on a CPU without sharding, every
  other pair (small pairs included): exact restricted solves by an
  active-set method and one pricing product per set and round;
- device (:mod:`device_pairs`, with :mod:`small_pairs` for pairs of at most
  ``small_max`` points): batched FISTA on padded working sets, for
  accelerators and for runs that shard the pair axis over devices; also
  where the host path hands on a pair it could not finish within its budget
  (it then escalates to the exact LP if needed).

Every path certifies its answers the same way (float64 certificates on all
points, :mod:`certificates`) and reports the same statuses.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from geomcore.progress import progress_bar
from geomcore.results import PAIR_FIELDS, HullResults, Status
from geomcore.solvers.device_pairs import solve_device
from geomcore.solvers.params import DEFAULT_RTOL, DEFAULT_TOL, EngineParams

__all__ = ["solve_pairs", "host_path"]


def host_path(path: str) -> bool:
    """Whether the working-set pairs take the host path: "auto" picks it when
    JAX's backend is the CPU (fewer passes: exact restricted solves, one pair
    per host thread), whatever the number of CPU devices, so that a call
    gives the same bits on one device or many; accelerators take the batched
    device iteration (sharded over their devices)."""
    if path != "auto":
        return path == "host"
    return jax.default_backend() == "cpu"


def solve_pairs(
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
    params: EngineParams | None = None,
) -> HullResults:
    """Hull distances or overlap decisions for many pairs of point sets.

    Args:
      sets: float64 (n_i, d) arrays, already validated (finite, same d, n_i >= 1).
      pairs: (m, 2) indices into ``sets``.
      mode: "distance" (certify (U - L) <= rtol U) or "decide" (stop each
        pair at its first certificate of separability or overlap).
      tol, rtol: overlap tolerance relative to each pair's scale, relative gap.
      any_only: "decide" only: stop at the first overlapping pair; pairs not
        examined get Status.SKIPPED.
      max_iter, dtype, sharding: the device path's iteration budget,
        iteration dtype and pair-axis sharding.
      progress: a bar over pairs (:mod:`geomcore.progress`).
      warm: optional, one entry per pair: None or an earlier support
        ``(ia, a, ib, b)`` (``HullResults.supports``) to start from.
      params: routing and budgets (:class:`EngineParams`).

    Returns:
      :class:`HullResults` with ``supports`` (None for the pairs the
      point-to-hull solver finished).
    """
    params = EngineParams() if params is None else params
    if mode not in ("distance", "decide"):
        raise ValueError(f"mode must be 'distance' or 'decide', got {mode!r}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if warm is not None and len(warm) != pairs.shape[0]:
        raise ValueError(f"`warm` has {len(warm)} entries for {pairs.shape[0]} pairs.")
    kw = dict(
        mode=mode,
        tol=tol,
        rtol=rtol,
        any_only=any_only,
        dtype=dtype,
        sharding=sharding,
        progress=progress,
        max_iter=max_iter,
        params=params.device,
    )
    host = host_path(params.path)
    m = pairs.shape[0]
    d = sets[0].shape[1] if len(sets) else 0
    if m == 0 or (any_only and not host):
        return solve_device(sets, pairs, warm=warm, **kw)

    sizes = np.array([sets[int(i)].shape[0] for i in range(len(sets))])
    single = (sizes[pairs[:, 0]] == 1) | (sizes[pairs[:, 1]] == 1)
    fits = sizes[pairs[:, 0]] + sizes[pairs[:, 1]] <= params.small_max
    if any_only:
        single[:] = False
    if single.any():
        # The point-to-hull solver pays off when many points meet one hull
        # (test points against clusters); a hull that meets only a few single
        # points (a singleton label among labels) is one more pair for the
        # host rounds or the small-pair batches.
        hull = np.where(sizes[pairs[:, 0]] == 1, pairs[:, 1], pairs[:, 0])
        per_hull = np.bincount(hull[single], minlength=len(sets))
        single &= ~((per_hull[hull] < params.points_per_hull) & (fits | host))
    small = ~single & fits & (not host) & (not any_only)
    fast: dict = {}
    n_escalated = 0
    if single.any():
        fast.update(
            _point_pairs(
                sets,
                pairs,
                np.flatnonzero(single),
                tol=tol,
                rtol=rtol,
                decide=mode == "decide",
                shared_max=params.shared_max,
            )
        )
    if small.any():
        from geomcore.solvers.small_pairs import solve_small_pairs

        solved, n_escalated = solve_small_pairs(
            sets,
            pairs,
            np.flatnonzero(small),
            tol=tol,
            rtol=rtol,
            decide=mode == "decide",
            warm=warm,
        )
        fast.update(solved)
    rest = np.setdiff1d(np.arange(m), np.fromiter(fast, np.int64, len(fast)))
    if not fast and not host:
        return solve_device(sets, pairs, warm=warm, **kw)
    out = HullResults(
        np.zeros(m),
        np.zeros(m),
        np.zeros(m),
        np.zeros(m, bool),
        np.zeros((m, d)),
        np.zeros(m),
        np.zeros(m, np.int64),
        np.zeros(m, np.int8),
        np.zeros(m),
        0,
    )
    supports: list = [None] * m
    for k, row in fast.items():
        _put(out, supports, k, row)
    if rest.size and host:
        rest, warm = _host(
            sets,
            pairs,
            rest,
            out,
            supports,
            warm,
            mode=mode,
            tol=tol,
            rtol=rtol,
            any_only=any_only,
            progress=progress,
            params=params,
        )
        kw["progress"] = False
        if mode == "decide":
            # A pair the host rounds could not decide is a near-touching one
            # whose corral is as large as it gets: more first-order iterations
            # on the device path only delay the exact LP (and compile them).
            kw["params"] = dataclasses.replace(params.device, lp_after=0)
    if rest.size:
        res = solve_device(
            sets, pairs[rest], warm=None if warm is None else [warm[k] for k in rest], **kw
        )
        for f in PAIR_FIELDS:
            getattr(out, f)[rest] = getattr(res, f)
        n_escalated += res.n_escalated
        for k, sup in zip(rest, res.supports):
            supports[k] = sup
    return out._replace(n_escalated=n_escalated, supports=tuple(supports))


def _put(out: HullResults, supports: list, k: int, row: tuple) -> None:
    for f, v in zip(PAIR_FIELDS, row):
        getattr(out, f)[k] = v
    if len(row) > len(PAIR_FIELDS):
        supports[k] = row[len(PAIR_FIELDS)]


def _host(sets, pairs, rest, out, supports, warm, *, mode, tol, rtol, any_only, progress, params):
    """The host path on ``pairs[rest]``; returns the rows handed on to the
    device path and the warm starts (their current supports) for them."""
    from geomcore.solvers.working_set import solve_working_sets

    bar = None
    if progress:
        bar = progress_bar(rest.size, "hull pairs", unit="pair")
    try:
        done, left, stopped = solve_working_sets(
            sets,
            pairs[rest],
            mode=mode,
            tol=tol,
            rtol=rtol,
            any_only=any_only,
            warm=None if warm is None else [warm[k] for k in rest],
            params=params.host,
            on_done=None if bar is None else bar.update,
        )
    finally:
        if bar is not None:
            bar.close()
    for r, row in done.items():
        _put(out, supports, int(rest[r]), row)
    if stopped:
        for r in set(range(rest.size)) - set(done):
            out.status[rest[r]] = Status.SKIPPED
        return np.zeros(0, np.int64), warm
    handed = dict(left)
    rows = sorted(handed)
    start = [None] * pairs.shape[0]
    for r in rows:
        start[int(rest[r])] = handed[r]
    return rest[rows].astype(np.int64), start


def _point_pairs(
    sets, pairs: np.ndarray, idx: np.ndarray, *, tol, rtol, decide, shared_max
) -> dict:
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
        res = solve_point_hull(P, X, tol=tol, rtol=rtol, decide=decide, shared_max=shared_max)
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
            status = (
                Status.OVERLAP if inside else (Status.SEPARABLE if decide else Status.CERTIFIED)
            )
            out[k] = (
                0.0 if inside else U,
                0.0 if inside else L,
                U,
                not inside,
                w,
                0.5 * (smin + smax),
                int(res.iterations[r]),
                int(status),
                float(res.scale[r]),
            )
    return out
