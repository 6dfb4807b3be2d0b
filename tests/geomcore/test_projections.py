"""Masked simplex projection against a sort-based float64 reference and the KKT conditions."""

import numpy as np
import jax.numpy as jnp

from geomcore.solvers.projections import projection_simplex_masked


def _reference(y):
    # Duchi et al. 2008, float64, one row
    u = np.sort(y)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, y.size + 1)
    rho = np.max(k[u - (css - 1) / k > 0])
    tau = (css[rho - 1] - 1) / rho
    return np.maximum(y - tau, 0)


def test_matches_reference_on_masked_rows(rng):
    Y = rng.normal(size=(30, 17)) * rng.choice([0.01, 1.0, 100.0], size=(30, 1))
    M = rng.random((30, 17)) < 0.7
    M[:, 0] = True
    M[5] = False
    M[5, 3] = True  # one valid entry: projection is the vertex
    out = np.asarray(projection_simplex_masked(jnp.asarray(Y), jnp.asarray(M)))
    for r in range(30):
        ref = np.zeros(17)
        ref[M[r]] = _reference(Y[r, M[r]])
        np.testing.assert_allclose(out[r], ref, atol=1e-6)
        assert np.all(out[r][~M[r]] == 0) and np.all(out[r] >= 0)
        assert abs(out[r].sum() - 1) < 1e-5
    assert abs(out[5, 3] - 1.0) < 1e-6


def test_point_already_on_simplex_is_fixed(rng):
    x = rng.dirichlet(np.ones(9), size=4).astype(np.float32)
    out = np.asarray(projection_simplex_masked(jnp.asarray(x), jnp.ones_like(x, bool)))
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_hard_rows_match_the_reference_in_float32(rng):
    """Rows where the fixed point needs many steps (one tiny step per entry
    leaving the support: geometric values), exact ties, huge ranges, and
    iterates like the solver's (a sparse simplex point minus a gradient step)."""
    n = 40
    rows = [
        0.5 ** np.arange(n),  # geometric: the support shrinks one entry at a time
        np.r_[np.full(10, 0.3), np.zeros(n - 10)],  # ties at the threshold
        np.r_[1e4, rng.normal(size=n - 1)],  # one entry dominates
        np.linspace(-1, 1, n),
        np.r_[np.full(5, 0.2), np.zeros(n - 5)] - 0.05 * rng.normal(size=n),
    ]
    Y = np.array(rows, np.float32)
    out = np.asarray(projection_simplex_masked(jnp.asarray(Y), jnp.ones_like(Y, bool)))
    for r in range(len(rows)):
        ref = _reference(Y[r].astype(np.float64))
        np.testing.assert_allclose(out[r], ref, atol=2e-6 * max(1.0, np.abs(Y[r]).max() * 1e-4))
        assert np.all(out[r] >= 0) and abs(out[r].sum() - 1) < 1e-5
