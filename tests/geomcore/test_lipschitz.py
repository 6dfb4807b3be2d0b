"""The step size of the batched iteration: Lanczos' estimate of lambda_max(M^T M).

Ground truth: numpy's symmetric eigensolver in float64 on M = [Za; -Zb]. The
estimate is a Ritz value, so it may not exceed lambda_max (beyond float32
rounding), and the solver's 1.1 safety factor assumes it is within a few
percent below.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomcore.solvers.nearest_point import lipschitz


def _exact(Za, Zb):
    M = np.concatenate([Za, Zb]).astype(np.float64)
    return np.linalg.eigvalsh(M @ M.T)[-1]


def _block(rng, K, d, na, nb, kind):
    Za = np.zeros((K, d), np.float32)
    Zb = np.zeros((K, d), np.float32)
    if kind == "gaussian":
        A, B = rng.normal(size=(na, d)), rng.normal(size=(nb, d)) + 0.3
    elif kind == "anisotropic":  # a few dominant, nearly equal directions
        S = np.r_[1.0, 0.99, 0.98, 0.05 * np.ones(d - 3)]
        A, B = rng.normal(size=(na, d)) * S, rng.normal(size=(nb, d)) * S
    elif kind == "duplicates":  # rank 2: Lanczos breaks down after two steps
        u, v = rng.normal(size=(2, d))
        A = np.repeat(u[None], na, 0)
        B = np.repeat(v[None], nb, 0)
    else:  # one point on each side
        A, B = rng.normal(size=(1, d)), rng.normal(size=(1, d))
        na = nb = 1
    s = max(np.abs(A).max(), np.abs(B).max())
    Za[:na], Zb[:nb] = A[:na] / s, B[:nb] / s
    return Za, Zb


@pytest.mark.parametrize("kind", ["gaussian", "anisotropic", "duplicates", "single"])
def test_lanczos_estimate_is_lambda_max_from_below(rng, kind):
    K, d = 64, 40
    blocks = [_block(rng, K, d, na, nb, kind) for na, nb in ((64, 64), (10, 50), (3, 2))]
    Za = np.stack([b[0] for b in blocks])
    Zb = np.stack([b[1] for b in blocks])
    est = np.asarray(lipschitz(Za, Zb), np.float64)
    exact = np.array([_exact(a, b) for a, b in blocks])
    assert np.all(np.isfinite(est))
    assert np.all(est <= exact * (1 + 1e-5)), (est, exact)
    assert np.all(est >= 0.99 * exact), (est / exact)


def test_lanczos_on_a_clustered_spectrum(rng):
    """Top eigenvalues 1, 0.995, 0.99 in a random basis, where a few power
    iterations stall: the estimate must still be within 1%."""
    d, K = 60, 64
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    S = np.r_[1.0, 0.995, 0.99, 0.3 * np.ones(d - 3)]
    A = (rng.normal(size=(K, d)) * S) @ Q.T
    Za = (A / np.abs(A).max()).astype(np.float32)[None]
    Zb = np.zeros_like(Za)
    exact = _exact(Za[0], Zb[0])
    est = float(lipschitz(Za, Zb)[0])
    assert 0.99 * exact <= est <= exact * (1 + 1e-5)
