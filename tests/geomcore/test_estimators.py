"""The scikit-learn estimators: HardMarginSVC and DirectProbeClassifier.

HardMarginSVC against scikit-learn's hand-checkable toy set, clarabel's QP
(tests/ground_truth.py) and SVC; both estimators through scikit-learn's
estimator checks. A check is excluded only where its data has overlapping
classes, for which no hard-margin SVM exists: each exclusion states that
check's data, and ``test_exclusion_reason_holds`` runs the check again,
records the data it fits and asks HiGHS whether the classes are separable.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from geomcore import DirectProbeClassifier, HardMarginSVC
from tests.ground_truth import lp_separable, qp_distance

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


def test_dtypes_on_separable_data():
    """What check_estimators_dtypes and check_dtype_object test, on separable data."""
    rng = np.random.default_rng(7)
    X = np.vstack([rng.uniform(0, 3, size=(10, 5)), rng.uniform(5, 8, size=(10, 5))])
    y = np.repeat([1, 2], 10)
    for Xt in (X.astype(np.float32), X, X.astype(np.int64), X.astype(np.int32), X.astype(object)):
        clf = HardMarginSVC().fit(Xt, y)
        assert clf.predict(Xt).tolist() == y.tolist()
    bad = X.astype(object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError):
        HardMarginSVC().fit(bad, y)
    with pytest.raises(ValueError, match="NaN"):
        HardMarginSVC().fit(np.where(np.arange(20)[:, None] == 3, np.nan, X), y)


def test_bad_tolerances_raise():
    X = np.array([[0.0], [1.0], [3.0], [4.0]])
    for bad in (0.0, 1.0, -1e-6, "1e-6", True):
        with pytest.raises(ValueError, match="`tol` must be a number in"):
            HardMarginSVC(tol=bad).fit(X, [0, 0, 1, 1])
        with pytest.raises(ValueError, match="`rtol` must be a number in"):
            DirectProbeClassifier(rtol=bad).fit(X, [0, 0, 1, 1])


# Every check HardMarginSVC is expected to fail: (reason, the shape of the data
# the failing fit receives, its number of classes). In each, the classes of
# that data overlap, so no hard-margin SVM exists and fit raises a ValueError
# instead of a soft-margin answer. test_exclusion_reason_holds checks all three.
NON_SEPARABLE_CHECKS = {
    "check_fit_score_takes_y": (
        "fits 30 random points in 3-D with 3 random labels: all three class pairs overlap",
        (30, 3),
        3,
    ),
    "check_n_features_in_after_fitting": (
        "fits 15 random points in 4-D with 3 random labels: classes 0-1 and 0-2 overlap",
        (15, 4),
        3,
    ),
    "check_positive_only_tag_during_fit": (
        "fits iris (150 x 4), whose versicolor and virginica overlap; the check reads the "
        "ValueError as a refusal of negative inputs",
        (150, 4),
        3,
    ),
    "check_estimators_dtypes": (
        "fits 20 uniform points in 5-D labelled 1, 2 alternately: the two classes overlap",
        (20, 5),
        2,
    ),
    "check_dtype_object": (
        "fits 56 uniform points in 10-D with 4 shuffled labels of 14: the classes overlap",
        (56, 10),
        4,
    ),
    "check_estimators_nan_inf": (
        "after NaN and inf are refused (as they should be), fits 10 normal points in 3-D "
        "with two overlapping random classes",
        (10, 3),
        2,
    ),
    "check_classifier_data_not_an_array": (
        "fits 12 points in 2-D with labels 1 and 2, which overlap",
        (12, 2),
        2,
    ),
    "check_classifiers_train": (
        "after the separable 3-blob problem (which fits), fits 200 points in 2-D with two "
        "overlapping classes",
        (200, 2),
        2,
    ),
    "check_supervised_y_2d": (
        "fits 30 random points in 3-D with 3 random labels: all three class pairs overlap",
        (30, 3),
        3,
    ),
    "check_fit_idempotent": ("fits 80 points in 2-D with two overlapping classes", (80, 2), 2),
    "check_fit_check_is_fitted": (
        "fits 100 points in 2-D with two overlapping classes",
        (100, 2),
        2,
    ),
    "check_n_features_in": ("fits 100 points in 2-D with two overlapping classes", (100, 2), 2),
}


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, HardMarginSVC):
        return {name: reason for name, (reason, _, _) in NON_SEPARABLE_CHECKS.items()}
    return {}  # DirectProbeClassifier passes every check


@parametrize_with_checks(
    [HardMarginSVC(), DirectProbeClassifier()], expected_failed_checks=_expected_failures
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


class _RecordingSVC(HardMarginSVC):
    """HardMarginSVC that keeps every (X, y) it is asked to fit (class-level: checks clone)."""

    fits: list = []

    def fit(self, X, y):
        _RecordingSVC.fits.append((X, y))
        return super().fit(X, y)


def _check_name(check) -> str:
    return (check.func if isinstance(check, partial) else check).__name__


def _causes(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


@pytest.mark.parametrize("name", sorted(NON_SEPARABLE_CHECKS))
def test_exclusion_reason_holds(name):
    """The excluded check fails because of HardMarginSVC's non-separable ValueError, on data
    of the stated shape whose classes HiGHS finds overlapping."""
    _, shape, n_classes = NON_SEPARABLE_CHECKS[name]
    checks = [
        c
        for _, c in estimator_checks_generator(_RecordingSVC(), legacy=True)
        if _check_name(c) == name
    ]
    assert checks, f"scikit-learn no longer has {name}: drop its exclusion"
    for check in checks:
        _RecordingSVC.fits.clear()
        with pytest.raises(Exception) as info:
            check(_RecordingSVC())
        why = [
            e
            for e in _causes(info.value)
            if isinstance(e, ValueError) and "not linearly separable" in str(e)
        ]
        assert why, f"{name} failed for another reason: {info.value!r}"
        X, y = _RecordingSVC.fits[-1]
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        classes = np.unique(y)
        assert X.shape == shape and classes.size == n_classes
        separable = [
            lp_separable(X[y == a], X[y == b])
            for i, a in enumerate(classes)
            for b in classes[i + 1 :]
        ]
        assert not all(separable), f"HiGHS separates every class pair of {name}'s data"
