"""Public entry points for hull distances and overlap decisions.

All functions validate on the host first (clear ValueError/TypeError), then
hand float64 point sets to :func:`geomcore.solvers.router.solve_pairs`, which
iterates in centred, scaled float32 coordinates (float64 on request) and
certifies every answer in float64. Distances are in the caller's units.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from geomcore._validate import as_groups, as_labels, as_points, check_tolerances
from geomcore.results import HullResult, HullResults
from geomcore.sharding import pair_sharding
from geomcore.solvers.params import DEFAULT_RTOL, DEFAULT_TOL, EngineParams
from geomcore.solvers.router import solve_pairs

__all__ = [
    "hull_distance",
    "hull_distances",
    "overlaps",
    "point_hull_distances",
    "label_distances",
    "PointHullDistances",
    "LabelDistances",
    "label_distances_layers",
]


def _check_options(tol, rtol, dtype):
    tol = DEFAULT_TOL if tol is None else tol
    rtol = DEFAULT_RTOL if rtol is None else rtol
    tol, rtol = check_tolerances(tol, rtol)
    if dtype is None:
        dt = np.float32
    else:
        try:
            dt = np.dtype(dtype).type
        except TypeError as exc:
            raise TypeError(f"`dtype` must be float32 or float64; got {dtype!r}.") from exc
        if dt not in (np.float32, np.float64):
            raise TypeError(f"`dtype` must be float32 or float64; got {np.dtype(dtype).name}.")
    return tol, rtol, dt


def _engine(path: str) -> EngineParams:
    return EngineParams(path=path)  # validates ``path``


def _sharding(shard):
    if shard is None or shard is True:
        return pair_sharding()
    if shard is False:
        return None
    return shard  # a user-provided jax.sharding.Sharding


def hull_distance(
    A: Any,
    B: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    max_iter: int = 20000,
    path: str = "auto",
) -> HullResult:
    """Distance between conv(A) and conv(B): the hard-margin SVM margin width.

    ``dist = min ||u - v||`` over u in conv(A), v in conv(B); 0 iff the hulls
    intersect.

    Args:
      A: (n_a, d) points (numpy, JAX, or any DLPack array such as a torch tensor).
      B: (n_b, d) points.
      tol: overlap tolerance relative to the data scale (default 1e-6): the
        hulls are called overlapping when two hull points closer than
        ``tol * scale`` are found.
      rtol: relative accuracy of the distance, certified as
        ``(upper - lower) <= rtol * upper`` (default 1e-4).
      dtype: float32 (default) or float64 for the iterations; certificates
        are always computed in float64.
      max_iter: the device path's iteration budget; past it the pair is
        decided by the exact LP.
      path: "auto" (default: the host path on a CPU without sharding, the
        device path on an accelerator or a sharded pair axis), "host" (exact
        active-set solves on working sets, threads on the host) or "device"
        (batched FISTA in JAX). Every path certifies the same way.

    Returns:
      :class:`HullResult` with ``lower <= distance <= upper`` certificates and
      the separating hyperplane (w, b).

    Examples:
      >>> import numpy as np, geomcore
      >>> r = geomcore.hull_distance(np.array([[0.0, 0.0], [0.0, 1.0]]),
      ...                            np.array([[2.0, 0.0], [3.0, 1.0]]))
      >>> round(r.distance, 4), bool(r.separable)
      (2.0, True)
    """
    tol, rtol, dt = _check_options(tol, rtol, dtype)
    A = as_points(A, "A")
    B = as_points(B, "B", width=A.shape[1])
    res = solve_pairs(
        [A, B],
        np.array([[0, 1]]),
        mode="distance",
        tol=tol,
        rtol=rtol,
        dtype=dt,
        max_iter=max_iter,
        params=_engine(path),
    )
    return res.pair(0)


def _group_sets(X: np.ndarray, groups: np.ndarray):
    """Points of each group id, as a dict id -> (n_g, d) array (one pass)."""
    order = np.argsort(groups, kind="stable")
    ids, starts = np.unique(groups[order], return_index=True)
    ends = np.append(starts[1:], order.size)
    return {int(g): X[order[s:e]] for g, s, e in zip(ids, starts, ends)}, ids


def _check_pairs(pairs: Any, ids: np.ndarray) -> np.ndarray:
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"`pairs` must have shape (m, 2) (two group ids per row); got shape {arr.shape}."
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`pairs` must hold integer group ids; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    known = np.isin(arr, ids)
    if not known.all():
        r, c = np.argwhere(~known)[0]
        raise ValueError(
            f"`pairs` row {r} names group id {arr[r, c]}, which no point has; "
            f"existing ids: {ids[:20].tolist()}{' ...' if ids.size > 20 else ''}."
        )
    same = arr[:, 0] == arr[:, 1]
    if same.any():
        r = int(np.flatnonzero(same)[0])
        raise ValueError(
            f"`pairs` row {r} pairs group {arr[r, 0]} with itself; "
            "a pair needs two different groups."
        )
    return arr


def _prepare(X, groups, pairs):
    X = as_points(X, "X")
    groups = as_groups(groups, X.shape[0], "groups")
    by_id, ids = _group_sets(X, groups)
    pairs = _check_pairs(pairs, ids)
    used = np.unique(pairs)
    index = {int(g): k for k, g in enumerate(used)}
    sets = [by_id[int(g)] for g in used]
    local = np.vectorize(index.__getitem__, otypes=[np.int64])(pairs) if pairs.size else pairs
    return X, sets, local


def hull_distances(
    X: Any,
    groups: Any,
    pairs: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    max_iter: int = 20000,
    path: str = "auto",
    shard: Any = None,
    progress: bool = False,
    warm_start: HullResults | None = None,
) -> HullResults:
    """Hull distances for many pairs of groups at once.

    Args:
      X: (n, d) all points.
      groups: (n,) integer group (cluster) id of each point.
      pairs: (m, 2) group ids; row k asks for dist(conv X[groups == pairs[k, 0]],
        conv X[groups == pairs[k, 1]]).
      tol, rtol, dtype, max_iter, path: as in :func:`hull_distance`.
      shard: None/True: shard the pair axis over all JAX devices when there are
        several; False: one device; or a ``jax.sharding.Sharding``.
      progress: show a bar over pairs (:mod:`geomcore.progress`).
      warm_start: the result of an earlier call with the same ``groups`` and
        ``pairs`` on moved points (the same examples at an earlier checkpoint
        of a model): each pair starts from its earlier support points and
        weights (``HullResults.supports``). Only speed depends on it; every
        answer is certified as in a cold call.

    Returns:
      :class:`HullResults`: arrays with one row per pair (``distance``,
      ``lower``, ``upper``, ``separable``, ``w``, ``b``, ``iterations``,
      ``status``, ``scale``), ``n_escalated``, the number of pairs decided by
      the exact LP (interior point, HiGHS behind it), and ``supports``.
    """
    tol, rtol, dt = _check_options(tol, rtol, dtype)
    X, sets, local = _prepare(X, groups, pairs)
    warm = _warm_supports(warm_start, local.shape[0])
    return solve_pairs(
        sets,
        local,
        mode="distance",
        tol=tol,
        rtol=rtol,
        dtype=dt,
        max_iter=max_iter,
        sharding=_sharding(shard),
        progress=progress,
        warm=warm,
        params=_engine(path),
    )


def _warm_supports(prev: Any, m: int) -> tuple | None:
    """``prev.supports`` checked against m pairs (None if prev is None)."""
    if prev is None:
        return None
    if not isinstance(prev, HullResults):
        raise TypeError(
            f"`warm_start` must be the HullResults of an earlier call; got {type(prev).__name__}."
        )
    if prev.supports is None or len(prev.supports) != m:
        have = "no supports" if prev.supports is None else f"{len(prev.supports)} pairs"
        raise ValueError(
            f"`warm_start` must come from a call with the same {m} pairs; it has {have}."
        )
    return prev.supports


def overlaps(
    X: Any,
    groups: Any,
    pairs: Any,
    *,
    any_only: bool = False,
    tol: float | None = None,
    dtype: Any = None,
    max_iter: int = 20000,
    path: str = "auto",
    shard: Any = None,
) -> np.ndarray | bool:
    """Do the hulls of the paired groups overlap? The decision only, no distance.

    A pair is separable when a hyperplane verified in float64 separates it
    strictly, overlapping when two hull points closer than ``tol * scale`` are
    found; pairs the iterations cannot decide are decided by the exact LP.

    Returns:
      (m,) bool array, True where the hulls overlap; with ``any_only=True`` a
      single bool (does any pair overlap), computed with an early exit.
    """
    tol, _, dt = _check_options(tol, None, dtype)
    X, sets, local = _prepare(X, groups, pairs)
    res = solve_pairs(
        sets,
        local,
        mode="decide",
        tol=tol,
        any_only=any_only,
        dtype=dt,
        max_iter=max_iter,
        sharding=_sharding(shard),
        params=_engine(path),
    )
    if any_only:
        return bool(np.any(~res.separable & (res.status != 4)))
    return ~res.separable


class PointHullDistances(NamedTuple):
    """Distances from points to group hulls.

    distances: (p, C) float64, row i column k = dist(P[i], conv X[groups == groups_[k]]).
    groups: (C,) the group ids, in column order (sorted).
    n_engine: how many (point, group) entries the point-to-hull solvers left
      to the general pair engine (not certified within their budgets); the
      engine escalates to the exact LP in turn.
    """

    distances: np.ndarray
    groups: np.ndarray
    n_engine: int = 0


def point_hull_distances(
    P: Any,
    X: Any,
    groups: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    shard: Any = None,
    progress: bool = False,
) -> PointHullDistances:
    """Distance from every row of P to the hull of every group of X.

    0 where the point lies in the hull (up to ``tol``). DirectProbe predicts a
    point's label as the label of the nearest hull.

    All points go against one hull at a time in float64
    (:mod:`geomcore.solvers.point_hull`: the hull's Gram matrix shared for
    hulls up to 512 points, per-point working sets above), certified like the
    pair engine (U - L <= rtol * U, or U <= tol * scale: inside). Entries not
    certified within those solvers' budgets go to the pair engine (``dtype``
    and ``shard`` apply there); ``n_engine`` counts them.
    """
    tol, rtol, dt = _check_options(tol, rtol, dtype)
    X = as_points(X, "X")
    P = as_points(P, "P", width=X.shape[1], min_rows=0)
    groups = as_groups(groups, X.shape[0], "groups")
    by_id, ids = _group_sets(X, groups)
    C = ids.size
    if P.shape[0] == 0:
        return PointHullDistances(np.zeros((0, C)), ids)
    hulls = [by_id[int(g)] for g in ids]
    D, n_engine = _point_hull_matrix(
        P, hulls, tol=tol, rtol=rtol, dtype=dt, shard=shard, progress=progress
    )
    return PointHullDistances(D, ids, n_engine)


def _point_hull_matrix(
    P, hulls, *, tol, rtol, candidates=None, dtype=None, shard=None, progress=False, params=None
):
    """(m, C) certified distances of P's rows to the hulls (nan off ``candidates``)
    and how many entries went to the working-set engine.

    The point-to-hull solvers answer first; the entries they could not
    certify go straight to the working-set engine (not through
    ``solve_pairs``' routing, which would hand them to those solvers again).
    """
    from geomcore.solvers.point_hull import point_hull_matrix

    params = EngineParams() if params is None else params
    D, entries = point_hull_matrix(
        P,
        hulls,
        tol=tol,
        rtol=rtol,
        candidates=candidates,
        progress=progress,
        shared_max=params.shared_max,
    )
    if entries.shape[0]:
        D[entries[:, 0], entries[:, 1]] = _engine_point_hull(
            P, hulls, entries, tol=tol, rtol=rtol, dtype=dtype, shard=shard, progress=progress
        )
    return D, int(entries.shape[0])


def _engine_point_hull(P, hulls, entries, *, tol, rtol, dtype=None, shard=None, progress=False):
    """Distances of (point, hull) entries by the working-set paths (not the
    point-to-hull solver again: ``points_per_hull`` above any count)."""
    pts = np.unique(entries[:, 0])
    slot = {int(i): k for k, i in enumerate(pts)}
    sets = [P[i : i + 1] for i in pts] + list(hulls)
    pairs = np.stack([[slot[int(i)] for i in entries[:, 0]], pts.size + entries[:, 1]], axis=1)
    res = solve_pairs(
        sets,
        pairs,
        mode="distance",
        tol=tol,
        rtol=rtol,
        dtype=np.float32 if dtype is None else dtype,
        sharding=_sharding(shard),
        progress=progress,
        params=EngineParams(points_per_hull=pairs.shape[0] + 1),
    )
    return np.asarray(res.distance, dtype=np.float64)


class LabelDistances(NamedTuple):
    """Hull distances between labels (one cluster per label).

    labels: (L,) sorted unique labels: the order of rows and columns.
    matrix: (L, L) float64, symmetric, 0 on the diagonal and on overlapping pairs.
    separable: (L, L) bool, False on the diagonal.
    results: the :class:`HullResults` of the L(L-1)/2 pairs (i < j, row-major).
    supports: per pair (same order), the support indices and weights
      ``(ia, a, ib, b)`` into the rows of each label (in input order), or None
      per pair / as a whole when not recorded: what ``warm_start`` reads.
    """

    labels: np.ndarray
    matrix: np.ndarray
    separable: np.ndarray
    results: HullResults | None
    supports: tuple | None = None

    @property
    def min_distance(self) -> np.ndarray:
        """(L,) per label: the minimum distance to any other label (inf if L == 1),
        :func:`geomcore.analysis.min_distance_per_label` of the matrix."""
        from geomcore.analysis import min_distance_per_label

        return min_distance_per_label(self.matrix)


def label_distances(
    X: Any,
    labels: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    shard: Any = None,
    progress: bool = False,
    warm_start: LabelDistances | None = None,
    path: str = "auto",
) -> LabelDistances:
    """The (L x L) matrix of hull distances between the points of each label.

    Args:
      X: (n, d) points.
      labels: (n,) labels of any sortable type (ints, strings).
      warm_start: the result of an earlier call on the same examples with the
        same labels, at other coordinates (an earlier checkpoint of a model
        being fine-tuned, another layer): each label pair starts from its
        earlier support points and weights. Labels absent from it start cold.
        Only speed depends on it: every answer is certified as in a cold call.
      tol, rtol, dtype, shard, path: as in :func:`hull_distances`.

    Returns:
      :class:`LabelDistances` in sorted label order.
    """
    tol, rtol, dt = _check_options(tol, rtol, dtype)
    X = as_points(X, "X")
    y = as_labels(labels, X.shape[0], "labels")
    return _label_distances(
        X,
        y,
        tol=tol,
        rtol=rtol,
        dtype=dt,
        shard=shard,
        progress=progress,
        warm_start=warm_start,
        params=_engine(path),
    )


def _label_distances(
    X, y, *, tol, rtol, dtype, shard, progress, warm_start, params
) -> LabelDistances:
    uniq, inv = np.unique(y, return_inverse=True)
    L = uniq.size
    iu, ju = np.triu_indices(L, k=1)
    pairs = np.stack([iu, ju], axis=1)
    by_id, _ = _group_sets(X, inv.astype(np.int64))
    sets = [by_id[k] for k in range(L)]
    res = solve_pairs(
        sets,
        pairs,
        mode="distance",
        tol=tol,
        rtol=rtol,
        dtype=dtype,
        sharding=_sharding(shard),
        progress=progress,
        warm=label_pair_supports(warm_start, uniq),
        params=params,
    )
    M = np.zeros((L, L))
    S = np.zeros((L, L), bool)
    M[iu, ju] = M[ju, iu] = res.distance
    S[iu, ju] = S[ju, iu] = res.separable
    return LabelDistances(uniq, M, S, res, res.supports)


def label_distances_layers(
    layers: Sequence[Any],
    labels: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    shard: Any = None,
    progress: bool = False,
    warm_start: Sequence[LabelDistances | None] | None = None,
    chain: bool = True,
    path: str = "auto",
) -> list[LabelDistances]:
    """:func:`label_distances` of several layers (or checkpoints) of the same examples.

    The layers of one model move little from one to the next, so each layer's
    label pairs can start from the supports of the layer before it
    (``chain``): on PUD POS (7 layers of the default model) the later layers
    then need fewer rounds. ``warm_start`` (one entry per layer, None allowed;
    for instance the same layers at an earlier checkpoint) takes precedence
    over the chain. Every answer is certified as in a cold call; only the
    speed depends on the starts.

    Args:
      layers: K arrays (n, d), the same n examples (rows) in each.
      labels: (n,) labels of the rows.
      warm_start: None or K earlier results (None entries allowed).
      chain: start a layer without its own warm start from the previous
        layer's result.
      tol, rtol, dtype, shard, progress, path: as in :func:`label_distances`.

    Returns:
      K :class:`LabelDistances`, in layer order.
    """
    tol, rtol, dt = _check_options(tol, rtol, dtype)
    params = _engine(path)
    if isinstance(layers, np.ndarray) and layers.ndim == 3:
        layers = list(layers)
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"`layers` must be a list of (n, d) arrays; got {type(layers).__name__}.")
    if warm_start is not None and len(warm_start) != len(layers):
        raise ValueError(f"`warm_start` has {len(warm_start)} entries for {len(layers)} layers.")
    out: list[LabelDistances] = []
    y = None
    for k, Xk in enumerate(layers):
        X = as_points(Xk, f"layers[{k}]")
        if y is None:
            y = as_labels(labels, X.shape[0], "labels")
        elif X.shape[0] != y.shape[0]:
            raise ValueError(f"layers[{k}] has {X.shape[0]} rows; layers[0] has {y.shape[0]}.")
        start = None if warm_start is None else warm_start[k]
        if start is None and chain and out:
            start = out[-1]
        out.append(
            _label_distances(
                X,
                y,
                tol=tol,
                rtol=rtol,
                dtype=dt,
                shard=shard,
                progress=progress,
                warm_start=start,
                params=params,
            )
        )
    return out


def label_pair_supports(prev: LabelDistances | None, labels: np.ndarray) -> list | None:
    """The supports of ``prev`` for the label pairs (i < j, row-major) of
    ``labels`` (sorted): the ``warm`` of :func:`solve_pairs`. Pairs with a
    label that ``prev`` lacks get None; None if prev is None."""
    if prev is None:
        return None
    if not isinstance(prev, LabelDistances):
        raise TypeError(
            "`warm_start` must be the LabelDistances of an earlier call; "
            f"got {type(prev).__name__}."
        )
    L = labels.size
    iu, ju = np.triu_indices(L, k=1)
    if prev.supports is None:
        return [None] * iu.size
    old = {lab: k for k, lab in enumerate(np.asarray(prev.labels).tolist())}
    P = len(old)
    if len(prev.supports) != P * (P - 1) // 2:
        raise ValueError(
            f"`warm_start` has {len(prev.supports)} pair supports for {P} labels; "
            f"expected {P * (P - 1) // 2}."
        )
    new = np.asarray(labels).tolist()
    out = []
    for i, j in zip(iu, ju):
        a, b = old.get(new[i]), old.get(new[j])
        if a is None or b is None:
            out.append(None)
            continue
        # Both label lists are sorted, so a < b; row-major index of (a, b).
        out.append(prev.supports[a * P - a * (a + 1) // 2 + (b - a - 1)])
    return out
