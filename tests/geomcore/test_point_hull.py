"""The shared-Gram point-to-hull solver against independent ground truth.

Oracles (tests/ground_truth.py): HiGHS decides whether a point lies in a hull,
clarabel's QP gives the distance when it does not; closed forms for a point
against a box (its 2^k vertices) and a single-point hull.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import geomcore
import geomcore.solvers.point_hull as ph
from geomcore.directprobe.predict import nearest_clusters
from geomcore.distances import _point_hull_matrix
from geomcore.solvers.params import EngineParams
from tests.ground_truth import lp_separable, point_box_distance, qp_distance


def _truth(p, X):
    return qp_distance(p[None], X) if lp_separable(p[None], X) else 0.0


@pytest.mark.parametrize("n,d", [(2, 5), (7, 3), (30, 50), (60, 2), (200, 20)])
def test_batch_matches_qp_and_certificates_hold(rng, n, d):
    X = rng.normal(size=(n, d)) * 3.0 + 10.0
    # Points far out, near the hull, and inside it (convex combinations).
    inside = rng.dirichlet(np.ones(n), size=3) @ X
    P = np.vstack(
        [X.mean(0) + rng.normal(size=(6, d)) * 8.0, X[:2] + 0.01 * rng.normal(size=(2, d)), inside]
    )
    out = ph.point_hull_batch(P, X, tol=1e-6, rtol=1e-6)
    assert out.done.all()
    for i, p in enumerate(P):
        t = _truth(p, X)
        slack = 1e-7 * (1 + np.abs(X).max())
        assert out.lower[i] <= t + slack and t <= out.upper[i] + slack
        assert abs(out.distance[i] - t) <= 1e-5 * t + slack, (i, out.distance[i], t)
    assert np.all(out.distance[-3:] == 0.0)


def test_box_vertices_closed_form(rng):
    lo, hi = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 3.0])
    X = np.array([np.where(bits, hi, lo) for bits in itertools.product([0, 1], repeat=3)])
    P = rng.uniform(-4, 6, size=(40, 3))
    out = ph.point_hull_batch(P, X, tol=1e-9, rtol=1e-8)
    want = np.array([point_box_distance(p, lo, hi) for p in P])
    assert out.done.all()
    assert np.allclose(out.distance, want, rtol=1e-7, atol=1e-8)


def test_single_point_hull_is_the_euclidean_distance(rng):
    X = rng.normal(size=(1, 4))
    P = rng.normal(size=(5, 4))
    out = ph.point_hull_batch(P, X, tol=1e-6, rtol=1e-4)
    assert np.allclose(out.distance, np.linalg.norm(P - X, axis=1), rtol=1e-12)


def test_budget_exhausted_goes_to_the_engine(rng):
    """With one iteration almost nothing is certified; the undone entries are
    listed, and the engine's answers for them are right."""
    from geomcore.distances import _engine_point_hull

    hulls = [rng.normal(size=(40, 6)), rng.normal(size=(25, 6)) + 3]
    P = rng.normal(size=(8, 6)) * 4
    D, undone = ph.point_hull_matrix(P, hulls, tol=1e-6, rtol=1e-6, max_iter=1)
    assert undone.shape[0] > 0 and np.isnan(D[undone[:, 0], undone[:, 1]]).all()
    D[undone[:, 0], undone[:, 1]] = _engine_point_hull(P, hulls, undone, tol=1e-6, rtol=1e-6)
    for i in range(P.shape[0]):
        for c, H in enumerate(hulls):
            t = _truth(P[i], H)
            assert abs(D[i, c] - t) <= 1e-4 * t + 1e-9


@pytest.mark.parametrize("n,d", [(60, 5), (300, 40)])
def test_working_sets_grow_to_the_right_answer(rng, n, d):
    """Working sets start at 2 members per point, so the answer needs rounds
    of violators joining; it must still match the QP."""
    X = rng.normal(size=(n, d))
    inside = rng.dirichlet(np.ones(n), size=2) @ X
    P = np.vstack([rng.normal(size=(10, d)) * 3, inside])
    out = ph.point_hull_ws_batch(P, X, tol=1e-6, rtol=1e-6, k0=2)
    assert out.done.all()
    for i, p in enumerate(P):
        t = _truth(p, X)
        assert out.lower[i] <= t + 1e-9 and t <= out.upper[i] + 1e-9
        assert abs(out.distance[i] - t) <= 1e-5 * t + 1e-9
    assert np.all(out.distance[-2:] == 0.0)


def test_working_set_budget_goes_to_the_engine(rng, monkeypatch):
    """Large hulls take the working-set path; with its sets capped below the
    support, points stay undone, are counted, and the engine's answer is right."""
    X = np.vstack([rng.normal(size=(40, 8)), rng.normal(size=(6, 8)) + 4])
    g = np.repeat([0, 1], [40, 6])
    P = rng.normal(size=(6, 8)) * 3
    real = ph.point_hull_ws_batch
    monkeypatch.setattr(
        ph, "point_hull_ws_batch", lambda P, X, **kw: real(P, X, k0=1, k_max=1, **kw)
    )
    D, n_engine = _point_hull_matrix(
        P, [X[g == 0], X[g == 1]], tol=1e-6, rtol=1e-4, params=EngineParams(shared_max=10)
    )
    assert n_engine > 0
    for i in range(6):
        for c in (0, 1):
            t = _truth(P[i], X[g == c])
            assert abs(D[i, c] - t) <= 1e-4 * t + 1e-9


def test_nearest_clusters_agrees_with_brute_force(rng):
    members = (np.arange(0, 15), np.arange(15, 30), np.arange(30, 33))
    X = np.vstack(
        [rng.normal(size=(15, 5)), rng.normal(size=(15, 5)) + 2.5, rng.normal(size=(3, 5)) - 3]
    )
    cent = np.array([X[m].mean(0) for m in members])
    P = np.vstack([rng.normal(size=(20, 5)) * 3, X[31:32]])
    nearest, dist = nearest_clusters(P, X, members, cent)
    truth = np.array([[_truth(p, X[m]) for m in members] for p in P])
    assert np.array_equal(nearest, truth.argmin(1))
    assert np.allclose(dist, truth.min(1), rtol=1e-4, atol=1e-9)
    assert nearest[-1] == 2 and dist[-1] == 0.0


@pytest.mark.parametrize("route", ["point_hull", "small_pairs", "host"])
@pytest.mark.parametrize("mode", ["distance", "decide"])
def test_engine_pairs_with_a_single_point_side(rng, mode, route):
    """Pairs (point, hull), (hull, point) and (point, point) inside the engine,
    through the shared-Gram path (a hull meeting many single points) or the
    small-pair batches (a hull meeting few): same answers as the QP, a
    hyperplane w.x = b that separates A (w.a >= b) from B (w.b <= b), and the
    statuses of the engine."""
    from geomcore import Status
    from geomcore.solvers.params import EngineParams
    from geomcore.solvers.router import solve_pairs

    params = {
        "point_hull": EngineParams(points_per_hull=1),
        "small_pairs": EngineParams(path="device"),
        "host": EngineParams(path="host"),
    }[route]
    H = rng.normal(size=(25, 6))
    sets = [
        H,
        rng.normal(size=(1, 6)) * 4,
        rng.normal(size=(1, 6)) * 4,
        H[3:4],
        H[:5].mean(0, keepdims=True),
    ]
    pairs = np.array([[1, 0], [0, 2], [1, 2], [3, 0], [0, 4]])
    res = solve_pairs(sets, pairs, mode=mode, tol=1e-6, rtol=1e-6, params=params)
    for k, (i, j) in enumerate(pairs):
        A, B = sets[i], sets[j]
        t = qp_distance(A, B) if lp_separable(A, B) else 0.0
        assert res.lower[k] <= t + 1e-9 and t <= res.upper[k] + 1e-9
        if t > 0:
            assert res.separable[k]
            # "decide" stops at the first certificate of separation.
            if mode == "distance":
                assert abs(res.distance[k] - t) <= 1e-5 * t
            w, b = res.w[k], res.b[k]
            assert (A @ w).min() >= b - 1e-9 and (B @ w).max() <= b + 1e-9
            want = Status.SEPARABLE if mode == "decide" else Status.CERTIFIED
            assert res.status[k] == want
        else:
            assert (
                not res.separable[k] and res.distance[k] == 0.0 and res.status[k] == Status.OVERLAP
            )
    assert not res.separable[3] and not res.separable[4]  # a member; a convex combination


@pytest.mark.parametrize("solver", ["shared", "working_sets"])
def test_decide_mode_stops_at_the_decision_and_agrees_with_highs(rng, solver):
    """``decide``: a point is done once it is inside (U <= tol * scale) or its
    slab separates it (L > 0). Decisions must match HiGHS; L > 0 must be a true
    lower bound (at most the QP distance) and U an upper one. Points far
    outside along the centroid direction are decided with 0 iterations, and
    deciding never costs more iterations than certifying the distance."""
    shared_max = 10 if solver == "working_sets" else ph.SHARED_MAX
    n, d = 80, 12
    X = rng.normal(size=(n, d)) * 2.0 + 5.0
    far = X.mean(0) + 50.0 * rng.normal(size=(4, d))
    # Just outside a face: a vertex pushed out along the outward direction of
    # the centroid, and points inside (convex combinations).
    near = X[np.argmax(X @ np.ones(d))] + 1e-2 * np.ones(d)
    inside = rng.dirichlet(np.ones(n), size=3) @ X
    P = np.vstack([far, near[None], inside])
    dec = ph.solve_point_hull(P, X, tol=1e-6, rtol=1e-6, decide=True, shared_max=shared_max)
    full = ph.solve_point_hull(P, X, tol=1e-6, rtol=1e-6, shared_max=shared_max)
    assert dec.done.all() and full.done.all()
    for i, p in enumerate(P):
        outside = lp_separable(p[None], X)
        assert outside == (dec.distance[i] > 0), i
        if outside:
            t = qp_distance(p[None], X)
            assert 0 < dec.lower[i] <= t * (1 + 1e-9) and t <= dec.upper[i] * (1 + 1e-9)
    assert np.all(dec.iterations[:4] == 0)
    assert np.all(dec.iterations <= full.iterations)
    assert np.all(full.iterations[:4] > 0)  # the distance mode does iterate on them


def test_engine_decisions_with_a_singleton_label_match_highs(rng):
    """overlaps() routes single-point labels to the point-to-hull solver in its
    decide mode; every decision must match HiGHS."""
    d = 6
    sets = [rng.normal(size=(70, d)) + 3.0 * k for k in range(3)]
    inside = rng.dirichlet(np.ones(70)) @ sets[1]
    sets.append(inside[None])  # a singleton label inside label 1's hull
    sets.append(sets[0].mean(0, keepdims=True) + 40.0)  # and one far from all
    X = np.vstack(sets)
    groups = np.repeat(np.arange(len(sets)), [s.shape[0] for s in sets])
    pairs = np.array([(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets))])
    got = geomcore.overlaps(X, groups, pairs)
    want = np.array([not lp_separable(sets[i], sets[j]) for i, j in pairs])
    assert np.array_equal(got, want)
    assert got[list(map(tuple, pairs)).index((1, 3))]  # the point inside label 1 overlaps it
