"""The host solvers' step size: Lanczos' lambda_max against numpy's full spectrum."""

from __future__ import annotations

import numpy as np

from geomcore.solvers.spectral import lambda_max, step_lipschitz


def _grams(rng, m, K, d, scales=None):
    Z = rng.normal(size=(m, K, d))
    if scales is not None:
        Z = Z * scales
    Z[:, K // 2:] *= -1.0  # signed, as [A; -B]
    return Z @ np.swapaxes(Z, 1, 2)


def test_lambda_max_is_a_close_lower_bound(rng):
    G = _grams(rng, 12, 128, 384, np.linspace(0.2, 1.0, 384))
    exact = np.linalg.eigvalsh(G)[:, -1]
    est = lambda_max(G)
    assert np.all(est <= exact * (1 + 1e-12))
    assert np.all(est >= 0.95 * exact)


def test_lambda_max_on_low_rank_and_padding(rng):
    # Rank 3 (< 12 steps: Lanczos breaks down), rows of zero padding, one
    # point (rank 1) and an all-zero matrix: no inflation from rounding noise.
    K = 64
    Z = np.zeros((4, K, 3))
    Z[0, :40] = rng.normal(size=(40, 3))
    Z[1, :2] = rng.normal(size=(2, 3))
    Z[2, :1] = [3.0, 4.0, 0.0]
    G = Z @ np.swapaxes(Z, 1, 2)
    exact = np.linalg.eigvalsh(G)[:, -1]
    est = lambda_max(G)
    assert np.allclose(est[:3], exact[:3], rtol=1e-9)
    assert abs(est[2] - 25.0) <= 1e-9  # one point (3, 4, 0): |p|^2
    assert abs(est[3]) <= 1e-12


def test_step_lipschitz_bounds_the_spectrum(rng):
    # Large matrices: 1.1 x the Ritz value, above lambda_max and not far
    # above; small ones: exact.
    big = _grams(rng, 6, 96, 50)
    exact = np.linalg.eigvalsh(big)[:, -1]
    L = step_lipschitz(big)
    assert np.all(L >= exact) and np.all(L <= 1.1 * exact * (1 + 1e-12))
    small = _grams(rng, 6, 16, 5)
    assert np.allclose(step_lipschitz(small), np.linalg.eigvalsh(small)[:, -1], rtol=1e-12)
