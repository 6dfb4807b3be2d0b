"""The two batched FISTA kernels (on the points, on the Gram matrix) against the QP.

Both take the same padded blocks and must give hull points whose distance
matches clarabel's QP (tests/ground_truth.py), decide separability as HiGHS
does, and keep padded entries at zero weight.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from geomcore.solvers.nearest_point import solve_padded, solve_padded_gram
from tests.ground_truth import lp_separable, qp_distance


def _blocks(rng, K=16, d=20):
    sets = []
    for k, (na, nb, shift) in enumerate(
        [(16, 16, 3.0), (5, 12, 1.5), (9, 3, 0.0), (16, 1, 2.0), (7, 7, 0.4), (1, 1, 1.0)]
    ):
        A = rng.normal(size=(na, d))
        B = rng.normal(size=(nb, d)) + shift * np.eye(d)[k % d]
        sets.append((A, B))
    Za = np.zeros((len(sets), K, d), np.float32)
    Zb = np.zeros_like(Za)
    ma = np.zeros((len(sets), K), bool)
    mb = np.zeros_like(ma)
    for r, (A, B) in enumerate(sets):
        c = 0.5 * (A.mean(0) + B.mean(0))
        R = max(np.linalg.norm(A - c, axis=1).max(), np.linalg.norm(B - c, axis=1).max())
        Za[r, : len(A)] = (A - c) / R
        Zb[r, : len(B)] = (B - c) / R
        ma[r, : len(A)] = True
        mb[r, : len(B)] = True
    a0 = ma / ma.sum(1, keepdims=True)
    b0 = mb / mb.sum(1, keepdims=True)
    return sets, tuple(
        jnp.asarray(x) for x in (Za, ma, Zb, mb, a0.astype(np.float32), b0.astype(np.float32))
    )


@pytest.mark.parametrize("kernel", [solve_padded, solve_padded_gram])
def test_kernel_distances_and_decisions_match_ground_truth(rng, kernel):
    sets, args = _blocks(rng)
    Za, Zb = (np.asarray(x, np.float64) for x in (args[0], args[2]))
    ma, mb = (np.asarray(x, bool) for x in (args[1], args[3]))
    kw = dict(tol=jnp.float32(2e-6), rtol=jnp.float32(1e-5), max_iter=jnp.int32(20000))
    out = kernel(*args, decide=jnp.asarray(False), **kw)
    a, b = np.asarray(out.a, np.float64), np.asarray(out.b, np.float64)
    assert np.all(a[~ma] == 0) and np.all(b[~mb] == 0)
    assert np.all(a >= 0) and np.all(b >= 0)
    np.testing.assert_allclose(a.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(b.sum(1), 1, atol=1e-5)
    for r in range(len(sets)):
        A, B = Za[r][ma[r]], Zb[r][mb[r]]
        truth = qp_distance(A, B) if lp_separable(A, B) else 0.0
        U = np.linalg.norm(a[r][ma[r]] @ A - b[r][mb[r]] @ B)
        assert truth <= U * (1 + 1e-6) + 1e-7 and U <= truth * (1 + 1e-3) + 1e-4, (r, U, truth)
    dec = kernel(*args, decide=jnp.asarray(True), **kw)
    for r in range(len(sets)):
        A, B = Za[r][ma[r]], Zb[r][mb[r]]
        if lp_separable(A, B) and qp_distance(A, B) > 1e-3:
            assert bool(dec.done[r]) and float(dec.lower[r]) > 0
        # L is a float32 bound on the padded sets; it may not exceed the truth
        # by more than rounding (and is <= 0 on overlapping pairs).
        truth = qp_distance(A, B) if lp_separable(A, B) else 0.0
        assert float(dec.lower[r]) <= truth * (1 + 1e-4) + 1e-5


def test_engine_takes_the_gram_kernel_for_small_working_sets_and_does_not_recompile(rng):
    """Working sets of K <= d / 2 go to the Gram kernel (here K = 32, d = 80);
    a second call with other sizes in the same bucket reuses its compile, and
    at d = 40 the same sets go to the kernel on the points."""
    from geomcore.solvers.params import EngineParams
    from geomcore.solvers.router import solve_pairs

    params = EngineParams(path="device", small_max=0)

    def run(sizes, d=80):
        sets = [rng.normal(size=(n, d)) + 0.8 * k for k, n in enumerate(sizes)]
        return solve_pairs(sets, np.array([[0, 1], [1, 2], [0, 2]]), params=params)

    start_points, start_gram = solve_padded._cache_size(), solve_padded_gram._cache_size()
    first = run([20, 30, 25])
    assert first.iterations.max() > 0
    assert solve_padded_gram._cache_size() == start_gram + 1
    assert solve_padded._cache_size() == start_points
    run([18, 27, 31])
    assert solve_padded_gram._cache_size() == start_gram + 1
    run([18, 27, 31], d=40)
    assert solve_padded._cache_size() == start_points + 1
    assert solve_padded_gram._cache_size() == start_gram + 1
