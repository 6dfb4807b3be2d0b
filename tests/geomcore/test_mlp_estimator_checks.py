"""MLPProbe against scikit-learn's estimator checks (``parametrize_with_checks``).

Every check runs except two that scikit-learn itself would skip in this
environment; each exclusion has its own reason, and a test below checks that
the reason is true and covers what the check would have covered:

- ``check_array_api_input``: MLPProbe does not claim array-API support (its
  ``array_api_support`` tag is False), so the check does not apply; scikit-learn
  runs it only when ``SCIPY_ARRAY_API=1`` and then only for estimators with the tag.
- ``check_classifier_data_not_an_array``: scikit-learn skips it without pandas
  (not a dependency here); its array-like part runs below with scikit-learn's
  ``NotAnArray`` wrapper, which needs no pandas.

No check is expected to fail, so none is marked xfail; a check that starts
failing fails the suite.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import (
    check_estimators_data_not_an_array,
    parametrize_with_checks,
)

from geomcore.mlp import MLPProbe

# Small and quick, but trained enough for check_classifiers_train's accuracy bar.
_EST = MLPProbe(hidden_layer_sizes=(16, 16), max_iter=200)

_EXCLUDED = {
    "check_array_api_input": "MLPProbe does not claim array-API support",
    "check_classifier_data_not_an_array": "needs pandas; its array-like part runs below",
}
_ALL = parametrize_with_checks([_EST])
_KEEP = [v for v in _ALL.args[1] if v[1].func.__name__ not in _EXCLUDED]
_CHECKS = pytest.mark.parametrize(_ALL.args[0], _KEEP, ids=_ALL.kwargs["ids"])


def test_exclusions_are_real_checks_and_few():
    names = {v[1].func.__name__ for v in _ALL.args[1]}
    assert set(_EXCLUDED) <= names  # each excluded name is a check scikit-learn yields
    assert len(_KEEP) == len(_ALL.args[1]) - len(_EXCLUDED)
    assert len(_KEEP) >= 40  # the suite really runs


@_CHECKS
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_array_api_exclusion_reason_holds():
    """The array-API check does not apply: MLPProbe's tags do not claim support."""
    assert get_tags(_EST).array_api_support is False


def test_data_not_an_array_without_pandas():
    """check_classifier_data_not_an_array's array-like case (NotAnArray), no pandas needed;
    the exclusion's reason (pandas missing) is checked too."""
    assert importlib.util.find_spec("pandas") is None, (
        "pandas is installed: drop the check_classifier_data_not_an_array exclusion"
    )
    X, y = load_iris(return_X_y=True)
    idx = np.r_[0:10, 50:60, 100:110]
    check_estimators_data_not_an_array("MLPProbe", _EST, X[idx], y[idx], "NotAnArray")
