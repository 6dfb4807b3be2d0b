"""scikit-learn estimator: fit = DirectProbe clustering, predict = nearest cluster hull."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from geomcore.directprobe.clustering import directprobe

__all__ = ["DirectProbeClassifier"]


class DirectProbeClassifier(ClassifierMixin, BaseEstimator):
    """DirectProbe as a classifier, for pipelines and model selection.

    ``fit(X, y)`` runs :func:`geomcore.directprobe.directprobe`; ``predict``
    returns the label of the nearest cluster hull; ``score`` is accuracy.

    Parameters:
      tol: overlap tolerance relative to the data scale (see ``directprobe``).
      rtol: relative tolerance of the hull distances.

    Attributes (after fit):
      probe_: the :class:`Probe`; classes_: sorted labels; n_features_in_;
      n_clusters_: number of clusters.
    """

    def __init__(self, tol: float = 1e-6, rtol: float = 1e-4):
        self.tol = tol
        self.rtol = rtol

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, order="C")
        check_classification_targets(y)
        self.probe_ = directprobe(X, y, tol=self.tol, rtol=self.rtol)
        self.classes_ = self.probe_.labels
        self.n_clusters_ = self.probe_.n_clusters
        return self

    def predict(self, X):
        check_is_fitted(self, "probe_")
        X = validate_data(self, X, dtype=np.float64, order="C", reset=False)
        return self.probe_.predict(X, tol=self.tol, rtol=self.rtol)
