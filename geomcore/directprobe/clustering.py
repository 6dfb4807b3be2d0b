"""DirectProbe clustering: ``directprobe(X, labels) -> Probe``.

The procedure (docs/design.md, DirectProbe), stated exactly so that the slow test
reference and this fast path give identical clusters:

1. Start from one cluster per point.
2. Among all pairs of active clusters with the same label whose merge is not
   known to be forbidden, take the one with the smallest key
   ``(||c_A - c_B||^2, min(rep), max(rep))`` (centroid c = mean of members,
   updated as ``(n_A c_A + n_B c_B) / (n_A + n_B)`` with A the cluster of
   smaller representative; rep = smallest member index; see ``state.py``).
3. If the convex hull of A u B overlaps the hull of any active cluster of
   another label, the pair is forbidden (it stays forbidden: overlap is
   monotone, so any later pair containing A and B would overlap too);
   otherwise A and B are replaced by A u B.
4. Stop when no allowed same-label pair is left.

Input points that coincide exactly with a point of another label
(``conflicts``) overlap every cluster containing that point, so every merge
involving them is forbidden: they stay singletons and are reported.

Speed (none of it changes the result): first merge to the end without any
check, recording the merge sequence; check the end state only; if it has an
overlapping pair, search back (coarse steps from the end, then bisection) for
the first merge that created an overlap, restricted to the clusters inside
the overlapping end pairs (every earlier overlap would show in the end state).
From the last valid state, continue with checked merges. Checks use, in
order of cost: root certificates (every later cluster lies inside one end
cluster of the unchecked run, so a separable pair of end clusters certifies
all pairs of their sub-clusters: only label pairs that overlap at the end are
ever checked again), bounding-sphere disjointness, float64-verified cached
hyperplanes (re-checked on the added points only), the centroid direction,
recent solver hyperplanes of the same label pair, and finally one batched
engine call with early exit. Merges that replay the unchecked run reuse its
cluster ids, so hyperplanes certified during the search back apply directly.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from geomcore._validate import as_labels, as_points, check_tolerances
from geomcore.directprobe.checks import (
    ActiveIndex,
    Certifier,
    Counters,
    engine_decider,
    lp_decider,
)
from geomcore.directprobe.probe import Probe, ProbeStats, STEP_DTYPE
from geomcore.directprobe.state import Forest, MergeQueue
from geomcore.progress import progress_bar

__all__ = ["directprobe", "encode_labels", "find_conflicts"]

# The search back bisects until the first overlapping merge is known to within
# this many steps; the checked merges take it from there.
_SEARCH_WINDOW = 64

logger = logging.getLogger(__name__)


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique labels and the index of each entry into them."""
    try:
        uniq, y = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise TypeError(
            f"`labels` must be mutually comparable values (all numbers or all strings); {exc}"
        ) from exc
    return uniq, y.astype(np.int64).reshape(-1)


def find_conflicts(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(k, 2) index pairs i < j with X[i] == X[j] exactly and y[i] != y[j]."""
    if X.shape[0] < 2:
        return np.zeros((0, 2), dtype=np.int64)
    _, inv = np.unique(X, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    out = []
    for grp in np.split(order, bounds):
        if grp.size < 2 or np.unique(y[grp]).size < 2:
            continue
        grp = np.sort(grp)
        # One row of the group at a time (a layer whose vectors are all the
        # same, e.g. the [CLS] input embedding, makes one group of every point).
        for ii in range(grp.size - 1):
            jj = grp[ii + 1 :]
            jj = jj[y[jj] != y[grp[ii]]]
            if jj.size:
                out.append(np.stack([np.full(jj.size, grp[ii]), jj], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def _make_decider(decider: Any, tol: float, rtol: float):
    if decider == "engine":
        return engine_decider(tol=tol, rtol=rtol)
    if decider == "lp":
        return lp_decider()
    if callable(decider):
        return decider
    raise ValueError(f"`decider` must be 'engine', 'lp' or a callable; got {decider!r}.")


class _Run:
    """One clustering run: the forest, the certifier and the record of steps."""

    def __init__(self, X, y, frozen, decide, progress):
        self.X, self.y = X, y
        self.f = Forest.singletons(X, y)
        self.c = Counters()
        self.cert = Certifier(self.f, decide, self.c)
        self.frozen = sorted(int(i) for i in frozen)
        self.frozen_set = set(self.frozen)
        # Frozen points sharing a vector id are identical: input conflicts,
        # overlapping by construction, never decided.
        self.vid: dict[int, int] = {}
        if self.frozen:
            ids = np.unique(X[self.frozen], axis=0, return_inverse=True)[1].ravel()
            self.vid = dict(zip(self.frozen, (int(v) for v in ids)))
        self.steps: list[tuple] = []
        self.n_merges = 0
        self.replay: dict[tuple[int, int], int] = {}  # (id a, id b) -> id of a u b
        self.progress = progress
        self.n_phases = 1
        self.bar = progress_bar(None, "directprobe", enabled=False)

    def phase(self, k: int, total: int | None, what: str, unit: str) -> None:
        """Start phase k of the run's progress: one bar per phase, each with
        its own count and rate (the phases run at very different speeds)."""
        self.bar.close()
        self.bar = progress_bar(
            total, f"directprobe {k}/{self.n_phases} {what}", unit=unit, enabled=self.progress
        )

    def record(self, phase: int, lab: int, a: int, b: int, accepted: bool) -> None:
        self.steps.append((phase, lab, self.f.rep(a), self.f.rep(b), accepted))

    # -- phase 1: merge to the end without checks ---------------------------
    def merge_to_end(self, ids_by_label):
        # Unchecked, every label ends as one cluster: the count is exact.
        total = sum(max(len(ids) - 1, 0) for ids in ids_by_label.values())
        self.phase(1, total, "merging without checks", "merge")
        q = MergeQueue(self.f, ids_by_label)
        seq = []  # (label, id a, id b, new id), step t = index + 1
        while (p := q.next_pair()) is not None:
            lab, sa, sb = p
            a, b = q.cluster(lab, sa), q.cluster(lab, sb)
            new = self.f.merge(a, b, step=len(seq) + 1)
            q.merge(lab, sa, sb, new)
            seq.append((lab, a, b, new))
            self.replay[(min(a, b), max(a, b))] = new
            self.bar.update(1)
        return seq, q.active_ids()

    def end_state(self, end: list[int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Decide every pair of end clusters: (separable (E, E), overlapping pairs).

        ``end`` holds the merged labels' clusters and the frozen singletons
        (points given with two labels), which can number thousands on
        non-contextual layers: the E^2/2 pairs are screened as arrays, a block
        of rows at a time, by their bounding spheres (a proof of
        separability), and only the pairs left go to the certifier.
        """
        E = len(end)
        lab = np.fromiter((self.f.label[k] for k in end), np.int64, E)
        vid = np.fromiter((self.vid.get(k, -1) for k in end), np.int64, E)
        sep = np.zeros((E, E), bool)
        left: list[int] = []
        right: list[int] = []
        block = max(1, (1 << 22) // max(E, 1))
        for r0 in range(0, E, block):
            rows = np.arange(r0, min(E, r0 + block))
            apart = self.cert.spheres_apart_grid(end[r0 : r0 + rows.size], end)
            todo = (lab[rows][:, None] != lab[None, :]) & (rows[:, None] < np.arange(E)[None, :])
            todo &= ~((vid[rows][:, None] == vid[None, :]) & (vid[rows][:, None] >= 0))
            hit = todo & apart
            self.c.sphere += int(hit.sum())
            sep[r0 : r0 + rows.size] |= hit
            for i, j in zip(*np.nonzero(todo & ~apart)):
                left.append(end[r0 + i])
                right.append(end[j])
        ov = self.cert.pairs_overlap(left, right, any_only=False) if left else np.zeros(0, bool)
        pos = {k: i for i, k in enumerate(end)}
        bad = []
        for p, q, o in zip(left, right, ov):
            if o:
                bad.append((p, q))
            else:
                sep[pos[p], pos[q]] = True
        sep |= sep.T
        counts = np.unique(lab, return_counts=True)[1]
        logger.info("end state: %d of %d cluster pairs overlap", len(bad),
                    (E * E - int((counts * counts).sum())) // 2)
        return sep, bad

    def _conflict_pair(self, p: int, q: int) -> bool:
        """Both singletons of conflicting identical points: an input overlap."""
        vp = self.vid.get(p, -1)
        return vp >= 0 and vp == self.vid.get(q, -2)

    def valid_at(self, t: int, bad_roots) -> bool:
        """No overlap inside the overlapping end pairs after merge step t."""
        self.c.checks += 1
        self.bar.update(1)
        logger.debug("search back: checking the state after merge %d", t)
        for F, G in bad_roots:
            cs, ds = self.f.active_at(F, t), self.f.active_at(G, t)
            if self.cert.grid_overlaps(cs, ds, skip=self._conflict_pair):
                return False
        return True

    def search_back(self, T: int, bad_roots, window: int = 1) -> tuple[int, int]:
        """Steps lo < hi, hi - lo <= window, valid at lo and invalid at hi.

        The first overlapping merge t* lies in (lo, hi]. With window 1 it is hi;
        a wider window leaves the last few steps to the checked merges, which
        find t* by checking unions only (each state check of the bisection
        decides every cluster pair inside the overlapping end pairs).
        """
        lo, hi = 0, T  # valid(lo) (no merges), invalid(hi)
        step = max(1, math.ceil(0.05 * T))
        k = T - step
        while k > lo:
            if self.valid_at(k, bad_roots):
                lo = k
                break
            hi = k
            k -= step
        while hi - lo > window:
            mid = (lo + hi) // 2
            if self.valid_at(mid, bad_roots):
                lo = mid
            else:
                hi = mid
        return lo, hi

    # -- phase 3: checked merges --------------------------------------------
    def forward(self, q: MergeQueue, first_block=None):
        if first_block is not None:
            lab, a, b = first_block
            sa = int(np.flatnonzero(q.ids[lab] == a)[0])
            sb = int(np.flatnonzero(q.ids[lab] == b)[0])
            q.block(lab, sa, sb)
            self.record(2, lab, a, b, False)
        active = sorted(set(q.active_ids()) | set(self.frozen))
        index = ActiveIndex(self.f, active, self.cert.mean(), self.cert.root_of)
        while (p := q.next_pair()) is not None:
            lab, sa, sb = p
            a, b = q.cluster(lab, sa), q.cluster(lab, sb)
            # A merge the unchecked run also made gives the same cluster (same
            # members, same centroid arithmetic): reuse its id, so that the
            # hyperplanes the search back certified for it apply directly.
            u = self.replay.get((min(a, b), max(a, b)))
            if u is None:
                u = self.f.merge(a, b, step=-1)
            if self.cert.union_overlaps(u, a, b, index):
                q.block(lab, sa, sb)
                self.cert.forget(u)
                self.record(2, lab, a, b, False)
            else:
                q.merge(lab, sa, sb, u)
                index.remove(a)
                index.remove(b)
                index.add(u)
                self.cert.forget(a)
                self.cert.forget(b)
                self.record(2, lab, a, b, True)
                self.n_merges += 1
                self.bar.update(1)
        self.bar.close()
        return sorted(int(k) for k in index.id[index.alive])


def directprobe(
    X: Any,
    labels: Any,
    *,
    tol: float = 1e-6,
    rtol: float = 1e-4,
    progress: bool = False,
    decider: Any = "engine",
    search_back: bool = True,
) -> Probe:
    """Cluster labelled points into the fewest label-pure, mutually non-overlapping groups.

    Runs the greedy DirectProbe procedure of the module docstring: repeatedly
    merge the same-label pair of clusters with the nearest centroids unless the
    union's convex hull overlaps a cluster of another label.

    Guarantees: clusters are label-pure; no two clusters of different labels
    overlap (except points given with two labels, see ``Probe.conflicts``);
    maximal: the union of any two same-label final clusters overlaps some
    other-label cluster; deterministic (ties by lower representative index).

    Args:
      X: (n, d) points (numpy, JAX, DLPack / torch tensors).
      labels: (n,) labels, any sortable values (ints or strings).
      tol: overlap tolerance relative to the data diameter, passed to the
        engine (hulls closer than ``tol * scale`` overlap).
      rtol: the engine's relative distance tolerance.
      progress: show the run's progress, one bar per phase (merging without
        checks: exact count; the end state and the search back: at most 1 +
        20 + log2(merges) checks; checked merges: at most the clusters left
        minus the labels). A terminal gets tqdm bars, a log plain lines at
        most every 15 s (:mod:`geomcore.progress`).
      decider: "engine" (the batched hull solver, default), "lp" (one exact
        HiGHS LP per pair; slow) or a callable ``(sets, pairs, any_only) ->
        checks.Decision``.
      search_back: use the merge-to-the-end-then-search-back speed-up (the
        result is the same either way).

    Returns:
      A frozen :class:`Probe`.
    """
    Xv = as_points(X, "X")
    n = Xv.shape[0]
    raw = as_labels(labels, n, "labels")
    uniq, y = encode_labels(raw)
    tol, rtol = check_tolerances(tol, rtol)
    decide = _make_decider(decider, tol, rtol)
    conflicts = find_conflicts(Xv, y)
    frozen = np.unique(conflicts) if conflicts.size else np.zeros(0, np.int64)
    if conflicts.size:
        logger.warning(
            "%d pairs of identical points carry different labels (first: rows %d and %d); "
            "they overlap by construction and stay singleton clusters.",
            len(conflicts),
            conflicts[0, 0],
            conflicts[0, 1],
        )
    run = _Run(Xv, y, frozen, decide, progress)
    try:
        # The host work is many small BLAS calls (one centroid row against a
        # label's centroids per merge): threads cost more than they give, and
        # on a shared machine a multi-threaded BLAS spins against other jobs
        # (measured 5x slower on 2 busy cores). The engine (XLA) keeps its own.
        with threadpool_limits(limits=1, user_api="blas"):
            final = _cluster(run, uniq.size, search_back)
    finally:
        run.bar.close()
    return _build_probe(run, Xv, uniq, y, final, conflicts)


def _ids_by_label(run: _Run, ids, n_labels):
    out = {lab: [] for lab in range(n_labels)}
    for k in ids:
        if k not in run.frozen_set:
            out[run.f.label[k]].append(k)
    return out


def _cluster(run: _Run, n_labels: int, search_back: bool) -> list[int]:
    n = run.X.shape[0]
    start = [i for i in range(n)]
    first_error = -1
    T = 0
    first_block = None
    if search_back:
        run.n_phases = 3
        seq, end = run.merge_to_end(_ids_by_label(run, start, n_labels))
        T = len(seq)
        step = max(1, math.ceil(0.05 * T))
        run.phase(
            2, 1 + 20 + step.bit_length(), "checking the end state, searching back", "check"
        )
        logger.info("merged to the end without checks: %d merges, %d clusters", T, len(end))
        end = sorted(end) + run.frozen
        run.c.checks += 1
        run.bar.update(1)
        sep, bad = run.end_state(end)
        # Every later cluster lies inside one end cluster: the separable end
        # pairs certify all pairs of their sub-clusters.
        run.cert.set_roots(end, sep)
        if not bad:
            run.search_info = (T, -1)
            for lab, a, b, _ in seq:
                run.record(1, lab, a, b, True)
            run.n_merges = T
            run.bar.close()
            return sorted(end)
        lo, hi = run.search_back(T, bad, window=_SEARCH_WINDOW)
        logger.info("search back: the first overlapping merge is in steps %d..%d of %d",
                    lo + 1, hi, T)
        for lab, a, b, _ in seq[:lo]:
            run.record(1, lab, a, b, True)
        run.n_merges = lo
        roots = sorted(k for k in end if k not in run.frozen_set)
        start = sorted({c for r in roots for c in run.f.active_at(r, lo)})
        if hi - lo == 1:
            lab, a, b, _ = seq[lo]
            first_block = (lab, a, b)
            first_error = hi
        else:
            first_error = None  # the checked merges find it
    by_label = _ids_by_label(run, start, n_labels)
    run.phase(
        run.n_phases,
        sum(max(len(ids) - 1, 0) for ids in by_label.values()),
        "checked merges (at most)",
        "merge",
    )
    q = MergeQueue(run.f, by_label)
    n_before = len(run.steps)
    final = run.forward(q, first_block)
    if first_error is None:
        # The merges accepted before the forward run's first block, then the block.
        accepted = 0
        for step in run.steps[n_before:]:
            if not step[4]:
                break
            accepted += 1
        first_error = lo + accepted + 1
    run.search_info = (T, first_error)
    return final


def _build_probe(run, X, uniq, y, final, conflicts) -> Probe:
    f = run.f
    order = sorted(final, key=lambda k: (f.label[k], f.rep(k)))
    K = len(order)
    cluster_of = np.full(X.shape[0], -1, dtype=np.int64)
    members = []
    for cid, k in enumerate(order):
        m = f.members[k].copy()
        m.setflags(write=False)
        members.append(m)
        cluster_of[m] = cid
    if (cluster_of < 0).any():  # an internal invariant: every point in one cluster
        raise RuntimeError("directprobe lost points; this is a bug, please report it.")
    cluster_label = np.array([f.label[k] for k in order], dtype=np.int64)
    centroids = (
        np.stack([X[m].mean(axis=0) for m in members]) if K else np.zeros((0, X.shape[1]))
    )
    steps = np.array(run.steps, dtype=STEP_DTYPE)
    T, first_error = getattr(run, "search_info", (0, -1))
    c = run.c
    stats = ProbeStats(
        n_checks=c.checks,
        n_sphere=c.sphere,
        n_cached=c.cached,
        n_engine_calls=c.engine_calls,
        n_engine_pairs=c.engine_pairs,
        n_escalated=c.escalated,
        unchecked_merges=T,
        first_error_step=first_error,
        n_rooted=c.rooted,
        n_centroid=c.centroid,
        n_pooled=c.pooled,
        n_warm=c.warm,
    )
    return Probe(
        X=X,
        labels=uniq,
        y=y,
        cluster_of=cluster_of,
        cluster_label=cluster_label,
        members=tuple(members),
        centroids=centroids,
        n_merges=int((steps["accepted"]).sum()) if steps.size else 0,
        n_checks=c.checks,
        steps=steps,
        stats=stats,
        conflicts=conflicts,
    )
