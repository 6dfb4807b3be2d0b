"""Two-hidden-layer MLP classifier probes on JAX + optax, trained as a batched grid.

The 2022 study ("A Closer Look at How Fine-tuning Changes BERT") judges a
representation with classifier probes: two-hidden-layer ReLU MLPs trained with
Adam for at most 1000 epochs, hidden sizes from {32, 64, 128, 256}^2, an L2
weight from a log-spaced range, the best configuration (on a validation split)
retrained with 5 seeds, mean and standard deviation of test accuracy reported.
The original looped over scikit-learn's ``MLPClassifier``; here every
configuration of the grid trains at once.

Model (one configuration, ``C`` classes, input width ``d``)::

    h1 = relu(x W1 + b1)          W1: (d, H1)
    h2 = relu(h1 W2 + b2)         W2: (H1, H2)
    p  = softmax(h2 W3 + b3)      W3: (H2, C)

Loss of a mini-batch B (as scikit-learn's ``MLPClassifier``)::

    L_B = -1/|B| sum_{i in B} log p_{y_i}(x_i) + alpha/(2|B|) (||W1||^2 + ||W2||^2 + ||W3||^2)

(biases are not penalised). Optimiser: Adam (``optax.adam``; lr 1e-3, betas
0.9/0.999, eps 1e-8), mini-batches of ``min(200, n)`` from a fresh permutation
every epoch (the last batch is the remainder, as ``sklearn.utils.gen_batches``).
Stopping as scikit-learn's: the epoch loss is the sample-weighted mean of the
batch losses; a model stops when its epoch loss failed to improve on its best by
more than ``tol`` for more than ``n_iter_no_change`` consecutive epochs, or after
``max_iter`` epochs (then ``converged`` is False). Weights start Glorot-uniform as
scikit-learn's ``_init_coef``: U(-r, r) with r = sqrt(6 / (fan_in + fan_out)),
biases too.

Batching. Models are put in blocks of one seed and one H1, the models with
the call's largest alpha apart (they train longest); a retrain over seeds is
one block whose models take a mini-batch each. On a CPU the blocks are dealt
into three jitted programs of about equal arithmetic that run at once on
their own threads (a single program of many small products leaves part of a
second core idle; three programs on two cores also even out coarse blocks,
such as five retrain seeds); on an accelerator every block is in one
program. A block's first layers are one matrix W1 (K H1, d), so a mini-batch
meets them all in one product, and its second and third layers are products
batched over the models of one (H1, H2). Parameters are stored transposed
(units x inputs) so that every product has the model axis leading and needs
no transposes. A step computes every model of a block and masks the stopped
ones out of the update; a block whose models have all stopped is skipped.
The models of a block stop at similar epochs, so the masked work is small
(1.21x the epochs needed on the PS-role grid). Adam is optax's arithmetic written
out on the block: every model still training has taken the same number of
steps, so one step count serves them all. The program does not change as
models stop, so it compiles once per (blocks, data shape) and, with the
persistent compilation cache (:mod:`geomcore.compile_cache`), once per
machine. Epochs run in device loops (``lax.while_loop`` of ``lax.scan`` over
mini-batches) with one host sync per chunk of epochs. The data stay on the
device in float32, padded to a bucketed number of full mini-batches plus
the partial last one (n mod batch size points, as scikit-learn's), which runs
at its own bucketed size; each mini-batch is an index gather. The
permutation of an epoch is drawn per point index (``fold_in``) so it
depends only on the seed, the epoch and the true number of points, never on
the padding; models with the same seed (a grid search) share it and their
mini-batches.

Differences from scikit-learn worth knowing: two classes use a 2-way softmax
(scikit-learn uses one logistic unit; same decision function family); Adam
(as optax's) puts eps outside the bias correction (scikit-learn inside), which only
matters while the second moment is ~1e-16; training runs in float32.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from geomcore._validate import as_labels, as_points, check_same_width
from geomcore.progress import progress_bar

__all__ = [
    "MLPConfig",
    "MLPGrid",
    "MLPProbeResult",
    "MLPProbe",
    "mlp_probe",
    "train_mlps",
    "validation_split",
    "DEFAULT_HIDDEN_SIZES",
    "DEFAULT_ALPHAS",
]

logger = logging.getLogger(__name__)

#: Hidden sizes of each of the two layers searched by :func:`mlp_probe`.
DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (32, 64, 128, 256)
#: L2 weights searched by :func:`mlp_probe`: ``np.logspace(-5, -1, 5)``.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-5, -1, 5))

# Epochs run per jitted call; the host loop between calls updates progress and
# stops as soon as every model has stopped.
_EPOCH_CHUNK = 20
# Rows per jitted prediction call (bounded memory: models x rows x hidden).
_PREDICT_ROWS = 2048


# --------------------------------------------------------------------------- results


class MLPConfig(NamedTuple):
    """One probe configuration: hidden sizes (H1, H2) and the L2 weight alpha."""

    hidden_sizes: tuple[int, int]
    alpha: float


class MLPGrid(NamedTuple):
    """Validation scores of every configuration of the grid search (G rows).

    Attributes:
      hidden_sizes: (G, 2) int, (H1, H2) of each configuration.
      alphas: (G,) float, the L2 weight of each configuration.
      val_accuracy: (G,) float in [0, 1], accuracy on the validation split.
      n_iter: (G,) int, epochs trained.
      converged: (G,) bool, False when a model hit ``max_iter``.
    """

    hidden_sizes: np.ndarray
    alphas: np.ndarray
    val_accuracy: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray

    def config(self, i: int) -> MLPConfig:
        h1, h2 = (int(v) for v in self.hidden_sizes[i])
        return MLPConfig((h1, h2), float(self.alphas[i]))

    @property
    def best_index(self) -> int:
        """Index of the best validation accuracy (first in grid order on ties)."""
        return int(np.argmax(self.val_accuracy))


class MLPProbeResult(NamedTuple):
    """Outcome of :func:`mlp_probe`.

    Attributes:
      config: the chosen :class:`MLPConfig` (best validation accuracy).
      accuracies: (n_seeds,) test accuracy of the chosen configuration retrained
        on the whole training set with each seed; fractions in [0, 1]. Test
        points whose label never occurs in training count as wrong.
      mean: mean of ``accuracies``.
      std: standard deviation of ``accuracies`` (population, ddof=0).
      grid: :class:`MLPGrid`, every configuration's validation score.
      classes: (C,) the sorted training labels (the probe's output classes).
      unseen_test_labels: sorted labels present in the test set but not in
        training (their points are counted wrong).
      n_unseen_test: number of test points with such labels.
      seeds: the seeds of the retrained models.
      n_iter: (n_seeds,) epochs each retrained model ran.
      converged: (n_seeds,) False for models that hit ``max_iter``.
    """

    config: MLPConfig
    accuracies: np.ndarray
    mean: float
    std: float
    grid: MLPGrid
    classes: np.ndarray
    unseen_test_labels: tuple
    n_unseen_test: int
    seeds: tuple[int, ...]
    n_iter: np.ndarray
    converged: np.ndarray


class _Trained(NamedTuple):
    """Host copy of a batch of trained models (leading axis M), unpadded views via sizes."""

    params: tuple  # (W1, b1, W2, b2, W3, b3), each (M, ...) numpy float32, padded
    m1: np.ndarray  # (M, H1pad) float32 masks
    m2: np.ndarray  # (M, H2pad)
    n_iter: np.ndarray  # (M,)
    loss: np.ndarray  # (M,) last epoch loss
    converged: np.ndarray  # (M,)


# --------------------------------------------------------------------------- input checks


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _check_float(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`{name}` must be a real number; got {value!r}.")
    out = float(value)
    if not math.isfinite(out) or out < 0 or (positive and out == 0):
        kind = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be finite and {kind}; got {value!r}.")
    return out


def _encode_labels(y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique labels and the index of each entry; a clear error for unsortable mixes."""
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError as exc:
        raise TypeError(
            f"`{name}` mixes label types that cannot be ordered (e.g. ints and strings); "
            f"use one type for all labels ({exc})."
        ) from exc
    return classes, codes.reshape(-1).astype(np.int32)


def _check_hidden(hidden: Any, name: str) -> tuple[int, int]:
    try:
        h = tuple(hidden)
    except TypeError:
        raise TypeError(
            f"`{name}` must be a pair (H1, H2) of positive ints; got {hidden!r}."
        ) from None
    if len(h) != 2:
        raise ValueError(f"`{name}` must have exactly two hidden sizes (H1, H2); got {hidden!r}.")
    return (_check_int(h[0], f"{name}[0]", 1), _check_int(h[1], f"{name}[1]", 1))


# --------------------------------------------------------------------------- validation split


def validation_split(
    codes: np.ndarray, *, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic train/validation split of label codes.

    Every class with at least two points puts ``max(1, round(fraction * count))``
    points in validation (never all of them: one stays in training); classes with
    a single point stay in training. Which points go is a permutation drawn from
    ``np.random.default_rng(seed)``.

    Args:
      codes: (n,) integer class codes.
      fraction: validation fraction in (0, 1).
      seed: seed of the permutation.

    Returns:
      (fit_idx, val_idx): sorted integer index arrays partitioning range(n).

    Raises:
      ValueError: if the set is too small for the split: fewer than
        ``ceil(1 / fraction)`` points, or no class with two points.
    """
    codes = np.asarray(codes)
    n = codes.shape[0]
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1); got {fraction!r}.")
    need = math.ceil(1.0 / fraction - 1e-9)
    if n < need:
        raise ValueError(
            f"the training set has {n} points, too few for a validation split of "
            f"{fraction:g}: at least {need} points are needed."
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    val = []
    for c in np.unique(codes):
        members = order[codes[order] == c]
        if members.shape[0] < 2:
            continue
        k = min(max(1, int(round(fraction * members.shape[0]))), members.shape[0] - 1)
        val.append(members[:k])
    if not val:
        raise ValueError(
            "the training set is too small for a validation split: no class has the two "
            "points needed to hold one out."
        )
    val_idx = np.sort(np.concatenate(val))
    fit_mask = np.ones(n, dtype=bool)
    fit_mask[val_idx] = False
    return np.flatnonzero(fit_mask), val_idx


# --------------------------------------------------------------------------- model math


def _forward(params, m1, m2, x):
    """Logits (..., C) of one padded model; padded units are masked to exactly zero.

    Used for prediction from the padded host copy (``_Trained``); training runs
    on exact shapes (``_group_loss``).
    """
    w1, b1, w2, b2, w3, b3 = params
    h1 = jax.nn.relu(x @ w1 + b1) * m1
    h2 = jax.nn.relu(h1 @ w2 + b2) * m2
    return h2 @ w3 + b3


def _model_loss(params, alpha, xb, yb, weight, count):
    """scikit-learn's loss of one model on one mini-batch.

    Mean cross-entropy over the real points of the batch plus
    alpha / (2 count) * (||W1||^2 + ||W2||^2 + ||W3||^2). Shapes: W1 (d, H1),
    b1 (H1,), W2 (H1, H2), b2 (H2,), W3 (H2, C), b3 (C,); xb (B, d); yb (B,)
    int; weight (B,) 1 for real points, 0 for padding; count = sum(weight).
    """
    w1, b1, w2, b2, w3, b3 = params
    a1 = jax.nn.relu(xb @ w1 + b1)
    a2 = jax.nn.relu(a1 @ w2 + b2)
    logp = jax.nn.log_softmax(a2 @ w3 + b3, axis=-1)
    nll = -jnp.take_along_axis(logp, yb[:, None], axis=-1)[:, 0]
    l2 = jnp.sum(w1 * w1) + jnp.sum(w2 * w2) + jnp.sum(w3 * w3)
    return (nll @ weight) / count + 0.5 * alpha * l2 / count


def _epoch_permutation(key, epoch, n_pad, n_real):
    """A permutation of range(n_pad) whose first n_real entries permute range(n_real).

    Each index draws its own random number from ``fold_in(fold_in(key, epoch), i)``,
    so the order of the real points does not depend on n_pad (the padding bucket).
    """
    ek = jax.random.fold_in(key, epoch)
    idx = jnp.arange(n_pad, dtype=jnp.uint32)
    bits = jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(ek, i), dtype=jnp.uint32))(idx)
    # Padding sorts last: it gets the largest key, and a real point that draws the
    # same key keeps its place before it because the sort is stable.
    r = jnp.where(jnp.arange(n_pad) < n_real, bits, jnp.uint32(0xFFFFFFFF))
    return jnp.argsort(r, stable=True).astype(jnp.int32)


class _Group(NamedTuple):
    """Static description of one group: k models of one exact shape (H1, H2)."""

    h1: int
    h2: int
    k: int


class _Block(NamedTuple):
    """Static description of one block: the models of one H1 and one seed slot,
    or of one H1 and as many seeds as models.

    Their first layers are one matrix W1T (K H1, d) (model j owns rows
    j H1 .. (j + 1) H1). With one seed (``slots`` empty) a mini-batch meets
    all of them in one product; with one seed per model (``slots[j]`` is model
    j's, a retrain over seeds) each model takes its own mini-batch and the
    first layer is a product batched over the models. ``groups`` split the
    block by H2 (consecutive models).
    """

    slot: int
    h1: int
    groups: tuple  # of _Group
    slots: tuple = ()

    @property
    def k(self) -> int:
        return sum(g.k for g in self.groups)


class _State(NamedTuple):
    params: tuple  # per block: (W1 (d,K H1), b1 (K H1,), W2s, b2s, W3s, b3s); per group (k,...)
    mu: tuple  # Adam first moments, same tree as params
    nu: tuple  # Adam second moments
    step: jax.Array  # scalar int32: Adam steps taken by every model still training
    epoch: jax.Array  # scalar int32: epochs run (the longest-running model's)
    n_iter: jax.Array  # (M,) int32, models in block order
    best: jax.Array  # (M,) float32
    no_improve: jax.Array  # (M,) int32
    active: jax.Array  # (M,) bool
    loss: jax.Array  # (M,) float32


def _block_losses(p, blk: _Block, alpha, xbT, yb, weight, count):
    """scikit-learn's mini-batch loss (``_model_loss``) of every model of a block, (K,).

    Stored transposed so that every product is a plain (batched) matrix product
    with the model axis leading and no transposes: W1T (K H1, d), W2T (k, H2,
    H1), W3T (k, C, H2); activations are (units, B). One product for all
    first layers (W1T @ xbT, xbT (d, B)); the second and third layers are
    products batched over each group's models.
    """
    W1T, b1, W2s, b2s, W3s, b3s = p
    C = W3s[0].shape[1]
    if blk.slots:  # one mini-batch per model: xbT (K, d, B), yb (K, B)
        B = xbT.shape[2]
        W1 = W1T.reshape(blk.k, blk.h1, W1T.shape[1])
        a1 = jax.nn.relu(jnp.einsum("khd,kdb->khb", W1, xbT) + b1.reshape(blk.k, blk.h1, 1))
        onehot = (yb[:, None, :] == jnp.arange(C)[None, :, None]).astype(jnp.float32)  # (K, C, B)
    else:  # one mini-batch for all: xbT (d, B), yb (B,)
        B = xbT.shape[1]
        a1 = jax.nn.relu(W1T @ xbT + b1[:, None]).reshape(blk.k, blk.h1, B)
        onehot = (yb[None, :] == jnp.arange(C)[:, None]).astype(jnp.float32)  # (C, B)
    out, o = [], 0
    for gi, g in enumerate(blk.groups):
        a = a1[o : o + g.k]  # (k, H1, B)
        oh = onehot[o : o + g.k] if blk.slots else onehot
        a2 = jax.nn.relu(jnp.einsum("kji,kib->kjb", W2s[gi], a) + b2s[gi][:, :, None])
        z3 = jnp.einsum("kcj,kjb->kcb", W3s[gi], a2) + b3s[gi][:, :, None]
        nll = -jnp.sum(jax.nn.log_softmax(z3, axis=1) * oh, axis=1)  # (k, B)
        l2 = jnp.sum(W2s[gi] ** 2, axis=(1, 2)) + jnp.sum(W3s[gi] ** 2, axis=(1, 2))
        out.append(nll @ weight + 0.5 * alpha[o : o + g.k] * l2)
        o += g.k
    l2_1 = jnp.sum(W1T * W1T, axis=1).reshape(blk.k, blk.h1).sum(axis=1)
    return (jnp.concatenate(out) + 0.5 * alpha * l2_1) / count


def _block_masks(blk: _Block, act):
    """Per-leaf broadcastable masks of a block's active models (act (K,) bool)."""
    col = jnp.repeat(act, blk.h1, total_repeat_length=blk.k * blk.h1)
    m2, m3, mb2, mb3, o = [], [], [], [], 0
    for g in blk.groups:
        a = act[o : o + g.k]
        m2.append(a[:, None, None])
        m3.append(a[:, None, None])
        mb2.append(a[:, None])
        mb3.append(a[:, None])
        o += g.k
    return (col[:, None], col, tuple(m2), tuple(mb2), tuple(m3), tuple(mb3))


@functools.partial(
    jax.jit,
    static_argnames=(
        "blocks", "batch_size", "n_batches", "tail", "chunk", "max_iter", "tol",
        "n_iter_no_change",
        "lr", "b1", "b2", "eps",
    ),
    donate_argnums=(0,),
)
def _run_chunk(
    state, keys, alpha, X, y, n_real, *,
    blocks, batch_size, n_batches, tail, chunk, max_iter, tol, n_iter_no_change, lr, b1, b2, eps,
):
    """Run up to ``chunk`` epochs of every model of every block; stop early when all stopped.

    One compiled program per (blocks, data shape): it does not change as models
    stop. Shapes: X (n_pad, d) float32 resident on the device, y (n_pad,) int32,
    n_real scalar int32 (rows beyond it are padding), keys (S, 2) uint32 (one
    per distinct seed), alpha (M,) in block order.

    The permutation of an epoch is drawn once per distinct seed; each
    mini-batch is an index gather from the resident data. A step computes every
    model of a block at once (stopped models are computed and masked out of
    the update); a block whose models have all stopped is skipped.
    Adam (optax's ``adam`` arithmetic) runs on the whole block: every model
    still training has taken the same number of steps, so one step count
    serves them all.
    """
    n_pad = X.shape[0]
    n_real_f = n_real.astype(jnp.float32)
    offsets = np.cumsum([0] + [blk.k for blk in blocks])

    def block_step(blk, lo, p, mu, nu, t, act, xb, yb, weight, count, run):
        alpha_b = alpha[lo : lo + blk.k]
        act_f = act.astype(jnp.float32)

        def body(c):
            i, p, mu, nu, _ = c

            def total(p):
                per = _block_losses(p, blk, alpha_b, xb, yb, weight, count)
                return jnp.sum(per * act_f), per

            (_, per), grad = jax.value_and_grad(total, has_aux=True)(p)
            masks = _block_masks(blk, act)
            bc1 = 1.0 - jnp.float32(b1) ** t
            bc2 = 1.0 - jnp.float32(b2) ** t

            def adam(m, p, g, mu, nu):
                mu2 = b1 * mu + (1.0 - b1) * g
                nu2 = b2 * nu + (1.0 - b2) * (g * g)
                p2 = p - lr * ((mu2 / bc1) / (jnp.sqrt(nu2 / bc2) + eps))
                # A stopped model never trains again: only its weights must stay.
                return jnp.where(m, p2, p), mu2, nu2

            leaves, tdef = jax.tree_util.tree_flatten(p)
            out = [adam(*z) for z in zip(jax.tree_util.tree_leaves(masks), leaves,
                                         jax.tree_util.tree_leaves(grad),
                                         jax.tree_util.tree_leaves(mu),
                                         jax.tree_util.tree_leaves(nu))]
            p, mu, nu = (jax.tree_util.tree_unflatten(tdef, [o[r] for o in out]) for r in range(3))
            return i + 1, p, mu, nu, per * count

        init = (jnp.int32(0), p, mu, nu, jnp.zeros((blk.k,), jnp.float32))
        _, p, mu, nu, part = jax.lax.while_loop(lambda c: c[0] < run, body, init)
        return p, mu, nu, part

    def one_epoch(st: _State) -> _State:
        perms = jax.vmap(_epoch_permutation, in_axes=(0, None, None, None))(
            keys, st.epoch, n_pad, n_real
        )  # (S, n_pad)

        def step(carry, start, size, real):
            """One mini-batch of ``size`` rows from ``start``; ``real``: it holds points."""
            params, mu, nu, t, acc = carry
            idx = jax.lax.dynamic_slice_in_dim(perms, start, size, axis=1)  # (S, size)
            weight = ((start + jnp.arange(size)) < n_real).astype(jnp.float32)
            count = jnp.sum(weight)
            xbT, yb = jnp.swapaxes(X[idx], 1, 2), y[idx]  # (S, d, size), (S, size)
            t = t + real.astype(jnp.int32)
            tf = t.astype(jnp.float32)
            new_p, new_mu, new_nu, parts = [], [], [], []
            for bi, blk in enumerate(blocks):
                lo, hi = int(offsets[bi]), int(offsets[bi + 1])
                act = st.active[lo:hi]
                run = (real & jnp.any(act)).astype(jnp.int32)
                p, m, v, part = block_step(
                    blk, lo, params[bi], mu[bi], nu[bi], tf, act,
                    *((xbT[np.array(blk.slots)], yb[np.array(blk.slots)]) if blk.slots
                      else (xbT[blk.slot], yb[blk.slot])),
                    weight, count, run,
                )
                new_p.append(p)
                new_mu.append(m)
                new_nu.append(v)
                parts.append(part)
            return (tuple(new_p), tuple(new_mu), tuple(new_nu), t, acc + jnp.concatenate(parts))

        def batch(carry, b):
            # With a tail, whole mini-batches only; batches past the data (bucket
            # padding) run no model.
            start = b * batch_size
            real = (start + batch_size <= n_real) if tail else (start < n_real)
            return step(carry, start, batch_size, real), None

        zero = jnp.zeros_like(st.loss)
        carry, _ = jax.lax.scan(
            batch, (st.params, st.mu, st.nu, st.step, zero),
            jnp.arange(n_batches, dtype=jnp.int32),
        )
        if tail:
            # The last, partial mini-batch (n mod batch_size points, as
            # scikit-learn's gen_batches) runs at its own bucketed size, not at
            # a whole batch of padding.
            start = (n_real // batch_size) * batch_size
            carry = step(carry, start, tail, start < n_real)
        p, mu, nu, t, acc = carry
        loss = acc / n_real_f
        # scikit-learn's _update_no_improvement_count (early_stopping=False).
        worse = loss > st.best - tol
        no_improve = jnp.where(worse, st.no_improve + 1, 0)
        best = jnp.minimum(st.best, loss)
        n_iter = st.n_iter + 1
        stop = (no_improve > n_iter_no_change) | (n_iter >= max_iter)
        a = st.active
        return _State(
            params=p,
            mu=mu,
            nu=nu,
            step=t,
            epoch=st.epoch + 1,
            n_iter=jnp.where(a, n_iter, st.n_iter),
            best=jnp.where(a, best, st.best),
            no_improve=jnp.where(a, no_improve, st.no_improve),
            active=a & ~stop,
            loss=jnp.where(a, loss, st.loss),
        )

    def cond(c):
        k, st = c
        return (k < chunk) & jnp.any(st.active) & (st.epoch < max_iter)

    def body(c):
        k, st = c
        return k + 1, one_epoch(st)

    _, state = jax.lax.while_loop(cond, body, (jnp.int32(0), state))
    return state


@jax.jit
def _predict_chunk(params, m1, m2, X):
    """Argmax class (M, rows) of M padded models on a block of rows X (rows, d)."""
    logits = jax.vmap(_forward, in_axes=(0, 0, 0, None))(params, m1, m2, X)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@jax.jit
def _proba_chunk(params, m1, m2, X):
    logits = jax.vmap(_forward, in_axes=(0, 0, 0, None))(params, m1, m2, X)
    return jax.nn.softmax(logits, axis=-1)


def _blocks(X: np.ndarray, fn, params, m1, m2) -> np.ndarray:
    """Apply a jitted per-block function over fixed-size row blocks (one compile)."""
    n = X.shape[0]
    rows = min(_PREDICT_ROWS, _bucket(n, 8))
    out = []
    for start in range(0, n, rows):
        block = X[start : start + rows]
        real = block.shape[0]
        if real < rows:
            block = np.concatenate([block, np.zeros((rows - real, X.shape[1]), X.dtype)])
        out.append(np.asarray(fn(params, m1, m2, jnp.asarray(block)))[:, :real])
    return np.concatenate(out, axis=1)


# --------------------------------------------------------------------------- training driver


def _bucket(n: int, unit: int) -> int:
    """Round n up to unit * {2^k or 1.5 * 2^k} (fewer distinct shapes, <= 33% waste)."""
    k = max(1, math.ceil(n / unit))
    p = 1
    while p < k:
        if p * 3 // 2 >= k and p >= 2:
            return unit * (p * 3 // 2)
        p *= 2
    return unit * p


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``_init_coef`` for ReLU: U(-r, r), r = sqrt(6 / (fan_in + fan_out))."""
    r = math.sqrt(6.0 / (fan_in + fan_out))
    w = rng.uniform(-r, r, (fan_in, fan_out))
    b = rng.uniform(-r, r, fan_out)
    return w.astype(np.float32), b.astype(np.float32)


def _init_model(d: int, n_classes: int, h1: int, h2: int, seed: int) -> tuple:
    """Glorot-initialised (W1, b1, W2, b2, W3, b3) of one model at its exact shape.

    Drawn from ``np.random.default_rng([seed, 0])``: a model's initial weights
    depend only on its seed and shape, never on the other models it trains with.
    """
    rng = np.random.default_rng([int(seed), 0])
    W1, B1 = _glorot(rng, d, h1)
    W2, B2 = _glorot(rng, h1, h2)
    W3, B3 = _glorot(rng, h2, n_classes)
    return W1, B1, W2, B2, W3, B3


def _plan(hidden_sizes, alphas, seeds, top: float | None = None
          ) -> tuple[tuple[_Block, ...], np.ndarray, list[int]]:
    """Group the models into blocks by (seed, H1, largest alpha or not), within a block by H2;
    models of one (H1, alpha class) with all different seeds make one block.

    Whether a model has the call's largest L2 weight is part of the block key
    because it sets how long a model trains (on PS-role the alpha = 0.1 models
    run about twice the epochs of the others, whose epochs are close): a block
    computes all its models until its last one stops, so these blocks compute
    1.21x the epochs their models need on the PS-role grid (blocks of one
    alpha: 1.19x, with 2.5x as many blocks, narrower products and a longer
    compile; blocks of one H1: 2.1x). Only speed depends on the blocking.

    ``top`` is the L2 weight set apart (default: the largest of ``alphas``;
    :func:`_train_part` passes the whole call's, so that a part's blocking
    does not depend on the other parts).

    Returns (blocks, order, distinct seeds): ``order`` lists the caller's model
    indices in block order; ``blocks[i].slot`` (or ``slots``, one per model)
    indexes the distinct seeds (models with one seed share their
    mini-batches, hence one first-layer product).
    """
    distinct = list(dict.fromkeys(int(s) for s in seeds))
    top = max(float(a) for a in alphas) if top is None else float(top)
    slot_of = [distinct.index(int(s)) for s in seeds]
    by_key: dict[tuple[int, bool], list[int]] = {}
    for m, ((h1, _), a) in enumerate(zip(hidden_sizes, alphas)):
        by_key.setdefault((int(h1), float(a) == top), []).append(m)
    # Models of one (H1, alpha class) whose seeds are all different (a retrain
    # over seeds) form one block with a mini-batch each; otherwise a block per
    # seed, whose models share their mini-batches.
    members: list[tuple[int, int, bool, dict[int, list[int]]]] = []
    for (h1, _), ms in by_key.items():
        slots = [slot_of[m] for m in ms]
        per_model = len(ms) > 1 and len(set(slots)) == len(ms)
        for slot in ([-1] if per_model else list(dict.fromkeys(slots))):
            by_h2: dict[int, list[int]] = {}
            for m in ms:
                if per_model or slot_of[m] == slot:
                    by_h2.setdefault(int(hidden_sizes[m][1]), []).append(m)
            members.append((slot, h1, per_model, by_h2))
    blocks, order = [], []
    for slot, h1, per_model, by_h2 in members:
        ms = [m for group in by_h2.values() for m in group]
        blocks.append(_Block(
            max(slot, 0), h1, tuple(_Group(h1, h2, len(g)) for h2, g in by_h2.items()),
            tuple(slot_of[m] for m in ms) if per_model else (),
        ))
        order.extend(ms)
    return tuple(blocks), np.array(order, np.int64), distinct


def train_mlps(
    X: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    hidden_sizes: Sequence[tuple[int, int]],
    alphas: Sequence[float],
    seeds: Sequence[int],
    *,
    max_iter: int = 1000,
    tol: float = 1e-4,
    n_iter_no_change: int = 10,
    batch_size: int | None = None,
    learning_rate: float = 1e-3,
    pad_to: tuple[int, int] | None = None,
    progress: bool = False,
    desc: str = "mlp",
    parts: int | None = None,
) -> _Trained:
    """Train M two-hidden-layer MLPs on the same data at once (a few compiled programs).

    Low-level entry point behind :func:`mlp_probe` and :class:`MLPProbe`; inputs
    are trusted (validated by the callers).

    The models are grouped into blocks (:func:`_plan`): a block's models share
    their mini-batches, so their first layers are one matrix product, and every
    layer has its exact size (no padding). The blocks are dealt into ``parts``
    programs of about equal arithmetic (:func:`_deal`); each program's shape
    does not depend on how many models are still training (a block whose
    models have all stopped is skipped by a branch), so a fresh process
    compiles once per (part, data shape).

    Args:
      X: (n, d) float32 training points.
      codes: (n,) int class codes in [0, n_classes).
      n_classes: C, the number of outputs.
      hidden_sizes: M pairs (H1, H2).
      alphas: M L2 weights.
      seeds: M ints; model m's initial weights and epoch permutations derive from seeds[m].
      max_iter, tol, n_iter_no_change: stopping, as scikit-learn's MLPClassifier.
      batch_size: mini-batch size; None means min(200, n).
      learning_rate: Adam's step size.
      pad_to: (H1, H2) of the returned (padded) parameters; default the largest
        sizes among the M models.
      progress: show a bar over epochs (:mod:`geomcore.progress`).
      parts: how many compiled programs the blocks are dealt into (each
        trains its models on its own, concurrently on a thread each). None:
        3 on a CPU backend (fixed, not the number of cores, so that results
        do not depend on the machine), 1 on an accelerator (every model in
        one program). The models are the same whatever the dealing, up to
        float32 rounding (which can move a stopping epoch).

    Returns:
      _Trained with padded parameters (numpy, caller's order), masks, epochs
      run, last loss, converged flags.
    """
    n, d = X.shape
    M = len(hidden_sizes)
    bs = min(200, n) if batch_size is None else min(int(batch_size), n)
    # Full mini-batches in a bucketed scan (a program serves nearby n), then the
    # partial one at its own size: on 433 points 200 + 200 + 48 rows, not 3 x 200.
    # That compiles the step a second time, so it is done only where it saves
    # at least an eighth of an epoch's rows; otherwise the partial batch is
    # padded to a whole one (381 points: 200 + 200).
    n_full, rest = divmod(n, bs)
    tail = min(bs, _bucket(rest, 8)) if rest else 0
    if tail and (bs - tail) * 8 < (n_full + 1) * bs:
        n_full, tail = n_full + 1, 0
    n_batches = _bucket(n_full * bs, bs) // bs
    n_pad = max(n_batches * bs, n_full * bs + tail)
    h1p = max(h for h, _ in hidden_sizes) if pad_to is None else pad_to[0]
    h2p = max(h for _, h in hidden_sizes) if pad_to is None else pad_to[1]
    if parts is None:
        parts = 3 if jax.default_backend() == "cpu" else 1
    Xp = np.zeros((n_pad, d), np.float32)
    Xp[:n] = X
    yp = np.zeros(n_pad, np.int32)
    yp[:n] = codes
    data = (jnp.asarray(Xp), jnp.asarray(yp), jnp.int32(n))
    static = dict(
        batch_size=bs, n_batches=n_batches, tail=tail, chunk=_EPOCH_CHUNK,
        max_iter=int(max_iter), tol=float(tol), n_iter_no_change=int(n_iter_no_change),
        lr=float(learning_rate), b1=0.9, b2=0.999, eps=1e-8,
    )
    out = _Trained(
        params=(
            np.zeros((M, d, h1p), np.float32), np.zeros((M, h1p), np.float32),
            np.zeros((M, h1p, h2p), np.float32), np.zeros((M, h2p), np.float32),
            np.zeros((M, h2p, n_classes), np.float32), np.zeros((M, n_classes), np.float32),
        ),
        m1=np.zeros((M, h1p), np.float32),
        m2=np.zeros((M, h2p), np.float32),
        n_iter=np.zeros(M, np.int32),
        loss=np.zeros(M, np.float32),
        converged=np.zeros(M, bool),
    )
    top = max(float(a) for a in alphas)  # the alpha class set apart, for every part
    groups = _deal(hidden_sizes, alphas, seeds, top, d, n_classes, int(parts))
    with progress_bar(max_iter, desc, unit="epoch", enabled=progress, leave=False) as bar:
        report = _PartsProgress(bar, len(groups))

        def run(k):
            _train_part(
                groups[k], data, n_classes, hidden_sizes, alphas, seeds, top, static, out,
                n_iter_no_change=int(n_iter_no_change), report=functools.partial(report, k),
            )

        if len(groups) > 1:
            # XLA releases the GIL while a program runs: the parts' programs run
            # at once (a single program of many small products left part of a
            # second core idle; more programs than cores even out coarse parts).
            with ThreadPoolExecutor(len(groups), thread_name_prefix="geomcore-mlp") as pool:
                list(pool.map(run, range(len(groups))))
        else:
            run(0)
    if not out.converged.all():
        logger.warning(
            "%d of %d MLPs reached max_iter=%d without the loss settling (tol=%g).",
            int((~out.converged).sum()), M, max_iter, tol,
        )
    return out


def _deal(
    hidden_sizes, alphas, seeds, top: float, d: int, n_classes: int, parts: int
) -> list[np.ndarray]:
    """Deal the models into at most ``parts`` lists (caller's indices) of about equal work.

    Units of one (seed, H1, alpha class) are dealt, largest first, each to
    the part with the least work so far: a block of :func:`_plan` is never
    split, except a retrain over seeds, whose seeds are dealt apart (each part
    makes one block of the seeds it gets). A
    model's work per step is its products' size, d H1 + H1 H2 + H2 C, doubled
    for the largest alpha (those models train about twice as long). The
    result depends only on the models, never on the machine.
    """
    by_key: dict = {}
    cost: dict = {}
    for m, ((h1, h2), a, s) in enumerate(zip(hidden_sizes, alphas, seeds)):
        key = (int(s), int(h1), float(a) == top)
        by_key.setdefault(key, []).append(m)
        work = d * int(h1) + int(h1) * int(h2) + int(h2) * n_classes
        cost[key] = cost.get(key, 0) + work * (2 if key[2] else 1)
    load = [0] * max(1, min(parts, len(by_key)))
    dealt: list[list[int]] = [[] for _ in load]
    for key in sorted(by_key, key=lambda k: (-cost[k], k)):
        p = min(range(len(load)), key=lambda i: (load[i], i))
        load[p] += cost[key]
        dealt[p].extend(by_key[key])
    return [np.array(sorted(ms), np.int64) for ms in dealt if ms]


class _PartsProgress:
    """One bar for several parts: it shows the fewest epochs among the parts
    still training (the run ends when the last part does) and the models
    still training in all of them."""

    def __init__(self, bar, n: int):
        self.bar, self.lock = bar, threading.Lock()
        self.epoch, self.active, self.shown = [0] * n, [None] * n, 0

    def __call__(self, k: int, epoch: int, active: int) -> None:
        with self.lock:
            self.epoch[k], self.active[k] = epoch, active
            running = [e for e, a in zip(self.epoch, self.active) if a != 0]
            at = min(running) if running else max(self.epoch)
            if at > self.shown:
                self.bar.update(at - self.shown)
                self.shown = at
            self.bar.set_postfix(active=sum(a for a in self.active if a))


def _train_part(models, data, n_classes, hidden_sizes, alphas, seeds, top, static, out, *,
                n_iter_no_change, report) -> None:
    """Train the caller's models ``models`` in one program; write them into ``out``."""
    d = data[0].shape[1]
    sub = [int(m) for m in models]
    # The call's largest alpha, not the part's: the blocking (hence the program)
    # of a part must not depend on the alphas of the other parts.
    blocks, order, distinct = _plan([hidden_sizes[m] for m in sub], [alphas[m] for m in sub],
                                    [seeds[m] for m in sub], top=top)
    order = np.asarray(sub, np.int64)[order]  # block order -> the caller's indices
    M = order.size
    host = [_init_model(d, n_classes, int(hidden_sizes[m][0]), int(hidden_sizes[m][1]),
                        int(seeds[m])) for m in order]
    params, off = [], 0
    for blk in blocks:
        ms = host[off : off + blk.k]
        W1 = np.concatenate([p[0].T for p in ms], axis=0)  # (K H1, d)
        B1 = np.concatenate([p[1] for p in ms])
        W2s, B2s, W3s, B3s, o = [], [], [], [], 0
        for g in blk.groups:
            gm = ms[o : o + g.k]
            W2s.append(np.stack([p[2].T for p in gm]))
            B2s.append(np.stack([p[3] for p in gm]))
            W3s.append(np.stack([p[4].T for p in gm]))
            B3s.append(np.stack([p[5] for p in gm]))
            o += g.k
        params.append((W1, B1, tuple(W2s), tuple(B2s), tuple(W3s), tuple(B3s)))
        off += blk.k
    # Adam starts from zero moments and a zero step count.
    zeros = lambda: jax.tree_util.tree_map(  # noqa: E731
        lambda a: np.zeros(a.shape, np.float32), tuple(params))
    state = _State(
        params=tuple(params),
        mu=zeros(),
        nu=zeros(),
        step=np.int32(0),
        epoch=np.int32(0),
        n_iter=np.zeros(M, np.int32),
        best=np.full(M, np.inf, np.float32),
        no_improve=np.zeros(M, np.int32),
        active=np.ones(M, bool),
        loss=np.full(M, np.nan, np.float32),
    )
    state = jax.device_put(state)  # one transfer for the whole tree
    keys = jnp.asarray(np.stack([np.asarray(jax.random.PRNGKey(s + 1_000_003)) for s in distinct]))
    alpha = jnp.asarray(np.asarray(alphas, np.float32)[order])
    max_iter = static["max_iter"]
    while True:
        state = _run_chunk(state, keys, alpha, *data, blocks=blocks, **static)
        epoch = int(state.epoch)  # the one host sync per chunk of epochs
        n_active = int(np.asarray(state.active).sum())
        report(epoch, n_active)
        if n_active == 0 or epoch >= max_iter:
            break

    # Into the caller's rows of ``out``, padded to its (h1p, h2p) for prediction.
    W1, B1, W2, B2, W3, B3 = out.params
    off = 0
    for blk, p in zip(blocks, state.params):
        w1, b1 = np.asarray(p[0]), np.asarray(p[1])
        h1 = blk.h1
        j = 0
        for gi, g in enumerate(blk.groups):
            w2, b2, w3, b3 = (np.asarray(p[r][gi]) for r in range(2, 6))
            for q in range(g.k):
                m = order[off + j]
                W1[m, :, :h1] = w1[j * h1 : (j + 1) * h1].T
                B1[m, :h1] = b1[j * h1 : (j + 1) * h1]
                W2[m, :h1, : g.h2] = w2[q].T
                B2[m, : g.h2] = b2[q]
                W3[m, : g.h2] = w3[q].T
                B3[m] = b3[q]
                out.m1[m, :h1] = 1.0
                out.m2[m, : g.h2] = 1.0
                j += 1
        off += blk.k
    out.n_iter[order] = np.asarray(state.n_iter)
    out.loss[order] = np.asarray(state.loss)
    # A model that stopped by the tolerance rule before max_iter converged; one
    # that used all epochs did not (scikit-learn's ConvergenceWarning case).
    out.converged[order] = np.asarray(state.no_improve) > n_iter_no_change


def _predict_codes(trained: _Trained, X: np.ndarray) -> np.ndarray:
    params = tuple(jnp.asarray(p) for p in trained.params)
    return _blocks(X, _predict_chunk, params, jnp.asarray(trained.m1), jnp.asarray(trained.m2))


# --------------------------------------------------------------------------- the probe


def _groups(configs: list[tuple[int, int]], group_by: str) -> list[list[int]]:
    """Partition configuration indices into vmapped groups (one compiled shape each)."""
    if group_by == "all":
        return [list(range(len(configs)))]
    if group_by == "h1":
        keyf = lambda c: c[0]  # noqa: E731
    elif group_by == "shape":
        keyf = lambda c: c  # noqa: E731
    else:
        raise ValueError(f"`group_by` must be 'all', 'h1' or 'shape'; got {group_by!r}.")
    out: dict = {}
    for i, c in enumerate(configs):
        out.setdefault(keyf(c), []).append(i)
    return list(out.values())


def mlp_probe(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_seeds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-4,
    n_iter_no_change: int = 10,
    batch_size: int | None = None,
    learning_rate: float = 1e-3,
    standardize: bool = False,
    group_by: str = "all",
    progress: bool = True,
) -> MLPProbeResult:
    """The paper's MLP probe: grid search on a validation split, retrain the best with seeds.

    1. Split the training data (stratified, ``val_fraction``, from ``seed``; see
       :func:`validation_split`).
    2. Train every configuration (H1, H2, alpha) in ``hidden_sizes`` x
       ``hidden_sizes`` x ``alphas`` on the rest with seed ``seed``; score each
       on the validation split. The best validation accuracy wins (ties: first in
       the order H1, then H2, then alpha, all ascending as given).
    3. Retrain the winner on the whole training set with seeds ``seed, ...,
       seed + n_seeds - 1``; report each model's test accuracy, their mean and
       standard deviation.

    Args:
      X_train: (n, d) training representations (numpy, JAX, DLPack).
      y_train: (n,) labels, any hashable values of one type (ints, strings).
      X_test: (m, d) test representations.
      y_test: (m,) test labels; labels absent from training are reported in
        ``unseen_test_labels`` and counted wrong.
      hidden_sizes: sizes searched for each of the two hidden layers.
      alphas: L2 weights searched (default ``np.logspace(-5, -1, 5)``).
      n_seeds: seeds for the retrained best configuration.
      seed: base seed (validation split, grid initialisation, first retrain seed).
      val_fraction: validation fraction of the training set.
      max_iter, tol, n_iter_no_change, batch_size, learning_rate: as scikit-learn's
        MLPClassifier (solver "adam").
      standardize: if True, centre and scale features by the training mean and
        standard deviation (scikit-learn does not; default off).
      group_by: how the grid is split into compiled programs: "all" (the
        default: the whole grid is one program), "h1" (one program per
        first-layer size) or "shape" (one per (H1, H2)). Every model trains at
        its exact size and stops on its own in each case, so the results are
        the same; only the number of compiles and the batching change.
      progress: show progress bars (:mod:`geomcore.progress`).

    Returns:
      :class:`MLPProbeResult`.

    Raises:
      ValueError / TypeError: bad arrays or labels (naming the argument and row),
        a single class in training, a training set too small for the split.
    """
    Xtr = as_points(X_train, "X_train", dtype=np.float32)
    Xte = as_points(X_test, "X_test", dtype=np.float32)
    check_same_width(Xtr, Xte, "X_train", "X_test")
    ytr = as_labels(y_train, Xtr.shape[0], "y_train", points_name="X_train")
    yte = as_labels(y_test, Xte.shape[0], "y_test", points_name="X_test")
    sizes = [_check_int(h, "hidden_sizes[i]", 1) for h in hidden_sizes]
    alpha_list = [_check_float(a, "alphas[i]") for a in alphas]
    if not sizes or not alpha_list:
        raise ValueError("`hidden_sizes` and `alphas` must each hold at least one value.")
    n_seeds = _check_int(n_seeds, "n_seeds", 1)
    seed = _check_int(seed, "seed", 0)
    max_iter = _check_int(max_iter, "max_iter", 1)
    n_iter_no_change = _check_int(n_iter_no_change, "n_iter_no_change", 1)
    tol = _check_float(tol, "tol")
    learning_rate = _check_float(learning_rate, "learning_rate", positive=True)
    if batch_size is not None:
        batch_size = _check_int(batch_size, "batch_size", 1)

    classes, codes = _encode_labels(ytr, "y_train")
    if classes.shape[0] < 2:
        raise ValueError(
            f"`y_train` has a single class ({classes[0]!r}); a classifier probe needs at "
            "least two."
        )
    test_codes = _test_codes(classes, yte)
    unseen = np.unique(yte[test_codes < 0]) if (test_codes < 0).any() else np.array([])
    if unseen.size:
        logger.warning(
            "%d test points carry %d labels never seen in training (%s); they count as wrong.",
            int((test_codes < 0).sum()), unseen.size, ", ".join(map(str, unseen[:10])),
        )

    if standardize:
        mu = Xtr.mean(axis=0, dtype=np.float64)
        sd = Xtr.std(axis=0, dtype=np.float64)
        sd[sd == 0] = 1.0
        Xtr = ((Xtr - mu) / sd).astype(np.float32)
        Xte = ((Xte - mu) / sd).astype(np.float32)

    fit_idx, val_idx = validation_split(codes, fraction=val_fraction, seed=seed)
    C = classes.shape[0]
    configs = [(h1, h2) for h1 in sizes for h2 in sizes]
    grid_cfg = [(hs, a) for hs in configs for a in alpha_list]
    G = len(grid_cfg)
    val_acc = np.zeros(G)
    n_iter = np.zeros(G, np.int64)
    conv = np.zeros(G, bool)
    common = dict(
        max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
        batch_size=batch_size, learning_rate=learning_rate, progress=progress,
    )
    Xfit, cfit, Xval, cval = Xtr[fit_idx], codes[fit_idx], Xtr[val_idx], codes[val_idx]
    for gi, members in enumerate(_groups([c for c, _ in grid_cfg], group_by)):
        trained = train_mlps(
            Xfit, cfit, C,
            [grid_cfg[i][0] for i in members], [grid_cfg[i][1] for i in members],
            [seed] * len(members),
            desc=f"grid {gi + 1}", **common,
        )
        pred = _predict_codes(trained, Xval)
        val_acc[members] = (pred == cval[None, :]).mean(axis=1)
        n_iter[members] = trained.n_iter
        conv[members] = trained.converged
    grid = MLPGrid(
        hidden_sizes=np.array([c for c, _ in grid_cfg], np.int64).reshape(G, 2),
        alphas=np.array([a for _, a in grid_cfg]),
        val_accuracy=val_acc,
        n_iter=n_iter,
        converged=conv,
    )
    best = grid.config(grid.best_index)
    logger.info("best MLP configuration %s (validation accuracy %.4f)", best, val_acc.max())

    seeds = tuple(seed + i for i in range(n_seeds))
    trained = train_mlps(
        Xtr, codes, C, [best.hidden_sizes] * n_seeds, [best.alpha] * n_seeds, seeds,
        desc="retrain", **common,
    )
    pred = _predict_codes(trained, Xte)
    acc = (pred == test_codes[None, :]).mean(axis=1)  # unseen labels have code -1: wrong
    return MLPProbeResult(
        config=best,
        accuracies=acc,
        mean=float(acc.mean()),
        std=float(acc.std()),
        grid=grid,
        classes=classes,
        unseen_test_labels=tuple(unseen.tolist()),
        n_unseen_test=int((test_codes < 0).sum()),
        seeds=seeds,
        n_iter=trained.n_iter,
        converged=trained.converged,
    )


def _test_codes(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Class index of each label in y, -1 for labels not among classes."""
    index = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([index.get(v, -1) for v in y.tolist()], dtype=np.int32)


# --------------------------------------------------------------------------- estimator

# scikit-learn is a dependency of geomcore; the mixins give clone/get_params/score.
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import check_is_fitted, validate_data  # noqa: E402


class MLPProbe(ClassifierMixin, BaseEstimator):
    """One two-hidden-layer MLP probe configuration with scikit-learn's estimator API.

    The same model, loss, optimiser and stopping as :func:`mlp_probe` (see the
    module docstring), for use in pipelines, ``cross_val_score`` or
    ``GridSearchCV``. Fitted attributes: ``classes_``, ``n_iter_``, ``loss_``,
    ``converged_``, ``coefs_`` and ``intercepts_`` (lists of numpy arrays, as
    scikit-learn's MLPClassifier), ``n_features_in_``.

    Args:
      hidden_layer_sizes: (H1, H2).
      alpha: L2 weight.
      max_iter, tol, n_iter_no_change, batch_size, learning_rate_init: as
        scikit-learn's MLPClassifier with solver "adam".
      random_state: int seed (initial weights and epoch permutations).
      standardize: centre and scale features with the training statistics.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, int] = (128, 128),
        alpha: float = 1e-4,
        *,
        max_iter: int = 1000,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        batch_size: int | None = None,
        learning_rate_init: float = 1e-3,
        random_state: int = 0,
        standardize: bool = False,
        progress: bool = False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.random_state = random_state
        self.standardize = standardize
        self.progress = progress

    def fit(self, X: Any, y: Any) -> "MLPProbe":
        """Train the probe on (X, y); labels may be any sortable values of one type."""
        if y is None:
            raise ValueError("MLPProbe requires y to be passed, but the target y is None.")
        # scikit-learn's own input validation (its messages name X and y, refuse
        # sparse and complex input, convert numeric object arrays) so that the
        # estimator behaves as scikit-learn's estimators do.
        Xa, ya = validate_data(self, X, y, dtype=np.float64, y_numeric=False)
        check_classification_targets(ya)
        Xa = Xa.astype(np.float32)
        hs = _check_hidden(self.hidden_layer_sizes, "hidden_layer_sizes")
        alpha = _check_float(self.alpha, "alpha")
        seed = 0 if self.random_state is None else _check_int(self.random_state, "random_state", 0)
        max_iter = _check_int(self.max_iter, "max_iter", 1)
        tol = _check_float(self.tol, "tol")
        n_iter_no_change = _check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        batch_size = (None if self.batch_size is None
                      else _check_int(self.batch_size, "batch_size", 1))
        lr = _check_float(self.learning_rate_init, "learning_rate_init", positive=True)
        classes, codes = _encode_labels(ya, "y")
        if classes.shape[0] < 2:
            raise ValueError(
                f"`y` has one class ({classes[0]!r}); a classifier needs at least two."
            )
        if self.standardize:
            mu = Xa.mean(axis=0, dtype=np.float64)
            sd = Xa.std(axis=0, dtype=np.float64)
            sd[sd == 0] = 1.0
            self.mean_, self.scale_ = mu, sd
            Xa = ((Xa - mu) / sd).astype(np.float32)
        trained = train_mlps(
            Xa, codes, classes.shape[0], [hs], [alpha], [seed],
            max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
            batch_size=batch_size, learning_rate=lr, progress=self.progress, desc="MLPProbe",
        )
        self._trained = trained
        self.classes_ = classes
        self.n_iter_ = int(trained.n_iter[0])
        self.loss_ = float(trained.loss[0])
        self.converged_ = bool(trained.converged[0])
        W1, B1, W2, B2, W3, B3 = (p[0] for p in trained.params)
        self.coefs_ = [W1, W2, W3]
        self.intercepts_ = [B1, B2, B3]
        return self

    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "_trained")
        Xa = validate_data(self, X, dtype=np.float64, reset=False).astype(np.float32)
        if self.standardize:
            Xa = ((Xa - self.mean_) / self.scale_).astype(np.float32)
        return Xa

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (n,), values from ``classes_``."""
        Xa = self._check_X(X)
        codes = _predict_codes(self._trained, Xa)[0]
        return self.classes_[codes]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, C), columns in the order of ``classes_``."""
        Xa = self._check_X(X)
        t = self._trained
        params = tuple(jnp.asarray(p) for p in t.params)
        return _blocks(Xa, _proba_chunk, params, jnp.asarray(t.m1), jnp.asarray(t.m2))[0]
