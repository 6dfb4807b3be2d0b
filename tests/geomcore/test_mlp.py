"""Tests of geomcore.mlp: the batched MLP probes.

Ground truth comes from outside the code under test: scikit-learn's
MLPClassifier (accuracy on real data, the stopping rule's epoch count), a numpy
re-implementation of the loss, analytic facts (a padded model equals the
unpadded one; masked units stay exactly zero), and synthetic data whose classes a
correct MLP must separate.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from geomcore import mlp
from geomcore.mlp import MLPProbe, mlp_probe, train_mlps, validation_split


def _xor_blobs(n_per: int, seed: int, spread: float = 0.15):
    """Four Gaussian blobs at the corners of a square, XOR-labelled: not linearly
    separable, but separable with a wide margin by a 2-hidden-layer ReLU net."""
    rng = np.random.default_rng(seed)
    centers = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], float)
    labels = np.array(["even", "even", "odd", "odd"])
    X = np.concatenate([c + spread * rng.standard_normal((n_per, 2)) for c in centers])
    y = np.repeat(labels, n_per)
    return X, y


# ----------------------------------------------------------------------------- model math


def test_model_loss_matches_numpy_reference():
    """Cross-entropy + alpha/(2|B|) sum ||W||^2 over real points only, as sklearn's _backprop."""
    rng = np.random.default_rng(0)
    d, h1, h2, C, B = 5, 4, 3, 3, 7
    W1, W2, W3 = rng.normal(size=(d, h1)), rng.normal(size=(h1, h2)), rng.normal(size=(h2, C))
    b1, b2, b3 = rng.normal(size=h1), rng.normal(size=h2), rng.normal(size=C)
    X = rng.normal(size=(B, d))
    y = rng.integers(0, C, B)
    weight = np.array([1, 1, 1, 1, 1, 0, 0], float)  # last two rows are padding
    alpha = 0.3

    # numpy reference on the 5 real rows
    Xr, yr = X[:5], y[:5]
    a1 = np.maximum(Xr @ W1 + b1, 0)
    a2 = np.maximum(a1 @ W2 + b2, 0)
    z = a2 @ W3 + b3
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ref = -logp[np.arange(5), yr].mean() + 0.5 * alpha * (
        (W1**2).sum() + (W2**2).sum() + (W3**2).sum()
    ) / 5

    params = tuple(jnp.asarray(a, jnp.float32) for a in (W1, b1, W2, b2, W3, b3))
    got = mlp._model_loss(
        params, alpha, jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.int32),
        jnp.asarray(weight, jnp.float32), 5.0,
    )
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)


@pytest.mark.parametrize("n", [85, 117])
def test_epochs_match_a_loop_over_sklearn_batches(n):
    """Two epochs of one model against a plain loop: the epoch's permutation cut
    into scikit-learn's ``gen_batches`` (two full batches of 40 and a partial
    one: 5 points, run at its own size, or 37, padded to a whole batch), the
    loss of each batch (``_model_loss``, itself checked against numpy above)
    differentiated on exactly its rows, and optax's Adam in float64 (eps
    outside the bias correction)."""
    from sklearn.utils import gen_batches

    X, y = _xor_blobs(30, seed=21)
    X, y = X[:n].astype(np.float32), (y[:n] == "odd").astype(np.int32)
    bs, alpha, lr, seed, epochs = 40, 1e-2, 1e-3, 4, 2
    got = train_mlps(X, y, 2, [(5, 3)], [alpha], [seed], max_iter=epochs, batch_size=bs,
                     learning_rate=lr)
    assert got.n_iter[0] == epochs

    params = [np.asarray(a, np.float64) for a in mlp._init_model(2, 2, 5, 3, seed)]
    mu = [np.zeros_like(a) for a in params]
    nu = [np.zeros_like(a) for a in params]
    grad = jax.jit(jax.grad(mlp._model_loss))
    key, t = jax.random.PRNGKey(seed + 1_000_003), 0
    for epoch in range(epochs):
        perm = np.asarray(mlp._epoch_permutation(key, epoch, n, n))
        for sl in gen_batches(n, bs):
            rows = perm[sl]
            g = grad(tuple(jnp.asarray(a, jnp.float32) for a in params), alpha,
                     jnp.asarray(X[rows]), jnp.asarray(y[rows]),
                     jnp.ones(rows.size, jnp.float32), float(rows.size))
            t += 1
            for k, gk in enumerate(g):
                gk = np.asarray(gk, np.float64)
                mu[k] = 0.9 * mu[k] + 0.1 * gk
                nu[k] = 0.999 * nu[k] + 0.001 * gk * gk
                params[k] = params[k] - lr * (mu[k] / (1 - 0.9**t)) / (
                    np.sqrt(nu[k] / (1 - 0.999**t)) + 1e-8)
    W1, B1, W2, B2, W3, B3 = (p[0] for p in got.params)
    for ours, ref in zip((W1, B1, W2, B2, W3, B3), params):
        np.testing.assert_allclose(ours, ref, atol=2e-6)
    # a wrong batch partition moves the weights by far more than that tolerance
    assert np.abs(params[0] - mlp._init_model(2, 2, 5, 3, seed)[0]).max() > 1e-4


def test_glorot_bounds_as_sklearn():
    """sklearn's _init_coef: U(-r, r), r = sqrt(6 / (fan_in + fan_out)), weights and biases."""
    W1, B1, W2, B2, W3, B3 = mlp._init_model(50, 4, 30, 20, 3)
    assert (W1.shape, W2.shape, W3.shape) == ((50, 30), (30, 20), (20, 4))
    for w, fi, fo in ((W1, 50, 30), (B1, 50, 30), (W2, 30, 20), (W3, 20, 4), (B3, 20, 4)):
        r = np.sqrt(6.0 / (fi + fo))
        assert np.abs(w).max() <= r
        assert np.abs(w).max() > 0.8 * r  # really spans the range, not a narrower init


def test_epoch_permutation_ignores_padding_bucket():
    key = jax.random.PRNGKey(7)
    a = np.asarray(mlp._epoch_permutation(key, 3, 16, 11))
    b = np.asarray(mlp._epoch_permutation(key, 3, 48, 11))
    assert sorted(a[:11].tolist()) == list(range(11))
    np.testing.assert_array_equal(a[:11], b[:11])
    c = np.asarray(mlp._epoch_permutation(key, 4, 16, 11))
    assert not np.array_equal(a[:11], c[:11])  # a fresh shuffle each epoch


def test_a_model_trains_the_same_alone_or_in_a_group():
    """Training models together (mixed shapes and seeds, stopping at different
    epochs) gives each the same epochs and weights as training it alone; the
    returned padding is exactly zero."""
    X, y = _xor_blobs(30, seed=2)
    codes = (y == "odd").astype(np.int32)
    Xf = X.astype(np.float32)
    sizes = [(8, 8), (4, 6), (2, 3), (4, 6), (8, 8)]
    alphas = [1e-2, 1e-3, 1e-1, 1e-4, 1e-3]
    seeds = [1, 5, 2, 5, 1]
    kw = dict(max_iter=60, tol=3e-3, n_iter_no_change=2)
    group = train_mlps(Xf, codes, 2, sizes, alphas, seeds, pad_to=(16, 12), **kw)
    assert len(set(group.n_iter.tolist())) > 1  # models really stopped at different epochs
    for m, (hs, a, s) in enumerate(zip(sizes, alphas, seeds)):
        alone = train_mlps(Xf, codes, 2, [hs], [a], [s], **kw)
        h1, h2 = hs
        assert group.n_iter[m] == alone.n_iter[0]
        W1a, _, W2a, _, W3a, _ = (p[0] for p in alone.params)
        W1g, B1g, W2g, B2g, W3g, _ = (p[m] for p in group.params)
        np.testing.assert_allclose(W1g[:, :h1], W1a, atol=2e-5)
        np.testing.assert_allclose(W2g[:h1, :h2], W2a, atol=2e-5)
        np.testing.assert_allclose(W3g[:h2], W3a, atol=2e-5)
        assert np.all(W1g[:, h1:] == 0) and np.all(B1g[h1:] == 0)
        assert np.all(W2g[h1:] == 0) and np.all(W2g[:, h2:] == 0) and np.all(B2g[h2:] == 0)
        assert np.all(W3g[h2:] == 0)


def test_models_of_distinct_seeds_train_in_one_block_as_alone():
    """A retrain over seeds (every model its own seed, so its own mini-batches)
    is one block with a batched first layer; each model still trains as it
    does alone, with mixed H2 in the block and a largest-alpha model apart."""
    X, y = _xor_blobs(30, seed=23)
    codes = (y == "odd").astype(np.int32)
    Xf = X.astype(np.float32)
    sizes = [(6, 4), (6, 4), (6, 3), (6, 4)]
    alphas = [1e-3, 1e-3, 1e-3, 1e-1]
    seeds = [11, 12, 13, 14]
    blocks, _, _ = mlp._plan(sizes, alphas, seeds)
    assert [len(b.slots) for b in blocks] == [3, 0]  # three seeds in one block; one apart
    kw = dict(max_iter=50, tol=3e-3, n_iter_no_change=2, batch_size=40)  # 3 batches, a tail
    group = train_mlps(Xf, codes, 2, sizes, alphas, seeds, parts=1, **kw)
    for m, (hs, a, s) in enumerate(zip(sizes, alphas, seeds)):
        alone = train_mlps(Xf, codes, 2, [hs], [a], [s], **kw)
        assert group.n_iter[m] == alone.n_iter[0]
        h1, h2 = hs
        for g, ref, cut in zip(group.params, alone.params,
                               (np.s_[:, :h1], np.s_[:h1], np.s_[:h1, :h2], np.s_[:h2],
                                np.s_[:h2], np.s_[:])):
            np.testing.assert_allclose(g[m][cut], ref[0], atol=2e-5)


def test_parts_run_concurrently_and_train_the_same_models():
    """Dealing the blocks into two programs on two threads trains the same
    models as one program (same epochs, same weights); every model lands in
    exactly one part, a block (seed, H1, largest alpha or not) is never split,
    and the parts carry about equal work."""
    X, y = _xor_blobs(40, seed=22)
    codes = (y == "odd").astype(np.int32)
    Xf = X.astype(np.float32)
    sizes = [(8, 8), (4, 6), (2, 3), (4, 6), (8, 4), (2, 2)]
    alphas = [1e-2, 1e-3, 1e-1, 1e-4, 1e-1, 1e-3]
    seeds = [1, 5, 2, 5, 1, 2]
    kw = dict(max_iter=60, tol=3e-3, n_iter_no_change=2)
    one = train_mlps(Xf, codes, 2, sizes, alphas, seeds, parts=1, **kw)
    two = train_mlps(Xf, codes, 2, sizes, alphas, seeds, parts=2, **kw)
    assert len(set(one.n_iter.tolist())) > 1
    np.testing.assert_array_equal(one.n_iter, two.n_iter)
    for a, b in zip(one.params, two.params):
        np.testing.assert_allclose(a, b, atol=2e-5)

    dealt = mlp._deal(sizes, alphas, seeds, max(alphas), 2, 2, 2)
    assert len(dealt) == 2
    assert sorted(np.concatenate(dealt).tolist()) == list(range(len(sizes)))
    part_of = {int(m): k for k, ms in enumerate(dealt) for m in ms}
    key = [(s, h[0], a == 1e-1) for h, a, s in zip(sizes, alphas, seeds)]
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            if key[i] == key[j]:
                assert part_of[i] == part_of[j]
    # a grid of equal blocks splits evenly
    grid = mlp._deal([(32, 32)] * 8, [1e-3] * 8, list(range(8)), 1e-3, 10, 3, 2)
    assert sorted(len(ms) for ms in grid) == [4, 4]


def test_parts_progress_shows_the_slowest_running_part():
    class Bar:
        n = 0

        def update(self, k):
            assert k > 0
            self.n += k

        def set_postfix(self, **kw):
            self.active = kw["active"]

    bar = Bar()
    report = mlp._PartsProgress(bar, 2)
    report(0, 20, 5)
    assert bar.n == 0 and bar.active == 5  # part 1 has not reported yet
    report(1, 20, 3)
    assert bar.n == 20 and bar.active == 8
    report(0, 40, 0)  # part 0 is done: part 1's epochs count
    assert bar.n == 20 and bar.active == 3
    report(1, 60, 1)
    assert bar.n == 60
    report(1, 80, 0)
    assert bar.n == 80 and bar.active == 0


def test_one_program_whatever_the_models_still_training():
    """The grid's program does not depend on when models stop: a second call whose
    models stop at other epochs (other alphas and seed) compiles nothing new."""
    X, y = _xor_blobs(25, seed=14)
    codes = (y == "odd").astype(np.int32)
    Xf = X.astype(np.float32)
    sizes = [(8, 8), (2, 4), (4, 2), (2, 2)]
    compiles = []

    def listen(event, seconds, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(seconds)

    first = train_mlps(Xf, codes, 2, sizes, [1e-1, 1e-4, 1e-3, 1e-2], [0] * 4,
                       max_iter=60, tol=3e-3, n_iter_no_change=2)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        second = train_mlps(Xf, codes, 2, sizes, [3e-1, 1e-5, 2e-1, 1e-3], [7] * 4,
                            max_iter=60, tol=3e-3, n_iter_no_change=2)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(set(first.n_iter.tolist())) > 1 and len(set(second.n_iter.tolist())) > 1
    assert first.n_iter.tolist() != second.n_iter.tolist()
    assert compiles == []


def test_stopping_rule_epoch_count_matches_sklearn():
    """With a huge tol no epoch 'improves': scikit-learn then stops after a fixed count
    of epochs; ours must stop at the same epoch."""
    X, y = _xor_blobs(20, seed=3)
    for n_no_change in (2, 5):
        sk = MLPClassifier((4, 4), tol=1e6, n_iter_no_change=n_no_change, random_state=0)
        sk.fit(X, y)
        probe = MLPProbe((4, 4), tol=1e6, n_iter_no_change=n_no_change).fit(X, y)
        assert probe.n_iter_ == sk.n_iter_
        assert probe.converged_


def test_max_iter_stop_is_reported_not_converged():
    X, y = _xor_blobs(20, seed=4)
    probe = MLPProbe((4, 4), max_iter=3, tol=0.0).fit(X, y)
    assert probe.n_iter_ == 3 and not probe.converged_


# ----------------------------------------------------------------------------- accuracy


def test_mlp_separates_xor_blobs():
    """XOR blobs with a wide margin: a linear model gets about 50%, a correct MLP ~100%."""
    X, y = _xor_blobs(100, seed=5)
    Xt, yt = _xor_blobs(100, seed=6)
    probe = MLPProbe((32, 32), alpha=1e-4, random_state=0).fit(X, y)
    assert probe.score(Xt, yt) >= 0.99
    assert set(probe.predict(Xt)) <= {"even", "odd"}


def test_mlp_probe_grid_on_separable_rings():
    """Three concentric rings (radii 1, 2, 3, noise 0.1): separable, not linearly."""
    rng = np.random.default_rng(8)

    def rings(n):
        r = rng.integers(1, 4, n)
        t = rng.uniform(0, 2 * np.pi, n)
        X = np.c_[r * np.cos(t), r * np.sin(t)] + 0.1 * rng.standard_normal((n, 2))
        return X, r

    X, y = rings(600)
    Xt, yt = rings(300)
    res = mlp_probe(X, y, Xt, yt, hidden_sizes=(16, 64), alphas=(1e-4, 1e-1), n_seeds=3,
                    progress=False)
    assert res.grid.val_accuracy.shape == (8,)
    assert res.grid.hidden_sizes.tolist() == (
        [[16, 16]] * 2 + [[16, 64]] * 2 + [[64, 16]] * 2 + [[64, 64]] * 2
    )
    assert res.config == res.grid.config(int(np.argmax(res.grid.val_accuracy)))
    assert res.grid.val_accuracy.max() >= 0.97
    assert res.accuracies.shape == (3,) and res.mean >= 0.97
    np.testing.assert_allclose(res.mean, res.accuracies.mean())
    np.testing.assert_allclose(res.std, res.accuracies.std())
    assert res.classes.tolist() == [1, 2, 3]
    assert res.unseen_test_labels == () and res.n_unseen_test == 0


def test_group_by_changes_programs_not_results():
    """Splitting the grid into several programs trains the same models."""
    X, y = _xor_blobs(30, seed=15)
    Xt, yt = _xor_blobs(10, seed=16)
    kw = dict(hidden_sizes=(4, 8), alphas=(1e-4, 1e-1), n_seeds=2, max_iter=40, progress=False)
    one = mlp_probe(X, y, Xt, yt, group_by="all", **kw)
    split = mlp_probe(X, y, Xt, yt, group_by="shape", **kw)
    np.testing.assert_array_equal(one.grid.n_iter, split.grid.n_iter)
    np.testing.assert_array_equal(one.grid.val_accuracy, split.grid.val_accuracy)
    np.testing.assert_array_equal(one.accuracies, split.accuracies)
    with pytest.raises(ValueError, match="`group_by` must be"):
        mlp_probe(X, y, Xt, yt, group_by="h2", **kw)


def test_within_one_point_of_sklearn_on_digits():
    """Real data (scikit-learn's digits): same configuration, mean test accuracy over
    seeds within 1 accuracy point of scikit-learn's MLPClassifier."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    seeds = range(4)
    # our 4 seeds train together (one vmapped batch), the reference one by one
    trained = train_mlps(Xtr.astype(np.float32), ytr.astype(np.int32), 10, [(32, 32)] * 4,
                         [1e-3] * 4, list(seeds))
    ours = (mlp._predict_codes(trained, Xte.astype(np.float32)) == yte[None, :]).mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = [MLPClassifier((32, 32), alpha=1e-3, max_iter=1000, random_state=s)
               .fit(Xtr, ytr).score(Xte, yte) for s in seeds]
    assert np.mean(ref) > 0.95  # the reference itself is sane
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.01, (ours, ref)


# ----------------------------------------------------------------------------- determinism


def test_deterministic_for_a_fixed_seed():
    X, y = _xor_blobs(40, seed=9)
    a = MLPProbe((8, 8), max_iter=30, random_state=3).fit(X, y)
    b = MLPProbe((8, 8), max_iter=30, random_state=3).fit(X, y)
    c = MLPProbe((8, 8), max_iter=30, random_state=4).fit(X, y)
    for wa, wb, wc in zip(a.coefs_, b.coefs_, c.coefs_):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    assert a.n_iter_ == b.n_iter_


def test_mlp_probe_deterministic_and_counts_unseen_test_labels_wrong():
    X, y = _xor_blobs(40, seed=10)
    Xt, yt = _xor_blobs(10, seed=11)
    kw = dict(hidden_sizes=(8,), alphas=(1e-4,), n_seeds=2, max_iter=50, progress=False)
    base = mlp_probe(X, y, Xt, yt, **kw)
    again = mlp_probe(X, y, Xt, yt, **kw)
    np.testing.assert_array_equal(base.accuracies, again.accuracies)
    np.testing.assert_array_equal(base.grid.val_accuracy, again.grid.val_accuracy)

    # Add 20 test points with a label never seen in training: same models, so each
    # accuracy must shrink by exactly the factor 40 / 60 (the new points are wrong).
    Xu = np.concatenate([Xt, np.zeros((20, 2))])
    yu = np.concatenate([yt, np.full(20, "unseen")])
    with_unseen = mlp_probe(X, y, Xu, yu, **kw)
    assert with_unseen.unseen_test_labels == ("unseen",)
    assert with_unseen.n_unseen_test == 20
    np.testing.assert_allclose(with_unseen.accuracies, base.accuracies * 40 / 60)


# ----------------------------------------------------------------------------- validation split


def test_validation_split_stratified_and_deterministic():
    codes = np.repeat([0, 1, 2, 3], [50, 20, 3, 1])
    fit, val = validation_split(codes, fraction=0.1, seed=0)
    assert np.intersect1d(fit, val).size == 0
    assert np.union1d(fit, val).tolist() == list(range(74))
    counts = np.bincount(codes[val], minlength=4)
    assert counts.tolist() == [5, 2, 1, 0]  # 10% rounded, >= 1 if >= 2 points, singletons stay
    fit2, val2 = validation_split(codes, fraction=0.1, seed=0)
    np.testing.assert_array_equal(val, val2)
    _, val3 = validation_split(codes, fraction=0.1, seed=1)
    assert not np.array_equal(val, val3)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors_are_clear():
    X, y = _xor_blobs(10, seed=12)
    with pytest.raises(ValueError, match="single class"):
        mlp_probe(X, np.zeros(40), X, np.zeros(40), progress=False)
    with pytest.raises(ValueError, match="too few for a validation split"):
        mlp_probe(X[:6], ["a", "b"] * 3, X, y, progress=False)
    Xn = X.copy()
    Xn[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"`X_train`.*row 7"):
        mlp_probe(Xn, y, X, y, progress=False)
    with pytest.raises(ValueError, match=r"`X_test` has 3"):
        mlp_probe(X, y, np.zeros((4, 3)), y[:4], progress=False)
    with pytest.raises(ValueError, match=r"`y_train` has 39 entries"):
        mlp_probe(X, y[:-1], X, y, progress=False)
    with pytest.raises(TypeError, match="cannot be ordered"):
        mlp_probe(X, np.array([1, "a"] * 20, dtype=object), X, y, progress=False)
    with pytest.raises(ValueError, match="`max_iter` must be >= 1"):
        mlp_probe(X, y, X, y, max_iter=0, progress=False)
    with pytest.raises(ValueError, match="one class"):
        MLPProbe().fit(X, ["a"] * 40)
    with pytest.raises(ValueError, match="two hidden sizes"):
        MLPProbe(hidden_layer_sizes=(3,)).fit(X, y)
    with pytest.raises(NotFittedError):
        MLPProbe().predict(X)
    fitted = MLPProbe((4, 4), max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPProbe is expecting 2"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`alpha` must be finite and >= 0"):
        MLPProbe(alpha=-1.0).fit(X, y)
    with pytest.raises(TypeError, match="`max_iter` must be an integer"):
        MLPProbe(max_iter=2.5).fit(X, y)


def test_estimator_api():
    X, y = _xor_blobs(30, seed=13)
    est = MLPProbe((8, 8), alpha=1e-3, max_iter=200)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    est.fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], est.predict(X))
    assert [w.shape for w in est.coefs_] == [(2, 8), (8, 8), (8, 2)]
