"""DirectProbe clustering against the slow reference and the exact LP.

Ground truth: tests/reference_directprobe.py (plain greedy loop, one HiGHS LP
per check) for the partitions; HiGHS (tests/ground_truth.lp_separable) for the
guarantees (purity, no overlap between labels, maximality).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tests.ground_truth import lp_separable
from tests.reference_directprobe import reference_directprobe
from sklearn.datasets import load_iris, load_wine

from geomcore.directprobe import Probe, directprobe


def _random_case(seed: int):
    """2-4 labels, 10-30 points, d 2-5; odd seeds interleave the labels."""
    rng = np.random.default_rng(seed)
    L = int(rng.integers(2, 5))
    n = int(rng.integers(10, 31))
    d = int(rng.integers(2, 6))
    y = rng.integers(0, L, n)
    if seed % 2:
        X = rng.normal(size=(n, d))  # labels interleaved: more clusters than labels
    else:
        X = rng.normal(size=(n, d)) * 0.6 + 1.5 * rng.normal(size=(L, d))[y]
    return X, y


def _same_partition(probe: Probe, ref_cluster_of, ref_labels):
    np.testing.assert_array_equal(probe.cluster_of, ref_cluster_of)
    np.testing.assert_array_equal(probe.labels[probe.cluster_label], ref_labels)


@pytest.mark.parametrize("seed", range(10))
def test_same_clusters_as_reference_on_random_inputs(seed):
    X, y = _random_case(seed)
    ref_of, ref_lab = reference_directprobe(X, y)
    fast = directprobe(X, y)
    _same_partition(fast, ref_of, ref_lab)
    # The forward-only path (no search back) agrees too.
    _same_partition(directprobe(X, y, search_back=False), ref_of, ref_lab)
    if seed < 2:  # and the exact-LP decider
        _same_partition(directprobe(X, y, decider="lp"), ref_of, ref_lab)


def test_warm_started_decisions_give_the_reference_clusters():
    """Grown clusters near another label's cluster are decided from the nearest
    points of their part's earlier decision (warm starts): the partition must
    still be the slow reference's (one HiGHS LP per check)."""
    rng = np.random.default_rng(7)
    n, d, L = 80, 6, 3
    y = rng.integers(0, L, n)
    X = rng.normal(size=(n, d)) * 0.9 + 1.2 * rng.normal(size=(L, d))[y]
    ref_of, ref_lab = reference_directprobe(X, y)
    fast = directprobe(X, y)
    assert fast.stats.n_warm > 0  # the case exercises the warm starts
    _same_partition(fast, ref_of, ref_lab)


def _real_subset(loader, per_class: int, n_features: int):
    """A deterministic subset of a real scikit-learn dataset, standardized."""
    data = loader()
    X, y = data.data.astype(float), data.target
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
    X = X[idx][:, :n_features]
    X = (X - X.mean(0)) / X.std(0)
    return X, data.target_names[y[idx]]


@pytest.mark.parametrize(
    "loader,per_class,n_features", [(load_iris, 14, 4), (load_wine, 12, 5), (load_wine, 12, 2)]
)
def test_same_clusters_as_reference_on_real_data(loader, per_class, n_features):
    X, y = _real_subset(loader, per_class, n_features)
    ref_of, ref_lab = reference_directprobe(X, y)
    fast = directprobe(X, y)
    _same_partition(fast, ref_of, ref_lab)
    assert fast.labels.dtype.kind == "U"  # string labels survive


def _check_guarantees(X, y, probe: Probe):
    labels = probe.labels
    # Purity and numbering by (label index, smallest member).
    keys = []
    for k, m in enumerate(probe.members):
        assert np.all(probe.y[m] == probe.cluster_label[k])
        assert np.all(probe.cluster_of[m] == k)
        keys.append((probe.cluster_label[k], m[0]))
    assert keys == sorted(keys)
    np.testing.assert_array_equal(labels[probe.y], y)
    conflicted = set(probe.conflicts.ravel().tolist())
    K = probe.n_clusters
    sets = [X[m] for m in probe.members]
    for i in range(K):
        for j in range(i + 1, K):
            if probe.cluster_label[i] == probe.cluster_label[j]:
                # Maximality: the union overlaps some other-label cluster.
                U = np.vstack([sets[i], sets[j]])
                assert any(
                    not lp_separable(U, sets[k])
                    for k in range(K)
                    if probe.cluster_label[k] != probe.cluster_label[i]
                ), f"clusters {i} and {j} of one label could merge"
            else:
                both_conflicts = {int(probe.members[i][0]), int(probe.members[j][0])} <= conflicted
                if not both_conflicts:
                    assert lp_separable(sets[i], sets[j]), f"clusters {i}, {j} overlap"


def test_guarantees_hold_on_interleaved_labels():
    rng = np.random.default_rng(7)
    n, d = 45, 3
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 3, n)
    probe = directprobe(X, y)
    assert probe.n_clusters > 3 and not probe.is_linear
    _check_guarantees(X, y, probe)
    np.testing.assert_allclose(
        probe.centroids, np.stack([X[m].mean(0) for m in probe.members]), rtol=1e-12
    )


def test_separable_blobs_give_one_cluster_per_label():
    rng = np.random.default_rng(3)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])
    y = np.repeat(np.arange(4), 30)
    X = centers[y] + rng.normal(size=(120, 3))
    X[y == 0] *= 0.5  # keep label 0 away from the others
    probe = directprobe(X, y)
    assert probe.is_linear and probe.n_clusters == 4
    assert probe.stats.first_error_step == -1  # the end state was checked once
    assert probe.n_merges == 120 - 4
    for a in range(4):
        for b in range(a + 1, 4):
            assert lp_separable(X[y == a], X[y == b])


def test_identical_points_with_two_labels_are_reported_and_finish(caplog):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(24, 2))
    y = rng.integers(0, 2, 24)
    X[5] = X[9]
    y[5], y[9] = 0, 1
    X[14] = X[9]
    y[14] = 1  # a same-label duplicate of a conflicting point
    with caplog.at_level(logging.WARNING, logger="geomcore.directprobe"):
        probe = directprobe(X, y)
    assert probe.has_overlapping_input
    np.testing.assert_array_equal(probe.conflicts, [[5, 9], [5, 14]])
    assert "identical points" in caplog.text
    for i in (5, 9, 14):
        assert probe.members[probe.cluster_of[i]].tolist() == [i]
    ref_of, ref_lab = reference_directprobe(X, y)
    _same_partition(probe, ref_of, ref_lab)
    _check_guarantees(X, y, probe)


def test_one_label_only_is_one_cluster():
    X = np.random.default_rng(0).normal(size=(15, 4))
    probe = directprobe(X, ["only"] * 15)
    assert probe.n_clusters == 1 and probe.is_linear
    assert probe.members[0].tolist() == list(range(15))
    assert probe.stats.n_engine_calls == 0
    assert not probe.has_overlapping_input
    one = directprobe(X[:1], [3])
    assert one.n_clusters == 1 and one.n_merges == 0


def test_a_label_with_a_single_point():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(21, 3))
    y = np.array([0] * 10 + [1] * 10 + [2])
    probe = directprobe(X, y)
    assert np.all(probe.cluster_of >= 0)
    assert sorted(np.concatenate(probe.members).tolist()) == list(range(21))
    assert probe.members[probe.cluster_of[20]].tolist() == [20]
    ref_of, ref_lab = reference_directprobe(X, y)
    _same_partition(probe, ref_of, ref_lab)


def test_deterministic_and_same_with_or_without_search_back():
    rng = np.random.default_rng(5)
    X = np.round(rng.normal(size=(30, 2)), 1)  # coarse grid: many exact distance ties
    y = rng.integers(0, 2, 30)
    a = directprobe(X, y)
    b = directprobe(X.copy(), y.copy())
    c = directprobe(X, y, search_back=False)
    np.testing.assert_array_equal(a.cluster_of, b.cluster_of)
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.cluster_of, c.cluster_of)
    ref_of, ref_lab = reference_directprobe(X, y)
    _same_partition(a, ref_of, ref_lab)


def test_accepts_jax_arrays_and_records_steps():
    import jax.numpy as jnp

    X, y = _random_case(4)
    p = directprobe(jnp.asarray(X), jnp.asarray(y))
    q = directprobe(X, y)
    np.testing.assert_array_equal(p.cluster_of, q.cluster_of)
    assert p.X.dtype == np.float64
    assert p.n_merges == int(p.steps["accepted"].sum()) == X.shape[0] - p.n_clusters
    assert p.history is p.steps


@pytest.mark.parametrize(
    "X,labels,exc,match",
    [
        (np.zeros((4, 2)), [0, 1, 0], ValueError, r"`labels` has 3 entries but `X` has 4 rows"),
        (np.zeros(4), [0, 1, 0, 1], ValueError, r"`X` must be a 2-D array"),
        (np.zeros((0, 2)), [], ValueError, r"`X` has 0 rows"),
        ([[0.0, 1.0], [np.nan, 0.0]], [0, 1], ValueError, r"`X` has a non-finite value .* row 1"),
        ([["a", "b"]], [0], TypeError, r"`X` must hold real numbers"),
        (np.zeros((3, 2)), np.zeros((3, 1)), ValueError, r"`labels` must be 1-D"),
        (
            np.zeros((2, 2)),
            np.array([1, "a"], dtype=object),
            TypeError,
            r"`labels` must be mutually comparable",
        ),
    ],
)
def test_bad_input_is_named(X, labels, exc, match):
    with pytest.raises(exc, match=match):
        directprobe(X, labels)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="`decider`"):
        directprobe(np.zeros((2, 2)), [0, 1], decider="magic")
    with pytest.raises(ValueError, match="`tol`"):
        directprobe(np.zeros((2, 2)), [0, 1], tol=-1.0)


def test_progress_in_a_log_is_plain_lines_per_phase(capsys):
    """To a non-terminal: no carriage returns, a few lines per phase, and the
    unchecked phase counts exactly its merges (n minus the labels)."""
    X, y = _random_case(3)  # interleaved labels: the search back and checked merges run
    p = directprobe(X, y, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    n_lab = np.unique(y).size
    assert f"directprobe 1/3 merging without checks: {len(y) - n_lab}/{len(y) - n_lab}" in err
    assert any(line.startswith("directprobe 2/3 ") for line in lines)
    assert p.stats.first_error_step > 0  # so phase 3 ran
    assert any(line.startswith("directprobe 3/3 checked merges") for line in lines)
    assert len(lines) <= 8  # start and end of each phase on a fast run, no flood


def test_log_bar_rate_limits_its_lines():
    import io

    from geomcore.progress import LogBar

    t = [0.0]
    out = io.StringIO()
    bar = LogBar(100, "work", unit="step", stream=out, interval=10.0, clock=lambda: t[0])
    for _ in range(100):
        t[0] += 1.0  # 100 s of work, one step per second
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 10 + 1  # start, one per 10 s, close
    assert lines[5] == "work: 50/100 step (50%) | 50s | left ~50s"
    assert lines[-1].startswith("work: 100/100 step (100%) | 1m40s | left ~0s")


def test_host_certificates_are_proofs():
    """Centroid-direction and pooled hyperplanes call a pair separable only when HiGHS agrees."""
    from geomcore.directprobe.checks import Certifier, Counters, lp_decider
    from geomcore.directprobe.state import Forest

    rng = np.random.default_rng(21)
    n, d = 60, 3
    X = rng.normal(size=(n, d))
    y = np.repeat([0, 1, 2], n // 3)
    X[y == 1] += 1.2  # some pairs separable, some overlapping
    f = Forest.singletons(X, y)
    cert = Certifier(f, lp_decider(), Counters())
    # Clusters of 1-6 consecutive same-label points.
    ids, i = [], 0
    while i < n:
        k = int(rng.integers(1, 7))
        grp = [j for j in range(i, min(i + k, n)) if y[j] == y[i]]
        c = grp[0]
        for j in grp[1:]:
            c = f.merge(c, j, step=0)
        ids.append(c)
        i = grp[-1] + 1
    left, right = [], []
    for a in ids:
        for b in ids:
            if f.label[a] < f.label[b]:
                left.append(a)
                right.append(b)
    truth = np.array([lp_separable(X[f.members[a]], X[f.members[b]]) for a, b in zip(left, right)])
    assert truth.any() and not truth.all()
    ok = cert.centroid_planes(left, right)
    assert ok.any()
    assert not (ok & ~truth).any(), "a centroid plane certified an overlapping pair"
    for a, b in zip(np.array(left)[ok], np.array(right)[ok]):
        w, mx, mn = cert.planes[(int(a), int(b))]
        # The cached bounds hold (conservatively) for freshly computed scores.
        assert np.max(X[f.members[a]] @ w) < mx < mn < np.min(X[f.members[b]] @ w)
    # Pooled planes: random directions plus the centroid ones of other pairs.
    for a, b in zip(left[:20], right[:20]):
        cert._pool_add(a, b, rng.normal(size=d))
        cert._pool_add(a, b, f.centroid[b] - f.centroid[a])
    cert.planes.clear()
    for a in ids:
        others = [b for b in ids if f.label[b] != f.label[a]]
        pp = cert.pool_planes(a, others)
        for b, v in zip(others, pp):
            if v:
                assert lp_separable(X[f.members[a]], X[f.members[b]]), (a, b)


def test_root_certificates_cover_exactly_the_separable_root_pairs():
    from geomcore.directprobe.checks import ActiveIndex, Certifier, Counters, lp_decider
    from geomcore.directprobe.state import Forest

    X = np.array([[0.0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [0.5, 0.2]])
    y = np.array([0, 0, 0, 1, 1, 2])
    f = Forest.singletons(X, y)
    r0 = f.merge(f.merge(0, 1, 1), 2, 2)  # label 0: triangle containing point 5
    r1 = f.merge(3, 4, 3)
    cert = Certifier(f, lp_decider(), Counters())
    roots = [r0, r1, 5]
    sep = np.array([[lp_separable(X[f.members[a]], X[f.members[b]]) for b in roots] for a in roots])
    np.fill_diagonal(sep, False)
    cert.set_roots(roots, sep)
    # The checked phase's index of active clusters: u = {0, 1} (inside r0)
    # against 3, 4 (inside r1: a separable root pair, certified by the roots)
    # and 5 (its own root, inside r0's triangle: not certified by the roots;
    # decided separable from the segment {0, 1} by a later check).
    u = f.merge(0, 1, 4)
    index = ActiveIndex(f, [3, 4, 5], cert.mean(), cert.root_of)
    assert not cert.union_overlaps(u, 0, 1, index)
    assert cert.c.rooted == 2
    # 5 joins label 0's cluster {0, 1, 2}: inside it, so the union overlaps
    # nothing of another label but 5 itself is label 2: check {1, 2} against
    # 5's singleton (same root as r0, not certified) and 3 (certified).
    v = f.merge(1, 2, 5)
    index = ActiveIndex(f, [3, 5], cert.mean(), cert.root_of)
    assert not cert.union_overlaps(v, 1, 2, index)
    assert cert.c.rooted == 3
    # The whole triangle r0 contains point 5: the check must find the overlap.
    index = ActiveIndex(f, [4, 5], cert.mean(), cert.root_of)
    assert cert.union_overlaps(r0, f.children[r0][0], f.children[r0][1], index)
    assert cert.c.rooted == 4


def test_many_conflicting_points_decided_as_the_reference_does():
    # Non-contextual layers give thousands of words that occur with two tags:
    # the end state then holds many frozen singletons, screened as arrays.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    for i in range(0, 24, 2):  # 12 conflicting pairs, frozen singletons
        X[i + 1] = X[i]
        y[i + 1] = (y[i] + 1) % 3
    # Two frozen points of different labels, distinct but very close: not an
    # input conflict, so their (separable) pair must still be decided.
    X[2] = X[0] + 1e-7
    y[2] = (y[0] + 2) % 3
    X[3] = X[2]
    y[3] = y[0]
    probe = directprobe(X, y)
    assert len(probe.conflicts) >= 12
    ref_of, ref_lab = reference_directprobe(X, y)
    _same_partition(probe, ref_of, ref_lab)
    _check_guarantees(X, y, probe)


def test_first_overlapping_merge_same_by_bisection_or_by_checked_merges(monkeypatch):
    # The search back bisects to within a window of steps and leaves the rest
    # to the checked merges; bisecting to one step finds the same merge.
    from geomcore.directprobe import clustering

    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 3))
    y = rng.integers(0, 3, 120)
    wide = directprobe(X, y)
    monkeypatch.setattr(clustering, "_SEARCH_WINDOW", 1)
    exact = directprobe(X, y)
    assert 0 < exact.stats.first_error_step == wide.stats.first_error_step
    np.testing.assert_array_equal(wide.cluster_of, exact.cluster_of)
    # The window left merges to the checked phase (recorded as its steps).
    assert (wide.steps["phase"] == 2).sum() > (exact.steps["phase"] == 2).sum()
