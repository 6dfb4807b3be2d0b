"""Streamed geometry: per-layer label geometry of a model while it trains.

At each probe (step 0, every K optimizer steps, after the last step) the
training and test splits are embedded at every layer
(``finetune.embed.embed_layers``: eval mode, no gradients) and each layer's
(n_examples, D) matrix goes to geomcore as is (torch tensors are read through
DLPack, without a copy). Per (step, split, layer) one JSON object is appended
to ``geometry.jsonl``:

- ``labels``: the labels present in the split, in label-index order;
- ``label_distances``: (L, L) hull distances between the labels' point sets
  (``geomcore.distances.label_distances``; 0 on the diagonal and for
  overlapping labels), in the layer's own units;
- ``min_distance_per_label``: per label, the minimum over the other labels;
- ``separable``: (L, L) booleans;
- ``centroids``: (L, D) per-label means;
- ``n_clusters``: DirectProbe's cluster count (only with ``directprobe=True``);
- ``seconds``: this layer's share of the geometry wall time (all layers of a
  split go to the engine in one call; its time is shared evenly),
  ``geometry_seconds``: that call's wall time, ``embed_seconds``: wall time of
  embedding the split (shared by its layers).

Each probe's label pairs start from the previous probe's solution of the same
split and layer (``probe_split``'s ``warm``; geomcore's warm starts), which
changes the time only, never what is certified.

Lines are flushed and fsync'ed one by one; a line whose key is already in the
file is not written again, so a resumed run never duplicates a probe.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import geomcore
import torch

from finetune.embed import embed_layers

__all__ = [
    "JsonlLog",
    "ProbeOutput",
    "layer_geometry",
    "layers_geometry",
    "layers_label_distances",
    "probe_split",
    "label_centroids",
]

logger = logging.getLogger(__name__)


class JsonlLog:
    """An append-only JSON-lines file keyed by some fields of each record.

    Opening reads the keys already present. A torn last line (the process died
    while writing it) is cut off, so the file always holds whole records.
    """

    def __init__(self, path: str | os.PathLike, key_fields: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.key_fields = key_fields
        self._keys: set[tuple] = set()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        offset = 0
        for lineno, line in enumerate(lines, start=1):
            if lineno == len(lines):
                # Every record is written with its newline in one write, so
                # bytes after the last newline are a record torn by an
                # interruption: cut them off.
                if line:
                    logger.warning("%s: dropping a torn last line", self.path)
                    with open(self.path, "r+b") as fh:
                        fh.truncate(offset)
                        fh.flush()
                        os.fsync(fh.fileno())
                break
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{self.path}, line {lineno}: not valid JSON ({exc}); "
                        "the run directory is corrupted."
                    ) from exc
                self._keys.add(self.key(rec))
            offset += len(line) + 1

    def key(self, record: dict[str, Any]) -> tuple:
        return tuple(record.get(f) for f in self.key_fields)

    def __contains__(self, key: tuple) -> bool:
        return tuple(key) in self._keys

    def append(self, record: dict[str, Any]) -> bool:
        """Append ``record`` as one line unless its key is present; True if written."""
        key = self.key(record)
        if key in self._keys:
            return False
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._keys.add(key)
        return True

    def records(self) -> list[dict[str, Any]]:
        """All records in file order."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def label_centroids(X: Any, label_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(L, D) float64 mean of the rows of ``X`` of each label id in ``labels``."""
    from geomcore.analysis import label_centroids as _centroids

    n = int(max(labels.max(), label_ids.max())) + 1
    return np.asarray(_centroids(X, label_ids, n))[labels]


def _json_floats(a: np.ndarray) -> list:
    """Nested lists of floats with non-finite values as None (JSON has no inf)."""
    a = np.asarray(a, dtype=np.float64)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def _directprobe_clusters(X: Any, label_ids: np.ndarray) -> int:
    from geomcore.directprobe import directprobe

    return int(directprobe(X, label_ids).n_clusters)


def layers_label_distances(
    layers: list[Any],
    label_ids: np.ndarray,
    *,
    progress: bool = False,
    warm: list[Any] | None = None,
) -> list[Any]:
    """:func:`geomcore.label_distances_layers` of the layers of one split.

    Args:
      layers: K arrays (n, D) (numpy or torch; read through DLPack), same rows.
      label_ids: (n,) integer label of each row.
      progress: show the engine's progress bar over label pairs.
      warm: None, or K earlier results (None entries allowed) of the same
        rows, e.g. this split's previous probe: layer k's pairs start from
        warm[k]'s supports; a layer without one starts from the layer below's
        result of this call.

    Returns:
      K :class:`geomcore.LabelDistances`, labels = the sorted ids present,
      with their supports.
    """
    label_ids = np.asarray(label_ids, dtype=np.int64)
    if not layers:
        return []
    return geomcore.label_distances_layers(layers, label_ids, progress=progress, warm_start=warm)


def _record(X: Any, ld: Any, label_ids: np.ndarray, label_names: tuple[str, ...]) -> dict:
    present = np.asarray(ld.labels, dtype=np.int64)
    return {
        "labels": [label_names[i] for i in present],
        "counts": np.bincount(label_ids, minlength=int(present.max()) + 1)[present].tolist(),
        "label_distances": _json_floats(ld.matrix),
        # inf (None in JSON) for a split with a single label
        "min_distance_per_label": _json_floats(ld.min_distance),
        "separable": np.asarray(ld.separable, dtype=bool).tolist(),
        "centroids": label_centroids(X, label_ids, present).tolist(),
    }


def layers_geometry(
    layers: list[Any],
    label_ids: np.ndarray,
    label_names: tuple[str, ...],
    *,
    directprobe: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """The geometry of several layers of one split (one engine call for all of them).

    Returns one JSON-ready dict per layer (see the module docstring). Its
    ``seconds`` is the layer's share of the wall time: the batched engine call
    divided evenly among the layers, plus the layer's own centroids (and
    DirectProbe) time; ``geometry_seconds`` is the whole call's wall time.
    """
    return _geometry(
        layers, label_ids, label_names, directprobe=directprobe, progress=progress, warm=None
    )[0]


def _geometry(layers, label_ids, label_names, *, directprobe, progress, warm):
    """:func:`layers_geometry`'s records, and the layers' LabelDistances."""
    t0 = time.perf_counter()
    label_ids = np.asarray(label_ids, dtype=np.int64)
    lds = layers_label_distances(layers, label_ids, progress=progress, warm=warm)
    shared = (time.perf_counter() - t0) / max(len(layers), 1)
    recs = []
    for X, ld in zip(layers, lds):
        t1 = time.perf_counter()
        rec = _record(X, ld, label_ids, label_names)
        if directprobe:
            rec["n_clusters"] = _directprobe_clusters(X, label_ids)
        rec["seconds"] = shared + time.perf_counter() - t1
        recs.append(rec)
    total = time.perf_counter() - t0
    for rec in recs:
        rec["geometry_seconds"] = total
    return recs, lds


def layer_geometry(
    X: Any, label_ids: np.ndarray, label_names: tuple[str, ...], *, directprobe: bool = False
) -> dict[str, Any]:
    """The geometry of one layer: label distances, minima, centroids, clusters.

    Args:
      X: (n, D) vectors (numpy or torch; read through DLPack).
      label_ids: (n,) int64 index of each row's label into ``label_names``.
      label_names: names of all label ids.
      directprobe: also run DirectProbe and record its number of clusters.

    Returns:
      A JSON-ready dict (see the module docstring); distances in X's units.
    """
    return layers_geometry([X], label_ids, label_names, directprobe=directprobe)[0]


@dataclass(frozen=True)
class ProbeOutput:
    """What one probe of one split produced.

    Attributes:
      records: the geometry records written (or already present) per layer.
      last_layer: (n, D) float32 vectors of the last layer (the head's input).
      seconds: wall time of the whole probe of this split.
    """

    records: tuple[dict[str, Any], ...]
    last_layer: torch.Tensor
    seconds: float


def probe_split(
    model: torch.nn.Module,
    tokenizer: Any,
    task: Any,
    label_ids: np.ndarray,
    label_names: tuple[str, ...],
    log: JsonlLog,
    *,
    step: int,
    epoch: int,
    batch_size: int = 32,
    directprobe: bool = False,
    device: str = "cpu",
    progress: bool = True,
    geometry: bool = True,
    extra: dict[str, Any] | None = None,
    warm: dict | None = None,
) -> ProbeOutput:
    """Embed ``task`` at every layer of ``model`` and log each layer's geometry.

    ``model`` is the bare encoder (a transformers AutoModel). It is put in eval
    mode for the embedding and returned to the mode it was in. Layers whose
    (step, split, layer) key is already in ``log`` are not recomputed.

    ``warm``: a dict the caller keeps from probe to probe. This probe's
    label-pair solutions are stored in it under (split, layer), and the next
    probe of the same split starts each pair from them (the points moved a
    little between checkpoints; see ``geomcore.label_distances``'
    ``warm_start``). The answers are certified as in a cold start; only the
    time changes.
    """
    t0 = time.perf_counter()
    was_training = model.training
    try:
        layers = embed_layers(
            model,
            tokenizer,
            task,
            batch_size=batch_size,
            device=device,
            progress=progress,
            layers=None if geometry else [int(model.config.num_hidden_layers)],
        )
    finally:
        model.train(was_training)
    embed_seconds = time.perf_counter() - t0
    records: list[dict[str, Any]] = []
    if not geometry:
        return ProbeOutput((), layers[-1], time.perf_counter() - t0)
    todo = [k for k in range(len(layers)) if ("geometry", step, task.split, k) not in log]
    geo: list = []
    if todo:
        geo, lds = _geometry(
            [layers[k] for k in todo],
            label_ids,
            label_names,
            directprobe=directprobe,
            progress=progress,
            warm=None if warm is None else [warm.get((task.split, k)) for k in todo],
        )
        if warm is not None:
            warm.update({(task.split, k): ld for k, ld in zip(todo, lds)})
    for layer, g in zip(todo, geo):
        rec = {"record": "geometry", "step": step, "epoch": epoch, "split": task.split}
        rec["layer"] = layer
        rec["n_examples"] = int(len(label_ids))
        rec.update(g)
        rec["embed_seconds"] = embed_seconds
        if extra:
            rec.update(extra)
        log.append(rec)
        records.append(rec)
    return ProbeOutput(tuple(records), layers[-1], time.perf_counter() - t0)
