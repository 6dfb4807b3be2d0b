"""The merge queue against a brute-force greedy merge (centroid linkage with blocks).

The queue keeps per-label nearest partners, lazy bounds and compacts dead
slots; the reference recomputes every pair of active clusters at every step.
"""

from __future__ import annotations

import numpy as np

from geomcore.directprobe.state import _COMPACT_MIN, Forest, MergeQueue, pair_key


def _brute_force(X, y, blocked_if):
    """Greedy merges by pair_key over all active same-label pairs, blocks inherited."""
    members = {i: [i] for i in range(len(X))}
    label = {i: int(y[i]) for i in range(len(X))}
    blocked: set[frozenset] = set()
    nxt = len(X)
    out = []
    while True:
        best = None
        ids = sorted(members)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if label[a] != label[b] or frozenset((a, b)) in blocked:
                    continue
                ca, cb = X[members[a]].mean(0), X[members[b]].mean(0)
                key = pair_key(float(np.sum((ca - cb) ** 2)), min(members[a]), min(members[b]))
                if best is None or key < best[0]:
                    best = (key, a, b)
        if best is None:
            return out
        _, a, b = best
        ra, rb = min(members[a]), min(members[b])
        if blocked_if(ra, rb):
            blocked.add(frozenset((a, b)))
            out.append(("block", min(ra, rb), max(ra, rb)))
            continue
        u = nxt
        nxt += 1
        members[u] = members.pop(a) + members.pop(b)
        label[u] = label[a]
        for k in list(members):
            if frozenset((a, k)) in blocked or frozenset((b, k)) in blocked:
                blocked.add(frozenset((u, k)))
        out.append(("merge", min(ra, rb), max(ra, rb)))


def test_queue_matches_brute_force_through_compactions():
    rng = np.random.default_rng(0)
    n = 3 * _COMPACT_MIN
    # Integer grid coordinates: many exact distance ties, decided by the pair key.
    X = rng.integers(0, 6, size=(n, 3)).astype(float) + rng.integers(0, 2, size=(n, 1)) * 0.5
    y = rng.integers(0, 2, n)

    def blocked_if(ra, rb):
        return (min(ra, rb) * 7 + max(ra, rb) * 3) % 11 == 0

    ref = _brute_force(X, y, blocked_if)
    f = Forest.singletons(X, y)
    ids_by_label = {lab: [int(i) for i in np.flatnonzero(y == lab)] for lab in (0, 1)}
    q = MergeQueue(f, ids_by_label)
    got, compacted = [], False
    while (p := q.next_pair()) is not None:
        lab, sa, sb = p
        a, b = q.cluster(lab, sa), q.cluster(lab, sb)
        ra, rb = f.rep(a), f.rep(b)
        if blocked_if(ra, rb):
            q.block(lab, sa, sb)
            got.append(("block", min(ra, rb), max(ra, rb)))
            continue
        before = q.ids[lab].size
        q.merge(lab, sa, sb, f.merge(a, b, step=len(got) + 1))
        compacted |= q.ids[lab].size < before
        got.append(("merge", min(ra, rb), max(ra, rb)))
    assert compacted  # the case runs through compactions
    assert any(g[0] == "block" for g in got)
    assert got == ref
