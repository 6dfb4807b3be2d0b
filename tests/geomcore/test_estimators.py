"""HardMarginSVC against scikit-learn's hand-checkable toy set and estimator checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from geomcore import HardMarginSVC
from geomcore.estimators import NOT_APPLICABLE_CHECKS
from ground_truth import qp_distance

# scikit-learn's own SVM test fixture (sklearn/svm/tests/test_svm.py)
X_TOY = np.array([[-2, -1], [-1, -1], [-1, -2], [1, 1], [1, 2], [2, 1]], float)
Y_TOY = [1, 1, 1, 2, 2, 2]


def test_toy_matches_closed_form():
    clf = HardMarginSVC().fit(X_TOY, Y_TOY)
    # support points (-1,-1) and (1,1): w = (0.5, 0.5), b = 0, margin 2*sqrt(2)
    np.testing.assert_allclose(clf.coef_, [[0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(clf.intercept_, [0.0], atol=1e-6)
    np.testing.assert_allclose(clf.margin_, [2 * np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(clf.decision_function([[-1, -1], [1, 1]]), [-1, 1], atol=1e-5)
    assert clf.predict([[-1, -1], [1, 1]]).tolist() == [1, 2]
    assert clf.score(X_TOY, Y_TOY) == 1.0


def test_multiclass_one_vs_one_against_svc(rng):
    centers = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]], float)
    X = np.vstack([rng.normal(size=(40, 3)) + c for c in centers])
    y = np.repeat(["w", "x", "y", "z"], 40)
    clf = HardMarginSVC().fit(X, y)
    assert clf.coef_.shape == (6, 3) and clf.pairs_.tolist()[0] == [0, 1]
    for k, (i, j) in enumerate(clf.pairs_):
        truth = qp_distance(X[y == clf.classes_[i]], X[y == clf.classes_[j]])
        assert abs(clf.margin_[k] - truth) <= 1e-4 * truth
    ref = SVC(kernel="linear", C=1e8).fit(X, y)
    P = rng.normal(size=(200, 3)) * 5
    agree = (clf.predict(P) == ref.predict(P)).mean()
    assert agree > 0.95
    assert clf.score(X, y) == 1.0


def test_overlapping_classes_raise():
    X = np.array([[0.0], [2.0], [1.0], [3.0]])
    with pytest.raises(ValueError, match="not linearly separable"):
        HardMarginSVC().fit(X, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        HardMarginSVC().fit(X, [0, 0, 0, 0])


@parametrize_with_checks([HardMarginSVC()], expected_failed_checks=lambda est: NOT_APPLICABLE_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
