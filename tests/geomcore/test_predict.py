"""Nearest-hull prediction and the scikit-learn estimator.

Ground truth: clarabel's high-accuracy QP point-to-hull distances
(tests/ground_truth.qp_distance) on the reference's clusters, closed forms
(a point against a box), and scikit-learn's own estimator checks.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from tests.ground_truth import point_box_distance
from tests.reference_directprobe import reference_directprobe, reference_predict
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from geomcore.directprobe import DirectProbeClassifier, directprobe


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(30, 3))
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 30)]
    P = rng.normal(size=(12, 3)) * 1.5
    return X, y, P, directprobe(X, y)


def test_rank_matches_qp_distances_on_reference_clusters(case):
    X, y, P, probe = case
    ref_of, ref_lab = reference_directprobe(X, y)
    np.testing.assert_array_equal(probe.cluster_of, ref_of)
    D = reference_predict(X, ref_of, P)  # (p, K) clarabel QP distances
    clusters, dists = probe.rank(P)
    assert clusters.shape == dists.shape == (P.shape[0], probe.n_clusters)
    assert np.all(np.diff(dists, axis=1) >= 0)
    got = np.take_along_axis(probe.distances(P), np.argsort(D, axis=1), axis=1)
    want = np.sort(D, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7 * np.ptp(X))
    # Predicted labels are those of the QP-nearest cluster (no near ties here).
    gaps = np.sort(D, axis=1)[:, 1] - np.sort(D, axis=1)[:, 0]
    assert np.all(gaps > 1e-3)
    np.testing.assert_array_equal(probe.predict(P), ref_lab[np.argmin(D, axis=1)])
    np.testing.assert_array_equal(clusters[:, 0], np.argmin(D, axis=1))


def test_training_points_are_predicted_as_their_label(case):
    X, y, _, probe = case
    np.testing.assert_array_equal(probe.predict(X), y)
    assert probe.score(X, y) == 1.0
    assert np.all(probe.rank(X)[1][:, 0] <= 1e-6 * np.ptp(X))


def test_point_against_a_box_cluster():
    # One label is the 8 corners of a box, the other a far point: distances to
    # the box hull have a closed form.
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0])
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 2) for c in (0, 3)], float)
    X = np.vstack([corners, [[10.0, 10.0, 10.0]]])
    probe = directprobe(X, [0] * 8 + [1])
    assert probe.n_clusters == 2
    P = np.array([[2.0, 1.0, 1.0], [-1.0, -1.0, 5.0], [0.5, 1.0, 1.5], [9.0, 9.0, 9.5]])
    D = probe.distances(P)
    want = [point_box_distance(p, lo, hi) for p in P]
    np.testing.assert_allclose(D[:, 0], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(D[:, 1], np.linalg.norm(P - 10.0, axis=1), rtol=1e-4)
    np.testing.assert_array_equal(probe.predict(P), [0, 0, 0, 1])


def test_unseen_test_labels_count_as_wrong_and_are_named(case, caplog):
    X, y, P, probe = case
    pred = probe.predict(P)
    y_test = np.array(["zebra"] * 3 + pred[3:].tolist())
    with caplog.at_level(logging.WARNING, logger="geomcore.directprobe"):
        acc = probe.score(P, y_test)
    assert acc == pytest.approx((len(P) - 3) / len(P))
    assert "zebra" in caplog.text and "3 test points" in caplog.text
    assert probe.unseen_labels(y_test).tolist() == ["zebra"]


def test_empty_test_set(case):
    X, y, _, probe = case
    P = np.zeros((0, 3))
    assert probe.predict(P).shape == (0,)
    c, d = probe.rank(P)
    assert c.shape == d.shape == (0, probe.n_clusters)
    with pytest.raises(ValueError, match="empty test set"):
        probe.score(P, [])


def test_bad_test_input_is_named(case):
    X, y, P, probe = case
    with pytest.raises(ValueError, match=r"`P` has 2 columns but 3 were expected"):
        probe.predict(P[:, :2])
    with pytest.raises(ValueError, match=r"`y` has 2 entries but `P` has 12 rows"):
        probe.score(P, y[:2])
    with pytest.raises(ValueError, match=r"`P` has a non-finite value"):
        probe.predict(np.full((1, 3), np.inf))


def test_pipeline_on_iris():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(150)
    train, test = idx[:60], idx[60:100]
    clf = make_pipeline(StandardScaler(), DirectProbeClassifier()).fit(X[train], y[train])
    est = clf[-1]
    assert est.classes_.tolist() == [0, 1, 2]
    assert est.n_clusters_ >= 3
    # Nearest-hull accuracy equals the fraction of test points whose
    # reference-computed nearest cluster has the right label.
    Z = clf[0].transform(X)
    probe = est.probe_
    D = reference_predict(Z[train], probe.cluster_of, Z[test])
    ref_pred = probe.labels[probe.cluster_label[np.argmin(D, axis=1)]]
    assert clf.score(X[test], y[test]) == pytest.approx(np.mean(ref_pred == y[test]))
    assert clf.score(X[test], y[test]) > 0.8


# Checks that scikit-learn itself skips here for a missing optional dependency
# (pandas; SCIPY_ARRAY_API): they are replaced by the direct test below, so no
# test is skipped in CI. DirectProbeClassifier does not claim array-API support.
_NOT_APPLICABLE = {"check_array_api_input", "check_classifier_data_not_an_array"}
_ALL = parametrize_with_checks([DirectProbeClassifier()])
_KEEP = [v for v in _ALL.args[1] if v[1].func.__name__ not in _NOT_APPLICABLE]
_CHECKS = pytest.mark.parametrize(_ALL.args[0], _KEEP, ids=_ALL.kwargs["ids"])


@_CHECKS
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_accepts_array_likes_that_are_not_arrays():
    from sklearn.utils.estimator_checks import check_estimators_data_not_an_array

    X, y = load_iris(return_X_y=True)
    idx = np.r_[0:10, 50:60, 100:110]
    check_estimators_data_not_an_array(
        "DirectProbeClassifier", DirectProbeClassifier(), X[idx], y[idx], "NotAnArray"
    )
