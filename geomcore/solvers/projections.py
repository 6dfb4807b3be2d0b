"""Masked, per-row Euclidean projection onto the probability simplex.

``optax.projections.projection_simplex`` projects a whole pytree onto one
simplex and has no mask; the batched solver needs one simplex per (pair, side)
over the valid (unpadded) entries only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["projection_simplex_masked"]


def projection_simplex_masked(y: jax.Array, mask: jax.Array) -> jax.Array:
    """Project each row of ``y`` onto {x >= 0, sum(x[mask]) = 1, x[~mask] = 0}.

    Sort-based (Held, Wolfe & Crowder; Duchi et al. 2008): with u the valid
    entries sorted in decreasing order and rho the largest k such that
    ``u_k - (sum_{i<=k} u_i - 1) / k > 0``, the projection is
    ``max(y - tau, 0)`` with ``tau = (sum_{i<=rho} u_i - 1) / rho``.

    Args:
      y: (..., n) points to project.
      mask: (..., n) bool, True for valid entries; every row needs at least one.

    Returns:
      (..., n) array, zero on masked-out entries.
    """
    neg = jnp.asarray(-jnp.inf, y.dtype)
    u = jnp.sort(jnp.where(mask, y, neg), axis=-1)[..., ::-1]
    valid = jnp.isfinite(u)
    css = jnp.cumsum(jnp.where(valid, u, 0.0), axis=-1)
    k = jnp.arange(1, y.shape[-1] + 1, dtype=y.dtype)
    cond = valid & (u - (css - 1.0) / k > 0)
    rho = jnp.maximum(jnp.sum(cond, axis=-1, keepdims=True), 1)
    css_rho = jnp.take_along_axis(css, rho - 1, axis=-1)
    tau = (css_rho - 1.0) / rho.astype(y.dtype)
    return jnp.where(mask, jnp.maximum(y - tau, 0.0), 0.0)
