"""Warm starts: a solve started from an earlier solution's supports.

Ground truth is independent of the engine: HiGHS decides separability and the
clarabel QP gives distances (tests/ground_truth.py). The iteration counts
check that the starts are used and mapped to the right pairs: a start on the
optimal support of the same points certifies before the first iteration, and
a start mapped to the wrong pair or the wrong rows would not.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomcore import hull_distances, label_distances
from geomcore.results import Status
from tests.ground_truth import lp_separable, qp_distance

RTOL = 1e-4


def _labeled(rng, d=12):
    """Five labels: the pairs with "a" or "b" are above the small-pair size
    (working-set engine), those among c, d, e are small; some pairs overlap,
    some are separable."""
    sizes = {"a": 300, "b": 250, "c": 80, "d": 70, "e": 60}
    centers = {"a": 0.0, "b": 2.5, "c": 5.0, "d": 1.0, "e": 9.0}
    X, y = [], []
    for lab, n in sizes.items():
        mu = np.zeros(d)
        mu[0] = centers[lab]
        X.append(mu + rng.normal(size=(n, d)))
        y += [lab] * n
    return np.concatenate(X), np.array(y)


def _pair_truth(X, y, labels):
    out = []
    for i in range(labels.size):
        for j in range(i + 1, labels.size):
            A, B = X[y == labels[i]], X[y == labels[j]]
            sep = lp_separable(A, B)
            out.append((sep, qp_distance(A, B) if sep else 0.0))
    return out


def _check_against_truth(ld, X, y):
    iu, ju = np.triu_indices(ld.labels.size, k=1)
    for (sep, dist), i, j in zip(_pair_truth(X, y, ld.labels), iu, ju):
        assert ld.separable[i, j] == sep, (ld.labels[i], ld.labels[j])
        if sep:
            assert abs(ld.matrix[i, j] - dist) <= 2 * RTOL * dist, (ld.labels[i], ld.labels[j])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X, y = _labeled(rng)
    cold = label_distances(X, y)
    # No pair is decided by the exact LP: its weights need not certify alone.
    assert not np.any(cold.results.status == Status.EXACT_LP)
    assert np.any(cold.separable) and not np.all(cold.separable[np.triu_indices(5, 1)])
    return X, y, cold


def test_supports_reproduce_the_upper_bound(data):
    X, y, cold = data
    labels = cold.labels
    iu, ju = np.triu_indices(labels.size, k=1)
    for k, (i, j) in enumerate(zip(iu, ju)):
        ia, a, ib, b = cold.supports[k]
        A, B = X[y == labels[i]], X[y == labels[j]]
        assert np.all(a > 0) and np.all(b > 0)
        assert abs(a.sum() - 1) < 1e-12 and abs(b.sum() - 1) < 1e-12
        u, v = a @ A[ia], b @ B[ib]
        assert abs(np.linalg.norm(u - v) - cold.results.upper[k]) <= 1e-9 * cold.results.scale[k]


def test_start_on_the_same_points_certifies_without_iterating(data):
    X, y, cold = data
    again = label_distances(X, y, warm_start=cold)
    assert np.all(again.results.iterations == 0)
    assert np.array_equal(again.separable, cold.separable)
    np.testing.assert_allclose(again.matrix, cold.matrix, rtol=RTOL)
    _check_against_truth(again, X, y)


def test_moved_points_give_the_true_answers_in_fewer_iterations(data, rng):
    X, y, cold = data
    # A small rotation, shift and noise: the supports move a little.
    Q, _ = np.linalg.qr(np.eye(X.shape[1]) + 0.05 * rng.normal(size=(X.shape[1],) * 2))
    X2 = 1.3 * X @ Q + 0.02 * rng.normal(size=X.shape) + 7.0
    warm = label_distances(X2, y, warm_start=cold)
    fresh = label_distances(X2, y)
    _check_against_truth(warm, X2, y)
    assert warm.results.iterations.sum() < fresh.results.iterations.sum()


def test_starts_follow_the_labels_not_the_positions(data):
    X, y, cold = data
    # Without label "b", the other labels' rows keep their order: every pair
    # finds its own start (an off-by-one in the pair mapping would not).
    keep = y != "b"
    sub = label_distances(X[keep], y[keep], warm_start=cold)
    assert sub.labels.tolist() == ["a", "c", "d", "e"]
    assert np.all(sub.results.iterations == 0)
    idx = [0, 2, 3, 4]
    np.testing.assert_allclose(sub.matrix, cold.matrix[np.ix_(idx, idx)], rtol=RTOL)
    # A label the start does not know starts cold; the answers stay true.
    y2 = np.where(y == "d", "f", y)
    new = label_distances(X, y2, warm_start=cold)
    k_new = [k for k, (i, j) in enumerate(zip(*np.triu_indices(5, 1)))
             if "f" in (new.labels[i], new.labels[j])]
    assert all(new.results.iterations[k] > 0 for k in k_new)
    _check_against_truth(new, X, y2)


def test_hull_distances_warm_start_and_bad_starts(data):
    X, y, cold = data
    groups = np.unique(y, return_inverse=True)[1]
    pairs = np.array([[0, 1], [0, 2], [1, 3]])
    first = hull_distances(X, groups, pairs)
    again = hull_distances(X, groups, pairs, warm_start=first)
    assert np.all(again.iterations == 0)
    np.testing.assert_allclose(again.distance, first.distance, rtol=RTOL)
    # Starts that do not fit the sets (indices out of range, wrong shapes) are
    # ignored: the pair starts cold and the answer is unchanged.
    bad = first._replace(supports=tuple(
        (ia + 10_000, a, ib, b) if k == 0 else (ia[:1], a, ib, b)
        for k, (ia, a, ib, b) in enumerate(first.supports)) + ())
    bad = bad._replace(supports=bad.supports[:2] + (None,))
    res = hull_distances(X, groups, pairs, warm_start=bad)
    assert np.array_equal(res.separable, first.separable)
    np.testing.assert_allclose(res.distance, first.distance, rtol=2 * RTOL)
    with pytest.raises(ValueError, match="same 2 pairs"):
        hull_distances(X, groups, pairs[:2], warm_start=first)
    with pytest.raises(TypeError, match="HullResults"):
        hull_distances(X, groups, pairs, warm_start=cold)
    with pytest.raises(TypeError, match="LabelDistances"):
        label_distances(X, y, warm_start=first)
