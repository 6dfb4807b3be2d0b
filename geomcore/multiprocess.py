"""The pair axis of one problem across processes started with ``jax.distributed``.

Every process runs the same program on the same inputs::

    import geomcore.multiprocess as gmp
    gmp.initialize()                      # JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
                                          # JAX_PROCESS_ID (or pass them as arguments)
    ld = gmp.distributed_label_distances(X, labels)   # the same result in every process

Process ``p`` of ``P`` solves pairs ``p, p + P, p + 2P, ...`` (strided, so that
expensive pairs spread out) with the public single-process functions, on its own
devices; the per-process results are exchanged with one JAX collective
(:func:`jax.experimental.multihost_utils.process_allgather`; on CPUs over gloo)
and put back in pair order. Every process returns the whole result.

Results are bitwise identical to one process's ``hull_distances`` /
``label_distances`` / ``overlaps``, in every field: on the host path (the
default whenever JAX's backend is the CPU) each pair is solved alone and its
certificates come from pricing products in fixed blocks of directions, so a
pair's result does not depend on which other pairs share its call; the exchange
moves the bytes of the numpy results unchanged. The device path (accelerators,
``path="device"``) groups pairs into blocks whose shapes depend on their
neighbours; it is refused here with a ValueError rather than run with weaker
guarantees.

Without ``jax.distributed`` (one process) the functions equal the single-process
ones.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

__all__ = [
    "initialize",
    "process_share",
    "distributed_hull_distances",
    "distributed_label_distances",
    "distributed_overlaps",
]


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """``jax.distributed.initialize`` with CPU collectives over gloo.

    Call it first thing in every process, before any JAX computation. Arguments
    left as None are read from ``JAX_COORDINATOR_ADDRESS`` (``HOST:PORT`` of
    process 0, reachable by all), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
    (0 .. P-1); on clusters JAX itself detects (SLURM, Open MPI, ...) they may
    all stay unset.
    """
    import jax

    def env_int(value: int | None, name: str) -> int | None:
        if value is not None:
            return int(value)
        text = os.environ.get(name)
        if text is None or text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"${name} must be an integer; got {text!r}.") from None

    num_processes = env_int(num_processes, "JAX_NUM_PROCESSES")
    process_id = env_int(process_id, "JAX_PROCESS_ID")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1; got {num_processes}.")
    if process_id is not None and num_processes is not None and not (
        0 <= process_id < num_processes
    ):
        raise ValueError(f"process_id must be in 0..{num_processes - 1}; got {process_id}.")
    # gloo is JAX's default CPU collective from 0.4.36 on; set it for older versions and to
    # be explicit. (The option exists in every JAX this project supports.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"),
        num_processes=num_processes,
        process_id=process_id,
    )


def process_share(m: int, process: int | None = None, count: int | None = None) -> np.ndarray:
    """Indices of the pairs (of ``m``) that process ``process`` of ``count`` solves."""
    import jax

    count = jax.process_count() if count is None else int(count)
    process = jax.process_index() if process is None else int(process)
    return np.arange(process, m, count, dtype=np.int64)


def _check_path(path: str) -> None:
    import jax

    if path not in ("auto", "host", "device"):
        raise ValueError(f"`path` must be 'auto', 'host' or 'device'; got {path!r}.")
    if path == "device" or (path == "auto" and jax.default_backend() != "cpu"):
        raise ValueError(
            "the multi-process pair axis runs the host path only (bitwise identical to one "
            f"process); path={path!r} on backend {jax.default_backend()!r} would take the "
            "device path. Use path='host', or one process with shard= over its devices."
        )


def _pairs_share(pairs: Any) -> tuple[np.ndarray, int, np.ndarray]:
    """``pairs`` as an (m, 2) array, m, and this process's share of its rows."""
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1:] != (2,):
        raise ValueError(f"`pairs` must have shape (m, 2); got {pairs.shape}.")
    return pairs, pairs.shape[0], process_share(pairs.shape[0])


def _allgather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in process order, in every process."""
    import jax

    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(
        multihost_utils.process_allgather(np.array([payload.size], np.int32))
    ).reshape(-1)
    buf = np.zeros(int(sizes.max()), np.uint8)
    buf[: payload.size] = payload
    gathered = np.asarray(multihost_utils.process_allgather(buf))
    return [pickle.loads(gathered[p, : int(n)].tobytes()) for p, n in enumerate(sizes)]


def _gather_rows(local: Any, m: int, merge) -> Any:
    """Exchange each process's result on its share and interleave back to pair order."""
    import jax

    parts = _allgather_objects(local)
    shares = [process_share(m, p, jax.process_count()) for p in range(len(parts))]
    return merge(parts, shares)


def _merge_hull_results(parts: list[Any], shares: list[np.ndarray], m: int) -> Any:
    from geomcore.results import PAIR_FIELDS, HullResults

    full = [p for p in parts if p is not None]
    fields = {}
    for f in PAIR_FIELDS:
        ref = np.asarray(getattr(full[0], f))
        out = np.empty((m,) + ref.shape[1:], ref.dtype)
        for part, idx in zip(parts, shares):
            if part is not None:
                out[idx] = getattr(part, f)
        fields[f] = out
    supports = None
    if all(p is None or p.supports is not None for p in parts):
        rows: list[Any] = [None] * m
        for part, idx in zip(parts, shares):
            if part is not None:
                for k, s in zip(idx.tolist(), part.supports):
                    rows[k] = s
        supports = tuple(rows)
    n_escalated = int(sum(int(p.n_escalated) for p in full))
    return HullResults(**fields, n_escalated=n_escalated, supports=supports)


def distributed_hull_distances(
    X: Any,
    groups: Any,
    pairs: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    max_iter: int = 20000,
    path: str = "auto",
    progress: bool = False,
) -> Any:
    """:func:`geomcore.hull_distances` with the pairs split over the processes.

    Every process must call it with the same arguments; every process gets the
    whole :class:`~geomcore.HullResults`, bitwise equal to one process's.
    """
    import geomcore

    _check_path(path)
    pairs, m, mine = _pairs_share(pairs)
    kw = dict(tol=tol, rtol=rtol, dtype=dtype, max_iter=max_iter, path=path, shard=False,
              progress=progress)
    if m == 0 or mine.size == len(pairs):
        return geomcore.hull_distances(X, groups, pairs, **kw)
    local = geomcore.hull_distances(X, groups, pairs[mine], **kw) if mine.size else None
    return _gather_rows(local, m, lambda parts, shares: _merge_hull_results(parts, shares, m))


def distributed_label_distances(
    X: Any,
    labels: Any,
    *,
    tol: float | None = None,
    rtol: float | None = None,
    dtype: Any = None,
    path: str = "auto",
    progress: bool = False,
) -> Any:
    """:func:`geomcore.label_distances` with the label pairs split over the processes.

    Same arguments in every process; returns the whole
    :class:`~geomcore.LabelDistances` everywhere, bitwise equal to one process's.
    """
    import geomcore
    from geomcore._validate import as_labels, as_points

    X = as_points(X, "X")
    y = as_labels(labels, X.shape[0], "labels")
    uniq, inv = np.unique(y, return_inverse=True)
    L = uniq.size
    iu, ju = np.triu_indices(L, k=1)
    if L < 2:  # no pair: nothing to split
        return geomcore.label_distances(X, y, tol=tol, rtol=rtol, dtype=dtype, path=path)
    res = distributed_hull_distances(
        X, inv.astype(np.int64), np.stack([iu, ju], axis=1), tol=tol, rtol=rtol, dtype=dtype,
        path=path, progress=progress,
    )
    M = np.zeros((L, L))
    S = np.zeros((L, L), bool)
    M[iu, ju] = M[ju, iu] = res.distance
    S[iu, ju] = S[ju, iu] = res.separable
    return geomcore.LabelDistances(uniq, M, S, res, res.supports)


def distributed_overlaps(
    X: Any,
    groups: Any,
    pairs: Any,
    *,
    tol: float | None = None,
    dtype: Any = None,
    max_iter: int = 20000,
    path: str = "auto",
) -> np.ndarray:
    """:func:`geomcore.overlaps` (one decision per pair) with the pairs split over the
    processes; every process gets the whole (m,) bool array."""
    import geomcore

    _check_path(path)
    pairs, m, mine = _pairs_share(pairs)
    kw = dict(tol=tol, dtype=dtype, max_iter=max_iter, path=path, shard=False)
    if m == 0 or mine.size == m:
        return geomcore.overlaps(X, groups, pairs, **kw)
    local = geomcore.overlaps(X, groups, pairs[mine], **kw) if mine.size else None

    def merge(parts, shares):
        out = np.zeros(m, bool)
        for part, idx in zip(parts, shares):
            if part is not None:
                out[idx] = part
        return out

    return _gather_rows(local, m, merge)
