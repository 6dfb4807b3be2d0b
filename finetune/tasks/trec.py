"""TREC question classification, fine-grained (TREC-50).

Files: ``trec/train_5500.label`` (train, ISO-8859-1) and ``trec/TREC_10.label``
(test, ASCII/UTF-8). Each line is ``COARSE:fine word word ...``; the label is
the full ``COARSE:fine`` string and the words are the rest of the line split on
whitespace. label_set = the 50 labels of the train file.
"""

from __future__ import annotations

import re
from pathlib import Path

from finetune.tasks.data import TaskData, check_split, make_task_data, read_text

__all__ = ["TREC_FILES", "load_trec", "read_trec"]

TREC_FILES = {
    "train": ("trec/train_5500.label", "iso-8859-1"),
    "test": ("trec/TREC_10.label", "utf-8"),
}
_LABEL = re.compile(r"^[A-Z]+:[A-Za-z]+$")


def read_trec(path: Path, encoding: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """(questions as word tuples, labels); malformed lines raise naming file and line."""
    text = read_text(path, encoding)
    questions, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if not _LABEL.match(parts[0]) or len(parts) < 2:
            raise ValueError(
                f"{path}, line {lineno}: expected 'COARSE:fine question words', "
                f"found {line[:80]!r}."
            )
        labels.append(parts[0])
        questions.append(tuple(parts[1:]))
    if not labels:
        raise ValueError(f"{path}: no questions found.")
    return questions, labels


def load_trec(data_dir: Path, split: str) -> TaskData:
    check_split(split)
    train_file, train_enc = TREC_FILES["train"]
    train_q, train_labels = read_trec(data_dir / train_file, train_enc)
    if split == "train":
        questions, labels = train_q, train_labels
    else:
        test_file, test_enc = TREC_FILES["test"]
        questions, labels = read_trec(data_dir / test_file, test_enc)
    targets = [(i, -1, -1) for i in range(len(questions))]
    return make_task_data(
        "trec50", split, "sentence", questions, targets, labels, set(train_labels)
    )
