"""The task record (TaskData) and the helpers every corpus loader shares."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "KINDS",
    "SPLITS",
    "TaskData",
    "UnseenLabelWarning",
    "check_split",
    "make_task_data",
    "read_text",
    "resolve_data_dir",
    "unseen_labels",
]

SPLITS = ("train", "test")
KINDS = ("token", "pair", "sentence")
ENV_DATA_DIR = "FINETUNE_DATA_DIR"


class UnseenLabelWarning(UserWarning):
    """A test example carries a label that the train split never shows."""


@dataclass(frozen=True)
class TaskData:
    """One split of one probing task.

    Attributes:
      name: task name (one of finetune.tasks.TASKS).
      split: "train" or "test".
      kind: "token" (one word), "pair" (a word and its head) or "sentence".
      sentences: the words of each sentence (or question), in corpus order.
      targets: (n_examples, 3) int64 rows (sentence index, word index, head word
        index), 0-based, -1 where unused (token: head = -1; sentence: word =
        head = -1). Rows are in corpus order.
      labels: one label per example, aligned with ``targets``.
      label_set: the task's label set, sorted. It is the same for both splits
        (POS: the 17 UD tags; other tasks: the labels of the train split), so a
        classifier's label index is stable. Test labels outside it are kept and
        reported (``unseen_labels``, plus an ``UnseenLabelWarning`` on load).
    """

    name: str
    split: str
    kind: str
    sentences: tuple[tuple[str, ...], ...]
    targets: np.ndarray
    labels: tuple[str, ...]
    label_set: tuple[str, ...]

    @property
    def n_examples(self) -> int:
        return int(self.targets.shape[0])

    def label_ids(self) -> np.ndarray:
        """(n_examples,) int64 index of each label in ``label_set``; -1 if unseen."""
        index = {lab: i for i, lab in enumerate(self.label_set)}
        return np.array([index.get(lab, -1) for lab in self.labels], dtype=np.int64)


def unseen_labels(task: TaskData) -> tuple[str, ...]:
    """Labels of ``task`` that are not in its ``label_set`` (sorted; empty if none)."""
    known = set(task.label_set)
    return tuple(sorted({lab for lab in task.labels if lab not in known}))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}.")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The corpus folder: ``data_dir`` if given, else $FINETUNE_DATA_DIR.

    Raises:
      ValueError: neither is set, or the folder does not exist.
    """
    source = "--data-dir"
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_DATA_DIR) or None
        source = f"${ENV_DATA_DIR}"
    if data_dir is None:
        raise ValueError(
            "no corpus folder given: pass --data-dir DIR (data_dir=...) or set the "
            f"environment variable {ENV_DATA_DIR} to the folder holding ud-english-pud/, "
            "streusle/ and trec/."
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"corpus folder {path} (from {source}) does not exist or is not a folder.")
    return path


def read_text(path: Path, encoding: str) -> str:
    """Read a whole corpus file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: not valid {encoding} ({exc.reason} at byte {exc.start})."
        ) from exc


def make_task_data(
    name: str,
    split: str,
    kind: str,
    sentences: Sequence[Sequence[str]],
    targets: Sequence[tuple[int, int, int]],
    labels: Sequence[str],
    label_set: Sequence[str],
) -> TaskData:
    """Build a TaskData, checking shapes, and warn about unseen test labels."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {KINDS}.")
    tgt = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    if tgt.shape[0] != len(labels):
        raise ValueError(f"{name}/{split}: {tgt.shape[0]} targets but {len(labels)} labels.")
    task = TaskData(
        name=name,
        split=split,
        kind=kind,
        sentences=tuple(tuple(s) for s in sentences),
        targets=tgt,
        labels=tuple(labels),
        label_set=tuple(sorted(label_set)),
    )
    tgt.setflags(write=False)  # frozen record: its arrays are read-only too
    missing = unseen_labels(task)
    if missing:
        counts = {lab: task.labels.count(lab) for lab in missing}
        warnings.warn(
            f"{name}/{split}: {sum(counts.values())} example(s) carry label(s) absent from the "
            f"train split; they are kept (label_ids() gives -1): {counts}",
            UnseenLabelWarning,
            stacklevel=4,  # make_task_data <- loader <- load_task <- caller
        )
    return task
