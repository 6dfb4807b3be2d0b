"""The five probing tasks of the study, read from the raw public corpora.

| task    | kind     | corpus (under the data folder)                | train / test          |
|---------|----------|-----------------------------------------------|-----------------------|
| pos     | token    | ud-english-pud/en_pud-ud-test.conllu (UPOS)   | first 800 / last 200  |
| dep     | pair     | same file, every word with head != 0 (deprel) | first 800 / last 200  |
| ps-role | token    | streusle/*.conllulex, column 14 (SS)          | dev file / test file  |
| ps-fxn  | token    | streusle/*.conllulex, column 15 (SS2)         | dev file / test file  |
| trec50  | sentence | trec/train_5500.label / trec/TREC_10.label    | train / test file     |

``load_task(name, split, data_dir=None)`` returns a frozen ``TaskData``.
"""

from __future__ import annotations

import os
from pathlib import Path

from finetune.tasks.conllu import load_dep, load_pos
from finetune.tasks.data import (
    SPLITS,
    TaskData,
    UnseenLabelWarning,
    resolve_data_dir,
    unseen_labels,
)
from finetune.tasks.streusle import load_ps
from finetune.tasks.trec import load_trec

__all__ = [
    "SPLITS",
    "TASKS",
    "TaskData",
    "UnseenLabelWarning",
    "check_task",
    "load_task",
    "resolve_data_dir",
    "unseen_labels",
]

TASKS = ("pos", "dep", "ps-role", "ps-fxn", "trec50")


def check_task(name: str) -> None:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are: {', '.join(TASKS)}.")


def load_task(name: str, split: str, data_dir: str | os.PathLike | None = None) -> TaskData:
    """Load one split of one task.

    Args:
      name: one of TASKS.
      split: "train" or "test".
      data_dir: the corpus folder; default $FINETUNE_DATA_DIR.

    Raises:
      ValueError: unknown task or split, no data folder, malformed corpus line
        (the message names file and line).
      FileNotFoundError: a corpus file is missing (the message names it).
    """
    check_task(name)
    root: Path = resolve_data_dir(data_dir)
    if name == "pos":
        return load_pos(root, split)
    if name == "dep":
        return load_dep(root, split)
    if name in ("ps-role", "ps-fxn"):
        return load_ps(name, root, split)
    return load_trec(root, split)
