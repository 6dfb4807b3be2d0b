"""Bad input fails early with a ValueError/TypeError that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import geomcore


def _two(rng):
    return rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 3


def test_nan_and_inf_name_array_and_row(rng):
    A, B = _two(rng)
    A[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"`A` has a non-finite value .* row 2, column 1"):
        geomcore.hull_distance(A, B)
    A[2, 1] = 0
    B[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"`B` has a non-finite value .* row 3"):
        geomcore.hull_distance(A, B)


def test_wrong_rank_width_and_empty(rng):
    A, B = _two(rng)
    with pytest.raises(ValueError, match=r"`A` must be a 2-D array"):
        geomcore.hull_distance(A[0], B)
    with pytest.raises(ValueError, match=r"`B` has 2 columns but 3 were expected"):
        geomcore.hull_distance(A, B[:, :2])
    with pytest.raises(ValueError, match=r"`A` has 0 rows"):
        geomcore.hull_distance(A[:0], B)


def test_non_numeric(rng):
    A, B = _two(rng)
    with pytest.raises(TypeError, match=r"`A` must hold real numbers"):
        geomcore.hull_distance(A.astype(str), B)
    with pytest.raises(TypeError, match=r"`B` must hold real numbers; got booleans"):
        geomcore.hull_distance(A, B > 0)


def test_groups_and_pairs(rng):
    X = rng.normal(size=(10, 2))
    g = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match=r"`groups` has 9 entries but `X` has 10 rows"):
        geomcore.hull_distances(X, g[:9], [[0, 1]])
    with pytest.raises(ValueError, match=r"`pairs` row 1 names group id 5, which no point has"):
        geomcore.hull_distances(X, g, [[0, 1], [0, 5]])
    with pytest.raises(ValueError, match=r"`pairs` row 0 pairs group 1 with itself"):
        geomcore.overlaps(X, g, [[1, 1]])
    with pytest.raises(ValueError, match=r"`pairs` must have shape \(m, 2\)"):
        geomcore.overlaps(X, g, [0, 1, 1])
    with pytest.raises(TypeError, match=r"`groups` must hold integer cluster ids"):
        geomcore.hull_distances(X, np.array(["a"] * 10), [[0, 1]])


def test_labels_length_and_options(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"`labels` has 3 entries but `X` has 10 rows"):
        geomcore.label_distances(X, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`tol` must be a number in \(0, 1\)"):
        geomcore.hull_distance(X[:5], X[5:] + 9, tol=0)
    with pytest.raises(TypeError, match=r"`dtype` must be float32 or float64"):
        geomcore.hull_distance(X[:5], X[5:] + 9, dtype="int8")


def test_point_hull_width_mismatch(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match=r"`P` has 3 columns but 2 were expected"):
        geomcore.point_hull_distances(np.zeros((1, 3)), X, np.zeros(10, int))
