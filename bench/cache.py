"""The benchmarks' cache of real per-layer vectors: where it is and how to read it.

``python -m bench.extract_layers`` writes, for a task split and a layer k,
``<task>_<split>_L<k>.npy`` (float32, one row per example) and one
``<task>_<split>.labels.txt`` (one label per line, row order) into the cache
folder: ``$GEOMCORE_BENCH_CACHE``, else ``<repo>/cache`` (gitignored). Every
suite and script of ``bench/`` reads it through this module, so a missing file
always names the command that builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "layer_path", "labels_path", "meta_path", "inputs", "load_layer",
           "load_set"]

REPO = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """``$GEOMCORE_BENCH_CACHE``, else ``<repo>/cache``."""
    env = os.environ.get("GEOMCORE_BENCH_CACHE")
    return Path(env) if env else REPO / "cache"


def layer_path(cache: Path, task: str, split: str, layer: int) -> Path:
    return Path(cache) / f"{task}_{split}_L{layer}.npy"


def labels_path(cache: Path, task: str, split: str) -> Path:
    return Path(cache) / f"{task}_{split}.labels.txt"


def meta_path(cache: Path, task: str, split: str) -> Path:
    return Path(cache) / f"{task}_{split}.meta.json"


def inputs(task: str, split: str, layer: int, cache: Path | None = None) -> tuple[Path, Path]:
    """(vectors, labels) paths of one cached layer; FileNotFoundError naming the build command."""
    cache = Path(cache) if cache is not None else cache_dir()
    vec, lab = layer_path(cache, task, split, layer), labels_path(cache, task, split)
    missing = [str(p) for p in (vec, lab) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"benchmark input missing: {', '.join(missing)}; build it with "
            f"`python -m bench.extract_layers --task {task} --split {split} --layers {layer} "
            f"--out {cache}` (or set GEOMCORE_BENCH_CACHE)"
        )
    return vec, lab


def load_layer(task: str, split: str, layer: int, cache: Path | None = None):
    """(X, labels) of one task split at one layer: X (n, d) as stored, labels (n,) str."""
    vec, lab = inputs(task, split, layer, cache)
    X = np.load(vec)
    labels = np.array(lab.read_text(encoding="utf-8").splitlines())
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"{lab} has {labels.shape[0]} labels but {vec} has {X.shape[0]} rows")
    return X, labels


def load_set(cache: Path | None, name: str):
    """(X, labels) of a cached set named ``<task>_<split>_L<k>`` (e.g. ``pos_train_L6``)."""
    stem, sep, layer = name.rpartition("_L")
    task, _, split = stem.rpartition("_")
    if not (sep and task and split and layer.isdigit()):
        raise ValueError(f"set name {name!r} is not <task>_<split>_L<layer>, e.g. pos_train_L6")
    return load_layer(task, split, int(layer), cache)
