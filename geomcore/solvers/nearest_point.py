"""Batched nearest-point iteration between two hulls (JAX).

Each pair in a batch is one padded block: Z (K, d) holds the working-set
points of both sides (A rows, then B rows, then zero padding), with masks ma
and mb marking the rows of each side. With the signs s = +1 on A rows and -1
on B rows, and x the weights (a on A rows, b on B rows), minimise over the
product of the two simplices

    f(x) = 1/2 ||w||^2,    w = Z^T (s * x) = sum_i a_i z_i - sum_j b_j z_j,

by FISTA with the gradient-based adaptive restart of O'Donoghue & Candes
(2015). The gradient is s * (Z w), and because w is linear in x, the momentum
point's w is extrapolated from the last two iterates' w for free: one product
with Z^T and one with Z per iteration. When the working sets are small next to
d (:func:`use_gram`), :func:`solve_padded_gram` runs the same iteration on the
signed Gram matrix (s s^T) * (Z Z^T): one (K x K) product per iteration.

Both sides share one padded length K (bucketed on na + nb by the driver), so a
pair of 300 and 40 points pads to 384 rows, not to 2 x 512 as two sides
padded to a common length would. On the PUD POS layer-6 label distances
(iterations weighted by their cost, K^2) the padded arithmetic falls from
2.8x to 1.5x the useful work, and the call from 4.2-4.4 s to 3.5-4.0 s.

Every ``check_every`` iterations the certificates of DESIGN.md section 2 are
evaluated on the padded sets (in the solver's dtype; the caller re-verifies in
float64 on the full sets):

    U = ||w||,   L = (min_{i in A} <w, z_i> - max_{j in B} <w, z_j>) / ||w||.

A pair is done when it is decided (``decide``: L > 0 with some room, or
U <= tol) or when its relative gap (U - L) / U <= rtol. Done pairs are frozen
so a batch costs as much as its slowest pair, which is why the driver keeps
batches of similar pairs and compacts them between rounds.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from geomcore.solvers.projections import projection_simplex_masked

__all__ = ["NearestPointOutput", "solve_padded", "solve_padded_gram", "lipschitz", "use_gram"]

def _precision():
    # On GPU/TPU the default float32 dot may use TF32/bf16 passes: ask for full
    # float32. On CPU the default is already exact float32, and HIGHEST selects
    # a slower kernel.
    return None if jax.default_backend() == "cpu" else jax.lax.Precision.HIGHEST


class NearestPointOutput(NamedTuple):
    """Per-pair result of :func:`solve_padded` (leading axis: pairs)."""

    a: jax.Array  # (B, K) weights of the A rows (a point of the simplex; 0 elsewhere)
    b: jax.Array  # (B, K) weights of the B rows (0 elsewhere)
    iterations: jax.Array  # (B,) int32
    done: jax.Array  # (B,) bool: met its stopping rule within the budget
    lower: jax.Array  # (B,) L on the padded sets, solver dtype
    upper: jax.Array  # (B,) U


def _matvec(Z: jax.Array, w: jax.Array) -> jax.Array:
    """(B, K, d) x (B, d) -> (B, K): per pair Z @ w."""
    prec = _precision()
    return jax.vmap(lambda z, v: jnp.dot(z, v, precision=prec))(Z, w)


def _rmatvec(Z: jax.Array, lam: jax.Array) -> jax.Array:
    """(B, K, d) x (B, K) -> (B, d): per pair Z^T lam."""
    prec = _precision()
    return jax.vmap(lambda z, l: jnp.dot(l, z, precision=prec))(Z, lam)


def lipschitz(Z: jax.Array, n_steps: int = 12) -> jax.Array:
    """Largest eigenvalue of Z^T Z (per pair), by ``n_steps`` Lanczos steps.

    That is the Lipschitz constant of grad f: the signs of the B rows cancel
    in M^T M with M = s * Z. Padded rows are zero and do not contribute.
    Lanczos (full reorthogonalisation, twice, against the basis so far) from a
    fixed vector (deterministic) gives the largest Ritz value of the Krylov
    space: a lower bound on lambda_max, so callers multiply by a safety factor.
    On PUD POS layer 6 working sets (K = 4..256 per side, d = 384) 12 steps
    reach 0.9996 of lambda_max in the worst case (30 power iterations: 0.92).
    The 60 power iterations used before cost 0.41 s of a 10 s label-distance
    call, these 0.13 s. The host solvers use the same method in numpy
    (:func:`geomcore.solvers.spectral.lambda_max`).
    """
    d = Z.shape[-1]
    B = Z.shape[0]
    dtype = Z.dtype
    v0 = jnp.cos(jnp.arange(1, d + 1, dtype=dtype) * 0.7071) + 0.1
    V = jnp.zeros((B, n_steps + 1, d), dtype).at[:, 0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros((B, n_steps), dtype)
    beta = jnp.zeros((B, n_steps), dtype)

    def body(j, s):
        V, alpha, beta = s
        v = V[:, j]
        w = _rmatvec(Z, _matvec(Z, v))
        a = jnp.sum(w * v, axis=-1)
        n0 = jnp.linalg.norm(w, axis=-1)
        for _ in range(2):  # unused rows of V are zero: projecting on them is a no-op
            w = w - jnp.einsum("bk,bkd->bd", jnp.einsum("bkd,bd->bk", V, w), V)
        nb = jnp.linalg.norm(w, axis=-1)
        # Breakdown (the Krylov space is exhausted, e.g. rank < n_steps): what
        # is left of w is rounding, not orthogonal to the basis at working
        # precision, and would inflate the estimate. The next vector is 0
        # instead, so T decouples and its spectrum stays that of the basis.
        live = nb > 1e-3 * n0
        nxt = jnp.where(live[:, None], w / jnp.where(live, nb, 1.0)[:, None], 0.0)
        V = jax.lax.dynamic_update_index_in_dim(V, nxt, j + 1, axis=1)
        alpha = alpha.at[:, j].set(a)
        beta = beta.at[:, j].set(jnp.where(live, nb, 0.0))
        return V, alpha, beta

    _, alpha, beta = jax.lax.fori_loop(0, n_steps, body, (V, alpha, beta))
    off = beta[:, :-1]
    T = (jax.vmap(jnp.diag)(alpha) + jax.vmap(lambda x: jnp.diag(x, 1))(off)
         + jax.vmap(lambda x: jnp.diag(x, -1))(off))
    return jnp.linalg.eigvalsh(T)[:, -1]


def _step(Z):
    """(B, 1) step sizes 1 / (1.1 L): Lanczos' L is a lower bound."""
    lip = lipschitz(Z) * 1.1
    return (1.0 / jnp.maximum(lip, jnp.finfo(Z.dtype).tiny))[:, None]


def _signs(ma, mb, dtype):
    """(B, K): +1 on A rows, -1 on B rows, 0 on padding."""
    return ma.astype(dtype) - mb.astype(dtype)


def _project(y, sides):
    """Project each row of y onto the product of its two simplices.

    ``sides`` (B, 2, K) stacks the masks of the A and B rows; each side is a
    masked simplex projection of the same row, and the sides are disjoint.
    """
    return projection_simplex_masked(y[:, None, :], sides).sum(axis=1)


def _certificates(Z, ma, mb, w):
    big = jnp.asarray(jnp.finfo(w.dtype).max, w.dtype)
    s = _matvec(Z, w)
    sa = jnp.where(ma, s, big).min(axis=-1)
    sb = jnp.where(mb, s, -big).max(axis=-1)
    upper = jnp.linalg.norm(w, axis=-1)
    lower = (sa - sb) / jnp.maximum(upper, jnp.finfo(w.dtype).tiny)
    return lower, upper


def _stopped(lower, upper, *, tol, rtol, decide):
    """The in-kernel stopping rule (see :func:`solve_padded`)."""
    overlap = upper <= tol
    gap_ok = (upper - lower) <= rtol * upper
    sep = decide & (lower > 1e-5 * upper)
    return overlap | gap_ok | sep


def _momentum(inner, t):
    """FISTA's extrapolation with O'Donoghue & Candes' gradient restart:
    (beta, t_new); ``inner`` = <y - x_new, x_new - x>, and beta = 0 where it is
    positive (the step went against the last move)."""
    restart = inner > 0
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    beta = jnp.where(restart, 0.0, (t - 1.0) / t_new)
    return beta, jnp.where(restart, 1.0, t_new)


def _output(x, ma, mb, s):
    return NearestPointOutput(a=jnp.where(ma, x, 0.0), b=jnp.where(mb, x, 0.0), iterations=s[0],
                              done=s[1], lower=s[2], upper=s[3])


@partial(jax.jit, static_argnames=("check_every",))
def solve_padded(
    Z: jax.Array,
    ma: jax.Array,
    mb: jax.Array,
    x0: jax.Array,
    *,
    tol: jax.Array,
    rtol: jax.Array,
    decide: jax.Array,
    max_iter: jax.Array,
    check_every: int = 10,
) -> NearestPointOutput:
    """Run batched FISTA from x0 until every pair is done or out of budget.

    Args:
      Z: (B, K, d) padded blocks in centred, scaled coordinates: the points
        of both sides of each pair.
      ma, mb: (B, K) bool, disjoint: the rows of side A and of side B (at
        least one each per pair; other rows are padding).
      x0: (B, K) starting weights, a point of each side's simplex (zero on
        padding).
      tol: overlap threshold on U, in the scaled units (scale 1).
      rtol: target relative gap (U - L) / U.
      decide: bool scalar; if True a pair also stops once L > 0 (with a
        relative margin of 1e-5 so float noise is not taken for a proof).
      max_iter: iteration budget per call (int scalar).
      check_every: iterations between certificate evaluations (static).
    """
    dtype = Z.dtype
    B = Z.shape[0]
    eta = _step(Z)
    sgn = _signs(ma, mb, dtype)
    sides = jnp.stack([ma, mb], axis=1)
    stopped = partial(_stopped, tol=tol, rtol=rtol, decide=decide)

    w0 = _rmatvec(Z, sgn * x0)
    lower0, upper0 = _certificates(Z, ma, mb, w0)
    # state: x, its w, momentum point y and its w, t, iterations, done, L, U, k
    init = (x0, w0, x0, w0, jnp.ones((B,), dtype), jnp.zeros((B,), jnp.int32),
            stopped(lower0, upper0), lower0, upper0, jnp.zeros((), jnp.int32))

    def one_step(_, s):
        x, w, y, wy, t, it, done, lo, up, k = s
        nx = _project(y - eta * sgn * _matvec(Z, wy), sides)
        nw = _rmatvec(Z, sgn * nx)
        dx = nx - x
        beta, t_new = _momentum(jnp.sum((y - nx) * dx, -1), t)
        ny = nx + beta[:, None] * dx
        nwy = nw + beta[:, None] * (nw - w)
        keep = done[:, None]
        return (jnp.where(keep, x, nx), jnp.where(keep, w, nw), jnp.where(keep, y, ny),
                jnp.where(keep, wy, nwy), jnp.where(done, t, t_new), it + (~done).astype(jnp.int32),
                done, lo, up, k)

    def cond(s):
        return jnp.any(~s[6]) & (s[9] < max_iter)

    def body(s):
        x, w, y, wy, t, it, done, lo, up, k = jax.lax.fori_loop(0, check_every, one_step, s)
        nlo, nup = _certificates(Z, ma, mb, w)
        lo = jnp.where(done, lo, nlo)
        up = jnp.where(done, up, nup)
        return (x, w, y, wy, t, it, done | stopped(lo, up), lo, up, k + check_every)

    s = jax.lax.while_loop(cond, body, init)
    return _output(s[0], ma, mb, s[5:9])


def use_gram(K: int, d: int) -> bool:
    """Iterate on the Gram matrix when a block holds at most d points (both
    sides): an iteration is then one (K x K) matvec instead of two (K x d)
    ones. Microseconds per pair-iteration on this CPU at d = 384, in the
    driver's batch sizes (Gram / points): 16 pairs x 128 rows 3.5 / 4.5-4.8;
    16 x 256 7.3-8.6 / 9.2-9.3; 4 x 384 13.6-18.6 / 13.7-14.9 (a tie);
    4 x 512 20.5-22.9 / 18.0-18.8.
    """
    return K <= d


@partial(jax.jit, static_argnames=("check_every",))
def solve_padded_gram(
    Z: jax.Array,
    ma: jax.Array,
    mb: jax.Array,
    x0: jax.Array,
    *,
    tol: jax.Array,
    rtol: jax.Array,
    decide: jax.Array,
    max_iter: jax.Array,
    check_every: int = 10,
) -> NearestPointOutput:
    """:func:`solve_padded` (same arguments, same output) iterating on the
    signed Gram matrix G = M M^T, M = s * Z (B, K, K).

    f = 1/2 x^T G x and grad f = G x = s * (Z w): the same iteration as on
    the points. G x is carried along with x and the momentum point's G y is
    extrapolated from the last two, so an iteration costs one matvec with G.
    The certificates (every ``check_every`` iterations) are computed from
    w = Z^T (s * x) on the points, as in :func:`solve_padded`: U^2 = x^T G x
    would lose the small distances to cancellation in float32.
    """
    dtype = Z.dtype
    B = Z.shape[0]
    eta = _step(Z)
    sgn = _signs(ma, mb, dtype)
    sides = jnp.stack([ma, mb], axis=1)
    stopped = partial(_stopped, tol=tol, rtol=rtol, decide=decide)
    M = sgn[:, :, None] * Z
    G = jnp.einsum("bid,bjd->bij", M, M, precision=_precision())

    def gmul(x):
        return jnp.einsum("bij,bj->bi", G, x, precision=_precision())

    def certificates(x):
        return _certificates(Z, ma, mb, _rmatvec(Z, sgn * x))

    g0 = gmul(x0)
    lower0, upper0 = certificates(x0)
    init = (x0, g0, x0, g0, jnp.ones((B,), dtype), jnp.zeros((B,), jnp.int32),
            stopped(lower0, upper0), lower0, upper0, jnp.zeros((), jnp.int32))

    def one_step(_, s):
        x, gx, y, gy, t, it, done, lo, up, k = s
        nx = _project(y - eta * gy, sides)
        gnx = gmul(nx)
        beta, t_new = _momentum(jnp.sum((y - nx) * (nx - x), -1), t)
        ny = nx + beta[:, None] * (nx - x)
        gny = gnx + beta[:, None] * (gnx - gx)
        keep = done[:, None]
        return (jnp.where(keep, x, nx), jnp.where(keep, gx, gnx), jnp.where(keep, y, ny),
                jnp.where(keep, gy, gny), jnp.where(done, t, t_new), it + (~done).astype(jnp.int32),
                done, lo, up, k)

    def cond(s):
        return jnp.any(~s[6]) & (s[9] < max_iter)

    def body(s):
        x, gx, y, gy, t, it, done, lo, up, k = jax.lax.fori_loop(0, check_every, one_step, s)
        nlo, nup = certificates(x)
        lo = jnp.where(done, lo, nlo)
        up = jnp.where(done, up, nup)
        return (x, gx, y, gy, t, it, done | stopped(lo, up), lo, up, k + check_every)

    s = jax.lax.while_loop(cond, body, init)
    return _output(s[0], ma, mb, s[5:9])
