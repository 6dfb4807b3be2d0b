"""Pairs of small hulls solved whole in batches, against independent ground truth.

Oracles (tests/ground_truth.py): HiGHS for separability, clarabel's QP for
distances, and simplices at a known gap (closed form).
"""

from __future__ import annotations

import numpy as np
import pytest

from geomcore import Status
from geomcore.solvers.router import solve_pairs
from geomcore.solvers.small_pairs import solve_small_pairs
from tests.ground_truth import lp_separable, qp_distance, simplices_at_gap


def _random_pairs(rng, d):
    sets, pairs = [], []
    for k in range(12):
        na, nb = rng.integers(2, 40, size=2)
        A = rng.normal(size=(na, d))
        shift = rng.choice([0.0, 0.5, 3.0, 8.0])
        B = rng.normal(size=(nb, d)) + shift * rng.normal(size=d) / np.sqrt(d) * 2
        sets += [A * 10 + 100, B * 10 + 100]
        pairs.append([2 * k, 2 * k + 1])
    return sets, np.array(pairs)


@pytest.mark.parametrize("d", [3, 30])
@pytest.mark.parametrize("mode", ["distance", "decide"])
def test_matches_highs_and_qp(rng, d, mode):
    sets, pairs = _random_pairs(rng, d)
    out, _ = solve_small_pairs(
        sets, pairs, np.arange(len(pairs)), tol=1e-6, rtol=1e-6, decide=mode == "decide"
    )
    assert len(out) >= len(pairs) - 1  # almost all decided here; the rest go to the engine
    for k, row in out.items():
        dist, lower, upper, sep, w, b, _, status, scale, (ia, a, ib, bw) = row
        A, B = sets[pairs[k, 0]], sets[pairs[k, 1]]
        # The support's hull points are the ones whose distance is U.
        assert (
            np.all(a > 0)
            and np.all(bw > 0)
            and abs(a.sum() - 1) < 1e-12
            and abs(bw.sum() - 1) < 1e-12
        )
        assert abs(np.linalg.norm(a @ A[ia] - bw @ B[ib]) - upper) <= 1e-9 * scale
        truth_sep = lp_separable(A, B)
        if sep:
            assert truth_sep, k
            assert (A @ w).min() >= b - 1e-9 * scale and (B @ w).max() <= b + 1e-9 * scale
            t = qp_distance(A, B)
            assert lower <= t * (1 + 1e-7) + 1e-9 and t <= upper * (1 + 1e-7) + 1e-9
            if mode == "distance":
                assert status == Status.CERTIFIED and abs(dist - t) <= 1e-5 * t
            else:
                assert status in (Status.SEPARABLE, Status.EXACT_LP)
        else:
            assert status in (Status.OVERLAP, Status.EXACT_LP) and dist == 0.0
            # Overlap up to tol: either HiGHS agrees, or two hull points lie within tol * scale.
            assert (not truth_sep) or qp_distance(A, B) <= 1e-6 * scale


@pytest.mark.parametrize("gap", [1.0, 1e-3])
def test_simplices_at_known_gap(rng, gap):
    A, B = simplices_at_gap(6, gap, rng, n_extra=5)
    out, _ = solve_small_pairs(
        [A, B], np.array([[0, 1]]), np.array([0]), tol=1e-9, rtol=1e-7, decide=False
    )
    assert abs(out[0][0] - gap) <= 1e-6 * gap


def test_shared_point_is_an_exact_overlap(rng):
    A = rng.normal(size=(10, 5))
    B = np.vstack([rng.normal(size=(6, 5)) + 10, A[4:5]])
    out, n_lp = solve_small_pairs(
        [A, B], np.array([[0, 1]]), np.array([0]), tol=1e-6, rtol=1e-4, decide=False
    )
    assert out[0][7] == Status.OVERLAP and out[0][2] == 0.0 and n_lp == 0


def test_engine_routes_small_pairs_and_keeps_order(rng):
    """solve_pairs mixes single-point, small and large pairs; every row gets its own answer."""
    big = rng.normal(size=(300, 4))
    sets = [
        rng.normal(size=(20, 4)),
        rng.normal(size=(15, 4)) + 6,
        big + 9,
        rng.normal(size=(1, 4)) - 5,
    ]
    pairs = np.array([[0, 1], [2, 0], [3, 1], [1, 2], [0, 3]])
    res = solve_pairs(sets, pairs, mode="distance", tol=1e-6, rtol=1e-6)
    for k, (i, j) in enumerate(pairs):
        t = qp_distance(sets[i], sets[j])
        assert abs(res.distance[k] - t) <= 1e-5 * t, (k, res.distance[k], t)


def test_budget_exhausted_is_decided_by_highs(rng):
    """With 1 iteration and no active-set finish nothing is certified:
    overlapping pairs are decided by HiGHS (EXACT_LP, counted); separable ones
    are left for the engine in distance mode and decided by the LP in decide
    mode."""
    A = rng.normal(size=(30, 5))
    B_over = rng.normal(size=(25, 5)) + 0.3  # interpenetrating clouds: overlap
    B_sep = rng.normal(size=(25, 5)) + np.array([3.0, 0, 0, 0, 0])
    assert not lp_separable(A, B_over)
    sets = [A, B_over, B_sep]
    pairs = np.array([[0, 1], [0, 2]])
    out, n_lp = solve_small_pairs(
        sets, pairs, np.arange(2), tol=1e-9, rtol=1e-9, decide=False, max_iter=1, finish=False
    )
    assert out[0][7] == Status.EXACT_LP and not out[0][3] and out[0][0] == 0.0
    sep_truth = lp_separable(A, B_sep)
    if sep_truth and 1 in out:  # refined by the longer second run
        assert (
            out[1][7] == Status.EXACT_LP
            and abs(out[1][0] - qp_distance(A, B_sep)) <= 1e-6 * out[1][0]
        )
    assert n_lp == 2
    out, _ = solve_small_pairs(
        sets, pairs, np.arange(2), tol=1e-9, rtol=1e-9, decide=True, max_iter=1, finish=False
    )
    assert out[1][3] == sep_truth
    if sep_truth:
        w, b = out[1][4], out[1][5]
        assert (A @ w).min() >= b - 1e-9 and (B_sep @ w).max() <= b + 1e-9 and out[1][1] > 0


@pytest.mark.parametrize("gap", [1e-2, 1e-5])
def test_active_set_finishes_what_fista_leaves(rng, gap):
    """After a single FISTA step the active-set method alone must reach the
    exact answer: a thin known gap (simplices, closed form), an
    interpenetrating pair (HiGHS: overlap) and random separable pairs (QP),
    all certified without HiGHS."""
    A, B = simplices_at_gap(8, gap, rng, n_extra=20)
    C = rng.normal(size=(30, 8))
    D = rng.normal(size=(25, 8)) + 0.3
    E = rng.normal(size=(12, 8)) + 1.5 * rng.normal(size=8)
    assert not lp_separable(C, D)
    sets = [A, B, C, D, E]
    pairs = np.array([[0, 1], [2, 3], [2, 4], [3, 4]])
    out, n_lp = solve_small_pairs(
        sets, pairs, np.arange(4), tol=1e-9, rtol=1e-8, decide=False, max_iter=1
    )
    assert n_lp == 0 and len(out) == 4
    assert out[0][7] == Status.CERTIFIED and abs(out[0][0] - gap) <= 1e-6 * gap
    assert out[1][7] == Status.OVERLAP and out[1][0] == 0.0
    for k in (2, 3):
        P, Q = sets[pairs[k, 0]], sets[pairs[k, 1]]
        if lp_separable(P, Q):
            t = qp_distance(P, Q)
            assert out[k][7] == Status.CERTIFIED and abs(out[k][0] - t) <= 1e-6 * t
            assert out[k][6] > 1  # the active-set steps are counted
        else:
            assert out[k][7] == Status.OVERLAP


@pytest.mark.parametrize("d", [3, 30])
def test_warm_starts_reach_the_true_answers_on_dependent_supports(rng, d):
    """Starts from other points' supports (here: each pair's weights on a
    perturbed copy) and from poor starts (uniform weights on every point),
    on sets with repeated and collinear points, where the active-set method's
    KKT systems are singular: answers still match HiGHS and the QP."""
    sets, pairs = _random_pairs(rng, d)
    for s in range(0, len(sets), 2):
        A = sets[s]
        sets[s] = np.vstack([A, A[:3], 0.5 * (A[0] + A[1]), 0.25 * A[0] + 0.75 * A[1]])
    moved = [X + 0.05 * rng.normal(size=X.shape) for X in sets]
    idx = np.arange(len(pairs))
    first, _ = solve_small_pairs(moved, pairs, idx, tol=1e-9, rtol=1e-6, decide=False)
    starts = [
        first[k][9]
        if k in first and k % 2 == 0
        else (
            np.arange(len(sets[2 * k])),
            np.ones(len(sets[2 * k])),
            np.arange(len(sets[2 * k + 1])),
            np.ones(len(sets[2 * k + 1])),
        )
        for k in range(len(pairs))
    ]
    out, _ = solve_small_pairs(sets, pairs, idx, tol=1e-9, rtol=1e-6, decide=False, warm=starts)
    for k, row in out.items():
        A, B = sets[pairs[k, 0]], sets[pairs[k, 1]]
        sep = lp_separable(A, B)
        assert row[3] == sep, k
        if sep:
            t = qp_distance(A, B)
            assert abs(row[0] - t) <= 1e-5 * t, k
