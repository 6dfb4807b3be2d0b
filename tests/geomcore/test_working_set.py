"""The host path: exact restricted solves (active set) and shared pricing.

Ground truth is independent of the engine: HiGHS decides separability, the
clarabel QP gives distances, closed forms where they exist
(tests/ground_truth.py). Real pairs come from the default model's layer 6 on
PUD sentences (the study's POS data), embedded here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geomcore.results import Status
from geomcore.solvers import active_set
from geomcore.solvers.params import EngineParams, WorkingSetParams
from geomcore.solvers.router import solve_pairs
from tests.ground_truth import lp_separable, qp_distance, simplices_at_gap

HOST = EngineParams(path="host")


def _check(res, sets, pairs, *, rtol=1e-4, tol=1e-6):
    """Every row against HiGHS and the QP: decision, certified bracket, distance."""
    for k, (i, j) in enumerate(pairs):
        A, B = sets[i], sets[j]
        sep = lp_separable(A, B)
        t = qp_distance(A, B) if sep else 0.0
        # The bracket holds whatever the decision.
        # (the QP oracle itself is accurate to about 1e-8 relative)
        assert res.lower[k] <= t * (1 + 1e-6) + 1e-12 and t <= res.upper[k] * (1 + 1e-6) + 1e-12, k
        if res.separable[k]:
            assert sep, k
            assert res.status[k] == Status.CERTIFIED
            assert abs(res.distance[k] - t) <= 2 * rtol * t, (k, res.distance[k], t)
            w, b = res.w[k], res.b[k]
            assert (A @ w).min() >= b and (B @ w).max() <= b
        else:
            # overlapping, or closer than tol x scale (a segment that short is shown)
            assert res.status[k] == Status.OVERLAP, k
            assert res.upper[k] <= tol * res.scale[k]
            assert not sep or t <= tol * res.scale[k]


# --------------------------------------------------------------------------- the kernel


@pytest.mark.parametrize(
    "d, na, nb, shift", [(3, 6, 5, 2.0), (20, 40, 30, 0.6), (60, 150, 120, 0.35)]
)
def test_kernel_is_exact_on_its_working_set(rng, d, na, nb, shift):
    """One solve on all the points: the nearest points of the two hulls, to
    round-off (QP), weights on the simplices, gap below rtol."""
    A = rng.normal(size=(na, d))
    B = rng.normal(size=(nb, d)) + shift * np.sqrt(d) / np.sqrt(d)
    B[:, 0] += 3 * shift
    Z = np.vstack([A, B])
    c = Z.mean(0)
    R = np.sqrt(((Z - c) ** 2).sum(1).max())
    Zs = (Z - c) / R
    side = np.r_[np.zeros(na, np.int8), np.ones(nb, np.int8)]
    x0 = np.zeros(na + nb)
    x0[0] = x0[na] = 1.0
    r = active_set.solve(Zs @ Zs.T, side, x0, rtol=1e-12, overlap=1e-12, max_steps=10000)
    a, b = r.x[:na], r.x[na:]
    assert r.code in (active_set.OPTIMAL, active_set.OVERLAP)
    assert (a >= 0).all() and (b >= 0).all()
    assert abs(a.sum() - 1) < 1e-12 and abs(b.sum() - 1) < 1e-12
    got = np.linalg.norm(a @ A - b @ B)
    t = qp_distance(A, B) if lp_separable(A, B) else 0.0
    assert abs(got - t) <= 1e-7 * max(t, 1e-3 * R)
    # A corral is affinely independent, so it has at most d + 2 points.
    assert r.corral.index.size <= d + 2


def test_kernel_resumes_from_its_corral(rng):
    """A solve resumed from its own corral (factor included) after new points
    join gives the same optimum as a cold solve on all the points."""
    A = rng.normal(size=(80, 15))
    B = rng.normal(size=(70, 15))
    B[:, 0] += 8.0
    Z = np.vstack([A, B]) / 6.0
    side = np.r_[np.zeros(80, np.int8), np.ones(70, np.int8)]
    G = Z @ Z.T
    first = np.r_[np.arange(30), 80 + np.arange(30)]
    x0 = np.zeros(60)
    x0[0] = x0[30] = 1.0
    part = active_set.solve(
        G[np.ix_(first, first)], side[first], x0, rtol=1e-12, overlap=1e-12, max_steps=5000
    )
    # Resume on all points: corral positions mapped into the full index.
    corral = active_set.Corral(first[part.corral.index], part.corral.factor)
    x = np.zeros(150)
    x[first] = part.x
    warm = active_set.solve(G, side, x, rtol=1e-12, overlap=1e-12, max_steps=5000, corral=corral)
    x1 = np.zeros(150)
    x1[0] = x1[80] = 1.0
    cold = active_set.solve(G, side, x1, rtol=1e-12, overlap=1e-12, max_steps=5000)
    w = lambda r: r.x[:80] @ Z[:80] - r.x[80:] @ Z[80:]  # noqa: E731
    assert abs(np.linalg.norm(w(warm)) - np.linalg.norm(w(cold))) <= 1e-10
    assert warm.code == cold.code == active_set.OPTIMAL


# --------------------------------------------------------------------------- the path


@pytest.mark.parametrize("gap", [1e-1, 1e-3])
def test_simplices_at_a_known_gap(rng, gap):
    A, B = simplices_at_gap(12, gap, rng, n_extra=400)
    res = solve_pairs([A, B], np.array([[0, 1]]), rtol=1e-6, params=HOST)
    assert res.status[0] == Status.CERTIFIED and res.n_escalated == 0
    assert abs(res.distance[0] - gap) <= 1e-6 * gap
    assert res.lower[0] <= gap * (1 + 1e-12) <= res.upper[0] * (1 + 1e-9)


def test_adversarial_pairs_against_highs_and_the_qp(rng):
    """Duplicated points, a shared point, collinear and coplanar sets (affinely
    dependent working sets), a point inside the other hull, a sliver of
    overlap, identical sets, far-apart sets of very different scales, and
    single points."""
    d = 8
    base = rng.normal(size=(120, d))
    line = np.outer(np.linspace(-1, 1, 50), rng.normal(size=d))
    plane = rng.normal(size=(60, 2)) @ rng.normal(size=(2, d))
    A_sliver, B_sliver = simplices_at_gap(d, -1e-3, rng, n_extra=80)
    sets = [
        np.repeat(base[:40], 3, axis=0),  # 0: every point three times
        base[30:90] + 0.2,  # 1
        line,  # 2: collinear
        line + 0.05 * rng.normal(size=d),  # 3: a parallel line nearby
        plane,  # 4: coplanar
        plane + 3.0 * rng.normal(size=d),  # 5
        np.vstack([base[:50], base[:50].mean(0, keepdims=True) + 40]),  # 6
        base[:50].mean(0, keepdims=True),  # 7: inside set 6's hull
        A_sliver,
        B_sliver,  # 8, 9: a thin interpenetration
        base[:25].copy(),  # 10: the same points as 11
        base[:25].copy(),  # 11
        1e-3 * rng.normal(size=(30, d)),  # 12: small scale
        1e3 + rng.normal(size=(30, d)),  # 13: far away
        rng.normal(size=(1, d)) + 5,  # 14: a single point
        np.vstack([base[:40], base[100:101]]),  # 15: shares a point with 16
        np.vstack([base[100:101], base[60:90] + 2]),  # 16
    ]
    pairs = np.array(
        [
            [0, 1],
            [2, 3],
            [4, 5],
            [6, 7],
            [8, 9],
            [10, 11],
            [12, 13],
            [14, 1],
            [1, 14],
            [15, 16],
            [2, 4],
            [0, 12],
        ]
    )
    res = solve_pairs(sets, pairs, params=HOST)
    assert res.n_escalated == 0
    _check(res, sets, pairs)
    assert res.status[pairs.tolist().index([15, 16])] == Status.OVERLAP  # the shared point


def test_decide_mode_agrees_with_highs(rng):
    sizes = rng.integers(20, 200, size=10)
    sets = [rng.normal(size=(n, 10)) + 1.2 * rng.normal(size=10) for n in sizes]
    iu, ju = np.triu_indices(10, 1)
    pairs = np.stack([iu, ju], 1)
    res = solve_pairs(sets, pairs, mode="decide", params=HOST)
    for k, (i, j) in enumerate(pairs):
        sep = lp_separable(sets[i], sets[j])
        assert bool(res.separable[k]) == sep
        assert res.status[k] == (Status.SEPARABLE if sep else Status.OVERLAP)
        if sep:  # the hyperplane separates
            assert (sets[i] @ res.w[k]).min() > res.b[k] > (sets[j] @ res.w[k]).max()


def test_any_only_stops_at_an_overlap(rng):
    A = rng.normal(size=(50, 6))
    sets = [A, A + 10, A + 0.1, A + 20]
    pairs = np.array([[0, 1], [0, 2], [1, 3]])
    res = solve_pairs(sets, pairs, mode="decide", any_only=True, params=HOST)
    assert not res.separable[1] and res.status[1] == Status.OVERLAP
    assert all(s in (Status.SEPARABLE, Status.SKIPPED) for s in res.status[[0, 2]])


def test_pairs_over_budget_are_handed_on_and_still_exact(rng):
    """One round and no growth: the host path cannot finish, so the pairs go
    to the device path (and its LP); the answers are the same as HiGHS'."""
    A = rng.normal(size=(300, 10))
    B = rng.normal(size=(300, 10))
    B[:, 0] += 2.5
    C = rng.normal(size=(300, 10)) + 0.1
    sets = [A, B, C]
    pairs = np.array([[0, 1], [0, 2]])
    tight = EngineParams(path="host", host=WorkingSetParams(start=4, grow=1, max_rounds=1))
    res = solve_pairs(sets, pairs, params=tight)
    _check(res, sets, pairs)
    # Decisions handed on go straight to the exact LP: its answer is HiGHS'.
    res = solve_pairs(sets, pairs, mode="decide", params=tight)
    assert res.n_escalated == 2
    for k, (i, j) in enumerate(pairs):
        assert bool(res.separable[k]) == lp_separable(sets[i], sets[j])
        assert res.iterations[k] < 50  # no device iterations before the LP


def test_same_answer_on_one_thread_or_two_and_in_any_batch(rng):
    sizes = rng.integers(30, 150, size=7)
    sets = [rng.normal(size=(n, 12)) + 1.0 * rng.normal(size=12) for n in sizes]
    iu, ju = np.triu_indices(7, 1)
    pairs = np.stack([iu, ju], 1)
    one = solve_pairs(
        sets, pairs, params=EngineParams(path="host", host=WorkingSetParams(threads=1))
    )
    two = solve_pairs(
        sets, pairs, params=EngineParams(path="host", host=WorkingSetParams(threads=2))
    )
    for f in ("distance", "lower", "upper", "w", "b", "iterations", "status"):
        assert np.array_equal(getattr(one, f), getattr(two, f)), f
    # A pair alone gives what it gives among the others, bit for bit.
    # (certificates included: the pricing products do not depend on which
    # other pairs share them), and so does any share of the pairs.
    for rows in ([3], [0, 5, 3], list(range(0, pairs.shape[0], 2))):
        part = solve_pairs(sets, pairs[rows], params=HOST)
        for f in ("distance", "lower", "upper", "w", "b", "iterations", "status"):
            assert np.array_equal(getattr(part, f), getattr(one, f)[rows]), (rows, f)


@pytest.mark.parametrize("block", [1, 3])
def test_any_pricing_block_against_highs_and_the_qp(rng, block):
    """Pricing every pair alone (the ablation of shared pricing) or in blocks
    of another width changes only the products' shapes: every answer is still
    HiGHS' decision and the QP's distance."""
    sizes = rng.integers(20, 160, size=6)
    sets = [rng.normal(size=(n, 9)) + 1.1 * rng.normal(size=9) for n in sizes]
    iu, ju = np.triu_indices(6, 1)
    pairs = np.stack([iu, ju], 1)
    params = EngineParams(path="host", host=WorkingSetParams(price_block=block))
    _check(solve_pairs(sets, pairs, params=params), sets, pairs)
    with pytest.raises(ValueError, match="price_block"):
        WorkingSetParams(price_block=0)


def test_warm_start_from_moved_points(rng):
    sizes = [200, 150, 180]
    sets = [rng.normal(size=(n, 10)) + 2.0 * k for k, n in enumerate(sizes)]
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    cold = solve_pairs(sets, pairs, params=HOST)
    moved = [1.05 * S + 0.02 * rng.normal(size=S.shape) for S in sets]
    warm = solve_pairs(moved, pairs, params=HOST, warm=cold.supports)
    _check(warm, moved, pairs)
    again = solve_pairs(sets, pairs, params=HOST, warm=cold.supports)
    assert (again.iterations == 0).all()  # the same points: certified by round 0


@pytest.fixture(scope="module")
def pud_layer6():
    """Layer 6 of the default model on the first 120 PUD sentences (POS)."""
    pytest.importorskip("torch")
    from finetune.embed import embed_layers
    from finetune.models import DEFAULT_MODEL, load_encoder, resolve_model_path
    from finetune.tasks import load_task
    from tests.conftest import data_dir

    task = load_task("pos", "train", data_dir())
    model, tok = load_encoder(str(resolve_model_path(DEFAULT_MODEL)))
    keep = task.targets[:, 0] < 120
    sub = dataclasses.replace(
        task,
        sentences=task.sentences[:120],
        targets=task.targets[keep],
        labels=tuple(np.asarray(task.labels)[keep]),
    )
    X = embed_layers(model, tok, sub, batch_size=32, layers=[6], progress=False)[0].numpy()
    return X.astype(np.float64), np.asarray(sub.labels)


def test_real_pud_pairs_against_highs_and_the_qp(pud_layer6):
    X, y = pud_layer6
    rng = np.random.default_rng(0)
    labels = [
        lab for lab in ("NOUN", "VERB", "ADJ", "ADV", "PROPN", "ADP") if (y == lab).sum() >= 10
    ]
    sets = []
    for lab in labels:
        idx = np.flatnonzero(y == lab)
        sets.append(X[rng.permutation(idx)[:150]])
    iu, ju = np.triu_indices(len(sets), 1)
    pairs = np.stack([iu, ju], 1)
    res = solve_pairs(sets, pairs, params=HOST)
    assert res.n_escalated == 0
    _check(res, sets, pairs)
    dec = solve_pairs(sets, pairs, mode="decide", params=HOST)
    assert np.array_equal(dec.separable, res.separable)
