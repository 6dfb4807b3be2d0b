"""Hull distances and decisions against independent ground truth.

Oracles (tests/ground_truth.py): HiGHS for every decision, clarabel's
interior-point QP for distances, and closed forms (simplices at a known gap,
a point against a box, a point inside a hull).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import geomcore
from geomcore import Status
from geomcore.solvers.params import DeviceParams, EngineParams
from geomcore.solvers.router import solve_pairs
from tests.ground_truth import lp_separable, point_box_distance, qp_distance, simplices_at_gap


def _check_bounds(r, truth, rtol=1e-4):
    slack = 1e-9 * max(1.0, r.scale)
    assert r.lower <= truth + slack
    assert truth <= r.upper + slack
    assert abs(r.distance - truth) <= rtol * truth + slack


@pytest.mark.parametrize("d", [2, 5, 50])
@pytest.mark.parametrize("gap", [1.0, 1e-3])
def test_simplices_at_known_gap(rng, d, gap):
    A, B = simplices_at_gap(d, gap, rng, n_extra=30)
    r = geomcore.hull_distance(A, B)
    assert r.separable and r.status == Status.CERTIFIED
    _check_bounds(r, gap)
    # the hyperplane separates with the orientation documented
    assert (A @ r.w - r.b).min() > 0 > (B @ r.w - r.b).max()


def test_point_against_box(rng):
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0])
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 2) for z in (0, 3)], float)
    for _ in range(20):
        p = rng.uniform(-3, 5, size=3)
        truth = point_box_distance(p, lo, hi)
        r = geomcore.hull_distance(p[None], corners)
        if truth == 0:
            assert not r.separable and r.distance == 0
        else:
            _check_bounds(r, truth)


def test_point_inside_hull_overlaps(rng):
    A = rng.normal(size=(40, 6))
    p = A[:7].mean(axis=0, keepdims=True)
    r = geomcore.hull_distance(p, A)
    assert not r.separable and r.distance == 0.0 and r.status == Status.OVERLAP
    assert r.upper <= 1e-6 * r.scale


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0, 3.0])
def test_random_pairs_match_qp_and_highs(rng, shift):
    for _ in range(4):
        d = int(rng.integers(2, 30))
        A = rng.normal(size=(int(rng.integers(1, 200)), d))
        B = rng.normal(size=(int(rng.integers(1, 200)), d)) + shift
        sep = lp_separable(A, B)
        r = geomcore.hull_distance(A, B)
        assert r.separable == sep
        if sep:
            _check_bounds(r, qp_distance(A, B))
        else:
            assert r.distance == 0.0


def test_thin_gap_of_1e3_of_scale_in_high_dimension(rng):
    # Many points, d = 100, a gap of 1e-3 of the diameter.
    A, B = simplices_at_gap(100, 1e-3, rng, n_extra=400)
    r = geomcore.hull_distance(A, B)
    assert r.separable
    _check_bounds(r, 1e-3)


def test_many_pairs_batched_equal_loop_and_ground_truth(rng):
    counts = rng.integers(3, 80, size=7)
    X = np.vstack([rng.normal(size=(c, 8)) + 2.5 * rng.normal(size=8) for c in counts])
    groups = np.repeat(np.arange(7) * 10 + 3, counts)  # ids need not be 0..k-1
    iu, ju = np.triu_indices(7, 1)
    pairs = np.stack([iu * 10 + 3, ju * 10 + 3], 1)
    res = geomcore.hull_distances(X, groups, pairs)
    dec = geomcore.overlaps(X, groups, pairs)
    for k, (a, b) in enumerate(pairs):
        A, B = X[groups == a], X[groups == b]
        sep = lp_separable(A, B)
        assert res.separable[k] == sep and dec[k] == (not sep)
        single = geomcore.hull_distance(A, B)
        assert single.separable == sep
        if sep:
            truth = qp_distance(A, B)
            _check_bounds(res.pair(k), truth)
            _check_bounds(single, truth)
    assert res.n_escalated == 0


def test_any_only_stops_at_an_overlap(rng):
    X = np.vstack(
        [rng.normal(size=(30, 3)), rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 20]
    )
    g = np.repeat([0, 1, 2], 30)
    assert geomcore.overlaps(X, g, [[0, 1], [0, 2]], any_only=True) is True
    assert geomcore.overlaps(X, g, [[0, 2], [1, 2]], any_only=True) is False


def test_label_distances_matrix(rng):
    X = np.vstack([rng.normal(size=(25, 4)) + off for off in (0, 6, -6)])
    labels = np.array(["b"] * 25 + ["a"] * 25 + ["c"] * 25)
    X = np.vstack([X, X[:1]])  # a "b" point repeated with label "c": b and c overlap
    labels = np.append(labels, "c")
    ld = geomcore.label_distances(X, labels)
    assert ld.labels.tolist() == ["a", "b", "c"]
    assert np.allclose(ld.matrix, ld.matrix.T) and np.all(np.diag(ld.matrix) == 0)
    assert ld.matrix[1, 2] == 0 and not ld.separable[1, 2]
    truth = qp_distance(X[labels == "a"], X[labels == "b"])
    assert abs(ld.matrix[0, 1] - truth) <= 1e-4 * truth
    assert ld.min_distance[2] == 0.0 and ld.min_distance[0] == pytest.approx(
        min(ld.matrix[0, 1], ld.matrix[0, 2])
    )


def test_point_hull_distances(rng):
    X = np.vstack([rng.normal(size=(20, 3)), rng.normal(size=(20, 3)) + 5])
    g = np.repeat([7, 9], 20)
    P = np.vstack([rng.normal(size=(4, 3)) * 3, X[:1]])
    out = geomcore.point_hull_distances(P, X, g)
    assert out.groups.tolist() == [7, 9] and out.distances.shape == (5, 2)
    for i in range(5):
        for k, gid in enumerate([7, 9]):
            C = X[g == gid]
            truth = 0.0 if not lp_separable(P[i : i + 1], C) else qp_distance(P[i : i + 1], C)
            assert abs(out.distances[i, k] - truth) <= 1e-4 * truth + 1e-9
    assert out.distances[4, 0] == 0.0
    empty = geomcore.point_hull_distances(np.zeros((0, 3)), X, g)
    assert empty.distances.shape == (0, 2)


# ---- edge cases that must give correct answers -------------------------------------------


def test_single_points(rng):
    a, b = rng.normal(size=(1, 5)), rng.normal(size=(1, 5))
    r = geomcore.hull_distance(a, b)
    _check_bounds(r, float(np.linalg.norm(a - b)))


def test_duplicate_points_and_shared_point(rng):
    A = np.repeat(rng.normal(size=(1, 4)), 10, axis=0)
    B = rng.normal(size=(15, 4)) + 3
    _check_bounds(geomcore.hull_distance(A, B), qp_distance(A, B))
    B2 = np.vstack([B, A[:1]])  # a point in both sets
    r = geomcore.hull_distance(A, B2)
    assert not r.separable and r.distance == 0.0


def test_d_much_larger_than_n_is_separable(rng):
    A, B = rng.normal(size=(10, 500)), rng.normal(size=(12, 500))
    r = geomcore.hull_distance(A, B)
    assert r.separable and lp_separable(A, B)
    _check_bounds(r, qp_distance(A, B))


def test_n_much_larger_than_d(rng):
    A = rng.normal(size=(5000, 2))
    B = rng.normal(size=(4000, 2)) + np.array([9.0, 0.0])
    r = geomcore.hull_distance(A, B)
    assert r.separable == lp_separable(A, B)
    _check_bounds(r, qp_distance(A, B))


def test_collinear_sets():
    t = np.linspace(0, 1, 11)[:, None]
    A = np.hstack([t, 2 * t, 0 * t])
    B = np.hstack([t + 2, 2 * t, 0 * t])
    # parallel segments in the plane z=0, along (1, 2, 0), offset by (2, 0, 0)
    truth = qp_distance(A, B)
    _check_bounds(geomcore.hull_distance(A, B), truth)
    C = np.hstack([t + 0.5, 2 * t + 1.0, 0 * t])  # on the same line as A: overlaps
    assert not geomcore.hull_distance(A, C).separable


@pytest.mark.parametrize("factor,offset", [(1e-6, 0.0), (1e6, 0.0), (1.0, 1e4)])
def test_scale_and_translation(rng, factor, offset):
    A, B = simplices_at_gap(6, 0.05, rng, n_extra=20)
    r = geomcore.hull_distance(A * factor + offset, B * factor + offset)
    assert r.separable
    _check_bounds(r, 0.05 * factor, rtol=2e-4)


def test_float64_iterations(rng):
    A, B = simplices_at_gap(20, 1e-3, rng, n_extra=50)
    r = geomcore.hull_distance(A, B, dtype="float64", rtol=1e-7)
    assert r.separable and abs(r.distance - 1e-3) <= 1e-7 * 1e-3 + 1e-15


def test_budget_escalates_to_highs(rng):
    A = rng.normal(size=(300, 10))
    sep_B = rng.normal(size=(300, 10)) + 0.9
    for B in (sep_B, rng.normal(size=(300, 10)) + 0.2):
        truth = lp_separable(A, B)
        res = solve_pairs(
            [A, B],
            np.array([[0, 1]]),
            mode="decide",
            max_iter=1,
            params=EngineParams(path="device", device=DeviceParams(max_rounds=1, working_set=8)),
        )
        if res.status[0] == Status.EXACT_LP:
            assert res.n_escalated == 1
        assert bool(res.separable[0]) == truth
    # With no budget at all the LP must decide every undecided pair, and count it.
    res = solve_pairs(
        [A, sep_B],
        np.array([[0, 1]]),
        mode="distance",
        max_iter=0,
        params=EngineParams(path="device", device=DeviceParams(max_rounds=0)),
    )
    assert res.status[0] == Status.EXACT_LP and res.n_escalated == 1
    assert bool(res.separable[0]) == lp_separable(A, sep_B)


def test_torch_tensor_input_via_dlpack(rng):
    torch = pytest.importorskip("torch", reason="torch is part of the [finetune] extra")
    A = torch.from_numpy(rng.normal(size=(30, 4)).astype(np.float32))
    B = torch.from_numpy((rng.normal(size=(30, 4)) + 4).astype(np.float32))
    r = geomcore.hull_distance(A, B)
    assert r.separable
    _check_bounds(r, qp_distance(A.numpy().astype(float), B.numpy().astype(float)))


# ---- properties (hypothesis) ------------------------------------------------------------

_sets = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(seed=_sets, shift=st.floats(0.0, 4.0), d=st.integers(1, 6))
def test_properties(seed, shift, d):
    g = np.random.default_rng(seed)
    A = g.normal(size=(int(g.integers(1, 25)), d))
    B = g.normal(size=(int(g.integers(1, 25)), d)) + shift
    r = geomcore.hull_distance(A, B)
    truth = qp_distance(A, B) if lp_separable(A, B) else 0.0
    assert r.separable == (truth > 0)
    assert r.lower <= truth + 1e-9 * r.scale and truth <= r.upper + 1e-9 * r.scale
    # symmetry, permutation, translation, scale
    r2 = geomcore.hull_distance(B[::-1], g.permutation(A))
    assert r2.separable == r.separable
    assert abs(r2.distance - r.distance) <= 2e-4 * r.distance + 1e-9
    t = g.normal(size=d) * 100
    r3 = geomcore.hull_distance(3.0 * A + t, 3.0 * B + t)
    assert r3.separable == r.separable
    assert abs(r3.distance - 3.0 * r.distance) <= 3e-4 * r.distance + 1e-7


def test_shared_point_finds_exact_common_rows_even_under_hash_collisions(rng, monkeypatch):
    from geomcore.solvers.frames import shared_point

    def brute(A, B):
        return {(i, j) for i in range(len(A)) for j in range(len(B)) if np.array_equal(A[i], B[j])}

    A = rng.normal(size=(60, 5))
    B = rng.normal(size=(40, 5))
    B[7] = A[13]
    C = A[:1].copy()
    C[0, 0] = np.nextafter(C[0, 0], np.inf)  # one ulp away: not shared
    for X, Y in ((A, B), (A, C), (A, B[:7])):
        got = shared_point({}, [X, Y], 0, 1)
        want = brute(X, Y)
        assert (got is None) == (not want) and (got is None or got in want)

    # Every row hashes alike: candidates are checked exactly, then the exact
    # fallback decides.
    def same(X):
        return np.zeros(len(X), np.uint64)

    assert shared_point({}, [A, B], 0, 1, hashes=same) == (13, 7)
    assert shared_point({}, [A, C], 0, 1, hashes=same) is None
