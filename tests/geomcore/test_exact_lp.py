"""The exact separability LP: the interior-point method and its cutting-plane driver.

Ground truth: HiGHS on the full feasibility LP (tests/ground_truth.py, its own
formulation), closed-form gaps, and certificates recomputed here from the
returned weights and hyperplanes.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomcore.solvers import exact_lp
from geomcore.solvers.exact_lp import lp_decide
from geomcore.solvers.slab_ipm import slab_ipm
from tests.ground_truth import lp_separable, qp_distance, simplices_at_gap


def _unit(A, B):
    c = np.vstack([A, B]).mean(axis=0)
    r = np.linalg.norm(np.vstack([A, B]) - c, axis=1).max()
    return (A - c) / r, (B - c) / r


def _cases(rng):
    """(A, B) pairs in the unit ball: thin gaps, overlaps, d > n, n >> d, duplicates."""
    out = []
    for gap in (1e-2, 1e-5):
        out.append(_unit(*simplices_at_gap(12, gap, rng, n_extra=40)))
    for shift in (0.0, 0.15, 0.4, 3.0):
        A = rng.normal(size=(150, 10))
        B = rng.normal(size=(120, 10)) + shift
        out.append(_unit(A, B))
    out.append(_unit(rng.normal(size=(8, 40)), rng.normal(size=(9, 40))))  # d > n: separable
    A = rng.normal(size=(30, 5))
    out.append(_unit(A, np.vstack([rng.normal(size=(20, 5)) + 4.0, A[3:4]])))  # a shared point
    out.append(_unit(rng.normal(size=(1, 6)), rng.normal(size=(1, 6))))  # two single points
    return out


def test_slab_ipm_certificates_match_highs(rng):
    """Each answer is a certificate checked here, and the decision agrees with HiGHS."""
    for A, B in _cases(rng):
        truth = lp_separable(A, B)
        res = slab_ipm(A, B, touch_tol=2e-10)
        assert res.kind in ("separable", "touching")
        if res.kind == "separable":
            assert truth
            assert (A @ res.w).min() > (B @ res.w).max()
        else:
            assert not truth
            # U recomputed from the returned convex weights.
            assert np.all(res.lam >= 0) and np.all(res.mu >= 0)
            assert abs(res.lam.sum() - 1) < 1e-12 and abs(res.mu.sum() - 1) < 1e-12
            assert np.linalg.norm(res.lam @ A - res.mu @ B) <= 2e-10
        assert res.iterations <= 40


def test_slab_ipm_gives_up_honestly():
    """With no iterations allowed it certifies nothing and says so."""
    A = np.array([[0.5, 0.0], [0.6, 0.1]])
    B = -A
    res = slab_ipm(A, B, touch_tol=2e-10, max_iter=0)
    # Iteration 0 only checks the starting point; if that already separates the
    # sets the answer must be a true certificate.
    if res.kind == "separable":
        assert (A @ res.w).min() > (B @ res.w).max()
    else:
        assert res.kind == "undecided" and res.upper == np.inf


def test_lp_decide_grows_subsets_until_certified(rng):
    """Started from tiny subsets, the cutting planes must reach the full-set answer."""
    for A, B in _cases(rng):
        truth = lp_separable(A, B)
        res = lp_decide(A, B, np.arange(1), np.arange(1), add=4)
        assert res.separable == truth
        assert res.highs_rounds == 0  # the interior-point method decided every round
        if truth:
            assert (A @ res.w).min() > (B @ res.w).max()
        else:
            assert res.upper <= 2e-10


def test_lp_decide_falls_back_to_highs(rng, monkeypatch):
    """Rounds the interior-point method cannot certify are decided by HiGHS, and counted."""
    real = exact_lp.slab_ipm
    monkeypatch.setattr(
        exact_lp,
        "slab_ipm",
        lambda A, B, touch_tol: real(A, B, touch_tol=touch_tol, max_iter=0)._replace(
            kind="undecided"
        ),
    )
    for A, B in _cases(rng)[:6]:
        res = lp_decide(A, B, np.arange(A.shape[0]), np.arange(B.shape[0]))
        assert res.separable == lp_separable(A, B)
        assert res.highs_rounds == res.rounds >= 1
        assert res.upper == np.inf


@pytest.mark.parametrize("gap", [1e-3, 1e-6])
def test_engine_escalation_certifies_overlap_and_thin_gaps(rng, gap):
    """Pairs escalated after one iteration: a thin gap (closed form) and a thin
    interpenetration (HiGHS: overlap) are decided as HiGHS decides, the
    distance stays bracketed, and the overlap carries U <= 1e-10 of the scale
    (two hull points that close, from the interior-point LP)."""
    from geomcore import Status, hull_distances

    A, B = simplices_at_gap(10, gap, rng, n_extra=300)
    C, D = simplices_at_gap(10, -gap, rng, n_extra=300)
    assert not lp_separable(C, D)
    X = np.vstack([A, B, C, D])
    g = np.repeat([0, 1, 2, 3], [len(A), len(B), len(C), len(D)])
    # The host path solves both exactly (no budget to exhaust); the device
    # path, held to one iteration, must escalate both to the LP.
    host = hull_distances(X, g, np.array([[0, 1], [2, 3]]), path="host")
    assert host.n_escalated == 0
    assert host.status[1] == Status.OVERLAP and not host.separable[1]
    assert host.upper[1] <= 1e-6 * host.scale[1]
    if gap > 1e-6 * host.scale[0]:
        assert host.status[0] == Status.CERTIFIED and abs(host.distance[0] - gap) <= 1e-4 * gap
    else:  # closer than tol x scale: overlapping by the contract, with the segment to show it
        assert host.status[0] == Status.OVERLAP and gap <= host.upper[0] <= 1e-6 * host.scale[0]
    res = hull_distances(X, g, np.array([[0, 1], [2, 3]]), max_iter=1, path="device")
    assert res.status.tolist() == [Status.EXACT_LP, Status.EXACT_LP]
    assert res.n_escalated == 2
    assert res.separable.tolist() == [True, False]
    assert res.lower[0] <= gap * (1 + 1e-9) and res.upper[0] >= gap * (1 - 1e-9)
    assert res.distance[1] == 0.0
    assert res.upper[1] <= 1e-10 * res.scale[1]


# --------------------------------------------------------------------------- the interior-point SVM


@pytest.mark.parametrize("gap", [1e-1, 1e-4, 1e-7])
def test_svm_ipm_distance_matches_closed_form(rng, gap):
    """Two simplices at a known gap: U and L bracket the gap within rtol, and
    the weights are convex combinations giving that U."""
    from geomcore.solvers.svm_ipm import svm_ipm

    A, B = simplices_at_gap(16, gap, rng, n_extra=60)
    s = np.abs(np.vstack([A, B])).max()
    res = svm_ipm(A / s, B / s, rtol=1e-6)
    assert res.converged
    assert res.lower <= gap / s * (1 + 1e-9) and res.upper >= gap / s * (1 - 1e-9)
    assert res.upper - res.lower <= 1e-6 * res.upper
    assert np.all(res.lam >= 0) and abs(res.lam.sum() - 1) < 1e-12
    assert np.isclose(np.linalg.norm(res.lam @ A - res.mu @ B) / s, res.upper, rtol=1e-12)
    assert res.iterations <= 40


def test_svm_ipm_matches_qp_on_random_pairs(rng):
    from geomcore.solvers.svm_ipm import svm_ipm

    for shift in (0.8, 2.0, 5.0):
        A = rng.normal(size=(80, 12))
        B = rng.normal(size=(70, 12)) + shift * rng.normal(size=12) / np.sqrt(12) * 3
        if not lp_separable(A, B):
            continue
        truth = qp_distance(A, B)
        A_, B_ = _unit(A, B)
        scale = np.linalg.norm(A[0] - B[0]) / np.linalg.norm(A_[0] - B_[0])
        res = svm_ipm(A_, B_, rtol=1e-7)
        assert res.converged
        assert abs(res.upper * scale - truth) <= 1e-6 * truth


def test_svm_ipm_does_not_converge_on_overlap(rng):
    """Overlapping hulls: (S) is infeasible, so no certificate may appear."""
    from geomcore.solvers.svm_ipm import svm_ipm

    A = rng.normal(size=(50, 5))
    B = rng.normal(size=(40, 5)) + 0.2
    assert not lp_separable(A, B)
    res = svm_ipm(*_unit(A, B), rtol=1e-4, max_iter=30)
    assert not res.converged and not res.lower > 0


def test_engine_finishes_thin_pairs_with_the_interior_point_svm():
    """Two Gaussian clouds just past separability (many support points, as on
    real embeddings): with the interior-point finish the engine certifies the
    QP distance in far fewer iterations than with it switched off (qp_after
    huge), so the finish is what closed the gap."""
    from geomcore import Status
    from geomcore.solvers.params import DeviceParams, EngineParams
    from geomcore.solvers.router import solve_pairs

    def device(qp_after):
        return EngineParams(path="device", device=DeviceParams(qp_after=qp_after))

    rng = np.random.default_rng(5)
    A = rng.normal(size=(600, 60))
    B = rng.normal(size=(600, 60))
    B[:, 0] += 4.2
    truth = qp_distance(A, B)
    pair = np.array([[0, 1]])
    res = solve_pairs([A, B], pair, mode="distance", rtol=1e-6, max_iter=5000, params=device(300))
    assert res.status[0] == Status.CERTIFIED
    assert abs(res.distance[0] - truth) <= 1e-6 * truth
    assert res.lower[0] <= truth * (1 + 1e-9) and res.upper[0] >= truth * (1 - 1e-9)
    off = solve_pairs([A, B], pair, mode="distance", rtol=1e-6, max_iter=5000, params=device(10**9))
    assert off.status[0] == Status.CERTIFIED and abs(off.distance[0] - truth) <= 1e-6 * truth
    # 813 vs 2,380 iterations here (the first-order engine alone needed
    # thousands more before its rounds were shortened to 200 iterations).
    assert res.iterations[0] < 1000 and off.iterations[0] > 2 * res.iterations[0]


def test_interior_point_solvers_use_one_blas_thread(monkeypatch, rng):
    """Both interior-point solvers factor with one BLAS thread: numpy's and
    scipy's OpenBLAS pools otherwise spin against each other on few cores."""
    import scipy.linalg
    from threadpoolctl import threadpool_info

    from geomcore.solvers.slab_ipm import slab_ipm
    from geomcore.solvers.svm_ipm import svm_ipm

    def blas_threads():
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    if blas_threads() < 2:
        pytest.skip("BLAS runs on one thread here anyway")
    seen = []
    orig = scipy.linalg.cho_factor

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return orig(*args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "cho_factor", spy)
    A = rng.normal(size=(40, 6))
    B = rng.normal(size=(40, 6)) + 4.0
    assert slab_ipm(A / 8, B / 8, touch_tol=1e-10).kind == "separable"
    n_slab = len(seen)
    assert svm_ipm(A / 8, B / 8, rtol=1e-6).converged
    assert n_slab > 0 and len(seen) > n_slab
    assert set(seen) == {1}
    assert blas_threads() >= 2  # restored afterwards
