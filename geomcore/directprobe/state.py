"""Array state of the DirectProbe clustering: the cluster forest and the merge queue.

Definitions shared by the fast path and the test reference (they must agree to
the last bit so that both produce identical partitions):

* A cluster's **representative** ``rep`` is its smallest member index.
* A cluster's **centroid** is the mean of its members. It is computed
  incrementally: a singleton's centroid is its point; merging A and B, where A
  is the cluster with the smaller representative, gives
  ``(n_A * c_A + n_B * c_B) / (n_A + n_B)`` in float64.
* The **distance** between two clusters is the squared Euclidean distance of
  their centroids, ``np.sum((c_A - c_B) ** 2)`` in float64.
* **Order of pairs**: pairs are compared by the key ``(distance, min(rep),
  max(rep))``; the smallest key is taken first. Ties in distance are therefore
  broken by the lower representative first, then the lower second one.

:class:`MergeQueue` keeps, per label, the active clusters in slots with their
nearest allowed partner, so the globally smallest pair is found without an
n x n matrix (memory O(n d); each merge costs O(K_l d) for the label's K_l
active clusters, plus one such row for every cluster whose nearest partner
was consumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Forest", "MergeQueue", "pair_key"]


# Labels with fewer slots than this are never compacted (nothing to gain).
_COMPACT_MIN = 64


def pair_key(d: float, rep_a: int, rep_b: int) -> tuple[float, int, int]:
    """The total order of candidate pairs: distance, then lower rep, then higher rep."""
    return (d, min(rep_a, rep_b), max(rep_a, rep_b))


def sq_dists(centroids: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distances from c to each row of centroids, ``np.sum((C - c)**2, axis=1)``.

    Bitwise equal to ``np.sum((C[i] - c) ** 2)`` for every row (same pairwise
    summation along the contiguous axis), which the reference uses.
    """
    return np.sum((centroids - c) ** 2, axis=1)


@dataclass
class Forest:
    """Every cluster ever formed, indexed by a cluster id that is never reused.

    Ids 0..n-1 are the singletons (id i holds point i); each merge appends a new
    id. ``step[k]`` is the merge step that formed cluster k (0 for singletons),
    ``children[k]`` the two ids it was formed from ((-1, -1) for singletons).
    """

    X: np.ndarray
    y: np.ndarray
    members: list = field(default_factory=list)
    centroid: list = field(default_factory=list)
    label: list = field(default_factory=list)
    step: list = field(default_factory=list)
    children: list = field(default_factory=list)
    _radius: dict = field(default_factory=dict)

    @classmethod
    def singletons(cls, X: np.ndarray, y: np.ndarray) -> "Forest":
        n = X.shape[0]
        f = cls(X=X, y=y)
        f.members = [np.array([i], dtype=np.int64) for i in range(n)]
        f.centroid = [X[i].copy() for i in range(n)]
        f.label = [int(v) for v in y]
        f.step = [0] * n
        f.children = [(-1, -1)] * n
        return f

    def rep(self, k: int) -> int:
        return int(self.members[k][0])

    def size(self, k: int) -> int:
        return int(self.members[k].shape[0])

    def merge(self, a: int, b: int, step: int) -> int:
        """Form the union of clusters a and b (same label); return its new id."""
        if self.rep(a) > self.rep(b):
            a, b = b, a
        na, nb = self.size(a), self.size(b)
        c = (na * self.centroid[a] + nb * self.centroid[b]) / (na + nb)
        m = np.concatenate([self.members[a], self.members[b]])
        m.sort(kind="stable")
        self.members.append(m)
        self.centroid.append(c)
        self.label.append(self.label[a])
        self.step.append(step)
        self.children.append((a, b))
        return len(self.members) - 1

    def radius(self, k: int) -> float:
        """Bounding-sphere radius: max distance of a member to the centroid (cached)."""
        r = self._radius.get(k)
        if r is None:
            diff = self.X[self.members[k]] - self.centroid[k]
            r = float(np.sqrt(np.max(np.einsum("ij,ij->i", diff, diff))))
            self._radius[k] = r
        return r

    def radii(self, ks: Sequence[int]) -> np.ndarray:
        """:meth:`radius` of many clusters; the missing ones in one pass.

        The search back screens all clusters active at a step, most of them
        never measured: one gather of their points and one reduction per
        cluster (``np.maximum.reduceat``) instead of a gather per cluster.
        """
        todo = sorted({int(k) for k in ks if k not in self._radius})
        if len(todo) > 1:
            sizes = np.array([self.members[k].shape[0] for k in todo])
            idx = np.concatenate([self.members[k] for k in todo])
            cen = np.repeat(np.stack([self.centroid[k] for k in todo]), sizes, axis=0)
            diff = self.X[idx] - cen
            sq = np.einsum("ij,ij->i", diff, diff)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            for k, r in zip(todo, np.sqrt(np.maximum.reduceat(sq, starts))):
                self._radius[k] = float(r)
        return np.fromiter((self.radius(k) for k in ks), np.float64, len(ks))

    def active_at(self, root: int, t: int) -> list[int]:
        """Ids of the clusters under ``root`` that are active after merge step t."""
        out, stack = [], [root]
        while stack:
            k = stack.pop()
            if self.step[k] <= t:
                out.append(k)
            else:
                stack.extend(self.children[k])
        out.sort()
        return out


class MergeQueue:
    """Per-label nearest-centroid pairs, for the greedy merge loop.

    Holds the active, mergeable clusters (ids into a :class:`Forest`) of every
    label in slots; for each slot its nearest allowed partner (the smallest
    :func:`pair_key`), excluding blocked pairs. Blocked pairs are those whose
    union is known to overlap another label's cluster; because overlap is
    monotone, a block is inherited by every cluster formed from a blocked one.
    """

    def __init__(self, forest: Forest, ids_by_label: dict[int, list[int]]):
        self.forest = forest
        self.labels = sorted(ids_by_label)
        self.ids: dict[int, np.ndarray] = {}
        self.cent: dict[int, np.ndarray] = {}
        self.rep: dict[int, np.ndarray] = {}
        self.alive: dict[int, np.ndarray] = {}
        self.nn: dict[int, np.ndarray] = {}
        self.nnd: dict[int, np.ndarray] = {}
        self.blocked: dict[int, list[set]] = {}
        # stale[s]: nnd[s] is only a lower bound (its partner changed); the
        # partner is recomputed when s could be the smallest pair.
        self.stale: dict[int, np.ndarray] = {}
        self._heads: dict = {}
        self.mu: dict[int, np.ndarray] = {}
        self.cc: dict[int, np.ndarray] = {}
        self.sq: dict[int, np.ndarray] = {}
        for lab in self.labels:
            ids = sorted(ids_by_label[lab], key=forest.rep)
            k = len(ids)
            self.ids[lab] = np.array(ids, dtype=np.int64)
            self.cent[lab] = (
                np.stack([forest.centroid[i] for i in ids])
                if k
                else np.zeros((0, forest.X.shape[1]))
            )
            self.rep[lab] = np.array([forest.rep(i) for i in ids], dtype=np.int64)
            self.alive[lab] = np.ones(k, dtype=bool)
            self.nn[lab] = np.full(k, -1, dtype=np.int64)
            self.nnd[lab] = np.full(k, np.inf)
            self.blocked[lab] = [set() for _ in range(k)]
            self.stale[lab] = np.zeros(k, dtype=bool)
            # Centered copies for the fast (BLAS) screening of distances.
            mu = self.cent[lab].mean(axis=0) if k else np.zeros(forest.X.shape[1])
            self.mu[lab] = mu
            self.cc[lab] = self.cent[lab] - mu
            self.sq[lab] = np.einsum("ij,ij->i", self.cc[lab], self.cc[lab])
            self._init_nn(lab)

    # -- nearest partner -------------------------------------------------
    # Distances are screened with the expanded form |a|^2 + |b|^2 - 2 a.b
    # (BLAS, approximate) and recomputed exactly (``sq_dists``) for every
    # entry that could be the minimum or tie with it: the error of the
    # expanded form is below ``_REL * (|a|^2 + |b|^2)``, a bound with a wide
    # safety factor over d * eps. The exact values alone decide, so the result
    # is bitwise the one of the plain formula.
    def _margin(self, lab: int, sq_s) -> np.ndarray:
        d = self.cent[lab].shape[1]
        return (64.0 * d * np.finfo(np.float64).eps) * (self.sq[lab] + sq_s) + 1e-300

    def _init_nn(self, lab: int, chunk: int = 256) -> None:
        k = self.ids[lab].shape[0]
        cc, sq, cent = self.cc[lab], self.sq[lab], self.cent[lab]
        dim = cent.shape[1]
        for lo in range(0, k, chunk):
            rows = np.arange(lo, min(k, lo + chunk))
            ap = sq[rows, None] + sq[None, :] - 2.0 * (cc[rows] @ cc.T)
            mg = (64.0 * dim * np.finfo(np.float64).eps) * (sq[rows, None] + sq[None, :]) + 1e-300
            ap[np.arange(rows.size), rows] = np.inf
            lim = np.min(ap + mg, axis=1)
            need = ((ap - mg) <= lim[:, None]) & np.isfinite(ap)
            for r, s in enumerate(rows):
                idx = np.flatnonzero(need[r])
                d = np.full(k, np.inf)
                if idx.size:
                    d[idx] = sq_dists(cent[idx], cent[s])
                j, dj = self._best_of(lab, int(s), d)
                self.nn[lab][s], self.nnd[lab][s] = j, dj

    def _best_of(self, lab: int, s: int, d: np.ndarray) -> tuple[int, float]:
        """Smallest pair_key partner of slot s given distances d to all slots."""
        m = d.min() if d.size else np.inf
        if not np.isfinite(m):
            return -1, np.inf
        cand = np.flatnonzero(d == m)
        if cand.size == 1:
            return int(cand[0]), float(m)
        reps = self.rep[lab]
        rs = reps[s]
        keys = [(min(rs, reps[j]), max(rs, reps[j]), int(j)) for j in cand]
        return min(keys)[2], float(m)

    def _masked_dists(self, lab: int, s: int, bound: np.ndarray | None = None) -> np.ndarray:
        """Distances from slot s to all slots (inf: dead, s itself, blocked).

        Exact (``sq_dists``) wherever the value can matter: near the minimum,
        and, if ``bound`` is given, wherever it may be <= bound; elsewhere an
        approximation known to exceed both.
        """
        cc, sq = self.cc[lab], self.sq[lab]
        ap = sq + sq[s] - 2.0 * (cc @ cc[s])
        ap[~self.alive[lab]] = np.inf
        ap[s] = np.inf
        bl = self.blocked[lab][s]
        if bl:
            ap[list(bl)] = np.inf
        mg = self._margin(lab, sq[s])
        lim = np.min(ap + mg) if ap.size else np.inf
        low = ap - mg
        need = low <= lim
        if bound is not None:
            need |= low <= bound
        need &= np.isfinite(ap)
        idx = np.flatnonzero(need)
        if idx.size:
            ap[idx] = sq_dists(self.cent[lab][idx], self.cent[lab][s])
        return ap

    def _refresh(self, lab: int, s: int) -> None:
        j, dj = self._best_of(lab, s, self._masked_dists(lab, s))
        self.nn[lab][s] = j
        self.nnd[lab][s] = dj
        self.stale[lab][s] = False

    def head(self, lab: int) -> tuple[tuple[float, int, int], int, int] | None:
        """The label's smallest pair as (key, slot a, slot b), or None (cached)."""
        if lab not in self._heads:
            self._heads[lab] = self._head(lab)
        return self._heads[lab]

    def _head(self, lab: int) -> tuple[tuple[float, int, int], int, int] | None:
        nnd = self.nnd[lab]
        if nnd.size == 0:
            return None
        stale = self.stale[lab]
        while True:
            m = nnd.min()
            if not np.isfinite(m):
                return None
            cand = np.flatnonzero(nnd == m)
            lazy = cand[stale[cand]]
            if lazy.size == 0:
                break
            # A stale bound ties the minimum: find its true partner first.
            for s in lazy:
                self._refresh(lab, int(s))
        reps, nn = self.rep[lab], self.nn[lab]
        best = min((pair_key(float(m), reps[s], reps[nn[s]]), int(s)) for s in cand)
        s = best[1]
        return best[0], s, int(nn[s])

    def next_pair(self) -> tuple[int, int, int] | None:
        """The globally smallest allowed pair as (label, slot a, slot b), or None."""
        best = None
        for lab in self.labels:
            h = self.head(lab)
            if h is not None and (best is None or h[0] < best[0]):
                best = (h[0], lab, h[1], h[2])
        return None if best is None else best[1:]

    def cluster(self, lab: int, s: int) -> int:
        return int(self.ids[lab][s])

    # -- updates -----------------------------------------------------------
    def block(self, lab: int, a: int, b: int) -> None:
        """Forbid merging slots a and b (their union overlaps another label)."""
        self._heads.pop(lab, None)
        self.blocked[lab][a].add(b)
        self.blocked[lab][b].add(a)
        self._refresh(lab, a)
        self._refresh(lab, b)

    def merge(self, lab: int, a: int, b: int, new_id: int) -> None:
        """Replace slots a and b by the new cluster ``new_id`` (already in the forest)."""
        self._heads.pop(lab, None)
        reps = self.rep[lab]
        if reps[a] > reps[b]:
            a, b = b, a
        # The union keeps slot a (the smaller representative); slot b dies.
        alive = self.alive[lab]
        alive[b] = False
        self.nn[lab][b] = -1
        self.nnd[lab][b] = np.inf
        bl = self.blocked[lab]
        inherited = (bl[a] | bl[b]) - {a, b}
        for k in bl[b]:
            if k != a:
                bl[k].discard(b)
                bl[k].add(a)
        bl[b] = set()
        bl[a] = inherited
        self.ids[lab][a] = new_id
        self.cent[lab][a] = self.forest.centroid[new_id]
        self.cc[lab][a] = self.cent[lab][a] - self.mu[lab]
        self.sq[lab][a] = float(self.cc[lab][a] @ self.cc[lab][a])
        # reps[a] is already the smaller representative.
        d = self._masked_dists(lab, a, bound=self.nnd[lab])
        j, dj = self._best_of(lab, a, d)
        self.nn[lab][a], self.nnd[lab][a] = j, dj
        nn, nnd, stale = self.nn[lab], self.nnd[lab], self.stale[lab]
        stale[b] = False
        others = alive.copy()
        others[a] = False
        # Slots whose partner was a or b: their distances to every unchanged
        # cluster are >= the old nnd, so it stays a valid lower bound.
        stale |= others & ((nn == a) | (nn == b))
        closer = others & (d < nnd)
        # Strictly closer than a (bound on the) best: the new cluster is the partner.
        nn[closer] = a
        nnd[closer] = d[closer]
        stale[closer] = False
        # Exact distance ties with a known partner: the pair key decides.
        tie = others & ~stale & ~closer & (d == nnd) & np.isfinite(d)
        for k in np.flatnonzero(tie):
            if pair_key(0.0, reps[k], reps[a]) < pair_key(0.0, reps[k], reps[nn[k]]):
                nn[k] = a
        if alive.size >= _COMPACT_MIN and 2 * int(alive.sum()) < alive.size:
            self._compact(lab)

    def _compact(self, lab: int) -> None:
        """Drop the label's dead slots (the order of the living is kept).

        Every merge scores the new cluster against all slots of its label, so
        without this a label's cost per merge stays at its initial size while
        its living clusters dwindle (about half the merge-to-the-end time on
        PUD POS). Slot numbers change; ids, representatives and every decision
        do not.
        """
        self._heads.pop(lab, None)
        keep = np.flatnonzero(self.alive[lab])
        new_of = np.full(self.alive[lab].size, -1, dtype=np.int64)
        new_of[keep] = np.arange(keep.size)
        for table in (self.ids, self.cent, self.rep, self.nnd, self.stale, self.cc, self.sq):
            table[lab] = table[lab][keep]
        nn = self.nn[lab][keep]
        # A partner that died leaves its slot stale (see merge): -1 until refreshed.
        self.nn[lab] = np.where(nn >= 0, new_of[np.maximum(nn, 0)], -1)
        bl = self.blocked[lab]
        self.blocked[lab] = [{int(new_of[j]) for j in bl[s]} for s in keep]
        self.alive[lab] = np.ones(keep.size, dtype=bool)

    def active_ids(self) -> list[int]:
        out = []
        for lab in self.labels:
            out.extend(int(i) for i in self.ids[lab][self.alive[lab]])
        return out
