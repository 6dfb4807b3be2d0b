"""Overlap decisions for DirectProbe, each backed by a certificate.

A pair of clusters is called *separable* only with a proof:

* disjoint bounding spheres (centroid, max member distance): the spheres are
  convex supersets of the hulls, so the hulls are disjoint. A relative safety
  margin of 1e-9 absorbs the float64 rounding of the radii;
* a hyperplane ``w`` verified in float64: ``max <w, a> < min <w, c>`` over all
  members (cached hyperplanes are re-verified on the grown cluster, which costs
  O(added points x d));
* the decision of the hull engine (``solve_pairs(mode="decide")``: a float64
  verified slab or the exact LP).

and *overlapping* only by the engine (``U <= tol * scale`` or the exact LP), or
by monotonicity from an earlier such decision (a superset of an overlapping
pair overlaps).

Deciders are small callables ``decide(sets, pairs, any_only) -> Decision`` so
the clustering can run on the engine (default) or on the exact LP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from geomcore.directprobe.state import Forest

__all__ = ["ActiveIndex", "Decision", "engine_decider", "lp_decider", "Certifier", "Counters"]

logger = logging.getLogger(__name__)

_SPHERE_MARGIN = 1e-9
_PLANE_CHUNK = 4096
_POOL = 64  # pooled hyperplanes kept per label pair


class Decision(NamedTuple):
    """Outcome of a batch of pair decisions (one row per pair).

    overlap: True where the hulls were decided to overlap.
    skipped: True where the pair was not examined (early exit).
    w, b: (m, d), (m,) hyperplanes oriented so that ``A @ w - b > 0 > B @ w - b``
      for the pair (A, B) = (sets[pairs[i, 0]], sets[pairs[i, 1]]); rows of
      overlapping or skipped pairs are meaningless. ``w`` may be None.
    n_escalated: pairs decided by the exact LP.
    supports: optional, per pair, the points that decided it as ``(ia, a, ib,
      b)`` (indices into the pair's two sets and convex weights; None where
      unknown): the engine's nearest points or overlap witness, used to
      warm-start the next decision of a grown pair.
    """

    overlap: np.ndarray
    skipped: np.ndarray
    w: np.ndarray | None
    b: np.ndarray | None
    n_escalated: int
    supports: tuple | None = None


Decider = Callable[[Sequence[np.ndarray], np.ndarray, bool], Decision]


def engine_decider(tol: float = 1e-6, rtol: float = 1e-4) -> Decider:
    """Decisions by the hull engine, ``geomcore.solvers.router.solve_pairs``."""
    from geomcore.results import Status
    from geomcore.solvers.router import solve_pairs

    def decide(sets, pairs, any_only, warm=None):
        try:
            res = solve_pairs(
                sets, pairs, mode="decide", tol=tol, rtol=rtol, any_only=any_only, warm=warm
            )
        except RuntimeError as exc:
            logger.warning(
                "the hull engine failed on a batch of %d pairs (%s); deciding them one by one",
                len(pairs),
                exc,
            )
            return _one_by_one(sets, pairs, any_only)
        status = np.asarray(res.status)
        skipped = status == int(Status.SKIPPED)
        sep = np.asarray(res.separable, dtype=bool)
        return Decision(
            overlap=~sep & ~skipped,
            skipped=skipped,
            w=np.asarray(res.w, dtype=np.float64),
            b=np.asarray(res.b, dtype=np.float64),
            n_escalated=int(res.n_escalated),
            supports=res.supports,
        )

    def _one_by_one(sets, pairs, any_only):
        m, d = len(pairs), sets[0].shape[1]
        overlap, skipped = np.zeros(m, bool), np.zeros(m, bool)
        W, b = np.zeros((m, d)), np.zeros(m)
        n_esc = 0
        for i, (p, q) in enumerate(pairs):
            A, B = sets[p], sets[q]
            try:
                r = solve_pairs([A, B], np.array([[0, 1]]), mode="decide", tol=tol, rtol=rtol)
                sep, W[i], b[i] = bool(r.separable[0]), r.w[0], float(r.b[0])
                n_esc += int(r.n_escalated)
            except RuntimeError as exc:
                # The engine's own exact LP failed on this pair: the full HiGHS
                # LP on all points decides it (a certificate either way).
                logger.warning(
                    "hull engine failed on a pair of %d and %d points (%s); using the full "
                    "HiGHS LP",
                    A.shape[0],
                    B.shape[0],
                    exc,
                )
                w = _lp_separate(A, B)
                n_esc += 1
                sep = w is not None
                if sep:
                    W[i] = w
                    b[i] = 0.5 * (float(np.min(A @ w)) + float(np.max(B @ w)))
            if not sep:
                overlap[i] = True
                if any_only:
                    skipped[i + 1 :] = True
                    break
        return Decision(overlap, skipped, W, b, n_esc)

    decide.accepts_warm = True
    return decide


def _lp_separate(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """HiGHS feasibility LP: w, b with A w - b >= 1 and B w - b <= -1, or None.

    Feasible exactly when the hulls are strictly separable. Solved in centered,
    scaled coordinates (the answer is invariant to both) for conditioning.
    """
    from scipy.optimize import linprog

    Z = np.vstack([A, B])
    mu = Z.mean(axis=0)
    s = float(np.max(np.abs(Z - mu))) or 1.0
    As, Bs = (A - mu) / s, (B - mu) / s
    d = A.shape[1]
    A_ub = np.vstack(
        [
            np.hstack([-As, np.ones((As.shape[0], 1))]),
            np.hstack([Bs, -np.ones((Bs.shape[0], 1))]),
        ]
    )
    b_ub = -np.ones(A_ub.shape[0])
    messages = []
    # Dual simplex first; HiGHS's interior point method as a second opinion
    # when the simplex ends in an unknown state (thin or degenerate pairs).
    for method in ("highs-ds", "highs-ipm"):
        res = linprog(
            np.zeros(d + 1), A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (d + 1), method=method
        )
        if res.status == 0:
            w = res.x[:d] / s
            # Keep only a verified separation; otherwise ask the next method.
            if float(np.min(A @ w)) > float(np.max(B @ w)):
                return w
            messages.append(f"{method}: feasible but not verified in float64")
            continue
        if res.status == 2:
            return None
        messages.append(f"{method}: {res.message}")
    raise RuntimeError(
        f"HiGHS could not decide a pair of {A.shape[0]} and {B.shape[0]} points ("
        + "; ".join(messages)
        + ")."
    )


def lp_decider() -> Decider:
    """Exact decisions by one HiGHS LP per pair (slow; for small inputs and checks)."""

    def decide(sets, pairs, any_only):
        m = len(pairs)
        d = sets[0].shape[1]
        overlap = np.zeros(m, bool)
        skipped = np.zeros(m, bool)
        W = np.zeros((m, d))
        b = np.zeros(m)
        for i, (p, q) in enumerate(pairs):
            w = _lp_separate(sets[p], sets[q])
            if w is None:
                overlap[i] = True
                if any_only:
                    skipped[i + 1 :] = True
                    break
            else:
                W[i] = w
                b[i] = 0.5 * (float(np.min(sets[p] @ w)) + float(np.max(sets[q] @ w)))
        return Decision(overlap, skipped, W, b, int((~skipped).sum()))

    return decide


@dataclass
class Counters:
    """What the clustering did (mutable while it runs, frozen into ProbeStats)."""

    checks: int = 0
    sphere: int = 0
    cached: int = 0
    engine_calls: int = 0
    engine_pairs: int = 0
    escalated: int = 0
    rooted: int = 0
    centroid: int = 0
    pooled: int = 0
    warm: int = 0


class ActiveIndex:
    """The active clusters of the checked phase as arrays, for vectorised screening.

    One slot per active cluster: its id, label, root (index into the roots of
    :meth:`Certifier.set_roots`, -1 if none), bounding sphere (centroid,
    centred on the data mean, its squared norm, radius). Slots of merged
    clusters are reused. A check of a union against every cluster of another
    label reads these arrays once (one matrix-vector product for the spheres)
    instead of gathering tens of thousands of centroids per check.
    """

    def __init__(self, forest: Forest, ids: Sequence[int], mu: np.ndarray, root_of):
        n = max(len(ids), 1)
        d = forest.X.shape[1]
        self.f, self.mu, self.root_of = forest, mu, root_of
        self.id = np.full(n, -1, np.int64)
        self.label = np.full(n, -1, np.int64)
        self.root = np.full(n, -1, np.int64)
        self.cen = np.zeros((n, d))
        self.sq = np.zeros(n)
        self.rad = np.zeros(n)
        self.alive = np.zeros(n, bool)
        self.slot: dict[int, int] = {}
        self.free = list(range(n - 1, -1, -1))
        forest.radii(ids)  # measured in one pass, then read from the cache
        for k in ids:
            self.add(k)

    def add(self, k: int) -> None:
        i = self.free.pop()
        c = self.f.centroid[k] - self.mu
        self.id[i], self.label[i] = k, self.f.label[k]
        self.root[i] = -1 if self.root_of is None else self.root_of[self.f.rep(k)]
        self.cen[i], self.sq[i], self.rad[i] = c, float(c @ c), self.f.radius(k)
        self.alive[i] = True
        self.slot[k] = i

    def remove(self, k: int) -> None:
        i = self.slot.pop(k)
        self.alive[i] = False
        self.id[i] = -1
        self.free.append(i)


class Certifier:
    """Decides whether a cluster overlaps others, reusing every certificate it found.

    Keeps float64-verified separating hyperplanes per pair of active cluster
    ids: entry ``(lo, hi) -> (w, max_lo, min_hi)`` with ``max <w, x in lo> =
    max_lo < min_hi = min <w, x in hi>``.
    """

    def __init__(self, forest: Forest, decide: Decider, counters: Counters):
        self.f = forest
        self.decide = decide
        self.c = counters
        self.planes: dict[tuple[int, int], tuple[np.ndarray, float, float]] = {}
        # The engine's nearest points of separable pairs, in point indices:
        # ``(p, q) -> (ip, wp, iq, wq)``. When p grows into a union that its
        # cached hyperplane no longer separates from q, they warm-start the
        # union's solve (the grown pair's nearest points are mostly the old
        # ones, so the solve rebuilds them instead of searching from the
        # centroid direction).
        self.supports: dict[tuple[int, int], tuple] = {}
        self.by_id: dict[int, set] = {}
        diam = np.ptp(forest.X, axis=0) if forest.X.shape[0] else np.zeros(1)
        self.scale = float(np.linalg.norm(diam)) or 1.0
        # Recent solver hyperplanes per label pair (unit normals): a plane
        # that separated neighbours often separates the next candidate too,
        # and trying it (verified on all points) is far cheaper than a solve.
        self.pool: dict[tuple[int, int], list[np.ndarray]] = {}
        # Certified root pairs (see ``set_roots``): none until the end state
        # of the unchecked run has been decided.
        self.root_of: np.ndarray | None = None
        self.root_ok: np.ndarray | None = None

    # -- root certificates -------------------------------------------------
    def set_roots(self, roots: Sequence[int], separable: np.ndarray) -> None:
        """Record disjoint clusters ``roots`` and which pairs of them are separable.

        ``separable[i, j]`` True is a proof that conv(roots[i]) and
        conv(roots[j]) are disjoint. Every later cluster lies inside one root,
        and subsets of separable sets are separable, so any pair of clusters
        inside a separable root pair needs no further check (no hyperplane
        re-verification either: the subset relation is the proof).
        """
        root_of = np.full(self.f.X.shape[0], -1, dtype=np.int64)
        for i, r in enumerate(roots):
            root_of[self.f.members[r]] = i
        self.root_of = root_of
        self.root_ok = np.asarray(separable, dtype=bool)

    # -- hyperplane cache ------------------------------------------------
    def _put(self, lo: int, hi: int, w: np.ndarray, mx: float, mn: float) -> None:
        key = (lo, hi)
        self.planes[key] = (w, mx, mn)
        self.by_id.setdefault(lo, set()).add(key)
        self.by_id.setdefault(hi, set()).add(key)

    def forget(self, k: int) -> None:
        """Drop the hyperplanes and supports of a cluster that is no longer active."""
        for key in self.by_id.pop(k, ()):
            self.planes.pop(key, None)
            self.supports.pop(key, None)
            other = key[1] if key[0] == k else key[0]
            s = self.by_id.get(other)
            if s is not None:
                s.discard(key)

    # -- supports (warm starts) ---------------------------------------------
    def _put_support(self, p: int, q: int, sup) -> None:
        key = (p, q)
        self.supports[key] = sup
        self.by_id.setdefault(p, set()).add(key)
        self.by_id.setdefault(q, set()).add(key)

    def _support_of(self, part: int, k: int):
        """The stored support of (part, k) as (points of part, weights, points of k, weights)."""
        sup = self.supports.get((part, k))
        if sup is not None:
            return sup
        sup = self.supports.get((k, part))
        if sup is not None:
            return sup[2], sup[3], sup[0], sup[1]
        return None

    def _inherit(self, u: int, a: int, b: int, ks: Sequence[int]) -> None:
        """Give the union u = a U b the stored supports of its parts (the bigger first)."""
        big, small = (a, b) if self.f.size(a) >= self.f.size(b) else (b, a)
        for k in ks:
            if (u, k) in self.supports or (k, u) in self.supports:
                continue
            sup = self._support_of(big, k)
            if sup is None:
                sup = self._support_of(small, k)
            if sup is not None:
                self._put_support(u, k, sup)

    def _warm(self, left: Sequence[int], right: Sequence[int]) -> list:
        """Warm starts ``(ia, a, ib, b)`` (positions in the members) of pairs, or None."""
        out = []
        for p, q in zip(left, right):
            sup = self._support_of(p, q)
            if sup is None:
                out.append(None)
                continue
            gp, wp, gq, wq = sup
            mp, mq = self.f.members[p], self.f.members[q]
            ip, iq = np.searchsorted(mp, gp), np.searchsorted(mq, gq)
            # Supports only ever move to supersets; a stale one is not used.
            if (
                ip.size and iq.size and ip.max() < mp.size and iq.max() < mq.size
                and np.array_equal(mp[ip], gp) and np.array_equal(mq[iq], gq)
            ):
                out.append((ip, wp, iq, wq))
            else:
                out.append(None)
        return out

    def _from_cache_many(self, u: int, part: int, rest: int, cs: Sequence[int]) -> np.ndarray:
        """Try the stored hyperplanes of (part, c) on u = part U rest, for every c in cs.

        Only rest's points need scoring (part's side of each plane is stored),
        all planes in one product. Stores (u, c) where a plane still holds;
        returns those flags.
        """
        ok = np.zeros(len(cs), bool)
        found = []  # (position in cs, part on the low side, w, mx, mn)
        for i, c in enumerate(cs):
            for key in ((part, c), (c, part)):
                e = self.planes.get(key)
                if e is not None:
                    found.append((i, key[0] == part, *e))
        if not found:
            return ok
        S = self.f.X[self.f.members[rest]] @ np.stack([e[2] for e in found], axis=1)
        hi, lo = S.max(axis=0), S.min(axis=0)
        for j, (i, low, w, mx, mn) in enumerate(found):
            if ok[i]:
                continue  # the first plane that holds is the one kept
            c = cs[i]
            if low:
                if max(mx, float(hi[j])) < mn:
                    self._put(u, c, w, max(mx, float(hi[j])), mn)
                    ok[i] = True
            elif mx < min(mn, float(lo[j])):
                self._put(c, u, w, mx, min(mn, float(lo[j])))
                ok[i] = True
        return ok

    # -- prefilter -------------------------------------------------------
    def spheres_apart_grid(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
        """(len(left), len(right)) True where the bounding spheres are disjoint.

        Distances by the BLAS expansion ``|a|^2 + |b|^2 - 2 a.b`` in coordinates
        centred on the data mean; a pair counts as apart only if it is apart
        even after subtracting a bound on the expansion's rounding error
        (``64 d eps (|a|^2 + |b|^2)``), so the answer stays a proof.
        """
        if len(left) == 0 or len(right) == 0:
            return np.zeros((len(left), len(right)), bool)
        mu = self.mean()
        A = np.stack([self.f.centroid[k] for k in left]) - mu
        B = np.stack([self.f.centroid[k] for k in right]) - mu
        ra, rb = self.f.radii(left), self.f.radii(right)
        sa, sb = np.einsum("ij,ij->i", A, A), np.einsum("ij,ij->i", B, B)
        return self._apart_expanded(
            sa[:, None], sb[None, :], A @ B.T, ra[:, None] + rb[None, :], A.shape[1]
        )

    def _apart_expanded(self, sa, sb, dots, radii, dim: int) -> np.ndarray:
        """Spheres apart, from squared norms, dot products and summed radii (broadcast).

        ``|a|^2 + |b|^2 - 2 a.b`` minus a bound on its rounding
        (``64 dim eps (|a|^2 + |b|^2)``) must exceed the squared reach: a proof.
        """
        d2 = sa + sb - 2.0 * dots
        err = (64.0 * dim * np.finfo(np.float64).eps) * (sa + sb)
        reach = radii * (1 + _SPHERE_MARGIN) + _SPHERE_MARGIN * self.scale
        return np.maximum(d2 - err, 0.0) > reach * reach

    def spheres_apart_pairs(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
        """True where the bounding spheres of left[i] and right[i] are disjoint."""
        m = len(left)
        if m == 0:
            return np.zeros(0, bool)
        A = np.stack([self.f.centroid[k] for k in left])
        B = np.stack([self.f.centroid[k] for k in right])
        ra, rb = self.f.radii(left), self.f.radii(right)
        dist = np.sqrt(np.sum((A - B) ** 2, axis=1))
        reach = (ra + rb) * (1 + _SPHERE_MARGIN) + _SPHERE_MARGIN * self.scale
        return dist > reach

    def mean(self) -> np.ndarray:
        mu = getattr(self, "_mu", None)
        if mu is None:
            mu = self._mu = self.f.X.mean(axis=0)
        return mu

    # -- centroid-direction certificates (host, no solver) --------------------
    def centroid_planes(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
        """True where w = c_right - c_left separates the pair; those planes are cached.

        The direction between the centroids is the first iterate of the
        nearest-point solvers and already separates most pairs that are not
        nearly touching. Verified in float64 on all members with a margin for
        the rounding of the dot products (``8 d eps max|x| |w|``), so a True is
        a proof. Cost: (|left| + |right|) x d per pair, grouped per cluster
        into matrix products.
        """
        m = len(left)
        ok = np.zeros(m, bool)
        if m == 0:
            return ok
        if m > _PLANE_CHUNK:  # bounded memory: (chunk x d) directions at a time
            for lo in range(0, m, _PLANE_CHUNK):
                ok[lo : lo + _PLANE_CHUNK] = self.centroid_planes(
                    left[lo : lo + _PLANE_CHUNK], right[lo : lo + _PLANE_CHUNK]
                )
            return ok
        X, mem, cen = self.f.X, self.f.members, self.f.centroid
        W = np.stack([cen[q] - cen[p] for p, q in zip(left, right)])
        mx, mn = np.empty(m), np.empty(m)
        for side, out, red in ((left, mx, np.max), (right, mn, np.min)):
            groups: dict[int, list[int]] = {}
            for i, k in enumerate(side):
                groups.setdefault(k, []).append(i)
            for k, rows in groups.items():
                out[rows] = red(X[mem[k]] @ W[rows].T, axis=0)
        xmax = self._xmax()
        wn = np.sqrt(np.einsum("ij,ij->i", W, W))
        err = 8.0 * X.shape[1] * np.finfo(np.float64).eps * xmax * wn
        ok = (mn - mx > err) & (wn > 0)
        # Cached bounds widened by half the margin: later re-verifications
        # compare fresh dot products against them, so they must hold whatever
        # the last bits of this (matrix) product were.
        for i in np.flatnonzero(ok):
            h = 0.5 * err[i]
            self._put(left[i], right[i], W[i], float(mx[i] + h), float(mn[i] - h))
        return ok

    def pool_planes(self, u: int, others: Sequence[int]) -> np.ndarray:
        """True where a pooled hyperplane of the label pair separates (u, other).

        Each candidate w is verified on all members of both clusters in
        float64 with the rounding margin of :meth:`centroid_planes`; a
        verified one is cached for the pair.
        """
        ok = np.zeros(len(others), bool)
        lu = self.f.label[u]
        Xu = self.f.X[self.f.members[u]]
        su_cache: dict[tuple, np.ndarray] = {}
        err0 = 8.0 * self.f.X.shape[1] * np.finfo(np.float64).eps * self._xmax()
        for i, k in enumerate(others):
            key = (min(lu, self.f.label[k]), max(lu, self.f.label[k]))
            ws = self.pool.get(key)
            if not ws:
                continue
            if key not in su_cache:
                W = np.stack(ws)
                Su = Xu @ W.T
                su_cache[key] = (W, Su.min(axis=0), Su.max(axis=0))
            W, umin, umax = su_cache[key]
            Sk = self.f.X[self.f.members[k]] @ W.T
            kmin, kmax = Sk.min(axis=0), Sk.max(axis=0)
            low = kmin - umax > err0  # u below, k above
            high = umin - kmax > err0  # k below, u above
            # Unit normals: the margin err0 bounds the rounding; cached bounds
            # are widened by half of it (see centroid_planes).
            h = 0.5 * err0
            if low.any():
                j = int(np.flatnonzero(low)[0])
                self._put(u, k, W[j], float(umax[j] + h), float(kmin[j] - h))
                ok[i] = True
            elif high.any():
                j = int(np.flatnonzero(high)[0])
                self._put(k, u, W[j], float(kmax[j] + h), float(umin[j] - h))
                ok[i] = True
        return ok

    def _pool_add(self, a: int, b: int, w: np.ndarray) -> None:
        key = (min(self.f.label[a], self.f.label[b]), max(self.f.label[a], self.f.label[b]))
        nrm = float(np.linalg.norm(w))
        if nrm == 0 or not np.isfinite(nrm):
            return
        ws = self.pool.setdefault(key, [])
        ws.insert(0, w / nrm)
        del ws[_POOL:]

    def _xmax(self) -> float:
        v = getattr(self, "_xm", None)
        if v is None:
            X = self.f.X
            v = self._xm = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X)))) if X.size else 0.0
        return v

    # -- engine ----------------------------------------------------------
    def _engine(self, left: Sequence[int], right: Sequence[int], any_only: bool) -> np.ndarray:
        """Decide pairs (left[i], right[i]) with the decider; cache hyperplanes.

        Returns overlap flags; skipped pairs count as not overlapping (callers
        use any_only only to learn whether any pair overlaps).
        """
        uniq = sorted(set(left) | set(right))
        pos = {k: i for i, k in enumerate(uniq)}
        sets = [self.f.X[self.f.members[k]] for k in uniq]
        pairs = np.array([[pos[a], pos[b]] for a, b in zip(left, right)], dtype=np.int64)
        if getattr(self.decide, "accepts_warm", False):
            warm = self._warm(left, right)
            self.c.warm += sum(w is not None for w in warm)
            res = self.decide(sets, pairs, any_only, warm=warm if any(warm) else None)
        else:
            res = self.decide(sets, pairs, any_only)
        self.c.engine_calls += 1
        self.c.engine_pairs += int((~res.skipped).sum())
        self.c.escalated += res.n_escalated
        if res.w is not None:
            for i in np.flatnonzero(~res.overlap & ~res.skipped):
                w = res.w[i]
                a, b = left[i], right[i]
                sa = sets[pairs[i, 0]] @ w
                sb = sets[pairs[i, 1]] @ w
                # Oriented A @ w - b > 0 > B @ w - b: b's side is low.
                if float(sb.max()) < float(sa.min()):
                    self._put(b, a, w, float(sb.max()), float(sa.min()))
                    self._pool_add(a, b, w)
        if res.supports is not None:
            cap = 2 * self.f.X.shape[1] + 64  # not the whole-set supports of round 0
            for i in np.flatnonzero(~res.overlap & ~res.skipped):
                sup = res.supports[i]
                if sup is None or sup[0].size + sup[2].size > cap:
                    continue
                ia, wa, ib, wb = sup
                a, b = left[i], right[i]
                self._put_support(
                    a, b, (self.f.members[a][ia], np.asarray(wa), self.f.members[b][ib],
                           np.asarray(wb))
                )
        return res.overlap

    # -- the questions the clustering asks ---------------------------------
    def _after_spheres(self, u: int, a: int, b: int, others: Sequence[int]) -> bool:
        """The rest of a union check, on the clusters whose spheres meet u's."""
        self._inherit(u, a, b, others)
        left = []
        # Re-verify the bigger part's hyperplane first: only the smaller part's
        # points need scoring.
        big, small = (a, b) if self.f.size(a) >= self.f.size(b) else (b, a)
        ok = self._from_cache_many(u, big, small, others)
        rest = [k for k, o in zip(others, ok) if not o]
        if rest:
            ok2 = self._from_cache_many(u, small, big, rest)
            left = [k for k, o in zip(rest, ok2) if not o]
        self.c.cached += len(others) - len(left)
        if not left:
            return False
        cp = self.centroid_planes([u] * len(left), left)
        self.c.centroid += int(cp.sum())
        left = [k for k, ok in zip(left, cp) if not ok]
        if not left:
            return False
        pp = self.pool_planes(u, left)
        self.c.pooled += int(pp.sum())
        left = [k for k, ok in zip(left, pp) if not ok]
        if not left:
            return False
        # Nearest centroids first: the likeliest overlaps, for the early exit.
        cu = self.f.centroid[u]
        left.sort(key=lambda k: (float(np.sum((self.f.centroid[k] - cu) ** 2)), k))
        ov = self._engine([u] * len(left), left, any_only=True)
        return bool(ov.any())

    def union_overlaps(self, u: int, a: int, b: int, index: ActiveIndex) -> bool:
        """Does u = a U b overlap any active cluster of another label in ``index``?

        Screens in order of cost: root certificates and bounding spheres on
        the index's arrays at once, then (for the clusters left) cached
        hyperplanes, the centroid direction, pooled hyperplanes, and one
        engine call with early exit, nearest centroids first.

        Spheres by the expansion ``|c_u|^2 + |c_k|^2 - 2 c_u.c_k`` in
        coordinates centred on the data mean, apart only after subtracting a
        bound on its rounding (``64 d eps (|c_u|^2 + |c_k|^2)``): a proof, as
        in :meth:`spheres_apart_grid`.
        """
        self.c.checks += 1
        lu = self.f.label[u]
        cand = index.alive & (index.label != lu)
        if self.root_of is not None:
            ru = self.root_of[self.f.rep(u)]
            if ru >= 0:
                rooted = cand & (index.root >= 0)
                rooted[rooted] = self.root_ok[ru, index.root[rooted]]
                self.c.rooted += int(rooted.sum())
                cand &= ~rooted
        rows = np.flatnonzero(cand)
        if rows.size == 0:
            return False
        cu = self.f.centroid[u] - index.mu
        su = float(cu @ cu)
        apart = self._apart_expanded(
            index.sq[rows], su, index.cen[rows] @ cu, index.rad[rows] + self.f.radius(u), cu.size
        )
        self.c.sphere += int(apart.sum())
        near = index.id[rows[~apart]]
        return self._after_spheres(u, a, b, sorted(int(k) for k in near))

    def grid_overlaps(self, left: Sequence[int], right: Sequence[int], skip=None) -> bool:
        """Does any pair in left x right overlap? (early exit on the first overlap).

        ``skip(p, q)``: pairs to leave out (known input overlaps). Pairs are
        screened by bounding spheres (vectorized) and cached hyperplanes
        before the remaining ones go to the decider in one call.
        """
        todo_l, todo_r = [], []
        chunk = 1024
        for lo in range(0, len(left), chunk):
            part = left[lo : lo + chunk]
            apart = self.spheres_apart_grid(part, right)
            self.c.sphere += int(apart.sum())
            for i, j in zip(*np.nonzero(~apart)):
                p, q = part[i], right[j]
                if skip is not None and skip(p, q):
                    continue
                if (p, q) in self.planes or (q, p) in self.planes:
                    self.c.cached += 1
                    continue
                todo_l.append(p)
                todo_r.append(q)
        if not todo_l:
            return False
        cp = self.centroid_planes(todo_l, todo_r)
        self.c.centroid += int(cp.sum())
        todo_l = [k for k, ok in zip(todo_l, cp) if not ok]
        todo_r = [k for k, ok in zip(todo_r, cp) if not ok]
        if not todo_l:
            return False
        # Nearest centroids first: the likeliest overlaps, for the early exit.
        dist = [
            float(np.sum((self.f.centroid[p] - self.f.centroid[q]) ** 2))
            for p, q in zip(todo_l, todo_r)
        ]
        order = sorted(range(len(todo_l)), key=lambda i: (dist[i], todo_l[i], todo_r[i]))
        ov = self._engine([todo_l[i] for i in order], [todo_r[i] for i in order], any_only=True)
        return bool(ov.any())

    def pairs_overlap(
        self, left: Sequence[int], right: Sequence[int], any_only: bool
    ) -> np.ndarray:
        """Overlap flags of pairs (left[i], right[i]); with any_only, stop at the first."""
        m = len(left)
        out = np.zeros(m, bool)
        todo = []
        apart = self.spheres_apart_pairs(left, right)
        self.c.sphere += int(apart.sum())
        for i in np.flatnonzero(~apart):
            p, q = left[i], right[i]
            if (p, q) in self.planes or (q, p) in self.planes:
                self.c.cached += 1
                continue
            todo.append(i)
        if todo:
            cp = self.centroid_planes([left[i] for i in todo], [right[i] for i in todo])
            self.c.centroid += int(cp.sum())
            todo = [i for i, ok in zip(todo, cp) if not ok]
        if todo:
            ov = self._engine([left[i] for i in todo], [right[i] for i in todo], any_only)
            out[np.array(todo)] = ov
        return out
