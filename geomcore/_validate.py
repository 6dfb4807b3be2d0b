"""Host-side input checks that run before anything is traced by JAX.

Every public entry point funnels its arrays through these helpers so that bad
input fails with a ``ValueError``/``TypeError`` that names the array, the row and
what was expected, instead of surfacing as a JAX traceback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_points",
    "as_labels",
    "as_groups",
    "check_finite",
    "check_same_width",
    "check_tolerances",
]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Turn numpy, JAX, lists or any DLPack producer into a numpy array.

    Objects exposing ``__dlpack__`` (torch tensors, CuPy, JAX arrays) are taken
    through ``np.from_dlpack`` so a CPU tensor is read without a copy.
    """
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
        try:
            return np.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError) as exc:
            # A tensor on an accelerator or one that needs grad: fall back to a
            # host copy through the producer's own conversion, never silently
            # changing values.
            detach = getattr(x, "detach", None)
            if detach is not None:
                x = detach()
                cpu = getattr(x, "cpu", None)
                if cpu is not None:
                    x = cpu()
                try:
                    return np.from_dlpack(x)
                except Exception:  # pragma: no cover - exotic producers
                    pass
            try:
                return np.asarray(x)
            except Exception:
                raise TypeError(f"`{name}` could not be read as an array: {exc}") from exc
    try:
        return np.asarray(x)
    except Exception as exc:
        raise TypeError(f"`{name}` could not be read as an array: {exc}") from exc


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first row that holds NaN or inf."""
    if arr.size == 0:
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        if arr.ndim == 1:
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"`{name}` has a non-finite value (NaN or inf) at index {row}.")
        row = int(np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))[0])
        col = int(np.flatnonzero(bad[row].reshape(-1))[0])
        raise ValueError(
            f"`{name}` has a non-finite value (NaN or inf) in row {row}, column {col}: "
            f"{arr[row].reshape(-1)[col]!r}."
        )


def as_points(
    x: Any,
    name: str,
    *,
    dtype: Any = np.float64,
    min_rows: int = 1,
    width: int | None = None,
) -> np.ndarray:
    """Validate a point set and return it as a C-contiguous 2-D numpy array.

    Args:
      x: (n, d) array-like: numpy, JAX, list, or any DLPack producer.
      name: the argument's name, used in error messages.
      dtype: the floating dtype of the returned array.
      min_rows: fewest rows accepted (0 allows empty sets).
      width: if given, the required number of columns d.

    Raises:
      TypeError: non-numeric data (strings, objects, booleans, complex).
      ValueError: wrong rank, too few rows, wrong width, NaN or inf.
    """
    arr = _to_numpy(x, name)
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(
            f"`{name}` must hold real numbers; got dtype {arr.dtype} "
            "(strings or Python objects). Convert it with np.asarray(..., dtype=float)."
        )
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must hold real numbers; got booleans (dtype bool).")
    if arr.dtype.kind == "c":
        raise TypeError(f"`{name}` must hold real numbers; got complex dtype {arr.dtype}.")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold real numbers; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (n_points, n_features); "
            f"got {arr.ndim}-D array of shape {arr.shape}."
        )
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} rows (shape={arr.shape}); at least {min_rows} required."
        )
    if arr.shape[1] < 1:
        raise ValueError(f"`{name}` has no columns (shape={arr.shape}); at least 1 required.")
    if width is not None and arr.shape[1] != width:
        raise ValueError(
            f"`{name}` has {arr.shape[1]} columns but {width} were expected "
            f"(all point sets must live in the same space); shape={arr.shape}."
        )
    out = np.ascontiguousarray(arr, dtype=dtype)
    check_finite(out, name)
    return out


def as_labels(y: Any, n: int, name: str = "labels", *, points_name: str = "X") -> np.ndarray:
    """Validate a 1-D label vector of length n (any hashable values: ints or strings)."""
    arr = _to_numpy(y, name) if not isinstance(y, (list, tuple)) else np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D with one label per row of `{points_name}`; "
            f"got shape {arr.shape}."
        )
    if arr.shape[0] != n:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} entries but `{points_name}` has {n} rows; "
            "there must be exactly one label per point."
        )
    if arr.dtype.kind == "f":
        check_finite(arr, name)
    return arr


def as_groups(g: Any, n: int, name: str = "groups", *, points_name: str = "X") -> np.ndarray:
    """Validate integer group (cluster) ids, one per point."""
    arr = _to_numpy(g, name)
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D with one id per row of `{points_name}`; got shape {arr.shape}."
        )
    if arr.shape[0] != n:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} entries but `{points_name}` has {n} rows; "
            "there must be exactly one group id per point."
        )
    if arr.dtype.kind not in "iu":
        if (
            arr.dtype.kind == "f"
            and arr.size
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must hold integer cluster ids; got dtype {arr.dtype}.")
    return arr.astype(np.int64, copy=False)


def check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`{name_a}` has {a.shape[1]} columns and `{name_b}` has {b.shape[1]}; "
            "both must have the same number of features."
        )


def check_tolerances(
    tol: Any, rtol: Any, names: tuple[str, str] = ("tol", "rtol")
) -> tuple[float, float]:
    """The one check of the engine's two tolerances; returns them as floats.

    ``tol`` is relative to the data scale (hulls closer than ``tol * scale``
    overlap) and ``rtol`` is the certified relative accuracy of a distance
    (``(upper - lower) <= rtol * upper``): both are dimensionless fractions, so
    each must be a real number strictly between 0 and 1 (a bool is not a number
    here). ``names`` is how the caller spells them (``--tol`` on a command line).
    """
    out = []
    for name, v in zip(names, (tol, rtol)):
        real = isinstance(v, (int, float, np.integer, np.floating))
        if not real or isinstance(v, (bool, np.bool_)) or not 0.0 < float(v) < 1.0:
            raise ValueError(f"`{name}` must be a number in (0, 1); got {v!r}.")
        out.append(float(v))
    return out[0], out[1]
