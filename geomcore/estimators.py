"""HardMarginSVC: a scikit-learn estimator for the hard-margin linear SVM.

The hard-margin SVM between two classes is the nearest-point problem between
their convex hulls: with nearest points u (class +) and v (class -) and
w = u - v, the canonical SVM weights are ``coef = 2 w / ||w||^2`` (support
points score exactly +-1) and the margin width is ``||w|| = 2 / ||coef||``.
It exists only when the classes are linearly separable; for overlapping
classes ``fit`` raises a ValueError instead of returning a soft-margin answer.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import _ovr_decision_function, check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from geomcore.distances import _check_options
from geomcore.solvers.router import solve_pairs

__all__ = ["HardMarginSVC"]


class HardMarginSVC(ClassifierMixin, BaseEstimator):
    """Hard-margin linear SVM by certified hull distances (one-vs-one).

    Parameters
    ----------
    tol : float, default=1e-6
        Overlap tolerance relative to the data scale.
    rtol : float, default=1e-4
        Certified relative accuracy of each margin.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the iterations (certificates are float64).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes * (n_classes - 1) / 2, n_features)
        Canonical hard-margin weights per class pair, support points at +-1.
        For two classes one row, positive scores mean ``classes_[1]``; for more,
        row k is the pair (i, j) in ``pairs_`` and positive scores vote for i.
    intercept_ : ndarray of shape (n_pairs,)
    margin_ : ndarray of shape (n_pairs,)
        Margin width (hull distance) per pair, in the units of X.
    pairs_ : ndarray of shape (n_pairs, 2)
        Class indices of each pair, ordered (0, 1), (0, 2), ..., (1, 2), ...
    n_iter_ : ndarray of shape (n_pairs,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from geomcore import HardMarginSVC
    >>> X = np.array([[-2, -1], [-1, -1], [-1, -2], [1, 1], [1, 2], [2, 1]], float)
    >>> clf = HardMarginSVC().fit(X, [0, 0, 0, 1, 1, 1])
    >>> np.round(clf.coef_, 3), np.round(clf.margin_, 3)
    (array([[0.5, 0.5]]), array([2.828]))
    """

    def __init__(self, tol=1e-6, rtol=1e-4, dtype="float32"):
        self.tol = tol
        self.rtol = rtol
        self.dtype = dtype

    def fit(self, X, y):
        tol, rtol, dt = _check_options(self.tol, self.rtol, self.dtype)
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        n_classes = self.classes_.size
        if n_classes < 2:
            raise ValueError(
                f"HardMarginSVC needs at least 2 classes in y; got 1 class: {self.classes_[0]!r}."
            )
        sets = [X[yi == k] for k in range(n_classes)]
        iu, ju = np.triu_indices(n_classes, k=1)
        if n_classes == 2:
            pairs = np.array([[1, 0]])  # positive side = classes_[1], as in scikit-learn
        else:
            pairs = np.stack([iu, ju], axis=1)
        res = solve_pairs(sets, pairs, mode="distance", tol=tol, rtol=rtol, dtype=dt)
        if not res.separable.all():
            k = int(np.flatnonzero(~res.separable)[0])
            a, b = self.classes_[pairs[k, 0]], self.classes_[pairs[k, 1]]
            raise ValueError(
                f"classes {a!r} and {b!r} are not linearly separable (their convex hulls "
                "overlap), so no hard-margin SVM exists; use a soft-margin SVC instead."
            )
        nrm2 = np.einsum("ij,ij->i", res.w, res.w)
        self.coef_ = 2.0 * res.w / nrm2[:, None]
        self.intercept_ = -2.0 * res.b / nrm2
        self.margin_ = res.distance
        self.pairs_ = pairs if n_classes > 2 else np.array([[0, 1]])
        self.n_iter_ = res.iterations
        self.status_ = res.status
        return self

    def pairwise_decision_function(self, X):
        """Raw per-pair scores ``X @ coef_.T + intercept_``, shape (n, n_pairs).

        For more than two classes, a positive score in column k votes for class
        ``pairs_[k, 0]``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, order="C", reset=False)
        return X @ self.coef_.T + self.intercept_

    def decision_function(self, X):
        """(n,) scores for two classes (positive: ``classes_[1]``); for more,
        (n, n_classes) one-vs-one votes plus normalised confidences, as
        scikit-learn's ``SVC(decision_function_shape="ovr")``."""
        scores = self.pairwise_decision_function(X)
        if self.classes_.size == 2:
            return scores[:, 0]
        # _ovr_decision_function: prediction 0 votes for i; confidences favour j.
        return _ovr_decision_function(scores <= 0, -scores, self.classes_.size)

    def predict(self, X):
        """The class with most one-vs-one votes (confidences break ties)."""
        scores = self.decision_function(X)
        if self.classes_.size == 2:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
