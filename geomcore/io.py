"""Files: DirectProbe's original text formats, .npy/.npz arrays and results.json.

Inputs (readers raise ValueError naming the file and line on bad content):

* **embeddings**: ``.npy`` (one (n, d) array), ``.npz`` (one array, or pick one
  with ``FILE.npz:KEY``), or the original's text format: one vector per line,
  numbers separated by whitespace, every line the same length.
* **labels**: one label per line, or the original's *entities* file
  ``text<TAB>label`` (the label is what follows the last tab), or a 1-D ``.npy``.
* **label set**: the original's label-set file, one label per line (order and
  duplicates do not matter; labels are sorted).

Outputs, written exactly as the original DirectProbe writes them:

* ``clusters.txt``: line i holds the cluster id (0..K-1) of training point i.
* ``dis.txt``: one line per pair of different-label clusters (i < j):
  ``(i-A, j-B): d`` with d printed to 4 decimals, A and B the clusters' labels.
* ``prediction.txt``: line i is test point i:
  ``gold<TAB>c1-A,d1<TAB>c2-B,d2 ...``: every cluster, nearest first, with its
  label and the distance from the point to the cluster's hull (4 decimals).
* ``results.json``: everything, at full precision (schema in the README).

Every write is atomic: the content goes to a temporary file in the same
directory, is flushed to disk and then renamed over the target with
``os.replace``, so a crash leaves either the old file or the new one, never a
half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "atomic_open",
    "write_text_atomic",
    "write_lines_atomic",
    "save_npy_atomic",
    "read_embeddings",
    "read_labels",
    "read_label_set",
    "read_entities",
    "write_clusters",
    "read_clusters",
    "write_dis",
    "read_dis",
    "write_predictions",
    "read_predictions",
    "to_jsonable",
    "write_json",
    "read_json",
    "file_sha256",
]


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    encoding: str | None = "utf-8",
    *,
    make_dirs: bool = False,
) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    The project's one atomic writer: every result file (geomcore's outputs,
    embeddings, checkpoints, study units, downloaded corpora) goes through it.
    If the ``with`` body raises (or the process dies), the target is untouched:
    the previous file stays intact or no file appears, and the temporary file is
    removed (on a hard kill a hidden ``.NAME.*.tmp`` may remain; it is never read).
    A missing directory is an error unless ``make_dirs`` asks to create it.
    """
    path = Path(path)
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files; mode must contain 'w', got {mode!r}.")
    directory = path.parent if str(path.parent) else Path(".")
    if make_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise ValueError(f"cannot write {path}: directory {directory} does not exist.")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); give it the mode a plain
        # open() would (0666 minus the umask), or keep the mode of the file it replaces.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str, *, make_dirs: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", make_dirs=make_dirs) as f:
        f.write(text)


def write_lines_atomic(
    path: str | os.PathLike, lines: Sequence[str], *, make_dirs: bool = False
) -> None:
    """One string per line (UTF-8, ``\n`` after each), atomically.

    A string holding a newline would silently add a line and shift every line
    after it (labels would no longer match their rows), so it is a ValueError.
    """
    for i, line in enumerate(lines):
        if "\n" in line or "\r" in line:
            raise ValueError(f"line {i} to write to {path} contains a newline: {line!r}")
    write_text_atomic(path, "".join(line + "\n" for line in lines), make_dirs=make_dirs)


def save_npy_atomic(path: str | os.PathLike, array: Any, *, make_dirs: bool = False) -> None:
    """Save an array as ``.npy`` atomically."""
    with atomic_open(path, "wb", make_dirs=make_dirs) as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- readers


def _lines(path: Path, what: str) -> list[str]:
    """The file's lines without line endings; one trailing newline is allowed.

    Blank lines anywhere else are an error: they would silently shift the
    alignment between points and labels.
    """
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{what} file {path} is not UTF-8 text (byte {exc.start}); re-encode it as UTF-8."
        ) from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines):
        if not line.strip():
            raise ValueError(
                f"{what} file {path}, line {i + 1} is empty; every line must hold one entry "
                "(blank lines would misalign points and labels)."
            )
    return lines


def _split_npz_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``FILE.npz:KEY`` -> (FILE.npz, KEY); a path that exists as given wins."""
    s = os.fspath(spec)
    p = Path(s)
    if p.exists() or ":" not in s:
        return p, None
    head, key = s.rsplit(":", 1)
    if head.endswith(".npz"):
        return Path(head), key
    return p, None


def read_embeddings(spec: str | os.PathLike, name: str = "embeddings") -> np.ndarray:
    """Read an (n, d) float64 array from .npy, .npz (``FILE.npz[:KEY]``) or a text file.

    Text format (the original DirectProbe's): one vector per line, numbers
    separated by spaces or tabs, the same count on every line.
    """
    path, key = _split_npz_spec(spec)
    if not path.is_file():
        raise ValueError(f"{name} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(
                f"{name} file {path} could not be read as {suffix} ({exc}); it must hold "
                "a numeric array."
            ) from exc
        except (OSError, EOFError) as exc:
            raise ValueError(f"{name} file {path} is not a valid {suffix} file ({exc}).") from exc
        if suffix == ".npz":
            with loaded:
                keys = list(loaded.keys())
                if key is None:
                    if len(keys) != 1:
                        raise ValueError(
                            f"{name} file {path} holds {len(keys)} arrays {keys}; choose "
                            f"one with {path}:KEY."
                        )
                    key = keys[0]
                if key not in keys:
                    raise ValueError(f"{name} file {path} has no array {key!r}; it holds {keys}.")
                arr = loaded[key]
        else:
            arr = loaded
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{name} file {path} holds dtype {arr.dtype}; expected real numbers.")
        if arr.ndim != 2:
            raise ValueError(
                f"{name} file {path} holds an array of shape {arr.shape}; expected 2-D "
                "(n_points, n_features)."
            )
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    else:
        lines = _lines(path, name)
        rows = []
        width = None
        for i, line in enumerate(lines):
            parts = line.split()
            try:
                row = [float(v) for v in parts]
            except ValueError:
                bad = next(v for v in parts if not _is_float(v))
                raise ValueError(
                    f"{name} file {path}, line {i + 1}: {bad!r} is not a number."
                ) from None
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise ValueError(
                    f"{name} file {path}, line {i + 1} has {len(row)} numbers but line "
                    f"1 has {width}; "
                    "every vector must have the same length."
                )
            rows.append(row)
        if not rows:
            raise ValueError(f"{name} file {path} is empty; expected one vector per line.")
        arr = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        where = f"line {r + 1}" if suffix not in (".npy", ".npz") else f"row {r}"
        raise ValueError(
            f"{name} file {path}, {where}, column {c}: value {arr[r, c]} is not finite "
            "(NaN or inf)."
        )
    return arr


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_entities(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read the original's entities file: ``text<TAB>label`` per line.

    Returns (texts, labels). The label is the field after the last tab.
    """
    path = Path(path)
    texts, labels = [], []
    for i, line in enumerate(_lines(path, "entities")):
        if "\t" not in line:
            raise ValueError(
                f"entities file {path}, line {i + 1} has no tab; expected 'text<TAB>label'."
            )
        text, label = line.rsplit("\t", 1)
        label = label.strip()
        if not label:
            raise ValueError(
                f"entities file {path}, line {i + 1} has an empty label after the tab."
            )
        texts.append(text)
        labels.append(label)
    return texts, labels


def read_labels(path: str | os.PathLike, name: str = "labels") -> np.ndarray:
    """Read one label per point: a label per line, an entities file, or a 1-D .npy.

    A text file is read as an entities file (``text<TAB>label``) when its lines
    contain tabs; it must then be consistent (every line or none).
    Returns a 1-D array (str for text files; the stored dtype for .npy).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise ValueError(f"{name} file {path} does not exist.")
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(
                f"{name} file {path} could not be read ({exc}); save labels as ints or strings."
            ) from exc
        if arr.ndim != 1:
            raise ValueError(
                f"{name} file {path} holds shape {arr.shape}; expected 1-D (one label per point)."
            )
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(
                    f"{name} file {path} holds non-integer floats; labels must be ints or strings."
                )
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iuUS":
            raise ValueError(
                f"{name} file {path} holds dtype {arr.dtype}; labels must be ints or strings."
            )
        if arr.dtype.kind == "S":
            arr = arr.astype(str)
        return arr
    lines = _lines(path, name)
    if not lines:
        raise ValueError(f"{name} file {path} is empty; expected one label per line.")
    has_tab = ["\t" in line for line in lines]
    if any(has_tab) and not all(has_tab):
        first_tab = has_tab.index(True)
        first_plain = has_tab.index(False)
        raise ValueError(
            f"{name} file {path} mixes formats: line {first_tab + 1} is 'text<TAB>label' but line "
            f"{first_plain + 1} has no tab. Use one label per line, or 'text<TAB>label' "
            "on every line."
        )
    if all(has_tab):
        return np.asarray(read_entities(path)[1])
    return np.asarray([line.strip() for line in lines])


def read_label_set(path: str | os.PathLike) -> list[str]:
    """Read the original's label-set file (one label per line); returns sorted unique labels."""
    path = Path(path)
    lines = _lines(path, "label set")
    if not lines:
        raise ValueError(f"label set file {path} is empty; expected one label per line.")
    return sorted({line.strip() for line in lines})


# ---------------------------------------------------------------- DirectProbe outputs


def write_clusters(path: str | os.PathLike, cluster_of: Sequence[int]) -> None:
    """Write ``clusters.txt``: the cluster id of training point i on line i."""
    ids = np.asarray(cluster_of, dtype=np.int64)
    write_text_atomic(path, "".join(f"{int(c)}\n" for c in ids))


def read_clusters(path: str | os.PathLike) -> np.ndarray:
    """Read ``clusters.txt`` back: (n,) int cluster ids."""
    path = Path(path)
    out = []
    for i, line in enumerate(_lines(path, "clusters")):
        try:
            out.append(int(line.strip()))
        except ValueError:
            raise ValueError(
                f"clusters file {path}, line {i + 1}: {line.strip()!r} is not an integer "
                "cluster id."
            ) from None
    return np.asarray(out, dtype=np.int64)


def write_dis(
    path: str | os.PathLike,
    pairs: Any,
    cluster_label: Any,
    labels: Sequence[Any],
    distances: Any,
) -> None:
    """Write ``dis.txt``: ``(i-A, j-B): d`` per cluster pair, d to 4 decimals.

    Args:
      pairs: (m, 2) cluster ids.
      cluster_label: (K,) label index per cluster.
      labels: label values.
      distances: (m,) hull distances.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    cluster_label = np.asarray(cluster_label)
    labels = list(np.asarray(labels).tolist())
    distances = np.asarray(distances, dtype=np.float64)
    with atomic_open(path) as f:
        for (i, j), d in zip(pairs.tolist(), distances.tolist()):
            f.write(f"({i}-{labels[cluster_label[i]]}, {j}-{labels[cluster_label[j]]}): {d:0.4f}\n")


def read_dis(path: str | os.PathLike) -> list[tuple[int, str, int, str, float]]:
    """Parse ``dis.txt``: a list of (i, label_i, j, label_j, distance)."""
    path = Path(path)
    out = []
    for n, line in enumerate(_lines(path, "dis")):
        try:
            head, dist = line.rsplit("):", 1)
            left, right = head.lstrip("(").split(", ", 1)
            i, a = left.split("-", 1)
            j, b = right.split("-", 1)
            out.append((int(i), a, int(j), b, float(dist)))
        except ValueError:
            raise ValueError(
                f"dis file {path}, line {n + 1}: {line!r} is not '(i-A, j-B): d'."
            ) from None
    return out


def write_predictions(
    path: str | os.PathLike,
    gold: Sequence[Any],
    ranked_clusters: Any,
    ranked_distances: Any,
    cluster_label: Any,
    labels: Sequence[Any],
) -> None:
    """Write ``prediction.txt``: ``gold<TAB>c-A,d<TAB>...`` per test point, nearest cluster first.

    Args:
      gold: (p,) gold label values of the test points.
      ranked_clusters: (p, K) cluster ids, nearest first.
      ranked_distances: (p, K) point-to-hull distances in the same order.
      cluster_label: (K,) label index per cluster.
      labels: label values.
    """
    ranked_clusters = np.asarray(ranked_clusters, dtype=np.int64)
    ranked_distances = np.asarray(ranked_distances, dtype=np.float64)
    cl = np.asarray(cluster_label)
    labels = list(np.asarray(labels).tolist())
    gold = list(np.asarray(gold).tolist())
    if ranked_clusters.shape != ranked_distances.shape or ranked_clusters.shape[0] != len(gold):
        raise ValueError(
            f"predictions do not line up: {len(gold)} gold labels, "
            f"clusters {ranked_clusters.shape}, "
            f"distances {ranked_distances.shape}."
        )
    names = [str(labels[c]) for c in cl.tolist()]
    with atomic_open(path) as f:
        for g, cs, ds in zip(gold, ranked_clusters.tolist(), ranked_distances.tolist()):
            ranked = [f"{c}-{names[c]},{d:0.4f}" for c, d in zip(cs, ds)]
            f.write("\t".join([str(g)] + ranked) + "\n")


def read_predictions(path: str | os.PathLike) -> list[tuple[str, list[tuple[int, str, float]]]]:
    """Parse ``prediction.txt``: a list of (gold, [(cluster, label, distance), ...])."""
    path = Path(path)
    out = []
    for n, line in enumerate(_lines(path, "prediction")):
        fields = line.split("\t")
        ranked = []
        try:
            for fld in fields[1:]:
                head, d = fld.rsplit(",", 1)
                c, lab = head.split("-", 1)
                ranked.append((int(c), lab, float(d)))
        except ValueError:
            raise ValueError(
                f"prediction file {path}, line {n + 1}: {line!r} is not 'gold<TAB>c-A,d ...'."
            ) from None
        out.append((fields[0], ranked))
    return out


# ---------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and NaN to plain JSON values (NaN/inf -> null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, data: dict, *, make_dirs: bool = False) -> None:
    """Write ``data`` as JSON, atomically (NaN becomes null).

    One top-level key per line, each value compact on its line, so the file
    stays readable and small even with a cluster id per point.
    """
    data = to_jsonable(data)
    body = ",\n".join(
        f" {json.dumps(k)}: {json.dumps(v, allow_nan=False, ensure_ascii=False)}"
        for k, v in data.items()
    )
    write_text_atomic(path, "{\n" + body + "\n}\n", make_dirs=make_dirs)


def read_json(path: str | os.PathLike, what: str = "results") -> dict:
    """Read a JSON object, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} file {path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object; got {type(data).__name__}.")
    return data
